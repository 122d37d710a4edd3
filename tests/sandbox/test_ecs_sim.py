"""The sandbox's ECS simulator: services, deployments, tasks, target health, logs and events on moto.

Time only moves through ``clock.advance()`` (speed 1, so the few real milliseconds a test takes barely count).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import threading

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ferry_cli.sandbox.clock import SimClock
from ferry_cli.sandbox.moto_ecs import EcsSimulator

ACCOUNT, REGION = "123456789012", "us-east-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


class Env:
    """A VPC with two subnets, an ALB target group, a cluster, a log group and three pushed images."""

    def __init__(self) -> None:
        self.clock = SimClock()
        self.ecs, self.ec2 = boto3.client("ecs", REGION), boto3.client("ec2", REGION)
        self.elb, self.ecr = boto3.client("elbv2", REGION), boto3.client("ecr", REGION)
        self.logs = boto3.client("logs", REGION)
        self.vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]  # no DNS hostnames: moto's default
        self.subnets = [
            self.ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
                "Subnet"
            ]["SubnetId"]
            for i, az in ((1, "a"), (2, "b"))
        ]
        self.sg = self.ec2.create_security_group(GroupName="web", Description="web", VpcId=self.vpc)["GroupId"]
        self.elb.create_load_balancer(Name="web", Subnets=self.subnets, SecurityGroups=[self.sg])
        self.tg = self.elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=self.vpc, TargetType="ip")[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        self.ecs.create_cluster(clusterName="prod")
        self.logs.create_log_group(logGroupName="/ecs/web")
        self.ecr.create_repository(repositoryName="web")
        self.digests = {}
        for tag in ("v1", "v2", "v3"):
            layer = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"digest": layer},
                    "layers": [{"digest": layer}],
                }
            )
            image = self.ecr.put_image(repositoryName="web", imageManifest=manifest, imageTag=tag)["image"]
            self.digests[tag] = image["imageId"]["imageDigest"]
        self.net = {"awsvpcConfiguration": {"subnets": self.subnets[:1], "securityGroups": [self.sg]}}
        self.sim: EcsSimulator | None = None

    def start(self, **kwargs) -> EcsSimulator:
        self.sim = EcsSimulator(self.clock, account_id=ACCOUNT, region=REGION, **kwargs)
        self.sim.install()
        return self.sim

    def image(self, tag: str) -> str:
        return f"{REGISTRY}/web@{self.digests[tag]}"

    def task_def(self, tag: str, family: str = "web", **container) -> str:
        """A Fargate task definition sized at task level only, as real users write them."""
        app = {
            "name": "app",
            "image": self.image(tag),
            "essential": True,
            "portMappings": [{"containerPort": 8080}],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/web", "awslogs-region": REGION, "awslogs-stream-prefix": "web"},
            },
            **container,
        }
        return self.ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[app],
        )["taskDefinition"]["taskDefinitionArn"]

    def service(self, td: str, desired: int = 2, breaker: dict | None = None, **kwargs) -> dict:
        config = {"maximumPercent": 200, "minimumHealthyPercent": 100}
        if breaker is not None:
            config["deploymentCircuitBreaker"] = breaker
        return self.ecs.create_service(
            cluster="prod",
            serviceName="web",
            taskDefinition=td,
            desiredCount=desired,
            launchType="FARGATE",
            platformVersion="1.4.0",
            deploymentConfiguration=config,
            networkConfiguration=self.net,
            loadBalancers=[{"targetGroupArn": self.tg, "containerName": "app", "containerPort": 8080}],
            **kwargs,
        )["service"]

    def describe(self) -> dict:
        return self.ecs.describe_services(cluster="prod", services=["web"])["services"][0]

    def run(self, td: str, purpose: str = "canary", **kwargs) -> dict:
        kwargs.setdefault("networkConfiguration", self.net)
        return self.ecs.run_task(
            cluster="prod",
            taskDefinition=td,
            launchType="FARGATE",
            startedBy="ferry",
            tags=[{"key": "ferry:purpose", "value": purpose}],
            **kwargs,
        )["tasks"][0]

    def task(self, arn: str) -> dict:
        return self.ecs.describe_tasks(cluster="prod", tasks=[arn])["tasks"][0]

    def service_tasks(self, **kwargs) -> list[dict]:
        arns = self.ecs.list_tasks(cluster="prod", serviceName="web", **kwargs)["taskArns"]
        return self.ecs.describe_tasks(cluster="prod", tasks=arns)["tasks"] if arns else []

    def health(self) -> dict[str, tuple[str, str | None]]:
        out = self.elb.describe_target_health(TargetGroupArn=self.tg)["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason")) for d in out}

    def advance(self, seconds: float) -> list[dict]:
        self.clock.advance(seconds)
        return self.sim.tick()


def ip_of(task: dict) -> str:
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    return details["privateIPv4Address"]


@pytest.fixture
def env():
    with mock_aws():
        e = Env()
        yield e
        if e.sim:
            e.sim.uninstall()


def test_created_service_runs_its_tasks_behind_healthy_targets(env):
    env.start()
    created = env.service(env.task_def("v1"), breaker={"enable": True, "rollback": True})

    assert created["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    svc = env.describe()
    assert (svc["runningCount"], svc["pendingCount"]) == (2, 0)
    assert (svc["launchType"], svc["platformVersion"]) == ("FARGATE", "1.4.0")
    assert svc["deploymentConfiguration"]["maximumPercent"] == 200
    assert svc["loadBalancers"][0]["containerPort"] == 8080
    assert svc["networkConfiguration"] == env.net
    [dep] = svc["deployments"]
    assert (dep["status"], dep["rolloutState"], dep["runningCount"]) == ("PRIMARY", "COMPLETED", 2)
    assert re.fullmatch(r"ecs-svc/\d{19}", dep["id"])

    tasks = env.service_tasks()
    assert len(tasks) == 2
    assert {t["lastStatus"] for t in tasks} == {"RUNNING"} and {t["group"] for t in tasks} == {"service:web"}
    assert {c["lastStatus"] for t in tasks for c in t["containers"]} == {"RUNNING"}
    assert all(t["startedBy"] == dep["id"] for t in tasks)
    ips = {ip_of(t) for t in tasks}
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.1.0/24") for ip in ips)
    assert env.health() == {ip: ("healthy", None) for ip in ips}
    assert env.ecs.list_tasks(cluster="prod", serviceName="other")["taskArns"] == []
    assert env.sim.services()["prod/web"]["taskDefinition"] == "web:1"


def test_update_service_rolls_out_the_new_revision_and_drains_the_old_tasks(env):
    env.start()
    env.service(env.task_def("v1"))
    old_ips = set(env.health())
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))

    primary, active = env.describe()["deployments"]
    assert (primary["status"], primary["rolloutState"]) == ("PRIMARY", "IN_PROGRESS")
    assert primary["taskDefinition"].endswith("web:2")
    assert (active["status"], active["rolloutState"]) == ("ACTIVE", "COMPLETED")
    assert re.fullmatch(r"ecs-svc/\d{19}", primary["id"]) and primary["id"] != active["id"]

    env.advance(31)  # new tasks RUNNING, their targets still in their initial health checks
    new_ips = set(env.health()) - old_ips
    assert len(new_ips) == 2 and {env.health()[ip] for ip in new_ips} == {("initial", "Elb.RegistrationInProgress")}
    assert env.describe()["deployments"][0]["rolloutState"] == "IN_PROGRESS"

    env.advance(30)  # targets healthy -> deployment complete -> old tasks deregistered and draining
    svc = env.describe()
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED" and svc["taskDefinition"].endswith("web:2")
    assert {env.health()[ip] for ip in old_ips} == {("draining", "Target.DeregistrationInProgress")}
    draining = [t for t in env.service_tasks(desiredStatus="STOPPED")]
    assert len(draining) == 2 and {t["lastStatus"] for t in draining} == {"DEACTIVATING"}

    env.advance(20)  # drained and stopped
    svc = env.describe()
    assert len(svc["deployments"]) == 1 and svc["runningCount"] == 2
    assert env.health() == {ip: ("healthy", None) for ip in new_ips}
    stopped = env.service_tasks(desiredStatus="STOPPED")
    assert {(t["lastStatus"], t["stopCode"]) for t in stopped} == {("STOPPED", "ServiceSchedulerInitiated")}
    assert {t["taskDefinitionArn"].split("/")[-1] for t in env.service_tasks()} == {"web:2"}
    assert env.sim.services()["prod/web"]["images"] == {"app": env.image("v2")}


def test_rollout_seconds_stretch_a_deployment(env):
    env.start(defaults={"rolloutSeconds": 600})
    env.service(env.task_def("v1"))
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(300)
    assert env.describe()["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    env.advance(360)
    assert env.describe()["deployments"][0]["rolloutState"] == "COMPLETED"


def test_crashing_revision_trips_the_circuit_breaker_and_ecs_rolls_back(env):
    env.start(behaviour={"web:v2": {"exitCode": 1}})
    env.service(env.task_def("v1"), breaker={"enable": True, "rollback": True})
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    failed_id = env.describe()["deployments"][0]["id"]

    events = env.advance(51)  # both new tasks crash 20 s after RUNNING
    crashed = [t for t in env.service_tasks(desiredStatus="STOPPED") if t["taskDefinitionArn"].endswith("web:2")]
    assert len(crashed) == 2
    assert {(t["stopCode"], t["stoppedReason"]) for t in crashed} == {
        ("EssentialContainerExited", "Essential container in task exited")
    }
    assert {t["containers"][0]["exitCode"] for t in crashed} == {1}
    assert env.describe()["deployments"][0]["failedTasks"] == 2
    assert not [e for e in events if e["detail"].get("eventName") == "SERVICE_DEPLOYMENT_FAILED"]

    events = env.advance(60)  # replacements crash too: threshold max(3, ceil(2 * 0.5)) = 3 reached
    failed = [e for e in events if e["detail"].get("eventName") == "SERVICE_DEPLOYMENT_FAILED"]
    assert [(e["detail"]["eventType"], e["detail"]["deploymentId"]) for e in failed] == [("ERROR", failed_id)]
    rollback, failed_dep, _old = env.describe()["deployments"]
    assert (failed_dep["id"], failed_dep["status"], failed_dep["rolloutState"]) == (failed_id, "ACTIVE", "FAILED")
    assert failed_dep["failedTasks"] >= 3 and "circuit breaker" in failed_dep["rolloutStateReason"]
    assert (rollback["status"], rollback["rolloutState"]) == ("PRIMARY", "IN_PROGRESS")
    assert rollback["taskDefinition"].endswith("web:1") and env.describe()["taskDefinition"].endswith("web:1")

    env.advance(120)
    svc = env.describe()
    assert [(d["rolloutState"], d["taskDefinition"].split("/")[-1]) for d in svc["deployments"]] == [
        ("COMPLETED", "web:1")
    ]
    assert {t["taskDefinitionArn"].split("/")[-1] for t in env.service_tasks()} == {"web:1"}
    [sd] = env.ecs.list_service_deployments(cluster="prod", service="web", status=["ROLLBACK_SUCCESSFUL"])[
        "serviceDeployments"
    ]
    full = env.ecs.describe_service_deployments(serviceDeploymentArns=[sd["serviceDeploymentArn"]])[
        "serviceDeployments"
    ][0]
    assert (
        full["deploymentCircuitBreaker"]["status"] == "TRIGGERED" and full["deploymentCircuitBreaker"]["threshold"] == 3
    )
    assert full["rollback"]["serviceRevisionArn"] == full["sourceServiceRevisions"][0]["arn"]


def test_without_the_circuit_breaker_a_broken_deployment_stays_in_progress(env):
    env.start(behaviour={"web:v2": {"exitCode": 1}})
    env.service(env.task_def("v1"))
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(1200)
    primary, active = env.describe()["deployments"]
    assert (primary["rolloutState"], active["rolloutState"], active["runningCount"]) == ("IN_PROGRESS", "COMPLETED", 2)
    assert primary["failedTasks"] >= 20  # each try: 30 s start + 20 s run + 10 s drain + 5 s stop
    assert env.describe()["taskDefinition"].endswith("web:2")


def test_circuit_breaker_without_rollback_fails_and_stops_launching(env):
    reason = "CannotPullContainerError: pull access denied"
    env.start(behaviour={"web:v2": {"stopCode": "TaskFailedToStart", "stoppedReason": reason}})
    env.service(env.task_def("v1"), breaker={"enable": True, "rollback": False})
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(600)
    primary, active = env.describe()["deployments"]
    assert (primary["rolloutState"], primary["failedTasks"], active["runningCount"]) == ("FAILED", 4, 2)
    [sd] = env.ecs.list_service_deployments(cluster="prod", service="web", status=["STOPPED"])["serviceDeployments"]
    assert "rollback is turned off" in sd["statusReason"]
    bad = [t for t in env.service_tasks(desiredStatus="STOPPED")]
    assert {(t["stopCode"], t["stoppedReason"]) for t in bad} == {("TaskFailedToStart", reason)}


def test_unhealthy_targets_fail_health_checks_and_ecs_replaces_the_tasks(env):
    env.start(behaviour={"web:v2": {"health": "unhealthy"}})
    env.service(env.task_def("v1"), breaker={"enable": True, "rollback": True})
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(31)
    new = [ip_of(t) for t in env.service_tasks() if t["taskDefinitionArn"].endswith("web:2")]
    assert {env.health()[ip] for ip in new} == {("initial", "Elb.RegistrationInProgress")}
    env.advance(31)
    assert {env.health()[ip] for ip in new} == {("unhealthy", "Target.FailedHealthChecks")}
    env.advance(10)  # ECS notices and stops them
    stopped = [t for t in env.service_tasks(desiredStatus="STOPPED") if ip_of(t) in new]
    assert len(stopped) == 2 and all(
        t["stoppedReason"].startswith("Task failed ELB health checks in (target-group ") for t in stopped
    )
    assert env.describe()["deployments"][0]["failedTasks"] == 2
    env.advance(600)
    assert [d["taskDefinition"].split("/")[-1] for d in env.describe()["deployments"]] == ["web:1"]


def test_health_check_grace_period_delays_replacing_unhealthy_tasks(env):
    env.start(behaviour={"web:v2": {"health": "unhealthy"}})
    env.service(env.task_def("v1"), healthCheckGracePeriodSeconds=300)
    assert env.describe()["healthCheckGracePeriodSeconds"] == 300
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(200)
    assert env.describe()["deployments"][0]["failedTasks"] == 0
    assert [t["lastStatus"] for t in env.service_tasks() if t["taskDefinitionArn"].endswith("web:2")] == ["RUNNING"] * 2
    env.advance(135)  # the tasks started 30 s in: grace ends at 330 s
    assert env.describe()["deployments"][0]["failedTasks"] == 2


def test_canary_task_lifecycle_with_its_own_target_and_stop_task(env):
    env.start(behaviour={"web:v2": {"health": "unhealthy"}})
    td = env.task_def("v2")
    overrides = {"containerOverrides": [{"name": "app", "environment": [{"name": "CANARY", "value": "1"}]}]}
    task = env.run(td, overrides=overrides)
    assert (task["lastStatus"], task["desiredStatus"]) == ("PROVISIONING", "RUNNING")
    assert task["containers"][0]["lastStatus"] == "PENDING"
    assert task["overrides"] == overrides and task["startedBy"] == "ferry" and task["group"] == "family:web"
    assert (env.sim.canary_tasks(), env.sim.task_count("canary")) == (1, 1)

    env.advance(10)
    assert env.task(task["taskArn"])["lastStatus"] == "PENDING"
    env.advance(21)
    running = env.task(task["taskArn"])
    assert (running["lastStatus"], running["containers"][0]["lastStatus"]) == ("RUNNING", "RUNNING")
    assert "startedAt" in running
    ip = ip_of(running)
    env.elb.register_targets(TargetGroupArn=env.tg, Targets=[{"Id": ip, "Port": 8080}])
    assert env.health() == {ip: ("initial", "Elb.RegistrationInProgress")}
    env.advance(31)
    assert env.health() == {ip: ("unhealthy", "Target.FailedHealthChecks")}
    env.advance(3600)
    assert env.task(task["taskArn"])["lastStatus"] == "RUNNING"  # standalone tasks are not replaced

    env.elb.deregister_targets(TargetGroupArn=env.tg, Targets=[{"Id": ip, "Port": 8080}])
    assert env.health() == {ip: ("draining", "Target.DeregistrationInProgress")}
    stopping = env.ecs.stop_task(cluster="prod", task=task["taskArn"], reason="canary finished")["task"]
    assert (stopping["desiredStatus"], stopping["lastStatus"]) == ("STOPPED", "STOPPING")
    env.advance(11)
    assert env.health() == {}
    stopped = env.task(task["taskArn"])
    assert (stopped["lastStatus"], stopped["stopCode"]) == ("STOPPED", "UserInitiated")
    assert stopped["stoppedReason"] == "canary finished"
    assert stopped["containers"][0]["lastStatus"] == "STOPPED" and "stoppedAt" in stopped
    assert (env.sim.canary_tasks(), env.sim.task_count("canary")) == (0, 1)
    assert env.ecs.list_tasks(cluster="prod")["taskArns"] == []  # ECS lists desiredStatus=RUNNING by default
    assert env.ecs.list_tasks(cluster="prod", desiredStatus="STOPPED")["taskArns"] == [task["taskArn"]]


def test_a_crashing_canary_stops_with_its_exit_code(env):
    env.start(behaviour={"web:v3": {"exitCode": 137, "crashAfterSeconds": 5}})
    task = env.run(env.task_def("v3"))
    env.advance(36)
    stopped = env.task(task["taskArn"])
    assert (stopped["lastStatus"], stopped["desiredStatus"]) == ("STOPPING", "STOPPED")
    assert (stopped["stopCode"], stopped["containers"][0]["exitCode"]) == ("EssentialContainerExited", 137)
    assert stopped["containers"][0]["lastStatus"] == "STOPPED" and env.sim.canary_tasks() == 1
    env.advance(5)
    assert env.task(task["taskArn"])["lastStatus"] == "STOPPED" and env.sim.canary_tasks() == 0


def log_messages(env, task_arn: str) -> list[str]:
    stream = f"web/app/{task_arn.split('/')[-1]}"
    return [e["message"] for e in env.logs.get_log_events(logGroupName="/ecs/web", logStreamName=stream)["events"]]


@pytest.mark.parametrize("code", [0, 1])
def test_migration_exits_with_its_code_and_writes_its_log_lines(env, code):
    lines = ["Applying migration 0042_add_index", "done" if code == 0 else 'ERROR: relation "users" does not exist']
    env.start(migration={"exitCode": code, "logLines": lines})
    task = env.run(
        env.task_def("v2"),
        purpose="migration",
        overrides={"containerOverrides": [{"name": "app", "command": ["manage.py", "migrate"]}]},
    )
    env.advance(45)
    assert env.task(task["taskArn"])["lastStatus"] == "RUNNING"
    env.advance(10)  # ran 20 s, then exited
    stopping = env.task(task["taskArn"])
    assert (stopping["desiredStatus"], stopping["containers"][0]["exitCode"]) == ("STOPPED", code)
    env.advance(5)
    stopped = env.task(task["taskArn"])
    assert (stopped["lastStatus"], stopped["stopCode"], stopped["stoppedReason"]) == (
        "STOPPED",
        "EssentialContainerExited",
        "Essential container in task exited",
    )
    assert log_messages(env, task["taskArn"]) == lines
    assert env.sim.task_count("migration") == 1 and env.sim.canary_tasks() == 0


def test_migration_that_cannot_pull_its_image_never_runs(env):
    reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    env.start(migration={"stopCode": "TaskFailedToStart", "stoppedReason": reason, "logLines": ["never written"]})
    task = env.run(env.task_def("v2"), purpose="migration")
    env.advance(31)
    stopped = env.task(task["taskArn"])
    assert (stopped["lastStatus"], stopped["stopCode"], stopped["stoppedReason"]) == (
        "STOPPED",
        "TaskFailedToStart",
        reason,
    )
    assert "startedAt" not in stopped and "exitCode" not in stopped["containers"][0]
    assert stopped["containers"][0]["reason"] == reason
    assert env.logs.describe_log_streams(logGroupName="/ecs/web")["logStreams"] == []


def test_long_migration_runs_for_its_run_seconds(env):
    env.start(migration={"runSeconds": 900})
    task = env.run(env.task_def("v2"), purpose="migration")
    env.advance(600)
    assert env.task(task["taskArn"])["lastStatus"] == "RUNNING"
    env.advance(400)
    stopped = env.task(task["taskArn"])
    assert (stopped["lastStatus"], stopped["containers"][0]["exitCode"]) == ("STOPPED", 0)


def test_service_deployment_api_and_stop_with_rollback(env):
    env.start(behaviour={"web:v2": {"startSeconds": 900}})
    env.service(env.task_def("v1"))
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    env.advance(60)

    listed = env.ecs.list_service_deployments(cluster="prod", service="web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS", "SUCCESSFUL"]
    [current] = env.ecs.list_service_deployments(cluster="prod", service="web", status=["IN_PROGRESS"])[
        "serviceDeployments"
    ]
    arn = current["serviceDeploymentArn"]
    assert re.fullmatch(rf"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/prod/web/\S+", arn)
    assert env.describe()["currentServiceDeployment"] == arn
    sd = env.ecs.describe_service_deployments(serviceDeploymentArns=[arn, arn + "x"])
    assert sd["failures"] == [{"arn": arn + "x", "reason": "MISSING"}]
    sd = sd["serviceDeployments"][0]
    assert sd["status"] == "IN_PROGRESS" and sd["serviceArn"].endswith(":service/prod/web")
    assert sd["targetServiceRevision"] == {
        "arn": current["targetServiceRevisionArn"],
        "requestedTaskCount": 2,
        "runningTaskCount": 0,
        "pendingTaskCount": 2,
    }
    [source] = sd["sourceServiceRevisions"]
    assert (source["runningTaskCount"], source["requestedTaskCount"]) == (2, 0)
    assert sd["deploymentCircuitBreaker"]["status"] == "DISABLED" and sd["alarms"] == {"status": "DISABLED"}
    revisions = env.ecs.describe_service_revisions(serviceRevisionArns=[source["arn"]])["serviceRevisions"]
    assert revisions[0]["taskDefinition"].endswith("web:1")
    assert revisions[0]["containerImages"][0]["imageDigest"] == env.digests["v1"]

    assert env.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")["serviceDeploymentArn"] == arn
    sd = env.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
    assert sd["status"] == "ROLLBACK_IN_PROGRESS" and sd["rollback"]["serviceRevisionArn"] == source["arn"]
    assert env.describe()["deployments"][0]["taskDefinition"].endswith("web:1")

    env.advance(120)
    sd = env.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
    assert sd["status"] == "ROLLBACK_SUCCESSFUL" and "finishedAt" in sd
    assert [d["taskDefinition"].split("/")[-1] for d in env.describe()["deployments"]] == ["web:1"]

    with pytest.raises(ClientError) as err:
        env.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    assert err.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as err:
        env.ecs.stop_service_deployment(serviceDeploymentArn=arn + "x", stopType="ROLLBACK")
    assert err.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"
    with pytest.raises(ClientError) as err:
        env.ecs.list_service_deployments(cluster="prod", service="nope")
    assert err.value.response["Error"]["Code"] == "ServiceNotFoundException"


def test_tick_returns_eventbridge_events_once(env):
    env.start()
    env.service(env.task_def("v1"))
    assert env.sim.tick() == []  # a created service already existed: no history to report
    task = env.run(env.task_def("v2"))
    [created] = env.sim.tick()
    assert {k: created[k] for k in ("source", "detail-type", "account", "region", "resources", "version")} == {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "account": ACCOUNT,
        "region": REGION,
        "resources": [task["taskArn"]],
        "version": "0",
    }
    assert created["time"] == env.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = created["detail"]
    assert (detail["lastStatus"], detail["desiredStatus"]) == ("PROVISIONING", "RUNNING")
    assert (detail["group"], detail["startedBy"]) == ("family:web", "ferry")
    assert detail["clusterArn"].endswith(":cluster/prod") and detail["taskDefinitionArn"].endswith("web:2")
    assert detail["containers"][0]["name"] == "app"
    assert [e["detail"]["lastStatus"] for e in env.advance(31)] == ["PENDING", "RUNNING"]
    assert env.sim.tick() == []

    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    primary = env.describe()["deployments"][0]["id"]
    events = env.advance(120)
    deployment = [e for e in events if e["detail-type"] == "ECS Deployment State Change"]
    assert [(e["detail"]["eventName"], e["detail"]["eventType"]) for e in deployment] == [
        ("SERVICE_DEPLOYMENT_IN_PROGRESS", "INFO"),
        ("SERVICE_DEPLOYMENT_COMPLETED", "INFO"),
    ]
    assert {e["detail"]["deploymentId"] for e in deployment} == {primary}
    assert deployment[0]["resources"] == [env.describe()["serviceArn"]]
    stops = [e["detail"] for e in events if e["detail"].get("lastStatus") == "STOPPED"]
    assert len(stops) == 2 and {d["stopCode"] for d in stops} == {"ServiceSchedulerInitiated"}


def test_fargate_task_definition_with_only_task_level_cpu_and_memory_runs(env):
    env.start()
    td = env.ecs.register_task_definition(
        family="worker",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="512",
        memory="1024",
        containerDefinitions=[{"name": "worker", "image": f"{REGISTRY}/web:v1", "essential": True}],
    )["taskDefinition"]
    assert "memory" not in td["containerDefinitions"][0]
    task = env.run(
        td["taskDefinitionArn"],
        purpose="job",
        networkConfiguration={"awsvpcConfiguration": {"subnets": env.subnets[1:], "assignPublicIp": "DISABLED"}},
    )
    env.advance(31)
    running = env.task(task["taskArn"])
    assert (running["lastStatus"], running["cpu"], running["memory"]) == ("RUNNING", "512", "1024")
    details = {d["name"]: d["value"] for d in running["attachments"][0]["details"]}
    assert ipaddress.ip_address(details["privateIPv4Address"]) in ipaddress.ip_network("10.0.2.0/24")
    assert details["privateDnsName"] == f"ip-{details['privateIPv4Address'].replace('.', '-')}.ec2.internal"
    assert env.sim.task_count("job") == 1 and env.sim.canary_tasks() == 0


def test_behaviour_is_found_by_tag_and_by_digest(env):
    env.start(behaviour={"web:v3": {"startSeconds": 900}})
    by_tag = env.run(env.task_def("v1", image=f"{REGISTRY}/web:v3"))
    by_digest = env.run(env.task_def("v3"))
    other = env.run(env.task_def("v1"))
    env.advance(60)
    assert [env.task(t["taskArn"])["lastStatus"] for t in (by_tag, by_digest, other)] == [
        "PENDING",
        "PENDING",
        "RUNNING",
    ]


def test_desired_count_changes_apply_to_the_primary_deployment(env):
    env.start()
    env.service(env.task_def("v1"))
    deployment = env.describe()["deployments"][0]["id"]
    env.ecs.update_service(cluster="prod", service="web", desiredCount=3)
    env.advance(61)
    svc = env.describe()
    assert (svc["runningCount"], [d["id"] for d in svc["deployments"]]) == (3, [deployment])
    env.ecs.update_service(cluster="prod", service="web", desiredCount=1)
    env.advance(20)
    assert env.describe()["runningCount"] == 1 and len(env.service_tasks()) == 1
    assert len(env.health()) == 1


def test_container_health_checks_report_unhealthy(env):
    env.start(behaviour={"web:v2": {"health": "unhealthy"}})
    check = {"command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"], "interval": 10}
    task = env.run(env.task_def("v2", healthCheck=check))

    def health() -> tuple[str, str]:
        described = env.task(task["taskArn"])
        return described["containers"][0]["healthStatus"], described["healthStatus"]

    env.advance(31)
    assert health() == ("UNKNOWN", "UNKNOWN")
    env.advance(30)
    assert health() == ("UNHEALTHY", "UNHEALTHY")


def test_concurrent_callers_see_one_consistent_world(env):
    env.start()
    env.service(env.task_def("v1"))
    env.ecs.update_service(cluster="prod", service="web", taskDefinition=env.task_def("v2"))
    errors: list[BaseException] = []

    def poll() -> None:
        client = boto3.client("ecs", REGION)
        try:
            for _ in range(20):
                arns = client.list_tasks(cluster="prod", serviceName="web")["taskArns"]
                client.describe_tasks(cluster="prod", tasks=arns)
                client.describe_services(cluster="prod", services=["web"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(10):
        env.advance(15)
    for thread in threads:
        thread.join()
    assert errors == []
    env.advance(30)
    assert [d["rolloutState"] for d in env.describe()["deployments"]] == ["COMPLETED"]


def test_uninstall_restores_moto():
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse
    from moto.elbv2.models import FakeTargetGroup

    before = (
        EC2ContainerServiceBackend.__dict__["run_task"],
        FakeTargetGroup.__dict__["health_for"],
        EC2ContainerServiceBackend.__dict__["_calculate_task_resource_requirements"],
    )
    with mock_aws():
        sim = EcsSimulator(SimClock(), account_id=ACCOUNT, region=REGION)
        sim.install()
        assert hasattr(EC2ContainerServiceResponse, "list_service_deployments")
        sim.uninstall()
    after = (
        EC2ContainerServiceBackend.__dict__["run_task"],
        FakeTargetGroup.__dict__["health_for"],
        EC2ContainerServiceBackend.__dict__["_calculate_task_resource_requirements"],
    )
    assert after == before and not hasattr(EC2ContainerServiceResponse, "list_service_deployments")
