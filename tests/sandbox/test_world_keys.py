"""World keys for real services: each one built into the sandbox and used by a deploy through the real state machine.

secrets[].arn (a secret under the ARN AWS gave it), s3 (environment files), parameters of type SecureString,
stacks (CloudFormation outputs and exports), clusters and ferryClusters (clusters Ferry is not installed for), and
services without a load balancer.
"""

from __future__ import annotations

import hashlib
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
RENDER = "Render the new task definition and diff it"
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


def deploy(
    scenario: Scenario, *items: dict[str, Any] | Delivery, inspect: Callable[[Any], Any] | None = None
) -> tuple[dict[str, Any], Any]:
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
    [key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=sandbox.artefacts_bucket).get("Contents", [])
        if o["Key"].endswith("verify-report.json")
    ]
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
            found.append(
                (f"s3://{bucket}/{item['Key']}", s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode())
            )
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
    spec["containerDefinitions"][0]["secrets"][0]["valueFrom"] = (
        DB_ARN  # as `aws ecs describe-task-definition` shows it
    )
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
    assert (
        f"secret {DB_SECRET} (used by app) does not exist in {REGION} (a secret created again gets a new ARN)"
        in execution["cause"]
    )


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


@pytest.mark.parametrize(
    "arn, expected",
    [
        (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{DB_SECRET}", "$.secrets.prod/web/db-password.arn: "),
        (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/web/other-AbCdEf",
            "the ARN names secret 'prod/web/other', not 'prod/web/db-password'",
        ),
        (
            f"arn:aws:secretsmanager:{REGION}:210987654321:secret:{DB_SECRET}-AbCdEf",
            "the ARN is in account 210987654321, but the world's account is 123456789012",
        ),
    ],
)
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


# ----------------------------------------------------------------------------- s3

ENV_FILE = "arn:aws:s3:::web-config-123/web/prod.env"


def with_env_file(scenario: Scenario) -> None:
    spec = task_definition(scenario)
    spec["containerDefinitions"][0]["environmentFiles"] = [{"type": "s3", "value": ENV_FILE}]
    write_task_definition(scenario, spec)
    scenario.config("web", ROLLING)


def test_an_environment_file_the_world_puts_in_s3_passes_verify(scenario):
    with_env_file(scenario)
    scenario.world["s3"] = {"web-config-123": {"web/prod.env": "LOG_LEVEL=info\nFEATURE_X=on\n"}}

    def look(sandbox):
        body = sandbox.client("s3").get_object(Bucket="web-config-123", Key="web/prod.env")["Body"].read()
        return body, verify_report(sandbox), service_revision(sandbox)

    summary, (body, checks, revision) = deploy(scenario, push_event("web", "v2"), inspect=look)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    assert body == b"LOG_LEVEL=info\nFEATURE_X=on\n"
    [check] = [c for c in checks if c["name"] == "env-file-exists"]
    assert check["ok"] and check["message"] == "environment file s3://web-config-123/web/prod.env (used by app) exists"
    assert revision["containerDefinitions"][0]["environmentFiles"] == [{"type": "s3", "value": ENV_FILE}]


def test_an_environment_file_missing_from_its_bucket_fails_verify_naming_the_object(scenario):
    with_env_file(scenario)
    scenario.world["s3"] = {"web-config-123": {"web/staging.env": "LOG_LEVEL=debug\n"}}
    summary, _ = deploy(scenario, push_event("web", "v2"))
    execution = failed_in(summary, VERIFY)
    assert execution["error"] == "VerifyFailed"
    assert (
        "environment file s3://web-config-123/web/prod.env (used by app) does not exist: upload it with "
        "`aws s3 cp <file>.env s3://web-config-123/web/prod.env`"
    ) in execution["cause"]


def test_an_empty_bucket_is_made_and_the_stacks_own_buckets_cannot_be_named(scenario):
    scenario.world["s3"] = {"empty-bucket-1": {}}
    summary, listed = deploy(
        scenario, inspect=lambda sandbox: sandbox.client("s3").list_objects_v2(Bucket="empty-bucket-1").get("KeyCount")
    )
    assert listed == 0 and summary["executions"] == []
    scenario.world["s3"] = {f"ferry-sandbox-configbucket-{ACCOUNT}": {"services/x/ferry.yaml": "cluster: prod\n"}}
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    with pytest.raises(
        WorldError,
        match=r"\$\.s3\.ferry-sandbox-configbucket-123456789012: that is the Ferry "
        r"stack's own bucket",
    ):
        with world_session(world_path):
            pass


def test_an_s3_objects_body_is_not_repeated_by_a_schema_error(scenario):
    scenario.world["s3"] = {
        "Bad_Bucket": {"web/prod.env": "DB_PASSWORD=hunter2-do-not-print\n"},
        "web-config-123": {"web/prod.env": 424242424242},
    }
    message = load_error(scenario)
    assert "$.s3: 'Bad_Bucket' does not match" in message
    assert "$.s3.web-config-123.web/prod.env: (a value not shown) is not of type 'string'" in message
    assert "hunter2" not in message and "424242424242" not in message


def test_secrets_written_as_a_list_are_refused_without_quoting_them(scenario):
    scenario.world["secrets"] = [{"value": "hunter2-do-not-print"}]
    message = load_error(scenario)
    assert "$.secrets: (a value not shown) is not of type 'object'" in message and "hunter2" not in message


# ----------------------------------------------------------------------------- SecureString parameters

TOKEN_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/web/token"


def test_a_securestring_parameter_named_by_arn_passes_verify_and_its_value_appears_nowhere(scenario):
    scenario.world["parameters"]["/prod/web/token"] = {"value": TOKEN, "type": "SecureString"}
    template = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    spec = json.loads(template)
    spec["containerDefinitions"][0]["secrets"].append(
        {"name": "API_TOKEN", "valueFrom": "{{ ssm_arn `/prod/web/token` }}"}
    )
    scenario.config("web", json.dumps(spec), "task-definition.json")
    scenario.config("web", ROLLING + "taskDefinition: {template: task-definition.json}\n")

    def look(sandbox):
        ssm = sandbox.client("ssm")
        described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": ["/prod/web/token"]}])
        decrypted = ssm.get_parameter(Name="/prod/web/token", WithDecryption=True)["Parameter"]["Value"]
        return described["Parameters"][0]["Type"], decrypted, service_revision(sandbox), everything_stored(sandbox)

    summary, (kind, decrypted, revision, stored) = deploy(scenario, push_event("web", "v2"), inspect=look)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    assert (kind, decrypted) == ("SecureString", TOKEN)
    assert {"name": "API_TOKEN", "valueFrom": TOKEN_ARN} in revision["containerDefinitions"][0]["secrets"]
    assert summary["logLines"] and summary["histories"]
    assert TOKEN not in json.dumps(summary, default=str)  # executions, histories, outputs, log lines
    for where, text in stored:
        assert TOKEN not in text, f"the SecureString's value is in {where}"


def test_a_securestring_read_as_plain_text_fails_render_without_its_value(scenario):
    scenario.world["parameters"]["/prod/web/token"] = {"value": TOKEN, "type": "SecureString"}
    template = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    spec = json.loads(template)
    spec["containerDefinitions"][0]["environment"].append({"name": "API_TOKEN", "value": "{{ ssm `/prod/web/token` }}"})
    scenario.config("web", json.dumps(spec), "task-definition.json")
    scenario.config("web", ROLLING + "taskDefinition: {template: task-definition.json}\n")
    summary, _ = deploy(scenario, push_event("web", "v2"))
    execution = failed_in(summary, RENDER)
    assert "SSM parameter /prod/web/token is a SecureString: reference it under `secrets`" in execution["cause"]
    assert TOKEN not in json.dumps(summary, default=str)


def test_a_plain_string_parameter_keeps_its_short_form_and_a_stringlist_its_type(scenario):
    scenario.world["parameters"]["/prod/web/hosts"] = {"value": "a.example,b.example", "type": "StringList"}
    template = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    spec = json.loads(template)
    spec["containerDefinitions"][0]["environment"] += [
        {"name": "FEATURE", "value": "{{ ssm `/prod/web/feature` }}"},
        {"name": "HOSTS", "value": "{{ ssm `/prod/web/hosts` }}"},
    ]
    scenario.config("web", json.dumps(spec), "task-definition.json")
    scenario.config("web", ROLLING + "taskDefinition: {template: task-definition.json}\n")
    summary, revision = deploy(scenario, push_event("web", "v2"), inspect=service_revision)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    environment = {e["name"]: e["value"] for e in revision["containerDefinitions"][0]["environment"]}
    assert (environment["FEATURE"], environment["HOSTS"]) == ("on", "a.example,b.example")


@pytest.mark.parametrize(
    "spec, expected",
    [
        (
            {"value": TOKEN, "type": "Securestring"},
            "$.parameters./prod/web/token.type: 'Securestring' is not one of ['String', 'StringList', 'SecureString']",
        ),
        (
            {"value": 1234567890, "type": "SecureString"},
            "$.parameters./prod/web/token.value: (a value not shown) is not of type 'string'",
        ),
        ({"type": "SecureString"}, "$.parameters./prod/web/token: 'value' is a required property"),
        (TOKEN * 200, "$.parameters./prod/web/token: '****"),
    ],
)
def test_a_broken_parameter_is_refused_naming_the_field_and_never_its_value(scenario, spec, expected):
    scenario.world["parameters"]["/prod/web/token"] = spec
    message = load_error(scenario)
    assert expected in message
    assert TOKEN not in message and "1234567890" not in message


# ----------------------------------------------------------------------------- stacks

SERVICE_EXAMPLE = REPO_ROOT / "examples" / "service"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/shop-prod-orders"
SHOP_DB_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shop/prod/database-q7Rt2K"
STRIPE_KEY = "sk_live_sandbox-never-print-me"


def shop_world(directory: Path) -> dict[str, Any]:
    """A world in which the shipped examples/service config (the `shop` service) can deploy, built from what its
    README says the account has: the service behind shop-tg, the roles, secrets, parameters, stack output, alarms."""
    registry = directory / "registry" / "shop"
    shutil.copytree(SERVICE_EXAMPLE, registry, ignore=shutil.ignore_patterns("README.md"))
    template = (SERVICE_EXAMPLE / "task-definition.json").read_text()
    running = {  # what the revision running now was rendered with
        "{{ image `app` }}": f"{REGISTRY}/shop:sha-1111111",
        "{{ image `nginx` }}": f"{REGISTRY}/shop-nginx:release-1",
        "{{ must_env `RAILS_ENV` }}": "production",
        "{{ env `RELEASE` `unreleased` }}": "unreleased",
        "{{ digest `app` }}": "sha256:" + "1" * 64,
        "{{ environment }}": "sandbox",
        "{{ ssm `/shop/prod/checkout-api-url` }}": "https://checkout.example.com",
        "{{ cfn_output `shop-prod-queues` `OrdersQueueUrl` }}": QUEUE_URL,
        "{{ secret_arn `shop/prod/database` `url` }}": f"{SHOP_DB_ARN}:url::",
        "{{ secret_arn `shop/prod/secret-key-base` }}": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shop/prod/secret-key-base-Lm3Np9",
        "{{ ssm_arn `/shop/prod/stripe-api-key` }}": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/shop/prod/stripe-api-key",
        "{{ service }}": "shop",
        "{{ execution }}": "manual-first",
        "{{ must_env `LOG_GROUP` }}": "/ecs/shop",
    }
    for placeholder, value in running.items():
        template = template.replace(placeholder, value)
    assert "{{" not in template, template
    (directory / "shop-task-def.json").write_text(template)
    return {
        "ecr": {"shop": ["sha-1111111", "sha-9f1c2ab"], "shop-nginx": ["release-1"]},
        "services": [
            {
                "cluster": "prod",
                "name": "shop",
                "desiredCount": 2,
                "running": {"app": "shop:sha-1111111", "nginx": "shop-nginx:release-1"},
                "taskDefinition": "shop-task-def.json",
                "targetGroup": {"name": "shop-tg", "container": "nginx", "port": 8080},
            }
        ],
        "roles": ["shop-execution-role", "shop-task-role"],
        "secrets": {
            "shop/prod/database": {"value": '{"url": "postgres://shop@db/shop"}', "arn": SHOP_DB_ARN},
            "shop/prod/secret-key-base": {
                "value": "0123456789abcdef",
                "arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shop/prod/secret-key-base-Lm3Np9",
            },
        },
        "parameters": {
            "/shop/prod/checkout-api-url": "https://checkout.example.com",
            "/shop/prod/stripe-api-key": {"value": STRIPE_KEY, "type": "SecureString"},
        },
        "stacks": {
            "shop-prod-queues": {
                "outputs": {
                    "OrdersQueueUrl": QUEUE_URL,
                    "OrdersQueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:shop-prod-orders",
                },
                "exports": {"shop-prod-OrdersQueueUrl": QUEUE_URL},
            }
        },
        "alarms": {"shop-5xx": "OK", "shop-p99-latency": "OK"},
        "logGroups": ["/ecs/shop"],
        "migration": {"exitCode": 0, "runSeconds": 30, "logLines": ["== 20261122 AddOrdersIndex: migrated"]},
        "registry": "registry",
    }


def test_the_shipped_example_service_deploys_reading_its_stack_output_secrets_and_securestring(tmp_path):
    scenario = Scenario(tmp_path)
    scenario.world = shop_world(tmp_path)

    def look(sandbox):
        cfn = sandbox.client("cloudformation")
        stack = cfn.describe_stacks(StackName="shop-prod-queues")["Stacks"][0]
        return (
            stack,
            cfn.list_exports()["Exports"],
            service_revision(sandbox, "prod", "shop"),
            everything_stored(sandbox),
        )

    summary, (stack, exports, revision, stored) = deploy(scenario, push_event("shop", "sha-9f1c2ab"), inspect=look)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    for state in (
        "Run the migrations in order",
        "Start the canary tasks",
        "Check the canary",
        "Update the service to the new revision",
        "Bake while watching the alarms",
    ):
        assert state in execution["states"], (state, execution["states"])
    assert summary["services"]["prod/shop"]["taskDefinition"] == "shop:2"
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["OrdersQueueUrl"] == QUEUE_URL
    assert [(e["Name"], e["Value"]) for e in exports] == [("shop-prod-OrdersQueueUrl", QUEUE_URL)]
    app = next(c for c in revision["containerDefinitions"] if c["name"] == "app")
    environment = {e["name"]: e["value"] for e in app["environment"]}
    assert environment["ORDERS_QUEUE_URL"] == QUEUE_URL  # {{ cfn_output `shop-prod-queues` `OrdersQueueUrl` }}
    assert environment["CHECKOUT_API_URL"] == "https://checkout.example.com"
    secrets = {s["name"]: s["valueFrom"] for s in app["secrets"]}
    assert secrets == {
        "DATABASE_URL": f"{SHOP_DB_ARN}:url::",  # the world's ARN, suffix included
        "SECRET_KEY_BASE": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:shop/prod/secret-key-base-Lm3Np9",
        "STRIPE_API_KEY": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/shop/prod/stripe-api-key",
    }
    digest = "sha256:" + hashlib.sha256(b"shop:sha-9f1c2ab").hexdigest()  # the world derives it from shop:sha-9f1c2ab
    assert app["image"] == f"{REGISTRY}/shop@{digest}"
    assert summary["migrationTasks"] == {"started": 1, "running": 0}
    assert STRIPE_KEY not in json.dumps(summary, default=str)
    for where, text in stored:
        assert STRIPE_KEY not in text and "postgres://" not in text, where


def test_cfn_export_reads_an_export_of_a_world_stack_and_a_missing_output_fails_render(scenario):
    scenario.world["stacks"] = {
        "network": {
            "outputs": {"SubnetIds": "subnet-1,subnet-2"},
            "exports": {"network-SubnetIds": "subnet-1,subnet-2", "network:VpcId": "vpc-0abc"},
        }
    }
    template = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    spec = json.loads(template)
    spec["containerDefinitions"][0]["environment"] += [
        {"name": "SUBNETS", "value": "{{ cfn_export `network-SubnetIds` }}"},
        {"name": "VPC", "value": "{{ cfn_export `network:VpcId` }}"},
        {"name": "SUBNETS_OUTPUT", "value": "{{ cfn_output `network` `SubnetIds` }}"},
    ]
    scenario.config("web", json.dumps(spec), "task-definition.json")
    scenario.config("web", ROLLING + "taskDefinition: {template: task-definition.json}\n")

    def look(sandbox):
        outputs = sandbox.client("cloudformation").describe_stacks(StackName="network")["Stacks"][0]["Outputs"]
        return {o["OutputKey"]: (o["OutputValue"], o.get("ExportName")) for o in outputs}, service_revision(sandbox)

    summary, (outputs, revision) = deploy(scenario, push_event("web", "v2"), inspect=look)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    environment = {e["name"]: e["value"] for e in revision["containerDefinitions"][0]["environment"]}
    assert (environment["SUBNETS"], environment["VPC"], environment["SUBNETS_OUTPUT"]) == (
        "subnet-1,subnet-2",
        "vpc-0abc",
        "subnet-1,subnet-2",
    )
    # An export is carried by the output of its value, else by an output of its own, keyed by its letters and digits.
    assert outputs == {
        "SubnetIds": ("subnet-1,subnet-2", "network-SubnetIds"),
        "networkVpcId": ("vpc-0abc", "network:VpcId"),
    }

    scenario.world["stacks"]["network"]["outputs"] = {"VpcId": "vpc-0abc"}
    scenario.world["stacks"]["network"]["exports"] = {}
    summary, _ = deploy(scenario, push_event("web", "v2"))
    execution = failed_in(summary, RENDER)
    assert (
        "CloudFormation stack network has no output SubnetIds: its outputs are VpcId; add it to the stack's "
        "Outputs or fix the key"
    ) in execution["cause"]


@pytest.mark.parametrize(
    "stacks, expected",
    [
        ({"1network": {"outputs": {"A": "b"}}}, "$.stacks: '1network' does not match"),
        ({"network": {"outputs": {"Subnet-Ids": "b"}}}, "$.stacks.network.outputs: 'Subnet-Ids' does not match"),
        (
            {"network": {"exports": {"network_SubnetIds": "b"}}},
            "$.stacks.network.exports: 'network_SubnetIds' does not match",
        ),
        ({"network": {"outputs": {"A": 7}}}, "$.stacks.network.outputs.A: 7 is not of type 'string'"),
        (
            {"a": {"exports": {"shared-Vpc": "v"}}, "b": {"exports": {"shared-Vpc": "v"}}},
            "$.stacks.b.exports.shared-Vpc: stack a already exports this name; export names are unique in a region",
        ),
        (
            {"big": {"outputs": {f"O{i}": "v" for i in range(150)}, "exports": {f"e{i}": str(i) for i in range(51)}}},
            "$.stacks.big: 201 outputs and exports; a CloudFormation template declares at most 200 outputs",
        ),
    ],
)
def test_a_stack_cloudformation_would_refuse_is_refused_naming_the_field(scenario, stacks, expected):
    scenario.world["stacks"] = stacks
    assert expected in load_error(scenario)


# ----------------------------------------------------------------------------- services without a load balancer


@pytest.mark.parametrize("strategy", ["rolling", "canary"])
def test_a_service_without_a_load_balancer_deploys(scenario, strategy):
    """No targetGroup: the service has no loadBalancers; a canary is judged by its container health checks alone."""
    del scenario.world["services"][0]["targetGroup"]
    canary = ", canary: {count: 1, healthyForSeconds: 60}" if strategy == "canary" else ""
    scenario.config(
        "web",
        f"cluster: prod\nservice: web\ncontainers: {{app: {{repository: web}}}}\n"
        f"strategy: {{type: {strategy}{canary}}}\n",
    )

    def look(sandbox):
        described = sandbox.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
        return (
            described["loadBalancers"],
            sandbox.client("elbv2").describe_target_groups()["TargetGroups"],
            verify_report(sandbox),
        )

    summary, (balancers, groups, checks) = deploy(scenario, push_event("web", "v2"), inspect=look)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert (balancers, groups) == ([], [])
    assert not [c for c in checks if c["name"] in ("target-group-exists", "load-balancer-container")]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:2", 2)
    if strategy == "canary":
        states = execution["states"]
        assert states.index("Check the canary") < states.index("Update the service to the new revision")
        assert summary["canaryTasks"] == 0


def test_a_canary_without_a_load_balancer_still_fails_on_its_container_health_checks(scenario):
    del scenario.world["services"][0]["targetGroup"]
    scenario.world["ecr"]["web"].append("v4")
    scenario.world["behaviour"] = {"web:v4": {"health": "unhealthy"}}
    scenario.config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n",
    )
    summary, _ = deploy(scenario, push_event("web", "v4"))
    execution = failed_in(summary, "Check the canary")
    assert execution["error"] == "CanaryUnhealthy"
    assert "failed its container health checks 3 times in a row" in execution["cause"]


# ----------------------------------------------------------------------------- clusters Ferry is not installed for

STAGING = "cluster: staging\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"


def staging_world(scenario: Scenario) -> None:
    """prod/web (Ferry's), and staging/web in a cluster the account has but the stack's Clusters does not name."""
    scenario.world["clusters"] = ["prod", "staging"]
    spec = task_definition(scenario)
    spec["family"] = "web-staging"
    (scenario.dir / "staging-task-def.json").write_text(json.dumps(spec))
    scenario.world["services"].append(
        {
            "cluster": "staging",
            "name": "web",
            "desiredCount": 1,
            "running": {"app": "web:v1", "nginx": "nginx:1.27"},
            "taskDefinition": "staging-task-def.json",
        }
    )
    scenario.world["ferryClusters"] = ["prod"]
    scenario.config("web-staging", STAGING)


def test_clusters_the_world_lists_exist_and_ferry_is_installed_only_for_ferry_clusters(scenario):
    scenario.world["clusters"] = ["prod", "staging", "batch"]
    scenario.world["ferryClusters"] = ["prod", "batch"]

    def look(sandbox):
        from ferry.runtime import settings

        return sorted(
            c.rsplit("/", 1)[-1] for c in sandbox.client("ecs").list_clusters()["clusterArns"]
        ), settings.load().allowed_clusters

    summary, (clusters, allowed) = deploy(scenario, push_event("web", "v2"), inspect=look)
    assert summary["executions"][0]["status"] == "SUCCEEDED", summary["executions"][0]
    assert clusters == ["batch", "prod", "staging"]
    assert allowed == ("prod", "batch")


def test_a_manifest_deploying_into_a_cluster_ferry_is_not_installed_for_is_refused_naming_the_fix(scenario):
    staging_world(scenario)
    release = scenario.manifest(
        "release", {"version": 1, "deployments": [{"service": "web-staging", "images": {"app": "web:v2"}}]}
    )
    summary, _ = deploy(scenario, release)
    assert summary["executions"] == []
    [result] = summary["manifestResults"].values()
    assert result["status"] == "REFUSED"
    assert any(
        "service web-staging is on cluster 'staging', which this Ferry installation may not touch (allowed: "
        "prod); add it to the stack's Clusters parameter" in p["message"]
        for p in result["problems"]
    ), result
    assert summary["services"]["staging/web"]["taskDefinition"] == "web-staging:1"


def test_a_deploy_started_for_a_cluster_ferry_is_not_installed_for_fails_before_anything_changes(scenario):
    staging_world(scenario)

    def start(sandbox):
        sandbox.start_execution({"service": "web-staging", "images": {"app": f"{REGISTRY}/web:v2"}}, name="staging")
        sandbox.wait_for_executions()
        return summarise(sandbox, [])

    _, summary = deploy(scenario, inspect=start)
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED" and execution["error"] == "ClusterNotAllowed", execution
    assert (
        "service web-staging is on cluster 'staging', which this Ferry installation may not touch (allowed: prod); "
        "add it to the stack's Clusters parameter"
    ) in execution["cause"]
    assert summary["services"]["staging/web"]["taskDefinition"] == "web-staging:1"
    assert summary["locksHeld"] == 0


def test_a_push_deploys_only_the_services_on_clusters_ferry_is_installed_for(scenario):
    """The router leaves out a config whose cluster the stack does not name: the push deploys prod/web only."""
    staging_world(scenario)
    summary, _ = deploy(scenario, push_event("web", "v2"))
    [execution] = summary["executions"]
    assert (execution["service"], execution["status"]) == ("prod/web", "SUCCEEDED")
    assert summary["services"]["staging/web"]["taskDefinition"] == "web-staging:1"
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    skipped = [line for line in summary["logLines"] if "its cluster is not one Ferry is installed for" in line]
    assert len(skipped) == 1 and '"cluster":"staging"' in skipped[0].replace(" ", ""), skipped
    assert "Clusters parameter" in skipped[0]


def test_a_config_on_a_cluster_ferry_may_touch_that_does_not_exist_fails_render(scenario):
    """ferryClusters may name a cluster the account does not have (the Clusters parameter is only IAM's)."""
    scenario.world["ferryClusters"] = ["prod", "ghost"]
    scenario.config("web-ghost", STAGING.replace("staging", "ghost"))
    summary, _ = deploy(
        scenario,
        scenario.manifest(
            "ghost", {"version": 1, "deployments": [{"service": "web-ghost", "images": {"app": "web:v2"}}]}
        ),
    )
    [execution] = summary["executions"]
    assert (execution["status"], execution["error"]) == ("FAILED", "ServiceNotFound"), execution
    assert execution["cause"] == "cluster ghost does not exist: check `cluster` in the service config"
    assert RENDER in execution["states"] and VERIFY not in execution["states"]


# ----------------------------------------------------------------------------- the documentation


def test_the_readmes_world_file_example_is_valid_against_the_schema():
    """README's "World files" block documents every key: it must stay a world the schema accepts."""
    from ferry.config.validation import problems

    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### World files", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = yaml.safe_load(block.replace("<64 hex>", "0" * 64))  # the one placeholder it writes
    assert problems(documented, "sandbox-world.schema.json") == []
    schema = json.loads((REPO_ROOT / "layers/ferry/ferry/schemas/sandbox-world.schema.json").read_text())
    assert set(schema["properties"]) <= set(documented), sorted(set(schema["properties"]) - set(documented))
    service_keys = set(schema["properties"]["services"]["items"]["properties"])
    shown = {key for service in documented["services"] for key in service}
    assert service_keys <= shown, sorted(service_keys - shown)


# ----------------------------------------------------------------------------- several target groups

GROUPS = [
    {"name": "web-public", "container": "nginx", "port": 80},  # an ALB's, to nginx
    {"name": "web-internal", "container": "nginx", "port": 80, "protocol": "HTTPS"},  # another ALB group
    {"name": "web-grpc", "container": "app", "port": 8080, "protocol": "TCP"},
]  # an NLB's, to app


def several_groups(scenario: Scenario) -> None:
    del scenario.world["services"][0]["targetGroup"]
    scenario.world["services"][0]["targetGroups"] = GROUPS
    scenario.config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n",
    )


def test_a_service_with_alb_and_nlb_target_groups_deploys_a_canary_registered_in_each(scenario):
    several_groups(scenario)

    def look(sandbox):
        elb = sandbox.client("elbv2")
        described = sandbox.client("ecs").describe_services(cluster="prod", services=["web"])["services"][0]
        groups = {g["TargetGroupName"]: g for g in elb.describe_target_groups()["TargetGroups"]}
        balancers = {b["LoadBalancerArn"]: b for b in elb.describe_load_balancers()["LoadBalancers"]}
        health = {
            name: sorted(
                d["TargetHealth"]["State"]
                for d in elb.describe_target_health(TargetGroupArn=g["TargetGroupArn"])["TargetHealthDescriptions"]
            )
            for name, g in groups.items()
        }
        ever = {
            name: {ip for (arn, ip) in sandbox.simulator._reg_at if arn == g["TargetGroupArn"]}
            for name, g in groups.items()
        }
        return described["loadBalancers"], groups, balancers, health, ever, verify_report(sandbox)

    summary, (entries, groups, balancers, health, ever, checks) = deploy(
        scenario, push_event("web", "v2"), inspect=look
    )
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert "Check the canary" in execution["states"]
    assert [(e["containerName"], e["containerPort"]) for e in entries] == [("nginx", 80), ("nginx", 80), ("app", 8080)]
    assert {n: g["Protocol"] for n, g in groups.items()} == {
        "web-public": "HTTP",
        "web-internal": "HTTPS",
        "web-grpc": "TCP",
    }
    kinds = {n: balancers[g["LoadBalancerArns"][0]]["LoadBalancerName"] for n, g in groups.items()}
    assert kinds == {
        "web-public": "ferry-sandbox-alb",
        "web-internal": "ferry-sandbox-alb",
        "web-grpc": "ferry-sandbox-nlb",
    }
    # The service's two new tasks are healthy in every group; the old ones and the canary are gone.
    assert health == {name: ["healthy", "healthy"] for name in groups}
    # Each group saw the same five tasks: the two old, the canary (registered by Ferry), the two new.
    assert len(ever["web-public"]) == 5 and ever["web-public"] == ever["web-internal"] == ever["web-grpc"]
    ok = {c["resource"]: c["ok"] for c in checks if c["name"] in ("target-group-exists", "load-balancer-container")}
    assert ok == {
        "target group web-public": True,
        "target group web-internal": True,
        "target group web-grpc": True,
        "container nginx port 80": True,
        "container app port 8080": True,
    }


def test_a_revision_that_drops_the_nlbs_container_port_fails_verify(scenario):
    several_groups(scenario)
    template = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    spec = json.loads(template)
    spec["containerDefinitions"][0]["portMappings"] = [{"containerPort": 9090, "hostPort": 9090, "protocol": "tcp"}]
    scenario.config("web", json.dumps(spec), "task-definition.json")
    scenario.config("web", ROLLING + "taskDefinition: {template: task-definition.json}\n")
    summary, _ = deploy(scenario, push_event("web", "v2"))
    execution = failed_in(summary, VERIFY)
    assert (
        "service web sends target group web-grpc traffic to app:8080, but container app has no portMapping with "
        "containerPort 8080 in the new revision (it has 9090)"
    ) in execution["cause"]
    assert "web-public" not in execution["cause"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda svc: svc.update(targetGroups=GROUPS[:1]), "$.services[0]: give targetGroup or targetGroups, not both"),
        (
            lambda svc: (
                svc.pop("targetGroup"),
                svc.update(targetGroups=[GROUPS[0], {**GROUPS[1], "name": "web-public"}]),
            ),
            "$.services[0].targetGroups[1]: target group web-public is already one of this service's",
        ),
        (
            lambda svc: (
                svc.pop("targetGroup"),
                svc.update(targetGroups=[{**GROUPS[0], "name": f"g{i}"} for i in range(6)]),
            ),
            "'port': 80}, {'container': 'nginx', 'name… is too long",
        ),  # ECS attaches at most five
        (
            lambda svc: svc.update(targetGroup={**GROUPS[0], "protocol": "TLS"}),
            "$.services[0].targetGroup.protocol: 'TLS' is not one of ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TCP_UDP']",
        ),
    ],
)
def test_target_groups_aws_would_refuse_are_refused_naming_the_field(scenario, change, expected):
    change(scenario.world["services"][0])
    message = load_error(scenario)
    assert expected in message, message


# ----------------------------------------------------------------------------- behaviour by container and by task

CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
)


def with_worker(scenario: Scenario) -> None:
    """A second essential container, worker, running the web image too (as app does), deployed with it."""
    spec = task_definition(scenario)
    worker = {**spec["containerDefinitions"][0], "name": "worker", "portMappings": []}
    worker.pop("healthCheck")
    spec["containerDefinitions"].append(worker)
    write_task_definition(scenario, spec)
    scenario.world["services"][0]["running"]["worker"] = "web:v1"
    scenario.world["ecr"]["web"].append("v3")
    scenario.config(
        "web", CANARY.replace("{app: {repository: web}}", "{app: {repository: web}, worker: {repository: web}}")
    )


def test_an_image_that_crashes_only_in_one_container_is_reported_on_that_container(scenario):
    with_worker(scenario)
    scenario.world["behaviour"] = {
        "web:v3": [{"container": "worker", "exitCode": 3, "logLines": ["worker: queue ORDERS not found"]}]
    }
    summary, _ = deploy(scenario, push_event("web", "v3"))
    execution = failed_in(summary, "Check the canary")
    assert execution["error"] == "CanaryCrashed"
    assert "container worker exited with code 3" in execution["cause"], execution["cause"]
    # The worker's log tail is the one named (the Cause carries no log line).
    assert " web/worker/" in execution["cause"] and "worker: queue ORDERS not found" not in execution["cause"]
    assert "container app exited with code 3" not in execution["cause"]


def test_without_a_container_the_first_essential_container_running_the_image_has_the_behaviour(scenario):
    with_worker(scenario)
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 3}}
    summary, _ = deploy(scenario, push_event("web", "v3"))
    execution = failed_in(summary, "Check the canary")
    assert "container app exited with code 3" in execution["cause"], execution["cause"]


def test_a_behaviour_for_the_canary_only_fails_the_canary(scenario):
    scenario.world["ecr"]["web"].append("v3")
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1, "tasks": "canary", "logLines": ["canary: boom"]}}
    scenario.config("web", CANARY)
    summary, _ = deploy(scenario, push_event("web", "v3"))
    execution = failed_in(summary, "Check the canary")
    assert execution["error"] == "CanaryCrashed" and "Its last 1 log line, masked: s3://" in execution["cause"]


def test_a_behaviour_for_the_service_only_passes_the_canary_then_ecs_rolls_back(scenario):
    """The canary proves web:v3 healthy, then the service's own tasks crash: ECS's circuit breaker rolls back."""
    scenario.world["ecr"]["web"].append("v3")
    scenario.world["services"][0]["deploymentConfiguration"] = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}
    }
    scenario.world["behaviour"] = {"web:v3": {"exitCode": 1, "tasks": "service"}}
    scenario.config("web", CANARY)
    summary, _ = deploy(scenario, push_event("web", "v3"))
    [execution] = summary["executions"]
    assert (execution["status"], execution["error"]) == ("FAILED", "RolledBack"), execution
    states = execution["states"]
    assert (
        states.index("Check the canary")
        < states.index("Update the service to the new revision")
        < states.index("Roll back to the previous revision")
    )
    assert "ECS replaced the deployment of web:2" in execution["cause"]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:1" and summary["canaryTasks"] == 0


def test_several_behaviours_of_an_image_the_first_that_applies_wins(scenario):
    """A list: the canary is unhealthy, every other task of web:v3 crashes; the canary's entry comes first."""
    scenario.world["ecr"]["web"].append("v3")
    scenario.world["behaviour"] = {"web:v3": [{"health": "unhealthy", "tasks": "canary"}, {"exitCode": 1}]}
    scenario.config("web", CANARY)
    summary, _ = deploy(scenario, push_event("web", "v3"))
    execution = failed_in(summary, "Check the canary")
    assert execution["error"] == "CanaryUnhealthy", execution
    assert "failed its container health checks 3 times in a row" in execution["cause"]


@pytest.mark.parametrize(
    "behaviour, expected",
    [
        ({"web:v3": {"exitCode": 1, "tasks": "migration"}}, "$.behaviour.web:v3.tasks: 'migration' is not one of"),
        ({"web:v3": []}, "$.behaviour.web:v3: [] should be non-empty"),
        (
            {"web:v3": [{"exitCode": 1, "contianer": "app"}]},
            "$.behaviour.web:v3[0]: Additional properties are not allowed",
        ),
    ],
)
def test_a_broken_behaviour_is_refused_naming_the_field(scenario, behaviour, expected):
    scenario.world["behaviour"] = behaviour
    assert expected in load_error(scenario)


# ----------------------------------------------------------------------------- capacity providers and autoscaling
SPOT = [{"capacityProvider": "FARGATE_SPOT", "weight": 3}, {"capacityProvider": "FARGATE", "weight": 1, "base": 1}]


def test_a_service_on_a_capacity_provider_strategy_deploys_its_canary_on_that_strategy(scenario):
    scenario.world["services"][0]["capacityProviderStrategy"] = SPOT
    scenario.config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60}}\n",
    )
    seen = []

    def started_canary(sandbox):
        ecs = sandbox.client("ecs")
        service = ecs.describe_services(cluster="prod", services=["web"])["services"][0]
        [cluster] = ecs.describe_clusters(clusters=["prod"])["clusters"]
        arns = ecs.list_tasks(cluster="prod", desiredStatus="STOPPED")["taskArns"]
        stopped = ecs.describe_tasks(cluster="prod", tasks=arns)["tasks"] if arns else []
        seen.extend(
            t
            for t in stopped
            if t["taskDefinitionArn"].endswith("web:2") and t.get("startedBy", "").startswith("ferry")
        )
        return service, cluster

    summary, (service, cluster) = deploy(scenario, push_event("web", "v2"), inspect=started_canary)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert service["capacityProviderStrategy"] == SPOT and not service.get("launchType"), service
    assert {"FARGATE", "FARGATE_SPOT"} <= set(cluster["capacityProviders"])
    assert "Check the canary" in execution["states"]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    [canary] = seen  # the canary ran on the service's strategy, and was stopped after the deploy
    assert canary["capacityProviderName"] in ("FARGATE_SPOT", "FARGATE") and not canary.get("launchType"), canary


def test_a_strategy_with_two_bases_is_refused_naming_the_field(scenario, tmp_path):
    scenario.world["services"][0]["capacityProviderStrategy"] = [
        {"capacityProvider": "FARGATE_SPOT", "base": 1},
        {"capacityProvider": "FARGATE", "base": 1},
    ]
    with pytest.raises(WorldError, match=r"\$\.services\[0\]\.capacityProviderStrategy\[1\]\.base: only one"):
        deploy(scenario, push_event("web", "v2"))


def test_a_service_with_an_autoscaling_target_has_it_in_the_account_and_deploys(scenario):
    scenario.world["services"][0]["autoScaling"] = {
        "minCapacity": 2,
        "maxCapacity": 6,
        "policies": [{"name": "cpu", "metric": "ECSServiceAverageCPUUtilization", "targetValue": 60}],
    }

    def scaling(sandbox):
        aas = sandbox.client("application-autoscaling")
        return (
            aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"],
            aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"],
        )

    summary, (targets, policies) = deploy(scenario, push_event("web", "v2"), inspect=scaling)
    assert summary["executions"][0]["status"] == "SUCCEEDED"
    [target] = targets
    assert (target["ResourceId"], target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (
        "service/prod/web",
        "ecs:service:DesiredCount",
        2,
        6,
    )
    [policy] = policies
    assert policy["PolicyName"] == "cpu" and policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
    }


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        ({"minCapacity": 5, "maxCapacity": 2}, r"autoScaling\.minCapacity: 5 is above maxCapacity 2"),
        ({"minCapacity": 1}, r"autoScaling"),
        (
            {"minCapacity": 1, "maxCapacity": 2, "policies": [{"name": "x", "metric": "Nope", "targetValue": 1}]},
            r"autoScaling\.policies\[0\]\.metric",
        ),
    ],
)
def test_a_broken_autoscaling_target_is_refused_naming_the_field(scenario, scaling, expected):
    scenario.world["services"][0]["autoScaling"] = scaling
    with pytest.raises(WorldError, match=expected):
        deploy(scenario, push_event("web", "v2"))
