#!/usr/bin/env python3
"""The source of the deploy state machine: writes statemachine/deploy.asl.json.

deploy.asl.json is what SAM deploys (template.yaml's DefinitionUri), what statelint checks, what the sandbox runs
and what the Step Functions console shows; it is generated from this file and committed. To change the state
machine, edit this file, run it, and commit both:

    python statemachine/build.py           write statemachine/deploy.asl.json (and its picture, docs/state-machine.md)
    python statemachine/build.py --check   exit 1, showing the difference, if the committed file is not what this
                                           file generates (tests/statemachine/test_asl_source.py runs the same
                                           check in `make test`)

Why Python and not YAML with anchors: the list of Ferry's verdicts (errors never retried) is derived from
ferry.errors.VERDICTS and every Error name is a class there, so a renamed error cannot leave a stale name in a
Retry; the state names come from ferry.states, which the handlers, metrics, CLI and tests can import; and the
rules that relate fields (a state with a timeout or heartbeat of its own also never retries States.Timeout) are
code, not a convention copied by hand. The definition is plain dicts and lists; the helpers only fill in what
every Lambda step has in common. Every ARN is a `${...FunctionArn}` of the template's DefinitionSubstitutions.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUTPUT = HERE / "deploy.asl.json"
if __name__ == "__main__" and str(ROOT / "layers" / "ferry") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "ferry"))  # run as a script, outside the dev venv

from ferry import errors  # noqa: E402
from ferry import states as S  # noqa: E402

# ------------------------------------------------------------------------------------------------ Retry policies
# Every Lambda step's Retry is, in this order (the first retrier that matches an error decides):
#   1. the state's own retriers, if any (LockReleased, States.HeartbeatTimeout);
#   2. Lambda's service errors, with back-off and jitter (LAMBDA_SERVICE; the lock's release: RELEASE_RETRY);
#   3. a function Lambda cannot invoke yet, waited out for over two minutes (COLD_FUNCTION);
#   4. Ferry's verdicts never (NEVER), plus States.Timeout where the state has a timeout or heartbeat of its own;
#   5. anything else twice (ANYTHING_ELSE).
# The one exception is the rollback's first step (ROLLBACK_RETRY). tests/statemachine/test_faults.py checks the
# result state by state.

# Lambda could not run the step: a service error, throttling, or Step Functions' own call to Lambda timing out.
# Every step is idempotent (a retried Register finds its own revision, a retried migration its own task), so
# trying again is safe.
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
]
LAMBDA_SERVICE = {
    "ErrorEquals": LAMBDA_SERVICE_ERRORS,
    "IntervalSeconds": 2,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}

# Lambda cannot invoke the function yet: idle for weeks (its code is being restored) or still being provisioned.
# It can answer so for a minute or more, so every step waits it out for over two minutes: 10 + 20 + 40 + 60 + 60 s.
COLD_FUNCTION = {
    "ErrorEquals": ["Lambda.CodeArtifactUserPendingException", "Lambda.ResourceNotReadyException"],
    "IntervalSeconds": 10,
    "MaxAttempts": 5,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 60,
}

# Ferry's verdicts: a step that raised one has decided (the config is invalid, the canary crashed, an alarm
# fired), and running it again would decide the same, only later; one bad invocation must not be mistaken for
# one. The list is ferry.errors.VERDICTS. A state with a timeout or heartbeat of its own also never retries
# States.Timeout: its time is up (the bake ends on it; the waits fail on it). A Lambda function that runs out of
# time is Sandbox.Timedout or Lambda.Unknown instead, which ANYTHING_ELSE retries.
VERDICTS = [verdict.__name__ for verdict in errors.VERDICTS]
NEVER = {"ErrorEquals": VERDICTS, "MaxAttempts": 0}
NEVER_AND_NOT_A_TIMEOUT = {"ErrorEquals": [*VERDICTS, "States.Timeout"], "MaxAttempts": 0}

# Anything else twice (5 s, then 10 s, with jitter): a handler that crashed (its exception's class name), a
# function timeout (Sandbox.Timedout, or Lambda.Unknown with a plain-text Cause), an AWS error that outlasted the
# client's own retries. A handler that crashed or timed out once does not end the deploy or roll back a good one.
ANYTHING_ELSE = {
    "ErrorEquals": ["States.ALL"],
    "IntervalSeconds": 5,
    "MaxAttempts": 2,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}

# Releasing the lock must not give up early: a lock left held makes the next deploy of the service wait for it.
# The lock table being unavailable and the function timing out are retried 5 times (2 s to 32 s apart, with
# jitter) along with Lambda's service errors before a release state gives up (and carries on: whatever_happens).
RELEASE_RETRY = {
    "ErrorEquals": [errors.LockUnavailable.__name__, *LAMBDA_SERVICE_ERRORS, "Sandbox.Timedout", "Lambda.Unknown"],
    "IntervalSeconds": 2,
    "MaxAttempts": 5,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}

# Two kinds of state must not give up early on a function that fails (crashes, times out, or meets an AWS
# error that outlasts the client's own retries):
# - removing what the execution started: a canary left running keeps serving production traffic (the canary's
#   removal raises CleanupIncomplete itself while anything of the canary is still running or registered);
# - watching what ECS does (the waits for the deployment and the rollback, the bake and its last look at the
#   alarms): a watcher that fails is no evidence against the deploy, and ECS carries on without it; giving up
#   would roll back a good deploy, or call a rollback that ECS is completing on its own a failed one.
# They retry everything but Ferry's verdicts (and, for the waits, their own timeouts) 16 times, 5 s to 5 minutes
# apart with jitter: at most 55 minutes in all (5 + 10 + ... + 160 s, then 10 times 300 s), under the documented
# hour. A clean-up that runs out ends in `Clean-up did not finish: a person must act`, naming what was left.
PATIENT_RETRY = {
    "ErrorEquals": ["States.ALL"],
    "IntervalSeconds": 5,
    "MaxAttempts": 16,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 300,
    "JitterStrategy": "FULL",
}

# The rollback's first step retries everything twice (10 s, then 20 s), Ferry's verdicts included: the service
# has changed, and a rollback that gives up leaves it to a person. It is older than the policies above, which is
# why Lambda.ClientExecutionTimeoutException is not in its first retrier (its States.ALL retries that instead)
# and its States.ALL has no jitter.
ROLLBACK_RETRY = [
    {**LAMBDA_SERVICE, "ErrorEquals": LAMBDA_SERVICE_ERRORS[:4]},
    COLD_FUNCTION,
    {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 2, "BackoffRate": 2.0},
]


def at_once(attempts: int, *names: str) -> dict[str, Any]:
    """A state's own retrier of `names`, 1 s apart. For a waiting state: the wait's heartbeat ran out (the
    function then looks for itself, so a lost event costs one heartbeat), or the lock it waits for was released."""
    return {"ErrorEquals": list(names), "IntervalSeconds": 1, "MaxAttempts": attempts, "BackoffRate": 1.0}


# ------------------------------------------------------------------------------------------------ Catch patterns
def catch(next_state: str, result: str = "$.failure", names: tuple[str, ...] = ("States.ALL",)) -> dict[str, Any]:
    """A catcher: the error goes to `result` ($.failure: what `Deploy failed` and the rollback report read)."""
    return {"ErrorEquals": list(names), "ResultPath": result, "Next": next_state}


# A failure before the service changed: only the lock to release, then `Deploy failed` with the step's Error.
BEFORE_CHANGE = [catch(S.RELEASE_LOCK_AFTER_FAILURE)]
# A failure while a canary runs: take it away first (it must not keep serving), then as BEFORE_CHANGE.
CANARY_RUNS = [catch(S.REMOVE_FAILED_CANARY)]
# A failure after the service changed: put it back (`Rolled back`, whose Cause starts with the failure).
AFTER_CHANGE = [catch(S.ROLL_BACK)]
# A failure of the rollback itself: say what the service runs now and how to put it back (`Rollback failed`).
ROLLBACK_BROKE = [catch(S.EXPLAIN_FAILED_ROLLBACK, "$.rollbackFailure")]


def whatever_happens(next_state: str, failure_key: str) -> dict[str, Any]:
    """Clean-up that goes on to `next_state` whether it worked or not. Its failure is kept at $.<failure_key>
    for the history, and the execution still ends with the Error of what failed first."""
    return {"Catch": [catch(next_state, f"$.{failure_key}")], "Next": next_state}


# ------------------------------------------------------------------------------------------------ Lambda steps
WAIT_FOR_TASK_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
TASK_TOKEN = "$$.Task.Token"
_ABSENT: Any = object()  # "no such field", where None would be JSON null


def function_arn(step: str) -> str:
    """The step's function, as the template's DefinitionSubstitutions name it: Render -> ${RenderFunctionArn}."""
    return "${" + step + "FunctionArn}"


def lambda_task(step: str, parameters: dict[str, Any], *, comment: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Task state that invokes the step's function directly and gets what the handler returns."""
    head = {
        "Type": "Task",
        "Resource": function_arn(step),
        **({"Comment": comment} if comment else {}),
        "Parameters": parameters,
    }
    return _lambda_state(head, **fields)


def lambda_wait(step: str, payload: dict[str, Any], *, comment: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Task state that invokes the step's function with a task token (payload's token.$) and then waits until
    someone completes the token: an EventBridge event's handler, the lock's holder, or a timeout or heartbeat."""
    head = {
        "Type": "Task",
        "Resource": WAIT_FOR_TASK_TOKEN,
        **({"Comment": comment} if comment else {}),
        "Parameters": {"FunctionName": function_arn(step), "Payload": payload},
    }
    return _lambda_state(head, **fields)


def _lambda_state(
    head: dict[str, Any],
    *,
    selector: dict[str, Any] | None = None,
    timing: dict[str, Any] | None = None,
    result: Any = _ABSENT,
    first: tuple[dict[str, Any], ...] = (),
    service: dict[str, Any] = LAMBDA_SERVICE,
    retry: list[dict[str, Any]] | None = None,
    catch: list[dict[str, Any]] | None = None,
    next: str | None = None,
    then: dict[str, Any] | None = None,
    patient: bool = False,
) -> dict[str, Any]:
    """The rest of a Lambda step, its fields in the order Step Functions shows them. `timing`: the state's own
    TimeoutSeconds and heartbeat; `first`: the state's own retriers; `then`: whatever_happens(...); `patient`:
    anything else is retried for up to 55 minutes (PATIENT_RETRY), not twice."""
    state = {**head, **({"ResultSelector": selector} if selector else {}), **(timing or {})}
    if result is not _ABSENT:
        state["ResultPath"] = result
    never = NEVER_AND_NOT_A_TIMEOUT if timing else NEVER
    last = PATIENT_RETRY if patient else ANYTHING_ELSE
    state["Retry"] = retry if retry is not None else [*first, service, COLD_FUNCTION, never, last]
    if catch:
        state["Catch"] = catch
    state.update(then or ({"Next": next} if next else {"End": True}))
    return state


# ------------------------------------------------------------------------------------------------ Parameters
EXECUTION_NAME = "$$.Execution.Name"
# The ECS service a step acts on (cluster and ecsService, from Render), and what it acts for: the execution (what
# it tags and logs) and the service's name in the config registry (service).
ECS_SERVICE = {
    "execution.$": EXECUTION_NAME,
    "service.$": "$.service",
    "cluster.$": "$.render.cluster",
    "ecsService.$": "$.render.ecsService",
}
NEW_REVISION = "$.register.taskDefinitionArn"
# Whose lock: the service's name in the config registry, and the execution that holds or wants it.
LOCK = {"service.$": "$.service", "owner.$": "$$.Execution.Id"}
RELEASE = {"action": "release", **LOCK, "request.$": "$"}
# What every rollback step is told: the failed deploy, what the service ran before, and why it failed.
ROLLBACK = {
    **ECS_SERVICE,
    "previousTaskDefinitionArn.$": "$.render.previousTaskDefinitionArn",
    "desiredCount.$": "$.render.desiredCount",
    "failedTaskDefinitionArn.$": NEW_REVISION,
    "failure.$": "$.failure",
    "requestAction.$": "$.render.requestAction",
}
ROLLBACK_REQUEST = [{"Variable": "$.action", "IsPresent": True}, {"Variable": "$.action", "StringEquals": "rollback"}]
SERVICE_NAMED = {"Variable": "$.service", "IsString": True}


def wait_for_ecs(phase: str, revision: str, extra: dict[str, Any], next_state: str) -> dict[str, Any]:
    """The wait for ECS to finish a deployment (phase "deployment") or a rollback (phase "rollback")."""
    return lambda_wait(
        "CheckDeployment",
        {
            "token.$": TASK_TOKEN,
            **ECS_SERVICE,
            "taskDefinitionArn.$": revision,
            "startedAt.$": f"$.{phase}.startedAt",
            "timeoutSeconds.$": f"$.render.timeouts.{phase}",
            "phase": phase,
            **extra,
        },
        comment=wait_comment(phase),
        # checkInSeconds: the handler's own choice of when to look again; 4 h bounds a state whose checks stopped.
        timing={"HeartbeatSecondsPath": f"$.{phase}.progress.checkInSeconds", "TimeoutSeconds": 14400},
        result=f"$.{phase}.progress",
        first=(at_once(200, "States.HeartbeatTimeout"),),
        patient=True,
        catch=AFTER_CHANGE if phase == "deployment" else ROLLBACK_BROKE,
        next=next_state,
    )


def wait_comment(what: str) -> str:
    """The Comment of the two waits for ECS."""
    return (
        f"Waits on a task token that ECS's Deployment State Change event completes: nothing polls, so the cost "
        f"does not grow with the {what}'s length. If no event comes within checkInSeconds (a lost event, or the "
        f"{what} timeout), the heartbeat runs out and the Retry looks again (one transition). TimeoutSeconds "
        f"(4 h) only bounds a state whose checks stopped; the phase timeouts (at most 3 h) end it first."
    )


# ------------------------------------------------------------------------------------------------ The states
def definition() -> dict[str, Any]:
    states: dict[str, dict[str, Any]] = {}

    # -------------------------------------------------------------------- the request and the lock
    states[S.CHECK_REQUEST] = {
        "Type": "Choice",
        "Comment": "Refuse an input that is neither a deploy ({service, images}) nor a rollback ({service, action: "
        "rollback}) before anything is locked or changed.",
        "Choices": [
            {"And": [SERVICE_NAMED, {"Variable": "$.images", "IsPresent": True}], "Next": S.TAKE_LOCK},
            {"And": [SERVICE_NAMED, *ROLLBACK_REQUEST], "Next": S.TAKE_LOCK},
        ],
        "Default": S.REFUSE_REQUEST,
    }
    states[S.REFUSE_REQUEST] = {
        "Type": "Fail",
        "Error": errors.InputInvalid.__name__,
        "Cause": 'The execution input must be {"service": "<name in the config registry>", "images": '
        '{"<container>": "<ECR image URI>"}} to deploy, or {"service": "<name>", "action": '
        '"rollback"} to go back to the revision Ferry\'s last deploy replaced. Nothing was locked or '
        "changed.",
    }
    states[S.TAKE_LOCK] = {
        **lambda_wait(
            "Lock",
            {
                "action": "acquire",
                **LOCK,
                "startedAt.$": "$$.Execution.StartTime",
                "request.$": "$",
                "token.$": TASK_TOKEN,
            },
            # Each wait lasts one heartbeat (5 min), within a 15 min bound; 100 of them outlast the hour after
            # which the lock function gives up with ServiceLocked.
            timing={"HeartbeatSeconds": 300, "TimeoutSeconds": 900},
            result="$.lock",
            # Woken by the holder's release (LockReleased) or by its heartbeat: try to take the lock again at once.
            first=(at_once(100, errors.LockReleased.__name__, "States.HeartbeatTimeout"),),
            catch=[catch(S.SUPERSEDED, "$.superseded", (errors.Superseded.__name__,)), *BEFORE_CHANGE],
            next=S.IS_ROLLBACK_REQUEST,
        ),
        # (This state's and two others' Comment come last: where the JSON has always had them.)
        "Comment": "While another execution deploys this service, waits on a task token that the holder's release "
        "completes (LockReleased, retried at once); every 5 minutes the heartbeat looks for itself, and "
        "after an hour it gives up with ServiceLocked. A request older than one queued behind it, or than "
        "one already deployed, is superseded: the newest image wins.",
    }
    states[S.SUPERSEDED] = {
        "Type": "Succeed",
        "Comment": "Not a failure: a newer deploy of this service was queued or has gone out, so this older one "
        "stepped aside. Nothing was changed.",
    }
    states[S.IS_ROLLBACK_REQUEST] = {
        "Type": "Choice",
        "Choices": [{"And": ROLLBACK_REQUEST, "Next": S.FIND_ROLLBACK_TARGET}],
        "Default": S.RENDER,
    }
    states[S.FIND_ROLLBACK_TARGET] = lambda_task(
        "Lock",
        {"action": "rollback-target", **LOCK},
        comment="The revision Ferry's last deploy of this service replaced, from the deploy record in the lock table.",
        result="$.render",
        catch=BEFORE_CHANGE,
        next=S.ROLL_BACK_TO_TARGET,
    )
    states[S.ROLL_BACK_TO_TARGET] = {
        "Type": "Pass",
        "Parameters": {"taskDefinitionArn.$": "$.render.rollbackTo"},
        "ResultPath": "$.register",
        "Next": S.UPDATE_SERVICE,
    }

    # -------------------------------------------------------------------- before the service changes
    states[S.RENDER] = lambda_task(
        "Render",
        {"execution.$": EXECUTION_NAME, "service.$": "$.service", "images.$": "$.images", "request.$": "$"},
        result="$.render",
        catch=BEFORE_CHANGE,
        next=S.VERIFY,
    )
    states[S.VERIFY] = lambda_task(
        "Verify",
        {
            **ECS_SERVICE,
            "alarms.$": "$.render.alarms",
            "targetGroups.$": "$.render.targetGroups",
            "readSecretValues.$": "$.render.readSecretValues",
            "planSha256.$": "$.render.planSha256",
        },
        comment="Checks every image, role, secret, log group, target group, environment file and alarm the new "
        "revision refers to, and reports all problems at once. Nothing has changed yet.",
        result="$.verify",
        catch=BEFORE_CHANGE,
        next=S.REGISTER,
    )
    states[S.REGISTER] = lambda_task(
        "Register",
        {"execution.$": EXECUTION_NAME, "service.$": "$.service", "planSha256.$": "$.render.planSha256"},
        comment="Registers the verified revision (the plan whose hash Render passed on), tagged with this "
        "execution; a retry reuses it.",
        result="$.register",
        catch=BEFORE_CHANGE,
        next=S.HAS_MIGRATIONS,
    )
    states[S.HAS_MIGRATIONS] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.render.hasMigrations", "BooleanEquals": True, "Next": S.MIGRATE}],
        "Default": S.NO_MIGRATIONS,
    }
    states[S.NO_MIGRATIONS] = {
        "Type": "Pass",
        "Comment": "The service config lists no migrations: no task is started.",
        "Result": {"skipped": True},
        "ResultPath": "$.migrations",
        "Next": S.WHICH_STRATEGY,
    }
    states[S.MIGRATE] = {
        "Type": "Map",
        "Comment": "Each migration is a one-off task of the new revision, started after the previous one succeeded. "
        "A failure stops the deploy before the service changes.",
        "ItemsPath": "$.render.migrations",
        "MaxConcurrency": 1,
        "Parameters": {
            "migration.$": "$$.Map.Item.Value",
            **ECS_SERVICE,
            "taskDefinitionArn.$": NEW_REVISION,
            "previousRevision.$": "$.render.previousRevision",
        },
        "Iterator": {
            "StartAt": S.MIGRATION_TASK,
            "States": {
                S.MIGRATION_TASK: lambda_wait(
                    "Migrate",
                    {
                        "token.$": TASK_TOKEN,
                        "execution.$": "$.execution",
                        "service.$": "$.service",
                        "cluster.$": "$.cluster",
                        "ecsService.$": "$.ecsService",
                        "taskDefinitionArn.$": "$.taskDefinitionArn",
                        "previousRevision.$": "$.previousRevision",
                        "migration.$": "$.migration",
                    },
                    comment="Starts the task (or finds the one this execution started) and waits for ECS's task-stopped "
                    "event. When the heartbeat runs out, the retry checks the task itself, so a missed event costs "
                    "one heartbeat; the migration's own timeoutSeconds is enforced there. TimeoutSeconds is only a "
                    "backstop above the longest allowed migration.",
                    # heartbeatSeconds: min(300, the migration's timeoutSeconds), set by Render; each heartbeat that runs out
                    # is retried at once (the function then looks at the task), and the migration's timeout ends it first.
                    timing={"HeartbeatSecondsPath": "$.migration.heartbeatSeconds", "TimeoutSeconds": 7800},
                    first=(at_once(30, "States.HeartbeatTimeout"),),
                    # A migration past its timeout is stopped here: a throttled StopTask must not end the deploy
                    # with the migration still running.
                    patient=True,
                )
            },
        },
        "ResultPath": "$.migrations",
        "Catch": BEFORE_CHANGE,
        "Next": S.WHICH_STRATEGY,
    }
    states[S.WHICH_STRATEGY] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.render.strategy", "StringEquals": "canary", "Next": S.START_CANARY}],
        "Default": S.UPDATE_SERVICE,
    }
    states[S.START_CANARY] = lambda_task(
        "Canary",
        {"action": "start", "taskDefinitionArn.$": NEW_REVISION, "canary.$": "$.render.canary", **ECS_SERVICE},
        comment="Tasks of the new revision beside the service, with its network and load balancer settings. The "
        "service is not changed until they prove healthy.",
        # The canary's progress starts as a first Wait of 30 s before the first check.
        selector={"taskArns.$": "$.taskArns", "startedAt.$": "$.startedAt", "progress": {"waitSeconds": 30}},
        result="$.canary",
        catch=CANARY_RUNS,
        next=S.WAIT_FOR_CANARY,
    )
    states[S.WAIT_FOR_CANARY] = {
        "Type": "Wait",
        "Comment": "As long as the last check asked: until a starting task can be up, the target groups can call it "
        "healthy, or half the healthy window has passed.",
        "SecondsPath": "$.canary.progress.waitSeconds",
        "Next": S.CHECK_CANARY,
    }
    states[S.CHECK_CANARY] = lambda_task(
        "Canary",
        {
            "action": "check",
            "taskDefinitionArn.$": NEW_REVISION,
            "canary.$": "$.render.canary",
            "started.$": "$.canary",
            "progress.$": "$.canary.progress",
            "timeoutSeconds.$": "$.render.timeouts.canary",
            **ECS_SERVICE,
        },
        comment="RUNNING (and HEALTHY with container health checks), then registered in every target group of the "
        "service and healthy there for healthyForSeconds; initial is not a failure, unhealthyThreshold "
        "non-healthy observations in a row are.",
        result="$.canary.progress",
        catch=CANARY_RUNS,
        next=S.IS_CANARY_HEALTHY,
    )
    states[S.IS_CANARY_HEALTHY] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.canary.progress.state", "StringEquals": "PASSED", "Next": S.UPDATE_SERVICE}],
        "Default": S.WAIT_FOR_CANARY,
    }
    states[S.REMOVE_FAILED_CANARY] = lambda_task(
        "Canary",
        {"action": "remove", "taskDefinitionArn.$": NEW_REVISION, **ECS_SERVICE},
        comment="Deregistered and stopped at once: a failed canary must not keep serving. Retried for up to an "
        "hour while anything of it is left (PATIENT_RETRY).",
        result=None,
        patient=True,
        catch=[catch(S.RELEASE_LOCK_AFTER_FAILED_CLEANUP, "$.cleanupFailure")],
        next=S.RELEASE_LOCK_AFTER_FAILURE,
    )

    # -------------------------------------------------------------------- the change, the bake and the clean-up
    states[S.UPDATE_SERVICE] = lambda_task(
        "UpdateService",
        {
            **ECS_SERVICE,
            "taskDefinitionArn.$": NEW_REVISION,
            "strategy.$": "$.render.strategy",
            "timeoutSeconds.$": "$.render.timeouts.deployment",
        },
        result="$.deployment",
        catch=AFTER_CHANGE,
        next=S.WAIT_FOR_DEPLOYMENT,
    )
    states[S.WAIT_FOR_DEPLOYMENT] = wait_for_ecs(
        "deployment",
        NEW_REVISION,
        {"strategy.$": "$.render.strategy", "targetGroups.$": "$.render.targetGroups"},
        S.HAS_BAKE,
    )
    states[S.HAS_BAKE] = {
        "Type": "Choice",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.render.bakeSeconds", "IsPresent": True},
                    {"Variable": "$.render.bakeSeconds", "NumericGreaterThan": 0},
                ],
                "Next": S.BAKE,
            }
        ],
        "Default": S.DID_CANARY_RUN,
    }
    bake = {
        **ECS_SERVICE,
        "taskDefinitionArn.$": NEW_REVISION,
        "alarms.$": "$.render.alarms",
        "bakeSeconds.$": "$.render.bakeSeconds",
    }
    states[S.BAKE] = lambda_wait(
        "Bake",
        {"token.$": TASK_TOKEN, **bake},
        comment="Waits bakeSeconds on a task token. An alarm of the health gates entering ALARM fails it at once "
        "(AlarmTriggered, via CloudWatch's state change event) and the service is rolled back; the timeout "
        "running out is the bake passing.",
        timing={"TimeoutSecondsPath": "$.render.bakeSeconds"},
        result="$.bake",
        patient=True,
        # States.Timeout is the bake's time being up: not a failure, and never retried (NEVER_AND_NOT_A_TIMEOUT).
        catch=[catch(S.CHECK_ALARMS, "$.bake", ("States.Timeout",)), *AFTER_CHANGE],
        next=S.CHECK_ALARMS,
    )
    states[S.CHECK_ALARMS] = lambda_task(
        "Bake",
        {"action": "finish", **bake},
        comment="The bake's time is up: one last look at the alarms, so a lost ALARM event cannot let the bake pass "
        "with an alarm firing.",
        result="$.bake",
        patient=True,
        catch=AFTER_CHANGE,
        next=S.DID_CANARY_RUN,
    )
    states[S.DID_CANARY_RUN] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.render.strategy", "StringEquals": "canary", "Next": S.DEREGISTER_CANARY}],
        "Default": S.RELEASE_LOCK,
    }
    states[S.DEREGISTER_CANARY] = {
        **lambda_task(
            "Canary",
            {"action": "deregister", "taskDefinitionArn.$": NEW_REVISION, "started.$": "$.canary", **ECS_SERVICE},
            result="$.canaryRemoval",
            catch=[catch(S.STOP_CANARY, "$.canaryRemovalFailure")],
            next=S.DRAIN_CANARY,
        ),
        "Comment": "If taking it out fails, the canary is still stopped.",
    }
    states[S.DRAIN_CANARY] = {
        "Type": "Wait",
        "Comment": "The target groups' deregistration delay, so in-flight requests finish.",
        "SecondsPath": "$.canaryRemoval.drainSeconds",
        "Next": S.STOP_CANARY,
    }
    states[S.STOP_CANARY] = lambda_task(
        "Canary",
        {"action": "stop", **ECS_SERVICE},
        comment="Stops the canary, and takes out whatever of it is still registered. Retried for up to an hour "
        "while anything of it is left (PATIENT_RETRY): `Deployed` is never reported with a canary still serving.",
        result=None,
        patient=True,
        catch=[catch(S.RELEASE_LOCK_DEPLOYED_CLEANUP_FAILED, "$.cleanupFailure")],
        next=S.RELEASE_LOCK,
    )
    states[S.RELEASE_LOCK] = {
        # Records the deploy (what a rollback request goes back to) and returns its summary, the output.
        **lambda_task(
            "Lock",
            {"action": "release", **LOCK, "deployed": True, "request.$": "$", "startedAt.$": "$$.Execution.StartTime"},
            result="$.released",
            service=RELEASE_RETRY,
            next=S.DEPLOYED,
        ),
        "Catch": [catch(S.DEPLOYED_LOCK_NOT_RELEASED)],
    }
    states[S.DEPLOYED] = {
        "Type": "Succeed",
        "Comment": "The execution's output is the deploy's summary: service, from and to revision, images, strategy, "
        "duration and artefact keys.",
        "OutputPath": "$.released.summary",
    }

    # -------------------------------------------------------------------- a failure before the service changed
    states[S.RELEASE_LOCK_AFTER_FAILURE] = lambda_task(
        "Lock",
        RELEASE,
        result=None,
        service=RELEASE_RETRY,
        then=whatever_happens(S.DEPLOY_FAILED, "lockFailure"),
    )
    states[S.DEPLOY_FAILED] = {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}

    # -------------------------------------------------------------------- a failure after it changed: the rollback
    states[S.ROLL_BACK] = lambda_task(
        "Rollback",
        {"action": "start", **ROLLBACK, "timeoutSeconds.$": "$.render.timeouts.rollback"},
        comment="Every failure after the service was updated ends here: back to the revision (and desired count) it "
        "ran before. ECS's own rollback is waited for; an in-flight deployment is stopped with ROLLBACK; "
        "otherwise the service is updated.",
        result="$.rollback",
        retry=ROLLBACK_RETRY,
        catch=ROLLBACK_BROKE,
        next=S.WAIT_FOR_ROLLBACK,
    )
    states[S.WAIT_FOR_ROLLBACK] = wait_for_ecs(
        "rollback", "$.render.previousTaskDefinitionArn", {}, S.DEREGISTER_FAILED_REVISION
    )
    states[S.DEREGISTER_FAILED_REVISION] = lambda_task(
        "Rollback",
        {
            "action": "finish",
            "method.$": "$.rollback.method",
            "keepFailedRevisions.$": "$.render.keepFailedRevisions",
            **ROLLBACK,
        },
        comment="Removes whatever is left of the canary (retried for up to 55 minutes while anything of it is: "
        "`Rolled back` is never reported with a canary serving), then retires the failed revision.",
        result="$.report",
        patient=True,
        catch=[catch(S.RELEASE_LOCK_AFTER_FAILED_CLEANUP, "$.cleanupFailure", ("CleanupIncomplete",)), *ROLLBACK_BROKE],
        next=S.RELEASE_LOCK_AFTER_ROLLBACK,
    )
    states[S.RELEASE_LOCK_AFTER_ROLLBACK] = lambda_task(
        "Lock",
        RELEASE,
        result=None,
        service=RELEASE_RETRY,
        then=whatever_happens(S.ROLLED_BACK, "unlockFailure"),
    )
    states[S.ROLLED_BACK] = {
        "Type": "Fail",
        "Comment": "The new revision failed; the service is stable on the revision it ran before.",
        "Error": errors.RolledBack.__name__,
        "CausePath": "$.report.cause",
    }
    states[S.EXPLAIN_FAILED_ROLLBACK] = lambda_task(
        "Rollback",
        {"action": "explain", "rollbackFailure.$": "$.rollbackFailure", **ROLLBACK},
        result="$.report",
        catch=[catch(S.RELEASE_LOCK_AFTER_FAILED_ROLLBACK, "$.explainFailure")],
        next=S.IS_SERVICE_BACK,
    )
    states[S.IS_SERVICE_BACK] = {
        "Type": "Choice",
        "Comment": "ECS may have finished the rollback on its own while Ferry's watch of it failed: then the "
        "rollback did not fail, and the execution ends `Rolled back` as any other.",
        "Choices": [
            {
                # Once: the rollback's own last step then removes the canary and retires the failed revision.
                "And": [
                    {"Variable": "$.report.recovered", "BooleanEquals": True},
                    {"Variable": "$.rollback.method", "IsPresent": True},
                    {"Not": {"Variable": "$.recoveredRollback", "IsPresent": True}},
                ],
                "Next": S.FINISH_RECOVERED_ROLLBACK,
            },
            # Back, but the rollback's last step cannot finish it (it failed again, or the rollback never
            # started): `Rolled back`, with the explanation's Cause.
            {"Variable": "$.report.recovered", "BooleanEquals": True, "Next": S.RELEASE_LOCK_AFTER_ROLLBACK},
            # Back, but the canary may still serve: `Clean-up did not finish`, with the explanation's Cause.
            {"Variable": "$.report.cleanupUnfinished", "BooleanEquals": True, "Next": S.NOTE_UNFINISHED_CLEANUP},
        ],
        "Default": S.RELEASE_LOCK_AFTER_FAILED_ROLLBACK,
    }
    states[S.NOTE_UNFINISHED_CLEANUP] = {
        "Type": "Pass",
        "Comment": "The explanation's Cause becomes the clean-up's failure, which `Clean-up did not finish` reports.",
        "Parameters": {"Error": errors.CleanupIncomplete.__name__, "Cause.$": "$.report.cause"},
        "ResultPath": "$.cleanupFailure",
        "Next": S.RELEASE_LOCK_AFTER_FAILED_CLEANUP,
    }
    states[S.FINISH_RECOVERED_ROLLBACK] = {
        "Type": "Pass",
        "Comment": "Noted, so the rollback's last step is tried once more, not in a loop.",
        "Result": True,
        "ResultPath": "$.recoveredRollback",
        "Next": S.DEREGISTER_FAILED_REVISION,
    }
    states[S.RELEASE_LOCK_AFTER_FAILED_ROLLBACK] = lambda_task(
        "Lock",
        RELEASE,
        result=None,
        service=RELEASE_RETRY,
        then=whatever_happens(S.IS_ROLLBACK_EXPLAINED, "unlockFailure"),
    )
    states[S.IS_ROLLBACK_EXPLAINED] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.report.cause", "IsPresent": True, "Next": S.ROLLBACK_FAILED}],
        "Default": S.ROLLBACK_FAILED_UNEXPLAINED,
    }
    states[S.ROLLBACK_FAILED] = {"Type": "Fail", "Error": errors.RollbackFailed.__name__, "CausePath": "$.report.cause"}
    states[S.ROLLBACK_FAILED_UNEXPLAINED] = {
        "Type": "Fail",
        "Error": errors.RollbackFailed.__name__,
        "Cause": "The new revision failed and so did the rollback; Ferry could not even describe the service. A person "
        "must check the ECS service now and put it back on its previous revision (see this execution's "
        "history for both errors).",
    }
    # ------------------------------------------------------------ a clean-up that ran out of its hour of retries
    states[S.RELEASE_LOCK_AFTER_FAILED_CLEANUP] = lambda_task(
        "Lock",
        RELEASE,
        result=None,
        service=RELEASE_RETRY,
        then=whatever_happens(S.CLEANUP_FAILED, "unlockFailure"),
    )
    states[S.RELEASE_LOCK_DEPLOYED_CLEANUP_FAILED] = lambda_task(
        "Lock",
        {"action": "release", **LOCK, "deployed": True, "request.$": "$", "startedAt.$": "$$.Execution.StartTime"},
        comment="The service runs the new revision: the deploy is recorded as for `Deployed`.",
        result="$.released",
        service=RELEASE_RETRY,
        then=whatever_happens(S.CLEANUP_FAILED, "unlockFailure"),
    )
    states[S.CLEANUP_FAILED] = {
        "Type": "Fail",
        "Comment": "The canary could not be removed within an hour: the Cause names each task and target left. The "
        "execution-ended function and the reaper go on trying.",
        "Error": errors.CleanupIncomplete.__name__,
        "CausePath": "$.cleanupFailure.Cause",
    }
    states[S.DEPLOYED_LOCK_NOT_RELEASED] = {
        "Type": "Fail",
        "ErrorPath": "$.failure.Error",
        "CausePath": "$.failure.Cause",
        "Comment": "The service runs the new revision; the lock expires by itself or is taken over by the next deploy "
        "once this execution has ended.",
    }

    return {
        "Comment": "Ferry: deploy one ECS service safely. Every failure after the lock is taken releases it and ends "
        "in a Fail state that says what broke.",
        "StartAt": S.CHECK_REQUEST,
        "States": states,
    }


def render() -> str:
    """deploy.asl.json's text: what this file generates."""
    return json.dumps(definition(), indent=2, ensure_ascii=False) + "\n"


PICTURE = ROOT / "docs" / "state-machine.md"


def picture() -> str:
    """docs/state-machine.md: the state machine drawn as the `ferry history --graph` picture of a run is, without
    a run (ferry_cli.graph draws it: the dev environment has it; Lambda never runs this)."""
    if str(ROOT / "cli") not in sys.path:
        sys.path.insert(0, str(ROOT / "cli"))
    from ferry_cli import graph

    return (
        "# The deploy state machine\n\n"
        "Generated by `python statemachine/build.py` from the same source as `statemachine/deploy.asl.json`; "
        "solid arrows are the next state or a choice, dotted ones a Catch. `ferry history EXECUTION --graph FILE` "
        "draws the same picture with a run's path marked.\n\n"
        "```mermaid\n" + graph.mermaid(definition()) + "\n```\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff if a committed file differs from what this generates",
    )
    args = parser.parse_args(argv)
    stale = 0
    for path, text in ((OUTPUT, render()), (PICTURE, picture())):
        name = path.relative_to(ROOT).as_posix()
        if not args.check:
            path.write_text(text)
            print(f"wrote {name}")
            continue
        committed = path.read_text() if path.exists() else ""
        if committed == text:
            print(f"{name} is what statemachine/build.py generates")
            continue
        stale = 1
        sys.stdout.writelines(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{name} (committed)",
                f"{name} (generated)",
            )
        )
        print(
            f"\n{name} is not what statemachine/build.py generates: run `python statemachine/build.py` and commit "
            "what it writes.",
            file=sys.stderr,
        )
    return stale


if __name__ == "__main__":
    sys.exit(main())
