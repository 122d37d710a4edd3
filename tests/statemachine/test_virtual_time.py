"""The sandbox on virtual time: the same world and events give the same history, state by state, and the
durations reported are the simulated ones the world sets, whatever the machine is doing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .conftest import Scenario, push_event

CANARY_WITH_MIGRATION = """\
cluster: prod
service: web
containers: {app: {repository: web}}
migrations: [{name: migrate, container: app, command: [bin/rails, 'db:migrate'], timeoutSeconds: 120}]
strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}
"""

ROLLING = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"


def _timeline(summary: dict[str, Any]) -> list[tuple[float, str, str, str]]:
    """Every history row of every execution: offset, type, state, and the detail with its task ids blanked
    (moto names each ECS task by a fresh UUID; everything else must repeat exactly)."""
    rows = []
    for name in sorted(summary["histories"]):
        for row in summary["histories"][name]:
            detail = re.sub(
                r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", str(row["detail"])
            )
            rows.append((row["offset"], row["type"], row["state"], detail))
    return rows


def _run(folder: Path, config: str, **world: Any) -> dict[str, Any]:
    folder.mkdir()
    scenario = Scenario(folder)
    scenario.config("web", config)
    scenario.world.update(world)
    return scenario.run(push_event("web", "v2"))


def test_the_same_world_and_events_give_the_same_history_and_durations_on_every_run(tmp_path):
    first = _run(tmp_path / "first", CANARY_WITH_MIGRATION)
    second = _run(tmp_path / "second", CANARY_WITH_MIGRATION)
    assert [e["status"] for e in first["executions"]] == ["SUCCEEDED"]
    timeline = _timeline(first)
    assert len(timeline) > 40, timeline  # a canary deploy with a migration: dozens of events, not a stub
    assert _timeline(second) == timeline
    assert first["executions"][0]["output"] == second["executions"][0]["output"]
    # The migration's run and the canary's 60 s of health are simulated time, the same on both runs.
    entered = [row[2] for row in timeline if row[1].endswith("StateEntered")]
    assert "Run the migration task and wait for it to stop" in entered and "Check the canary" in entered, entered


def test_a_rollout_the_world_says_takes_600_s_is_reported_as_600_s(tmp_path):
    # 600 s in all: the new tasks start (60 s), pass their health checks (40 s), then the rollout's 500 s.
    summary = _run(
        tmp_path / "run", ROLLING, timing={"startSeconds": 60, "healthyAfterSeconds": 40, "rolloutSeconds": 500}
    )
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    rows = summary["histories"][execution["name"]]
    started = next(
        r["offset"]
        for r in rows
        if r["type"] == "TaskStateExited" and r["state"] == "Update the service to the new revision"
    )
    ended = next(
        r["offset"]
        for r in rows
        if r["type"] == "TaskStateExited" and r["state"] == "Wait for ECS to finish the deployment"
    )
    assert ended - started == 600, (started, ended)
    # The deploy's reported duration is simulated time from its start to its end (the 600 s rollout and the
    # steps around it), not the real time the handlers took.
    assert execution["output"]["durationSeconds"] == rows[-1]["offset"], (execution["output"], rows[-1])


def test_a_world_can_say_how_long_each_function_runs(tmp_path):
    baseline = _run(tmp_path / "instant", ROLLING)
    slow = _run(tmp_path / "slow", ROLLING, lambdaSeconds={"render": 30, "default": 0.5})
    [fast_run], [slow_run] = baseline["executions"], slow["executions"]
    rows = slow["histories"][slow_run["name"]]
    entered = next(
        r["offset"]
        for r in rows
        if r["type"] == "TaskStateEntered" and r["state"] == "Render the new task definition and diff it"
    )
    exited = next(
        r["offset"]
        for r in rows
        if r["type"] == "TaskStateExited" and r["state"] == "Render the new task definition and diff it"
    )
    assert exited - entered == 30
    # Every other invocation on the way takes half a second; without the key, handler work takes no time.
    calls = len([r for r in rows if r["type"] == "LambdaFunctionSucceeded"])
    assert slow_run["output"]["durationSeconds"] == fast_run["output"]["durationSeconds"] + 30 + 0.5 * (calls - 1)
    assert [
        r["offset"]
        for r in baseline["histories"][fast_run["name"]]
        if r["state"] == "Render the new task definition and diff it"
    ] == [0.0] * 5
