"""statemachine/deploy.asl.json against its source, statemachine/build.py (no sandbox: fast).

- The committed JSON is exactly what build.py generates: a hand edit of the JSON, or a change to build.py (or to
  ferry.errors' verdicts, or ferry.states' names) without regenerating, fails here.
- Every state name in the JSON is a constant of ferry.states, and every constant a state.
- Every Error name a Retry, Catch or Fail state of the JSON uses is a class of ferry.errors, or a name of Step
  Functions (States.*), Lambda (Lambda.*) or Lambda's runtime (Sandbox.Timedout: a function that timed out).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any

from ferry import errors, states

from ..asl_errors import LAMBDA_ERRORS, STATES_ERRORS

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "statemachine" / "build.py"
ASL_PATH = REPO_ROOT / "statemachine" / "deploy.asl.json"
COMMITTED = ASL_PATH.read_text()
ASL = json.loads(COMMITTED)
REGENERATE = "run `python statemachine/build.py` and commit statemachine/deploy.asl.json with it"


def load_source():
    spec = importlib.util.spec_from_file_location("ferry_asl_build", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name, those inside Map (Iterator, ItemProcessor) and Parallel states too."""
    found = {}
    for name, state in machine["States"].items():
        assert name not in found, f"two states named {name!r}"
        found[name] = state
        for inner in (state.get("Iterator"), state.get("ItemProcessor"), *state.get("Branches", [])):
            if inner:
                found.update(all_states(inner))
    return found


def test_the_committed_json_is_what_its_source_generates():
    generated = load_source().render()
    if generated != COMMITTED:
        diff = "".join(
            difflib.unified_diff(
                COMMITTED.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                "deploy.asl.json (committed)",
                "deploy.asl.json (generated)",
                n=2,
            )
        )
        raise AssertionError(
            f"statemachine/deploy.asl.json is not what statemachine/build.py generates: "
            f"{REGENERATE}. Never edit the JSON by hand.\n{diff[:6000]}"
        )


def test_every_state_name_is_a_constant_of_ferry_states_and_every_constant_a_state():
    constants = {name: value for name, value in vars(states).items() if name.isupper() and not name.startswith("_")}
    assert all(isinstance(v, str) for v in constants.values()), "ferry.states holds state names only"
    assert len(set(constants.values())) == len(constants), "two constants of ferry.states name the same state"
    names = set(all_states(ASL))
    named = set(constants.values())
    assert not names - named, f"states that ferry.states lacks: {sorted(names - named)}"
    assert not named - names, f"ferry.states names states the state machine lacks: {sorted(named - names)}"


def test_every_error_name_is_a_ferry_error_or_one_aws_defines():
    ferry_errors = {
        name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.FerryError)
    } - {"FerryError"}
    used: dict[str, set[str]] = {}
    for state_name, state in all_states(ASL).items():
        for rule in state.get("Retry", []) + state.get("Catch", []):
            for error in rule["ErrorEquals"]:
                used.setdefault(error, set()).add(state_name)
        if "Error" in state:
            used.setdefault(state["Error"], set()).add(state_name)
    unknown = {e: sorted(s) for e, s in used.items() if e not in ferry_errors | STATES_ERRORS | LAMBDA_ERRORS}
    assert not unknown, f"Error names that are no class of ferry.errors nor AWS's: {unknown}"


def test_the_verdicts_are_ferry_errors_and_never_retried():
    verdicts = [cls.__name__ for cls in errors.VERDICTS]
    assert len(set(verdicts)) == len(verdicts)
    assert all(issubclass(cls, errors.FerryError) for cls in errors.VERDICTS)
    never = [r["ErrorEquals"] for s in all_states(ASL).values() for r in s.get("Retry", []) if r["MaxAttempts"] == 0]
    assert never and all(names[: len(verdicts)] == verdicts for names in never), (
        f"a Retry that never retries lists other names than ferry.errors.VERDICTS: {REGENERATE}"
    )


def test_the_committed_picture_is_what_the_source_draws():
    source = load_source()
    assert source.PICTURE.read_text() == source.picture(), (
        "docs/state-machine.md is not what statemachine/build.py draws: " + REGENERATE
    )
