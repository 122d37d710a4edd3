"""World keys for real services: each one built into the sandbox and used by a deploy through the real state machine.

secrets[].arn (a secret under the ARN AWS gave it), s3 (environment files), parameters of type SecureString,
stacks (CloudFormation outputs and exports), clusters and ferryClusters (clusters Ferry is not installed for), and
services without a load balancer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from ferry_cli.sandbox.run import Delivery, deliver_all, summarise, world_session
from ferry_cli.sandbox.sandbox import REPO_ROOT
from ferry_cli.sandbox.world import World, WorldError

from ..statemachine.conftest import Scenario, push_event

VERIFY = "Verify secrets, images and roles"
RENDER = "Render the task definition"
ACCOUNT, REGION = "123456789012", "us-east-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DB_SECRET = "prod/web/db-password"
DB_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{DB_SECRET}-AbCdEf"
TOKEN = "tok-3f9a-never-print-me"  # a SecureString's value: it must appear nowhere
ROLLING = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)


def task_definition(scenario: Scenario) -> dict[str, Any]:
    return json.loads((scenario.dir / "web-task-def.json").read_text())


def write_task_definition(scenario: Scenario, spec: dict[str, Any]) -> None:
    (scenario.dir / "web-task-def.json").write_text(json.dumps(spec))


def deploy(scenario: Scenario, *items: dict[str, Any] | Delivery,
           inspect: Callable[[Any], Any] | None = None) -> tuple[dict[str, Any], Any]:
    """Run the world and deliver `items` like Scenario.run; `inspect(sandbox)` looks at the account afterwards."""
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    deliveries = []
    for i, item in enumerate(items):
        if isinstance(item, Delivery):
            deliveries.append(item)
            continue
        path = scenario.dir / f"event-{i}.json"
        path.write_text(json.dumps(item))
        deliveries.append(Delivery("event", path, json.loads(json.dumps(item))))
    with world_session(world_path) as (sandbox, world):
        delivered = deliver_all(sandbox, world, deliveries)
        sandbox.wait_for_executions()
        sandbox.settle_world()
        summary = summarise(sandbox, delivered)
        seen = inspect(sandbox) if inspect else None
    return summary, seen


def verify_report(sandbox: Any) -> list[dict[str, Any]]:
    """Every check of the one Verify report in the artefacts bucket."""
    s3 = sandbox.client("s3")
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=sandbox.artefacts_bucket).get("Contents", [])
             if o["Key"].endswith("verify-report.json")]
    return json.loads(s3.get_object(Bucket=sandbox.artefacts_bucket, Key=key)["Body"].read())["checks"]


def service_revision(sandbox: Any, cluster: str = "prod", service: str = "web") -> dict[str, Any]:
    """The task definition the service runs now."""
    ecs = sandbox.client("ecs")
    arn = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["taskDefinition"]
    return ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]


def everything_stored(sandbox: Any) -> list[tuple[str, str]]:
    """(where, text) for every object of the stack's buckets and every lock table row."""
    s3, found = sandbox.client("s3"), []
    for bucket in (sandbox.artefacts_bucket, sandbox.config_bucket):
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            found.append((f"s3://{bucket}/{item['Key']}", s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()))
    found.append(("lock table", json.dumps(sandbox.client("dynamodb").scan(TableName=sandbox.lock_table)["Items"])))
    return found


def failed_in(summary: dict[str, Any], state: str) -> dict[str, Any]:
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED", execution
    assert state in execution["states"] and execution["states"][-1] == "Deploy failed", execution["states"]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1"  # nothing changed
    assert summary["locksHeld"] == 0
    return execution


def load_error(scenario: Scenario) -> str:
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with pytest.raises(WorldError) as caught:
        World.load(path)
    message = str(caught.value)
    assert str(path) in message
    return message


# ----------------------------------------------------------------------------- secrets[].arn

def test_a_secret_named_by_its_full_arn_passes_verify_when_the_world_gives_that_arn(scenario):
    scenario.world["secrets"][DB_SECRET]["arn"] = DB_ARN
    spec = task_definition(scenario)
    spec["containerDefinitions"][0]["secrets"][0]["valueFrom"] = DB_ARN  # as `aws ecs describe-task-definition` shows it
    write_task_definition(scenario, spec)
    scenario.config("web", ROLLING)

    def look(sandbox):
        described = sandbox.client("secretsmanager").describe_secret(SecretId=DB_SECRET)
        return described["ARN"], verify_report(sandbox), service_revision(sandbox)

    summary, (arn, checks, revision) = deploy(scenario, push_event("web", "v2"), inspect=look)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert arn == DB_ARN  # the world's suffix, not one moto drew
    secret_checks = {c["name"]: c for c in checks if c["resource"] == f"secret {DB_SECRET}"}
    assert secret_checks["secret-exists"]["ok"] and secret_checks["secret-has-value"]["ok"], secret_checks
    assert revision["revision"] == 2
    assert revision["containerDefinitions"][0]["secrets"][0]["valueFrom"] == DB_ARN


def test_without_the_arn_a_full_arn_in_the_task_definition_names_a_secret_that_does_not_exist(scenario):
    """What the key is for: moto's own random suffix never matches the ARN copied from AWS."""
    spec = task_definition(scenario)
    spec["containerDefinitions"][0]["secrets"][0]["valueFrom"] = DB_ARN
    write_task_definition(scenario, spec)
    scenario.config("web", ROLLING)
    summary, _ = deploy(scenario, push_event("web", "v2"))
    execution = failed_in(summary, VERIFY)
    assert execution["error"] == "VerifyFailed"
    assert f"secret {DB_SECRET} (used by app) does not exist in {REGION} (a secret created again gets a new ARN)" \
        in execution["cause"]


def test_a_secret_of_another_region_is_made_there_under_its_arn(scenario):
    other = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:shared/api-key-Zx81Qp"
    scenario.world["secrets"]["shared/api-key"] = {"value": "k", "arn": other}
    spec = task_definition(scenario)
    spec["containerDefinitions"][0]["secrets"].append({"name": "API_KEY", "valueFrom": other})
    write_task_definition(scenario, spec)
    scenario.config("web", ROLLING)

    def look(sandbox):
        import boto3

        return boto3.client("secretsmanager", region_name="eu-west-1").describe_secret(SecretId="shared/api-key")["ARN"]

    summary, arn = deploy(scenario, push_event("web", "v2"), inspect=look)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    assert arn == other


@pytest.mark.parametrize("arn, expected", [
    (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{DB_SECRET}", "$.secrets.prod/web/db-password.arn: "),
    (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/web/other-AbCdEf",
     "the ARN names secret 'prod/web/other', not 'prod/web/db-password'"),
    (f"arn:aws:secretsmanager:{REGION}:210987654321:secret:{DB_SECRET}-AbCdEf",
     "the ARN is in account 210987654321, but the world's account is 123456789012"),
])
def test_a_secret_arn_the_world_cannot_make_is_refused_naming_the_field(scenario, arn, expected):
    scenario.world["secrets"][DB_SECRET]["arn"] = arn
    message = load_error(scenario)
    assert "$.secrets.prod/web/db-password.arn" in message and expected in message


def test_a_secret_arn_of_the_wrong_partition_is_refused_when_the_world_is_built(scenario):
    scenario.world["secrets"][DB_SECRET]["arn"] = DB_ARN.replace("arn:aws:", "arn:aws-cn:")
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    with pytest.raises(WorldError) as caught:
        with world_session(world_path):
            pass
    assert f"$.secrets.{DB_SECRET}.arn: arn:aws-cn:" in str(caught.value)
    assert f"(it gives {DB_ARN})" in str(caught.value)
