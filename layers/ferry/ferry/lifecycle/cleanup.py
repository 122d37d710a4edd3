"""Clean up after an ended execution from its journal: its canary, its migrations, its lock.

The execution-ended function runs this when an execution ends, and the reaper runs it again for every journal that
is ended but not closed. Everything it needs is in the journal (ferry.lifecycle.journal), never in today's config.
Each part is tried whatever happened to the others, then checked: what is still running or registered is
reported as `left`, and the journal stays open for the reaper's next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.aws import canary_tasks
from ferry.aws.ecs import tasks_started_by
from ferry.lifecycle import journal as journals
from ferry.runtime.observability import logger
from ferry.steps import lock, migrate


@dataclass(frozen=True)
class Cleaned:
    canaries: int = 0  # canary tasks stopped
    migrations: int = 0  # migration tasks stopped
    released: bool = False  # the lock was released by this pass
    left: tuple[str, ...] = ()  # what is still running, registered or held, in words

    def to_log(self) -> dict[str, Any]:
        return {
            "canaryTasksStopped": self.canaries,
            "migrationTasksStopped": self.migrations,
            "lockReleased": self.released,
            "left": list(self.left),
        }


def _failed(what: str, exc: Exception) -> str:
    return f"{what}: {aws.error_code(exc) or type(exc).__name__}"


def clean_up(
    table: str,
    journal: journals.Journal,
    *,
    task_definition_arn: str | None = None,
    task_arns: Iterable[str] = (),
) -> Cleaned:
    """Remove what the journal names and close it when nothing is left. `task_definition_arn` and `task_arns` are
    what the execution's history recorded of its canary, when it can be read (they find canary tasks that already
    stopped, whose addresses must leave the target groups too)."""
    if not journal.opened:  # the execution never took the lock: it started nothing
        if journal.ended_at is not None:
            journals.close(table, journal.execution, [])
        return Cleaned()
    cluster, service, name = journal.cluster or "", journal.ecs_service or "", journal.execution
    revision = journal.task_definition_arn or task_definition_arn
    left: list[str] = []
    canaries = migrations = 0
    try:
        canaries = canary_tasks.remove_now(cluster, service, name, task_definition_arn=revision, task_arns=task_arns)
    except Exception as exc:  # ClientError, BotoCoreError, or the service gone (ServiceNotFound)
        left.append(_failed(f"the canary of {name} in {cluster}", exc))
    try:
        migrations = migrate.stop_all(cluster, name, list(journal.migrations))
    except (ClientError, BotoCoreError) as exc:
        left.append(_failed(f"the migrations of {name} in {cluster}", exc))
    released = False
    if journal.lock_key and journal.owner:
        try:
            released = lock.release(table, journal.lock_key, journal.owner)
            # A newer deploy that ended while only waiting must not keep an older waiter waiting (lock.waiter_ended).
            lock.waiter_ended(table, journal.lock_key, journal.owner)
        except Exception as exc:  # LockUnavailable: the table did not answer
            left.append(_failed(f"the deploy lock of {journal.lock_key}", exc))
    if not left:
        left = still_there(cluster, service, name, list(journal.migrations), revision, task_arns)
    try:
        journals.close(table, name, left)
    except (ClientError, BotoCoreError) as exc:  # the reaper finds the journal open and looks again
        logger.warning("journal not closed", extra={"error": type(exc).__name__})
    return Cleaned(canaries=canaries, migrations=migrations, released=released, left=tuple(left))


def still_there(
    cluster: str,
    service: str,
    execution: str,
    migrations: list[str],
    revision: str | None = None,
    task_arns: Iterable[str] = (),
) -> list[str]:
    """What of the execution is still running or registered, in words ([] when nothing): its canary
    (canary_tasks.left_behind) and its migration tasks whose desired status is not STOPPED."""
    try:
        left = canary_tasks.left_behind(cluster, service, execution, task_definition_arn=revision, task_arns=task_arns)
        for name in migrations:
            marker = migrate.started_by(execution, name)
            left += [
                f"migration task {task['taskArn']} ({name}) in cluster {cluster}"
                for task in tasks_started_by(cluster, marker)
                if task.get("desiredStatus") != "STOPPED"
            ]
        return left
    except Exception as exc:  # ClientError, BotoCoreError: what is left could not be read
        return [_failed(f"what {execution} left in {cluster} could not be read", exc)]
