"""Rollback in the real state machine: every failure after the service changed puts it back."""

from __future__ import annotations

from .conftest import push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLLING = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
ROLLBACK_STATES = ["Roll back to the previous revision", "Wait for ECS to finish the rollback"]


def rolled_back(summary) -> dict:
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "RolledBack", execution
    states = execution["states"]
    assert states[-3:] == [
        "Deregister the failed revision",
        "Release the deploy lock after the rollback",
        "Rolled back",
    ]
    assert all(s in states for s in ROLLBACK_STATES)
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["desiredCount"], web["runningCount"]) == ("web:1", 2, 2)
    assert web["images"]["app"] == f"{REGISTRY}/web:v1"
    assert summary["locksHeld"] == 0 and summary["canaryTasks"] == 0
    return execution


def test_a_crashing_image_is_rolled_back_by_ecs_and_ferry_waits_for_it(scenario):
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    execution = rolled_back(scenario.run(push_event("web", "v3")))
    cause = execution["cause"]
    assert cause.startswith("web:2 failed: DeploymentFailed: service prod/web:")
    assert "Ferry rolled prod/web back to web:1 (2 tasks; the service was already back on web:1)" in cause
    assert "the service is stable on web:1. web:2 was deregistered." in cause


def test_a_deployment_slower_than_its_timeout_is_stopped_and_rolled_back(scenario):
    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 900}}
    scenario.config("web", ROLLING + "timeouts: {deployment: 120}\n")
    execution = rolled_back(scenario.run(push_event("web", "v2")))
    assert execution["cause"].startswith(
        "web:2 failed: PhaseTimedOut: service prod/web: the deployment of web:2 did not complete within 120 s"
    )
    assert "stopped the in-flight deployment with ROLLBACK" in execution["cause"]


def test_failed_revisions_can_be_kept(scenario):
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    scenario.config("web", ROLLING + "rollback: {keepFailedRevisions: 1}\n")
    execution = rolled_back(scenario.run(push_event("web", "v3")))
    assert "web:2 stays registered (rollback.keepFailedRevisions: 1)." in execution["cause"]


def test_a_rollback_that_fails_once_is_retried_and_completes(scenario):
    calls = []

    def fail_first_rollback(function: str, event: dict) -> None:
        if function == "RollbackFunction" and event.get("action") == "start":
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("ECS endpoint unreachable")

    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    summary = scenario.run(push_event("web", "v3"), fault_hooks=[fail_first_rollback])
    rolled_back(summary)
    assert len(calls) == 2
    [execution] = summary["executions"]
    failed = [r for r in summary["histories"][execution["name"]] if r["type"] == "LambdaFunctionFailed"]
    assert any(r["detail"].startswith("ConnectionError") for r in failed)


def test_a_rollback_that_keeps_failing_ends_saying_a_person_must_act(scenario):
    def rollback_broken(function: str, event: dict) -> None:
        if function == "RollbackFunction" and event.get("action") == "start":
            raise ConnectionError("ECS endpoint unreachable")

    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 900}}
    scenario.config("web", ROLLING + "timeouts: {deployment: 120}\n")
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[rollback_broken])
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED" and execution["error"] == "RollbackFailed"
    assert execution["states"][-3:] == [
        "Release the deploy lock after the failed rollback",
        "Is the failed rollback explained?",
        "Rollback failed: a person must act",
    ]
    cause = execution["cause"]
    assert cause.startswith("ROLLBACK FAILED: a person must act on prod/web.")
    assert "web:2 failed (PhaseTimedOut:" in cause and "ConnectionError: ECS endpoint unreachable" in cause
    assert "It now runs web:2 (PRIMARY deployment IN_PROGRESS" in cause
    assert "aws ecs update-service --cluster prod --service web --task-definition web:1 --desired-count 2" in cause
    assert summary["locksHeld"] == 0


BAKED = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\nhealthGates: {alarms: [web-5xx], bakeSeconds: 300}\n"


def test_a_quiet_bake_passes(scenario):
    scenario.config("web", BAKED)
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["states"][-5:] == [
        "Bake while watching the alarms",
        "Check the alarms as the bake ends",
        "Did a canary run?",
        "Release the deploy lock",
        "Deployed",
    ]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"


def test_an_alarm_firing_during_the_bake_rolls_the_service_back(scenario):
    import boto3

    from ferry_cli.sandbox.clock import active

    def fire_alarm_soon(function: str, event: dict) -> None:
        if function == "BakeFunction" and "token" in event:
            active().later(
                90,
                lambda: boto3.client("cloudwatch", region_name="us-east-1").set_alarm_state(
                    AlarmName="web-5xx", StateValue="ALARM", StateReason="5xx rate 12% > 5% for 1 minute"
                ),
            )

    scenario.config("web", BAKED)
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[fire_alarm_soon])
    execution = rolled_back(summary)
    assert "Bake while watching the alarms" in execution["states"]
    assert "Check the alarms as the bake ends" not in execution["states"]
    assert execution["cause"].startswith(
        "web:2 failed: AlarmTriggered: alarm web-5xx went into ALARM during the 300 s bake of web:2 on prod/web: "
        "5xx rate 12% > 5% for 1 minute"
    )


def test_an_alarm_whose_event_was_lost_is_caught_as_the_bake_ends(scenario):
    import boto3

    def alarm_without_its_event(function: str, event: dict) -> None:
        if function == "BakeFunction" and event.get("source") == "aws.cloudwatch":
            raise RuntimeError("event lost")
        if function == "BakeFunction" and "token" in event:  # fires after the bake's own first look
            from ferry_cli.sandbox.clock import active

            active().later(
                90,
                lambda: boto3.client("cloudwatch", region_name="us-east-1").set_alarm_state(
                    AlarmName="web-5xx", StateValue="ALARM", StateReason="p99 latency 2.1 s > 1 s"
                ),
            )

    scenario.config("web", BAKED)
    execution = rolled_back(scenario.run(push_event("web", "v2"), fault_hooks=[alarm_without_its_event]))
    assert (
        execution["states"][execution["states"].index("Bake while watching the alarms") + 1]
        == "Check the alarms as the bake ends"
    )
    assert (
        "AlarmTriggered: alarm web-5xx went into ALARM during the 300 s bake of web:2 on prod/web: "
        "p99 latency 2.1 s > 1 s (seen when the bake ended)" in execution["cause"]
    )


def test_an_alarm_already_firing_fails_the_bake_at_once(scenario):
    scenario.world["alarms"] = {"web-5xx": "ALARM"}
    scenario.config("web", BAKED)
    execution = rolled_back(scenario.run(push_event("web", "v2")))
    assert "AlarmTriggered: alarm web-5xx went into ALARM" in execution["cause"]
