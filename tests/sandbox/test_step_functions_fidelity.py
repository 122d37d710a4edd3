"""Step Functions semantics the sandbox reproduces where moto's interpreter differs from AWS.

Each test runs a small state machine of its own in the sandbox, so the rule is seen alone. The rules come
from the Step Functions developer guide, "Handling errors in Step Functions workflows"
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html):
- "A States.Runtime error isn't retriable, and will always cause the execution to fail. A retry or catch on
  States.ALL won't catch States.Runtime errors."
- States.DataLimitExceeded: "A terminal error which cannot be caught by the States.ALL error type", raised when
  the output of a state, or the input of a state after Parameters, is larger than the payload size quota.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ferry_cli.sandbox.faults import Faults, LambdaFault
from ferry_cli.sandbox.sandbox import Sandbox

CAUGHT = {"Type": "Pass", "End": True}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as box:
        yield box


def run(sandbox: Sandbox, definition: dict[str, Any], payload: dict[str, Any], name: str) -> dict[str, Any]:
    sfn = sandbox.client("stepfunctions")
    role = sandbox.client("iam").get_role(RoleName="ferry-sandbox-states")["Role"]["Arn"]
    machine = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=f"{name}-1", input=json.dumps(payload))["executionArn"]
    sandbox.run_until(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")
    described = sfn.describe_execution(executionArn=arn)
    described["entered"] = [
        e["stateEnteredEventDetails"]["name"] for e in sandbox.history(arn) if "stateEnteredEventDetails" in e
    ]
    return described


def function(sandbox: Sandbox, name: str) -> str:
    return f"arn:aws:lambda:{sandbox.region}:{sandbox.account}:function:ferry-sandbox-{name}"


def lock_function(sandbox: Sandbox) -> str:
    return function(sandbox, "lock")


def test_a_path_that_does_not_resolve_fails_the_execution_past_every_retry_and_catch(sandbox):
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": lock_function(sandbox),
                "Parameters": {"service.$": "$.missing"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3, "IntervalSeconds": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    invocations = sandbox.lambda_invocations
    described = run(sandbox, definition, {"service": "web"}, "runtime-error")
    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert "$.missing" in described["cause"]
    assert described["entered"] == ["Call"]  # not retried, not caught
    assert sandbox.lambda_invocations == invocations
    assert "States.Runtime" in sandbox.terminal_errors


def test_a_state_output_over_256_kib_is_a_terminal_data_limit_error(sandbox):
    big = "x" * (150 * 1024)
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Double",
                        "States": {
                            "Double": {"Type": "Pass", "Parameters": {"a.$": "$.big", "b.$": "$.big"}, "End": True}
                        },
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    described = run(sandbox, definition, {"big": big}, "data-limit-output")
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"
    assert "Caught" not in described["entered"]


def test_a_task_input_over_256_kib_after_parameters_is_a_terminal_data_limit_error(sandbox):
    big = "x" * (150 * 1024)
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": lock_function(sandbox), "Payload": {"a.$": "$.big", "b.$": "$.big"}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    invocations = sandbox.lambda_invocations
    described = run(sandbox, definition, {"big": big}, "data-limit-input")
    assert described["status"] == "FAILED"
    assert described["error"] == "States.DataLimitExceeded"
    assert described["entered"] == ["Call"]
    assert sandbox.lambda_invocations == invocations  # the function was never invoked


def test_other_errors_are_still_caught_by_states_all(sandbox):
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": lock_function(sandbox),
                "Parameters": {"action": "bogus"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    described = run(sandbox, definition, {}, "caught-error")
    assert described["status"] == "SUCCEEDED"
    assert described["entered"] == ["Call", "Caught"]


def test_a_states_error_inside_a_map_iteration_reaches_the_map_under_its_own_name(sandbox):
    """A migration that never reports back ends its iteration with States.HeartbeatTimeout: the Map's Catch
    sees that name (moto turned every States.* error of an iteration into States.Runtime)."""
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "Iterator": {
                    "StartAt": "Wait",
                    "States": {
                        "Wait": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                            "HeartbeatSeconds": 5,
                            "TimeoutSeconds": 600,
                            # task-stopped answers an event that is not a stopped task at once, and never calls back
                            "Parameters": {
                                "FunctionName": function(sandbox, "task-stopped"),
                                "Payload": {"token.$": "$$.Task.Token"},
                            },
                            "End": True,
                        }
                    },
                },
                "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.failure", "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    described = run(sandbox, definition, {"items": [1]}, "map-heartbeat")
    assert described["status"] == "SUCCEEDED", described
    assert described["entered"][-1] == "Caught"
    assert json.loads(described["output"])["failure"]["Error"] == "States.HeartbeatTimeout"


# ------------------------------------------------------------------ how a Lambda failure reaches the state
def caught_failure(sandbox: Sandbox, resource: str, fault: LambdaFault, name: str) -> dict[str, Any]:
    """Run one Task state invoking the lock function (as a Lambda task or through lambda:invoke) with `fault`,
    every error caught: the Error and Cause the state saw."""
    lock = lock_function(sandbox)
    task = (
        {"Resource": lock, "Parameters": {"action": "release", "service": "nobody/holds", "owner": "test"}}
        if resource == "function"
        else {
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": lock,
                "Payload": {"action": "release", "service": "nobody/holds", "owner": "test"},
            },
        }
    )
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", **task, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": True},
            "Caught": CAUGHT,
        },
    }
    sandbox.faults = Faults(lambdas=[fault])
    try:
        described = run(sandbox, definition, {}, name)
    finally:
        sandbox.faults = None
    assert described["status"] == "SUCCEEDED" and described["entered"] == ["Call", "Caught"], described
    return json.loads(described["output"])


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
def test_a_timeout_without_an_error_type_is_lambda_unknown_with_a_plain_text_cause(sandbox, resource):
    found = caught_failure(
        sandbox,
        resource,
        LambdaFault("timeout", error="Lambda.Unknown"),
        f"timeout-unknown-{resource.replace(':', '-')}",
    )
    assert found["Error"] == "Lambda.Unknown"
    assert found["Cause"].startswith(
        "The cause could not be determined because Lambda did not return an error "
        'type. Returned payload: {"errorMessage":"RequestId: '
    )
    assert found["Cause"].endswith('Task timed out after 60.00 seconds"}')


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
def test_a_timeout_with_its_error_type_is_sandbox_timedout(sandbox, resource):
    found = caught_failure(sandbox, resource, LambdaFault("timeout"), f"timeout-typed-{resource.replace(':', '-')}")
    assert found["Error"] == "Sandbox.Timedout"
    assert json.loads(found["Cause"])["errorMessage"].endswith("Task timed out after 60.00 seconds")


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
@pytest.mark.parametrize("error", ["CodeArtifactUserPendingException", "ResourceNotReadyException"])
def test_an_invoke_lambda_refuses_is_lambda_dot_its_error_code(sandbox, resource, error):
    invocations = sandbox.lambda_invocations
    found = caught_failure(
        sandbox,
        resource,
        LambdaFault("unavailable", error=error),
        f"unavailable-{error[:12]}-{resource.replace(':', '-')}",
    )
    assert found["Error"] == f"Lambda.{error}"
    assert f"Error Code: {error}" in found["Cause"]
    assert sandbox.lambda_invocations == invocations + 1  # invoked, and refused before the handler ran


def test_a_fail_state_can_raise_a_states_error_it_was_handed(sandbox):
    """A Catch hands the Fail state `States.Timeout` through ErrorPath: the execution fails with that Error (moto
    refused the States. prefix and failed it with States.Runtime instead)."""
    definition = {
        "StartAt": "Fail",
        "States": {"Fail": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}},
    }
    described = run(
        sandbox, definition, {"failure": {"Error": "States.Timeout", "Cause": "the wait ran out"}}, "fail-states-error"
    )
    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "States.Timeout",
        "the wait ran out",
    )


# ------------------------------------------------------------------ a Python handler's error, as its Cause
def lock_task(sandbox: Sandbox, resource: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A Task state invoking the lock function with `payload` (as a Lambda task or through lambda:invoke), every
    error caught."""
    lock = lock_function(sandbox)
    task = (
        {"Resource": lock, "Parameters": payload}
        if resource == "function"
        else {"Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": lock, "Payload": payload}}
    )
    return {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                **task,
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
def test_a_handler_error_reaches_the_state_as_the_python_runtime_writes_it(sandbox, resource):
    """awslambdaric's bootstrap.py: make_error(str(value), etype.__name__, traceback.format_list(frames), invoke_id),
    written with ", " and ": " and carried verbatim as the Cause (localstack's test_task_lambda snapshot, recorded
    against AWS): the frames only, never the message again."""
    definition = lock_task(sandbox, resource, {"action": "bogus"})
    described = run(sandbox, definition, {}, f"runtime-document-{resource.replace(':', '-')}")
    assert described["status"] == "SUCCEEDED" and described["entered"] == ["Call", "Caught"], described
    found = json.loads(described["output"])
    document = json.loads(found["Cause"])

    assert list(document) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert found["Cause"] == json.dumps(document)  # the runtime's separators, not moto's compact copy
    assert found["Error"] == document["errorType"] == "InputInvalid"
    assert "`action` must be acquire, release or rollback-target" in document["errorMessage"]
    assert document["requestId"] and document["requestId"] != document["errorMessage"]
    frames = document["stackTrace"]
    # format_list of bootstrap.py's (file, line, name, code) tuples: no ^^^ line under the code
    assert frames and all(re.fullmatch(r'  File ".+", line \d+, in \S+\n(    .+\n)?', f) for f in frames), frames
    assert "aws_lambda_powertools" in frames[0]  # the handler's outermost decorator: the sandbox's frames left out
    assert not any("ferry_cli/sandbox/sandbox.py" in f for f in frames)
    assert any("functions/lock/app.py" in f for f in frames) and "ferry/contract.py" in frames[-1]
    assert not any(f.startswith(("Traceback", document["errorType"])) for f in frames)


@pytest.fixture
def raising(sandbox):
    """The lock function raises RuntimeError(<message>) when its payload's owner is "cause-test"."""
    message = {"text": ""}

    def hook(logical: str, event: dict[str, Any]) -> None:
        if isinstance(event, dict) and event.get("owner") == "cause-test":
            raise RuntimeError(message["text"])

    sandbox.fault_hooks.append(hook)
    try:
        yield message
    finally:
        sandbox.fault_hooks.remove(hook)


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
def test_a_cause_up_to_32768_characters_is_caught_as_any_error(sandbox, raising, resource):
    raising["text"] = "y" * (32768 - 1000)  # its frames and keys take less than 1000
    definition = lock_task(sandbox, resource, {"action": "release", "owner": "cause-test"})
    described = run(sandbox, definition, {}, f"cause-at-limit-{resource.replace(':', '-')}")
    assert described["status"] == "SUCCEEDED" and described["entered"] == ["Call", "Caught"], described
    cause = json.loads(described["output"])["Cause"]
    assert len(cause) <= 32768 and json.loads(cause)["errorMessage"] == raising["text"]


@pytest.mark.parametrize("resource", ["function", "lambda:invoke"])
def test_a_cause_over_32768_characters_fails_the_execution_past_every_retry_and_catch(sandbox, raising, resource):
    """A Cause holds at most 32768 characters (the Step Functions API reference: TaskFailedEventDetails,
    LambdaFunctionFailedEventDetails, ExecutionFailedEventDetails). What AWS does with a function's longer error
    is not documented; the sandbox takes the strict side: States.DataLimitExceeded, which no Retry or Catch
    matches, so the failure path never runs."""
    raising["text"] = "z" * 32768
    terminal = sandbox.terminal_errors.count("States.DataLimitExceeded")
    invocations = sandbox.lambda_invocations
    definition = lock_task(sandbox, resource, {"action": "release", "owner": "cause-test"})
    described = run(sandbox, definition, {}, f"cause-over-limit-{resource.replace(':', '-')}")
    assert (described["status"], described["error"]) == ("FAILED", "States.DataLimitExceeded"), described
    assert described["entered"] == ["Call"]  # neither retried nor caught
    assert sandbox.lambda_invocations == invocations + 1
    assert sandbox.terminal_errors.count("States.DataLimitExceeded") > terminal
    assert "a Cause holds at most 32768" in described["cause"] and len(described["cause"]) < 1000
