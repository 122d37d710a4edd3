"""Is the service's ECS deployment complete, still going, or failed? And wait for it without polling.

Complete means what ecspresso checks since v2.6 and users asked for: the
deployment finished (rolloutState COMPLETED, running = desired) *and* the
PRIMARY deployment runs the revision Ferry deployed. A circuit-breaker
rollback by ECS is therefore a failure, never a silent success. The new
tasks must also not be unhealthy in any target group the health gates name.

Waiting costs nothing per minute: the state waits on a task token stored
under the service (`watch`), and ECS's own `ECS Deployment State Change`
events complete it (`on_event`). `watch` checks once right after storing the
token, so a deployment that ended before the token was stored is not missed.
When no event comes, the state's heartbeat runs out after `checkInSeconds`
and its Retry calls `watch` again: a lost event costs at most one fallback
interval (and one state transition), and the phase timeout is enforced there.

A native (ECS blue/green, linear or canary) deployment has no event per
lifecycle stage; its waiter looks every minute and keeps the stages it saw,
which the state's output lists when the deployment ends.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from ferry import aws
from ferry.runtime import clock
from ferry.aws import waiters
from ferry.aws.ecs import (check_in_seconds, describe_service, describe_tasks, primary_deployment, revision_name,
                           task_arns, task_ip)
from ferry.errors import DeploymentFailed, FerryError, PhaseTimedOut
from ferry.runtime.observability import logger

@dataclass(frozen=True)
class Watch:
    """What to wait for: the service's PRIMARY deployment of `task_definition_arn`, by `started_at + timeout_seconds`."""

    cluster: str
    service: str
    task_definition_arn: str
    started_at: float
    timeout_seconds: int
    phase: str = "deployment"          # or "rollback": named in messages
    native: bool = False               # an ECS blue/green, linear or canary deployment: report its lifecycle stage
    target_groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"deployment#{self.cluster}/{self.service}"

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> "Watch":
        return cls(str(data["cluster"]), str(data["service"]), str(data["taskDefinitionArn"]), float(data["startedAt"]),
                   int(data["timeoutSeconds"]), str(data.get("phase") or "deployment"), bool(data.get("native")),
                   tuple(data.get("targetGroups") or ()))

    def to_context(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_groups"] = list(self.target_groups)
        return data

    @classmethod
    def from_context(cls, data: dict[str, Any]) -> "Watch":
        return cls(**{**data, "target_groups": tuple(data.get("target_groups") or ())})


def check(watch: Watch) -> dict[str, Any]:
    """The deployment's progress; DeploymentFailed or PhaseTimedOut when it will not complete."""
    where = f"service {watch.cluster}/{watch.service}"
    ours = revision_name(watch.task_definition_arn)
    current = describe_service(watch.cluster, watch.service)
    primary = primary_deployment(current)
    stage = _native_stage(watch, current) if watch.native else {}
    if primary["taskDefinition"] != watch.task_definition_arn:
        raise DeploymentFailed(
            f"{where}: ECS replaced the {watch.phase} of {ours}; the PRIMARY deployment now runs "
            f"{revision_name(primary['taskDefinition'])} ({primary.get('rolloutStateReason', 'no reason given')})"
            + (f"; the service deployment is {stage['serviceDeploymentStatus']}" if stage.get("serviceDeploymentStatus") else "")
        )
    state = primary.get("rolloutState", "COMPLETED")
    progress = {"running": primary.get("runningCount", 0), "desired": primary.get("desiredCount", 0),
                "failedTasks": primary.get("failedTasks", 0), **stage}
    if state == "FAILED" or stage.get("serviceDeploymentStatus") in ("STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"):
        raise DeploymentFailed(
            f"{where}: the ECS {watch.phase} of {ours} FAILED after {progress['failedTasks']} failed tasks: "
            f"{stage.get('statusReason') or primary.get('rolloutStateReason', 'no reason given')}"
        )
    finished = state == "COMPLETED" and progress["running"] >= progress["desired"]
    if finished and watch.native and stage.get("serviceDeploymentStatus") not in (None, "SUCCESSFUL"):
        finished = False  # ECS's blue/green bake and clean-up run after the new tasks are up
    if finished:
        health = target_health(watch, current)
        return {"state": "COMPLETED", **progress, **({"targetHealth": health} if health else {})}
    if clock.now() - watch.started_at > watch.timeout_seconds:
        raise PhaseTimedOut(
            f"{where}: the {watch.phase} of {ours} did not complete within {watch.timeout_seconds} s "
            f"({progress['running']}/{progress['desired']} tasks running, rolloutState {state}"
            + (f", lifecycle stage {stage['lifecycleStage']}" if stage.get("lifecycleStage") else "")
            + f"); raise timeouts.{watch.phase} in the service config if the service is just slow"
        )
    return {"state": "IN_PROGRESS", **progress}


def _native_stage(watch: Watch, service: dict[str, Any]) -> dict[str, Any]:
    """The current service deployment's status and lifecycle stage (ECS blue/green, linear, canary)."""
    arn = service.get("currentServiceDeployment")
    if not arn:
        return {}
    found = aws.client("ecs").describe_service_deployments(serviceDeploymentArns=[arn]).get("serviceDeployments") or []
    if not found:
        return {}
    sd = found[0]
    return {k: v for k, v in {"serviceDeploymentStatus": sd.get("status"), "lifecycleStage": sd.get("lifecycleStage"),
                              "statusReason": sd.get("statusReason")}.items() if v}


def _task_addresses(watch: Watch) -> set[str]:
    """Private IPs of the service's running tasks of the new revision (awsvpc)."""
    arns = task_arns(watch.cluster, serviceName=watch.service, desiredStatus="RUNNING")  # every page: 100 a page
    return {ip for task in describe_tasks(watch.cluster, arns)
            if task.get("taskDefinitionArn") == watch.task_definition_arn and (ip := task_ip(task))}


def target_health(watch: Watch, service: dict[str, Any]) -> dict[str, str]:
    """The new tasks' health in every target group of the service and of the health gates; unhealthy fails.

    ECS already waits for the target groups it manages; this also covers the
    extra `healthGates.targetGroups`, and a target that turned unhealthy in
    the moment ECS called the deployment complete.
    """
    groups = [lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")]
    groups += [tg for tg in watch.target_groups if tg not in groups]
    if not groups or watch.phase != "deployment":
        return {}
    addresses = _task_addresses(watch)
    elbv2 = aws.client("elbv2")
    report, bad = {}, []
    for ref in groups:
        try:
            arn = ref if ref.startswith("arn:") else elbv2.describe_target_groups(Names=[ref])["TargetGroups"][0]["TargetGroupArn"]
            described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        except ClientError as exc:  # deleted since Verify looked at it
            raise DeploymentFailed(
                f"service {watch.cluster}/{watch.service}: target group {ref} of the health gates cannot be read "
                f"({aws.error_code(exc)}): restore it, or remove it from healthGates.targetGroups"
            ) from exc
        name = arn.split(":")[-1].split("/")[1] if "/" in arn else arn
        ours = [d for d in described if d["Target"]["Id"] in addresses]
        states = [d["TargetHealth"]["State"] for d in ours]
        report[name] = f"{states.count('healthy')}/{len(ours)} healthy" if ours else "no targets of the new tasks"
        bad += [f"{name}: {d['Target']['Id']}:{d['Target'].get('Port', '?')} {d['TargetHealth']['State']} "
                f"({d['TargetHealth'].get('Reason', 'no reason')}: {d['TargetHealth'].get('Description', '')})"
                for d in ours if d["TargetHealth"]["State"] in ("unhealthy", "unavailable")]
    if bad:
        raise DeploymentFailed(
            f"service {watch.cluster}/{watch.service}: ECS completed the deployment of "
            f"{revision_name(watch.task_definition_arn)} but its tasks are not healthy in every target group: "
            + "; ".join(bad)
        )
    return report


def watch(table: str, token: str, request: Watch) -> dict[str, Any]:
    """Leave the state waiting for the deployment's end; completes it at once when it has ended already.

    Called again by the state's Retry after each heartbeat without an event:
    the new token replaces the old one, and the stages seen so far are kept.
    """
    context = request.to_context()
    previous = waiters.get(table, request.key)
    if previous and _same_wait(previous[1], context):
        context["stages"] = previous[1].get("stages", [])
    waiters.put(table, request.key, token, context)
    settled = settle(table, token, request, context)
    return {"waiting": not settled, "checkInSeconds": check_in_seconds(request.timeout_seconds, request.native)}


def _same_wait(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(old.get(k) == new.get(k) for k in ("task_definition_arn", "started_at", "phase"))


def settle(table: str, token: str, request: Watch, context: dict[str, Any] | None = None) -> bool:
    """Complete the waiting state if the deployment has ended (or failed); False while it is still going."""
    stages = list((context or {}).get("stages") or [])
    try:
        progress = check(request)
    except FerryError as exc:
        waiters.delete(table, request.key, token)
        seen = f" Lifecycle stages seen: {', '.join(s['stage'] for s in stages)}." if stages else ""
        return waiters.complete(token, error=type(exc).__name__, cause=str(exc) + seen)
    if progress.get("lifecycleStage") and (not stages or stages[-1]["stage"] != progress["lifecycleStage"]):
        stages.append({"stage": progress["lifecycleStage"], "at": round(clock.now())})
        if context is not None:
            context["stages"] = stages
            waiters.put(table, request.key, token, context)
    if progress["state"] == "IN_PROGRESS":
        return False
    waiters.delete(table, request.key, token)
    return waiters.complete(token, output={**progress, **({"stages": stages} if stages else {})})


def on_event(table: str, service_arn: str) -> bool:
    """ECS reported a change of this service's deployment: settle the state waiting for it, if any."""
    cluster, service = service_from_arn(service_arn)
    if not cluster:
        # A service created before the long ARN format (arn:aws:ecs:<region>:<account>:service/<name>) names no
        # cluster to find its waiting state by; Verify refuses such services (check service-arn-format), and a
        # waiting state still ends by its own heartbeat's look.
        logger.warning("deployment event ignored: " + ("a service with a short ARN names no cluster"
                                                        if is_short_service_arn(service_arn) else "not an ECS service ARN"),
                       extra={"serviceArn": service_arn})
        return False
    found = waiters.get(table, f"deployment#{cluster}/{service}")
    if found is None:
        return False
    token, context = found
    return settle(table, token, Watch.from_context({k: v for k, v in context.items() if k != "stages"}), context)


def service_from_arn(arn: str) -> tuple[str, str]:
    """('cluster', 'service') of arn:aws:ecs:<region>:<account>:service/<cluster>/<service>; ('', '') for anything
    else, short ARNs (arn:aws:ecs:<region>:<account>:service/<service>, from before the long format) included."""
    path = arn.split(":", 5)[-1] if isinstance(arn, str) and arn.count(":") >= 5 else ""
    parts = path.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "service" and all(parts) else ("", "")


def is_short_service_arn(arn: str) -> bool:
    """arn:aws:ecs:<region>:<account>:service/<name>: a service created before ECS's long ARN format."""
    path = arn.split(":", 5)[-1] if isinstance(arn, str) and arn.count(":") >= 5 and ":ecs:" in arn else ""
    parts = path.split("/")
    return len(parts) == 2 and parts[0] == "service" and bool(parts[1])
