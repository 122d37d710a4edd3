import hashlib
import json

import boto3
import pytest

from ferry.aws import artefacts
from ferry import config
from ferry.steps import render
from ferry.errors import (
    ClusterNotAllowed,
    ImageNotFound,
    InputInvalid,
    ServiceNotFound,
    TaskDefinitionInvalid,
    TemplateUnresolved,
)
from ferry.runtime.settings import Settings

from .conftest import REGISTRY, digest, plan_and_register, push, put_config, revisions

V2 = f"{REGISTRY}/web:v2"
SETTINGS = Settings(
    environment="prod",
    config_bucket="ferry-config",
    artefacts_bucket="ferry-artefacts",
    lock_table="locks",
    allowed_clusters=("prod",),
)


def request(**fields) -> render.Input:
    """Render's input as the state passes it."""
    return render.Input.from_state(
        {
            "execution": "exec-1",
            "service": "web",
            "images": {"app": V2},
            "request": {"service": "web", "images": {"app": V2}},
            **fields,
        }
    )


def test_the_step_reads_the_config_and_returns_what_the_later_states_read(ecs_world):
    put_config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "strategy: {type: canary, canary: {count: 2}}\n"
        "healthGates: {alarms: [web-5xx], targetGroups: [web-tg], bakeSeconds: 300}\n"
        "migrations: [{name: migrate, container: app, command: [rake, db:migrate], timeoutSeconds: 120}]\n",
    )
    rendered = render.run(request(), SETTINGS)
    state = rendered.to_state()
    assert state == {
        "cluster": "prod",
        "ecsService": "web",
        "requestAction": "deploy",
        "strategy": "canary",
        "canary": state["canary"],
        "timeouts": {"canary": 600, "deployment": 1800, "rollback": 1800},
        "alarms": ["web-5xx"],
        "bakeSeconds": 300,
        "targetGroups": ["web-tg"],
        "readSecretValues": False,
        "migrations": [
            {
                "name": "migrate",
                "container": "app",
                "command": ["rake", "db:migrate"],
                "environment": {},
                "timeoutSeconds": 120,
                "heartbeatSeconds": 120,
            }
        ],
        "hasMigrations": True,
        "family": "web",
        "previousTaskDefinitionArn": ecs_world["taskDefinitionArn"],
        "previousRevision": "web:1",
        "desiredCount": 2,
        "keepFailedRevisions": 0,
        "images": {"app": f"{REGISTRY}/web@{digest('web:v2')}"},
        "summary": state["summary"],
        "artefacts": {
            "taskDefinitionInput": artefacts.key("exec-1", render.PLAN_ARTEFACT),
            "diff": artefacts.key("exec-1", render.DIFF_ARTEFACT),
        },
        "planSha256": state["planSha256"],
    }
    assert state["canary"]["count"] == 2 and state["summary"].startswith("image app web:v1 -> web:v2")
    assert rendered.where == "prod/web" and revisions() == 1
    # A manifest can skip the migrations for one release.
    assert render.run(request(request={"migrate": False}), SETTINGS).has_migrations is False


def test_the_plans_hash_is_that_of_the_exact_bytes_stored(web):
    """Verify and Register act only on the document with this hash (issue 19: the verified plan could be swapped
    in the bucket): it is the sha256 of the object as S3 holds it, not of a re-encoding."""
    state = render.run(request(), SETTINGS).to_state()
    body = boto3.client("s3").get_object(Bucket="ferry-artefacts", Key=state["artefacts"]["taskDefinitionInput"])
    stored = body["Body"].read()
    assert state["planSha256"] == hashlib.sha256(stored).hexdigest()
    assert json.loads(stored)["family"] == "web"
    # The same plan stored again (a retried Render) has the same hash: the encoding is canonical.
    assert render.run(request(), SETTINGS).plan_sha256 == state["planSha256"]


def test_the_step_refuses_a_service_on_a_cluster_it_may_not_deploy_to(web):
    with pytest.raises(ClusterNotAllowed):
        render.run(request(), Settings(**{**SETTINGS.__dict__, "allowed_clusters": ("staging",)}))


def test_a_bad_input_is_refused_naming_the_field():
    with pytest.raises(InputInvalid, match=r"Render's input: `service` is missing: the state must pass it"):
        render.Input.from_state({"execution": "exec-1", "images": {"app": V2}}, "Render's input")
    with pytest.raises(InputInvalid, match=r"Render's input: `images` must be an object, got a string"):
        render.Input.from_state({"execution": "exec-1", "service": "web", "images": V2}, "Render's input")
    with pytest.raises(InputInvalid, match=r"`request` must be an object"):
        render.Input.from_state({"execution": "exec-1", "service": "web", "images": {}, "request": []})


def test_the_output_reads_back_as_it_was_written(web):
    rendered = render.run(request(), SETTINGS)
    assert render.Output.from_state(rendered.to_state()) == rendered
    assert isinstance(rendered.timeouts, render.Timeouts) and isinstance(rendered.artefacts, render.Artefacts)


def test_current_revision_with_the_new_image_pinned_by_digest(web):
    state, registered = plan_and_register(web, {"app": V2})
    assert registered.to_state()["revision"] == "web:2" and state["previousRevision"] == "web:1"
    assert state["images"] == {"app": f"{REGISTRY}/web@{digest('web:v2')}"}
    assert state["summary"] == (
        f"image app web:v1 -> web:v2 ({digest('web:v2')[:15]}…), task definition web:1 -> web:(new)"
    )
    assert state["desiredCount"] == 2
    td = boto3.client("ecs").describe_task_definition(taskDefinition="web:2", include=["TAGS"])
    images = {c["name"]: c["image"] for c in td["taskDefinition"]["containerDefinitions"]}
    assert images == {"app": f"{REGISTRY}/web@{digest('web:v2')}", "nginx": "public.ecr.aws/nginx/nginx:1.27"}
    # Everything else is carried over, secrets by reference only.
    assert td["taskDefinition"]["containerDefinitions"][0]["secrets"] == [
        {"name": "DB_PASSWORD", "valueFrom": "prod/web/db"}
    ]
    assert {"key": "ferry:execution", "value": "exec-1"} in td["tags"]
    assert {"key": "team", "value": "payments"} in td["tags"]
    s3 = boto3.client("s3")
    registered_doc = json.loads(s3.get_object(Bucket="ferry-artefacts", Key=registered.artefact_key)["Body"].read())
    assert registered_doc["taskDefinitionArn"] == registered.task_definition_arn
    diff = s3.get_object(Bucket="ferry-artefacts", Key=state["artefacts"]["diff"])["Body"].read().decode()
    assert diff.startswith("--- web:1\n+++ web:(new)\n") and f"web@{digest('web:v2')}" in diff


def test_planning_registers_nothing(web):
    planned = render.plan(web, {"app": V2})
    assert planned.spec["containerDefinitions"][0]["image"] == f"{REGISTRY}/web@{digest('web:v2')}"
    assert "revision" not in planned.spec and "taskDefinitionArn" not in planned.spec
    assert revisions() == 1


def test_an_image_that_was_never_pushed_registers_nothing(web):
    with pytest.raises(ImageNotFound, match="web:v9 is not in ECR"):
        render.plan(web, {"app": f"{REGISTRY}/web:v9"})
    assert revisions() == 1


def test_a_container_missing_from_the_revision_is_a_task_definition_error(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {worker: {repository: web}}\n")
    cfg = config.load("ferry-config", "web")
    with pytest.raises(TaskDefinitionInvalid, match=r"containers \['worker'\] are not in task definition web:1"):
        render.plan(cfg, {"worker": V2})


def test_only_configured_containers_change_and_only_to_their_own_repository(web):
    boto3.client("ecr").create_repository(repositoryName="other")
    push("other", "v1")
    with pytest.raises(InputInvalid, match=r"container 'nginx' is not one Ferry deploys for service web"):
        render.plan(web, {"nginx": V2})
    with pytest.raises(InputInvalid, match="container app is fed by ECR repository 'web', not 'other'"):
        render.plan(web, {"app": f"{REGISTRY}/other:v1"})


def test_images_must_be_ecr_uris(web):
    with pytest.raises(InputInvalid, match="not an ECR image URI"):
        render.plan(web, {"app": "nginx:latest"})
    with pytest.raises(InputInvalid, match="names no images"):
        render.plan(web, {})


def test_a_missing_service_is_reported_with_the_fix(ecs_world):
    put_config("api", "cluster: prod\nservice: api\ncontainers: {app: {repository: web}}\n")
    with pytest.raises(ServiceNotFound, match="service api does not exist"):
        render.plan(config.load("ferry-config", "api"), {"app": V2})


def test_request_values_and_commit_are_checked():
    assert render.request_values({"values": {"A": "1"}}) == {"A": "1"}
    assert render.request_commit({"commit": "abc123"}) == "abc123"
    with pytest.raises(InputInvalid, match="`values` must map names to strings"):
        render.request_values({"values": {"A": 1}})
    with pytest.raises(InputInvalid, match="`commit` must be a string"):
        render.request_commit({"commit": ""})


# ---------------------------------------------------------------- templates

TEMPLATE = """{
  "family": "web",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["FARGATE"],
  "cpu": "{{ must_env `CPU` }}",
  "memory": "512",
  "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
  "containerDefinitions": [
    {
      "name": "app",
      "image": "{{ image `app` }}",
      "environment": [
        {"name": "FEATURE", "value": "{{ ssm `/prod/web/feature` }}"},
        {"name": "RELEASE", "value": "{{ environment }}-{{ tag `app` }}"}
      ],
      "secrets": [
        {"name": "DB_PASSWORD", "valueFrom": "{{ secret_arn `prod/web/db` `password` }}"}
      ]
    }
  ]
}
"""


@pytest.fixture
def templated(ecs_world):
    boto3.client("ssm").put_parameter(Name="/prod/web/feature", Value="on", Type="String")
    boto3.client("secretsmanager").create_secret(Name="prod/web/db", SecretString='{"password": "hunter2"}')
    put_config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "taskDefinition: {template: task-definition.json}\nvalues: {CPU: '256'}\n",
    )
    put_config("web", TEMPLATE, "task-definition.json")
    return config.load("ferry-config", "web")


def test_a_template_resolves_every_function_before_anything_is_registered(templated):
    planned = render.plan(templated, {"app": V2}, environment="prod")
    [app] = planned.spec["containerDefinitions"]
    assert app["image"] == f"{REGISTRY}/web@{digest('web:v2')}"
    assert app["environment"] == [{"name": "FEATURE", "value": "on"}, {"name": "RELEASE", "value": "prod-v2"}]
    arn = boto3.client("secretsmanager").describe_secret(SecretId="prod/web/db")["ARN"]
    assert app["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": f"{arn}:password::"}]
    assert arn[-7] == "-"  # the random suffix is there
    assert planned.spec["cpu"] == "256"
    assert "hunter2" not in json.dumps(planned.spec) and "hunter2" not in planned.diff.text
    assert "-container nginx" in planned.diff.summary
    assert revisions() == 1


def test_an_unresolved_template_names_the_file_position_and_fix(templated):
    boto3.client("ssm").delete_parameter(Name="/prod/web/feature")
    with pytest.raises(TemplateUnresolved) as err:
        render.plan(templated, {"app": V2})
    message = str(err.value)
    assert "s3://ferry-config/services/web/task-definition.json:13:" in message
    assert "/prod/web/feature" in message
    assert revisions() == 1


def test_a_template_that_breaks_the_register_input_shape_is_a_render_error(templated):
    put_config("web", TEMPLATE.replace('"memory": "512",', '"memory": "512", "cpus": 1,'), "task-definition.json")
    with pytest.raises(TaskDefinitionInvalid) as err:
        render.plan(templated, {"app": V2})
    assert 'Unknown parameter in input: "cpus"' in str(err.value)
    assert "task-definition.json is not a valid RegisterTaskDefinition input (nothing was registered)" in str(err.value)
    assert revisions() == 1


def test_a_template_must_use_the_deployed_image(templated):
    put_config("web", TEMPLATE.replace("{{ image `app` }}", f"{REGISTRY}/web:v1"), "task-definition.json")
    with pytest.raises(TaskDefinitionInvalid, match=r"container app's image is .*web:v1', not the deployed web:v2"):
        render.plan(templated, {"app": V2})
