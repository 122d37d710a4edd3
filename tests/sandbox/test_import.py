"""`ferry sandbox import`: a world read from an account reproduces that account in the sandbox.

The account is a moto account built from a world (the demo's, and a more realistic one: a sidecar first, secrets
named by full ARN, a SecureString, eu-west-1), with some of it made by hand as an account would be. Each test
imports it, checks that the imported world is valid and says what the account holds (and never a secret's value),
then deploys the same push in the account and in a new sandbox built from the imported world: the same states,
service, count, images and revision.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from ferry import taskdef
from ferry.config.validation import problems
from ferry_cli.main import main
from ferry_cli.sandbox.importer import (
    ALLOWED,
    PLACEHOLDER,
    ReadOnly,
    ReadOnlyViolation,
    _Supports,
    import_world,
    world_yaml,
)
from ferry_cli.sandbox.moto_ecs import EcsSimulator
from ferry_cli.sandbox.run import Delivery, deliver_all, summarise, world_session
from ferry_cli.sandbox.sandbox import Sandbox
from ferry_cli.sandbox.world import World

from ..statemachine.conftest import EXAMPLE, failed_at, push_event

SUPPORTS = _Supports.now()  # what the world schema holds today (keys are being added to it)
ACCOUNT, REGION = "444455556666", "eu-west-1"
SECRET_VALUES = [
    "db-password-never-printed",
    "sk_live_never_printed",
    "signing-key-never-printed",
    "env-file-secret-never-printed",
    "sandbox-db-password-do-not-print",
]
# Every call the importer may make, as botocore names them: Describe, List and Get calls that return no secret value.
READ_ONLY_CALLS = {
    "DescribeScalableTargets",
    "DescribeScalingPolicies",
    "DescribeClusters",
    "DescribeServices",
    "DescribeTaskDefinition",
    "DescribeImages",
    "DescribeTargetGroups",
    "GetRole",
    "DescribeLogGroups",
    "DescribeSecret",
    "DescribeParameters",
    "GetParameters",
    "DescribeAlarms",
    "HeadObject",
}


# ----------------------------------------------------------------------------- helpers
@contextmanager
def account(
    world_path: Path, before_build: Callable[[Sandbox, World], None] | None = None
) -> Iterator[tuple[Sandbox, World]]:
    """A moto account built from a world (as the engine tests' `sandbox` fixture builds it), with `before_build`
    making what a world cannot say yet, as someone would have made it in the console."""
    world = World.load(world_path)
    with Sandbox(account=world.account, region=world.region, clusters=world.clusters) as box:
        box.simulator = EcsSimulator(
            box.clock, account_id=world.account, region=world.region, **world.simulator_options()
        )
        box.simulator.install()
        if before_build is not None:
            before_build(box, world)
        world.build(box)
        box.start_driver()
        yield box, world


class Recorder:
    """Makes the importer's clients (on moto, while a sandbox runs) and records every call they make, with its
    parameters. The sandbox shares clients between sessions, so the hook is put on each client and taken off after."""

    HOOK = "test-import-recorder"

    def __init__(self, region: str) -> None:
        self.region = region
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._made: list[Any] = []

    def client(self, service: str) -> Any:
        made = boto3.client(service, region_name=self.region)
        made.meta.events.register("provide-client-params", self._record, unique_id=self.HOOK)
        self._made.append(made)
        return made

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def close(self) -> None:
        for made in self._made:
            made.meta.events.unregister("provide-client-params", unique_id=self.HOOK)


def imported(box: Sandbox, cluster: str, services: list[str]) -> tuple[dict[str, Any], dict[str, str], list[str], list]:
    recorder = Recorder(box.region)
    notes: list[str] = []
    try:
        world, files = import_world(recorder, cluster, services, not_imported=notes)
    finally:
        recorder.close()
    return world, files, notes, recorder.calls


def write_world(directory: Path, world: dict[str, Any], files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    path = directory / "world.yaml"
    path.write_text(world_yaml(world))
    return path


def push(repository: str, tag: str, account_id: str, region: str) -> dict[str, Any]:
    event = push_event(repository, tag)
    event.update(account=account_id, region=region)
    return event


def deploy(box: Sandbox, world: World, event: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Deliver the push, run to the end; the summary, with the revision the service runs after under `revision`."""
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    delivered = deliver_all(box, world, [Delivery("event", path, event)])
    box.wait_for_executions()
    box.settle_world()
    summary = summarise(box, delivered)
    [(key, service)] = [(k, s) for k, s in summary["services"].items()]
    cluster, name = key.split("/")
    arn = box.client("ecs").describe_services(cluster=cluster, services=[name])["services"][0]["taskDefinition"]
    described = box.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    summary["revision"] = taskdef.registration_input(described)
    return summary


def same_deploy(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The deploy in the imported world is the deploy in the account: states, service, count, images, revision."""
    assert [(e["service"], e["status"], e["states"]) for e in after["executions"]] == [
        (e["service"], e["status"], e["states"]) for e in before["executions"]
    ]
    assert after["services"] == before["services"]
    assert after["revision"] == before["revision"]
    assert after["locksHeld"] == 0


def output_text(world: dict[str, Any], files: dict[str, str], notes: list[str]) -> str:
    return world_yaml(world) + "".join(files.values()) + "\n".join(notes)


# ----------------------------------------------------------------------------- the demo's world
def test_the_demo_world_imports_as_itself_and_deploys_the_same(tmp_path):
    source = World.load(EXAMPLE / "world.yaml")
    with account(EXAMPLE / "world.yaml") as (box, world):
        imported_world, files, notes, calls = imported(box, "prod", ["web"])
        before = deploy(box, world, push_event("web", "v2"), tmp_path)

    assert problems(imported_world, "sandbox-world.schema.json") == []
    assert imported_world["account"] == "123456789012" and imported_world["region"] == "us-east-1"
    assert imported_world["services"] == [
        {
            "cluster": "prod",
            "name": "web",
            "desiredCount": 2,
            "running": {"app": "web:v1", "nginx": "nginx:1.27"},
            "taskDefinition": "web-task-def.json",
            "targetGroup": {"name": "web-tg", "container": "nginx", "port": 80},
        }
    ]
    assert imported_world["ecr"] == source.images()  # every tag, under the digest ECR has for it
    assert imported_world["roles"] == ["ecsTaskExecutionRole", "web-task-role"]
    assert imported_world["logGroups"] == ["/ecs/web"]
    assert imported_world["alarms"] == {"web-5xx": "OK"}
    assert imported_world["parameters"] == {"/prod/web/feature": "on"}  # a String's value is copied
    # The secret has a value in the account: the world's is a placeholder, never the value.
    assert imported_world["secrets"] == {"prod/web/db-password": {"value": PLACEHOLDER}}
    assert "sandbox-db-password-do-not-print" not in output_text(imported_world, files, notes)
    # No environment file to look for, and no scalable target whose policies to read.
    assert {name for name, _ in calls} == READ_ONLY_CALLS - {"HeadObject", "DescribeScalingPolicies"}
    # The task definition file is the running revision as ECS describes it.
    spec = json.loads(files["web-task-def.json"])
    original = json.loads((EXAMPLE / "web-task-def.json").read_text())
    assert [c["name"] for c in spec["containerDefinitions"]] == ["app", "nginx"]
    assert spec["containerDefinitions"][0]["secrets"] == original["containerDefinitions"][0]["secrets"]
    config = yaml.safe_load(files["registry/web/ferry.yaml"])
    assert problems(config, "service-config.schema.json") == []
    assert config["containers"] == {"app": {"repository": "web"}, "nginx": {"repository": "nginx"}}
    assert config["healthGates"] == {"alarms": ["web-5xx"]} and config["strategy"] == {"type": "rolling"}
    assert any(
        n.startswith("not imported: the load balancer, listeners and health check of target group web-tg")
        for n in notes
    )

    world_path = write_world(tmp_path / "imported", imported_world, files)
    with world_session(world_path) as (box, world):
        after = deploy(box, world, push_event("web", "v2"), tmp_path)
    assert after["executions"][0]["status"] == "SUCCEEDED"
    assert after["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert after["services"]["prod/web"]["runningCount"] == 2
    same_deploy(before, after)


def test_a_service_ferry_deployed_runs_a_digest_and_is_imported_under_its_tag(tmp_path):
    """After a deploy the service runs web@sha256:… (Ferry pins digests); the world names the tag that digest has."""
    with account(EXAMPLE / "world.yaml") as (box, world):
        deploy(box, world, push_event("web", "v2"), tmp_path)
        assert "@sha256:" in box.simulator.services()["prod/web"]["images"]["app"]
        imported_world, files, notes, _ = imported(box, "prod", ["web"])
    assert imported_world["services"][0]["running"] == {"app": "web:v2", "nginx": "nginx:1.27"}
    world_path = write_world(tmp_path / "imported", imported_world, files)
    World.load(world_path)


def test_a_role_ecs_tasks_cannot_assume_stays_so_and_fails_verify_in_both(tmp_path):
    scenario = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    scenario["roles"] = ["ecsTaskExecutionRole", {"name": "web-task-role", "trustedBy": "lambda.amazonaws.com"}]
    shutil.copy(EXAMPLE / "web-task-def.json", tmp_path / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", tmp_path / "registry")
    (tmp_path / "world.yaml").write_text(yaml.safe_dump(scenario))
    with account(tmp_path / "world.yaml") as (box, world):
        imported_world, files, _, _ = imported(box, "prod", ["web"])
        before = deploy(box, world, push_event("web", "v2"), tmp_path)
    assert imported_world["roles"] == [
        "ecsTaskExecutionRole",
        {"name": "web-task-role", "trustedBy": "lambda.amazonaws.com"},
    ]
    with world_session(write_world(tmp_path / "imported", imported_world, files)) as (box, world):
        after = deploy(box, world, push_event("web", "v2"), tmp_path)
    for summary in (before, after):
        execution = failed_at(summary, "Verify secrets, images and roles")
        assert "task role web-task-role does not trust ecs-tasks.amazonaws.com" in execution["cause"]
    same_deploy(before, after)


# ----------------------------------------------------------------------------- a realistic world
API_TASK_DEF = {
    "family": "payments-api",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "1024",
    "memory": "2048",
    "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
    "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/payments-exec",
    "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/payments-api-task",
    "containerDefinitions": [
        {
            "name": "envoy",
            "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/envoy:v1.31",
            "essential": True,
            "portMappings": [{"containerPort": 9901, "protocol": "tcp"}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": "/ecs/payments-api",
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": "envoy",
                },
            },
        },
        {
            "name": "datadog",
            "image": "public.ecr.aws/datadog/agent:7",
            "essential": False,
            "environment": [{"name": "DD_SITE", "value": "datadoghq.eu"}],
        },
        {
            "name": "app",
            "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/payments-api:2024.06.1",
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "dependsOn": [{"containerName": "envoy", "condition": "START"}],
            "secrets": [
                {"name": "DB_PASSWORD", "valueFrom": "@payments/api/db"},
                {"name": "STRIPE_KEY", "valueFrom": "@payments/api/stripe:api_key::"},
                {
                    "name": "SIGNING_KEY",
                    "valueFrom": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/payments/api/signing-key",
                },
                {"name": "REGION_LABEL", "valueFrom": "/payments/api/region-label"},
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": "/ecs/payments-api",
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": "app",
                },
            },
        },
    ],
}
SPOT_STRATEGY = [
    {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
]
API_SCALING = {
    "minCapacity": 3,
    "maxCapacity": 12,
    "policies": [{"name": "api-cpu", "metric": "ECSServiceAverageCPUUtilization", "targetValue": 55.0}],
}
API_WORLD = {
    "account": ACCOUNT,
    "region": REGION,
    "ecr": {"envoy": ["v1.31"], "payments-api": ["2024.06.1", "2024.06.2"]},
    "services": [
        {
            "cluster": "payments",
            "name": "api",
            "desiredCount": 3,
            "running": {"envoy": "envoy:v1.31", "app": "payments-api:2024.06.1"},
            "taskDefinition": "api-task-def.json",
            "targetGroup": {"name": "api-tg", "container": "app", "port": 8080},
            "deploymentConfiguration": {
                "maximumPercent": 150,
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            },
            "capacityProviderStrategy": SPOT_STRATEGY,
            "autoScaling": API_SCALING,
        }
    ],
    "parameters": {"/payments/api/region-label": "eu-west-1 (Ireland)"},
    "roles": ["payments-exec", "payments-api-task"],
    "logGroups": ["/ecs/payments-api"],
    "alarms": {"api-5xx": "OK", "api-latency": "OK", "billing-queue-depth": "ALARM"},
    "registry": "registry",
}
API_ALARMS = ["api-5xx", "api-latency", "payments-cpu", "tg-unhealthy-hosts"]
API_CONFIG = {
    "cluster": "payments",
    "service": "api",
    "containers": {"app": {"repository": "payments-api"}, "envoy": {"repository": "envoy"}},
    "triggers": [{"repository": "envoy", "tags": ["*"]}, {"repository": "payments-api", "tags": ["*"]}],
    "taskDefinition": "current",
    "strategy": {"type": "rolling"},
    "timeouts": {"deployment": 1800},
    "healthGates": {"alarms": API_ALARMS},
}


def make_by_hand(box: Sandbox, world: World) -> None:
    """What the realistic account has that the world does not say: secrets whose ARNs the task definition names
    (random suffix and all) and a SecureString parameter."""
    sm = box.client("secretsmanager")
    arns = {
        "payments/api/db": sm.create_secret(Name="payments/api/db", SecretString="db-password-never-printed")["ARN"],
        "payments/api/stripe": sm.create_secret(
            Name="payments/api/stripe", SecretString='{"api_key": "sk_live_never_printed"}'
        )["ARN"],
    }
    box.client("ssm").put_parameter(
        Name="/payments/api/signing-key", Value="signing-key-never-printed", Type="SecureString"
    )
    for container in world.task_definitions["payments/api"]["containerDefinitions"]:
        for secret in container.get("secrets") or []:
            if secret["valueFrom"].startswith("@"):
                name, _, key = secret["valueFrom"][1:].partition(":")
                secret["valueFrom"] = arns[name] + (f":{key}" if key else "")


def make_alarms_on_metrics(box: Sandbox) -> None:
    """Alarms on the service's ECS metrics and on its target group's, as a team would have them."""
    ecs = box.client("ecs").describe_services(cluster="payments", services=["api"])["services"][0]
    group = "targetgroup/" + ecs["loadBalancers"][0]["targetGroupArn"].split(":targetgroup/", 1)[1]
    cw = box.client("cloudwatch")
    for name, namespace, metric, dims in [
        ("payments-cpu", "AWS/ECS", "CPUUtilization", {"ClusterName": "payments", "ServiceName": "api"}),
        ("tg-unhealthy-hosts", "AWS/ApplicationELB", "UnHealthyHostCount", {"TargetGroup": group}),
        ("other-service-cpu", "AWS/ECS", "CPUUtilization", {"ClusterName": "payments", "ServiceName": "ledger"}),
    ]:
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace=namespace,
            MetricName=metric,
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        )
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test")


@pytest.fixture
def realistic(tmp_path) -> Path:
    source = tmp_path / "account"
    (source / "registry" / "api").mkdir(parents=True)
    (source / "api-task-def.json").write_text(json.dumps(API_TASK_DEF))
    (source / "registry" / "api" / "ferry.yaml").write_text(yaml.safe_dump(API_CONFIG))
    (source / "world.yaml").write_text(yaml.safe_dump(API_WORLD))
    return source / "world.yaml"


def test_a_realistic_service_in_eu_west_1_round_trips(realistic, tmp_path):
    event = push("payments-api", "2024.06.2", ACCOUNT, REGION)
    with account(realistic, make_by_hand) as (box, world):
        make_alarms_on_metrics(box)
        secret_arns = {s["Name"]: s["ARN"] for s in box.client("secretsmanager").list_secrets()["SecretList"]}
        imported_world, files, notes, calls = imported(box, "payments", ["api"])
        before = deploy(box, world, event, tmp_path)
    assert before["executions"][0]["status"] == "SUCCEEDED"

    assert problems(imported_world, "sandbox-world.schema.json") == []
    assert (imported_world["account"], imported_world["region"]) == (ACCOUNT, REGION)
    [service] = imported_world["services"]
    assert service == {
        "cluster": "payments",
        "name": "api",
        "desiredCount": 3,
        "running": {"app": "payments-api:2024.06.1", "envoy": "envoy:v1.31"},  # the Docker Hub sidecar stays as it is
        "taskDefinition": "api-task-def.json",
        "targetGroup": {"name": "api-tg", "container": "app", "port": 8080},
        "deploymentConfiguration": {
            "maximumPercent": 150,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
        "capacityProviderStrategy": SPOT_STRATEGY,  # Fargate Spot, as the service runs
        "autoScaling": API_SCALING,  # its scalable target and target tracking policy
    }
    spec = json.loads(files["api-task-def.json"])
    assert [(c["name"], c["image"]) for c in spec["containerDefinitions"]] == [
        (c["name"], c["image"]) for c in API_TASK_DEF["containerDefinitions"]
    ]  # the sidecar first, as it runs
    assert set(imported_world["ecr"]) == {"envoy", "payments-api"}
    assert sorted(imported_world["ecr"]["payments-api"]) == ["2024.06.1", "2024.06.2"]
    # Secrets: each by name, with a placeholder for its value (a JSON one where a key is read), and the ARN AWS gave
    # it when the world can hold one.
    stripe = {"value": json.dumps({"api_key": PLACEHOLDER})}
    expected = {"payments/api/db": {"value": PLACEHOLDER}, "payments/api/stripe": stripe}
    if SUPPORTS.secret_arn:
        for name in expected:
            expected[name]["arn"] = secret_arns[name]
    else:
        assert any(n.startswith("not imported: the ARN of secret payments/api/db") for n in notes)
    assert imported_world["secrets"] == expected
    signing = {"value": PLACEHOLDER, "type": "SecureString"} if SUPPORTS.typed_parameters else PLACEHOLDER
    assert imported_world["parameters"] == {
        "/payments/api/region-label": "eu-west-1 (Ireland)",
        "/payments/api/signing-key": signing,
    }
    assert imported_world["roles"] == ["payments-api-task", "payments-exec"]
    assert imported_world["logGroups"] == ["/ecs/payments-api"]
    # The alarms named after the service or on its metrics and its target group's; not another service's.
    assert imported_world["alarms"] == {name: "OK" for name in API_ALARMS}
    config_text = files["registry/api/ferry.yaml"]
    assert config_text.startswith("# Ferry config for payments/api, written by `ferry sandbox import`")
    assert yaml.safe_load(config_text) == API_CONFIG

    # Read-only: only the allowed calls; no secret read, nothing decrypted, the SecureString's value never asked for.
    # No environment file to look for, and no scalable target whose policies to read.
    assert {name for name, _ in calls} == READ_ONLY_CALLS - {"HeadObject"}  # each read the import needs, no other
    assert not any(params.get("WithDecryption") for _, params in calls)
    assert all(
        "/payments/api/signing-key" not in params.get("Names", []) for name, params in calls if name == "GetParameters"
    )
    text = output_text(imported_world, files, notes)
    for value in SECRET_VALUES:
        assert value not in text

    with world_session(write_world(tmp_path / "imported", imported_world, files)) as (box, world):
        after = deploy(box, world, event, tmp_path)
    if not SUPPORTS.secret_arn:  # the world cannot name the ARN: Verify does not find the secret by it
        assert "secret payments/api/db" in after["executions"][0]["cause"]
        return
    assert after["executions"][0]["status"] == "SUCCEEDED"
    assert after["services"]["payments/api"]["taskDefinition"] == "payments-api:2"
    assert after["services"]["payments/api"]["runningCount"] == 3
    assert after["services"]["payments/api"]["images"]["app"].endswith(
        "/payments-api@sha256:" + hashlib.sha256(b"payments-api:2024.06.2").hexdigest()
    )
    same_deploy(before, after)


# ----------------------------------------------------------------------------- what is not imported
def make_worker(box: Sandbox, _world: World) -> None:
    """A second service made by hand with what a world cannot say: a role under a path, another account's image,
    an environment file, a secret that is gone, a log group that is missing, two target groups, ECS Exec (the
    role and the environment file here, the rest in the test)."""
    iam = box.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName="worker-exec", Path="/service-role/", AssumeRolePolicyDocument=json.dumps(trust))
    s3 = box.client("s3")
    s3.create_bucket(Bucket="worker-config")
    s3.put_object(Bucket="worker-config", Key="worker.env", Body=b"API_TOKEN=env-file-secret-never-printed\n")


def test_what_a_world_cannot_hold_is_listed_and_the_rest_still_loads(tmp_path):
    with account(EXAMPLE / "world.yaml", make_worker) as (box, world):
        web = box.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
        registry = f"{box.account}.dkr.ecr.{box.region}.amazonaws.com"
        v2 = box.client("ecr").describe_images(repositoryName="web", imageIds=[{"imageTag": "v2"}])["imageDetails"][0]
        td = box.client("ecs").register_task_definition(
            family="worker",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=f"arn:aws:iam::{box.account}:role/service-role/worker-exec",
            containerDefinitions=[
                {
                    "name": "worker",
                    "image": f"{registry}/web@{v2['imageDigest']}",
                    "essential": True,
                    "portMappings": [{"containerPort": 8080}, {"containerPort": 9090}],
                    "environmentFiles": [{"value": "arn:aws:s3:::worker-config/worker.env", "type": "s3"}],
                    "secrets": [
                        {
                            "name": "GONE",
                            "valueFrom": f"arn:aws:secretsmanager:{box.region}:{box.account}:secret:prod/worker/gone",
                        }
                    ],
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {"awslogs-group": "/ecs/worker-missing", "awslogs-region": box.region},
                    },
                },
                {
                    "name": "proxy",
                    "image": f"999999999999.dkr.ecr.{box.region}.amazonaws.com/proxy:1",
                    "essential": False,
                },
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        elb = box.client("elbv2")
        vpc = elb.describe_target_groups(Names=["web-tg"])["TargetGroups"][0]["VpcId"]
        groups = [
            elb.create_target_group(Name=n, Protocol="HTTP", Port=p, VpcId=vpc, TargetType="ip")["TargetGroups"][0][
                "TargetGroupArn"
            ]
            for n, p in (("worker-a", 8080), ("worker-b", 9090))
        ]
        box.client("ecs").create_service(
            cluster="prod",
            serviceName="worker",
            taskDefinition=td,
            desiredCount=1,
            launchType="FARGATE",
            networkConfiguration=web["networkConfiguration"],
            enableExecuteCommand=True,
            loadBalancers=[
                {"targetGroupArn": a, "containerName": "worker", "containerPort": p}
                for a, p in zip(groups, (8080, 9090))
            ],
        )
        imported_world, files, notes, calls = imported(box, "prod", ["web", "worker"])

    worker = imported_world["services"][1]
    assert worker["running"] == {"worker": "web:v2"}  # the digest it runs, under its tag; proxy stays as it is
    expected = [
        "not imported: the path /service-role/ of role worker-exec",
        "not imported: image 999999999999.dkr.ecr.us-east-1.amazonaws.com/proxy:1 of container proxy",
        "not imported: secret arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/worker/gone of container worker "
        "(worker): it does not exist in the account",
        "not imported: log group /ecs/worker-missing of container worker (worker): it does not exist",
        "not imported: ECS Exec of service worker: a world has no place for these settings",
    ]
    if "targetGroups" in worker:  # the schema takes several
        assert [g["name"] for g in worker["targetGroups"]] == ["worker-a", "worker-b"]
    else:
        assert worker["targetGroup"] == {"name": "worker-a", "container": "worker", "port": 8080}
        expected.append(
            "not imported: target group worker-b of worker: a world holds one target group per service "
            "(it holds worker-a)"
        )
    if SUPPORTS.s3:
        assert list(imported_world["s3"]) == ["worker-config"] and list(imported_world["s3"]["worker-config"]) == [
            "worker.env"
        ]
        assert imported_world["s3"]["worker-config"]["worker.env"].startswith("# ferry-sandbox-placeholder")
        expected.append("not imported: the content of environment file s3://worker-config/worker.env")
    else:
        expected.append("not imported: environment file arn:aws:s3:::worker-config/worker.env")
    for line in expected:
        assert any(n.startswith(line) for n in notes), (line, notes)
    # The role is in the world at /, and the task definition names it there.
    assert "worker-exec" in imported_world["roles"]
    assert json.loads(files["worker-task-def.json"])["executionRoleArn"] == "arn:aws:iam::123456789012:role/worker-exec"
    assert {name for name, _ in calls} <= READ_ONLY_CALLS and ("HeadObject" in {n for n, _ in calls}) == SUPPORTS.s3
    assert "env-file-secret-never-printed" not in output_text(imported_world, files, notes)
    World.load(write_world(tmp_path / "imported", imported_world, files))


def test_the_importer_cannot_make_a_call_that_changes_or_reveals_anything():
    assert "get_secret_value" not in ALLOWED["secretsmanager"]
    assert all(op.startswith(("describe_", "list_", "get_", "head_")) for ops in ALLOWED.values() for op in ops)
    sm = ReadOnly("secretsmanager", boto3.client("secretsmanager", region_name="us-east-1"))
    with pytest.raises(ReadOnlyViolation, match="get_secret_value"):
        sm.get_secret_value(SecretId="x")
    ssm = ReadOnly("ssm", boto3.client("ssm", region_name="us-east-1"))
    with pytest.raises(ReadOnlyViolation, match="WithDecryption"):
        ssm.get_parameters(Names=["x"], WithDecryption=True)
    with pytest.raises(ReadOnlyViolation):
        ReadOnly("ecs", boto3.client("ecs", region_name="us-east-1")).update_service(cluster="c", service="s")


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def demo_account():
    with account(EXAMPLE / "world.yaml") as (box, world):
        yield box


def test_the_command_writes_a_world_that_loads_and_lists_what_it_left_out(demo_account, tmp_path, capsys):
    out = tmp_path / "mine" / "world.yaml"
    out.parent.mkdir()
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {out}" in captured.err and "not imported: the subnets and security groups of web" in captured.err
    world = World.load(out)
    assert world.data["registry"] == "registry"
    assert (out.parent / "registry" / "web" / "ferry.yaml").is_file() and (out.parent / "web-task-def.json").is_file()
    for value in SECRET_VALUES:
        assert value not in out.read_text() + captured.err
    # Files are not overwritten unless asked.
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(out)]) == 2
    assert "already exist: pass --force to overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "sandbox",
                "import",
                "--cluster",
                "prod",
                "--service",
                "web",
                "--out",
                str(out),
                "--force",
                "--registry",
                str(tmp_path / "configs"),
            ]
        )
        == 0
    )
    assert World.load(out).data["registry"] == "../configs"
    assert (tmp_path / "configs" / "web" / "ferry.yaml").is_file()


def test_the_readme_walk_through_imports_then_deploys_a_new_tag(tmp_path, capsys):
    """README "Try Ferry on your own service in 15 minutes": import, then push a tag the account never had."""
    out = tmp_path / "world.yaml"
    with account(EXAMPLE / "world.yaml"):
        assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(out)]) == 0
    push_v3 = tmp_path / "push.json"
    push_v3.write_text(
        json.dumps(
            {
                "source": "aws.ecr",
                "detail-type": "ECR Image Action",
                "id": "try-1",
                "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "web", "image-tag": "v3"},
            }
        )
    )
    capsys.readouterr()
    assert main(["sandbox", "run", "--world", str(out), "--event", str(push_v3), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)
    assert web["images"]["app"].endswith("/web@sha256:" + hashlib.sha256(b"web:v3").hexdigest())


def test_a_file_that_cannot_be_written_is_one_line_and_exit_1(demo_account, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "world.yaml"
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ferry sandbox import: cannot write {tmp_path / 'a-file'}/web-task-def.json: ")
    assert err.count("\n") == 1


def test_without_out_the_world_goes_to_stdout_and_its_files_here(demo_account, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web"]) == 0
    (tmp_path / "world.yaml").write_text(capsys.readouterr().out)
    assert World.load(tmp_path / "world.yaml").data["services"][0]["name"] == "web"


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (
            ["--cluster", "prod", "--service", "nope"],
            2,
            "--service nope: no active service nope in cluster prod (us-east-1): check the name",
        ),
        (
            ["--cluster", "staging", "--service", "web"],
            2,
            "--cluster staging: no active ECS cluster staging in us-east-1",
        ),
    ],
)
def test_a_missing_cluster_or_service_is_one_line_and_exit_2(demo_account, tmp_path, capsys, argv, status, message):
    assert main(["sandbox", "import", *argv, "--out", str(tmp_path / "world.yaml")]) == status
    err = capsys.readouterr().err
    assert err.startswith("ferry sandbox import: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "world.yaml").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--cluster", "prod", "--service", "web", "--service", "web"],
            "--service web is given twice: name each service once",
        ),
        (
            ["--cluster", "prod", "--service", "web", "--region", "eu-west"],
            "--region 'eu-west': give a region name such as eu-west-1",
        ),
        (
            ["--cluster", "my cluster", "--service", "web"],
            "--cluster 'my cluster': give an ECS cluster's name (letters, digits, - and _) or ARN",
        ),
        (
            ["--cluster", "prod", "--service", "web!"],
            "--service 'web!': give an ECS service's name (letters, digits, - and _) or ARN",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_before_any_call(tmp_path, capsys, argv, message):
    assert main(["sandbox", "import", *argv, "--out", str(tmp_path / "world.yaml")]) == 2
    assert capsys.readouterr().err == f"ferry sandbox import: {message}\n"


def test_out_must_be_a_file(tmp_path, capsys):
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a directory; give the world file's path" in capsys.readouterr().err


def test_no_region_is_bad_input(tmp_path, monkeypatch, capsys):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert main(["sandbox", "import", "--cluster", "prod", "--service", "web", "--out", str(tmp_path / "w.yaml")]) == 2
    assert "no AWS region: pass --region" in capsys.readouterr().err


def test_access_denied_is_reported_readably_with_exit_1(tmp_path, monkeypatch, capsys):
    """AWS refusing a call the import needs: which call, AWS's code and message, what the import needs."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    real = boto3.session.Session

    class Denied(real):
        def client(self, *args, **kwargs):
            made = super().client(*args, **kwargs)
            stub = Stubber(made)
            stub.add_client_error(
                "describe_clusters",
                service_error_code="AccessDeniedException",
                service_message="User: arn:aws:iam::123456789012:user/me is not authorized to "
                "perform: ecs:DescribeClusters",
                http_status_code=400,
            )
            stub.activate()
            return made

    monkeypatch.setattr(boto3.session, "Session", Denied)
    assert (
        main(
            [
                "sandbox",
                "import",
                "--cluster",
                "prod",
                "--service",
                "web",
                "--region",
                "eu-west-1",
                "--out",
                str(tmp_path / "w.yaml"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("ferry sandbox import: cannot read cluster prod in eu-west-1: ")
    assert (
        "DescribeClusters failed (AccessDeniedException: User: arn:aws:iam::123456789012:user/me is not authorized"
        in err
    )
    assert "the import needs ecs:DescribeClusters, ecs:DescribeServices and ecs:DescribeTaskDefinition" in err
