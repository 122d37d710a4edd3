"""Update the service to the new revision (ferry.steps.update_service): what the service ran before is journalled
before the change, and a step still running when its execution was stopped changes nothing."""

import boto3
import pytest

from ferry.errors import ExecutionEnded
from ferry.lifecycle import journal
from ferry.steps import update_service

from .conftest import put_config

ARN = "arn:aws:states:us-east-1:123456789012:execution:ferry-sandbox-deploy:web-v2-0123"


def new_revision() -> str:
    return boto3.client("ecs").register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": "web:v2", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]


def test_what_the_service_ran_is_journalled_before_the_update(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    journal.open("locks", owner=ARN, service="web", cluster="prod", ecs_service="web", migrations=[])
    revision = new_revision()
    started = update_service.update_service("prod", "web", revision, "web-v2-0123", "ferry-artefacts", table="locks")
    assert (started.task_definition_arn, started.already_started) == (revision, False)
    previous = journal.read("locks", ARN).previous
    assert (previous["taskDefinition"], previous["desiredCount"]) == (ecs_world["taskDefinitionArn"], 2)
    service = boto3.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
    assert service["taskDefinition"] == revision


def test_an_execution_that_has_ended_does_not_change_the_service(ecs_world):
    journal.open("locks", owner=ARN, service="web", cluster="prod", ecs_service="web", migrations=[])
    journal.end("locks", ARN, "ABORTED")
    with pytest.raises(ExecutionEnded, match="has already ended"):
        update_service.update_service("prod", "web", new_revision(), "web-v2-0123", "ferry-artefacts", table="locks")
    service = boto3.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
    assert service["taskDefinition"] == ecs_world["taskDefinitionArn"]
