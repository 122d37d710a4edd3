"""Migrations: one-off ECS tasks of the new revision, run before the service changes.

Each migration runs as a task of the new revision with the service's own
network configuration and launch settings, the container's command replaced.
The state that starts it waits on a task token; ECS's `Task State Change`
event for the stopped task completes it (see `waiters`), and a retried state
(after its heartbeat ran out, or a Lambda retry) finds the same task through
`startedBy` instead of starting a second one.

Ferry does not use the `ecs:runTask.sync` integration: its failure Cause is
the raw DescribeTasks JSON, without the log lines a person needs, and a
timed-out `.sync` state leaves the task running.

The step's contract (CONTRACTS): "Run the migration task and wait for it to
stop" passes `Input` (one item of $.render.migrations as `Migration`), and its
output, one entry of $.migrations, is `Output`: what the task token is
completed with when the migration succeeded. The function's own answer
(`Started`) only goes to its log: a `.waitForTaskToken` state ignores it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferry import aws
from ferry.runtime import clock
from ferry.aws import container_logs, waiters
from ferry.aws.ecs import describe_service, family_of, one_off_parameters, revision_name, tasks_started_by
from ferry.contract import EcsStepInput, Migration, Model, key
from ferry.errors import ExecutionEnded, FerryError, MigrationNotStarted
from ferry.lifecycle import journal
from ferry.text import looks_secret


@dataclass(frozen=True, kw_only=True)
class Input(EcsStepInput):
    """The input of "Run the migration task and wait for it to stop" (inside "Run the migrations in order")."""

    token: str = key(
        "token",
        doc="$$.Task.Token: completed when the task stops (ferry.lifecycle.task_stopped), or "
        "by this step when it has stopped already or ran too long",
    )
    task_definition_arn: str = key(
        "taskDefinitionArn", doc="the new revision the task runs, $.register.taskDefinitionArn"
    )
    previous_revision: str | None = key(
        "previousRevision", required=False, doc="what the service still runs, $.render.previousRevision (in the Cause)"
    )
    migration: Migration = key("migration", nested=Migration, doc="one item of $.render.migrations, $$.Map.Item.Value")


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """A migration that succeeded: what its task token is completed with, one entry of $.migrations."""

    name: str = key("name", doc="the migration's name")
    task_arn: str = key("taskArn", doc="the task that ran it")
    exit_code: int = key("exitCode", kinds=(int,), doc="its container's exit code: 0")


@dataclass(frozen=True, kw_only=True)
class Started(Model):
    """The function's answer, for its log: the task started or found, or why it could not start (the waiting
    state was then failed with that error)."""

    migration: str = key("migration", doc="the migration's name")
    task_arn: str | None = key("taskArn", required=False, doc="its task")
    status: str = key("status", doc="the task's lastStatus, 'stopped', 'timed out' or 'not started'")
    error: str | None = key("error", required=False, doc="the error the waiting state was failed with")

    @property
    def message(self) -> str:
        return "migration could not start" if self.error else "migration task started"

    @property
    def level(self) -> int:
        return logging.WARNING if self.error else logging.INFO


# action -> (input, output): what "Run the migration task and wait for it to stop" passes, and what its token is
# completed with (the state's output).
CONTRACTS = {None: (Input, Output)}


def run(request: Input, table: str) -> Started:
    """The step: start the task (or find it) and leave the token to its stop event. A migration that cannot start
    fails the waiting state at once, with its error's own name (MigrationNotStarted, ...)."""
    try:
        found = start(
            table=table,
            token=request.token,
            execution=request.execution,
            cluster=request.cluster,
            service=request.ecs_service,
            task_definition_arn=request.task_definition_arn,
            migration=request.migration,
            previous_revision=request.previous_revision,
        )
    except FerryError as exc:
        waiters.complete(request.token, error=type(exc).__name__, cause=str(exc))
        return Started(migration=request.migration.name, status="not started", error=type(exc).__name__)
    return Started(migration=request.migration.name, task_arn=found["taskArn"], status=found["status"])


@dataclass(frozen=True)
class Outcome:
    error: str | None  # None: succeeded
    cause: str
    output: dict[str, Any]


def started_by(execution: str, name: str) -> str:
    """ECS's startedBy (at most 36 characters) naming this execution's migration: the idempotency key."""
    return "ferry-" + hashlib.sha256(f"{execution}|{name}".encode()).hexdigest()[:30]


def find_task(cluster: str, marker: str, family: str | None = None) -> dict[str, Any] | None:
    """The newest task started with `marker`: running, or (given the `family` of its task definition) already stopped."""
    tasks = tasks_started_by(cluster, marker, families=[family] if family else [])
    return max(tasks, key=lambda t: t.get("createdAt") or datetime.min) if tasks else None


def _run_parameters(
    cluster: str, service: dict[str, Any], task_definition_arn: str, migration: Migration, execution: str, marker: str
) -> dict[str, Any]:
    override: dict[str, Any] = {"name": migration.container, "command": migration.command}
    if migration.environment:
        override["environment"] = [{"name": k, "value": v} for k, v in sorted(migration.environment.items())]
    return one_off_parameters(
        cluster,
        service,
        task_definition_arn,
        execution,
        marker,
        {"ferry:purpose": "migration", "ferry:migration": migration.name},
        [override],
    )


def run_task(
    cluster: str, service_name: str, task_definition_arn: str, migration: Migration, execution: str, marker: str
) -> dict[str, Any]:
    """Start the task (used by the Migrate step and by `ferry run`); MigrationNotStarted when ECS cannot place it."""
    service = describe_service(cluster, service_name)
    ecs = aws.client("ecs")
    try:
        result = ecs.run_task(**_run_parameters(cluster, service, task_definition_arn, migration, execution, marker))
    except (
        ecs.exceptions.ClientException,
        ecs.exceptions.InvalidParameterException,
        ecs.exceptions.PlatformUnknownException,
        ecs.exceptions.PlatformTaskDefinitionIncompatibilityException,
    ) as exc:
        raise MigrationNotStarted(
            f"ECS refused to run migration {migration.label()} of {revision_name(task_definition_arn)}: {exc}"
        ) from exc
    if not result.get("tasks"):
        reasons = (
            "; ".join(
                f"{f.get('reason')}{' (' + f['detail'] + ')' if f.get('detail') else ''}"
                for f in result.get("failures", [])
            )
            or "no reason given"
        )
        raise MigrationNotStarted(
            f"ECS could not place migration {migration.label()} of {revision_name(task_definition_arn)} in cluster "
            f"{cluster}: {reasons}. The service was not changed; check the cluster's capacity and retry."
        )
    return result["tasks"][0]


STOPPED_BY = {
    "UserInitiated": "was stopped by someone (a StopTask call) before it finished",
    "ServiceSchedulerInitiated": "was stopped by ECS's scheduler before it finished",
    "SpotInterruption": "was stopped by ECS before it finished: its Spot capacity was reclaimed",
    "TerminationNotice": "was stopped by ECS before it finished: its host was being terminated",
    "InfrastructureHealth": "was stopped by ECS before it finished: its host was unhealthy",
}


def outcome(
    task: dict[str, Any], migration: Migration, log_stream: dict[str, str] | None, context: dict[str, Any]
) -> Outcome:
    """Judge a STOPPED task: success only when the task stopped because its essential container exited
    (EssentialContainerExited) and the migration's own container exited 0."""
    arn = task["taskArn"]
    container = next((c for c in task.get("containers", []) if c.get("name") == migration.container), {})
    exit_code, stop_code = container.get("exitCode"), task.get("stopCode")
    revision = context.get("revision", "the new revision")
    if exit_code == 0 and stop_code == "EssentialContainerExited":
        return Outcome(None, "", Output(name=migration.name, task_arn=arn, exit_code=0).to_state())
    # The tail goes to the artefacts bucket, masked; the Cause names it (container_logs says why no line goes here).
    secret_overrides = [v for k, v in (migration.environment or {}).items() if looks_secret(k)]
    kept = container_logs.keep(log_stream, migration.container, arn, context.get("execution"), secret_overrides)
    reason = task.get("stoppedReason") or "no reason given"
    if container.get("reason"):
        reason += f"; container: {container['reason']}"
    exited = f"; its container exited with code {exit_code}" if exit_code is not None else ""
    if stop_code == "TaskFailedToStart" or (exit_code is None and not task.get("startedAt")):
        error, what = "MigrationNotStarted", f"never started ({stop_code or 'stopped'}: {reason})"
    elif context.get("timedOut"):
        error, what = "MigrationTimedOut", f"ran longer than its {migration.timeout} s timeout and was stopped"
    elif stop_code != "EssentialContainerExited":
        what = STOPPED_BY.get(str(stop_code), "was stopped before it finished")
        error, what = "MigrationFailed", f"{what} ({stop_code or 'no stop code'}: {reason}){exited}"
    elif exit_code is None:  # another essential container exited first, and ECS stopped this one
        error, what = "MigrationFailed", f"was stopped by ECS before its container exited ({stop_code}: {reason})"
    else:
        error, what = "MigrationFailed", f"exited with code {exit_code} ({reason})"
    previous = context.get("previousRevision")
    cause = (
        f"Migration {migration.label()} in container {migration.container} of {revision} {what}.\n"
        f"Task: {arn}.\n{kept.sentence}\n"
        f"The service was not changed{f': it still runs {previous}' if previous else ''}. "
        "Fix the migration (or raise timeoutSeconds) and deploy again."
    )
    return Outcome(error, cause, {})


def _age(task: dict[str, Any]) -> float:
    created = task.get("createdAt")
    return clock.now() - created.timestamp() if isinstance(created, datetime) else 0.0


def start(
    *,
    table: str,
    token: str,
    execution: str,
    cluster: str,
    service: str,
    task_definition_arn: str,
    migration: Migration,
    previous_revision: str | None = None,
) -> dict[str, Any]:
    """The Migrate step: start (or find) the task, leave the token to the task's stop event, finish at once if it already stopped.

    Also the fallback when the stop event was missed: the state's heartbeat
    runs out, its Retry calls this again, and this finds the task stopped (or
    too old, and stops it).
    """
    marker = started_by(execution, migration.name)
    task = find_task(cluster, marker, family_of(task_definition_arn))
    if task is None:
        # Journalled first: refused (ExecutionEnded) once the execution has ended, so nothing starts unseen.
        journal.record(table, execution, migration=migration.name)
        task = run_task(cluster, service, task_definition_arn, migration, execution, marker)
        if journal.ended(table, execution):
            # Stopped while this step ran; the execution-ended function may have looked before the task existed.
            aws.client("ecs").stop_task(
                cluster=cluster, task=task["taskArn"], reason=f"Ferry: execution {execution} ended during migration"
            )
            raise ExecutionEnded(
                f"execution {execution} ended while migration {migration.name} was starting: its task was stopped"
            )
    context = {
        "migration": migration.to_context(),
        "execution": execution,
        "cluster": cluster,
        "revision": revision_name(task_definition_arn),
        "previousRevision": previous_revision,
        "logs": container_logs.config(task_definition_arn, migration.container),
    }
    waiters.put(table, task["taskArn"], token, context)
    if task.get("lastStatus") != "STOPPED":
        task = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]
    if task.get("lastStatus") != "STOPPED" and _age(task) > migration.timeout:
        aws.client("ecs").stop_task(
            cluster=cluster,
            task=task["taskArn"],
            reason=f"Ferry: migration {migration.name} ran longer than {migration.timeout} s",
        )
        waiters.delete(table, task["taskArn"], token)
        result = outcome(task, migration, context["logs"], {**context, "timedOut": True})
        waiters.complete(token, error=result.error, cause=result.cause)
        return {"taskArn": task["taskArn"], "status": "timed out"}
    if task.get("lastStatus") == "STOPPED":  # it ended before the waiter was stored, or its event was missed
        finish(table, task)
        return {"taskArn": task["taskArn"], "status": "stopped"}
    return {"taskArn": task["taskArn"], "status": task.get("lastStatus", "PROVISIONING")}


def finish(table: str, task: dict[str, Any]) -> bool:
    """Complete the state waiting for this stopped task; False when nobody waits for it."""
    found = waiters.get(table, task["taskArn"])
    if found is None:
        return False
    token, context = found
    migration = Migration.from_context(context["migration"])
    result = outcome(task, migration, context.get("logs"), context)
    waiters.delete(table, task["taskArn"], token)
    if result.error:
        return waiters.complete(token, error=result.error, cause=result.cause)
    return waiters.complete(token, output=result.output)


def stop_all(cluster: str, execution: str, names: list[str]) -> int:
    """Stop the migration tasks an execution started that still run (after an abort, nothing else will).

    Only running tasks matter here, so ListTasks by `startedBy` alone finds them (no task definition needed)."""
    stopped = 0
    for name in names:
        for task in tasks_started_by(cluster, started_by(execution, name)):
            if task.get("desiredStatus") != "STOPPED":
                aws.client("ecs").stop_task(
                    cluster=cluster,
                    task=task["taskArn"],
                    reason=f"Ferry: execution {execution} ended during migration {name}",
                )
                stopped += 1
    return stopped
