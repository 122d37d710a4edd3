import pytest

from ferry.aws.ecs import primary_deployment, revision_name
from ferry.errors import DeploymentFailed


def test_the_primary_deployment_is_found_among_the_others():
    service = {"deployments": [{"status": "ACTIVE", "id": "old"}, {"status": "PRIMARY", "id": "new"}]}
    assert primary_deployment(service)["id"] == "new"


def test_a_service_without_a_primary_deployment_is_a_deployment_failure_not_a_crash():
    with pytest.raises(DeploymentFailed, match="service web has no PRIMARY deployment"):
        primary_deployment({"serviceName": "web", "deployments": [{"status": "ACTIVE"}]})


def test_revision_names_are_family_and_revision():
    assert revision_name("arn:aws:ecs:us-east-1:123456789012:task-definition/web:12") == "web:12"
