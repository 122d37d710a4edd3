"""Every step's contract against the state machine: what a state passes is what its step reads, and every path
a later state reads from a step's output is a field of that output.

Each step module (ferry/steps/<step>.py) declares CONTRACTS: action (None for a step with one) -> (its input
model, its output model), both ferry.contract.Model dataclasses. A key the state passes that the model does not
read, a key the model needs that the state does not pass, and a path like `$.render.ecsService` naming a field
no step writes there each fail here; on AWS the last fails the execution with States.Runtime past every Catch.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ferry.contract import Model

REPO_ROOT = Path(__file__).resolve().parents[2]

ASL = json.loads((REPO_ROOT / "statemachine" / "deploy.asl.json").read_text())
MODULES = {
    "Lock": "lock",
    "Render": "render",
    "Verify": "verify",
    "Register": "register",
    "Migrate": "migrate",
    "Canary": "canary",
    "UpdateService": "update_service",
    "CheckDeployment": "check_deployment",
    "Bake": "bake",
    "Rollback": "rollback",
}
PATH = re.compile(r"^\$\.([A-Za-z0-9_.]+)$")


def states(found: dict[str, Any] | None = None, tree: dict[str, Any] | None = None) -> dict[str, Any]:
    found = {} if found is None else found
    for name, state in (ASL["States"] if tree is None else tree).items():
        found[name] = state
        for inner in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if inner:
                states(found, inner["States"])
    return found


def step_of(state: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(step module, the parameters its function is invoked with) of a Task state that invokes a Ferry function."""
    if state.get("Type") != "Task":
        return None
    parameters = state.get("Parameters") or {}
    resource = state["Resource"]
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        resource, parameters = parameters["FunctionName"], parameters.get("Payload") or {}
    match = re.fullmatch(r"\$\{(\w+)FunctionArn\}", resource)
    return (MODULES[match.group(1)], parameters) if match else None


def contract(module: str, parameters: dict[str, Any]) -> tuple[type[Model], type[Model] | None]:
    contracts = importlib.import_module(f"ferry.steps.{module}").CONTRACTS
    action = parameters.get("action")
    assert action in contracts, f"ferry.steps.{module}.CONTRACTS has no entry for action {action!r}"
    return contracts[action]


TASKS = {name: found for name, state in states().items() if (found := step_of(state))}
CONVERTED = {
    name
    for name, (module, _) in TASKS.items()
    if hasattr(importlib.import_module(f"ferry.steps.{module}"), "CONTRACTS")
}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_a_state_passes_exactly_what_its_step_reads(name):
    module, parameters = TASKS[name]
    model, _ = contract(module, parameters)
    passed = {key.removesuffix(".$") for key in parameters}
    keys = model.keys()
    assert passed - set(keys) == set(), f"{name} passes keys ferry.steps.{module} does not read"
    needed = {key for key, f in keys.items() if f.metadata["required"]}
    assert needed - passed == set(), f"{name} does not pass what ferry.steps.{module} needs"


def writers() -> dict[str, list[tuple[str, type[Model]]]]:
    """ResultPath (without `$.`) -> the states that write a step's output there, with its model."""
    found: dict[str, list[tuple[str, type[Model]]]] = {}
    for name in CONVERTED:
        module, parameters = TASKS[name]
        _, output = contract(module, parameters)
        state = states()[name]
        result = state.get("ResultPath", "$")
        if output is not None and isinstance(result, str) and result.startswith("$."):
            found.setdefault(result[2:], []).append((name, output))
    return found


def read_paths() -> list[tuple[str, str]]:
    """(state, path) for every JSONPath the state machine reads from the state (`$.a.b`)."""
    found = []

    def walk(owner: str, value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(owner, v, k)
        elif isinstance(value, list):
            for v in value:
                walk(owner, v, key)
        elif isinstance(value, str) and (
            key.endswith(".$")
            or key
            in (
                "Variable",
                "ItemsPath",
                "SecondsPath",
                "TimeoutSecondsPath",
                "HeartbeatSecondsPath",
                "InputPath",
                "OutputPath",
                "ErrorPath",
                "CausePath",
            )
        ):
            if match := PATH.match(value):
                found.append((owner, match.group(1)))

    for name, state in states().items():
        walk(name, {k: v for k, v in state.items() if k not in ("Iterator", "ItemProcessor", "Branches")})
    return found


def fields_of(model: type[Model], path: list[str]) -> str | None:
    """Why `path` is not a field of `model` (None when it is)."""
    keys = model.keys()
    if path[0] not in keys:
        return f"{model.__qualname__} has no field {path[0]!r} (it has {sorted(keys)})"
    nested = keys[path[0]].metadata["nested"]
    if len(path) > 1 and nested is not None:
        return fields_of(nested, path[1:])
    return None


def test_every_path_read_from_a_steps_output_is_a_field_of_it():
    written = writers()
    problems = []
    for state, path in read_paths():
        segments = path.split(".")
        # the longest ResultPath the path lies under (Check the canary writes $.canary.progress, Start $.canary)
        for cut in range(len(segments) - 1, 0, -1):
            root = ".".join(segments[:cut])
            if root in written:
                reasons = [fields_of(model, segments[cut:]) for _, model in written[root]]
                if all(reasons):
                    problems.append(
                        f"{state} reads $.{path}: "
                        + "; ".join(f"{writer}: {why}" for (writer, _), why in zip(written[root], reasons))
                    )
                break
    assert problems == []


def test_every_step_declares_its_contract():
    assert set(TASKS) - CONVERTED == set(), "these states' steps declare no CONTRACTS yet"
