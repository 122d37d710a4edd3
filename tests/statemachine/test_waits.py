"""Waiting for ECS without polling: the deployment wait ends on ECS's event, on its fallback, or at once."""

from __future__ import annotations


import boto3

from .conftest import push_event

ROLLING = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
WAIT = "Wait for ECS to finish the deployment"


def wait_rows(summary) -> list[dict]:
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert summary["locksHeld"] == 0
    return [r for r in summary["histories"][execution["name"]] if r["state"] == WAIT]


def test_ecs_deployment_event_ends_the_wait_without_a_single_check(scenario):
    seen = []

    def record(function: str, event: dict) -> None:
        if function == "CheckDeploymentFunction":
            seen.append(event.get("detail", {}).get("eventName") or "watch")

    scenario.config("web", ROLLING)
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[record])
    rows = wait_rows(summary)
    assert [r["type"] for r in rows if r["type"].startswith("Task")] == [
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSubmitted",
        "TaskSucceeded",
        "TaskStateExited",
    ]
    assert seen == ["watch", "SERVICE_DEPLOYMENT_COMPLETED"]
    # The event ended it, not the watch's own first look.
    assert not any('"the deployment had already ended"' in line for line in summary["logLines"])
    assert any('"deployment state change handled"' in line for line in summary["logLines"])


def test_a_lost_event_costs_one_fallback_interval_and_one_retry(scenario):
    def lose_ecs_events(function: str, event: dict) -> None:
        if function == "CheckDeploymentFunction" and event.get("source") == "aws.ecs":
            raise RuntimeError("event lost")

    # timeouts.deployment 240 s, shorter than the 30 min fallback: the one fallback look is just after the deadline.
    scenario.config("web", ROLLING + "timeouts: {deployment: 240}\n")
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[lose_ecs_events])
    rows = wait_rows(summary)
    assert [r["detail"] for r in rows if r["type"] == "TaskTimedOut"] == ["States.HeartbeatTimeout"]
    assert [r["type"] for r in rows].count("TaskStateEntered") == 1  # a Retry: one more transition, no new states
    waiting = next(r["offset"] for r in rows if r["type"] == "TaskSubmitted")
    timed_out = next(r["offset"] for r in rows if r["type"] == "TaskTimedOut")
    assert timed_out - waiting == 241, (waiting, timed_out)  # the heartbeat (the 240 s deadline and a second), exactly


def test_a_deployment_that_ended_before_the_token_was_stored_is_not_missed(scenario):
    def hold_the_watch_until_ecs_is_done(function: str, event: dict) -> None:
        if function != "CheckDeploymentFunction" or "token" not in event:
            return
        from ferry_cli.sandbox.clock import active

        ecs, clock = boto3.client("ecs", region_name="us-east-1"), active()
        began = clock.now()
        while True:  # ECS finishes (and its event finds no waiter) before this invocation stores its token
            [service] = ecs.describe_services(cluster="prod", services=["web"])["services"]
            primary = next(d for d in service["deployments"] if d["status"] == "PRIMARY")
            if primary["rolloutState"] == "COMPLETED" and primary["runningCount"] == primary["desiredCount"]:
                break
            assert clock.now() - began < 900, "the deployment never completed"
            clock.sleep(5)  # the function waits; the world runs on
        clock.sleep(30)  # the driver delivers ECS's event to nobody meanwhile

    scenario.config("web", ROLLING)
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[hold_the_watch_until_ecs_is_done])
    rows = wait_rows(summary)
    assert not [r for r in rows if r["type"] == "TaskTimedOut"]
    assert any('"no state waits for this deployment\'s end"' in line for line in summary["logLines"])
    assert any('"the deployment had already ended"' in line for line in summary["logLines"])
