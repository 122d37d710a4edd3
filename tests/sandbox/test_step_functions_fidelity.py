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
