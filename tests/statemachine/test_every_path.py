"""Every path of the state machine, walked in one sandbox, with no States.Runtime error on any of them.

On AWS a path that does not resolve (a Parameters or Choice path naming a key the state does not have) fails
the execution at once with States.Runtime, skipping every Retry and Catch: no rollback, no lock release. The
sandbox does the same (engine._callback_patches), so a path a step's output lacks can only hide in a path no
test walks. Here every way a deploy can go runs at once, one service each, and together they enter every
state of statemachine/deploy.asl.json.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_cli import history
from ferry_cli.sandbox.faults import ApiFault, Faults
from ferry_cli.sandbox.run import world_session
from ferry_cli.sandbox.sandbox import REPO_ROOT

from .conftest import EXAMPLE, push_event

ASL = json.loads((REPO_ROOT / "statemachine" / "deploy.asl.json").read_text())
BASE = "cluster: prod\nservice: {name}\ncontainers: {{app: {{repository: {name}}}}}\n"
CANARY = "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
ROLLING = "strategy: {type: rolling}\n"
BAKE = "healthGates: {alarms: [web-5xx], bakeSeconds: 120}\n"
MIGRATE = "migrations: [{name: migrate, container: app, command: [bin/migrate], timeoutSeconds: 600}]\n"
SLOW_ROLLOUT = "timeouts: {deployment: 120}\n"

# service -> (its config, the image behaviour, how its execution ends: (status, last state, error))
PATHS: dict[str, tuple[str, dict[str, Any], tuple[str, str, str | None]]] = {
    "happy": (CANARY + BAKE + MIGRATE, {}, ("SUCCEEDED", "Deployed", None)),
    "plain": (ROLLING, {}, ("SUCCEEDED", "Deployed", None)),
    "crash": (CANARY, {"exitCode": 1}, ("FAILED", "Deploy failed", "CanaryCrashed")),
    "undone": (ROLLING, {"exitCode": 1}, ("FAILED", "Rolled back", "RolledBack")),
    "stuck": (
        ROLLING + SLOW_ROLLOUT,
        {"startSeconds": 900},
        ("FAILED", "Rollback failed: a person must act", "RollbackFailed"),
    ),
    "mute": (
        ROLLING + SLOW_ROLLOUT,
        {"startSeconds": 900},
        ("FAILED", "Rollback failed and could not be explained: a person must act", "RollbackFailed"),
    ),
    "locked": (ROLLING, {}, ("FAILED", "Deployed, but the lock was not released", "LockUnavailable")),
    # The rollback's watcher fails every time while ECS's circuit breaker rolls the service back by itself.
    "unwatched": (ROLLING, {"exitCode": 1}, ("FAILED", "Rolled back", "RolledBack")),
    # Its canary passes, its service's tasks crash, the rollback's watcher fails every time and its canary can
    # never be stopped: back on its revision, but the canary is not known to be removed.
    "unfinished": (
        CANARY,
        {"exitCode": 1, "tasks": "service"},
        ("FAILED", "Clean-up did not finish: a person must act", "CleanupIncomplete"),
    ),
    # Their canaries can never be stopped (StopTask fails for good): the clean-up's hour of retries runs out.
    "strand": (CANARY, {}, ("FAILED", "Clean-up did not finish: a person must act", "CleanupIncomplete")),
    "leftover": (
        CANARY + "timeouts: {canary: 120}\n",
        {"startSeconds": 900},
        ("FAILED", "Clean-up did not finish: a person must act", "CleanupIncomplete"),
    ),
}


def all_states(states: dict[str, Any] | None = None) -> set[str]:
    found = set()
    for name, state in (ASL["States"] if states is None else states).items():
        found.add(name)
        for inner in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if inner:
                found |= all_states(inner["States"])
    return found


def broken_rollbacks(function: str, event: dict) -> None:
    """The rollback of `stuck` and `mute` cannot start; `mute`'s cannot even be explained."""
    service = str(event.get("service") or event.get("request", {}).get("service") or "")
    if function == "RollbackFunction" and service in ("stuck", "mute") and event.get("action") == "start":
        raise ConnectionError("ECS endpoint unreachable")
    if function == "RollbackFunction" and service == "mute" and event.get("action") == "explain":
        raise ConnectionError("ECS endpoint unreachable")
    if (
        function == "CheckDeploymentFunction"
        and event.get("ecsService") in ("unwatched", "unfinished")
        and event.get("phase") == "rollback"
    ):
        raise ConnectionError("ECS endpoint unreachable")


def world(folder: Path) -> Path:
    data = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    spec = json.loads((EXAMPLE / "web-task-def.json").read_text())
    data["behaviour"] = {}
    for name, (config, behaviour, _) in [*PATHS.items(), ("queued", (ROLLING, {"startSeconds": 600}, None))]:
        data["ecr"][name] = ["v1", "v2", "v3", "v4"]
        own = copy.deepcopy(spec)
        own["family"] = name
        own["containerDefinitions"][0]["image"] = own["containerDefinitions"][0]["image"].replace("/web:", f"/{name}:")
        (folder / f"{name}-task-def.json").write_text(json.dumps(own))
        data["services"].append(
            {
                "cluster": "prod",
                "name": name,
                "desiredCount": 2,
                "running": {"app": f"{name}:v1", "nginx": "nginx:1.27"},
                "taskDefinition": f"{name}-task-def.json",
                "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
            }
        )
        (folder / "registry" / name).mkdir(parents=True)
        (folder / "registry" / name / "ferry.yaml").write_text(BASE.format(name=name) + config)
        if behaviour:
            data["behaviour"][f"{name}:v2"] = behaviour
    (folder / "web-task-def.json").write_text(json.dumps(spec))
    (folder / "registry" / "web").mkdir(parents=True)
    (folder / "registry" / "web" / "ferry.yaml").write_text((EXAMPLE / "registry" / "web" / "ferry.yaml").read_text())
    (folder / "world.yaml").write_text(yaml.safe_dump(data))
    return folder / "world.yaml"


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("every-path")
    # The record of `locked`'s deploy can never be written: its release fails for good.
    faults = Faults(
        [
            ApiFault(
                "dynamodb",
                1.0,
                ("ServiceUnavailable",),
                operations=("UpdateItem",),
                body_contains="deployed#prod/locked",
            ),
            *(
                ApiFault("ecs", 1.0, operations=("StopTask",), body_contains=f"canary of {n}-")
                for n in ("strand", "leftover", "unfinished")
            ),
        ]
    )
    with world_session(world(folder), faults=faults, fault_hooks=[broken_rollbacks]) as (sandbox, _):
        refused = sandbox.start_execution({"service": 7}, name="refused")
        for name in PATHS:
            sandbox.deliver(push_event(name, "v2", f"push-{name}"))
        # Three pushes in a row while the first deploys: the middle one steps aside for the newest.
        for i, tag in enumerate(("v2", "v3", "v4")):
            sandbox.deliver(push_event("queued", tag, f"queued-{tag}"))
            if i < 2:
                sandbox.clock.sleep(5)  # simulated: the first deploy holds the lock meanwhile
        sandbox.wait_for_executions()
        # `happy` is deployed: ask for it back.
        rolled = sandbox.start_execution({"service": "happy", "action": "rollback"}, name="roll-back-happy")
        sandbox.wait_for_executions()
        found = {}
        for execution in sandbox.executions():
            events = sandbox.history(execution["executionArn"])
            request = json.loads(events[0]["executionStartedEventDetails"]["input"])
            error, cause = history.outcome(events)
            found[execution["name"]] = {
                "service": request.get("service"),
                "status": execution["status"],
                "error": error,
                "cause": cause,
                "states": history.entered_states(events),
                "runtime": [
                    e
                    for e in events
                    if "States.Runtime" in json.dumps(e, default=str)
                    or "States.DataLimitExceeded" in json.dumps(e, default=str)
                ],
            }
        yield {
            "executions": found,
            "refused": refused,
            "rolled": rolled,
            "terminal": list(sandbox.terminal_errors),
            "locksHeld": sandbox.locks_held(),
            "canaries": sandbox.simulator.canary_tasks(),
        }


def by_service(walked: dict[str, Any], service: str) -> list[dict[str, Any]]:
    return [e for e in walked["executions"].values() if e["service"] == service]


def test_no_path_raises_a_terminal_error(walked):
    assert walked["terminal"] == []
    assert {name: e["runtime"] for name, e in walked["executions"].items() if e["runtime"]} == {}


def test_together_the_paths_enter_every_state(walked):
    entered = {s for e in walked["executions"].values() for s in e["states"]}
    assert all_states() - entered == set()


@pytest.mark.parametrize("service", sorted(PATHS))
def test_each_path_ends_as_expected(walked, service):
    status, last, error = PATHS[service][2]
    # `happy` is deployed, then rolled back on request: its first execution is the push's.
    execution = by_service(walked, service)[0]
    assert (execution["status"], execution["states"][-1], execution["error"]) == (status, last, error), execution


def test_a_bad_request_is_refused_and_a_rollback_request_rolls_back_and_an_older_push_steps_aside(walked):
    refused = walked["executions"]["refused"]
    assert refused["states"] == ["Check the request", "Refuse the request"]
    [rolled] = [e for name, e in walked["executions"].items() if name == "roll-back-happy"]
    assert rolled["states"][3:5] == ["Find the revision to roll back to", "Roll back to that revision"]
    assert rolled["states"][-1] == "Deployed"
    queued = by_service(walked, "queued")
    assert sorted(e["states"][-1] for e in queued) == ["Deployed", "Deployed", "Superseded by a newer deploy"]


def test_nothing_is_left_running_except_what_a_person_must_see(walked):
    # The canaries of `strand`, `leftover` and `unfinished`, which StopTask refuses for good: their executions'
    # Cause names them.
    assert walked["canaries"] == 3
    for service in ("strand", "leftover"):
        [execution] = by_service(walked, service)
        assert (
            "is not removed yet (the last attempt: ThrottlingException): canary task arn:aws:ecs:" in execution["cause"]
        ), execution["cause"]
    # Every lock is released: `locked`'s, whose release failed for good, by the execution-ended function.
    assert walked["locksHeld"] == 0
