"""The execution-ended function: a start is announced; an end is cleaned up after, recorded and announced."""

import json

import boto3
import pytest

from ferry.errors import ExecutionEnded
from ferry.lifecycle import execution_ended, journal
from ferry.steps import migrate
from ferry.runtime.settings import Settings
from ferry.steps import lock

from .conftest import awsvpc, put_config, run_tasks

SETTINGS = Settings(
    environment="sandbox",
    config_bucket="ferry-config",
    artefacts_bucket="ferry-artefacts",
    lock_table="locks",
    allowed_clusters=("prod",),
)
ARN = "arn:aws:states:us-east-1:123456789012:execution:ferry-sandbox-deploy:web-v2-0123"


def status(state: str, **detail):
    return {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {
            "executionArn": ARN,
            "name": "web-v2-0123",
            "status": state,
            "startDate": 1767225600000,
            "input": json.dumps({"service": "web", "images": {}}),
            **detail,
        },
    }


def test_an_event_that_is_not_a_status_change_is_ignored(ecs_world):
    for event in ({}, {"detail": "x"}, {"detail": {"status": "FAILED"}}, "text"):
        assert execution_ended.ended(event, SETTINGS) == {"handled": False}


def test_a_start_is_announced_and_nothing_is_cleaned(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    lock.acquire("locks", "prod/web", ARN)
    handled = execution_ended.ended(status("RUNNING"), SETTINGS)
    assert (handled["handled"], handled["status"]) == (True, "RUNNING")
    assert "lockReleased" not in handled
    assert lock.holder_of("locks", "prod/web") == ARN


def take_lock(migrations=()):
    """What the lock step does: open the execution's journal, then take the lock."""
    journal.open("locks", owner=ARN, service="web", cluster="prod", ecs_service="web", migrations=list(migrations))
    lock.acquire("locks", "prod/web", ARN)


def test_an_aborted_execution_has_its_lock_released(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    take_lock()
    handled = execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert (handled["status"], handled["lockReleased"], handled["canaryTasksStopped"]) == ("ABORTED", True, 0)
    assert lock.holder_of("locks", "prod/web") is None


def test_an_unregistered_service_ends_without_a_lock_to_release(ecs_world):
    handled = execution_ended.ended(status("FAILED", error="ServiceNotRegistered", cause="no config"), SETTINGS)
    assert (handled["handled"], handled["lockReleased"]) == (True, False)


@pytest.mark.parametrize("change", ["deleted", "broken", "another service"])
def test_the_clean_up_reads_the_journal_not_the_config_as_it_is_now(runnable_world, change):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    take_lock(migrations=["schema"])
    marker = migrate.started_by("web-v2-0123", "schema")
    [task] = run_tasks(1, runnable_world["taskDefinitionArn"], network=awsvpc(), startedBy=marker)
    if change == "deleted":
        boto3.client("s3").delete_object(Bucket="ferry-config", Key="services/web/ferry.yaml")
    else:
        text = (
            "cluster: ["
            if change == "broken"
            else "cluster: prod\nservice: api\ncontainers: {app: {repository: web}}\n"
        )
        put_config("web", text)
    handled = execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert (handled["lockReleased"], handled["migrationTasksStopped"], handled["left"]) == (True, 1, [])
    assert lock.holder_of("locks", "prod/web") is None
    stopped = boto3.client("ecs").describe_tasks(cluster="prod", tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"
    assert journal.read("locks", ARN).closed_at is not None


def test_once_ended_a_journal_refuses_every_new_entry(ecs_world):
    take_lock()
    journal.record("locks", "web-v2-0123", migration="schema")
    execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert journal.ended("locks", "web-v2-0123")
    with pytest.raises(ExecutionEnded, match="has already ended"):
        journal.record("locks", "web-v2-0123", migration="data")
    with pytest.raises(ExecutionEnded):
        take_lock()
    assert journal.read("locks", ARN).migrations == ("schema",)


def test_an_end_before_the_journal_opened_still_stops_a_late_step(ecs_world):
    """A stop during the lock step: the end arrives first, and the lock step can then neither open the journal
    nor (so) take the lock."""
    handled = execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert (handled["lockReleased"], handled["left"]) == (False, [])
    with pytest.raises(ExecutionEnded):
        journal.open("locks", owner=ARN, service="web", cluster="prod", ecs_service="web", migrations=[])


def test_what_cannot_be_stopped_is_left_in_the_journal_for_the_reaper(runnable_world, monkeypatch):
    take_lock(migrations=["schema"])
    marker = migrate.started_by("web-v2-0123", "schema")
    run_tasks(1, runnable_world["taskDefinitionArn"], network=awsvpc(), startedBy=marker)
    ecs = boto3.client("ecs")
    from botocore.exceptions import ClientError

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StopTask")

    monkeypatch.setattr(ecs, "stop_task", throttled)
    monkeypatch.setattr("ferry.aws.client", lambda service: ecs if service == "ecs" else boto3.client(service))
    handled = execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert handled["lockReleased"] is True
    assert handled["left"] == ["the migrations of web-v2-0123 in prod: ThrottlingException"]
    record = journal.read("locks", ARN)
    assert record.closed_at is None and record.left == tuple(handled["left"])
