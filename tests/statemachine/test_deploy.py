"""The real deploy.asl.json, run in the sandbox: one test per path."""

from __future__ import annotations

import hashlib

from .conftest import push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
HAPPY_STATES = [
    "Check the request",
    "Take the deploy lock for this service",
    "Is this a rollback request?",
    "Render the new task definition and diff it",
    "Verify secrets, images and roles",
    "Register the new revision",
    "Are there migrations to run?",
    "No migrations to run",
    "Which strategy?",
    "Update the service to the new revision",
    "Wait for ECS to finish the deployment",
]


def pinned(repo: str, tag: str) -> str:
    return f"{REGISTRY}/{repo}@sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()


def test_a_push_deploys_the_pushed_image_by_digest(scenario):
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["service"] == "prod/web"
    assert execution["states"][:11] == HAPPY_STATES
    assert execution["states"][-2:] == ["Release the deploy lock", "Deployed"]
    output = execution["output"]  # the console's Output tab: a summary, not the whole state
    assert {k: output[k] for k in ("result", "service", "ecsService", "strategy", "from", "to")} == {
        "result": "DEPLOYED",
        "service": "web",
        "ecsService": "prod/web",
        "strategy": "rolling",
        "from": "web:1",
        "to": "web:2",
    }
    assert output["images"] == {"app": pinned("web", "v2")} and output["durationSeconds"] > 0
    assert output["summary"].startswith("image app web:v1 -> web:v2")
    assert set(output["artefacts"]) == {"taskDefinitionInput", "diff", "verify", "register"}
    web = summary["services"]["prod/web"]
    assert web["taskDefinition"] == "web:2"
    assert web["images"]["app"] == pinned("web", "v2")
    assert web["images"]["nginx"] == f"{REGISTRY}/nginx:1.27"
    assert (web["desiredCount"], web["runningCount"]) == (2, 2)
    assert summary["locksHeld"] == 0 and summary["canaryTasks"] == 0
    assert summary["lambdaInvocations"] >= 6  # router, lock, render, update, check(s), unlock
    assert summary["transitions"] == len(execution["states"])


def test_a_push_nobody_deploys_starts_nothing(scenario):
    summary = scenario.run(push_event("nginx", "1.28"))
    assert summary["executions"] == []
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"
    [delivered] = summary["delivered"]
    assert delivered["targets"][0]["result"] == {"started": [], "ignored": False}


def test_a_tag_outside_the_trigger_pattern_starts_nothing(scenario):
    summary = scenario.run(push_event("web", "pr-7"))
    assert summary["executions"] == []


def test_the_same_event_delivered_twice_deploys_once(scenario):
    event = push_event("web", "v2", event_id="same")
    summary = scenario.run(event, event)
    assert len(summary["executions"]) == 1
    assert summary["executions"][0]["status"] == "SUCCEEDED"


def test_two_pushes_in_quick_succession_are_serialised_and_the_last_image_runs(scenario):
    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 240}}  # the first deploy is still going when v3 arrives
    summary = scenario.run(push_event("web", "v2", "e1"), push_event("web", "v3", "e2"))
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED", "SUCCEEDED"]
    second = summary["histories"][next(e["name"] for e in summary["executions"] if e["name"].startswith("web-v3-"))]
    # Woken by the first one's release (LockReleased), or, if the release came as its heartbeat ran out,
    # by the heartbeat's own look.
    waited = [
        r
        for r in second
        if (r["type"] == "TaskFailed" and r["detail"].startswith("LockReleased"))
        or (r["type"] == "TaskTimedOut" and r["detail"].startswith("States.HeartbeatTimeout"))
    ]
    assert waited, "the second deploy should have waited for the first one's lock"
    assert summary["services"]["prod/web"]["images"]["app"] == pinned("web", "v3")
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:3"
    assert summary["locksHeld"] == 0


def test_a_container_the_revision_lacks_fails_render_and_changes_nothing(scenario):
    scenario.config("web", "cluster: prod\nservice: web\ncontainers: {worker: {repository: web}}\n")
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED"
    assert execution["error"] == "TaskDefinitionInvalid"
    assert "containers ['worker'] are not in task definition web:1" in execution["cause"]
    assert execution["states"] == [
        "Check the request",
        "Take the deploy lock for this service",
        "Is this a rollback request?",
        "Render the new task definition and diff it",
        "Release the deploy lock after the failure",
        "Deploy failed",
    ]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"
    assert summary["locksHeld"] == 0


def test_a_cluster_outside_the_installation_is_refused_before_any_change(scenario):
    scenario.config("web", "cluster: staging\nservice: web\ncontainers: {app: {repository: web}}\n")
    summary = scenario.run(push_event("web", "v2"))
    assert summary["executions"] == []  # the router only deploys services on allowed clusters
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"


def load_event(name: str) -> dict:
    import json

    from .conftest import EXAMPLE

    return json.loads((EXAMPLE.parents[1] / "events" / name).read_text())


def test_the_shipped_push_event_deploys_web_v2(scenario):
    summary = scenario.run(load_event("ecr-push-web-v2.json"))
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED"]
    assert summary["services"]["prod/web"]["images"]["app"] == pinned("web", "v2")


def test_an_image_delete_matches_no_rule_and_a_push_without_tag_is_ignored_with_a_log_line(scenario):
    summary = scenario.run(load_event("ecr-delete-web.json"), load_event("ecr-push-without-tag.json"))
    assert summary["executions"] == []
    deleted, untagged = summary["delivered"]
    assert deleted["targets"] == []  # the EcrPush rule pattern only matches PUSH
    assert untagged["targets"][0]["result"] == {"started": [], "ignored": True}
    assert any("event ignored: not a successful ECR push with a tag" in line for line in summary["logLines"])


def test_a_request_without_a_service_or_images_is_refused_before_the_lock():
    from ferry_cli import history
    from ferry_cli.sandbox.sandbox import Sandbox

    with Sandbox(clusters=["prod"]) as sandbox:
        for payload in ({"service": "web"}, {"images": {"app": "x"}}, {"service": 7, "images": {}}):
            sandbox.start_execution(payload)
        sandbox.wait_for_executions()
        for execution in sandbox.executions():
            events = sandbox.history(execution["executionArn"])
            assert execution["status"] == "FAILED"
            assert history.entered_states(events) == ["Check the request", "Refuse the request"]
            error, cause = history.outcome(events)
            assert error == "InputInvalid" and "Nothing was locked or changed" in cause
        assert sandbox.locks_held() == 0
        for execution in sandbox.executions():  # no step ran (the execution-ended function still hears of them)
            assert not any(e["type"].startswith("LambdaFunction") for e in sandbox.history(execution["executionArn"]))


def test_a_push_that_moves_a_tag_deploys_the_new_digest(scenario):
    event = push_event("web", "v2")
    moved = "sha256:" + "ab" * 32
    event["detail"]["image-digest"] = moved
    summary = scenario.run(event)
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED"]
    assert summary["services"]["prod/web"]["images"]["app"] == f"{REGISTRY}/web@{moved}"


def test_three_queued_pushes_supersede_the_middle_one_and_the_newest_runs(scenario):
    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 600}}  # v3 and v4 arrive while v2 deploys
    summary = scenario.run(push_event("web", "v2", "e1"), push_event("web", "v3", "e2"), push_event("web", "v4", "e3"))
    by_tag = {e["name"].split("-")[1]: e for e in summary["executions"]}
    assert {t: e["status"] for t, e in by_tag.items()} == {"v2": "SUCCEEDED", "v3": "SUCCEEDED", "v4": "SUCCEEDED"}
    assert by_tag["v3"]["states"][-1] == "Superseded by a newer deploy"
    assert "Render the new task definition and diff it" not in by_tag["v3"]["states"]
    assert by_tag["v4"]["states"][-1] == "Deployed"
    web = summary["services"]["prod/web"]
    assert web["images"]["app"] == pinned("web", "v4") and web["taskDefinition"] == "web:3"
    assert summary["locksHeld"] == 0
