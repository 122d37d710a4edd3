"""Canary: tasks of the new revision, beside the service, must prove healthy before the service changes.

The canary tasks run with the service's own network and launch settings and
are registered in every target group of the service, so they take a share
of real traffic. They must reach RUNNING (and HEALTHY, when containers have
health checks), then stay healthy in every target group for
`healthyForSeconds`; `initial` is not a failure, `unhealthyThreshold`
non-healthy observations in a row are. Whatever happens, they are
deregistered and stopped at the end (Ferry's success path, its failure and
rollback paths, and the execution-ended function after an abort).

The step (functions/canary) has five actions, each with its contract
(CONTRACTS): `start` ("Start the canary tasks": `Started`, kept at $.canary),
`check` ("Check the canary": `Observation`, the canary's progress at
$.canary.progress, which "Wait for the canary" and "Is the canary healthy for
long enough?" read), `deregister` ("Take the canary out of the target
groups": `Drained`), `stop` ("Stop the canary tasks") and `remove` ("Remove
the canary after the failure"), both `Stopped`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry import states as S
from ferry.runtime import clock
from ferry.aws import canary_tasks, container_logs
from ferry.aws.ecs import (
    describe_service,
    describe_tasks,
    family_of,
    one_off_parameters,
    revision_name,
    tasks_started_by,
)
from ferry.contract import EcsStepInput, Model, key, read_action
from ferry.errors import CanaryCrashed, CanaryUnhealthy, CleanupIncomplete, ExecutionEnded, InputInvalid, PhaseTimedOut
from ferry.lifecycle import journal
from ferry.runtime.observability import logger


# ------------------------------------------------------------------ the step's contracts


@dataclass(frozen=True, kw_only=True)
class CanarySettings(Model):
    """The config's strategy.canary, as Render passes it ($.render.canary); the schema's defaults when absent."""

    count: int = key("count", kinds=(int,), required=False, default=1, doc="canary tasks to start")
    healthy_for: int = key(
        "healthyForSeconds",
        kinds=(int,),
        required=False,
        default=60,
        doc="how long the canary must stay healthy in every target group",
    )
    unhealthy_threshold: int = key(
        "unhealthyThreshold",
        kinds=(int,),
        required=False,
        default=3,
        doc="non-healthy observations in a row that fail it",
    )


@dataclass(frozen=True, kw_only=True)
class CanaryProgress(Model):
    """The canary's progress as the next check is given it: the last check's `Observation`, or, before the first
    check, what "Start the canary tasks" put there ({waitSeconds: 30}). Every key is optional."""

    state: str | None = key("state", required=False, doc="WAITING or PASSED")
    wait_seconds: int | None = key(
        "waitSeconds",
        kinds=(int,),
        required=False,
        doc='how long "Wait for the canary" waits before the next check (its SecondsPath)',
    )
    unhealthy: int | None = key(
        "unhealthy",
        kinds=(int,),
        required=False,
        doc="non-healthy observations in a row (health checks or target groups)",
    )
    healthy_since: float | None = key(
        "healthySince",
        kinds=(int, float),
        required=False,
        doc="since when every target has been healthy without a break",
    )
    registered: bool | None = key(
        "registered", kinds=(bool,), required=False, doc="true once the tasks were registered in the target groups"
    )
    registered_at: float | None = key("registeredAt", kinds=(int, float), required=False, doc="when they were")
    healthy_after: int | None = key(
        "healthyAfter",
        kinds=(int,),
        required=False,
        doc="the least time a new target needs to turn healthy in the target groups",
    )
    interval: int | None = key(
        "interval", kinds=(int,), required=False, doc="the target groups' longest health check interval"
    )

    def document(self) -> dict[str, Any]:
        """The keys it has, as the check reads and updates them (absent ones left out, not null)."""
        return {name: value for name, value in self.to_state().items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class Observation(CanaryProgress):
    """What "Check the canary" saw ($.canary.progress): PASSED once the canary has been healthy for
    healthyForSeconds, else WAITING with the seconds until the next check can tell something new."""

    state: str = key("state", doc='WAITING or PASSED: "Is the canary healthy for long enough?" reads it')

    @property
    def message(self) -> str:
        return "canary observed"


@dataclass(frozen=True, kw_only=True)
class Started(Model):
    """The canary tasks started ($.canary). The state keeps taskArns and startedAt (its ResultSelector) and adds
    `progress`; "Check the canary" and "Take the canary out of the target groups" are given it back as `started`."""

    task_arns: list[str] = key("taskArns", kinds=(list,), doc="the canary tasks")
    started_at: float = key("startedAt", kinds=(int, float), doc="when: timeouts.canary counts from it")
    marker: str | None = key("marker", required=False, doc="their startedBy (the state does not keep it)")
    progress: CanaryProgress | None = key(
        "progress",
        nested=CanaryProgress,
        required=False,
        doc="not the function's: the state's ResultSelector starts it, each check replaces it",
    )

    def __post_init__(self) -> None:
        if not all(isinstance(arn, str) and arn for arn in self.task_arns):
            raise InputInvalid(
                "`started.taskArns` must be a list of task ARNs (what Start the canary tasks returned): pass $.canary"
            )

    @property
    def message(self) -> str:
        return "canary started"


@dataclass(frozen=True, kw_only=True)
class CanaryInput(EcsStepInput):
    """What every canary state passes: the ECS service, the execution whose canary it is, and the action."""

    action: str = key("action", doc="start, check, deregister, stop or remove")


@dataclass(frozen=True, kw_only=True)
class StartInput(CanaryInput):
    """The input of "Start the canary tasks"."""

    task_definition_arn: str = key("taskDefinitionArn", doc="the new revision, $.register.taskDefinitionArn")
    canary: CanarySettings = key(
        "canary",
        nested=CanarySettings,
        required=False,
        default=CanarySettings(),
        doc="the canary's settings, $.render.canary",
    )


@dataclass(frozen=True, kw_only=True)
class CheckInput(CanaryInput):
    """The input of "Check the canary"."""

    task_definition_arn: str = key("taskDefinitionArn", doc="the new revision, $.register.taskDefinitionArn")
    canary: CanarySettings = key(
        "canary",
        nested=CanarySettings,
        required=False,
        default=CanarySettings(),
        doc="the canary's settings, $.render.canary",
    )
    started: Started = key("started", nested=Started, doc="what Start the canary tasks returned, $.canary")
    progress: CanaryProgress | None = key(
        "progress", nested=CanaryProgress, required=False, doc="the last check's observation, $.canary.progress"
    )
    timeout_seconds: int = key("timeoutSeconds", kinds=(int,), doc="$.render.timeouts.canary, from startedAt")


@dataclass(frozen=True, kw_only=True)
class RemovalInput(CanaryInput):
    """The input of "Take the canary out of the target groups" (deregister) and "Remove the canary after the failure" (remove):
    the revision the canary runs finds its tasks that already stopped, and `started` the ones Start started."""

    task_definition_arn: str | None = key(
        "taskDefinitionArn", required=False, doc="the new revision, $.register.taskDefinitionArn, or nothing"
    )
    started: Started | None = key(
        "started", nested=Started, required=False, doc="what Start the canary tasks returned, $.canary, or nothing"
    )

    def __post_init__(self) -> None:
        if self.task_definition_arn == "":
            raise InputInvalid(
                "`taskDefinitionArn` must be the new revision's task definition ARN (a string), got an "
                "empty string: pass $.register.taskDefinitionArn, or leave it out"
            )

    @property
    def recorded(self) -> dict[str, Any]:
        """What the state recorded of the canary, as ferry.aws.canary_tasks takes it."""
        return {
            "task_definition_arn": self.task_definition_arn,
            "task_arns": list(self.started.task_arns) if self.started else [],
        }


@dataclass(frozen=True, kw_only=True)
class StopInput(CanaryInput):
    """The input of "Stop the canary tasks": found by the execution's startedBy alone."""


@dataclass(frozen=True, kw_only=True)
class Drained(Model):
    """The canary taken out of the target groups ($.canaryRemoval)."""

    drain_seconds: int = key(
        "drainSeconds",
        kinds=(int,),
        doc='the target groups\' deregistration delay: "Let the canary drain" waits it out',
    )
    tasks: int = key("tasks", kinds=(int,), doc="canary tasks still running")

    @property
    def message(self) -> str:
        return "canary deregistered"


@dataclass(frozen=True, kw_only=True)
class Stopped(Model):
    """The canary tasks stopped (the states keep nothing of it)."""

    stopped: int = key("stopped", kinds=(int,), doc="how many were still running")

    @property
    def message(self) -> str:
        return "canary stopped"


# action -> (input, output): what each canary state passes, and what the function returns.
CONTRACTS = {
    "start": (StartInput, Started),
    "check": (CheckInput, Observation),
    "deregister": (RemovalInput, Drained),
    "stop": (StopInput, Stopped),
    "remove": (RemovalInput, Stopped),
}
# What an InputInvalid names: the state whose Parameters are wrong.
INPUT_OF = {
    "start": f"{S.START_CANARY}' input",
    "check": f"{S.CHECK_CANARY}'s input",
    "deregister": f"{S.DEREGISTER_CANARY}' input",
    "stop": f"{S.STOP_CANARY}' input",
    "remove": f"{S.REMOVE_FAILED_CANARY}'s input",
}


def read(event: Any) -> CanaryInput:
    """The typed input of the state that invoked the function, by its action."""
    return read_action(event, CONTRACTS, INPUT_OF, "the canary")


def run(request: CanaryInput, table: str | None = None) -> Model:
    """The step: the action the state asked for. With the lock `table`, a start is journalled before it starts
    anything (ferry.lifecycle.journal)."""
    if isinstance(request, StartInput):
        return start(request, table)
    return ACTIONS[request.action](request)


# ------------------------------------------------------------------ the actions

# Observations are scheduled, not periodic: each check says when the next one can tell something new
# (a task still starting, the target groups' own minimum time to healthy, half the healthy window), so
# a deploy costs a handful of checks whatever healthyForSeconds is. Unhealthy targets are re-checked
# at the target group's interval, to count consecutive failures as the load balancer sees them.
# (The first check, 30 s after the start, is set by the state machine's "Start the canary tasks".)
POLL_SECONDS = 15


def start(request: StartInput, table: str | None = None) -> Started:
    """Start the canary tasks (a retried step starts only the missing ones)."""
    cluster, service, execution = request.cluster, request.ecs_service, request.execution
    task_definition_arn, count = request.task_definition_arn, request.canary.count
    marker = canary_tasks.started_by(execution)
    existing = [
        t
        for t in tasks_started_by(cluster, marker, families=[family_of(task_definition_arn)])
        if t.get("desiredStatus") != "STOPPED" or t.get("lastStatus") != "STOPPED"
    ]
    missing = count - len(existing)
    started = list(existing)
    if missing > 0 and table:
        # Journalled first: refused (ExecutionEnded) once the execution has ended, so nothing starts unseen.
        journal.record(table, execution, taskDefinitionArn=task_definition_arn)
    if missing > 0:
        params = one_off_parameters(
            cluster,
            describe_service(cluster, service),
            task_definition_arn,
            execution,
            marker,
            {"ferry:purpose": "canary"},
            count=missing,
        )
        result = aws.client("ecs").run_task(**params)
        if not result.get("tasks"):
            reasons = "; ".join(str(f.get("reason")) for f in result.get("failures", [])) or "no reason given"
            raise CanaryCrashed(
                f"ECS could not place the canary of {revision_name(task_definition_arn)} in {cluster}: "
                f"{reasons}. The service was not changed."
            )
        started += result["tasks"]
        if table and journal.ended(table, execution):
            # Stopped while this step ran, and the execution-ended function may have looked before these tasks
            # existed: they are removed here, and the execution is over.
            remove_now(cluster, service, execution, task_definition_arn=task_definition_arn)
            raise ExecutionEnded(
                f"execution {execution} ended while its canary was starting: the canary was removed again"
            )
    return Started(task_arns=[t["taskArn"] for t in started], started_at=clock.now(), marker=marker)


def _crash_cause(task: dict[str, Any], revision: str) -> str:
    """Why a canary task stopped. Its container's log tail goes to the artefacts bucket (masked) and the Cause
    names it, never its lines (ferry.aws.container_logs); the execution is the one the handler bound to its log."""
    essential = next(
        (c for c in task.get("containers", []) if c.get("exitCode") not in (None, 0, 143)),
        (task.get("containers") or [{}])[0],
    )
    logs = (
        container_logs.keep(
            container_logs.config(task["taskDefinitionArn"], essential["name"]),
            essential["name"],
            task["taskArn"],
            logger.get_correlation_id(),
        ).sentence
        if essential.get("name")
        else ""
    )
    return (
        f"a canary task of {revision} stopped: {task.get('stopCode', 'stopped')}: {task.get('stoppedReason', 'no reason given')}"
        f"{'; container ' + essential['name'] + ' exited with code ' + str(essential['exitCode']) if essential.get('exitCode') is not None else ''}"
        f"{'; ' + essential['reason'] if essential.get('reason') else ''}. Task: {task['taskArn']}."
        f"{chr(10) + logs if logs else ''}\n"
        "The service was not changed."
    )


def check(request: CheckInput) -> Observation:
    """One observation of the canary: registers it once RUNNING (and HEALTHY), then counts healthy time."""
    settings = request.canary
    seen = observe(
        request.cluster,
        request.ecs_service,
        request.started.task_arns,
        request.progress.document() if request.progress else {},
        revision=revision_name(request.task_definition_arn),
        started_at=float(request.started.started_at),
        healthy_for=settings.healthy_for,
        unhealthy_threshold=settings.unhealthy_threshold,
        timeout=request.timeout_seconds,
    )
    return Observation.from_state(seen, "the canary's observation")


def observe(
    cluster: str,
    service: str,
    task_arns: list[str],
    progress: dict[str, Any],
    *,
    revision: str,
    started_at: float,
    healthy_for: int,
    unhealthy_threshold: int,
    timeout: int,
) -> dict[str, Any]:
    """The observation as a document: `progress` (the keys it has) updated with what the canary shows now."""
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
            return {
                **progress,
                "state": "WAITING",
                "waitSeconds": max(1, min(POLL_SECONDS, math.ceil(started_at + timeout - now) + 1)),
            }
    ready = all(
        t.get("lastStatus") == "RUNNING" and t.get("healthStatus") in ("HEALTHY", "UNKNOWN", None) for t in tasks
    )
    if any(t.get("healthStatus") == "UNHEALTHY" for t in tasks):
        progress["unhealthy"] = progress.get("unhealthy", 0) + 1
        if progress["unhealthy"] >= unhealthy_threshold:
            raise CanaryUnhealthy(
                f"the canary of {revision} failed its container health checks {progress['unhealthy']} "
                "times in a row. The service was not changed."
            )
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
                for found in elb.describe_target_health(TargetGroupArn=group, Targets=targets)[
                    "TargetHealthDescriptions"
                ]:
                    health = found["TargetHealth"]
                    states.append(
                        (group.rsplit("/", 2)[-2], health.get("State"), health.get("Reason"), health.get("Description"))
                    )
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
                raise CanaryUnhealthy(
                    f"the canary of {revision} was not healthy {progress['unhealthy']} times in a row "
                    f"in its target groups: {evidence}. The service was not changed."
                )
        elif not groups:  # no load balancer: RUNNING (and HEALTHY) is the health that can be seen
            progress.setdefault("healthySince", now)
            progress["unhealthy"] = 0
        if "healthySince" in progress and now - progress["healthySince"] >= healthy_for:
            progress.pop("waitSeconds", None)
            return {**progress, "state": "PASSED"}
    if now - started_at > timeout:
        raise PhaseTimedOut(
            f"the canary of {revision} was not healthy for {healthy_for} s within {timeout} s "
            "(timeouts.canary). The service was not changed."
        )
    wait = next_check(progress, now, healthy_for)
    return {**progress, "state": "WAITING", "waitSeconds": max(1, min(wait, math.ceil(started_at + timeout - now) + 1))}


def _health_settings(elb: Any, groups: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, int]:
    """The least time a new target needs to turn healthy, and the longest check interval, over the target groups."""
    arns = [group for group, targets in groups if targets]
    if not arns:
        return {}
    found = aws.items(elb, "describe_target_groups", "TargetGroups", TargetGroupArns=arns)  # every page
    return {
        "healthyAfter": max(
            tg.get("HealthCheckIntervalSeconds", 30) * tg.get("HealthyThresholdCount", 5) for tg in found
        ),
        "interval": max(tg.get("HealthCheckIntervalSeconds", 30) for tg in found),
    }


def next_check(progress: dict[str, Any], now: float, healthy_for: int) -> int:
    """Seconds until the next observation can tell something new."""
    if "healthySince" in progress:
        remaining = progress["healthySince"] + healthy_for - now
        return math.ceil(min(remaining, max(POLL_SECONDS, healthy_for / 2)))
    if progress.get("unhealthy"):
        return int(progress.get("interval") or POLL_SECONDS)
    if progress.get("registeredAt") is not None and progress.get("healthyAfter"):
        return max(
            int(progress.get("interval") or POLL_SECONDS),
            math.ceil(progress["registeredAt"] + progress["healthyAfter"] - now),
        )
    return POLL_SECONDS


# The removal the canary's own states run ("Take the canary out of the target groups", "Stop the canary tasks",
# "Remove the canary after the failure") is the one the rollback and the execution-ended function run too.
deregister, stop, remove_now = canary_tasks.deregister, canary_tasks.stop, canary_tasks.remove_now


def take_out(request: RemovalInput) -> Drained:
    """Take the canary out of every target group; how long to let it drain."""
    drained = deregister(request.cluster, request.ecs_service, request.execution, **request.recorded)
    return Drained(drain_seconds=drained["drainSeconds"], tasks=drained["tasks"])


def stop_tasks(request: StopInput) -> Stopped:
    """Stop the canary tasks still running (after they drained), then make sure nothing of it is left."""
    return Stopped(stopped=_removed(request.cluster, request.ecs_service, request.execution, stop))


def remove(request: RemovalInput) -> Stopped:
    """Deregister and stop at once: a failed canary must not keep serving."""
    return Stopped(
        stopped=_removed(request.cluster, request.ecs_service, request.execution, remove_now, **request.recorded)
    )


def _removed(cluster: str, service: str, execution: str, first: Any, **recorded: Any) -> int:
    """Remove the canary with `first` (stop, or remove_now), then take out and stop whatever of it is still there
    (a StopTask or DeregisterTargets that failed: throttled, or a target group that did not answer). While
    anything is, raise CleanupIncomplete naming it, which the state retries with back-off for up to an hour. How
    many tasks were stopped."""
    stopped, error = 0, None
    try:
        stopped = first(cluster, execution) if first is stop else first(cluster, service, execution, **recorded)
    except (ClientError, BotoCoreError) as exc:
        error = aws.error_code(exc) or type(exc).__name__
    more, left, again = canary_tasks.removed(cluster, service, execution, **recorded)
    if not left:
        return stopped + more
    last = again or error
    raise CleanupIncomplete(
        f"the canary of {execution} is not removed yet{f' (the last attempt: {last})' if last else ''}: "
        f"{'; '.join(left)}. Ferry keeps trying; to remove it by hand: aws ecs stop-task --cluster {cluster} --task "
        "<task>, and aws elbv2 deregister-targets for each target named"
    )


ACTIONS = {"start": start, "check": check, "deregister": take_out, "stop": stop_tasks, "remove": remove}
