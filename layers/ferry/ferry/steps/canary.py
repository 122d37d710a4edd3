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

import math
from typing import Any

from ferry import aws
from ferry.runtime import clock
from ferry.aws import canary_tasks, container_logs
from ferry.aws.ecs import describe_service, describe_tasks, family_of, one_off_parameters, revision_name, tasks_started_by
from ferry.errors import CanaryCrashed, CanaryUnhealthy, PhaseTimedOut


# Observations are scheduled, not periodic: each check says when the next one can tell something new
# (a task still starting, the target groups' own minimum time to healthy, half the healthy window), so
# a deploy costs a handful of checks whatever healthyForSeconds is. Unhealthy targets are re-checked
# at the target group's interval, to count consecutive failures as the load balancer sees them.
# (The first check, 30 s after the start, is set by the state machine's "Start the canary tasks".)
POLL_SECONDS = 15


def start(cluster: str, service: str, task_definition_arn: str, count: int, execution: str) -> dict[str, Any]:
    """Start the canary tasks (a retried step starts only the missing ones)."""
    marker = canary_tasks.started_by(execution)
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


def _crash_cause(task: dict[str, Any], revision: str) -> str:
    essential = next((c for c in task.get("containers", []) if c.get("exitCode") not in (None, 0, 143)),
                     (task.get("containers") or [{}])[0])
    lines, where = container_logs.tail(container_logs.config(task["taskDefinitionArn"], essential.get("name", "")),
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
        groups = canary_tasks.targets_of(described, tasks)
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


# The removal the canary's own states run ("Take the canary out of the target groups", "Stop the canary tasks",
# "Remove the canary after the failure") is the one the rollback and the execution-ended function run too.
deregister, stop, remove_now = canary_tasks.deregister, canary_tasks.stop, canary_tasks.remove_now
