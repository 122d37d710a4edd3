"""Task-token callbacks and task timeouts in moto's interpreter, with the sandbox engine's patches.

Ferry waits for long ECS operations with `lambda:invoke.waitForTaskToken` states: the Lambda stores
`$$.Task.Token`, another Lambda later calls SendTaskSuccess or SendTaskFailure, and HeartbeatSeconds (or
TimeoutSeconds) catches a missed event. These tests run tiny state machines through the patches of
`Sandbox._patches` alone (no template, no stack), with one in-process Lambda whose handler each test sets.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any, Callable

import boto3
import pytest

from ferry_cli.sandbox.clock import SimClock
from ferry_cli.sandbox.sandbox import _EMPTY_ZIP, MOTO_CONFIG, Sandbox

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION = "migrate"
WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"


class CallbackBox(Sandbox):
    """Only what `Sandbox._patches` needs: a clock and a Lambda dispatcher."""

    def __init__(self) -> None:  # no template, no stack: Sandbox.__init__ is not wanted here
        self.clock = SimClock()
        self.events: list[dict[str, Any]] = []
        self.handler: Callable[[dict[str, Any]], Any] = lambda event: {}

    def _invoke(self, function_name: str, body: Any, response_headers: dict) -> bytes:
        event = json.loads(body) if body else {}
        self.events.append(event)
        return json.dumps(self.handler(event)).encode()

    @property
    def tokens(self) -> list[str]:
        return [event["token"] for event in self.events]

    def sfn(self):
        return boto3.client("stepfunctions", region_name=REGION)

    def run(self, states: dict[str, Any], start_at: str = "Migrate") -> str:
        sfn = self.sfn()
        arn = sfn.create_state_machine(
            name=f"m{len(sfn.list_state_machines()['stateMachines'])}",
            roleArn=self.role,
            definition=json.dumps({"StartAt": start_at, "States": states}),
        )["stateMachineArn"]
        return sfn.start_execution(stateMachineArn=arn, input=json.dumps({"service": "web"}))["executionArn"]

    def wait_for(self, predicate: Callable[[], bool], limit: float = 7200.0, what: str = "condition") -> None:
        """Let the world run until `predicate()` holds, within `limit` simulated seconds."""
        assert self.clock.run_until(predicate, limit=limit), f"{what} did not happen within {limit:.0f} simulated s"

    def invoked(self, times: int = 1) -> list[str]:
        self.wait_for(lambda: len(self.events) >= times, what=f"{times} invocation(s)")
        return self.tokens

    def finish(self, execution_arn: str) -> dict[str, Any]:
        sfn = self.sfn()
        self.wait_for(
            lambda: sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING",
            what="the execution to end",
        )
        return sfn.describe_execution(executionArn=execution_arn)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.sfn().get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


@pytest.fixture
def box():
    from moto import mock_aws

    box = CallbackBox()
    with ExitStack() as stack:
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        for patcher in box._patches():
            stack.enter_context(patcher)
        box.role = boto3.client("iam").create_role(RoleName="callbacks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=box.role,
            Handler="app.handler",
            Code={"ZipFile": _EMPTY_ZIP},
        )
        yield box
        sfn = box.sfn()
        for machine in sfn.list_state_machines()["stateMachines"]:
            for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")[
                "executions"
            ]:
                sfn.stop_execution(executionArn=execution["executionArn"])
        box.clock.close()


def wait_task(**fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": WAIT_FOR_TOKEN,
        "Parameters": {"FunctionName": FUNCTION, "Payload": {"token.$": "$$.Task.Token", "service.$": "$.service"}},
        **fields,
    }


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_a_callback_task_ends_with_send_task_success_sent_later(box):
    arn = box.run({"Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=600, End=True)})
    [token] = box.invoked()
    box.clock.sleep(120)  # the operation takes two minutes; the task waits meanwhile
    box.sfn().send_task_success(taskToken=token, output=json.dumps({"exitCode": 0}))
    execution = box.finish(arn)
    assert box.clock.elapsed() == 120.0
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"exitCode": 0}
    assert "TaskSucceeded" in types(box.history(arn))


def test_a_callback_sent_while_the_lambda_still_runs_is_not_lost(box):
    # A retried Lambda that finds the operation already finished calls back before it returns.
    box.handler = lambda event: box.sfn().send_task_success(taskToken=event["token"], output='{"already": "done"}')
    arn = box.run({"Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=300, End=True)})
    execution = box.finish(arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"already": "done"}


def test_heartbeats_keep_a_callback_task_alive(box):
    arn = box.run({"Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=60, End=True)})
    [token] = box.invoked()
    for _ in range(5):  # 250 simulated seconds: four heartbeat periods, each beat 50 s after the last
        box.clock.sleep(50)
        box.sfn().send_task_heartbeat(taskToken=token)
    box.sfn().send_task_success(taskToken=token, output="{}")
    assert box.finish(arn)["status"] == "SUCCEEDED"
    assert "TaskTimedOut" not in types(box.history(arn))


def test_send_task_failure_is_caught_by_its_error_name_with_the_cause_intact(box):
    cause = 'migration task exited with code 3: relation "users" already exists'
    arn = box.run(
        {
            "Migrate": wait_task(
                TimeoutSeconds=3600,
                HeartbeatSeconds=600,
                Next="Done",
                ResultPath="$.error",
                Catch=[{"ErrorEquals": ["MigrationFailed"], "Next": "Failed", "ResultPath": "$.error"}],
            ),
            "Failed": {"Type": "Pass", "End": True},
            "Done": {"Type": "Succeed"},
        }
    )
    [token] = box.invoked()
    box.sfn().send_task_failure(taskToken=token, error="MigrationFailed", cause=cause)
    execution = box.finish(arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"service": "web", "error": {"Error": "MigrationFailed", "Cause": cause}}
    events = box.history(arn)
    [failed] = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert (failed["error"], failed["cause"]) == ("MigrationFailed", cause)
    assert "PassStateEntered" in types(events)


def test_a_missed_heartbeat_times_out_on_the_simulated_clock_and_a_retry_gets_a_new_token(box):
    # The first attempt never hears back; the retry finds the migration finished and calls back at once.
    def handler(event):
        if len(box.events) > 1:
            box.sfn().send_task_success(taskToken=event["token"], output='{"exitCode": 0}')
        return {}

    box.handler = handler
    arn = box.run(
        {
            "Migrate": wait_task(
                TimeoutSeconds=3600,
                HeartbeatSeconds=300,
                End=True,
                Retry=[{"ErrorEquals": ["States.HeartbeatTimeout"], "IntervalSeconds": 30, "MaxAttempts": 2}],
            )
        }
    )
    execution = box.finish(arn)
    assert execution["status"] == "SUCCEEDED"
    assert box.clock.elapsed() == 330.0  # one heartbeat period and one back-off, exactly
    first, second = box.tokens
    assert first != second
    events = box.history(arn)
    timed_out = [e["taskTimedOutEventDetails"] for e in events if e["type"] == "TaskTimedOut"]
    assert [t["error"] for t in timed_out] == ["States.HeartbeatTimeout"]
    scheduled = [
        json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in events if e["type"] == "TaskScheduled"
    ]
    assert [p["Payload"]["token"] for p in scheduled] == [first, second]


def test_states_timeout_matches_a_missed_heartbeat_and_timeout_seconds_runs_on_the_simulated_clock(box):
    arn = box.run(
        {
            "Migrate": wait_task(
                HeartbeatSeconds=300,
                TimeoutSeconds=3600,
                Next="Deploy",
                Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "Deploy", "ResultPath": "$.heartbeat"}],
            ),
            "Deploy": wait_task(
                TimeoutSeconds=600,
                End=True,
                Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut", "ResultPath": "$.timeout"}],
            ),
            "TimedOut": {"Type": "Pass", "End": True},
        }
    )
    execution = box.finish(arn)
    assert box.clock.elapsed() == 900.0  # the 300 s heartbeat, then the 600 s timeout
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["heartbeat"]["Error"] == "States.HeartbeatTimeout"
    assert output["timeout"]["Error"] == "States.Timeout"
    assert len(set(box.tokens)) == 2


def test_timeout_seconds_of_a_lambda_task_runs_on_the_simulated_clock(box):
    box.handler = lambda event: box.clock.sleep(600) or {}  # the function runs for ten minutes
    arn = box.run(
        {
            "Migrate": {
                "Type": "Task",
                "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}",
                "TimeoutSeconds": 60,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
                "End": True,
            },
            "TimedOut": {"Type": "Pass", "End": True},
        }
    )
    execution = box.finish(arn)
    assert box.clock.elapsed() == 60.0  # the state gave up at its timeout, while the function still ran
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["Error"] == "States.Timeout"
    assert "LambdaFunctionTimedOut" in types(box.history(arn))


def test_stop_execution_ends_a_task_waiting_for_its_callback_at_once(box):
    arn = box.run(
        {
            "Migrate": wait_task(
                HeartbeatSeconds=30000,
                TimeoutSeconds=360000,
                End=True,
                Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            ),
            "Caught": {"Type": "Pass", "End": True},
        }
    )
    [token] = box.invoked()
    box.clock.sleep(10)
    box.sfn().stop_execution(executionArn=arn, error="Stopped", cause="test")
    assert box.finish(arn)["status"] == "ABORTED"
    assert box.clock.elapsed() == 10.0  # ended at the stop, not at a heartbeat or a timeout
    events = types(box.history(arn))
    assert events[-1] == "ExecutionAborted"
    assert not {"TaskTimedOut", "TaskFailed", "PassStateEntered"} & set(events)
    assert len(box.events) == 1
