"""Clean-up that cannot give up (issue: nothing left behind): a canary is removed before the execution reports
anything, however long StopTask and DeregisterTargets fail; an execution stopped while a step starts a task
leaves nothing running; and the clean-up reads the deploy journal, never the config as it is now."""

from __future__ import annotations

import pytest
import yaml

from ferry.lifecycle import reaper
from ferry_cli import history
from ferry_cli.sandbox.faults import ApiFault, Faults, LambdaFault
from ferry_cli.sandbox.run import world_session

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


# ------------------------------------------------------------------ the clean-up and the rollback read the journal
LONG_CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 600, unhealthyThreshold: 3}}\n"
)
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CHANGES = {
    "deleted": None,
    "broken": "cluster: [prod\n",
    "another service": "cluster: prod\nservice: api\ncontainers: {app: {repository: web}}\n",
}


def change_config(sandbox, change: str) -> None:
    s3, key = sandbox.client("s3"), "services/web/ferry.yaml"
    if CHANGES[change] is None:
        s3.delete_object(Bucket=sandbox.config_bucket, Key=key)
    else:
        s3.put_object(Bucket=sandbox.config_bucket, Key=key, Body=CHANGES[change].encode())


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_config_changed_mid_deploy_cannot_hide_the_canary_or_the_lock_from_the_clean_up(scenario, change):
    """Case 2: the config is deleted, broken or pointed at another service while the canary serves, then the
    execution is stopped: the execution-ended function still removes the canary and releases the lock."""
    scenario.config("web", LONG_CANARY)
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path) as (sandbox, _world):
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="edited")
        sandbox.run_until(
            lambda: sandbox.simulator.canary_tasks() > 0 and "Check the canary" in str(sandbox.history(arn))
        )
        change_config(sandbox, change)
        sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        assert sandbox.simulator.canary_tasks() == 0
        assert sandbox.locks_held() == 0
        assert reaper.scan_lock_table(sandbox.lock_table)[0] == []
        [ended] = [e for e in sandbox.status_events if e["event"]["detail"]["status"] == "ABORTED"]
        assert ended["error"] is None


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_config_changed_as_the_rollback_starts_does_not_fail_a_good_rollback(scenario, change):
    """Case 3: the rollback reads what the deploy read when it began (keepFailedRevisions included), never the
    config as it is now: it ends `Rolled back`, not `Rollback failed`."""
    scenario.config(
        "web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
    )
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    scenario.world["ecr"]["web"] = ["v1", "v2", "v3"]
    sandbox_of = {}

    def edit_as_the_rollback_starts(function: str, event: dict) -> None:
        if function == "RollbackFunction" and event.get("action") == "start" and "done" not in sandbox_of:
            sandbox_of["done"] = True
            change_config(sandbox_of["sandbox"], change)

    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path, fault_hooks=[edit_as_the_rollback_starts]) as (sandbox, _world):
        sandbox_of["sandbox"] = sandbox
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v3"}}, name="undone")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        assert sandbox_of.get("done"), "the rollback never started: the test proves nothing"
        [execution] = sandbox.executions()
        events = sandbox.history(arn)
        assert execution["status"] == "FAILED"
        assert history.outcome(events)[0] == "RolledBack", history.entered_states(events)
        service = sandbox.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
        assert service["taskDefinition"].endswith("/web:1")
        assert sandbox.locks_held() == 0


def test_a_config_pointed_at_another_service_after_the_lock_was_taken_deploys_nothing(scenario):
    """The lock and the journal are for the service the config named when the deploy began: Render refuses a
    config that names another one by then, before anything changes."""
    scenario.config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    holder = {}

    def repoint_after_the_lock(function: str, event: dict) -> None:
        if function == "RenderFunction" and "done" not in holder:
            holder["done"] = True
            change_config(holder["sandbox"], "another service")

    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path, fault_hooks=[repoint_after_the_lock]) as (sandbox, _world):
        holder["sandbox"] = sandbox
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="repointed")
        sandbox.wait_for_executions()
        events = sandbox.history(arn)
        error, cause = history.outcome(events)
        assert history.entered_states(events)[-2:] == ["Release the deploy lock after the failure", "Deploy failed"]
        assert error == "ConfigInvalid"
        assert "the config now names prod/api, but this deploy took the lock of prod/web" in cause
        assert sandbox.locks_held() == 0


# ------------------------------------------------------------------ a stop while a step that starts a task runs
def stop_mid_step(sandbox, arn: str) -> None:
    """What an operator's StopExecution does while a step's Lambda still runs: the execution is ABORTED at once,
    and its status event reaches the execution-ended function, which cleans up, while the step runs on."""
    sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
    sandbox.clock.sleep(30)  # the step is still running meanwhile: the end is handled first


@pytest.mark.parametrize("when", ["before it journals", "after it journals, before RunTask"])
@pytest.mark.parametrize("step", ["canary", "migration"])
def test_a_stop_while_a_step_starts_a_task_leaves_nothing_running(scenario, monkeypatch, step, when):
    """Case 4: the end is handled while the step that starts the canary (or a migration) still runs. Stopped
    before the step journals, the step is refused; stopped after (the execution-ended function found no task
    yet), the step finds the journal ended once its task exists and removes it. No task runs on, no lock is
    left for the next deploy to take over."""
    from ferry.steps import canary, migrate

    config = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    if step == "canary":
        config += "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
    else:
        config += "strategy: {type: rolling}\n"
        config += "migrations: [{name: schema, container: app, command: [bin/migrate], timeoutSeconds: 600}]\n"
        scenario.world["behaviour"] = {"web:v2": {"startSeconds": 5000}}  # a migration still starting at the end
    scenario.config("web", config)
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    function = "CanaryFunction" if step == "canary" else "MigrateFunction"
    holder: dict = {}

    def stop_as_the_step_starts(logical: str, event: dict) -> None:
        if logical == function and (step != "canary" or event.get("action") == "start") and "stopped" not in holder:
            holder["stopped"] = True
            stop_mid_step(holder["sandbox"], holder["arn"])

    module = canary if step == "canary" else migrate
    if when != "before it journals":
        run_task = module.run_task if step == "migration" else None
        if step == "canary":
            original = module.one_off_parameters

            def parameters_then_stop(*args, **kwargs):
                if "stopped" not in holder:
                    holder["stopped"] = True
                    stop_mid_step(holder["sandbox"], holder["arn"])
                return original(*args, **kwargs)

            monkeypatch.setattr(module, "one_off_parameters", parameters_then_stop)
        else:

            def stop_then_run(*args, **kwargs):
                if "stopped" not in holder:
                    holder["stopped"] = True
                    stop_mid_step(holder["sandbox"], holder["arn"])
                return run_task(*args, **kwargs)

            monkeypatch.setattr(module, "run_task", stop_then_run)
    hooks = [stop_as_the_step_starts] if when == "before it journals" else []
    with world_session(path, fault_hooks=hooks) as (sandbox, _world):
        holder["sandbox"] = sandbox
        holder["arn"] = sandbox.start_execution(
            {"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="stopped-mid-step"
        )
        sandbox.wait_for_executions()
        sandbox.settle_world()
        assert holder.get("stopped"), "the step never ran: the test proves nothing"
        [execution] = sandbox.executions()
        assert execution["status"] == "ABORTED"
        ecs = sandbox.client("ecs")
        running = [
            t
            for t in ecs.describe_tasks(cluster="prod", tasks=ecs.list_tasks(cluster="prod")["taskArns"])["tasks"]
            if (t.get("startedBy") or "").startswith("ferry-")
        ]
        assert running == [], [(t["startedBy"], t["lastStatus"]) for t in running]
        assert sandbox.simulator.canary_tasks() == 0
        assert sandbox.locks_held() == 0
        assert reaper.scan_lock_table(sandbox.lock_table)[0] == []


# ------------------------------------------------------------------ records that match the service
def deployed_release(function: str, event: dict) -> str | None:
    return "release" if function == "LockFunction" and event.get("deployed") is True else None


@pytest.mark.parametrize("how", ["the table refuses the record", "the release crashes every time"])
def test_a_release_that_fails_for_good_after_a_rollout_still_records_the_deploy(scenario, how):
    """Case 5: the release after web:3's rollout fails for good (the lock table refuses the deploy record while
    the state retries; or the function crashes on every attempt), so the execution ends in `Deployed, but the
    lock was not released`. The execution-ended function then records the deploy from the release state's input
    (retried by Lambda until the table answers), so a rollback request goes back to web:2, not two revisions back
    to web:1."""
    scenario.config(
        "web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
    )
    scenario.world["ecr"]["web"] = ["v1", "v2", "v3"]
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    if how == "the table refuses the record":
        faults = Faults(
            [ApiFault("dynamodb", 1.0, ("ServiceUnavailable",), operations=("UpdateItem",), body_contains="deployed#")]
        )
    else:
        faults = Faults(lambdas=[LambdaFault("crash", step=deployed_release, times=None)])
    ends: list[str] = []

    def answer_again_on_the_retry(function: str, event: dict) -> None:
        """The table answers again from the execution-ended function's second attempt (Lambda's retry)."""
        detail = event.get("detail") if isinstance(event, dict) else None
        if function == "ExecutionEndedFunction" and isinstance(detail, dict) and detail.get("status") == "FAILED":
            ends.append(detail["name"])
            if ends.count("to-v3") == 2:
                sandbox.faults = None

    with world_session(path, fault_hooks=[answer_again_on_the_retry]) as (sandbox, _world):
        sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name="to-v2")
        sandbox.wait_for_executions()
        sandbox.faults, faults.sandbox = faults, sandbox
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v3"}}, name="to-v3")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        if how == "the table refuses the record":
            assert ends.count("to-v3") == 2, ends  # the first attempt could not record it either
        events = sandbox.history(arn)
        error, cause = history.outcome(events)
        assert history.entered_states(events)[-1] == "Deployed, but the lock was not released"
        if how == "the table refuses the record":
            assert error == "LockUnavailable"
            assert cause.startswith("prod/web is deployed: the service runs web:3. Only the deploy's record and lock")
        else:
            assert error == "InjectedCrash"
        assert sandbox.locks_held() == 0
        assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:3"

        sandbox.faults = None
        back = sandbox.start_execution({"service": "web", "action": "rollback"}, name="roll-back")
        sandbox.wait_for_executions()
        assert history.entered_states(sandbox.history(back))[-1] == "Deployed"
        web = sandbox.simulator.services()["prod/web"]
        assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)


# ------------------------------------------------------------------ a watcher that fails decides nothing
def watcher(phase: str):
    def step(function: str, event: dict) -> str | None:
        if function == "CheckDeploymentFunction" and event.get("phase") == phase and "token" in event:
            return f"watch the {phase}"
        if phase == "bake" and function == "BakeFunction":
            return "watch the bake"
        return None

    return step


@pytest.mark.parametrize("times", [3, None], ids=["stuck three times", "stuck every time"])
def test_a_stuck_rollback_watcher_does_not_call_a_rollback_ecs_completes_a_failed_one(scenario, times):
    """Case 10: the rollback's watcher times out (three times, or on every attempt) while ECS's circuit breaker
    rolls the service back on its own: the deploy ends `Rolled back`, not `Rollback failed`. Three failures are
    retried (a watcher that fails is no evidence); when every attempt fails, the explanation finds the service
    back on web:1, its deployment COMPLETED, and ends it `Rolled back` all the same."""
    scenario.config(
        "web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
    )
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1}}
    scenario.world["ecr"]["web"] = ["v1", "v2", "v3"]
    faults = Faults(lambdas=[LambdaFault("timeout", step=watcher("rollback"), times=times)])
    summary = scenario.run(push_event("web", "v3"), faults=faults)
    [execution] = summary["executions"]
    assert (execution["status"], execution["states"][-1], execution["error"]) == (
        "FAILED",
        "Rolled back",
        "RolledBack",
    ), execution
    assert len(summary["faults"]["lambda"]) >= 3
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:1", 2)
    assert summary["locksHeld"] == 0
    if times is None:
        assert "Is the service back on its previous revision after all?" in execution["states"]


def test_a_bake_whose_watcher_fails_three_times_still_deploys_a_good_revision(scenario):
    """Case 10's other half: the bake's function fails three times; the deploy is good, the alarms quiet, so it
    is not rolled back for it."""
    scenario.config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
        "healthGates: {alarms: [web-5xx], bakeSeconds: 120}\n",
    )
    faults = Faults(lambdas=[LambdaFault("timeout", step=watcher("bake"), times=3)])
    summary = scenario.run(push_event("web", "v2"), faults=faults)
    [execution] = summary["executions"]
    assert (execution["status"], execution["states"][-1]) == ("SUCCEEDED", "Deployed"), execution
    assert len(summary["faults"]["lambda"]) == 3
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"


def test_a_migration_past_its_timeout_is_stopped_before_deploy_failed_however_long_stoptask_is_refused(scenario):
    """Case 1's migration variant: the migration is still starting past its timeout while StopTask is refused 60
    times in a row (throttled): the migration's state retries until its task is stopped, and the deploy fails with
    the migration's own verdict (it never started), not with the throttled StopTask and the migration still
    running."""
    scenario.config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
        "migrations: [{name: schema, container: app, command: [bin/migrate], timeoutSeconds: 120}]\n",
    )
    scenario.world["behaviour"] = {"web:v2": {"startSeconds": 5000}}  # the migration never gets going
    faults = Faults([ApiFault("ecs", 1.0, ("ThrottlingException",), operations=("StopTask",), limit=60)])
    summary = scenario.run(push_event("web", "v2"), faults=faults)
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED"
    assert execution["error"] == "MigrationNotStarted", execution
    assert "never started" in execution["cause"]
    assert execution["states"][-2:] == ["Release the deploy lock after the failure", "Deploy failed"]
    history = summary["histories"][execution["name"]]
    throttled = [
        e
        for e in history
        if e["type"] == "TaskFailed"
        and e["state"] == "Run the migration task and wait for it to stop"
        and "StopTask" in e["detail"]
    ]
    assert len(throttled) > 2, [e["detail"] for e in throttled]  # more than the two retries it used to have
    assert summary["faults"]["services"]["ecs"]["injected"] == 60
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:1", 2)
    assert summary["locksHeld"] == 0
