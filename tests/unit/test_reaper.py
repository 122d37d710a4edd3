"""The reaper: what no running execution owns is found and removed; an execution that runs, or ended moments ago,
is left alone; a pass with nothing to do only reads."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from ferry.aws import canary_tasks, ecs
from ferry.lifecycle import cleanup, journal, reaper
from ferry.runtime import clock
from ferry.runtime.settings import Settings
from ferry.steps import lock, migrate

from .conftest import awsvpc, run_tasks
from .test_canary import registered

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:ferry-test-deploy"
SETTINGS = Settings(
    environment="test",
    config_bucket="ferry-config",
    artefacts_bucket="ferry-artefacts",
    lock_table="locks",
    allowed_clusters=("prod",),
    state_machine_arn=MACHINE,
)
# What EventBridge Scheduler sends: template.yaml's Input, its context attributes filled in.
SCHEDULED = {
    "scheduleArn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/ferry-test-reaper",
    "scheduledTime": "2026-12-01T10:05:00Z",
    "executionId": "d32c5kddcf5bb8c3",
    "attemptNumber": "1",
}
READS = {"Scan", "ListTasks", "DescribeTasks", "DescribeExecution", "GetItem", "DescribeServices", "ListServices"}


@pytest.fixture
def machine(ecs_world):
    """The deploy state machine (its executions stay RUNNING until stopped: moto does not run them here)."""
    arn = boto3.client("stepfunctions").create_state_machine(
        name="ferry-test-deploy",
        roleArn="arn:aws:iam::123456789012:role/sfn",
        definition='{"StartAt": "x", "States": {"x": {"Type": "Pass", "End": true}}}',
    )["stateMachineArn"]
    assert arn == MACHINE
    return arn


@pytest.fixture
def calls(monkeypatch):
    """Every AWS operation called, in order."""
    made: list[str] = []
    original = BaseClient._make_api_call

    def record(self, operation, params):
        made.append(operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    return made


def start(name: str) -> str:
    return boto3.client("stepfunctions").start_execution(stateMachineArn=MACHINE, name=name)["executionArn"]


def stop(arn: str) -> None:
    boto3.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")


def ferry_task(world, name: str, purpose: str = "canary", *, tagged: bool = True, migration: str = "schema") -> dict:
    """A task as Ferry starts it (ferry.aws.ecs.one_off_parameters): startedBy and tags naming the execution."""
    marker = canary_tasks.started_by(name) if purpose == "canary" else migrate.started_by(name, migration)
    tags = [{"key": "ferry:execution", "value": name}, {"key": "ferry:purpose", "value": purpose}] if tagged else []
    [task] = run_tasks(
        1,
        world["taskDefinitionArn"],
        network=world.get("network"),
        startedBy=marker,
        **({"tags": tags} if tags else {}),
    )
    return task


def in_target_group(world, task: dict) -> str:
    ip = ecs.task_ip(task)
    boto3.client("elbv2").register_targets(TargetGroupArn=world["targetGroup"], Targets=[{"Id": ip, "Port": 80}])
    return ip


def desired(task: dict) -> str:
    return boto3.client("ecs").describe_tasks(cluster="prod", tasks=[task["taskArn"]])["tasks"][0]["desiredStatus"]


def reap(**kwargs) -> reaper.Reaped:
    return reaper.reap(SETTINGS, grace_seconds=kwargs.pop("grace_seconds", 0), **kwargs)


# ------------------------------------------------------------------ nothing to do


def test_an_empty_installation_costs_one_scan_and_one_list_tasks_per_cluster(machine, calls, logs):
    found = reap()
    assert found == reaper.Reaped() and found.orphaned == 0
    assert calls == ["Scan", "ListTasks"]
    assert not [line for line in logs() if "_aws" in line]  # no metric


def test_nothing_to_do_makes_only_reads(canary_world, machine, calls, logs):
    """A deploy running with its journal, lock and canary; one that ended and was cleaned up: nothing is touched."""
    running = start("web-v3-1")
    journal.open("locks", owner=running, service="web", cluster="prod", ecs_service="web", migrations=[])
    lock.acquire("locks", "prod/web", running)
    canary = ferry_task(canary_world, "web-v3-1")
    ip = in_target_group(canary_world, canary)
    done = start("web-v2-1")
    stop(done)
    journal.end("locks", done, "ABORTED")
    journal.close("locks", done, [])
    del calls[:]
    found = reap()
    assert found.orphaned == 0, found
    assert set(calls) <= READS and "Scan" in calls, calls
    assert calls.count("Scan") == 1 and calls.count("ListTasks") == 1
    assert desired(canary) == "RUNNING" and ip in registered(canary_world["targetGroup"])
    assert lock.holder_of("locks", "prod/web") == running
    assert not [line for line in logs() if "_aws" in line]


def test_an_execution_that_ended_moments_ago_is_left_to_the_execution_ended_function(canary_world, machine):
    arn = start("web-v2-1")
    lock.acquire("locks", "prod/web", arn)
    canary = ferry_task(canary_world, "web-v2-1")
    stop(arn)
    assert reaper.reap(SETTINGS).orphaned == 0  # within GRACE_SECONDS of its stop
    assert desired(canary) == "RUNNING" and lock.holder_of("locks", "prod/web") == arn
    later = time.time() + reaper.GRACE_SECONDS + 1
    clock.use(lambda: later)
    try:
        found = reaper.reap(SETTINGS)
    finally:
        clock.use(None)
    assert (found.canary_tasks, found.locks) == (1, 1)


# ------------------------------------------------------------------ (a) journals not closed


def test_a_lost_end_event_is_recorded_and_the_journal_cleaned_up_and_closed(canary_world, machine):
    arn = start("web-v2-1")
    journal.open("locks", owner=arn, service="web", cluster="prod", ecs_service="web", migrations=["schema"])
    lock.acquire("locks", "prod/web", arn)
    canary = ferry_task(canary_world, "web-v2-1")
    ip = in_target_group(canary_world, canary)
    migration = ferry_task(canary_world, "web-v2-1", "migration")
    stop(arn)  # ...and its status event never reaches the execution-ended function
    found = reap()
    assert (found.lost_ends, found.journals, found.canary_tasks, found.migration_tasks, found.locks) == (1, 1, 1, 1, 1)
    assert found.left == ()
    assert desired(canary) == desired(migration) == "STOPPED"
    assert ip not in registered(canary_world["targetGroup"])
    assert lock.holder_of("locks", "prod/web") is None
    record = journal.read("locks", arn)
    assert record.status == "ABORTED" and record.ended_at is not None and record.closed_at is not None
    assert "execution web-v2-1 had ended (ABORTED) without its end being recorded: marked ended" in found.cleaned
    assert reap() == reaper.Reaped()  # the next pass finds nothing


def test_a_journal_the_clean_up_left_open_is_cleaned_up_by_the_next_pass(canary_world, machine, monkeypatch):
    arn = start("web-v2-1")
    journal.open("locks", owner=arn, service="web", cluster="prod", ecs_service="web", migrations=["schema"])
    migration = ferry_task(canary_world, "web-v2-1", "migration")
    stop(arn)
    record = journal.end("locks", arn, "ABORTED")
    client = boto3.client("ecs")

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StopTask")

    monkeypatch.setattr(client, "stop_task", throttled)
    monkeypatch.setattr("ferry.aws.client", lambda service: client if service == "ecs" else boto3.client(service))
    assert cleanup.clean_up("locks", record).left  # as the execution-ended function left it
    found = reap()
    assert found.left == ("the migrations of web-v2-1 in prod: ThrottlingException",) and found.reaped == 0
    assert found.orphaned == 1 and journal.read("locks", arn).closed_at is None
    monkeypatch.undo()
    found = reap()
    assert (found.lost_ends, found.migration_tasks, found.journals, found.left) == (0, 1, 1, ())
    assert desired(migration) == "STOPPED" and journal.read("locks", arn).closed_at is not None


def test_a_journal_whose_execution_no_longer_exists_is_cleaned_up(ecs_world, machine):
    gone = MACHINE.replace(":stateMachine:", ":execution:") + ":web-v1-expired"
    journal.open("locks", owner=gone, service="web", cluster="prod", ecs_service="web", migrations=[])
    lock.acquire("locks", "prod/web", gone)
    found = reap()
    assert (found.lost_ends, found.locks, found.journals) == (1, 1, 1)
    assert lock.holder_of("locks", "prod/web") is None


# ------------------------------------------------------------------ (b) Ferry's tasks


def test_tasks_of_an_ended_execution_without_a_journal_are_taken_out_and_stopped(canary_world, machine, calls):
    """An older Ferry kept no journal: the canary's service is found among the cluster's services."""
    arn = start("web-v2-1")
    canary = ferry_task(canary_world, "web-v2-1")
    ip = in_target_group(canary_world, canary)
    migration = ferry_task(canary_world, "web-v2-1", "migration")
    stop(arn)
    found = reap()
    assert (found.canary_tasks, found.targets, found.migration_tasks, found.journals) == (1, 1, 1, 0)
    assert found.left == ()
    assert desired(canary) == desired(migration) == "STOPPED"
    assert ip not in registered(canary_world["targetGroup"])
    assert "ListServices" in calls
    reason = boto3.client("ecs").describe_tasks(cluster="prod", tasks=[canary["taskArn"]])["tasks"][0]["stoppedReason"]
    assert reason == "Ferry reaper: canary of web-v2-1, which has ended (ABORTED)"
    assert any(w.startswith(f"took canary target {ip}:80 of web-v2-1 out of target group ") for w in found.cleaned)


def test_a_task_started_after_its_execution_was_cleaned_up_is_removed_by_the_service_its_journal_names(
    canary_world, machine, calls
):
    """A step that finished after its execution stopped: the journal is closed, the canary it started runs."""
    arn = start("web-v2-1")
    journal.open("locks", owner=arn, service="web", cluster="prod", ecs_service="web", migrations=[])
    stop(arn)
    journal.end("locks", arn, "ABORTED")
    journal.close("locks", arn, [])
    canary = ferry_task(canary_world, "web-v2-1")
    ip = in_target_group(canary_world, canary)
    del calls[:]
    found = reap()
    assert (found.canary_tasks, found.targets, found.journals) == (1, 1, 0)
    assert desired(canary) == "STOPPED" and ip not in registered(canary_world["targetGroup"])
    assert "ListServices" not in calls  # the journal named the service


def test_a_canary_that_cannot_be_taken_out_keeps_running_until_it_is(canary_world, machine, monkeypatch):
    arn = start("web-v2-1")
    canary = ferry_task(canary_world, "web-v2-1")
    ip = in_target_group(canary_world, canary)
    stop(arn)
    elb = boto3.client("elbv2")

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "DeregisterTargets")

    monkeypatch.setattr(elb, "deregister_targets", throttled)
    monkeypatch.setattr("ferry.aws.client", lambda service: elb if service == "elbv2" else boto3.client(service))
    found = reap()
    assert found.reaped == 0 and found.orphaned == 1
    [left] = found.left
    assert left.endswith("not taken out of its target groups (Throttling)") and canary["taskArn"] in left
    assert desired(canary) == "RUNNING"  # stopped, it would never be listed again and its address would stay
    monkeypatch.undo()
    found = reap()
    assert (found.targets, found.canary_tasks) == (1, 1)
    assert ip not in registered(canary_world["targetGroup"])


def test_tasks_no_execution_of_this_state_machine_owns_are_reported_and_left_alone(runnable_world, machine):
    """Another installation sharing the cluster (its execution is not this state machine's), or a task with
    Ferry's startedBy and no tag: nothing says they are this Ferry's to stop."""
    runnable_world = {**runnable_world, "network": awsvpc()}
    foreign = ferry_task(runnable_world, "api-v9-1")
    untagged = ferry_task(runnable_world, "web-v2-1", "migration", tagged=False)
    found = reap()
    assert found.reaped == 0 and found.orphaned == 2
    assert desired(foreign) == desired(untagged) == "RUNNING"
    assert any("this state machine has no execution api-v9-1" in w for w in found.left)
    assert any("names no execution (no ferry:execution tag): not touched" in w for w in found.left)


def test_a_running_execution_s_tasks_are_not_touched_even_without_a_journal(runnable_world, machine):
    runnable_world = {**runnable_world, "network": awsvpc()}
    start("web-v2-1")
    canary = ferry_task(runnable_world, "web-v2-1")
    migration = ferry_task(runnable_world, "web-v2-1", "migration")
    assert reap().orphaned == 0
    assert desired(canary) == desired(migration) == "RUNNING"


# ------------------------------------------------------------------ (c) deploy locks


def test_locks_of_ended_executions_are_released_and_the_others_kept(ecs_world, machine):
    ended, running = start("web-v2-1"), start("api-v3-1")
    stop(ended)
    lock.acquire("locks", "prod/web", ended)
    lock.acquire("locks", "prod/api", running)
    lock.acquire("locks", "prod/worker", "a person")  # not an execution's: not the reaper's
    found = reap()
    assert (found.locks, found.left) == (1, ())
    assert found.cleaned == ("released the deploy lock of prod/web held by web-v2-1, which has ended (ABORTED)",)
    assert lock.holder_of("locks", "prod/web") is None
    assert lock.holder_of("locks", "prod/api") == running
    assert lock.holder_of("locks", "prod/worker") == "a person"


# ------------------------------------------------------------------ announcing, and the handler's entry


def test_what_a_pass_found_is_announced_with_an_event_and_a_metric(ecs_world, machine, monkeypatch, logs):
    put: list[dict] = []
    original = BaseClient._make_api_call

    def record(self, operation, params):
        if operation == "PutEvents":
            put.extend(params["Entries"])
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    arn = start("web-v2-1")
    stop(arn)
    lock.acquire("locks", "prod/web", arn)
    found = reap()
    [entry] = put
    assert (entry["Source"], entry["DetailType"]) == ("ferry", reaper.CLEANED_UP)
    detail = json.loads(entry["Detail"])
    assert (detail["environment"], detail["orphaned"], detail["reaped"], detail["locksReleased"]) == ("test", 1, 1, 1)
    assert detail["cleaned"] == list(found.cleaned)
    [document] = [line for line in logs() if "_aws" in line]
    assert (document[reaper.ORPHANED], document[reaper.REAPED], document["environment"]) == ([1.0], [1.0], "test")
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Ferry" and directive["Dimensions"] == [["environment"]]
    reaped = [line for line in logs() if line.get("message") == "reaped"]
    assert [(line["execution"], line["what"]) for line in reaped] == [("web-v2-1", found.cleaned[0])]


def test_the_scheduled_pass_takes_scheduler_s_event_and_returns_what_it_found(ecs_world, machine):
    arn = start("web-v2-1")
    stop(arn)
    lock.acquire("locks", "prod/web", arn)
    later = time.time() + reaper.GRACE_SECONDS + 1
    clock.use(lambda: later)
    try:
        out = reaper.scheduled(SCHEDULED, SETTINGS)
    finally:
        clock.use(None)
    assert (out["orphaned"], out["reaped"], out["locksReleased"], out["left"]) == (1, 1, 1, [])
    json.dumps(out)


def test_the_reaper_needs_the_state_machine(ecs_world):
    with pytest.raises(RuntimeError, match="STATE_MACHINE_ARN"):
        reaper.reap(Settings("test", "c", "a", "locks", ("prod",)))
