"""The deployment check against the simulated ECS: target health gates, stages, and when to look again."""

from __future__ import annotations

import pytest

from ferry.steps import check_deployment
from ferry.aws import ecs
from ferry.errors import DeploymentFailed
from ferry_cli.sandbox.run import world_session

from .conftest import EXAMPLE


@pytest.fixture
def stable_web():
    """The example world: prod/web stable on web:1, two tasks registered in web-tg."""
    with world_session(EXAMPLE / "world.yaml") as (sandbox, _world):
        ecs, elb = sandbox.client("ecs"), sandbox.client("elbv2")
        [service] = ecs.describe_services(cluster="prod", services=["web"])["services"]
        tasks = ecs.describe_tasks(cluster="prod", tasks=ecs.list_tasks(cluster="prod", serviceName="web")["taskArns"])[
            "tasks"
        ]
        ips = [
            d["value"]
            for t in tasks
            for a in t["attachments"]
            for d in a["details"]
            if d["name"] == "privateIPv4Address"
        ]
        vpc = elb.describe_target_groups(Names=["web-tg"])["TargetGroups"][0]["VpcId"]
        extra = elb.create_target_group(
            Name="web-internal",
            Protocol="HTTP",
            Port=80,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckIntervalSeconds=10,
            HealthyThresholdCount=3,
        )["TargetGroups"][0]
        elb.register_targets(TargetGroupArn=extra["TargetGroupArn"], Targets=[{"Id": ip, "Port": 80} for ip in ips])
        sandbox.clock.advance(120)  # past the target groups' time to healthy
        watch = check_deployment.Watch(
            "prod",
            "web",
            service["taskDefinition"],
            started_at=sandbox.clock.now() - 300,
            timeout_seconds=1800,
            target_groups=("web-internal",),
        )
        yield sandbox, watch, tasks


def test_a_completed_deployment_reports_the_new_tasks_health_in_every_target_group(stable_web):
    _sandbox, watch, _tasks = stable_web
    progress = check_deployment.check(watch)
    assert progress["state"] == "COMPLETED"
    assert progress["targetHealth"] == {"web-tg": "2/2 healthy", "web-internal": "2/2 healthy"}


def test_a_new_task_unhealthy_in_a_health_gate_target_group_fails_the_deployment(stable_web):
    sandbox, watch, tasks = stable_web
    sandbox.simulator._tasks[tasks[0]["taskArn"]].behaviour["health"] = "unhealthy"  # its health check starts failing
    with pytest.raises(DeploymentFailed) as caught:
        check_deployment.check(watch)
    message = str(caught.value)
    assert "ECS completed the deployment of web:1 but its tasks are not healthy in every target group" in message
    assert "web-internal:" in message and "unhealthy (Target.FailedHealthChecks" in message


def test_the_fallback_heartbeat_divides_the_phase_timeout_evenly():
    def heartbeat(timeout: int, native: bool = False) -> int:
        return ecs.check_in_seconds(timeout, native)

    assert heartbeat(1800) == 1801  # one look, just after the deadline
    assert heartbeat(3600) == 1801 and heartbeat(7200) == 1801
    assert heartbeat(2000) == 1001  # two looks; the second just after 2000 s
    assert heartbeat(240) == 241
    assert heartbeat(600, native=True) == 61  # native: every minute, to follow the stages


def test_service_names_come_from_the_long_arn_format_only():
    assert check_deployment.service_from_arn("arn:aws:ecs:us-east-1:123456789012:service/prod/web") == ("prod", "web")
    assert check_deployment.service_from_arn("arn:aws:ecs:us-east-1:123456789012:service/web") == ("", "")
    assert check_deployment.service_from_arn("not-an-arn") == ("", "")
