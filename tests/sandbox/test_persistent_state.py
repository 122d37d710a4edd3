"""A sandbox that lasts between commands (--state DIR): deploy, look, roll back by hand and push again, as a
user would against AWS; each command replays the ones before it from the journal in DIR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ferry_cli.main import main

from ..statemachine.conftest import EXAMPLE

EVENT = EXAMPLE.parents[1] / "events" / "ecr-push-web-v2.json"


@pytest.fixture
def world(tmp_path: Path) -> Path:
    for name in ("web-task-def.json", "world.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    shutil.copytree(EXAMPLE / "registry", tmp_path / "registry")
    return tmp_path / "world.yaml"


def push(tmp_path: Path, tag: str) -> Path:
    event = json.loads(EVENT.read_text())
    event["id"] = f"push-{tag}"
    event["detail"]["image-tag"] = tag
    del event["detail"]["image-digest"]  # the sandbox derives the digest of web:<tag>
    path = tmp_path / f"push-{tag}.json"
    path.write_text(json.dumps(event))
    return path


def sandbox_run(tmp_path: Path, world: Path, state: Path, *, tag: str, capsys) -> dict:
    """`ferry sandbox run --state` pushing web:<tag>: its JSON summary, checked to exit 0."""
    argv = ["sandbox", "run", "--world", str(world), "--state", str(state), "--json"]
    assert main([*argv, "--event", str(push(tmp_path, tag))]) == 0
    return json.loads(capsys.readouterr().out)


def service(capsys, world: Path, state: Path) -> dict:
    """prod/web as a replay of the kept sandbox shows it (ferry sandbox run needs a delivery: history does not)."""
    assert main(["history", "--world", str(world), "--state", str(state), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_deploy_then_roll_back_by_hand_then_push_again(tmp_path, world, capsys):
    state = tmp_path / "state"
    first = sandbox_run(tmp_path, world, state, tag="v2", capsys=capsys)
    assert first["services"]["prod/web"]["taskDefinition"] == "web:2"

    # Without --state this answers NothingToRollBack: a fresh world has no deploy of Ferry's to go back from.
    assert main(["deploy", "--service", "web", "--rollback", "--world", str(world), "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("SUCCEEDED"), out
    assert "roll" in out.lower()

    listed = service(capsys, world, state)["executions"]
    assert [e["status"] for e in listed] == ["SUCCEEDED", "SUCCEEDED"]
    assert listed[0]["name"].startswith("web-manual-"), listed[0]
    assert main(["status", "web", "--world", str(world), "--state", str(state)]) == 0
    assert "roll back prod/web from web:2 to web:1" in capsys.readouterr().out

    third = sandbox_run(tmp_path, world, state, tag="v3", capsys=capsys)
    # Only this run's execution is listed; the service carries on from the rollback: a third revision, web:v3.
    assert [e["name"].split("-")[1] for e in third["executions"]] == ["v3"]
    # ... and its counts are this run's, not the replayed commands' as well.
    assert third["lambdaInvocations"] == first["lambdaInvocations"]
    assert third["eventDeliveries"]["invocations"] == first["eventDeliveries"]["invocations"]
    web = third["services"]["prod/web"]
    assert web["taskDefinition"] == "web:3" and web["images"]["app"].endswith(
        "@" + "sha256:" + __import__("hashlib").sha256(b"web:v3").hexdigest()
    )
    assert (web["desiredCount"], web["runningCount"], third["locksHeld"], third["canaryTasks"]) == (2, 2, 0, 0)
    journal = json.loads((state / "state.json").read_text())["journal"]
    assert [c["command"] for c in journal] == ["sandbox run", "deploy", "sandbox run"]


def test_every_replay_of_a_kept_sandbox_gives_the_same_history(tmp_path, world, capsys):
    state = tmp_path / "state"
    sandbox_run(tmp_path, world, state, tag="v2", capsys=capsys)
    first, second = service(capsys, world, state), service(capsys, world, state)
    assert first == second
    assert [e["status"] for e in first["executions"]] == ["SUCCEEDED"]


def test_a_changed_world_is_refused_with_the_way_out(tmp_path, world, capsys):
    state = tmp_path / "state"
    sandbox_run(tmp_path, world, state, tag="v2", capsys=capsys)
    before = (state / "state.json").read_text()
    data = yaml.safe_load(world.read_text())
    data["services"][0]["desiredCount"] = 3
    world.write_text(yaml.safe_dump(data))
    assert main(["deploy", "--service", "web", "--rollback", "--world", str(world), "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"--state {state}" in err and "changed since this sandbox began" in err and "new --state directory" in err
    assert (state / "state.json").read_text() == before  # nothing was run or recorded


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not a sandbox state"),
        (json.dumps({"version": 99, "journal": []}), "not a sandbox state of this version of ferry"),
    ],
)
def test_a_broken_state_file_is_refused_naming_it(tmp_path, world, capsys, content, expected):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(content)
    assert main(["history", "--world", str(world), "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert str(state / "state.json") in err and expected in err


def test_state_without_a_world_is_a_usage_error(tmp_path, capsys):
    assert main(["history", "--state", str(tmp_path / "state")]) == 2
    assert "--state keeps a sandbox between commands: give --world too" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_bad_input_records_nothing(tmp_path, world, capsys):
    state = tmp_path / "state"
    assert main(["deploy", "--service", "web", "--image", "nope", "--world", str(world), "--state", str(state)]) == 2
    assert "--image 'nope'" in capsys.readouterr().err
    assert not (state / "state.json").exists()
