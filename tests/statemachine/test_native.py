"""The native strategy: the service's own ECS blue/green deployment, followed stage by stage."""

from __future__ import annotations

from .conftest import push_event

NATIVE = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: native}\n"
BLUE_GREEN = {
    "strategy": "BLUE_GREEN",
    "bakeTimeInMinutes": 5,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
}
WAIT = "Wait for ECS to finish the deployment"


def native_world(scenario) -> None:
    scenario.config("web", NATIVE)
    scenario.world["services"][0]["deploymentConfiguration"] = BLUE_GREEN


def test_a_native_blue_green_deployment_is_followed_through_its_lifecycle_stages(scenario):
    native_world(scenario)
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    states = execution["states"]
    assert "Start the canary tasks" not in states
    assert states[states.index("Update the service to the new revision") + 1] == WAIT
    rows = summary["histories"][execution["name"]]
    # No event per stage: the wait looked every minute (one Retry each) through the 5 minute bake.
    assert sum(1 for r in rows if r["state"] == WAIT and r["type"] == "TaskTimedOut") >= 4
    output = next(r for r in rows if r["state"] == WAIT and r["type"] == "TaskSucceeded")
    assert "SUCCESSFUL" in output["detail"] or "COMPLETED" in output["detail"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)
    assert summary["locksHeld"] == 0 and summary["canaryTasks"] == 0


def test_native_stages_are_listed_in_the_wait_states_output(scenario):
    native_world(scenario)
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    output = summary["outputs"][execution["name"]][WAIT]
    assert output["state"] == "COMPLETED" and output["serviceDeploymentStatus"] == "SUCCESSFUL"
    stages = [s["stage"] for s in output["stages"]]
    assert stages[-1] == "CLEAN_UP" and "BAKE_TIME" in stages, stages
    assert stages.index("BAKE_TIME") > 0 and stages[0] in ("PRE_SCALE_UP", "SCALE_UP", "BAKE_TIME")


def test_a_native_deployment_ecs_rolls_back_ends_rolled_back_on_the_old_revision(scenario):
    native_world(scenario)
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    summary = scenario.run(push_event("web", "v3"))
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED" and execution["error"] == "RolledBack", execution
    assert "ECS replaced the deployment of web:2" in execution["cause"]
    assert execution["cause"].count("the service is stable on web:1") == 1
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["desiredCount"], web["runningCount"]) == ("web:1", 2, 2)
    assert summary["locksHeld"] == 0 and summary["canaryTasks"] == 0
