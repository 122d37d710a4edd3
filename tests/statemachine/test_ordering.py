"""The order of a service's deploys (ferry.steps.lock.DeployOrder): the newest request wins whatever reaches the
lock first, even when two pushes share EventBridge's one-second `time`, and a waiting deploy steps aside only for
a newer one that is still alive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_cli.sandbox.run import world_session

from .conftest import push_event
from .test_deploy import pinned


def _world(scenario, *, tags: tuple[str, ...], slow: str | None = None) -> Path:
    scenario.world["ecr"]["web"] = sorted({*scenario.world["ecr"]["web"], *tags})
    if slow:  # this image's tasks take 10 minutes to start: the deploys after it wait for its lock
        scenario.world["behaviour"] = {f"web:{slow}": {"startSeconds": 600}}
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    return path


def _by_tag(sandbox) -> dict[str, dict[str, Any]]:
    return {e["name"].split("-")[1]: e for e in sandbox.executions()}


def _holder(sandbox) -> str | None:
    item = sandbox.client("dynamodb").get_item(
        TableName=sandbox.lock_table, Key={"pk": {"S": "service#prod/web"}}, ConsistentRead=True
    )
    return item.get("Item", {}).get("owner", {}).get("S")


def _deployed_app(sandbox) -> str:
    return sandbox.simulator.services()["prod/web"]["images"]["app"]


@pytest.mark.parametrize("first", ["older", "newer"])
@pytest.mark.parametrize("apart", [0.001, 0.9])
def test_two_pushes_in_the_same_second_deploy_the_newer_image_whichever_takes_the_lock_first(scenario, first, apart):
    """Two pushes whose EventBridge `time` is the same second: the push that came second is the newer one (its
    execution started later), and its image is what the service ends on, on every run and in either race."""
    from ferry_cli.sandbox.clock import active

    path = _world(scenario, tags=("v3",))
    state: dict[str, Any] = {"sandbox": None}

    def newer_takes_the_lock_first(function: str, event: dict) -> None:
        # Holds v2's first try for the lock until v3 has taken it: the race the newer push can win.
        if first != "newer" or function != "LockFunction" or event.get("action") != "acquire":
            return
        if "web-v2-" not in str(event.get("owner")) or state.get("held"):
            return
        state["held"] = True
        clock = active()
        while "web-v3-" not in str(_holder(state["sandbox"])):
            clock.sleep(1)

    with world_session(path, fault_hooks=[newer_takes_the_lock_first]) as (sandbox, _):
        state["sandbox"] = sandbox
        second = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
        older, newer = push_event("web", "v2", "push-v2"), push_event("web", "v3", "push-v3")
        older["time"] = newer["time"] = second  # EventBridge's `time`: whole seconds
        sandbox.deliver(older)
        sandbox.clock.sleep(apart)
        sandbox.deliver(newer)
        sandbox.wait_for_executions()
        sandbox.settle_world()
        by_tag = _by_tag(sandbox)
        assert {t: e["status"] for t, e in by_tag.items()} == {"v2": "SUCCEEDED", "v3": "SUCCEEDED"}
        assert _deployed_app(sandbox) == pinned("web", "v3"), (first, apart)
        if first == "newer":  # the older one steps aside as soon as it sees the newer one
            from ferry_cli import history

            states = history.entered_states(sandbox.history(by_tag["v2"]["executionArn"]))
            assert states[-1] == "Superseded by a newer deploy"
            assert "Render the new task definition and diff it" not in states
        assert sandbox.locks_held() == 0


def _until_waiting(sandbox, arn: str) -> None:
    """Until the execution's lock state waits on its task token; it must not have ended instead."""
    sfn = sandbox.client("stepfunctions")
    sandbox.run_until(
        lambda: (
            sfn.describe_execution(executionArn=arn)["status"] != "RUNNING"
            or any(
                e["type"] == "TaskSubmitted" and '"waiting": true' in e["taskSubmittedEventDetails"].get("output", "")
                for e in sandbox.history(arn)
            )
        )
    )
    from ferry_cli import history

    events = sandbox.history(arn)
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING", (
        history.entered_states(events),
        history.superseded(events),
    )


def test_stopping_the_newest_waiting_deploy_lets_the_older_waiting_one_deploy(scenario):
    """v3 and v4 wait behind v2; v4 is stopped while it waits: v3 is not superseded by a deploy that will never
    run, it deploys, and the service ends on v3."""
    path = _world(scenario, tags=("v3", "v4"), slow="v2")
    with world_session(path) as (sandbox, _):
        sandbox.deliver(push_event("web", "v2", "push-v2"))
        sandbox.run_until(lambda: "web-v2-" in str(_holder(sandbox)))
        sandbox.clock.sleep(15)
        sandbox.deliver(push_event("web", "v3", "push-v3"))
        _until_waiting(sandbox, _by_tag(sandbox)["v3"]["executionArn"])
        sandbox.clock.sleep(15)
        sandbox.deliver(push_event("web", "v4", "push-v4"))
        v4 = _by_tag(sandbox)["v4"]["executionArn"]
        _until_waiting(sandbox, v4)
        sandbox.client("stepfunctions").stop_execution(executionArn=v4, cause="operator stopped it")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        by_tag = _by_tag(sandbox)
        assert {t: e["status"] for t, e in by_tag.items()} == {"v2": "SUCCEEDED", "v3": "SUCCEEDED", "v4": "ABORTED"}
        from ferry_cli import history

        assert history.entered_states(sandbox.history(by_tag["v3"]["executionArn"]))[-1] == "Deployed"
        web = sandbox.simulator.services()["prod/web"]
        assert web["images"]["app"] == pinned("web", "v3") and web["taskDefinition"] == "web:3"
        assert sandbox.locks_held() == 0


def test_an_older_push_delivered_after_a_newer_waiting_one_deploys_when_the_newer_one_is_stopped(scenario):
    """EventBridge does not promise order: v4's push arrives first and waits behind v2, then v3's (older `time`)
    arrives. v3 does not step aside for v4 while v4 only waits; once v4 is stopped, v3 deploys."""
    path = _world(scenario, tags=("v3", "v4"), slow="v2")
    with world_session(path) as (sandbox, _):
        sandbox.deliver(push_event("web", "v2", "push-v2"))
        sandbox.run_until(lambda: "web-v2-" in str(_holder(sandbox)))
        earlier = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
        sandbox.clock.sleep(15)
        sandbox.deliver(push_event("web", "v4", "push-v4"))
        v4 = _by_tag(sandbox)["v4"]["executionArn"]
        _until_waiting(sandbox, v4)
        sandbox.clock.sleep(15)
        late = push_event("web", "v3", "push-v3")
        late["time"] = earlier  # pushed before v4, delivered after it
        sandbox.deliver(late)
        _until_waiting(sandbox, _by_tag(sandbox)["v3"]["executionArn"])
        sandbox.client("stepfunctions").stop_execution(executionArn=v4, cause="operator stopped it")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        by_tag = _by_tag(sandbox)
        assert {t: e["status"] for t, e in by_tag.items()} == {"v2": "SUCCEEDED", "v3": "SUCCEEDED", "v4": "ABORTED"}
        web = sandbox.simulator.services()["prod/web"]
        assert web["images"]["app"] == pinned("web", "v3") and web["taskDefinition"] == "web:3"
        assert sandbox.locks_held() == 0
