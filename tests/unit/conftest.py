"""Fixtures for the library's unit tests: a small ECS world built with boto3 on moto."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import boto3
import pytest

from ferry import aws as ferry_aws
from ferry.runtime.observability import logger

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


def digest(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def push(repo: str, tag: str) -> str:
    d = digest(f"{repo}:{tag}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": d, "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"},
            "layers": [],
        }
    )
    # Ferry's cached client: a new boto3 client per call costs ~20 ms under moto.
    ferry_aws.client("ecr").put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag, imageDigest=d)
    return d


@pytest.fixture
def ecs_world(aws):
    """Cluster prod with service web (2 tasks of web:1 running web:v1), buckets and a lock table."""
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="web")
    push("web", "v1")
    push("web", "v2")
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="prod")
    td = ecs.register_task_definition(
        family="web",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": f"{REGISTRY}/web:v1",
                "essential": True,
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": "prod/web/db"}],
            },
            {"name": "nginx", "image": "public.ecr.aws/nginx/nginx:1.27", "essential": True},
        ],
        tags=[{"key": "team", "value": "payments"}],
    )["taskDefinition"]
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=td["taskDefinitionArn"], desiredCount=2)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ferry-config")
    s3.create_bucket(Bucket="ferry-artefacts")
    boto3.client("dynamodb").create_table(
        TableName="locks",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    return {"taskDefinitionArn": td["taskDefinitionArn"]}


def awsvpc() -> dict:
    """A networkConfiguration in a new VPC's subnet (moto gives each awsvpc task an ENI with a private IP there)."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto's ECS tasks read the ENI's DNS name
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    return {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}, "vpc": vpc}


def run_tasks(
    count: int, task_definition: str, *, cluster: str = "prod", network: dict | None = None, **params
) -> list[dict]:
    """`count` tasks, 10 a RunTask call (ECS's limit)."""
    ecs, tasks = boto3.client("ecs"), []
    net = {"networkConfiguration": {"awsvpcConfiguration": network["awsvpcConfiguration"]}} if network else {}
    while len(tasks) < count:
        tasks += ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            count=min(10, count - len(tasks)),
            launchType="FARGATE",
            **net,
            **params,
        )["tasks"]
    return tasks


def put_config(name: str, text: str, filename: str = "ferry.yaml") -> None:
    boto3.client("s3").put_object(Bucket="ferry-config", Key=f"services/{name}/{filename}", Body=text.encode())


@pytest.fixture
def logs():
    """Every line the Powertools logger's stream gets (log lines and EMF documents), read back as dicts."""
    stream = io.StringIO()
    handlers = [h for h in logger._logger.handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(stream) for h in handlers]
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    for handler, old in zip(handlers, previous):
        handler.setStream(old)


@pytest.fixture
def web(ecs_world):
    """The web service's config in the registry: its running revision, new images from its repository."""
    from ferry import config

    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    return config.load("ferry-config", "web")


def revisions() -> int:
    """How many revisions the web family has."""
    return len(boto3.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"])


def plan_and_register(cfg, images, execution="exec-1"):
    """Render's plan, then Register, as the state machine runs them: (Render's state, what Register registered)."""
    from ferry.steps import register, render

    planned = render.plan(cfg, images, execution=execution, environment="prod")
    state = render.store(planned, execution, "ferry-artefacts").to_state()
    return state, register.register_planned(execution, "ferry-artefacts")


@pytest.fixture
def runnable_world(ecs_world):
    """The conftest world, with web:2 whose containers give memory (moto needs it to run tasks)."""
    td = boto3.client("ecs").register_task_definition(
        family="web",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": "web:v2",
                "essential": True,
                "memory": 256,
                "portMappings": [{"containerPort": 80}],
            }
        ],
    )["taskDefinition"]
    return {**ecs_world, "taskDefinitionArn": td["taskDefinitionArn"]}


@pytest.fixture
def canary_world(runnable_world):
    """prod/web behind an IP target group on port 80 (ECS's simulator is not here: nothing registers service tasks)."""
    net = awsvpc()
    elb = boto3.client("elbv2")
    group = elb.create_target_group(Name="web-tg", Protocol="HTTP", Port=80, VpcId=net["vpc"], TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    client = boto3.client("ecs")
    client.delete_service(cluster="prod", service="web", force=True)
    client.create_service(
        cluster="prod",
        serviceName="web",
        taskDefinition=runnable_world["taskDefinitionArn"],
        desiredCount=2,
        launchType="FARGATE",
        loadBalancers=[{"targetGroupArn": group, "containerName": "app", "containerPort": 80}],
        networkConfiguration={"awsvpcConfiguration": net["awsvpcConfiguration"]},
    )
    return {**runnable_world, "targetGroup": group, "network": net}
