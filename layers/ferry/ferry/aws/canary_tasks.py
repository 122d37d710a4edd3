"""An execution's canary tasks as ECS and the load balancers hold them: found, taken out, stopped.

Canary tasks run beside the service (RunTask with the service's network) and are registered in its target
groups by Ferry, not by ECS, so ECS never takes them out: whatever ends a deploy must. The canary's own states,
the rollback and the execution-ended function (after an abort or a timeout) all remove them through here.
Tasks are found by `startedBy` (running ones: ListTasks allows no other filter with it) and, once stopped, by
the family of the revision they ran, filtered on `startedBy`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.errors import ServiceNotFound
from ferry.aws.ecs import describe_service, family_of, stopped_tasks_started_by, task_ip, tasks_started_by


def started_by(execution: str) -> str:
    """startedBy of this execution's canary tasks (at most 36 characters): how every path finds them."""
    return "ferry-canary-" + hashlib.sha256(execution.encode()).hexdigest()[:23]


def targets_of(service: dict[str, Any], tasks: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(target group, targets) for every load balancer entry of the service."""
    out = []
    for lb in service.get("loadBalancers", []):
        if lb.get("targetGroupArn"):
            targets = [{"Id": ip, "Port": int(lb["containerPort"])} for ip in (task_ip(t) for t in tasks) if ip]
            out.append((lb["targetGroupArn"], targets))
    return out


def deregistration_delay(cluster: str, service: str) -> int:
    """The longest deregistration delay among the service's target groups (seconds the canary drains)."""
    elb, longest = aws.client("elbv2"), 0
    for lb in describe_service(cluster, service).get("loadBalancers", []):
        if lb.get("targetGroupArn"):
            attributes = elb.describe_target_group_attributes(TargetGroupArn=lb["targetGroupArn"])["Attributes"]
            delay = next((a["Value"] for a in attributes if a["Key"] == "deregistration_delay.timeout_seconds"), "300")
            longest = max(longest, int(delay))
    return longest


def found(
    cluster: str, execution: str, service: dict[str, Any], task_definition_arn: str | None, task_arns: Iterable[str]
) -> list[dict[str, Any]]:
    """The execution's canary tasks, the stopped ones too (ECS deregisters no task outside a service, so a crashed
    canary's address stays in the target groups until Ferry takes it out).

    Stopped tasks are found by the family of the revision they run: the one given, else the families of the running
    canaries, of the service's revisions (after the update it runs the canary's) and of its deployments."""
    marker = started_by(execution)
    running = tasks_started_by(cluster, marker, known=task_arns)
    families = [
        family_of(arn)
        for arn in (
            task_definition_arn,
            service.get("taskDefinition"),
            *(d.get("taskDefinition") for d in service.get("deployments", [])),
            *(t.get("taskDefinitionArn") for t in running),
        )
        if arn
    ]
    seen = {t["taskArn"] for t in running}
    return running + [t for t in stopped_tasks_started_by(cluster, marker, families) if t["taskArn"] not in seen]


def deregister(
    cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None, task_arns: Iterable[str] = ()
) -> dict[str, Any]:
    """Take the canary out of every target group; returns how long to let it drain."""
    described = describe_service(cluster, service)
    tasks = found(cluster, execution, described, task_definition_arn, task_arns)
    if not tasks:
        return {"drainSeconds": 0, "tasks": 0}
    elb = aws.client("elbv2")
    for group, targets in targets_of(described, tasks):
        if targets:
            _deregister_targets(elb, group, targets)
    running = [t for t in tasks if t.get("lastStatus") != "STOPPED"]
    return {"drainSeconds": deregistration_delay(cluster, service) if running else 0, "tasks": len(running)}


def _deregister_targets(elb: Any, group: str, targets: list[dict[str, Any]]) -> None:
    """Deregister, and succeed if they are already out: a retried step (its first attempt timed out after
    deregistering) must not fail on InvalidTarget and leave the canary running."""
    try:
        elb.deregister_targets(TargetGroupArn=group, Targets=targets)
    except ClientError as exc:
        if aws.error_code(exc) != "InvalidTarget":
            raise
        for target in targets:  # one at a time: those still registered go, those already gone are done
            try:
                elb.deregister_targets(TargetGroupArn=group, Targets=[target])
            except ClientError as each:
                if aws.error_code(each) != "InvalidTarget":
                    raise


def stop(cluster: str, execution: str) -> int:
    """Stop every canary task of the execution; returns how many were still running.

    Only running tasks matter here, so ListTasks by `startedBy` alone finds them."""
    stopped = 0
    for task in tasks_started_by(cluster, started_by(execution)):
        if task.get("desiredStatus") != "STOPPED":
            aws.client("ecs").stop_task(
                cluster=cluster, task=task["taskArn"], reason=f"Ferry: canary of {execution} removed"
            )
            stopped += 1
    return stopped


def remove_now(
    cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None, task_arns: Iterable[str] = ()
) -> int:
    """Deregister and stop at once (failure, rollback and abort paths: the canary must not keep serving)."""
    try:
        deregister(cluster, service, execution, task_definition_arn=task_definition_arn, task_arns=task_arns)
    except (ClientError, BotoCoreError, ServiceNotFound):
        pass  # a missing target group, or a service deleted meanwhile, must not keep the tasks running
    return stop(cluster, execution)


def left_behind(
    cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None, task_arns: Iterable[str] = ()
) -> list[str]:
    """What of the execution's canary is still running or registered, in words ([] when nothing): its tasks whose
    desired status is not STOPPED, and their addresses still in the service's target groups (not draining)."""
    marker = started_by(execution)
    left = [
        f"canary task {task['taskArn']} in cluster {cluster} (startedBy {marker})"
        for task in tasks_started_by(cluster, marker)
        if task.get("desiredStatus") != "STOPPED"
    ]
    try:
        described = describe_service(cluster, service)
    except ServiceNotFound:
        return left  # no service, so none of its target groups to be registered in
    elb = aws.client("elbv2")
    for group, targets in targets_of(described, found(cluster, execution, described, task_definition_arn, task_arns)):
        registered = registered_targets(elb, group)
        left += [
            f"canary target {t['Id']}:{t['Port']} in target group {group}"
            for t in targets
            if (t["Id"], t["Port"]) in registered
        ]
    return left


def registered_targets(elb: Any, group: str) -> set[tuple[str, Any]]:
    """(address, port) of every target registered in `group`, those draining aside (they are on their way out)."""
    return {
        (d["Target"]["Id"], d["Target"].get("Port"))
        for d in elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        if (d.get("TargetHealth") or {}).get("State") != "draining"
    }


def removed(
    cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None, task_arns: Iterable[str] = ()
) -> tuple[int, list[str], str | None]:
    """Remove whatever of the execution's canary is still there (remove_now), then look again: (tasks stopped, what
    is left in words, the removal's error code when it failed). Nothing is called but the look when nothing is
    there. The looks raise when ECS or Elastic Load Balancing does not answer: what is left is then unknown."""
    recorded = {"task_definition_arn": task_definition_arn, "task_arns": task_arns}
    if not left_behind(cluster, service, execution, **recorded):
        return 0, [], None
    stopped, error = 0, None
    try:
        stopped = remove_now(cluster, service, execution, **recorded)
    except (ClientError, BotoCoreError) as exc:
        error = aws.error_code(exc) or type(exc).__name__
    return stopped, left_behind(cluster, service, execution, **recorded), error
