"""The reaper: every few minutes, what no running execution owns is found and removed.

The execution-ended function cleans up after every execution as it ends. The reaper (EventBridge Scheduler,
every five minutes: template.yaml, ReaperFunction) covers what it cannot see: an end event that never arrived
(lost, or dead-lettered after its retries), a step that started something after its execution was stopped, a
clean-up that left something (ferry.lifecycle.cleanup leaves it in the journal), and anything an older Ferry
left. One pass looks at three things:

(a) every journal not closed (ferry.lifecycle.journal) whose execution is no longer RUNNING (DescribeExecution;
    an execution that does not exist counts as ended): it is marked ended if it was not (a lost end event), then
    cleaned up from what it names (cleanup.clean_up), and closed once nothing is left;
(b) every running task of the allowed clusters that Ferry started (the `ferry:execution` tag, or startedBy
    `ferry-`) whose execution is not RUNNING and whose journal is closed or missing: a canary is first taken out
    of its service's target groups (the service the journal names; without a journal, every service of the
    cluster whose target groups hold its address), then stopped; a migration is stopped. A task whose execution
    this state machine does not know is left alone and reported: it may be another Ferry installation's that
    shares the cluster; so is a task with startedBy `ferry-` and no tag, which names no execution;
(c) every deploy lock whose owner execution is not RUNNING: released, on the condition that the owner still
    holds it (ferry.steps.lock.release), which wakes the deploys waiting for it.

An execution that ended less than GRACE_SECONDS ago is left to the execution-ended function: its event and
Lambda's two retries (one and two minutes later) arrive within it, and so does the end of any step's function
still running when the execution was stopped (at most 120 s), so the reaper never races either.

When the pass finds nothing it makes only reads: one Scan of the lock table and, per allowed cluster, ListTasks
(and DescribeTasks of the tasks it lists), plus DescribeExecution of the executions that journals, locks or
Ferry's tasks name. When it found something, it announces it: a Ferry event on the default bus (source `ferry`,
detail-type "Ferry Reaper Cleaned Up") and the metrics `OrphanedResources` (what it found that no running
execution owns, removed or not) and `ReapedResources` (what it removed), in Embedded Metric Format. The alarm
`ferry-<env>-reaper-keeps-finding` fires when three passes in a row find something: something keeps stranding
resources, or the reaper cannot remove them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.aws import canary_tasks
from ferry.aws.ecs import DESCRIBE_TASKS_MAX, describe_service, task_arns, task_ip
from ferry.errors import FerryError, ServiceNotFound
from ferry.lifecycle import cleanup, journal, metrics, notify
from ferry.runtime import clock
from ferry.runtime.observability import log_stream, logger
from ferry.runtime.settings import Settings
from ferry.steps import lock
from ferry.text import shorten

# How long after its end an execution is left to the execution-ended function (see the module docstring).
GRACE_SECONDS = 600
CLEANED_UP = "Ferry Reaper Cleaned Up"  # the Ferry event's detail-type
ORPHANED, REAPED = "OrphanedResources", "ReapedResources"  # the metrics (namespace Ferry, dimension environment)
EXECUTION_TAG, PURPOSE_TAG = "ferry:execution", "ferry:purpose"  # what ferry.aws.ecs.one_off_parameters tags
CANARY_PREFIX, FERRY_PREFIX = "ferry-canary-", "ferry-"  # startedBy of canary and migration tasks
MAX_WORDS = 50  # lines of each list the event carries (all of them are in the log)
DESCRIBE_SERVICES_MAX = 10  # ECS DescribeServices takes at most 10 services a call (botocore's ECS model)

RUNNING, RECENT, ENDED, UNKNOWN, UNREADABLE = "RUNNING", "RECENT", "ENDED", "UNKNOWN", "UNREADABLE"


@dataclass(frozen=True)
class Reaped:
    """What one pass found that no running execution owns, and what it did about it."""

    lost_ends: int = 0  # executions whose end was never recorded (marked ended by this pass)
    journals: int = 0  # journals cleaned up and closed
    canary_tasks: int = 0  # canary tasks stopped
    migration_tasks: int = 0  # migration tasks stopped
    targets: int = 0  # canary addresses taken out of target groups
    locks: int = 0  # deploy locks released
    cleaned: tuple[str, ...] = ()  # what was removed, in words
    left: tuple[str, ...] = ()  # what was found and is still there (the next pass tries again), in words

    @property
    def reaped(self) -> int:
        """Resources removed, released or closed."""
        return self.journals + self.canary_tasks + self.migration_tasks + self.targets + self.locks

    @property
    def orphaned(self) -> int:
        """Resources found that no running execution owns, removed or not."""
        return self.reaped + len(self.left)

    def to_dict(self) -> dict[str, Any]:
        return {
            "orphaned": self.orphaned,
            "reaped": self.reaped,
            "lostEndEvents": self.lost_ends,
            "journalsClosed": self.journals,
            "canaryTasksStopped": self.canary_tasks,
            "migrationTasksStopped": self.migration_tasks,
            "targetsDeregistered": self.targets,
            "locksReleased": self.locks,
            "cleaned": list(self.cleaned),
            "left": list(self.left),
        }


@dataclass
class _Pass:
    """One pass's state: the executions looked up (each once), the journals still open, what was done."""

    settings: Settings
    grace_seconds: float
    executions: dict[str, tuple[str, str]] = field(default_factory=dict)  # ARN -> (kind, status)
    open_journals: set[str] = field(default_factory=set)  # names of journals this pass left open
    counts: dict[str, int] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    services: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # cluster -> its services
    registered: dict[str, set[tuple[str, Any]]] = field(default_factory=dict)  # target group -> targets

    @property
    def table(self) -> str:
        return self.settings.lock_table

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def did(self, execution: str, what: str) -> None:
        logger.info("reaped", extra={"execution": execution, "what": what})
        self.cleaned.append(what)

    def leave(self, execution: str, what: str) -> None:
        logger.warning("found, not removed", extra={"execution": execution, "what": what})
        self.left.append(what)

    def arn_of(self, execution: str) -> str:
        """The execution's ARN, from its ARN or its name (journals and tags name executions of this state machine)."""
        if execution.startswith("arn:"):
            return execution
        machine = self.settings.state_machine_arn or ""
        return machine.replace(":stateMachine:", ":execution:", 1) + ":" + execution

    def execution(self, arn: str) -> tuple[str, str]:
        """(kind, status): RUNNING; RECENT (ended less than the grace ago: the execution-ended function's); ENDED;
        UNKNOWN (this state machine has no such execution); UNREADABLE (DescribeExecution failed: the status is the
        error code)."""
        if arn not in self.executions:
            sfn = aws.client("stepfunctions")
            try:
                described = sfn.describe_execution(executionArn=arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                self.executions[arn] = (UNKNOWN, "UNKNOWN")
            except (ClientError, BotoCoreError) as exc:
                self.executions[arn] = (UNREADABLE, aws.error_code(exc) or type(exc).__name__)
            else:
                status = described["status"]
                stopped = described.get("stopDate")
                since = clock.now() - stopped.timestamp() if isinstance(stopped, datetime) else None
                if status == "RUNNING":
                    kind = RUNNING
                elif since is not None and since < self.grace_seconds:
                    kind = RECENT
                else:
                    kind = ENDED
                self.executions[arn] = (kind, status)
        return self.executions[arn]

    def result(self) -> Reaped:
        c = self.counts
        return Reaped(
            lost_ends=c.get("lost_ends", 0),
            journals=c.get("journals", 0),
            canary_tasks=c.get("canary_tasks", 0),
            migration_tasks=c.get("migration_tasks", 0),
            targets=c.get("targets", 0),
            locks=c.get("locks", 0),
            cleaned=tuple(self.cleaned),
            left=tuple(self.left),
        )


def reap(settings: Settings, *, grace_seconds: float = GRACE_SECONDS) -> Reaped:
    """One pass of the reaper (see the module docstring); announces what it found, if anything."""
    if not settings.state_machine_arn:
        raise RuntimeError("environment variable STATE_MACHINE_ARN is not set: the reaper's template entry must set it")
    run = _Pass(settings, grace_seconds)
    journals, locks = scan_lock_table(run.table)
    for record in journals:
        _journal(run, record)
    for cluster in settings.allowed_clusters:
        _tasks(run, cluster)
    for key, owner in locks:
        _lock(run, key, owner)
    found = run.result()
    if found.orphaned:
        logger.warning("the reaper found what no running execution owns", extra=found.to_dict())
        _announce(found, settings.environment)
    else:
        logger.info("the reaper found nothing")
    return found


def scan_lock_table(table: str) -> tuple[list[journal.Journal], list[tuple[str, str]]]:
    """The journals not closed and the deploy locks (cluster/service, owner), in one Scan of the lock table: the
    pass's work list."""
    journals, locks = [], []
    for page in aws.pages(
        aws.client("dynamodb"),
        "scan",
        token="LastEvaluatedKey",
        TableName=table,
        FilterExpression="(begins_with(pk, :journal) AND attribute_not_exists(closedAt)) OR begins_with(pk, :lock)",
        ExpressionAttributeValues={":journal": {"S": journal.PREFIX}, ":lock": {"S": "service#"}},
        ConsistentRead=True,
    ):
        for item in page.get("Items", []):
            key = item["pk"]["S"]
            if key.startswith(journal.PREFIX):
                journals.append(journal.Journal.from_item(item))
            elif "S" in item.get("owner", {}):
                locks.append((key[len("service#") :], item["owner"]["S"]))
    return journals, locks


# ------------------------------------------------------------------ (a) journals not closed


def _journal(run: _Pass, record: journal.Journal) -> None:
    name = record.execution
    arn = run.arn_of(record.owner or name)
    kind, status = run.execution(arn)
    if kind in (RUNNING, RECENT):
        run.open_journals.add(name)
        return
    if kind == UNREADABLE:
        run.open_journals.add(name)
        run.leave(name, f"the journal of {name}: whether its execution still runs could not be read ({status})")
        return
    try:
        if record.ended_at is None:  # the end was never recorded: its end event was lost
            record = journal.end(run.table, arn, status)
            run.count("lost_ends")
            run.did(name, f"execution {name} had ended ({status}) without its end being recorded: marked ended")
        cleaned = cleanup.clean_up(run.table, record)
    except (ClientError, BotoCoreError, FerryError) as exc:
        run.open_journals.add(name)
        run.leave(name, f"the journal of {name} could not be cleaned up: {aws.error_code(exc) or type(exc).__name__}")
        return
    where = f"in cluster {record.cluster}" if record.cluster else ""
    if cleaned.canaries:
        run.count("canary_tasks", cleaned.canaries)
        run.did(name, f"stopped {cleaned.canaries} canary task(s) of {name} {where}".strip())
    if cleaned.migrations:
        run.count("migration_tasks", cleaned.migrations)
        run.did(name, f"stopped {cleaned.migrations} migration task(s) of {name} {where}".strip())
    if cleaned.released:
        run.count("locks")
        run.did(name, f"released the deploy lock of {record.lock_key} held by {name}")
    if cleaned.left:
        run.open_journals.add(name)
        for what in cleaned.left:
            run.leave(name, what)
        return
    run.count("journals")
    run.did(name, f"closed the journal of {name}")


# ------------------------------------------------------------------ (b) Ferry's tasks


def _tags(task: dict[str, Any]) -> dict[str, str]:
    return {t.get("key", ""): t.get("value", "") for t in task.get("tags") or []}


def _tasks(run: _Pass, cluster: str) -> None:
    """Ferry's running tasks in `cluster` that no running execution owns: canaries taken out and stopped,
    migrations stopped."""
    try:
        arns = task_arns(cluster)  # desiredStatus RUNNING: ListTasks' default
        ecs = aws.client("ecs")
        tasks = [
            task
            for batch in aws.batches(arns, DESCRIBE_TASKS_MAX)
            for task in ecs.describe_tasks(cluster=cluster, tasks=batch, include=["TAGS"])["tasks"]
        ]
    except (ClientError, BotoCoreError) as exc:
        run.leave("", f"the tasks of cluster {cluster} could not be read: {aws.error_code(exc) or type(exc).__name__}")
        return
    for task in tasks:
        started_by, tags = task.get("startedBy") or "", _tags(task)
        if task.get("desiredStatus") == "STOPPED" or not (EXECUTION_TAG in tags or started_by.startswith(FERRY_PREFIX)):
            continue
        what = f"task {task['taskArn']} in cluster {cluster} (startedBy {started_by or 'nothing'})"
        name = journal.name_of(tags.get(EXECUTION_TAG, ""))
        if not name:  # an older or foreign task: nothing says which execution it belongs to
            run.leave("", f"{what} names no execution (no {EXECUTION_TAG} tag): not touched")
            continue
        if name in run.open_journals:  # its journal is open: (a) cleans it up, or the execution still runs
            continue
        kind, status = run.execution(run.arn_of(name))
        if kind in (RUNNING, RECENT):
            continue
        if kind == UNREADABLE:
            run.leave(name, f"{what}: whether execution {name} still runs could not be read ({status})")
            continue
        try:
            record = journal.read(run.table, name)
        except (ClientError, BotoCoreError) as exc:
            run.leave(name, f"{what}: the journal of {name} could not be read ({aws.error_code(exc) or 'error'})")
            continue
        if record is not None and record.closed_at is None:
            continue  # (a)'s: left open on purpose, or opened since the scan
        if kind == UNKNOWN and record is None:
            run.leave(
                name, f"{what}: this state machine has no execution {name} (another installation's?): not touched"
            )
            continue
        canary = tags.get(PURPOSE_TAG) == "canary" or started_by.startswith(CANARY_PREFIX)
        _remove_task(run, cluster, task, name, status, canary, record)


def _remove_task(
    run: _Pass,
    cluster: str,
    task: dict[str, Any],
    name: str,
    status: str,
    canary: bool,
    record: journal.Journal | None,
) -> None:
    arn, kind = task["taskArn"], "canary" if canary else "migration"
    if canary:
        try:
            _take_out(run, cluster, task, name, record)
        except (ClientError, BotoCoreError, FerryError) as exc:  # the task keeps running until it is out
            code = aws.error_code(exc) or type(exc).__name__
            run.leave(
                name, f"canary task {arn} of {name} in cluster {cluster}: not taken out of its target groups ({code})"
            )
            return
    try:
        aws.client("ecs").stop_task(
            cluster=cluster,
            task=arn,
            reason=shorten(f"Ferry reaper: {kind} of {name}, which has ended ({status})", 255),
        )
    except (ClientError, BotoCoreError) as exc:
        code = aws.error_code(exc) or type(exc).__name__
        run.leave(name, f"{kind} task {arn} of {name} in cluster {cluster}: not stopped ({code})")
        return
    run.count("canary_tasks" if canary else "migration_tasks")
    run.did(name, f"stopped {kind} task {arn} of {name} in cluster {cluster} (execution {status})")


def _take_out(run: _Pass, cluster: str, task: dict[str, Any], name: str, record: journal.Journal | None) -> None:
    """Deregister the canary's address from every target group that holds it: those of the service the journal
    names, or, without one, those of every service of the cluster (the canary's service is not written on it)."""
    if not task_ip(task):
        return
    if record is not None and record.cluster == cluster and record.ecs_service:
        try:
            services = [describe_service(cluster, record.ecs_service)]
        except ServiceNotFound:
            services = []  # a service deleted since: its target groups are not ECS's to route any more
    else:
        services = _services(run, cluster)
    elb = aws.client("elbv2")
    for group, targets in (pair for service in services for pair in canary_tasks.targets_of(service, [task])):
        for target in targets:
            if (target["Id"], target["Port"]) not in _registered(run, elb, group):
                continue
            try:
                elb.deregister_targets(TargetGroupArn=group, Targets=[target])
            except ClientError as exc:
                if aws.error_code(exc) not in ("InvalidTarget", "TargetGroupNotFound"):
                    raise
                continue  # already out, or the group is gone
            run.registered[group].discard((target["Id"], target["Port"]))
            run.count("targets")
            run.did(name, f"took canary target {target['Id']}:{target['Port']} of {name} out of target group {group}")


def _registered(run: _Pass, elb: Any, group: str) -> set[tuple[str, Any]]:
    """The targets registered in `group` (draining ones aside), read once a pass."""
    if group not in run.registered:
        run.registered[group] = canary_tasks.registered_targets(elb, group)
    return run.registered[group]


def _services(run: _Pass, cluster: str) -> list[dict[str, Any]]:
    """Every service of the cluster, described (ListServices, DescribeServices ten at a time), once a pass."""
    if cluster not in run.services:
        ecs = aws.client("ecs")
        arns = aws.items(ecs, "list_services", "serviceArns", cluster=cluster)
        run.services[cluster] = [
            service
            for batch in aws.batches(arns, DESCRIBE_SERVICES_MAX)
            for service in ecs.describe_services(cluster=cluster, services=batch)["services"]
            if service.get("status") == "ACTIVE"
        ]
    return run.services[cluster]


# ------------------------------------------------------------------ (c) deploy locks


def _lock(run: _Pass, key: str, owner: str) -> None:
    if ":execution:" not in owner:  # not held by an execution (a person's, or a test's): not the reaper's
        return
    name = journal.name_of(owner)
    kind, status = run.execution(owner)
    if kind in (RUNNING, RECENT):
        return
    if kind == UNREADABLE:
        run.leave(name, f"the deploy lock of {key}: whether its owner {name} still runs could not be read ({status})")
        return
    try:
        released = lock.release(run.table, key, owner)
    except FerryError as exc:  # LockUnavailable
        run.leave(name, f"the deploy lock of {key} held by {name}: not released ({type(exc).__name__})")
        return
    if released:  # False: released meanwhile (by (a), or by the execution-ended function)
        run.count("locks")
        run.did(name, f"released the deploy lock of {key} held by {name}, which has ended ({status})")


# ------------------------------------------------------------------ announcing


def _announce(found: Reaped, environment: str) -> None:
    """The Ferry event and the metrics. Never raises: what was done is done, and the log says it."""
    detail = {
        "environment": environment,
        **found.to_dict(),
        "cleaned": [shorten(w, 300) for w in found.cleaned[:MAX_WORDS]],
        "left": [shorten(w, 300) for w in found.left[:MAX_WORDS]],
    }
    try:
        response = aws.client("events").put_events(
            Entries=[{"Source": notify.SOURCE, "DetailType": CLEANED_UP, "Detail": json.dumps(detail, default=str)}]
        )
        if response.get("FailedEntryCount"):
            logger.warning("reaper event not put", extra={"error": response["Entries"][0].get("ErrorCode")})
    except (ClientError, BotoCoreError) as exc:
        logger.warning("reaper event not put", extra={"error": aws.error_code(exc) or type(exc).__name__})
    try:
        record_metrics(found, environment=environment)
    except Exception as exc:  # a metric never fails the pass
        logger.warning("reaper metrics not written", extra={"error": type(exc).__name__})


def metric_document(found: Reaped, *, environment: str) -> dict[str, Any]:
    """The pass's EMF document: OrphanedResources and ReapedResources by {environment}."""
    emf = EphemeralMetrics(namespace=metrics.NAMESPACE, service="")  # service="": no Powertools `service` dimension
    emf.add_dimension(name=metrics.ENVIRONMENT, value=environment)
    emf.add_metric(name=ORPHANED, unit=MetricUnit.Count, value=found.orphaned)
    emf.add_metric(name=REAPED, unit=MetricUnit.Count, value=found.reaped)
    return emf.serialize_metric_set()


def record_metrics(found: Reaped, *, environment: str) -> dict[str, Any]:
    """Write the EMF document where the Logger writes (CloudWatch Logs extracts it on Lambda)."""
    document = metric_document(found, environment=environment)
    if not is_metrics_disabled():
        stream = log_stream()
        stream.write(json.dumps(document, separators=(",", ":")) + "\n")
        stream.flush()
    return document


# ------------------------------------------------------------------ the handler's entry


def scheduled(event: Any, settings: Settings) -> dict[str, Any]:
    """The reaper function: one pass, whatever the event (EventBridge Scheduler's input, template.yaml)."""
    if isinstance(event, dict):
        logger.info(
            "reaper pass",
            extra={k: event.get(k) for k in ("scheduledTime", "executionId", "attemptNumber") if k in event},
        )
    return reap(settings).to_dict()
