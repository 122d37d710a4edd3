"""`ferry sandbox run` as a user calls it: bad input, the JSON summary, the history table."""

from __future__ import annotations

import json
import shutil

import pytest

from ferry_cli.main import main

from ..statemachine.conftest import EXAMPLE

EVENT = EXAMPLE.parents[1] / "events" / "ecr-push-web-v2.json"


@pytest.fixture
def world_dir(tmp_path):
    for name in ("web-task-def.json", "world.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    shutil.copytree(EXAMPLE / "registry", tmp_path / "registry")
    return tmp_path


def test_json_summary_has_the_documented_keys(world_dir, capsys):
    code = main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out)  # stdout holds the JSON and nothing else
    assert code == 0
    assert set(summary) >= {"executions", "services", "canaryTasks", "locksHeld", "transitions", "lambdaInvocations"}
    [execution] = summary["executions"]
    assert set(execution) >= {"name", "service", "status", "error", "cause", "states"}
    assert execution["status"] == "SUCCEEDED"
    assert set(summary["services"]["prod/web"]) >= {"taskDefinition", "images", "desiredCount", "runningCount"}


def test_the_history_is_printed_like_the_console(world_dir, capsys):
    code = main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT), "--history"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ExecutionStarted" in out and "ExecutionSucceeded" in out
    assert "Render the new task definition and diff it" in out
    assert "image app web:v1 -> web:v2" in out
    assert "SUCCEEDED" in out


def test_a_run_shows_each_state_as_it_is_entered_then_the_summary(world_dir, capsys):
    code = main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT)])
    out = capsys.readouterr().out
    assert code == 0
    progress = [line for line in out.splitlines() if line.startswith("+")]
    name = "web-v2-a0eb8348f38b"
    assert progress[0] == f"+0:00:00  {name}  Check the request"
    assert f"+0:00:00  {name}  Wait for ECS to finish the deployment" in progress
    assert progress[-2:] == [f"+0:01:00  {name}  Deployed", f"+0:01:00  {name}  SUCCEEDED"]  # the rollout's 60 s
    assert len(progress) == 16  # the 15 states entered, then the end
    assert "ExecutionStarted" not in out  # the raw history only with --history
    assert out.index("== Summary") > out.index(progress[-1])
    assert "{'" not in out  # no Python repr anywhere


def test_a_superseded_execution_says_what_superseded_it(world_dir, capsys, tmp_path):
    pushes = []
    for tag in ("v3", "v4"):
        event = json.loads(EVENT.read_text())
        event["id"], event["detail"]["image-tag"] = f"push-{tag}", tag
        del event["detail"]["image-digest"]
        pushes += ["--event", str(tmp_path / f"{tag}.json")]
        (tmp_path / f"{tag}.json").write_text(json.dumps(event))
    assert main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT), *pushes]) == 0
    out = capsys.readouterr().out
    middle = out[out.index("== web-v3-") : out.index("== web-v4-")]
    assert "\nSuperseded: a newer deploy of prod/web is queued (web-v4-" in middle
    assert "this one steps aside so that the newest image wins. Nothing was changed." in middle
    assert "Output: None" not in out


@pytest.mark.parametrize(
    "world_text, expected",
    [
        ("services: [\n", "line 2 column 1: not valid YAML"),
        ("services: []\n", "$.services: [] should be non-empty"),
        (
            "services:\n  - {cluster: prod, name: web, running: {app: web}, taskDefinition: t.json}\n",
            "$.services[0].running.app: 'web' does not match",
        ),
        (
            "services:\n  - {cluster: prod, name: web, running: {app: 'web:v1'}, taskDefinition: web-task-def.json}\n",
            "$.services[0].running.app: web:v1 is not pushed; add it under ecr.web",
        ),
        (
            "ecr: {web: [v1]}\nservices:\n  - {cluster: prod, name: web, running: {app: 'web:v1'}, taskDefinition: missing.json}\n",
            "missing.json: cannot read the task definition",
        ),
        (
            "ecr: {web: [v1]}\nservices:\n  - {cluster: prod, name: web, running: {db: 'web:v1'}, taskDefinition: web-task-def.json}\n",
            "$.services[0].running: containers ['db'] are not in web-task-def.json",
        ),
        (
            "services:\n  - {cluster: prod, name: web, running: {app: 'web:v1'}, taskDefinition: t.json, colour: red}\n",
            "Additional properties are not allowed ('colour' was unexpected)",
        ),
    ],
)
def test_a_bad_world_is_one_clear_error_and_exit_2(world_dir, capsys, world_text, expected):
    (world_dir / "bad.yaml").write_text(world_text)
    code = main(["sandbox", "run", "--world", str(world_dir / "bad.yaml"), "--event", str(EVENT)])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.yaml" in err or "missing.json" in err
    assert expected in err


def test_a_bad_event_is_refused_before_anything_starts(world_dir, capsys):
    shutil.copy(EVENT.parent / "not-an-event.json", world_dir / "event.json")
    code = main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(world_dir / "event.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "event.json is not an EventBridge event" in err
    assert "$: 'detail-type' is a required property" in err
    assert "$.detail: ['this is not an EventBridge event'] is not of type 'object'" in err
    (world_dir / "event.json").write_text('{"source": ')
    assert (
        main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(world_dir / "event.json")])
        == 2
    )
    assert "not valid JSON" in capsys.readouterr().err


def test_no_event_is_a_usage_error(world_dir, capsys):
    assert main(["sandbox", "run", "--world", str(world_dir / "world.yaml")]) == 2


@pytest.mark.parametrize("speed", ["0", "-5", "nan", "inf", "fast"])
def test_a_speed_that_is_not_a_positive_number_is_refused_before_anything_starts(world_dir, capsys, speed):
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT), "--speed", speed])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--speed takes a positive number of simulated seconds per real second" in err and repr(speed) in err


def test_a_paced_run_reports_the_same_simulated_times_as_an_unpaced_one(world_dir, capsys):
    runs = []
    for extra in ([], ["--speed", "1000"]):
        assert (
            main(["sandbox", "run", "--world", str(world_dir / "world.yaml"), "--event", str(EVENT), "--json", *extra])
            == 0
        )
        summary = json.loads(capsys.readouterr().out)
        [execution] = summary["executions"]
        runs.append((execution["states"], execution["output"]["durationSeconds"]))
    assert runs[0] == runs[1]
    assert runs[0][1] == 60  # the demo's deploy: the 60 s ECS takes, paced or not
