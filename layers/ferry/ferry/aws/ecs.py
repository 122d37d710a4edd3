"""Small ECS helpers shared by several steps."""

from __future__ import annotations

import math

from collections.abc import Iterable, Sequence
from typing import Any

from ferry import aws
from ferry.runtime import clock
from ferry.errors import DeploymentFailed, ServiceNotFound


def describe_service(cluster: str, service: str) -> dict[str, Any]:
    ecs = aws.client("ecs")
    try:
        result = ecs.describe_services(cluster=cluster, services=[service])
    except ecs.exceptions.ClusterNotFoundException as exc:
        raise ServiceNotFound(f"cluster {cluster} does not exist: check `cluster` in the service config") from exc
    found = [s for s in result.get("services", []) if s.get("status") == "ACTIVE"]
    if not found:
        raise ServiceNotFound(
            f"service {service} does not exist (or is not ACTIVE) in cluster {cluster}: "
            "create it first, or fix `service` in the config"
        )
    return found[0]


def primary_deployment(service: dict[str, Any]) -> dict[str, Any]:
    """The service's PRIMARY deployment (the one ECS is moving towards)."""
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)
    if primary is None:
        raise DeploymentFailed(
            f"service {service.get('serviceName', '?')} has no PRIMARY deployment: "
            "it may use the CODE_DEPLOY or EXTERNAL deployment controller, which Ferry does not drive"
        )
    return primary


def revision_name(task_definition_arn: str) -> str:
    """'arn:...:task-definition/web:12' -> 'web:12'."""
    return task_definition_arn.rsplit("/", 1)[-1]


def family_of(task_definition: str) -> str:
    """'arn:...:task-definition/web:12' (or 'web:12', or 'web') -> 'web'."""
    return revision_name(task_definition).split(":", 1)[0]


# ECS DescribeTasks takes at most 100 tasks a call (botocore's ECS model, DescribeTasksRequest.tasks).
DESCRIBE_TASKS_MAX = 100


def task_arns(cluster: str, **filters: Any) -> list[str]:
    """Every page of ListTasks (ECS answers 100 ARNs a page)."""
    return aws.items(aws.client("ecs"), "list_tasks", "taskArns", cluster=cluster, **filters)


def describe_tasks(cluster: str, arns: Sequence[str]) -> list[dict[str, Any]]:
    """DescribeTasks for any number of tasks, at most 100 a call; each task once, in the order asked."""
    ecs = aws.client("ecs")
    return [
        task
        for batch in aws.batches(arns, DESCRIBE_TASKS_MAX)
        for task in ecs.describe_tasks(cluster=cluster, tasks=batch)["tasks"]
    ]


def tasks_started_by(
    cluster: str, marker: str, *, families: Iterable[str] = (), known: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The tasks whose startedBy is `marker` (how a step finds what it started, and a retried step what it started before).

    ECS refuses `startedBy` together with any other ListTasks filter ("When you specify startedBy as the filter, it
    must be the only filter that you use": botocore's ECS model, ListTasksRequest.startedBy), and ListTasks without
    `desiredStatus` lists only the tasks whose desired status is RUNNING. So: the running ones by `startedBy` alone;
    those already STOPPED (or stopping) by their task definition `families` and desiredStatus STOPPED, kept when
    their startedBy is `marker`; and the `known` task ARNs a step recorded, whatever their status.
    """
    arns = [*task_arns(cluster, startedBy=marker), *known]
    running = [t for t in describe_tasks(cluster, arns) if t.get("startedBy") == marker] if arns else []
    seen = {t["taskArn"] for t in running}
    return running + [t for t in stopped_tasks_started_by(cluster, marker, families) if t["taskArn"] not in seen]


def stopped_tasks_started_by(cluster: str, marker: str, families: Iterable[str]) -> list[dict[str, Any]]:
    """The tasks of the task definition `families` whose desired status is STOPPED and whose startedBy is `marker`
    (ListTasks cannot filter by startedBy and status at once: the filter is applied here)."""
    arns = [
        arn
        for family in dict.fromkeys(f for f in families if f)
        for arn in task_arns(cluster, family=family, desiredStatus="STOPPED")
    ]
    return [t for t in describe_tasks(cluster, arns) if t.get("startedBy") == marker] if arns else []


def task_ip(task: dict[str, Any]) -> str | None:
    """A task's private IPv4 address (awsvpc: its ENI attachment; otherwise a container's interface)."""
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return detail.get("value")
    for container in task.get("containers", []):
        for interface in container.get("networkInterfaces", []):
            if interface.get("privateIpv4Address"):
                return interface["privateIpv4Address"]
    return None


def created_at(deployment: dict[str, Any]) -> float:
    """A deployment's createdAt in epoch seconds; now when ECS gave none."""
    value = deployment.get("createdAt")
    return value.timestamp() if hasattr(value, "timestamp") else clock.now()


def one_off_parameters(
    cluster: str,
    service: dict[str, Any],
    task_definition_arn: str,
    execution: str,
    marker: str,
    tags: dict[str, str],
    overrides: list[dict[str, Any]] | None = None,
    count: int = 1,
) -> dict[str, Any]:
    """RunTask input for tasks beside a service (migrations, canaries): its network, launch type or
    capacity providers and platform version; `startedBy` and tags naming the execution."""
    params: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition_arn,
        "count": count,
        "startedBy": marker,
        "overrides": {"containerOverrides": overrides or []},
        "tags": [{"key": "ferry:execution", "value": execution[:256]}]
        + [{"key": k, "value": v} for k, v in tags.items()],
        "propagateTags": "TASK_DEFINITION",
    }
    if service.get("networkConfiguration"):
        params["networkConfiguration"] = service["networkConfiguration"]
    if service.get("capacityProviderStrategy"):
        params["capacityProviderStrategy"] = service["capacityProviderStrategy"]
    elif service.get("launchType"):
        params["launchType"] = service["launchType"]
    if service.get("platformVersion") and service.get("platformVersion") != "LATEST":
        params["platformVersion"] = service["platformVersion"]
    return params


# How often a state waiting for an ECS deployment looks for itself (the steps that start a deployment tell it;
# the wait's heartbeat is this). A rolling or canary rollout wakes up on ECS's events; this is only the safety
# net for a lost event, long on purpose: each fallback costs three state transitions whatever the rollout's
# length. A native deployment has no event per lifecycle stage: it is looked at this often to show the stages.
FALLBACK_SECONDS = 1800
NATIVE_CHECK_SECONDS = 60


def check_in_seconds(timeout_seconds: int, native: bool = False) -> int:
    """The waiting state's heartbeat: at most the fallback interval, and dividing the phase timeout evenly,
    so that one of the fallback checks lands just after the deadline."""
    interval = NATIVE_CHECK_SECONDS if native else FALLBACK_SECONDS
    return math.ceil(timeout_seconds / math.ceil(timeout_seconds / interval)) + 1
