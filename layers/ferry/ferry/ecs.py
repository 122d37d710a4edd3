"""Small ECS helpers shared by several steps."""

from __future__ import annotations

from typing import Any

from . import aws, clock
from .errors import DeploymentFailed, ServiceNotFound


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


def tasks_started_by(cluster: str, marker: str) -> list[dict[str, Any]]:
    """Running and stopped tasks whose startedBy is `marker` (how a retried step finds what it started)."""
    ecs = aws.client("ecs")
    arns = []
    for status in ("RUNNING", "STOPPED"):
        arns += ecs.list_tasks(cluster=cluster, startedBy=marker, desiredStatus=status)["taskArns"]
    return ecs.describe_tasks(cluster=cluster, tasks=arns[:100])["tasks"] if arns else []


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


def one_off_parameters(cluster: str, service: dict[str, Any], task_definition_arn: str, execution: str, marker: str,
                       tags: dict[str, str], overrides: list[dict[str, Any]] | None = None, count: int = 1) -> dict[str, Any]:
    """RunTask input for tasks beside a service (migrations, canaries): its network, launch type or
    capacity providers and platform version; `startedBy` and tags naming the execution."""
    params: dict[str, Any] = {
        "cluster": cluster, "taskDefinition": task_definition_arn, "count": count, "startedBy": marker,
        "overrides": {"containerOverrides": overrides or []},
        "tags": [{"key": "ferry:execution", "value": execution[:256]}] + [{"key": k, "value": v} for k, v in tags.items()],
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
