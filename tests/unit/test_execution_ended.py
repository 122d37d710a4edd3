"""The execution-ended function: a start is announced; an end is cleaned up after, recorded and announced."""

import json

from ferry.lifecycle import execution_ended
from ferry.runtime.settings import Settings
from ferry.steps import lock

from .conftest import put_config

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


def test_an_aborted_execution_has_its_lock_released(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    lock.acquire("locks", "prod/web", ARN)
    handled = execution_ended.ended(status("ABORTED", stopDate=1767225660000), SETTINGS)
    assert (handled["status"], handled["lockReleased"], handled["canaryTasksStopped"]) == ("ABORTED", True, 0)
    assert lock.holder_of("locks", "prod/web") is None


def test_an_unregistered_service_ends_without_a_lock_to_release(ecs_world):
    handled = execution_ended.ended(status("FAILED", error="ServiceNotRegistered", cause="no config"), SETTINGS)
    assert (handled["handled"], handled["lockReleased"]) == (True, False)
