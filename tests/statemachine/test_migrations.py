"""Migrations in the real state machine: one-off tasks of the new revision, before the service changes."""

from __future__ import annotations

import json
import re

from ferry.steps import migrate

from .conftest import failed_at, push_event

RUN = "Run the migration task and wait for it to stop"
WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
TWO = WEB + (
    "migrations:\n"
    "  - {name: migrate, container: app, command: [bin/rails, 'db:migrate'], environment: {VERBOSE: '1'}}\n"
    "  - {name: seed, container: app, command: [bin/rails, 'db:seed']}\n"
)
ONE = WEB + "migrations: [{name: migrate, container: app, command: [bin/rails, 'db:migrate'], timeoutSeconds: 120}]\n"


def test_migrations_run_in_order_then_the_deploy_continues(scenario):
    scenario.config("web", TWO)
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    states = execution["states"]
    assert states[6:10] == ["Are there migrations to run?", "Run the migrations in order", RUN, RUN]
    assert states.index("Update the service to the new revision") > states.index(RUN)
    assert summary["migrationTasks"] == {"started": 2, "running": 0}
    history = summary["histories"][execution["name"]]
    iterations = [r for r in history if r["type"] == "MapIterationStarted"]
    assert len(iterations) == 2
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert summary["locksHeld"] == 0


def test_a_failing_migration_stops_the_deploy_with_its_exit_code_and_where_its_log_lines_are(scenario):
    scenario.config("web", ONE)
    scenario.world["migration"] = {
        "exitCode": 1,
        "logLines": [
            "== 20261122 AddIndexToOrders: migrating",
            'PG::DuplicateTable: ERROR: relation "index_orders_on_user_id" already exists',
            "DATABASE_PASSWORD=sandbox-db-password-do-not-print",
        ],
    }
    execution = failed_at(scenario.run(push_event("web", "v2")), RUN)
    assert execution["error"] == "MigrationFailed"
    cause = execution["cause"]
    assert "Migration migrate (bin/rails db:migrate) in container app of web:2 exited with code 1" in cause
    # The Cause names the masked tail in the artefacts bucket and the log stream, and carries no log line
    # (tests/statemachine/test_sensitive.py reads the tail).
    assert re.search(
        rf"\nIts last 3 log lines, masked: s3://\S+/executions/{execution['name']}/logs/(?P<task>[0-9a-f-]+)\.txt "
        r"\(from CloudWatch Logs /ecs/web web/app/(?P=task)\)\.\n",
        cause,
    ), cause
    assert "index_orders_on_user_id" not in cause and "DATABASE_PASSWORD" not in cause
    assert "sandbox-db-password-do-not-print" not in cause
    assert "The service was not changed: it still runs web:1" in cause


def test_a_task_ecs_cannot_start_is_migration_not_started(scenario):
    scenario.config("web", ONE)
    scenario.world["migration"] = {
        "stopCode": "TaskFailedToStart",
        "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
    }
    execution = failed_at(scenario.run(push_event("web", "v2")), RUN)
    assert execution["error"] == "MigrationNotStarted"
    assert "never started (TaskFailedToStart: CannotPullContainerError" in execution["cause"]


def test_a_task_killed_for_memory_is_migration_failed_with_the_reason(scenario):
    scenario.config("web", ONE)
    scenario.world["migration"] = {
        "exitCode": 137,
        "stoppedReason": "OutOfMemoryError: Container killed due to memory usage",
    }
    execution = failed_at(scenario.run(push_event("web", "v2")), RUN)
    assert execution["error"] == "MigrationFailed"
    assert "exited with code 137" in execution["cause"] and "OutOfMemoryError" in execution["cause"]


def test_a_migration_slower_than_its_timeout_is_stopped(scenario):
    scenario.config("web", ONE)
    scenario.world["migration"] = {"runSeconds": 3000, "logLines": ["still copying rows..."]}
    summary = scenario.run(push_event("web", "v2"))
    execution = failed_at(summary, RUN)
    assert execution["error"] == "MigrationTimedOut"
    assert "ran longer than its 120 s timeout and was stopped" in execution["cause"]
    assert summary["migrationTasks"] == {"started": 1, "running": 0}


def test_a_service_without_migrations_skips_the_step_visibly(scenario):
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED"
    assert "No migrations to run" in execution["states"] and RUN not in execution["states"]
    assert summary["migrationTasks"] == {"started": 0, "running": 0}


def test_a_missed_stop_event_costs_one_heartbeat_and_starts_no_second_task(scenario):
    def lose_task_events(function: str, event: dict) -> None:
        if function == "TaskStoppedFunction":
            raise RuntimeError("event lost")

    scenario.config("web", ONE)  # heartbeat = min(300, timeoutSeconds 120)
    summary = scenario.run(push_event("web", "v2"), fault_hooks=[lose_task_events])
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    history = summary["histories"][execution["name"]]
    assert [r["detail"] for r in history if r["type"] == "TaskTimedOut"] == ["States.HeartbeatTimeout"]
    assert execution["states"].count(RUN) == 1  # a Retry, not a new state entry
    assert summary["migrationTasks"] == {"started": 1, "running": 0}


def test_a_retried_start_finds_the_task_instead_of_starting_another(tmp_path):
    from ferry_cli.sandbox.run import world_session

    from .conftest import EXAMPLE

    with world_session(EXAMPLE / "world.yaml") as (sandbox, _world):
        table = sandbox.refs["LockTable"]
        td = sandbox.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]["taskDefinition"]
        step = migrate.Migration("migrate", "app", ["bin/rails", "db:migrate"], {}, 900)
        first = migrate.start(
            table=table,
            token="token-1",
            execution="exec-1",
            cluster="prod",
            service="web",
            task_definition_arn=td,
            migration=step,
        )
        again = migrate.start(
            table=table,
            token="token-2",
            execution="exec-1",
            cluster="prod",
            service="web",
            task_definition_arn=td,
            migration=step,
        )
        assert first["taskArn"] == again["taskArn"]
        assert sandbox.simulator.task_count("migration") == 1
        other = migrate.start(
            table=table,
            token="token-3",
            execution="exec-2",
            cluster="prod",
            service="web",
            task_definition_arn=td,
            migration=step,
        )
        assert other["taskArn"] != first["taskArn"]
        task = sandbox.client("ecs").describe_tasks(cluster="prod", tasks=[first["taskArn"]])["tasks"][0]
        assert task["startedBy"] == migrate.started_by("exec-1", "migrate")
        assert task["overrides"]["containerOverrides"][0]["command"] == ["bin/rails", "db:migrate"]
        assert json.dumps(task["overrides"]).count("bin/rails") == 1


def test_an_execution_aborted_during_a_migration_has_its_task_stopped(scenario):
    import yaml

    from ferry_cli.sandbox.run import world_session

    scenario.config("web", ONE.replace("timeoutSeconds: 120", "timeoutSeconds: 3600"))
    scenario.world["migration"] = {"runSeconds": 5000}
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path) as (sandbox, _world):
        arn = sandbox.start_execution(
            {"service": "web", "images": {"app": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v2"}},
            name="abort-migration",
        )
        sandbox.run_until(lambda: sandbox.simulator.running_tasks("migration") > 0)
        sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
        sandbox.wait_for_executions()
        sandbox.run_until(lambda: sandbox.simulator.running_tasks("migration") == 0, limit=120)
        assert sandbox.locks_held() == 0
        assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:1"


def _sidecar_first(scenario) -> None:
    """List nginx before app in the running task definition, as real task definitions often do."""
    path = scenario.dir / "web-task-def.json"
    spec = json.loads(path.read_text())
    spec["containerDefinitions"].reverse()
    assert [c["name"] for c in spec["containerDefinitions"]] == ["nginx", "app"]
    path.write_text(json.dumps(spec))


def test_a_migration_in_a_container_listed_after_a_sidecar_succeeds_on_its_own_exit_code(scenario):
    """The exit code is the migration container's: nginx, listed first, is stopped by ECS with 143."""
    _sidecar_first(scenario)
    scenario.config("web", ONE)
    scenario.world["migration"] = {"exitCode": 0, "logLines": ["== migrated"]}
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert summary["outputs"][execution["name"]][RUN]["exitCode"] == 0


def test_a_failing_migration_after_a_sidecar_reports_its_own_container_and_log_lines(scenario):
    _sidecar_first(scenario)
    scenario.config("web", ONE)
    scenario.world["migration"] = {"exitCode": 2, "logLines": ["rake aborted!"]}
    execution = failed_at(scenario.run(push_event("web", "v2")), RUN)
    assert execution["error"] == "MigrationFailed"
    assert "in container app of web:2 exited with code 2" in execution["cause"]
    assert "Its last 1 log line, masked: s3://" in execution["cause"] and " web/app/" in execution["cause"]
    assert "rake aborted!" not in execution["cause"]
