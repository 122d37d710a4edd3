"""The migration library's judgement of tasks, without ECS: outcomes, causes, masking, placement failures; the
retried step finding its task; the step's contract."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from ferry import aws as ferry_aws
from ferry.steps import migrate
from ferry.aws import container_logs, ecs, waiters
from ferry.errors import InputInvalid, MigrationNotStarted

from .conftest import awsvpc, run_tasks

STEP = migrate.Migration("migrate", "app", ["bin/rails", "db:migrate"], {"VERBOSE": "1"}, 600)
ARN = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef"


def stopped(
    exit_code,
    stop_code="EssentialContainerExited",
    reason="Essential container in task exited",
    started=True,
    container_reason=None,
):
    container = {"name": "app", "exitCode": exit_code}
    if container_reason:
        container["reason"] = container_reason
    task = {
        "taskArn": ARN,
        "lastStatus": "STOPPED",
        "stopCode": stop_code,
        "stoppedReason": reason,
        "containers": [container, {"name": "nginx", "exitCode": 143}],
    }
    if started:
        task["startedAt"] = datetime(2026, 11, 22, tzinfo=timezone.utc)
    if exit_code is None:
        del container["exitCode"]
    return task


def test_started_by_fits_ecs_and_differs_per_execution_and_migration():
    marker = migrate.started_by("web-v2-abc", "migrate")
    assert marker.startswith("ferry-") and len(marker) <= 36
    assert marker == migrate.started_by("web-v2-abc", "migrate")
    assert marker != migrate.started_by("web-v2-abc", "seed") != migrate.started_by("web-v3-abc", "migrate")


def test_exit_zero_is_success_and_carries_no_cause():
    result = migrate.outcome(stopped(0), STEP, None, {})
    assert result.error is None and result.output == {"name": "migrate", "taskArn": ARN, "exitCode": 0}


@pytest.mark.parametrize(
    "task, error, words",
    [
        (stopped(1), "MigrationFailed", "exited with code 1 (Essential container in task exited)"),
        (
            stopped(137, container_reason="OutOfMemoryError: Container killed due to memory usage"),
            "MigrationFailed",
            "exited with code 137 (Essential container in task exited; container: OutOfMemoryError",
        ),
        (
            stopped(None, "TaskFailedToStart", "CannotPullContainerError: not found", started=False),
            "MigrationNotStarted",
            "never started (TaskFailedToStart: CannotPullContainerError: not found)",
        ),
        (
            stopped(None, "SpotInterruption", "Your Spot Task was interrupted."),
            "MigrationFailed",
            "was stopped by ECS before it finished: its Spot capacity was reclaimed (SpotInterruption: Your Spot Task was "
            "interrupted.)",
        ),
    ],
)
def test_each_way_a_task_can_end_has_its_error(task, error, words):
    result = migrate.outcome(task, STEP, None, {"revision": "web:2", "previousRevision": "web:1"})
    assert result.error == error
    assert words in result.cause
    assert result.cause.startswith("Migration migrate (bin/rails db:migrate) in container app of web:2 ")
    assert "The service was not changed: it still runs web:1." in result.cause
    assert "No log lines: the container does not log to CloudWatch (awslogs)." in result.cause


STOP_CODES = boto3.client("ecs", region_name="us-east-1").meta.service_model.shape_for("TaskStopCode").enum
STOPPED_BY_OTHERS = {  # stop code -> a stoppedReason ECS gives with it
    "UserInitiated": "Task stopped by user",
    "ServiceSchedulerInitiated": "Scaling activity initiated by (deployment ecs-svc/123)",
    "SpotInterruption": "Your Spot Task was interrupted.",
    "TerminationNotice": "Task stopped due to a termination notice (EC2 instance terminating)",
    "InfrastructureHealth": "Task stopped because its host failed health checks",
}


def test_every_stop_code_ecs_knows_is_judged():
    assert set(STOP_CODES) == set(STOPPED_BY_OTHERS) | {"EssentialContainerExited", "TaskFailedToStart"}, (
        "botocore's TaskStopCode has changed: decide whether a new code can end a migration well"
    )


@pytest.mark.parametrize("stop_code", sorted(STOPPED_BY_OTHERS))
def test_a_task_stopped_by_someone_else_fails_even_when_its_container_exited_0(stop_code):
    """A container that traps SIGTERM exits 0 on a stop it did not choose: the migration did not finish."""
    reason = STOPPED_BY_OTHERS[stop_code]
    result = migrate.outcome(
        stopped(0, stop_code, reason), STEP, None, {"revision": "web:2", "previousRevision": "web:1"}
    )
    assert result.error == "MigrationFailed" and result.output == {}
    first = result.cause.splitlines()[0]
    assert f"({stop_code}: {reason})" in first and "its container exited with code 0" in first
    assert "The service was not changed: it still runs web:1." in result.cause


@pytest.mark.parametrize("stop_code", sorted(STOPPED_BY_OTHERS))
def test_a_task_stopped_by_someone_else_before_its_container_exited_fails(stop_code):
    result = migrate.outcome(stopped(None, stop_code, STOPPED_BY_OTHERS[stop_code]), STEP, None, {})
    assert result.error == "MigrationFailed" and f"({stop_code}: {STOPPED_BY_OTHERS[stop_code]})" in result.cause


def test_only_the_migrations_own_container_exiting_0_succeeds():
    task = stopped(0)
    task["containers"] = [{"name": "nginx", "exitCode": 0}, {"name": "app", "exitCode": 1}]
    assert migrate.outcome(task, STEP, None, {}).error == "MigrationFailed"
    no_stop_code = {**stopped(0), "stopCode": None}
    assert migrate.outcome(no_stop_code, STEP, None, {}).error == "MigrationFailed"


def test_a_timed_out_task_says_so():
    result = migrate.outcome(
        {**stopped(None, "UserInitiated", "Ferry: too long"), "startedAt": datetime.now(timezone.utc)},
        STEP,
        None,
        {"timedOut": True},
    )
    assert result.error == "MigrationTimedOut" and "ran longer than its 600 s timeout and was stopped" in result.cause


def test_log_lines_are_capped_and_credentials_masked(aws):
    import boto3

    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/ecs/web")
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="web/app/0123456789abcdef")
    lines = [f"line {i} " + "x" * 300 for i in range(40)] + ["DB_PASSWORD=hunter2", "api_key: abc123", "done"]
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(
        logGroupName="/ecs/web",
        logStreamName="web/app/0123456789abcdef",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
    )
    tail, where = container_logs.tail({"group": "/ecs/web", "region": "", "prefix": "web"}, "app", ARN)
    assert where == "/ecs/web web/app/0123456789abcdef"
    assert tail[-3:] == ["DB_PASSWORD=***", "api_key: ***", "done"]
    assert sum(len(line) + 1 for line in tail) <= container_logs.LOG_BYTES and len(tail) <= container_logs.LOG_LINES
    assert "hunter2" not in "".join(tail) and "abc123" not in "".join(tail)


def test_a_task_ecs_cannot_place_is_migration_not_started(aws):
    ecs = ferry_aws.client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response(
            "describe_services",
            {
                "services": [
                    {
                        "serviceName": "web",
                        "status": "ACTIVE",
                        "launchType": "FARGATE",
                        "platformVersion": "1.4.0",
                        "networkConfiguration": {
                            "awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}
                        },
                    }
                ]
            },
        )
        stub.add_response(
            "run_task",
            {"tasks": [], "failures": [{"reason": "RESOURCE:MEMORY", "detail": "no capacity"}]},
            {
                "cluster": "prod",
                "taskDefinition": "web:2",
                "count": 1,
                "startedBy": "ferry-x",
                "propagateTags": "TASK_DEFINITION",
                "overrides": {
                    "containerOverrides": [
                        {
                            "name": "app",
                            "command": ["bin/rails", "db:migrate"],
                            "environment": [{"name": "VERBOSE", "value": "1"}],
                        }
                    ]
                },
                "tags": [
                    {"key": "ferry:execution", "value": "exec-1"},
                    {"key": "ferry:purpose", "value": "migration"},
                    {"key": "ferry:migration", "value": "migrate"},
                ],
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}},
                "launchType": "FARGATE",
                "platformVersion": "1.4.0",
            },
        )
        with pytest.raises(
            MigrationNotStarted, match=r"could not place migration migrate .* RESOURCE:MEMORY \(no capacity\)"
        ):
            migrate.run_task("prod", "web", "web:2", STEP, "exec-1", "ferry-x")
        stub.assert_no_pending_responses()


def test_a_retried_migration_step_finds_the_task_it_started_after_it_stopped(runnable_world):
    marker = migrate.started_by("web-v2-abc", "migrate")
    [task] = run_tasks(1, runnable_world["taskDefinitionArn"], network=awsvpc(), startedBy=marker)
    boto3.client("ecs").stop_task(cluster="prod", task=task["taskArn"], reason="done")
    found = migrate.find_task("prod", marker, family=ecs.family_of(runnable_world["taskDefinitionArn"]))
    assert found is not None and found["taskArn"] == task["taskArn"] and found["lastStatus"] == "STOPPED"


# ------------------------------------------------------------------ the step's contract

MIGRATION = {
    "name": "migrate",
    "container": "app",
    "command": ["bin/rails", "db:migrate"],
    "environment": {},
    "timeoutSeconds": 120,
    "heartbeatSeconds": 120,
}
STATE = {
    "token": "token-1",
    "execution": "web-v2-abc",
    "service": "web",
    "cluster": "prod",
    "ecsService": "web",
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
    "previousRevision": "web:1",
    "migration": MIGRATION,
}


def test_the_state_input_reads_as_the_step_takes_it():
    request = migrate.Input.from_state(STATE)
    assert request.where == "prod/web" and request.service == "web" and request.previous_revision == "web:1"
    assert request.migration == migrate.Migration("migrate", "app", ["bin/rails", "db:migrate"], {}, 120, 120)
    assert request.migration.label() == "migrate (bin/rails db:migrate)"
    # what the waiter keeps for the task's stop event, as before the contract (ferry.lifecycle.task_stopped reads it)
    assert request.migration.to_context() == {
        "name": "migrate",
        "container": "app",
        "command": ["bin/rails", "db:migrate"],
        "environment": {},
        "timeout": 120,
    }
    assert migrate.Migration.from_context(request.migration.to_context()) == migrate.Migration(
        "migrate", "app", ["bin/rails", "db:migrate"], {}, 120
    )


@pytest.mark.parametrize(
    "change, words",
    [
        ({"token": None}, "Run the migration task's input: `token` is missing: the state must pass it ($$.Task.Token"),
        ({"ecsService": 7}, "Run the migration task's input: `ecsService` must be a string, got a number"),
        (
            {"migration": {**MIGRATION, "container": None}},
            "Run the migration task's input.migration: `container` is missing",
        ),
        (
            {"migration": {**MIGRATION, "timeoutSeconds": "120"}},
            "Run the migration task's input.migration: `timeoutSeconds` must be a number, got a string",
        ),
        ({"migration": {**MIGRATION, "command": "bin/rails db:migrate"}}, "`command` must be a list, got a string"),
        (
            {"migration": {**MIGRATION, "command": ["bin/rails", 7]}},
            "migration 'migrate': `command` must be a non-empty list of strings",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(change, words):
    with pytest.raises(InputInvalid) as refused:
        migrate.Input.from_state({**STATE, **change}, "Run the migration task's input")
    assert words in str(refused.value)


def test_the_output_round_trips():
    output = migrate.Output(name="migrate", task_arn=ARN, exit_code=0)
    assert migrate.Output.from_state(output.to_state()) == output
    assert output.to_state() == migrate.outcome(stopped(0), STEP, None, {}).output  # what the token is completed with
    started = migrate.Started(migration="migrate", task_arn=ARN, status="PROVISIONING")
    assert migrate.Started.from_state(started.to_state()) == started


def test_a_migration_that_cannot_start_fails_its_waiting_state_with_that_error(monkeypatch):
    completed = []
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: completed.append((token, kw)) or True)

    def refused(**_):
        raise MigrationNotStarted("ECS could not place migration migrate: RESOURCE:MEMORY")

    monkeypatch.setattr(migrate, "start", refused)
    started = migrate.run(migrate.Input.from_state(STATE), "locks")
    assert started == migrate.Started(migration="migrate", status="not started", error="MigrationNotStarted")
    assert started.message == "migration could not start"
    assert completed == [
        ("token-1", {"error": "MigrationNotStarted", "cause": "ECS could not place migration migrate: RESOURCE:MEMORY"})
    ]


def test_the_step_starts_the_task_with_what_the_state_passed(monkeypatch):
    calls = []
    monkeypatch.setattr(migrate, "start", lambda **kw: calls.append(kw) or {"taskArn": ARN, "status": "PENDING"})
    started = migrate.run(migrate.Input.from_state(STATE), "locks")
    assert started == migrate.Started(migration="migrate", task_arn=ARN, status="PENDING")
    [call] = calls
    assert call == {
        "table": "locks",
        "token": "token-1",
        "execution": "web-v2-abc",
        "cluster": "prod",
        "service": "web",
        "task_definition_arn": STATE["taskDefinitionArn"],
        "previous_revision": "web:1",
        "migration": migrate.Migration("migrate", "app", ["bin/rails", "db:migrate"], {}, 120, 120),
    }
