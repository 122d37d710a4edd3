"""Faults in the real state machine: AWS throttling and 5xx, crashed and timed-out handlers, interrupted
canaries, an unavailable lock table. Whatever goes wrong, the deploy either completes or fails readably,
and never leaves the service half-way, a canary running or a lock held.

The faults come from `ferry_cli.sandbox.faults.Faults` (API errors answered to the handlers' own clients,
handler crashes and Lambda timeouts, tasks stopped by ECS), deterministic for a seed.

Every Lambda step retries a handler that crashed or timed out (Error `InjectedCrash`, `Sandbox.Timedout`)
twice, and never retries one of Ferry's own verdicts: the first test checks that of the ASL itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
import yaml

from ferry import aws
from ferry import errors
from ferry_cli.sandbox.faults import ApiFault, Faults, LambdaFault, state_step
from ferry_cli.sandbox.run import Delivery, deliver_all, summarise, world_session
from ferry_cli.sandbox.sandbox import REPO_ROOT

from .conftest import push_event

SPEED = 240.0
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
OLD = ("web:1", f"{REGISTRY}/web:v1")
NEW = ("web:2", f"{REGISTRY}/web@sha256:" + hashlib.sha256(b"web:v2").hexdigest())

WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
ROLLING = WEB + "strategy: {type: rolling}\n"
CANARY = WEB + "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
# Every step of a deploy: the lock, render, verify, register, a migration, the canary, the update, the wait
# for ECS, a bake and its last look at the alarms, the canary's removal and the release.
# (The bake outlasts the functions' 60 s timeout, so a timed-out bake invocation is not the bake ending.)
EVERY_STEP = (
    CANARY + "healthGates: {alarms: [web-5xx], bakeSeconds: 90}\n"
    "migrations: [{name: migrate, container: app, command: [bin/rails, 'db:migrate']}]\n"
)
BAKED = ROLLING + "healthGates: {alarms: [web-5xx], bakeSeconds: 120}\n"

# The state each step (engine.state_step, plus the wait's phase) runs in.
STATE_OF_STEP = {
    "LockFunction:acquire": "Take the deploy lock for this service",
    "RenderFunction": "Render the new task definition and diff it",
    "VerifyFunction": "Verify secrets, images and roles",
    "RegisterFunction": "Register the new revision",
    "MigrateFunction": "Run the migration task and wait for it to stop",
    "CanaryFunction:start": "Start the canary tasks",
    "CanaryFunction:check": "Check the canary",
    "UpdateServiceFunction": "Update the service to the new revision",
    "CheckDeploymentFunction:deployment": "Wait for ECS to finish the deployment",
    "BakeFunction": "Bake while watching the alarms",
    "BakeFunction:finish": "Check the alarms as the bake ends",
    "CanaryFunction:deregister": "Take the canary out of the target groups",
    "CanaryFunction:stop": "Stop the canary tasks",
    "LockFunction:release": "Release the deploy lock",
}
ROLLBACK_STEPS = {
    "RollbackFunction:start": "Roll back to the previous revision",
    "CheckDeploymentFunction:rollback": "Wait for ECS to finish the rollback",
    "RollbackFunction:finish": "Deregister the failed revision",
    "LockFunction:release": "Release the deploy lock after the rollback",
}


def step(function: str, event: Any) -> str | None:
    """engine.state_step, telling the wait for the deployment from the wait for the rollback."""
    found = state_step(function, event)
    if found == "CheckDeploymentFunction":
        return f"{found}:{event.get('phase')}"
    return found


def only(steps) -> Any:
    wanted = set(steps)
    return lambda function, event: s if (s := step(function, event)) in wanted else None


# ----------------------------------------------------------------------------- the ASL's Retry blocks
ASL = json.loads((REPO_ROOT / "statemachine" / "deploy.asl.json").read_text())

# The Retry of every Task state that invokes a Lambda function in statemachine/deploy.asl.json: Lambda's
# service errors (its own client timeout included); a function Lambda cannot invoke yet (idle for weeks, or
# still being provisioned: Lambda.CodeArtifactUserPendingException, Lambda.ResourceNotReadyException) for more
# than two minutes; then Ferry's verdicts (and, where a state has a TimeoutSeconds or a heartbeat, States.Timeout)
# never; then anything else twice: a handler that crashed (its exception's class name), a function timeout
# (Sandbox.Timedout, or Lambda.Unknown with a plain-text Cause), an AWS error that outlasted the client's
# retries (ClientError). A state's own retriers (LockReleased, States.HeartbeatTimeout, LockUnavailable) come
# first.
VERDICTS = [verdict.__name__ for verdict in errors.VERDICTS]  # never retried: ferry.errors says which
COLD_FUNCTION = ["Lambda.CodeArtifactUserPendingException", "Lambda.ResourceNotReadyException"]
LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "Lambda.ClientExecutionTimeoutException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    },
    {"ErrorEquals": COLD_FUNCTION, "IntervalSeconds": 10, "MaxAttempts": 5, "BackoffRate": 2.0, "MaxDelaySeconds": 60},
    {"ErrorEquals": VERDICTS, "MaxAttempts": 0},
    {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": 5,
        "MaxAttempts": 2,
        "BackoffRate": 2.0,
        "JitterStrategy": "FULL",
    },
]

# The canary's removal and the watchers of ECS retry anything but a verdict 16 times, 5 s to 5 minutes apart (55
# minutes at most): a removal must not give up while the canary still serves (tests/statemachine/test_cleanup.py),
# and a watcher that fails is no evidence against the deploy (statemachine/build.py PATIENT_RETRY).
PATIENT_STATES = (
    "Remove the canary after the failure",
    "Stop the canary tasks",
    "Wait for ECS to finish the deployment",
    "Wait for ECS to finish the rollback",
    "Bake while watching the alarms",
    "Check the alarms as the bake ends",
    "Deregister the failed revision",
    "Run the migration task and wait for it to stop",
)
PATIENT_RETRY = {
    "ErrorEquals": ["States.ALL"],
    "IntervalSeconds": 5,
    "MaxAttempts": 16,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 300,
    "JitterStrategy": "FULL",
}


def waits(state: dict[str, Any]) -> bool:
    """A state with its own TimeoutSeconds or heartbeat: the only kind that can raise States.Timeout."""
    return any(k in state for k in ("TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"))


def retry_waits(retrier: dict[str, Any]) -> float:
    """The longest total wait a retrier allows before giving up (no jitter: each interval in full)."""
    interval, total = float(retrier.get("IntervalSeconds", 1)), 0.0
    for _ in range(retrier.get("MaxAttempts", 3)):
        total += min(interval, retrier.get("MaxDelaySeconds", float("inf")))
        interval *= retrier.get("BackoffRate", 2.0)
    return total


def lambda_tasks(states: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every Task state that invokes a Lambda function, Map iterations included (the states themselves)."""
    found = {}
    for name, state in (ASL["States"] if states is None else states).items():
        resource = str(state.get("Resource", ""))
        if state["Type"] == "Task" and ("FunctionArn}" in resource or resource.startswith("arn:aws:states:::lambda:")):
            found[name] = state
        for inner in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if inner:
                found.update(lambda_tasks(inner["States"]))
    return found


def retries(state: dict[str, Any], error: str) -> bool:
    """Whether the state's Retry retries `error` (the first retrier that matches decides)."""
    for retrier in state.get("Retry", []):
        names = retrier["ErrorEquals"]
        if error in names or "States.ALL" in names or ("States.TaskFailed" in names and error != "States.Timeout"):
            return retrier.get("MaxAttempts", 3) > 0
    return False


def not_retrying(error: str, states, asl: dict[str, Any] | None = None) -> list[str]:
    tasks = lambda_tasks((asl or ASL)["States"])
    return [s for s in states if not retries(tasks[s], error)]


def test_every_lambda_step_retries_crashes_and_timeouts_and_never_a_verdict():
    assert set(STATE_OF_STEP.values()) | set(ROLLBACK_STEPS.values()) <= set(lambda_tasks())
    everything = list(lambda_tasks())
    for error in (
        "InjectedCrash",
        "Sandbox.Timedout",
        "Lambda.Unknown",
        "ClientError",
        "Lambda.ClientExecutionTimeoutException",
        "LockUnavailable",
        *COLD_FUNCTION,
    ):
        assert not_retrying(error, everything) == [], error
    for verdict in VERDICTS:  # a verdict is final: only the rollback retries everything
        retried = set(everything) - set(not_retrying(verdict, everything))
        assert retried <= {"Roll back to the previous revision"}, (verdict, retried)
    for name, state in lambda_tasks().items():
        # States.Timeout comes only from a state's own TimeoutSeconds or heartbeat: named only there, and final
        # there (the bake ends on it; the waits fail on it). A Lambda timeout is Sandbox.Timedout or Lambda.Unknown.
        named = any("States.Timeout" in r["ErrorEquals"] for r in state["Retry"])
        assert named == waits(state), name
        if named:
            assert not retries(state, "States.Timeout"), name
        # A function that cannot be invoked yet is waited for more than two minutes, whatever the state.
        [cold] = [r for r in state["Retry"] if r["ErrorEquals"] == COLD_FUNCTION]
        assert retry_waits(cold) >= 120, name
        if name in PATIENT_STATES:  # verdicts never, anything else for up to 55 minutes (statemachine/build.py)
            never = (
                {**LAMBDA_RETRY[2], "ErrorEquals": VERDICTS + ["States.Timeout"]} if waits(state) else LAMBDA_RETRY[2]
            )
            assert state["Retry"][-2:] == [never, PATIENT_RETRY], name
            assert 3000 <= retry_waits(PATIENT_RETRY) <= 3600, retry_waits(PATIENT_RETRY)
        elif (
            name != "Roll back to the previous revision"
        ):  # each ends its Retry with: verdicts never, anything else twice
            expected = [
                {**r, "ErrorEquals": r["ErrorEquals"] + ["States.Timeout"]}
                if r["ErrorEquals"] == VERDICTS and waits(state)
                else r
                for r in LAMBDA_RETRY[1:]
            ]
            assert state["Retry"][-3:] == expected, name


# ----------------------------------------------------------------------------- running and checking
def run(scenario, *events: dict[str, Any], faults: Faults | None = None, hooks=()) -> dict[str, Any]:
    """scenario.run, plus what the invariants need: the service's deployments and the registered revisions."""
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    deliveries = []
    for i, event in enumerate(events):
        path = scenario.dir / f"event-{i}.json"
        path.write_text(json.dumps(event))
        deliveries.append(Delivery("event", path, copy.deepcopy(event)))
    with world_session(world_path, faults=faults, fault_hooks=list(hooks)) as (sandbox, world):
        elb = sandbox.client("elbv2")  # a canary drains for 20 s, not the default 300 s: the same path, sooner
        for group in elb.describe_target_groups()["TargetGroups"]:
            elb.modify_target_group_attributes(
                TargetGroupArn=group["TargetGroupArn"],
                Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "20"}],
            )
        delivered = deliver_all(sandbox, world, deliveries)
        sandbox.wait_for_executions()
        # ECS finishes on its own a deployment it was given: note how long after the execution that took.
        ended = sandbox.clock.now()
        sandbox.clock.run_until(lambda: _settled(sandbox.simulator.services()["prod/web"]), limit=3600)
        settled_after = sandbox.clock.now() - ended
        sandbox.settle_world()  # tasks Ferry stopped finish stopping (a canary drains first)
        summary = summarise(sandbox, delivered)
        summary["settledAfter"] = settled_after
        summary["deployments"] = {k: v["deployments"] for k, v in sandbox.simulator.services().items()}
        summary["revisions"] = sandbox.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
    return summary


def _settled(service: dict[str, Any]) -> bool:
    primary, *others = service["deployments"]
    return (
        primary["status"] == "PRIMARY"
        and primary["rolloutState"] == "COMPLETED"
        and primary["runningCount"] == service["desiredCount"]
        and not any(d["runningCount"] for d in others)
    )


def check_invariants(summary: dict[str, Any], fault: str, *, settling: bool = False) -> dict[str, Any]:
    """What must hold after any fault: one complete revision (old or new) at its desired count, no canary or
    migration task left, no lock held, and a failed execution's Error (or Cause) naming the fault.

    The service must be complete when the execution ends, unless `settling` (ECS was still carrying out a
    deployment Ferry gave it, which it completes on its own)."""
    [execution] = summary["executions"]
    assert settling or summary["settledAfter"] == 0, summary["deployments"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["images"]["app"]) in (OLD, NEW), web
    assert web["images"]["nginx"] == f"{REGISTRY}/nginx:1.27"
    assert web["desiredCount"] == web["runningCount"] == 2, web
    primary, *others = summary["deployments"]["prod/web"]
    assert (primary["status"], primary["taskDefinition"], primary["rolloutState"], primary["runningCount"]) == (
        "PRIMARY",
        web["taskDefinition"],
        "COMPLETED",
        2,
    ), summary["deployments"]
    assert all(d["runningCount"] == 0 for d in others), summary["deployments"]
    assert summary["canaryTasks"] == 0
    assert summary["migrationTasks"]["running"] == 0
    assert summary["locksHeld"] == 0
    if execution["status"] != "SUCCEEDED":
        assert execution["status"] == "FAILED", execution
        assert fault in f"{execution['error']}: {execution['cause']}", execution
    return execution


def deployed(summary: dict[str, Any], fault: str) -> dict[str, Any]:
    execution = check_invariants(summary, fault)
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["states"][-1] == "Deployed"
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["images"]["app"]) == NEW
    return execution


def unchanged(summary: dict[str, Any], fault: str, failed_in: str) -> dict[str, Any]:
    execution = check_invariants(summary, fault)
    assert execution["status"] == "FAILED", execution
    assert failed_in in execution["states"], execution["states"]
    assert execution["states"][-2:] == ["Release the deploy lock after the failure", "Deploy failed"], execution
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["images"]["app"]) == OLD
    return execution


def rolled_back(summary: dict[str, Any], fault: str) -> dict[str, Any]:
    execution = check_invariants(summary, fault)
    assert execution["status"] == "FAILED" and execution["error"] == "RolledBack", execution
    assert execution["states"][-1] == "Rolled back"
    assert "the service is stable on web:1" in execution["cause"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["images"]["app"]) == OLD
    return execution


def failures(summary: dict[str, Any]) -> list[dict[str, Any]]:
    [execution] = summary["executions"]
    return [r for r in summary["histories"][execution["name"]] if r["type"] in ("LambdaFunctionFailed", "TaskFailed")]


# ----------------------------------------------------------------------------- AWS API errors
THROTTLED = ("ThrottlingException", "ThrottlingException", "ServiceUnavailable")  # 2 in 3 throttled, 1 in 3 a 503
RATE = 0.3


def test_ecs_elb_and_ecr_throttling_throughout_a_deploy_is_absorbed_by_the_clients_retries(scenario):
    scenario.config("web", CANARY)
    faults = Faults([ApiFault(service, RATE, THROTTLED) for service in ("ecs", "elbv2", "ecr")], seed=7)
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    deployed(summary, "ThrottlingException")
    assert failures(summary) == []  # no step failed, so no state-level retry was needed
    report = summary["faults"]
    for service in ("ecs", "elbv2", "ecr"):
        counted = report["services"][service]
        assert counted["injected"] > 0, (service, counted)
        assert counted["gaveUp"] == 0, (service, counted)  # every throttled call succeeded on a later attempt
        # Bounded: each injected error cost exactly one more attempt, no call took more than the clients allow,
        # and at a 30% fault rate the attempts stay well under twice the calls (1 / 0.7 = 1.43 expected).
        assert counted["attempts"] == counted["calls"] + counted["injected"], (service, counted)
        assert counted["maxAttempts"] <= aws.MAX_ATTEMPTS, (service, counted)
        assert counted["attempts"] <= 2 * counted["calls"], (service, counted)
    assert report["maxAttemptsPerCall"] >= 2  # some call was throttled more than once, and still got through
    # Each Task state invoked its function once: as many Lambda invocations as a deploy without faults.
    [execution] = summary["executions"]
    types = [r["type"] for r in summary["histories"][execution["name"]]]
    assert types.count("LambdaFunctionScheduled") + types.count("TaskScheduled") == types.count("TaskStateEntered")


def test_an_unavailable_lock_table_stops_the_deploy_before_anything_changes(scenario):
    errors = ("ServiceUnavailable", "InternalServerError", "ProvisionedThroughputExceededException")
    faults = Faults([ApiFault("dynamodb", 1.0, errors)], seed=3)
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    execution = unchanged(summary, "LockUnavailable", "Take the deploy lock for this service")
    assert execution["states"] == [
        "Check the request",
        "Take the deploy lock for this service",
        "Release the deploy lock after the failure",
        "Deploy failed",
    ]
    assert execution["error"] == "LockUnavailable"
    # The first write is the execution's journal, opened before the lock is taken (ferry.lifecycle.journal).
    assert execution["cause"].startswith("could not write the deploy journal of web-v2-")
    assert " in table ferry-sandbox-locks: " in execution["cause"]
    assert f"(reached max retries: {aws.MAX_ATTEMPTS - 1})" in execution["cause"]
    assert "fault injected by the sandbox into dynamodb" in execution["cause"]
    assert summary["revisions"] == ["arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"]  # none registered
    counted = summary["faults"]["services"]["dynamodb"]
    assert counted["gaveUp"] >= 1 and counted["maxAttempts"] == aws.MAX_ATTEMPTS


def test_the_lock_table_unreachable_while_the_deploy_is_recorded_is_retried_by_the_release(scenario):
    # The release records the deploy (UpdateItem on deployed#prod/web) before it deletes the lock. The table
    # is unreachable for one whole call: botocore gives up after its attempts, the state retries.
    scenario.config("web", ROLLING)
    faults = Faults(
        [
            ApiFault(
                "dynamodb",
                1.0,
                ("ConnectTimeout",),
                operations=("UpdateItem",),
                body_contains="deployed#prod/web",
                limit=aws.MAX_ATTEMPTS,
            )
        ]
    )
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    execution = deployed(summary, "LockUnavailable")
    assert execution["states"][-2:] == ["Release the deploy lock", "Deployed"]
    [failed] = failures(summary)
    assert failed["state"] == "Release the deploy lock"
    # The deploy is done: the Cause says so first, then what the table said.
    assert failed["detail"].startswith(
        "LockUnavailable: prod/web is deployed: the service runs web:2. Only the deploy's record and lock are stuck"
    )
    assert summary["faults"]["services"]["dynamodb"]["gaveUp"] == 1


# ----------------------------------------------------------------------------- crashed and timed-out handlers
# Each step's first invocation crashes, its second times out, its third goes through: a crash and a timeout
# in a row, which the recommended two retries absorb.
CRASH_THEN_TIME_OUT = ("InjectedCrash", "Sandbox.Timedout")


def crash_then_time_out(steps) -> Faults:
    return Faults(
        lambdas=[LambdaFault("crash", step=only(steps), times=1), LambdaFault("timeout", step=only(steps), times=1)]
    )


def test_a_handler_crashing_then_timing_out_in_every_step_is_retried_and_the_deploy_completes(scenario):
    scenario.config("web", EVERY_STEP)
    faults = crash_then_time_out(STATE_OF_STEP)
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    execution = deployed(summary, "InjectedCrash")
    # Every step failed twice, then went through: all the state machine's own work, nothing left to the
    # execution-ended function (the canary was stopped by "Stop the canary tasks", the lock released).
    assert sorted(f["step"] for f in faults.lambda_faults) == sorted(2 * list(STATE_OF_STEP))
    assert [r["detail"].split(":")[0] for r in failures(summary)] == len(STATE_OF_STEP) * list(CRASH_THEN_TIME_OUT)
    assert execution["states"][-3:] == ["Stop the canary tasks", "Release the deploy lock", "Deployed"]
    assert summary["migrationTasks"]["started"] == 1  # a retried Migrate found its task instead of starting another
    assert summary["revisions"][-1].endswith("/web:2")  # a retried Register registered nothing more


def rollback_through(scenario, faults: Faults) -> dict[str, Any]:
    """A deploy whose bake fails at once (its alarm is in ALARM), so every rollback step runs, under `faults`."""
    scenario.config("web", BAKED)
    scenario.world["alarms"] = {"web-5xx": "ALARM"}
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    rolled_back(summary, "AlarmTriggered")
    return summary


def test_a_handler_crashing_then_timing_out_in_every_step_of_a_rollback_is_retried(scenario):
    faults = crash_then_time_out(ROLLBACK_STEPS)
    rollback_through(scenario, faults)
    assert sorted(f["step"] for f in faults.lambda_faults) == sorted(2 * list(ROLLBACK_STEPS))


def cold_then_unknown_timeout(steps) -> Faults:
    """Each step's function cannot be invoked for its first four attempts (idle for weeks: Lambda answers
    CodeArtifactUserPendingException, and the state waits 10 + 20 + 40 + 60 s = 130 s), then times out once on a
    runtime that reports no error type (Lambda.Unknown, with a plain-text Cause), then goes through."""
    return Faults(
        lambdas=[
            LambdaFault("unavailable", step=only(steps), times=4),
            LambdaFault("timeout", step=only(steps), times=1, error="Lambda.Unknown"),
        ]
    )


def test_a_cold_function_then_a_timeout_without_an_error_type_in_every_step_is_retried(scenario):
    scenario.config("web", EVERY_STEP)
    faults = cold_then_unknown_timeout(STATE_OF_STEP)
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    deployed(summary, "Lambda.Unknown")
    assert sorted(f["step"] for f in faults.lambda_faults) == sorted(5 * list(STATE_OF_STEP))
    seen = [r["detail"] for r in failures(summary)]
    assert [d.split(":")[0] for d in seen] == len(STATE_OF_STEP) * (
        4 * ["Lambda.CodeArtifactUserPendingException"] + ["Lambda.Unknown"]
    )
    unknown = [d for d in seen if d.startswith("Lambda.Unknown")]
    assert all("The cause could not be determined because Lambda did not return an error type" in d for d in unknown)
    assert summary["migrationTasks"]["started"] == 1


def test_a_cold_function_then_a_timeout_without_an_error_type_in_every_step_of_a_rollback_is_retried(scenario):
    faults = cold_then_unknown_timeout(ROLLBACK_STEPS)
    rollback_through(scenario, faults)
    assert sorted(f["step"] for f in faults.lambda_faults) == sorted(5 * list(ROLLBACK_STEPS))


@pytest.mark.parametrize(
    ("kind", "steps", "outcome"),
    [
        ("crash", ["CanaryFunction:check"], "unchanged"),
        ("timeout", ["UpdateServiceFunction"], "rolled back"),  # the service changed each time, the answer never came
        ("crash", ["BakeFunction"], "rolled back"),
    ],
    ids=["canary-check", "update-service-timeout", "bake"],
)
def test_a_handler_failing_every_time_fails_the_deploy_readably_and_after_the_change_rolls_back(
    scenario, kind, steps, outcome
):
    scenario.config(
        "web", (CANARY if "CanaryFunction:check" in steps else BAKED if "BakeFunction" in steps else ROLLING)
    )
    faults = Faults(lambdas=[LambdaFault(kind, step=only(steps), times=None)])
    summary = run(scenario, push_event("web", "v2"), faults=faults)
    error = "InjectedCrash" if kind == "crash" else "Sandbox.Timedout"
    state = STATE_OF_STEP[steps[0]]
    if outcome == "unchanged":
        execution = unchanged(summary, error, state)
        assert execution["error"] == error
        assert execution["cause"].startswith(f"the sandbox crashed this invocation of {steps[0].split(':')[0]}")
    else:
        execution = rolled_back(summary, error)
        assert execution["cause"].startswith(f"web:2 failed: {error}: "), execution["cause"]
    # Tried once and retried twice (the ASL's States.ALL retrier), then the state failed for good; a watcher of ECS
    # (the bake) is retried 16 times (PATIENT_RETRY) before its failure rolls the service back.
    assert len(faults.lambda_faults) == (17 if state in PATIENT_STATES else 3)


# ----------------------------------------------------------------------------- ECS stops the canary
def test_a_canary_stopped_by_ecs_mid_health_check_is_a_canary_failure_not_a_hang(scenario):
    # A Spot interruption; a host retirement (stop code TerminationNotice) takes the same path.
    stop_code, reason = "SpotInterruption", "Your Spot Task was interrupted."
    scenario.config("web", CANARY.replace("healthyForSeconds: 60", "healthyForSeconds: 120"))
    faults = Faults()
    checks = []

    def interrupt_once_registered(function: str, event: dict) -> None:
        if function == "CanaryFunction" and event.get("action") == "check":
            checks.append((event.get("progress") or {}).get("registered", False))
            if checks[-1] and not faults.interrupted:  # in the target groups, counting its healthy time
                faults.interrupt_task(event["started"]["taskArns"][0], stop_code, reason)

    summary = run(scenario, push_event("web", "v2"), faults=faults, hooks=[interrupt_once_registered])
    execution = unchanged(summary, stop_code, "Check the canary")
    assert execution["states"][-3] == "Remove the canary after the failure"
    assert execution["error"] == "CanaryCrashed"
    assert execution["cause"].startswith(f"a canary task of web:2 stopped: {stop_code}: {reason}"), execution["cause"]
    assert execution["cause"].endswith("The service was not changed.")
    assert faults.interrupted
    # Noticed at once: the check that saw the task on its way down (draining, then stopping: 15 s), then one
    # or two more until it had stopped.
    interrupted_at = checks.index(True)
    assert len(checks) - interrupted_at <= 3, checks
