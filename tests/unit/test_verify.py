"""Verify: every reference of the new revision is checked, and every problem reported at once."""

from __future__ import annotations

import copy
import json
import logging

import boto3
import pytest
from botocore.exceptions import ClientError

from ferry import aws as ferry_aws
from ferry.aws import artefacts
from ferry.text import json_length
from ferry.errors import InputInvalid, TaskDefinitionInvalid, VerifyFailed
from ferry.runtime import causes
from ferry.steps import verify as verify_module
from ferry.steps.verify import Check, Report, verify

from .conftest import ACCOUNT, REGISTRY, push

# Looks like nothing else in the world, so a leak anywhere is found by a plain substring search.
SECRET_VALUE = "s3cr3t-Zq9x-never-print-me"
TRUST_ECS_TASKS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
TRUST_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
INDEX = "application/vnd.docker.distribution.manifest.list.v2+json"


def push_index(repo: str, tag: str, platforms: list[tuple[str, str]]) -> str:
    """A multi-arch image (manifest list); returns the digest ECR gave it."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "size": 1,
                    "digest": f"sha256:{str(i) * 64}",
                    "platform": {"os": os_name, "architecture": arch},
                }
                for i, (os_name, arch) in enumerate(platforms, start=1)
            ],
        }
    )
    image = boto3.client("ecr").put_image(
        repositoryName=repo, imageManifest=manifest, imageTag=tag, imageManifestMediaType=INDEX
    )
    return image["image"]["imageId"]["imageDigest"]


@pytest.fixture(scope="module")
def world():
    """A healthy world: every reference the task definition makes exists and works.

    Built once for the module (moto's SSM and EC2 backends are slow to start), so
    tests may add to it but never change or delete what is there: a failure is
    made by pointing the task definition at something missing or broken.
    """
    from moto import mock_aws

    ferry_aws.reset()
    with mock_aws():
        yield build_world()
    ferry_aws.reset()


def build_world() -> dict:
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="web")
    ecr.create_repository(repositoryName="worker")
    web_digest = push("web", "v2")
    worker_digest = push_index("worker", "v2", [("linux", "amd64"), ("linux", "arm64")])

    iam = boto3.client("iam")
    for role in ("web-execution", "web-task"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST_ECS_TASKS)

    secrets = boto3.client("secretsmanager")
    db_arn = secrets.create_secret(Name="prod/web/db", SecretString=json.dumps({"password": SECRET_VALUE}))["ARN"]
    boto3.client("ssm").put_parameter(Name="/prod/web/api-key", Value=SECRET_VALUE, Type="SecureString")

    boto3.client("logs").create_log_group(logGroupName="/ecs/web")
    boto3.client("logs", region_name="eu-west-1").create_log_group(logGroupName="/ecs/worker")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="web-config")
    s3.put_object(Bucket="web-config", Key="prod/app.env", Body=b"MODE=prod\n")
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName="web-5xx",
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )

    vpc = boto3.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    elbv2 = boto3.client("elbv2")
    tg = elbv2.create_target_group(Name="web-tg", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]
    elbv2.create_target_group(Name="web-canary", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")

    db_password = {"name": "DB_PASSWORD", "valueFrom": f"{db_arn}:password::"}
    task_definition = {
        "family": "web",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/web-execution",
        "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/web-task",
        "containerDefinitions": [
            {
                "name": "app",
                "image": f"{REGISTRY}/web@{web_digest}",
                "essential": True,
                "portMappings": [{"containerPort": 8080, "hostPort": 8080}],
                "secrets": [db_password, {"name": "API_KEY", "valueFrom": "/prod/web/api-key"}],
                "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::web-config/prod/app.env"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/web",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "app",
                    },
                },
            },
            {
                "name": "worker",
                "image": f"{REGISTRY}/worker@{worker_digest}",
                "essential": True,
                "secrets": [db_password],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/worker",
                        "awslogs-region": "eu-west-1",
                        "awslogs-stream-prefix": "worker",
                    },
                },
            },
            {
                "name": "nginx",
                "image": "public.ecr.aws/nginx/nginx:1.27",
                "essential": False,
                "portMappings": [{"containerPort": 80}],
            },
        ],
    }
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="prod")
    current = ecs.register_task_definition(
        **{
            **task_definition,
            "containerDefinitions": [
                {k: v for k, v in c.items() if k not in ("secrets", "environmentFiles")}
                for c in task_definition["containerDefinitions"]
            ],
        }
    )
    ecs.create_service(
        cluster="prod",
        serviceName="web",
        taskDefinition=current["taskDefinition"]["taskDefinitionArn"],
        desiredCount=2,
        loadBalancers=[{"targetGroupArn": tg["TargetGroupArn"], "containerName": "app", "containerPort": 8080}],
    )
    return {
        "taskDefinition": task_definition,
        "dbArn": db_arn,
        "vpc": vpc,
        "currentArn": current["taskDefinition"]["taskDefinitionArn"],
    }


def run(world, task_definition=None, **kwargs) -> Report:
    options = {"cluster": "prod", "service": "web", "alarms": ["web-5xx"], "target_groups": ["web-canary"], **kwargs}
    return verify(task_definition or world["taskDefinition"], **options)


def td_with(world, change) -> dict:
    task_definition = copy.deepcopy(world["taskDefinition"])
    change(task_definition)
    return task_definition


def container(task_definition: dict, name: str) -> dict:
    return next(c for c in task_definition["containerDefinitions"] if c["name"] == name)


def only_failure(report: Report) -> Check:
    assert len(report.failed) == 1, [c.line for c in report.failed]
    return report.failed[0]


def find(report: Report, name: str, resource: str | None = None) -> list[Check]:
    return [c for c in report.checks if c.name == name and (resource is None or c.resource == resource)]


# --------------------------------------------------------------------------- the healthy world


def test_a_healthy_world_passes_every_check(world):
    report = run(world)

    assert report.failed == [], [c.line for c in report.failed]
    assert {c.name for c in report.checks} == {
        "cluster-active",
        "service-active",
        "execution-role-required",
        "role-passable",
        "role-exists",
        "role-trusts-ecs-tasks",
        "image-exists",
        "image-platform",
        "secret-exists",
        "secret-not-deleted",
        "secret-has-value",
        "secret-json-key",
        "parameter-exists",
        "log-group-exists",
        "env-file-exists",
        "alarm-exists",
        "awsvpc-host-port",
        "target-group-exists",
        "load-balancer-container",
        "service-arn-format",
    }
    assert find(report, "service-arn-format")[0].message == (
        f"service web has the long ARN format (arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/web)"
    )
    assert report.task_definition == "web (new revision)"
    assert report.to_state() == {"passed": len(report.checks), "failed": 0, "failures": []}
    assert report.cause() == f"Verify passed all {len(report.checks)} checks for web (new revision)"


def test_healthy_checks_say_what_they_confirmed(world):
    report = run(world)

    nginx = find(report, "image-exists", "image public.ecr.aws/nginx/nginx:1.27")
    assert [c.message for c in nginx] == [
        "image public.ecr.aws/nginx/nginx:1.27 (used by nginx) is not in this account's ECR, not checked"
    ]
    assert find(report, "image-platform")[0].message.endswith("is multi-arch and includes linux/amd64")
    assert (
        find(report, "parameter-exists")[0].message
        == "parameter /prod/web/api-key (used by app) exists in SSM Parameter Store"
    )
    assert find(report, "log-group-exists", "log group /ecs/worker (eu-west-1)")[0].message == (
        "log group /ecs/worker (eu-west-1) (used by worker) exists in eu-west-1"
    )
    assert find(report, "secret-json-key")[0].message == (
        "secret prod/web/db json key password not checked (reading secret values is off)"
    )
    assert [c.resource for c in find(report, "target-group-exists")] == [
        "target group web-tg",
        "target group web-canary",
    ]
    assert [c.resource for c in find(report, "role-exists")] == ["execution role web-execution", "task role web-task"]


def test_a_secret_used_by_two_containers_is_checked_once_naming_both(world):
    report = run(world)

    secret_checks = [c for c in report.checks if c.resource.startswith("secret prod/web/db")]
    assert [c.name for c in secret_checks] == [
        "secret-exists",
        "secret-not-deleted",
        "secret-has-value",
        "secret-json-key",
    ]
    assert secret_checks[0].message == "secret prod/web/db (used by app, worker) exists"


# --------------------------------------------------------------------------- cluster and service


def test_a_missing_cluster_is_reported_without_a_second_failure_for_the_service(world):
    failure = only_failure(run(world, cluster="staging"))

    assert (failure.name, failure.resource) == ("cluster-active", "cluster staging")
    assert (
        failure.message
        == "cluster staging does not exist in us-east-1: create it, or fix `cluster` in the service config"
    )


def test_a_missing_service_fails_unless_the_deploy_creates_it(world):
    failure = only_failure(run(world, service="api", target_groups=[]))
    assert (failure.name, failure.resource) == ("service-active", "service api")
    assert "does not exist in cluster prod: create it first" in failure.message

    report = run(world, service="api", create_service=True, target_groups=[])
    assert report.failed == [] and find(report, "service-active") == []


def test_a_service_with_a_short_arn_fails_with_the_way_to_the_long_format(world):
    """Services created before the long ARN format keep arn:aws:ecs:<region>:<account>:service/<name>: Ferry's IAM
    grants name services by cluster, and its deployment events cannot be mapped to a cluster."""
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="legacy")
    # moto derives a service's ARN from the account setting whenever it describes it (ECS fixes it at creation):
    # the setting stays disabled while Verify looks.
    ecs.put_account_setting(name="serviceLongArnFormat", value="disabled")
    try:
        created = ecs.create_service(
            cluster="legacy", serviceName="old", taskDefinition=world["currentArn"], desiredCount=1
        )["service"]
        assert created["serviceArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/old"
        report = run(world, cluster="legacy", service="old", target_groups=[])
    finally:
        ecs.put_account_setting(name="serviceLongArnFormat", value="enabled")
    failure = only_failure(report)
    assert (failure.name, failure.resource) == ("service-arn-format", "service old")
    assert failure.message.startswith(
        f"service old has a short ARN (arn:aws:ecs:us-east-1:{ACCOUNT}:service/old) without its cluster"
    )
    for fix in (
        "aws ecs put-account-setting-default --name serviceLongArnFormat --value enabled",
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-arn-migration.html",
        "recreate",
    ):
        assert fix in failure.message
    assert report.cause().splitlines()[1] == f"- {failure.message}"


# --------------------------------------------------------------------------- images


def test_an_image_digest_that_was_never_pushed_fails(world):
    missing = "sha256:" + "f" * 64
    td = td_with(world, lambda t: container(t, "app").update(image=f"{REGISTRY}/web@{missing}"))

    failure = only_failure(run(world, td))

    assert failure.name == "image-exists"
    assert failure.resource == "image web@sha256:ffffffff…"
    assert failure.message == (
        f"image web@sha256:ffffffff… (used by app) is not in ECR repository web ({ACCOUNT}, us-east-1) at {missing}: "
        "push it, or fix the image in the task definition"
    )


def test_a_multi_arch_image_without_the_tasks_platform_fails(world):
    amd64_only = push_index("worker", "v3", [("linux", "amd64")])
    td = td_with(
        world,
        lambda t: (
            container(t, "worker").update(image=f"{REGISTRY}/worker@{amd64_only}"),
            t.update(runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}),
        ),
    )

    failure = only_failure(run(world, td))

    assert failure.name == "image-platform"
    assert "is multi-arch without linux/arm64 (it has linux/amd64)" in failure.message
    assert "docker buildx --platform linux/arm64" in failure.message


# --------------------------------------------------------------------------- roles


def test_a_missing_role_fails(world):
    td = td_with(world, lambda t: t.update(taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/web-gone"))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("role-exists", "task role web-gone")
    assert failure.message == (
        f"task role web-gone does not exist in account {ACCOUNT}: create it (trusting ecs-tasks.amazonaws.com), or fix taskRoleArn"
    )


def test_a_role_that_does_not_trust_ecs_tasks_fails(world):
    boto3.client("iam").create_role(RoleName="web-lambda", AssumeRolePolicyDocument=TRUST_LAMBDA)
    td = td_with(world, lambda t: t.update(executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/web-lambda"))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("role-trusts-ecs-tasks", "execution role web-lambda")
    assert "does not trust ecs-tasks.amazonaws.com, so tasks cannot use it" in failure.message
    assert "aws iam update-assume-role-policy --role-name web-lambda" in failure.message


def test_a_role_of_another_account_cannot_be_passed(world):
    td = td_with(world, lambda t: t.update(taskRoleArn="arn:aws:iam::210987654321:role/web-task"))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("role-passable", "task role web-task")
    assert failure.message.startswith(
        f"task role web-task is in account 210987654321, but Ferry deploys from account {ACCOUNT}: ECS cannot be handed a role "
        "of another account"
    )


def test_the_same_role_for_both_is_checked_once(world):
    td = td_with(world, lambda t: t.update(taskRoleArn=t["executionRoleArn"]))

    report = run(world, td)

    assert report.failed == []
    assert [c.resource for c in find(report, "role-exists")] == ["execution role and task role web-execution"]


def test_secrets_ecr_images_and_awslogs_need_an_execution_role(world):
    td = td_with(world, lambda t: t.pop("executionRoleArn"))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("execution-role-required", "task definition web")
    assert failure.message == (
        "the task definition has no executionRoleArn, but ECS needs one to pull ECR images, read secrets, send awslogs, "
        "read S3 environment files for containers app, worker: set executionRoleArn to a role that trusts "
        "ecs-tasks.amazonaws.com and has the AmazonECSTaskExecutionRolePolicy policy"
    )


# --------------------------------------------------------------------------- secrets and parameters


def test_a_missing_secret_fails(world):
    gone = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/web/gone-AbCdEf:password::"
    td = td_with(
        world,
        lambda t: [
            container(t, name)["secrets"].__setitem__(0, {"name": "DB", "valueFrom": gone})
            for name in ("app", "worker")
        ],
    )

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("secret-exists", "secret prod/web/gone")
    assert failure.message == (
        "secret prod/web/gone (used by app, worker) does not exist in us-east-1 (a secret created again gets a new ARN): "
        "create it with `aws secretsmanager create-secret --name prod/web/gone --secret-string ...`, or fix valueFrom"
    )


def test_a_secret_created_without_a_value_fails_with_the_put_secret_value_fix(world):
    arn = boto3.client("secretsmanager").create_secret(Name="prod/web/empty")["ARN"]
    td = td_with(world, lambda t: container(t, "app")["secrets"].append({"name": "EMPTY", "valueFrom": arn}))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("secret-has-value", "secret prod/web/empty")
    assert failure.message == (
        "secret prod/web/empty (used by app) exists but has no value: put one with "
        "`aws secretsmanager put-secret-value --secret-id prod/web/empty --secret-string ...`"
    )


def test_a_secret_whose_awscurrent_stage_was_removed_has_no_value(world):
    secrets = boto3.client("secretsmanager")
    created = secrets.create_secret(Name="prod/web/unstaged", SecretString="{}")
    secrets.update_secret_version_stage(
        SecretId=created["ARN"], VersionStage="AWSCURRENT", RemoveFromVersionId=created["VersionId"]
    )
    unstaged = {"name": "DB", "valueFrom": created["ARN"]}
    td = td_with(world, lambda t: [container(t, name)["secrets"].append(unstaged) for name in ("app", "worker")])

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("secret-has-value", "secret prod/web/unstaged")
    assert failure.message.startswith(
        "secret prod/web/unstaged (used by app, worker) exists but has no value: put one with"
    )


def test_a_secret_scheduled_for_deletion_fails(world):
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="prod/web/retired", SecretString="{}")["ARN"]
    secrets.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    td = td_with(world, lambda t: container(t, "app")["secrets"].append({"name": "OLD", "valueFrom": arn}))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("secret-not-deleted", "secret prod/web/retired")
    assert "(used by app) is scheduled for deletion on" in failure.message
    assert failure.message.endswith(
        "restore it with `aws secretsmanager restore-secret --secret-id prod/web/retired`, or stop using it"
    )


def test_a_missing_ssm_parameter_fails(world):
    td = td_with(
        world,
        lambda t: container(t, "app")["secrets"].__setitem__(1, {"name": "API_KEY", "valueFrom": "/prod/web/gone"}),
    )

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("parameter-exists", "parameter /prod/web/gone")
    assert failure.message == (
        "parameter /prod/web/gone (used by app) does not exist in SSM Parameter Store (us-east-1): create it with "
        "`aws ssm put-parameter --name /prod/web/gone --type SecureString --value ...`, or fix valueFrom"
    )


def test_ssm_parameters_by_arn_are_found(world):
    arn = f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/prod/web/api-key"
    td = td_with(world, lambda t: container(t, "app")["secrets"].__setitem__(1, {"name": "API_KEY", "valueFrom": arn}))

    report = run(world, td)

    assert report.failed == []
    assert [c.resource for c in find(report, "parameter-exists")] == ["parameter /prod/web/api-key"]


def test_a_secrets_manager_name_is_not_what_ecs_reads(world):
    # ECS reads a valueFrom that is not an ARN from SSM Parameter Store only.
    td = td_with(
        world, lambda t: container(t, "worker")["secrets"].__setitem__(0, {"name": "DB", "valueFrom": "prod/web/db"})
    )

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("secret-reference", "secret prod/web/db")
    assert failure.message.endswith(f"set valueFrom to the secret's ARN {world['dbArn']}")


def test_a_missing_json_key_fails_only_when_values_may_be_read(world):
    td = td_with(
        world,
        lambda t: container(t, "app")["secrets"].append(
            {"name": "DB_USER", "valueFrom": f"{world['dbArn']}:username::"}
        ),
    )

    assert run(world, td).failed == []
    failure = only_failure(run(world, td, read_secret_values=True))

    assert (failure.name, failure.resource) == ("secret-json-key", "secret prod/web/db json key username")
    assert failure.message.startswith("secret prod/web/db's JSON value has no key username: add it")


def test_a_secret_value_is_never_in_the_report_state_cause_or_logs(world, caplog):
    secrets = boto3.client("secretsmanager")
    not_json = secrets.create_secret(Name="prod/web/raw", SecretString=SECRET_VALUE)["ARN"]
    td = td_with(
        world,
        lambda t: container(t, "app")["secrets"].extend(
            [
                {"name": "DB_USER", "valueFrom": f"{world['dbArn']}:username::"},  # missing key next to the real one
                {"name": "RAW", "valueFrom": f"{not_json}:password::"},  # not JSON at all
            ]
        ),
    )

    # Ferry's own loggers, all of them at DEBUG. (botocore's DEBUG wire log prints response
    # bodies, secret values included: never turn it on where real secrets are read.)
    with caplog.at_level(logging.DEBUG, logger="ferry"):
        report = run(world, td, read_secret_values=True)

    assert {c.resource for c in report.failed} == {
        "secret prod/web/db json key username",
        "secret prod/web/raw json key password",
    }
    assert find(report, "secret-json-key", "secret prod/web/db json key password")[0].ok
    everything = [
        json.dumps(report.to_document()),
        json.dumps(report.to_state()),
        report.cause(),
        caplog.text,
        repr(report),
    ]
    assert caplog.records, "verify logs nothing at all, so this test would prove nothing about logs"
    for text in everything:
        assert SECRET_VALUE not in text
        assert SECRET_VALUE[:12] not in text


# --------------------------------------------------------------------------- logs, env files, load balancing, alarms


def test_a_missing_log_group_is_checked_in_its_own_region(world):
    # /ecs/web exists in us-east-1, but the worker logs to eu-west-1.
    td = td_with(
        world, lambda t: container(t, "worker")["logConfiguration"]["options"].update({"awslogs-group": "/ecs/web"})
    )

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("log-group-exists", "log group /ecs/web (eu-west-1)")
    assert failure.message == (
        "log group /ecs/web (eu-west-1) (used by worker) does not exist in eu-west-1, so tasks cannot start: create it with "
        "`aws logs create-log-group --log-group-name /ecs/web --region eu-west-1`, or set the awslogs-create-group option "
        'to "true"'
    )


def test_a_log_group_ecs_creates_is_not_looked_up(world):
    td = td_with(
        world,
        lambda t: container(t, "worker")["logConfiguration"]["options"].update(
            {"awslogs-group": "/ecs/new", "awslogs-create-group": "true"}
        ),
    )

    report = run(world, td)

    assert report.failed == []
    assert (
        "is created by ECS when a task starts"
        in find(report, "log-group-exists", "log group /ecs/new (eu-west-1)")[0].message
    )


def test_a_missing_environment_file_fails(world):
    td = td_with(
        world,
        lambda t: container(t, "app").update(
            environmentFiles=[{"type": "s3", "value": "arn:aws:s3:::web-config/prod/gone.env"}]
        ),
    )

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("env-file-exists", "environment file s3://web-config/prod/gone.env")
    assert failure.message == (
        "environment file s3://web-config/prod/gone.env (used by app) does not exist: upload it with "
        "`aws s3 cp <file>.env s3://web-config/prod/gone.env`, or fix environmentFiles"
    )


def test_a_missing_target_group_fails(world):
    failure = only_failure(run(world, target_groups=["web-canary", "web-blue"]))

    assert (failure.name, failure.resource) == ("target-group-exists", "target group web-blue")
    assert failure.message == (
        "target group web-blue (from the service config) does not exist in us-east-1: create it, or fix the target groups "
        "in the service config"
    )


def test_a_deleted_target_group_of_the_service_fails(world):
    elbv2 = boto3.client("elbv2")
    old = elbv2.create_target_group(Name="web-old", Protocol="HTTP", Port=8080, VpcId=world["vpc"], TargetType="ip")
    old_arn = old["TargetGroups"][0]["TargetGroupArn"]
    boto3.client("ecs").create_service(
        cluster="prod",
        serviceName="web-orphan",
        taskDefinition=world["currentArn"],
        desiredCount=1,
        loadBalancers=[{"targetGroupArn": old_arn, "containerName": "app", "containerPort": 8080}],
    )
    elbv2.delete_target_group(TargetGroupArn=old_arn)

    failure = only_failure(run(world, service="web-orphan"))

    assert (failure.name, failure.resource) == ("target-group-exists", "target group web-old")
    assert (
        "(from the service) does not exist in us-east-1: recreate it, or change the service's load balancers"
        in failure.message
    )


def test_a_container_port_the_load_balancer_needs_must_stay(world):
    td = td_with(world, lambda t: container(t, "app").update(portMappings=[{"containerPort": 9090}]))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("load-balancer-container", "container app port 8080")
    assert failure.message == (
        "service web sends target group web-tg traffic to app:8080, but container app has no portMapping with containerPort "
        "8080 in the new revision (it has 9090): add one, or change the service's load balancers"
    )


def test_a_renamed_container_loses_the_load_balancer(world):
    td = td_with(world, lambda t: container(t, "app").update(name="api"))

    failure = only_failure(run(world, td))

    assert failure.name == "load-balancer-container"
    assert "to container app, which the new revision does not have" in failure.message


def test_awsvpc_host_ports_must_equal_container_ports(world):
    td = td_with(world, lambda t: container(t, "nginx").update(portMappings=[{"containerPort": 80, "hostPort": 8081}]))

    failure = only_failure(run(world, td))

    assert (failure.name, failure.resource) == ("awsvpc-host-port", "container nginx")
    assert failure.message == (
        "container nginx maps containerPort 80 to hostPort 8081, but networkMode awsvpc needs hostPort equal to containerPort: "
        "set hostPort to the containerPort, or leave it out"
    )
    assert run(world, td_with(world, lambda t: t.update(networkMode="bridge"))).failed == []


def test_a_missing_alarm_fails(world):
    failure = only_failure(run(world, alarms=["web-5xx", "web-latency"]))

    assert (failure.name, failure.resource) == ("alarm-exists", "alarm web-latency")
    assert failure.message == (
        "alarm web-latency does not exist in CloudWatch (us-east-1): create it, or remove it from the service config's alarms"
    )


def test_alarms_are_looked_up_in_batches_of_100(world):
    cloudwatch = boto3.client("cloudwatch")
    names = [f"alarm-{i:03}" for i in range(101)]
    for name in names[:100]:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="m",
            Namespace="n",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    batches: list[int] = []

    def record(params, **_):
        batches.append(len(params["AlarmNames"]))

    events = ferry_aws.client("cloudwatch").meta.events
    events.register("provide-client-params.cloudwatch.DescribeAlarms", record)
    try:
        report = run(world, alarms=names)
    finally:
        events.unregister("provide-client-params.cloudwatch.DescribeAlarms", record)

    assert batches == [100, 1]
    assert [c.resource for c in report.failed] == ["alarm alarm-100"]
    assert len(find(report, "alarm-exists")) == 101


# --------------------------------------------------------------------------- all at once, errors, sizes


def test_several_problems_are_reported_together(world):
    gone = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/web/gone-AbCdEf"

    def break_it(t: dict) -> None:
        app, worker = container(t, "app"), container(t, "worker")
        app.update(
            image=f"{REGISTRY}/web@sha256:{'e' * 64}",
            portMappings=[{"containerPort": 9090, "hostPort": 9091}],
            secrets=[{"name": "DB", "valueFrom": gone}, {"name": "API_KEY", "valueFrom": "/prod/web/gone"}],
            environmentFiles=[{"type": "s3", "value": "arn:aws:s3:::web-config/prod/gone.env"}],
        )
        app["logConfiguration"]["options"]["awslogs-group"] = "/ecs/gone"
        worker["secrets"] = [{"name": "DB", "valueFrom": gone}]
        t["taskDefinitionArn"] = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/web:7"

    td = td_with(world, break_it)

    report = run(world, td, alarms=["web-5xx", "web-latency"], target_groups=["web-blue"])

    assert [c.name for c in report.failed] == [
        "image-exists",
        "secret-exists",
        "parameter-exists",
        "log-group-exists",
        "env-file-exists",
        "alarm-exists",
        "awsvpc-host-port",
        "target-group-exists",
        "load-balancer-container",
    ]
    cause = report.cause()
    assert cause.splitlines()[0] == "Verify found 9 problems in web:7 (nothing was changed):"
    assert len(cause.splitlines()) == 10
    assert "- secret prod/web/gone (used by app, worker) does not exist in us-east-1" in cause
    state = report.to_state()
    assert state["failed"] == 9 and state["passed"] == len(report.passed) > 0
    assert state["failures"][0].startswith("image web@sha256:eeeeeeee… (used by app) is not in ECR repository web")
    document = report.to_document()
    assert document["taskDefinition"] == "web:7" and document["ok"] is False
    assert len(document["checks"]) == len(report.checks)


def test_an_aws_error_in_one_check_fails_that_check_and_hides_nothing(world, monkeypatch):
    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeAlarms")

    monkeypatch.setattr(verify_module, "_alarm_checks", throttled)

    report = run(world)

    failure = only_failure(report)
    assert (failure.name, failure.resource) == ("alarm-exists", "alarms")
    assert failure.message.startswith(
        "alarms: could not check (ThrottlingException from DescribeAlarms: Rate exceeded)"
    )
    assert len(report.passed) > 20


def test_state_and_cause_stay_small():
    checks = [
        Check("secret-exists", f"secret s{i}", False, f"secret s{i} does not exist: " + "x" * 900) for i in range(200)
    ]
    report = Report(checks, "web:3")

    state = report.to_state()
    assert len(state["failures"]) <= 20
    assert len(json.dumps(state["failures"]).encode()) <= 8 * 1024
    assert state["failures"][-1].startswith("… and ") and state["failures"][-1].endswith(
        " more (see the verify report)"
    )
    assert state["failed"] == 200

    cause = report.cause()
    assert json_length(cause) <= verify_module.CAUSE_MAX_JSON < causes.MESSAGE_LIMIT
    assert cause.startswith("Verify found 200 problems in web:3 (nothing was changed):\n- secret s0 does not exist")
    assert cause.splitlines()[-1].startswith("- … and ")
    assert cause.splitlines()[-1].endswith(" more (see the verify report)")

    few = Report([Check("alarm-exists", "alarm a", False, "alarm a does not exist: create it")], "web:3")
    assert few.to_state()["failures"] == ["alarm a does not exist: create it"]
    assert few.cause() == "Verify found 1 problem in web:3 (nothing was changed):\n- alarm a does not exist: create it"


def test_messages_are_one_line():
    assert Check("x", "r", False, "line one\nline two").message == "line one line two"


# --------------------------------------------------------------------------- the step


def step_input(**fields) -> verify_module.Input:
    """Verify's input as the state passes it (the render's alarms, target groups and readSecretValues)."""
    return verify_module.Input.from_state(
        {
            "execution": "exec-1",
            "service": "web",
            "cluster": "prod",
            "ecsService": "web",
            "alarms": ["web-5xx"],
            "targetGroups": ["web-canary"],
            "readSecretValues": True,
            "planSha256": "0" * 64,
            **fields,
        },
        "Verify's input",
    )


def test_the_step_verifies_the_planned_revision_and_keeps_the_report(world):
    boto3.client("s3").create_bucket(Bucket="verify-artefacts")
    _, sha = artefacts.put_plan("verify-artefacts", "exec-1", world["taskDefinition"])

    checked = verify_module.run(step_input(planSha256=sha), "verify-artefacts")

    assert checked.failed == 0 and checked.failures == [] and checked.passed > 20
    assert checked.artefact == artefacts.key("exec-1", verify_module.REPORT_ARTEFACT)
    assert artefacts.get_json("verify-artefacts", "exec-1", verify_module.REPORT_ARTEFACT)["ok"] is True
    assert verify_module.Output.from_state(checked.to_state()) == checked


def test_the_step_fails_with_every_problem_and_still_keeps_the_report(world):
    boto3.client("s3").create_bucket(Bucket="verify-artefacts-2")
    broken = td_with(world, lambda td: container(td, "app").update(image=f"{REGISTRY}/web:missing"))
    _, sha = artefacts.put_plan("verify-artefacts-2", "exec-2", broken)

    with pytest.raises(VerifyFailed, match=r"Verify found 1 problem in web \(new revision\) \(nothing was changed\)"):
        verify_module.run(step_input(execution="exec-2", planSha256=sha), "verify-artefacts-2")
    assert artefacts.get_json("verify-artefacts-2", "exec-2", verify_module.REPORT_ARTEFACT)["failed"] == 1


def test_many_problems_are_cut_by_verify_itself_naming_the_report_before_the_handlers_guard_would(world):
    """The guard (ferry.runtime.causes) cuts any message over 4096 characters of JSON and points at an object of
    its own; Verify's Cause stays under that, its last line the count left out and where the verify report is."""
    boto3.client("s3").create_bucket(Bucket="verify-artefacts-3")
    _, sha = artefacts.put_plan("verify-artefacts-3", "exec-3", world["taskDefinition"])
    missing = [f"web-{i:02d}-" + "latency-p99-over-the-threshold-" * 6 for i in range(40)]

    with pytest.raises(VerifyFailed) as raised:
        verify_module.run(step_input(execution="exec-3", alarms=missing, planSha256=sha), "verify-artefacts-3")

    cause = str(raised.value)
    report = f"s3://verify-artefacts-3/{artefacts.key('exec-3', verify_module.REPORT_ARTEFACT)}"
    lines = cause.split("\n")
    assert lines[0] == "Verify found 40 problems in web (new revision) (nothing was changed):"
    assert lines[1].startswith(f"- alarm {missing[0]} does not exist in CloudWatch")
    shown = len(lines) - 2
    assert 0 < shown < 40 and lines[-1] == f"- … and {40 - shown} more (see the verify report: {report})"
    assert json_length(cause) <= verify_module.CAUSE_MAX_JSON < causes.MESSAGE_LIMIT
    assert causes.fit(raised.value, "verify-artefacts-3", None) is raised.value  # the guard leaves it as it is
    assert str(raised.value) == cause
    assert artefacts.get_json("verify-artefacts-3", "exec-3", verify_module.REPORT_ARTEFACT)["failed"] == 40


def test_the_step_verifies_only_the_plan_whose_hash_render_passed_on(world):
    """The plan replaced between Render and Verify (issue 19): Verify refuses it, naming the object and both
    hashes, and checks nothing, so no report of an unverified document can be taken for the plan's."""
    boto3.client("s3").create_bucket(Bucket="verify-artefacts-4")
    object_key, sha = artefacts.put_plan("verify-artefacts-4", "exec-4", world["taskDefinition"])
    swapped = td_with(world, lambda td: container(td, "app").update(image=f"{REGISTRY}/web:evil"))
    body = json.dumps(swapped).encode()
    boto3.client("s3").put_object(Bucket="verify-artefacts-4", Key=object_key, Body=body)

    with pytest.raises(TaskDefinitionInvalid) as refused:
        verify_module.run(step_input(execution="exec-4", planSha256=sha), "verify-artefacts-4")

    assert str(refused.value).startswith(
        f"s3://verify-artefacts-4/{object_key} has sha256 {artefacts.sha256(body)}, but Render stored the plan "
        f"with sha256 {sha}: the plan was changed after Render stored it; nothing was verified or registered."
    )
    listed = boto3.client("s3").list_objects_v2(Bucket="verify-artefacts-4").get("Contents", [])
    assert [o["Key"] for o in listed] == [object_key]  # no verify report


def test_a_bad_input_is_refused_naming_the_field():
    with pytest.raises(InputInvalid, match=r"Verify's input: `ecsService` is missing: the state must pass it"):
        step_input(ecsService=None)
    with pytest.raises(InputInvalid, match=r"Verify's input: `planSha256` is missing: the state must pass it"):
        step_input(planSha256=None)
    with pytest.raises(InputInvalid, match=r"Verify's input: `alarms` must be a list, got a string"):
        step_input(alarms="web-5xx")
    with pytest.raises(InputInvalid, match=r"Verify's input: `readSecretValues` must be true or false, got a string"):
        step_input(readSecretValues="yes")
