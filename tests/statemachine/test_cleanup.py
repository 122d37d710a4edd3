"""Clean-up that cannot give up (issue: nothing left behind): a canary is removed before the execution reports
anything, however long StopTask and DeregisterTargets fail; an execution stopped while a step starts a task
leaves nothing running; and the clean-up reads the deploy journal, never the config as it is now."""

from __future__ import annotations

from ferry_cli.sandbox.faults import ApiFault, Faults

from .conftest import push_event

CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
)


# StopTask and DeregisterTargets each refused for 100 attempts in a row (several invocations of 8 to 16 attempts): longer than the clients' own retries
# and the states' usual two retries, well inside the clean-up's hour of retries.
def outage() -> Faults:
    return Faults(
        [
            ApiFault("ecs", 1.0, ("ThrottlingException",), operations=("StopTask",), limit=100),
            ApiFault("elbv2", 1.0, ("Throttling",), operations=("DeregisterTargets",), limit=100),
        ],
        seed=11,
    )


def test_a_long_stoptask_and_deregistertargets_outage_delays_deployed_until_the_canary_is_gone(scenario):
    scenario.config("web", CANARY)
    summary = scenario.run(push_event("web", "v2"), faults=outage())
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["states"][-3:] == ["Stop the canary tasks", "Release the deploy lock", "Deployed"]
    history = summary["histories"][execution["name"]]
    stop_failures = [
        e for e in history if e["type"] == "LambdaFunctionFailed" and e["state"] == "Stop the canary tasks"
    ]
    # More failures than the two retries every other state has: before the clean-up retried for up to an hour, the
    # state gave up here and the execution reported Deployed with the canary still serving.
    assert len(stop_failures) > 3, [e["detail"] for e in stop_failures]
    assert summary["faults"]["gaveUp"] > 0
    assert summary["canaryTasks"] == 0 and summary["locksHeld"] == 0
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)


def test_a_failed_canary_is_removed_before_deploy_failed_however_long_the_outage(scenario):
    scenario.config("web", CANARY)
    scenario.world["behaviour"] = {"web:v4": {"health": "unhealthy"}}
    scenario.world["ecr"]["web"] = ["v1", "v2", "v4"]
    summary = scenario.run(push_event("web", "v4"), faults=outage())
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED"
    assert execution["states"][-3:] == [
        "Remove the canary after the failure",
        "Release the deploy lock after the failure",
        "Deploy failed",
    ]
    assert execution["error"] == "CanaryUnhealthy"
    history = summary["histories"][execution["name"]]
    removals = [e for e in history if e["type"] == "LambdaFunctionFailed" and e["state"] == execution["states"][-3]]
    assert len(removals) > 3, [e["detail"] for e in removals]
    assert summary["canaryTasks"] == 0 and summary["locksHeld"] == 0
