"""Task-token callbacks and task timeouts in moto's interpreter, with the sandbox engine's patches.

Ferry waits for long ECS operations with `lambda:invoke.waitForTaskToken` states: the Lambda stores
`$$.Task.Token`, another Lambda later calls SendTaskSuccess or SendTaskFailure, and HeartbeatSeconds (or
TimeoutSeconds) catches a missed event. These tests run tiny state machines through the patches of
`Sandbox._patches` alone (no template, no stack), with one in-process Lambda whose handler each test sets.
"""

from __future__ import annotations

import json
import threading
import time
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

    def __init__(self, speed: float) -> None:  # no template, no stack: Sandbox.__init__ is not wanted here
        self.clock = SimClock(speed=speed)
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
            name=f"m{len(sfn.list_state_machines()['stateMachines'])}", roleArn=self.role,
            definition=json.dumps({"StartAt": start_at, "States": states}))["stateMachineArn"]
        return sfn.start_execution(stateMachineArn=arn, input=json.dumps({"service": "web"}))["executionArn"]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def invoked(self, times: int = 1) -> list[str]:
        self.wait_for(lambda: len(self.events) >= times, what=f"{times} invocation(s)")
        return self.tokens

    def finish(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        sfn = self.sfn()
        self.wait_for(lambda: sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING",
                      timeout, "the execution to end")
        return sfn.describe_execution(executionArn=execution_arn)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.sfn().get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


@pytest.fixture
def box(request):
    """Speed 600, or what a test asks for with `@pytest.mark.parametrize("box", [...], indirect=True)`."""
    from moto import mock_aws

    box = CallbackBox(speed=getattr(request, "param", 600))
    with ExitStack() as stack:
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        for patcher in box._patches():
            stack.enter_context(patcher)
        box.role = boto3.client("iam").create_role(
            RoleName="callbacks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=FUNCTION, Runtime="python3.12", Role=box.role, Handler="app.handler",
            Code={"ZipFile": _EMPTY_ZIP})
        yield box
        sfn = box.sfn()
        for machine in sfn.list_state_machines()["stateMachines"]:
            for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"],
                                                 statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=execution["executionArn"])


def wait_task(**fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": WAIT_FOR_TOKEN,
            "Parameters": {"FunctionName": FUNCTION, "Payload": {"token.$": "$$.Task.Token", "service.$": "$.service"}},
            **fields}


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_a_callback_task_ends_with_send_task_success_from_another_thread(box):
    arn = box.run({"Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=600, End=True)})
    [token] = box.invoked()
    sender = threading.Thread(target=box.sfn().send_task_success,
                              kwargs={"taskToken": token, "output": json.dumps({"exitCode": 0})})
    sender.start()
    sender.join()
    execution = box.finish(arn)
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


@pytest.mark.parametrize("box", [60], indirect=True)
def test_heartbeats_keep_a_callback_task_alive(box):
    # A 1 s real heartbeat period with a beat every 0.1 s: a wide margin on a loaded machine.
    arn = box.run({"Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=60, End=True)})
    [token] = box.invoked()
    for _ in range(24):  # 2.4 real seconds, 144 simulated: more than two heartbeat periods
        time.sleep(0.1)
        box.sfn().send_task_heartbeat(taskToken=token)
    box.sfn().send_task_success(taskToken=token, output="{}")
    assert box.finish(arn)["status"] == "SUCCEEDED"


def test_send_task_failure_is_caught_by_its_error_name_with_the_cause_intact(box):
    cause = "migration task exited with code 3: relation \"users\" already exists"
    arn = box.run({
        "Migrate": wait_task(TimeoutSeconds=3600, HeartbeatSeconds=600, Next="Done", ResultPath="$.error",
                             Catch=[{"ErrorEquals": ["MigrationFailed"], "Next": "Failed", "ResultPath": "$.error"}]),
        "Failed": {"Type": "Pass", "End": True},
        "Done": {"Type": "Succeed"},
    })
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
    started = time.monotonic()
    arn = box.run({"Migrate": wait_task(
        TimeoutSeconds=3600, HeartbeatSeconds=300, End=True,  # 0.5 real seconds of heartbeat at speed 600
        Retry=[{"ErrorEquals": ["States.HeartbeatTimeout"], "IntervalSeconds": 30, "MaxAttempts": 2}])})
    execution = box.finish(arn, timeout=10)
    elapsed = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED"
    assert 0.5 <= elapsed < 5  # one scaled heartbeat period and one scaled back-off, not 330 s
    first, second = box.tokens
    assert first != second
    events = box.history(arn)
    timed_out = [e["taskTimedOutEventDetails"] for e in events if e["type"] == "TaskTimedOut"]
    assert [t["error"] for t in timed_out] == ["States.HeartbeatTimeout"]
    scheduled = [json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in events if e["type"] == "TaskScheduled"]
    assert [p["Payload"]["token"] for p in scheduled] == [first, second]


def test_states_timeout_matches_a_missed_heartbeat_and_timeout_seconds_runs_on_the_simulated_clock(box):
    started = time.monotonic()
    arn = box.run({
        "Migrate": wait_task(HeartbeatSeconds=300, TimeoutSeconds=3600, Next="Deploy",
                             Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "Deploy", "ResultPath": "$.heartbeat"}]),
        "Deploy": wait_task(TimeoutSeconds=600, End=True,  # 1 real second
                            Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut", "ResultPath": "$.timeout"}]),
        "TimedOut": {"Type": "Pass", "End": True},
    })
    execution = box.finish(arn, timeout=10)
    assert time.monotonic() - started < 5
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["heartbeat"]["Error"] == "States.HeartbeatTimeout"
    assert output["timeout"]["Error"] == "States.Timeout"
    assert len(set(box.tokens)) == 2


def test_timeout_seconds_of_a_lambda_task_runs_on_the_simulated_clock(box):
    box.handler = lambda event: time.sleep(1) or {}  # 600 simulated seconds at speed 600
    arn = box.run({"Migrate": {
        "Type": "Task", "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}", "TimeoutSeconds": 60,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}], "End": True},
        "TimedOut": {"Type": "Pass", "End": True}})
    execution = box.finish(arn, timeout=5)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["Error"] == "States.Timeout"
    assert "LambdaFunctionTimedOut" in types(box.history(arn))


def test_stop_execution_ends_a_task_waiting_for_its_callback_at_once(box):
    arn = box.run({
        "Migrate": wait_task(HeartbeatSeconds=30000, TimeoutSeconds=360000, End=True,  # 50 and 600 real seconds
                             Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
                             Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]),
        "Caught": {"Type": "Pass", "End": True},
    })
    [token] = box.invoked()
    time.sleep(0.1)
    box.sfn().stop_execution(executionArn=arn, error="Stopped", cause="test")
    stopped = time.monotonic()
    assert box.finish(arn, timeout=5)["status"] == "ABORTED"
    assert time.monotonic() - stopped < 2
    events = types(box.history(arn))
    assert events[-1] == "ExecutionAborted"
    assert not {"TaskTimedOut", "TaskFailed", "PassStateEntered"} & set(events)
    assert len(box.events) == 1
