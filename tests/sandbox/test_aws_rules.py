"""The catalogue of AWS's request rules (ferry_cli.sandbox.aws_rules): each rule refuses what AWS refuses, with
the error AWS gives, each cites a source that says so, and List calls answer a page at a time."""

from __future__ import annotations

import json
import re

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

from ferry_cli.sandbox import aws_rules

MODEL = botocore.session.get_session()


def documentation(source: str) -> str:
    """The text of a `botocore <service> model: <Shape>[.<member>]` source, tags removed."""
    service, path = re.fullmatch(r"botocore (\S+) model: (\S+)", source).groups()
    model = MODEL.get_service_model(service)
    shape_name, _, member = path.partition(".")
    shape = model.shape_for(shape_name)
    text = shape.members[member].documentation if member else shape.documentation
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text))


def test_every_rule_cites_a_source_that_says_it():
    for rule in aws_rules.RULES + aws_rules.PAGES:
        if rule.source.startswith("botocore "):
            assert rule.quote in documentation(rule.source), (rule.operation, rule.source)
        else:
            assert rule.source.startswith("https://docs.aws.amazon.com/"), rule
            assert rule.quote, rule
    for rate in aws_rules.RATES:
        assert rate.source.startswith("https://docs.aws.amazon.com/"), rate


def test_every_rule_names_an_operation_of_the_service_and_an_error_it_can_answer():
    for rule in aws_rules.RULES:
        model = MODEL.get_service_model(rule.service)
        assert rule.operation in model.operation_names, rule
        assert rule.error in {e.name for e in model.operation_model(rule.operation).error_shapes} | {
            "ClientException",
            "InvalidParameterException",
        }, rule


@pytest.fixture
def ecs(aws):
    client = boto3.client("ecs")
    client.create_cluster(clusterName="prod")
    return client


def refused(call, code: str) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return caught.value.response["Error"]["Message"]


def test_list_tasks_refuses_started_by_with_another_filter(ecs):
    for other in (
        {"desiredStatus": "STOPPED"},
        {"desiredStatus": "RUNNING"},
        {"family": "web"},
        {"serviceName": "web"},
        {"launchType": "FARGATE"},
    ):
        message = refused(
            lambda: ecs.list_tasks(cluster="prod", startedBy="ferry-x", **other), "InvalidParameterException"
        )
        assert message == "cannot specify startedBy with other arguments"
    assert ecs.list_tasks(cluster="prod", startedBy="ferry-x")["taskArns"] == []
    assert ecs.list_tasks(cluster="prod", family="web", desiredStatus="STOPPED")["taskArns"] == []


def test_batch_and_page_limits(ecs):
    refused(
        lambda: ecs.describe_tasks(cluster="prod", tasks=[f"t{i}" for i in range(101)]), "InvalidParameterException"
    )
    refused(
        lambda: ecs.describe_services(cluster="prod", services=[f"s{i}" for i in range(11)]),
        "InvalidParameterException",
    )
    refused(lambda: ecs.list_tasks(cluster="prod", maxResults=101), "InvalidParameterException")
    refused(
        lambda: ecs.describe_service_deployments(serviceDeploymentArns=[f"a{i}" for i in range(21)]),
        "InvalidParameterException",
    )
    # within the limits the same calls go through to moto
    assert ecs.describe_tasks(cluster="prod", tasks=[f"t{i}" for i in range(100)])["tasks"] == []
    assert ecs.describe_services(cluster="prod", services=[f"s{i}" for i in range(10)])["services"] == []


def test_run_task_count_overrides_and_started_by(ecs):
    base = {"cluster": "prod", "taskDefinition": "web:1"}
    assert "between 1 and 10" in refused(lambda: ecs.run_task(**base, count=11), "InvalidParameterException")
    big = {"containerOverrides": [{"name": "app", "command": ["x" * 8200]}]}
    assert "8192" in refused(lambda: ecs.run_task(**base, overrides=big), "InvalidParameterException")
    refused(lambda: ecs.run_task(**base, startedBy="has spaces"), "InvalidParameterException")
    refused(lambda: ecs.run_task(**base, startedBy="x" * 129), "InvalidParameterException")
    refused(
        lambda: ecs.run_task(**base, tags=[{"key": f"k{i}", "value": "v"} for i in range(51)]),
        "InvalidParameterException",
    )


def test_register_task_definition_size_and_names(ecs):
    container = {"name": "app", "image": "web", "memory": 512}
    assert "64 KiB" in refused(
        lambda: ecs.register_task_definition(
            family="web",
            containerDefinitions=[
                {**container, "environment": [{"name": f"V{i}", "value": "x" * 1000} for i in range(70)]}
            ],
        ),
        "ClientException",
    )
    refused(lambda: ecs.register_task_definition(family="web.app", containerDefinitions=[container]), "ClientException")
    refused(
        lambda: ecs.register_task_definition(family="web", containerDefinitions=[{**container, "name": "a b"}]),
        "ClientException",
    )
    assert (
        ecs.register_task_definition(family="web", containerDefinitions=[container])["taskDefinition"]["revision"] == 1
    )


def test_a_daemon_service_takes_no_desired_count(ecs):
    ecs.register_task_definition(family="agent", containerDefinitions=[{"name": "agent", "image": "a", "memory": 64}])
    ecs.create_service(cluster="prod", serviceName="agent", taskDefinition="agent", schedulingStrategy="DAEMON")
    message = refused(
        lambda: ecs.update_service(cluster="prod", service="agent", desiredCount=2), "InvalidParameterException"
    )
    assert "daemon scheduling strategy does not support a desired count" in message
    ecs.update_service(cluster="prod", service="agent", taskDefinition="agent")


def test_values_outside_the_model_max_or_enum_are_refused_as_the_service_answers(aws):
    ecs, sfn = boto3.client("ecs"), boto3.client("stepfunctions")
    message = refused(lambda: ecs.list_tasks(desiredStatus="DONE"), "InvalidParameterException")
    assert "Member must satisfy enum value set: [RUNNING, PENDING, STOPPED]" in message
    message = refused(lambda: sfn.send_task_failure(taskToken="t", cause="x" * 32769), "ValidationException")
    assert (
        "Value at 'cause' failed to satisfy constraint: Member must have length less than or equal to 32768" in message
    )
    refused(lambda: sfn.send_task_failure(taskToken="t", error="E" * 257), "ValidationException")


def test_a_send_task_failure_cause_is_refused_past_32768_characters_as_aws_answered_it(aws):
    """Seen on AWS (irothschild/stefuna pull request #8): one character over SensitiveCause's "max": 32768 is
    refused with exactly this error, and 32768 are taken."""
    sfn = boto3.client("stepfunctions")
    message = refused(lambda: sfn.send_task_failure(taskToken="t", cause="x" * 32769), "ValidationException")
    assert message == (
        "1 validation error detected: Value at 'cause' failed to satisfy constraint: Member must have length less "
        "than or equal to 32768"
    )
    sfn.send_task_failure(taskToken="t", cause="x" * 32768)  # passes the rule (moto takes any token)


def test_refusals_are_recorded():
    from moto import mock_aws

    with mock_aws(), aws_rules.enforce() as seen:
        client = boto3.client("ecs")
        with pytest.raises(ClientError):
            client.list_tasks(startedBy="a", desiredStatus="RUNNING")
    assert seen.refused == [
        {
            "service": "ecs",
            "operation": "ListTasks",
            "error": "InvalidParameterException",
            "message": "cannot specify startedBy with other arguments",
        }
    ]


def test_list_calls_answer_a_page_at_a_time(ecs):
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ecs.register_task_definition(
        family="web",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "app", "image": "web", "memory": 64}],
    )
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    started = []
    for _ in range(15):
        started += [
            t["taskArn"]
            for t in ecs.run_task(
                cluster="prod",
                taskDefinition="web",
                count=10,
                launchType="FARGATE",
                networkConfiguration=network,
                startedBy="ferry-batch",
            )["tasks"]
        ]
    first = ecs.list_tasks(cluster="prod", startedBy="ferry-batch")
    assert len(first["taskArns"]) == 100 and first["nextToken"]
    second = ecs.list_tasks(cluster="prod", startedBy="ferry-batch", nextToken=first["nextToken"])
    assert len(second["taskArns"]) == 50 and "nextToken" not in second
    paged = [
        arn
        for page in ecs.get_paginator("list_tasks").paginate(cluster="prod", startedBy="ferry-batch")
        for arn in page["taskArns"]
    ]
    assert sorted(paged) == sorted(started)
    small = ecs.list_tasks(cluster="prod", startedBy="ferry-batch", maxResults=7)
    assert len(small["taskArns"]) == 7
    for _ in range(12):
        ecs.register_task_definition(family="many", containerDefinitions=[{"name": "a", "image": "a", "memory": 64}])
    assert len(ecs.list_task_definitions(familyPrefix="many", maxResults=5)["taskDefinitionArns"]) == 5


def test_the_catalogue_is_small_enough_to_read_and_lists_its_sources():
    described = {(r.service, r.operation, r.says) for r in aws_rules.RULES}
    assert len(described) == len(aws_rules.RULES)  # no rule twice
    assert json.dumps([r.source for r in aws_rules.RULES])  # every source is text


# ------------------------------------------------------------------ request throttling
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def test_a_bucket_empties_at_its_capacity_and_refills_at_its_rate():
    clock = FakeClock()
    throttle = aws_rules.Throttle(clock.now)
    # DescribeTasks and ListTasks share the cluster resource read bucket: 100 at once, then 20 a second.
    assert all(throttle.take("ecs", "DescribeTasks" if i % 2 else "ListTasks") for i in range(100))
    assert not throttle.take("ecs", "ListTasks")
    clock.t = 0.5  # 10 tokens later
    assert sum(throttle.take("ecs", "DescribeTasks") for _ in range(15)) == 10
    assert throttle.throttled == {"ListTasks": 1, "DescribeTasks": 5}
    # another category has its own bucket; an action no rate names is never throttled
    assert throttle.take("ecs", "DescribeServices")
    assert all(throttle.take("ecs", "SomethingElse") for _ in range(1000))


def test_run_task_draws_on_both_its_category_and_fargates_rate():
    clock = FakeClock()
    throttle = aws_rules.Throttle(clock.now)
    assert sum(throttle.take("ecs", "RunTask") for _ in range(30)) == 20  # Fargate: 20 calls a second
    assert sum(throttle.take("ecs", "StopTask") for _ in range(100)) == 80  # RunTask spent 20 of the shared 100
    clock.t = 1.0
    assert sum(throttle.take("ecs", "RunTask") for _ in range(30)) == 20


def test_the_sandbox_throttles_the_handlers_calls_as_aws_does_and_their_clients_ride_it_out():
    from ferry import aws as ferry_aws
    from ferry_cli.sandbox.sandbox import Sandbox

    with Sandbox() as sandbox:
        sandbox.client("ecs").create_cluster(clusterName="prod")
        own = sandbox.client("ecs")  # not a handler's client: never throttled
        for _ in range(60):
            own.describe_clusters(clusters=["prod"])
        assert sandbox.throttle.throttled == {}
        ecs = ferry_aws.client("ecs")  # what a handler calls with (adaptive retries)
        answered = [ecs.describe_clusters(clusters=["prod"])["clusters"][0]["clusterName"] for _ in range(150)]
        assert answered == ["prod"] * 150  # every call got through, some after being throttled
        assert sandbox.throttle.throttled.get("DescribeClusters", 0) > 0


def test_list_tasks_without_a_desired_status_lists_the_tasks_ecs_wants_running(ecs):
    """ECS says "The default status filter is RUNNING" (botocore ecs model, ListTasksRequest.desiredStatus)."""
    assert "The default status filter is RUNNING" in documentation("botocore ecs model: ListTasksRequest.desiredStatus")
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/20")["Subnet"]["SubnetId"]
    ecs.register_task_definition(
        family="job",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "job", "image": "job", "memory": 64}],
    )
    group = ec2.create_security_group(GroupName="job", Description="job", VpcId=vpc)["GroupId"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
    first, second = (
        ecs.run_task(
            cluster="prod",
            taskDefinition="job",
            launchType="FARGATE",
            networkConfiguration=network,
            startedBy="ferry-job",
        )["tasks"][0]["taskArn"]
        for _ in range(2)
    )
    ecs.stop_task(cluster="prod", task=first)
    assert ecs.list_tasks(cluster="prod", startedBy="ferry-job")["taskArns"] == [second]
    assert ecs.list_tasks(cluster="prod", family="job", desiredStatus="STOPPED")["taskArns"] == [first]
