"""Canary: tasks of the new revision, beside the service, must prove healthy before the service changes.

The canary tasks run with the service's own network and launch settings and
are registered in every target group of the service, so they take a share
of real traffic. They must reach RUNNING (and HEALTHY, when containers have
health checks), then stay healthy in every target group for
`healthyForSeconds`; `initial` is not a failure, `unhealthyThreshold`
non-healthy observations in a row are. Whatever happens, they are
deregistered and stopped at the end (Ferry's success path, its failure and
rollback paths, and the execution-ended function after an abort).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.runtime import clock
from ferry.steps import migrate
from ferry.aws.ecs import (describe_service, describe_tasks, family_of, one_off_parameters, revision_name, stopped_tasks_started_by,
                  task_ip, tasks_started_by)
from ferry.errors import CanaryCrashed, CanaryUnhealthy, PhaseTimedOut


# Observations are scheduled, not periodic: each check says when the next one can tell something new
# (a task still starting, the target groups' own minimum time to healthy, half the healthy window), so
# a deploy costs a handful of checks whatever healthyForSeconds is. Unhealthy targets are re-checked
# at the target group's interval, to count consecutive failures as the load balancer sees them.
# (The first check, 30 s after the start, is set by the state machine's "Start the canary tasks".)
POLL_SECONDS = 15


def started_by(execution: str) -> str:
    """startedBy of this execution's canary tasks (at most 36 characters): how every path finds them."""
    return "ferry-canary-" + hashlib.sha256(execution.encode()).hexdigest()[:23]


def start(cluster: str, service: str, task_definition_arn: str, count: int, execution: str) -> dict[str, Any]:
    """Start the canary tasks (a retried step starts only the missing ones)."""
    marker = started_by(execution)
    existing = [t for t in tasks_started_by(cluster, marker, families=[family_of(task_definition_arn)])
                if t.get("desiredStatus") != "STOPPED" or t.get("lastStatus") != "STOPPED"]
    missing = count - len(existing)
    started = list(existing)
    if missing > 0:
        params = one_off_parameters(cluster, describe_service(cluster, service), task_definition_arn, execution, marker,
                                    {"ferry:purpose": "canary"}, count=missing)
        result = aws.client("ecs").run_task(**params)
        if not result.get("tasks"):
            reasons = "; ".join(str(f.get("reason")) for f in result.get("failures", [])) or "no reason given"
            raise CanaryCrashed(f"ECS could not place the canary of {revision_name(task_definition_arn)} in {cluster}: "
                                f"{reasons}. The service was not changed.")
        started += result["tasks"]
    return {"taskArns": [t["taskArn"] for t in started], "startedAt": clock.now(), "marker": marker}


def _targets(service: dict[str, Any], tasks: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(target group, targets) for every load balancer entry of the service."""
    out = []
    for lb in service.get("loadBalancers", []):
        if lb.get("targetGroupArn"):
            targets = [{"Id": ip, "Port": int(lb["containerPort"])} for ip in (task_ip(t) for t in tasks) if ip]
            out.append((lb["targetGroupArn"], targets))
    return out


def _crash_cause(task: dict[str, Any], revision: str) -> str:
    essential = next((c for c in task.get("containers", []) if c.get("exitCode") not in (None, 0, 143)),
                     (task.get("containers") or [{}])[0])
    lines, where = migrate.log_tail(migrate.log_config(task["taskDefinitionArn"], essential.get("name", "")),
                                    essential.get("name", ""), task["taskArn"]) if essential.get("name") else ([], "")
    log_part = (f"\nLast {len(lines)} log lines ({where}):\n" + "\n".join(f"  {line}" for line in lines)) if lines else ""
    return (f"a canary task of {revision} stopped: {task.get('stopCode', 'stopped')}: {task.get('stoppedReason', 'no reason given')}"
            f"{'; container ' + essential['name'] + ' exited with code ' + str(essential['exitCode']) if essential.get('exitCode') is not None else ''}"
            f"{'; ' + essential['reason'] if essential.get('reason') else ''}. Task: {task['taskArn']}.{log_part}\n"
            "The service was not changed.")


def check(cluster: str, service: str, task_arns: list[str], progress: dict[str, Any], *, revision: str,
          started_at: float, healthy_for: int, unhealthy_threshold: int, timeout: int) -> dict[str, Any]:
    """One observation of the canary: registers it once RUNNING (and HEALTHY), then counts healthy time."""
    elb = aws.client("elbv2")
    now = clock.now()
    tasks = describe_tasks(cluster, task_arns)
    progress = dict(progress or {})
    for task in tasks:
        if task.get("lastStatus") == "STOPPED":
            raise CanaryCrashed(_crash_cause(task, revision))
        if task.get("desiredStatus") == "STOPPED":  # on its way down: judged once STOPPED, with exit code and logs
            if now - started_at > timeout:
                raise CanaryCrashed(_crash_cause(task, revision))
            return {**progress, "state": "WAITING",
                    "waitSeconds": max(1, min(POLL_SECONDS, math.ceil(started_at + timeout - now) + 1))}
    ready = all(t.get("lastStatus") == "RUNNING" and t.get("healthStatus") in ("HEALTHY", "UNKNOWN", None) for t in tasks)
    if any(t.get("healthStatus") == "UNHEALTHY" for t in tasks):
        progress["unhealthy"] = progress.get("unhealthy", 0) + 1
        if progress["unhealthy"] >= unhealthy_threshold:
            raise CanaryUnhealthy(f"the canary of {revision} failed its container health checks {progress['unhealthy']} "
                                  "times in a row. The service was not changed.")
    if not ready:
        progress.pop("healthySince", None)  # healthy time must be unbroken
    if ready:
        described = describe_service(cluster, service)
        groups = _targets(described, tasks)
        if not progress.get("registered"):
            for group, targets in groups:
                if targets:
                    elb.register_targets(TargetGroupArn=group, Targets=targets)
            progress.update({"registered": True, "registeredAt": now, **_health_settings(elb, groups)})
        states = []
        for group, targets in groups:
            if targets:
                for found in elb.describe_target_health(TargetGroupArn=group, Targets=targets)["TargetHealthDescriptions"]:
                    health = found["TargetHealth"]
                    states.append((group.rsplit("/", 2)[-2], health.get("State"), health.get("Reason"), health.get("Description")))
        if states and all(s[1] == "healthy" for s in states):
            progress.setdefault("healthySince", now)
            progress["unhealthy"] = 0
        elif states and all(s[1] in ("healthy", "initial") for s in states):
            progress.pop("healthySince", None)  # initial is not a failure, but not healthy time either
        elif states:
            progress.pop("healthySince", None)
            progress["unhealthy"] = progress.get("unhealthy", 0) + 1
            if progress["unhealthy"] >= unhealthy_threshold:
                evidence = "; ".join(f"{g}: {s} ({r}: {d})" for g, s, r, d in states if s != "healthy")
                raise CanaryUnhealthy(f"the canary of {revision} was not healthy {progress['unhealthy']} times in a row "
                                      f"in its target groups: {evidence}. The service was not changed.")
        elif not groups:  # no load balancer: RUNNING (and HEALTHY) is the health that can be seen
            progress.setdefault("healthySince", now)
            progress["unhealthy"] = 0
        if "healthySince" in progress and now - progress["healthySince"] >= healthy_for:
            progress.pop("waitSeconds", None)
            return {**progress, "state": "PASSED"}
    if now - started_at > timeout:
        raise PhaseTimedOut(f"the canary of {revision} was not healthy for {healthy_for} s within {timeout} s "
                            "(timeouts.canary). The service was not changed.")
    wait = next_check(progress, now, healthy_for)
    return {**progress, "state": "WAITING", "waitSeconds": max(1, min(wait, math.ceil(started_at + timeout - now) + 1))}


def _health_settings(elb: Any, groups: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, int]:
    """The least time a new target needs to turn healthy, and the longest check interval, over the target groups."""
    arns = [group for group, targets in groups if targets]
    if not arns:
        return {}
    found = aws.items(elb, "describe_target_groups", "TargetGroups", TargetGroupArns=arns)  # every page
    return {"healthyAfter": max(tg.get("HealthCheckIntervalSeconds", 30) * tg.get("HealthyThresholdCount", 5) for tg in found),
            "interval": max(tg.get("HealthCheckIntervalSeconds", 30) for tg in found)}


def next_check(progress: dict[str, Any], now: float, healthy_for: int) -> int:
    """Seconds until the next observation can tell something new."""
    if "healthySince" in progress:
        remaining = progress["healthySince"] + healthy_for - now
        return math.ceil(min(remaining, max(POLL_SECONDS, healthy_for / 2)))
    if progress.get("unhealthy"):
        return int(progress.get("interval") or POLL_SECONDS)
    if progress.get("registeredAt") is not None and progress.get("healthyAfter"):
        return max(int(progress.get("interval") or POLL_SECONDS),
                   math.ceil(progress["registeredAt"] + progress["healthyAfter"] - now))
    return POLL_SECONDS


def deregistration_delay(cluster: str, service: str) -> int:
    """The longest deregistration delay among the service's target groups (seconds the canary drains)."""
    elb, longest = aws.client("elbv2"), 0
    for lb in describe_service(cluster, service).get("loadBalancers", []):
        if lb.get("targetGroupArn"):
            attributes = elb.describe_target_group_attributes(TargetGroupArn=lb["targetGroupArn"])["Attributes"]
            delay = next((a["Value"] for a in attributes if a["Key"] == "deregistration_delay.timeout_seconds"), "300")
            longest = max(longest, int(delay))
    return longest


def _tasks(cluster: str, execution: str, service: dict[str, Any], task_definition_arn: str | None,
           task_arns: Iterable[str]) -> list[dict[str, Any]]:
    """The execution's canary tasks, the stopped ones too (ECS deregisters no task outside a service, so a crashed
    canary's address stays in the target groups until Ferry takes it out).

    Stopped tasks are found by the family of the revision they run: the one given, else the families of the running
    canaries, of the service's revisions (after the update it runs the canary's) and of its deployments."""
    marker = started_by(execution)
    running = tasks_started_by(cluster, marker, known=task_arns)
    families = [family_of(arn) for arn in (task_definition_arn, service.get("taskDefinition"),
                                           *(d.get("taskDefinition") for d in service.get("deployments", [])),
                                           *(t.get("taskDefinitionArn") for t in running)) if arn]
    seen = {t["taskArn"] for t in running}
    return running + [t for t in stopped_tasks_started_by(cluster, marker, families) if t["taskArn"] not in seen]


def deregister(cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None,
               task_arns: Iterable[str] = ()) -> dict[str, Any]:
    """Take the canary out of every target group; returns how long to let it drain."""
    described = describe_service(cluster, service)
    tasks = _tasks(cluster, execution, described, task_definition_arn, task_arns)
    if not tasks:
        return {"drainSeconds": 0, "tasks": 0}
    elb = aws.client("elbv2")
    for group, targets in _targets(described, tasks):
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
            aws.client("ecs").stop_task(cluster=cluster, task=task["taskArn"], reason=f"Ferry: canary of {execution} removed")
            stopped += 1
    return stopped


def remove_now(cluster: str, service: str, execution: str, *, task_definition_arn: str | None = None,
               task_arns: Iterable[str] = ()) -> int:
    """Deregister and stop at once (failure, rollback and abort paths: the canary must not keep serving)."""
    try:
        deregister(cluster, service, execution, task_definition_arn=task_definition_arn, task_arns=task_arns)
    except (ClientError, BotoCoreError):
        pass  # a missing target group must not keep the tasks running
    return stop(cluster, execution)
