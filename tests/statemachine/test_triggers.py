"""Triggers in the real state machine: fan-out of pushes and manifests, result documents, locks on every path."""

from __future__ import annotations

import hashlib

from .conftest import push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RESULT = "manifests/release.result.json"


def pinned(repo: str, tag: str) -> str:
    return f"{REGISTRY}/{repo}@sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()


def test_one_repository_feeding_two_services_deploys_both(scenario):
    scenario.service("api")
    summary = scenario.run(push_event("web", "v2"))
    assert sorted(e["service"] for e in summary["executions"]) == ["prod/api", "prod/web"]
    assert all(e["status"] == "SUCCEEDED" for e in summary["executions"])
    assert {k: s["images"]["app"] for k, s in summary["services"].items()} == {
        "prod/api": pinned("web", "v2"),
        "prod/web": pinned("web", "v2"),
    }


def test_a_manifest_with_two_services_starts_two_executions_and_records_their_ends(scenario):
    scenario.service("api")
    release = scenario.manifest(
        "release",
        {
            "version": 1,
            "commit": "9f1c2ab",
            "reason": "release 42",
            "deployments": [
                {"service": "web", "images": {"app": "web:v2"}},
                {"service": "api", "images": {"app": "web:v2"}},
            ],
        },
    )
    summary = scenario.run(release)
    assert sorted(e["status"] for e in summary["executions"]) == ["SUCCEEDED", "SUCCEEDED"]
    result = summary["manifestResults"][RESULT]
    assert (result["status"], result["commit"], result["reason"], result["problems"]) == (
        "STARTED",
        "9f1c2ab",
        "release 42",
        [],
    )
    ended = {d["service"]: d for d in result["deployments"]}
    assert set(ended) == {"web", "api"}
    for deployment in ended.values():
        assert deployment["status"] == "SUCCEEDED" and deployment["executionArn"].startswith("arn:aws:states:")
    assert summary["locksHeld"] == 0


def test_a_manifest_with_a_sidecar_puts_both_images_in_one_revision(scenario):
    scenario.world["ecr"]["nginx"] = ["1.27", "1.28"]
    scenario.config(
        "web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}, nginx: {repository: nginx}}\n"
    )
    release = scenario.manifest(
        "release",
        {"version": 1, "deployments": [{"service": "web", "images": {"app": "web:v2", "nginx": "nginx:1.28"}}]},
    )
    summary = scenario.run(release)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    web = summary["services"]["prod/web"]
    assert web["taskDefinition"] == "web:2"
    assert web["images"] == {"app": pinned("web", "v2"), "nginx": pinned("nginx", "1.28")}


BAD_MANIFESTS = {
    "not JSON": (b'{"version": 1, "deployments": [', "$: not JSON"),
    "schema": (
        {"version": 2, "deployments": [{"service": "web", "images": {"app": 7}}], "extra": True},
        "$.deployments[0].images.app",
    ),
    "unknown service": (
        {"version": 1, "deployments": [{"service": "billing", "images": {"app": "web:v2"}}]},
        "$.deployments[0].service",
    ),
    "image not in ECR": (
        {"version": 1, "deployments": [{"service": "web", "images": {"app": "web:v9"}}]},
        "$.deployments[0].images.app",
    ),
    "too large": ({"version": 1, "reason": "x" * 300_000, "deployments": []}, "$: "),
}


def test_each_bad_manifest_starts_nothing_and_its_result_lists_the_problems(scenario):
    deliveries = [scenario.manifest(name.replace(" ", "-"), body) for name, (body, _) in BAD_MANIFESTS.items()]
    summary = scenario.run(*deliveries)
    assert summary["executions"] == []
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"
    for name, (_, path) in BAD_MANIFESTS.items():
        result = summary["manifestResults"][f"manifests/{name.replace(' ', '-')}.result.json"]
        assert result["status"] == "REFUSED" and result["deployments"] == [], name
        assert any(
            p["path"].startswith(path.split(":")[0]) and f"{p['path']}: {p['message']}".startswith(path)
            for p in result["problems"]
        ), (name, result["problems"])
    schema = summary["manifestResults"]["manifests/schema.result.json"]["problems"]
    assert len(schema) >= 3  # every violation, not the first one
    assert any("manifest refused: nothing deploys" in line for line in summary["logLines"])


def test_an_aborted_deploy_releases_its_lock(scenario):
    from ferry_cli.sandbox.run import world_session

    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 3000}}
    summary_path = scenario.dir / "world.yaml"
    import yaml

    summary_path.write_text(yaml.safe_dump(scenario.world))
    with world_session(summary_path) as (sandbox, _world):
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="abort-me")
        sandbox.run_until(
            lambda: sandbox.locks_held() == 1 and "Wait for ECS to finish the deployment" in str(sandbox.history(arn))
        )
        sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
        sandbox.wait_for_executions()
        assert sandbox.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "ABORTED"
        assert sandbox.locks_held() == 0
        ended = [e for e in sandbox.status_events if e["event"]["detail"]["status"] == "ABORTED"]
        assert ended and ended[0]["targets"], "the execution-ended rule should have delivered the ABORTED event"


def test_a_manual_rollback_request_goes_back_to_the_revision_the_last_deploy_replaced(scenario):
    import yaml

    from ferry_cli import history
    from ferry_cli.sandbox.run import world_session

    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    with world_session(world_path) as (sandbox, _world):
        refused = sandbox.start_execution({"service": "web", "action": "rollback"}, name="nothing-to-roll-back")
        sandbox.wait_for_executions()
        events = sandbox.history(refused)
        assert history.outcome(events)[0] == "NothingToRollBack"
        sandbox.deliver(push_event("web", "v2"))
        sandbox.wait_for_executions()
        assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:2"
        arn = sandbox.start_execution({"service": "web", "action": "rollback"}, name="roll-back")
        sandbox.wait_for_executions()
        events = sandbox.history(arn)
        states = history.entered_states(events)
        assert states[:5] == [
            "Check the request",
            "Take the deploy lock for this service",
            "Is this a rollback request?",
            "Find the revision to roll back to",
            "Roll back to that revision",
        ]
        assert "Render the new task definition and diff it" not in states and states[-1] == "Deployed"
        web = sandbox.simulator.services()["prod/web"]
        assert (web["taskDefinition"], web["runningCount"]) == ("web:1", 2)
        assert web["images"]["app"] == f"{REGISTRY}/web:v1"
        assert sandbox.locks_held() == 0
        again = sandbox.start_execution({"service": "web", "action": "rollback"}, name="roll-back-again")
        sandbox.wait_for_executions()
        # Not "back" to web:2, which was just rolled away from.
        assert history.outcome(sandbox.history(again))[0] == "NothingToRollBack"
        assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:1"


def test_a_push_or_a_manifest_event_from_another_account_deploys_nothing(scenario):
    """The rules accept only the stack's own account's events: a foreign push (another account's registry sending
    to this bus) neither deploys nor supersedes; the same push from this account deploys."""
    foreign = {**push_event("web", "v2", "event-foreign"), "account": "210987654321"}
    summary = scenario.run(foreign)
    assert summary["executions"] == []
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"
    [execution] = scenario.run(push_event("web", "v2"))["executions"]
    assert execution["status"] == "SUCCEEDED"
