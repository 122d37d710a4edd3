"""Finding the tasks a step started, and reading every page: ECS answers ListTasks 100 ARNs a page, takes at most
100 tasks a DescribeTasks call, and refuses `startedBy` together with any other ListTasks filter (botocore's ECS
model, ListTasksRequest.startedBy: "When you specify startedBy as the filter, it must be the only filter that you
use"). The `aws` fixture refuses and pages as ECS does.

The steps' own tests of finding and paging (a retried migration, a crashed canary, 150 tasks' target health, a
rollback's service deployments) are in test_migrate, test_canary, test_check_deployment and test_rollback; they
use this module's `runnable_world`."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from ferry import aws as ferry_aws
from ferry.aws import ecs

from .conftest import awsvpc, run_tasks

MARKER = "ferry-canary-0123456789abcdef0123456"


def test_every_task_started_by_a_marker_is_found_across_pages(runnable_world):
    net = awsvpc()
    ours = run_tasks(150, runnable_world["taskDefinitionArn"], network=net, startedBy=MARKER)
    run_tasks(20, runnable_world["taskDefinitionArn"], network=net, startedBy="someone-else")
    found = ecs.tasks_started_by("prod", MARKER)
    assert sorted(t["taskArn"] for t in found) == sorted(t["taskArn"] for t in ours)


def test_tasks_already_stopped_are_found_through_their_family(runnable_world):
    """ListTasks with startedBy alone lists only tasks whose desired status is RUNNING: a retried migration step, and
    the canary's deregistration, must also find the ones that already stopped."""
    net = awsvpc()
    started = run_tasks(3, runnable_world["taskDefinitionArn"], network=net, startedBy=MARKER)
    run_tasks(2, runnable_world["taskDefinitionArn"], network=net, startedBy="someone-else")
    client = boto3.client("ecs")
    for task in started[:2]:
        client.stop_task(cluster="prod", task=task["taskArn"], reason="crashed")
    client.stop_task(
        cluster="prod",
        task=run_tasks(1, runnable_world["taskDefinitionArn"], network=net, startedBy="someone-else")[0]["taskArn"],
        reason="x",
    )
    assert [t["taskArn"] for t in ecs.tasks_started_by("prod", MARKER)] == [started[2]["taskArn"]]
    found = ecs.tasks_started_by("prod", MARKER, families=["web"])
    assert sorted(t["taskArn"] for t in found) == sorted(t["taskArn"] for t in started)
    assert {t["taskArn"] for t in found if t["desiredStatus"] == "STOPPED"} == {t["taskArn"] for t in started[:2]}


def test_the_family_of_a_revision(runnable_world):
    assert ecs.family_of("arn:aws:ecs:us-east-1:123456789012:task-definition/web-worker:12") == "web-worker"
    assert ecs.family_of("web:3") == "web" and ecs.family_of("web") == "web"


def test_describe_tasks_is_asked_at_most_100_tasks_at_a_time(aws):
    client = ferry_aws.client("ecs")
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/prod/{i:032x}" for i in range(250)]
    with Stubber(client) as stub:
        for i in range(0, 250, 100):
            stub.add_response(
                "describe_tasks",
                {"tasks": [{"taskArn": a} for a in arns[i : i + 100]]},
                {"cluster": "prod", "tasks": arns[i : i + 100]},
            )
        assert [t["taskArn"] for t in ecs.describe_tasks("prod", arns + arns[:5])] == arns
        stub.assert_no_pending_responses()
