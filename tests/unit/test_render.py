import json

import boto3
import pytest

from ferry import config, render
from ferry.errors import ImageNotFound, InputInvalid, ServiceNotFound, TaskDefinitionInvalid

from .conftest import REGISTRY, digest, push, put_config


@pytest.fixture
def web(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    return config.load("ferry-config", "web")


def test_current_revision_with_the_new_image_pinned_by_digest(web):
    rendered = render.render(web, {"app": f"{REGISTRY}/web:v2"}, "exec-1", "ferry-artefacts")
    state = rendered.to_state()
    assert state["revision"] == "web:2" and state["previousRevision"] == "web:1"
    assert state["images"] == {"app": f"{REGISTRY}/web@{digest('web:v2')}"}
    assert state["summary"] == f"image app web:v1 -> web:v2 ({digest('web:v2')[:15]}…)"
    assert state["desiredCount"] == 2
    td = boto3.client("ecs").describe_task_definition(taskDefinition="web:2", include=["TAGS"])
    images = {c["name"]: c["image"] for c in td["taskDefinition"]["containerDefinitions"]}
    assert images == {"app": f"{REGISTRY}/web@{digest('web:v2')}", "nginx": "public.ecr.aws/nginx/nginx:1.27"}
    # Everything else is carried over, secrets by reference only.
    assert td["taskDefinition"]["containerDefinitions"][0]["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": "prod/web/db"}]
    assert {"key": "ferry:execution", "value": "exec-1"} in td["tags"]
    assert {"key": "team", "value": "payments"} in td["tags"]
    artefact = json.loads(boto3.client("s3").get_object(Bucket="ferry-artefacts", Key=state["artefacts"]["taskDefinition"])["Body"].read())
    assert artefact["taskDefinitionArn"] == rendered.task_definition_arn


def test_a_retried_render_registers_nothing_new(web):
    first = render.render(web, {"app": f"{REGISTRY}/web:v2"}, "exec-1", "ferry-artefacts")
    again = render.render(web, {"app": f"{REGISTRY}/web:v2"}, "exec-1", "ferry-artefacts")
    assert again.task_definition_arn == first.task_definition_arn and again.reused
    other = render.render(web, {"app": f"{REGISTRY}/web:v2"}, "exec-2", "ferry-artefacts")
    assert other.task_definition_arn != first.task_definition_arn
    assert len(boto3.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]) == 3


def test_an_image_that_was_never_pushed_registers_nothing(web):
    with pytest.raises(ImageNotFound, match="web:v9 is not in ECR"):
        render.render(web, {"app": f"{REGISTRY}/web:v9"}, "exec-1", "ferry-artefacts")
    assert len(boto3.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]) == 1


def test_a_container_missing_from_the_revision_is_a_task_definition_error(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {worker: {repository: web}}\n")
    cfg = config.load("ferry-config", "web")
    with pytest.raises(TaskDefinitionInvalid, match=r"containers \['worker'\] are not in task definition web:1"):
        render.render(cfg, {"worker": f"{REGISTRY}/web:v2"}, "exec-1", "ferry-artefacts")


def test_only_configured_containers_change_and_only_to_their_own_repository(web):
    boto3.client("ecr").create_repository(repositoryName="other")
    push("other", "v1")
    with pytest.raises(InputInvalid, match=r"container 'nginx' is not one Ferry deploys for service web"):
        render.render(web, {"nginx": f"{REGISTRY}/web:v2"}, "exec-1", "ferry-artefacts")
    with pytest.raises(InputInvalid, match="container app is fed by ECR repository 'web', not 'other'"):
        render.render(web, {"app": f"{REGISTRY}/other:v1"}, "exec-1", "ferry-artefacts")
    assert len(boto3.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]) == 1


def test_images_must_be_ecr_uris(web):
    with pytest.raises(InputInvalid, match="not an ECR image URI"):
        render.render(web, {"app": "nginx:latest"}, "exec-1", "ferry-artefacts")
    with pytest.raises(InputInvalid, match="names no images"):
        render.render(web, {}, "exec-1", "ferry-artefacts")


def test_a_missing_service_is_reported_with_the_fix(ecs_world):
    put_config("api", "cluster: prod\nservice: api\ncontainers: {app: {repository: web}}\n")
    with pytest.raises(ServiceNotFound, match="service api does not exist"):
        render.render(config.load("ferry-config", "api"), {"app": f"{REGISTRY}/web:v2"}, "e", "ferry-artefacts")
