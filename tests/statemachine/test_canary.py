"""The canary strategy in the real state machine: prove the new revision beside the service first."""

from __future__ import annotations

from .conftest import failed_at, push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
)
CHECK = "Check the canary"


def run_unhealthy_canary(scenario) -> tuple[dict, dict]:
    """Push web:v4, whose tasks never pass a health check; the deploy must fail before the service changes."""
    scenario.config("web", CANARY)
    scenario.world["behaviour"] = {"web:v4": {"health": "unhealthy"}}
    scenario.world["ecr"]["web"] = ["v1", "v2", "v4"]
    summary = scenario.run(push_event("web", "v4"))
    execution = failed_at(summary, "Remove the canary after the failure")
    assert execution["error"] == "CanaryUnhealthy"
    assert summary["canaryTasks"] == 0
    return summary, execution


def test_a_healthy_canary_goes_first_then_the_service_then_the_canary_is_removed(scenario):
    scenario.config("web", CANARY)
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    states = execution["states"]
    assert (
        states.index("Start the canary tasks")
        < states.index(CHECK)
        < states.index("Update the service to the new revision")
    )
    assert states[-6:] == [
        "Did a canary run?",
        "Take the canary out of the target groups",
        "Let the canary drain",
        "Stop the canary tasks",
        "Release the deploy lock",
        "Deployed",
    ]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)
    assert summary["canaryTasks"] == 0 and summary["locksHeld"] == 0


def test_a_crashing_canary_stops_the_deploy_before_the_service_changes(scenario):
    scenario.config("web", CANARY)
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1, "logLines": ["boot: missing REDIS_URL"]}}
    summary = scenario.run(push_event("web", "v3"))
    execution = failed_at(summary, "Remove the canary after the failure")
    assert execution["error"] == "CanaryCrashed"
    assert "a canary task of web:2 stopped: EssentialContainerExited" in execution["cause"]
    assert "container app exited with code 1" in execution["cause"]
    # The log tail is named, not quoted: tests/statemachine/test_sensitive.py reads it.
    assert "Its last 1 log line, masked: s3://" in execution["cause"] and " web/app/" in execution["cause"]
    assert "boot: missing REDIS_URL" not in execution["cause"]
    assert summary["canaryTasks"] == 0


def test_an_unhealthy_canary_fails_naming_the_failed_checks(scenario):
    summary, execution = run_unhealthy_canary(scenario)
    # The example's app container has a health check, which ECS reports first.
    assert execution["cause"] == (
        "the canary of web:2 failed its container health checks 3 times in a row. The service was not changed."
    )
    assert summary["canaryTasks"] == 0


def test_a_canary_slower_than_its_timeout_fails_with_phase_timed_out(scenario):
    scenario.config("web", CANARY + "timeouts: {canary: 120}\n")
    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 900}}
    summary = scenario.run(push_event("web", "v2"))
    execution = failed_at(summary, "Remove the canary after the failure")
    assert execution["error"] == "PhaseTimedOut"
    assert "the canary of web:2 was not healthy for 60 s within 120 s (timeouts.canary)" in execution["cause"]
    assert summary["canaryTasks"] == 0


def test_a_main_deployment_failing_after_the_canary_passed_is_rolled_back(scenario):
    scenario.config("web", CANARY + "healthGates: {alarms: [web-5xx], bakeSeconds: 300}\n")

    def fire_alarm_in_bake(function: str, event: dict) -> None:
        import boto3

        from ferry_cli.sandbox.clock import active

        if function == "BakeFunction" and "token" in event:
            active().later(
                60,
                lambda: boto3.client("cloudwatch", region_name="us-east-1").set_alarm_state(
                    AlarmName="web-5xx", StateValue="ALARM", StateReason="p99 latency 2.3 s"
                ),
            )

    summary = scenario.run(push_event("web", "v2"), fault_hooks=[fire_alarm_in_bake])
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED" and execution["error"] == "RolledBack", execution
    assert "Check the canary" in execution["states"] and "Update the service to the new revision" in execution["states"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:1", 2)
    assert summary["canaryTasks"] == 0 and summary["locksHeld"] == 0


def test_an_execution_aborted_during_the_canary_has_its_canary_removed_and_lock_released(scenario):
    import yaml

    from ferry_cli.sandbox.run import world_session

    scenario.config("web", CANARY.replace("healthyForSeconds: 60", "healthyForSeconds: 3000"))
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path) as (sandbox, _world):
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="abort-canary")
        sandbox.run_until(lambda: sandbox.simulator.canary_tasks() > 0 and CHECK in str(sandbox.history(arn)))
        sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
        sandbox.wait_for_executions()
        sandbox.run_until(lambda: sandbox.simulator.canary_tasks() == 0, limit=120)  # stopping takes a little while
        assert sandbox.locks_held() == 0
        assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:1"


def test_a_canary_its_target_groups_find_unhealthy_fails_with_their_reason_codes(scenario):
    import json

    spec = json.loads((scenario.dir / "web-task-def.json").read_text())
    for container in spec["containerDefinitions"]:  # no container health checks: the load balancer's are the gate
        container.pop("healthCheck", None)
        container.pop("dependsOn", None)
    (scenario.dir / "web-task-def.json").write_text(json.dumps(spec))
    summary, execution = run_unhealthy_canary(scenario)
    assert execution["cause"].startswith(
        "the canary of web:2 was not healthy 3 times in a row in its target groups: web-tg: "
        "unhealthy (Target.FailedHealthChecks: Health checks failed)"
    )
    assert summary["canaryTasks"] == 0
