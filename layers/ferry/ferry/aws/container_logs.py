"""A container's last log lines, kept where a person can read them: masked, in the artefacts bucket.

Migrations and canaries that fail say why in their container's log. Ferry reads the last lines of its awslogs
stream, masks what looks like a credential (ferry.text.mask: DSNs, Authorization headers, JWTs, AWS keys,
NAME=value pairs whose name looks secret, and the task definition's own secret-looking environment values), and
writes them to the artefacts bucket, executions/<execution>/logs/<task id>.txt. The failure's Cause names that
object and the CloudWatch Logs stream, and carries no log line: a Cause goes on to the execution's history, the
manifest's result, Ferry's events and the service's SNS topic, each read by more people than the service's team,
and masking recognises the shapes of credentials, not every credential (a bare password on a line of its own is
masked only when it is a value the task definition sets). Not even the last line goes there as a hint: it is the
line most likely to repeat the configuration that failed (a connection error quoting its DSN, a stack trace
quoting an argument), and the Cause already says how the task ended (exit code, stop code, stopped reason).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.text import fingerprint, looks_secret, mask

LOG_LINES = 100
LOG_BYTES = 32 * 1024
LINE_CHARS = 2000  # a longer line is cut (after masking: a cut never leaves half a credential unmasked)


def config(task_definition_arn: str, container: str) -> dict[str, Any] | None:
    """Where the container's awslogs stream lives: {group, region, prefix, mask}, or None without awslogs.

    `mask` holds fingerprints (ferry.text.fingerprint), not values, of the container's environment values whose
    names look secret: the record a waiting migration keeps in the lock table carries this, and tail masks those
    values wherever they appear, where the task-stopped function (which may not read task definitions) reads the
    log."""
    td = aws.client("ecs").describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
    cd = next((c for c in td["containerDefinitions"] if c["name"] == container), None)
    lc = (cd or {}).get("logConfiguration") or {}
    if lc.get("logDriver") != "awslogs":
        return None
    opts = lc.get("options") or {}
    return {
        "group": opts.get("awslogs-group", ""),
        "region": opts.get("awslogs-region", ""),
        "prefix": opts.get("awslogs-stream-prefix", ""),
        "mask": sorted(
            {
                fingerprint(str(e["value"]))
                for e in (cd or {}).get("environment") or []
                if looks_secret(str(e.get("name", ""))) and e.get("value")
            }
        ),
    }


def stream_of(logs: dict[str, Any], container: str, task_arn: str) -> str:
    """The awslogs stream of the task's container: <prefix>/<container>/<task id>, or the task id without a prefix."""
    task_id = task_arn.rsplit("/", 1)[-1]
    return f"{logs['prefix']}/{container}/{task_id}" if logs.get("prefix") else task_id


def tail(
    logs: dict[str, Any] | None, container: str, task_arn: str, limit: int = LOG_LINES, known: Iterable[str] = ()
) -> tuple[list[str], str]:
    """The container's last log lines (masked, capped) and where they came from. `known`: values to mask wherever
    they appear (besides those the config's `mask` names)."""
    if not logs or not logs.get("group"):
        return [], "the container does not log to CloudWatch (awslogs)"
    stream = stream_of(logs, container, task_arn)
    where = f"{logs['group']} {stream}"
    client = aws.client("logs") if not logs.get("region") else aws.regional_client("logs", logs["region"])
    try:
        events = _last_events(client, logs["group"], stream, limit)
    except client.exceptions.ResourceNotFoundException:
        return [], f"no log stream {where}"
    # Masked as one text: a private key's lines, or a value split over two events, are masked whole.
    text = mask("\n".join(str(e["message"]).rstrip() for e in events), known, logs.get("mask") or ())
    kept: list[str] = []
    size = 0
    for line in reversed(text.split("\n")[-limit:] if events else []):
        line = line[:LINE_CHARS]
        if size + len(line) + 1 > LOG_BYTES:
            break
        kept.append(line)
        size += len(line) + 1
    return kept[::-1], where


@dataclass(frozen=True)
class Kept:
    """A failed task's log tail as a Cause refers to it: where it was copied to and where it came from."""

    lines: int  # how many were kept
    where: str  # "<group> <stream>", or why there are none
    artefact: str | None = None  # s3://<bucket>/executions/<execution>/logs/<task id>.txt
    not_copied: str | None = None  # why the tail is not in the artefacts bucket

    @property
    def sentence(self) -> str:
        """One sentence for a Cause: the reference, never the lines."""
        if not self.lines:
            return f"No log lines: {self.where}."
        count = f"{self.lines} log line{'' if self.lines == 1 else 's'}"
        if self.artefact:
            return f"Its last {count}, masked: {self.artefact} (from CloudWatch Logs {self.where})."
        return f"Its last {count} are in CloudWatch Logs {self.where}" + (
            f" (not copied to the artefacts bucket: {self.not_copied})." if self.not_copied else "."
        )


def keep(
    logs: dict[str, Any] | None,
    container: str,
    task_arn: str,
    execution: str | None,
    known: Iterable[str] = (),
    bucket: str | None = None,
) -> Kept:
    """Read the container's tail (masked) and write it to the artefacts bucket (`bucket`, else $ARTEFACTS_BUCKET)
    as executions/<execution>/logs/<task id>.txt; what a Cause says of it. Without an execution (`ferry run`) or
    a bucket, nothing is written and the Cause names the log stream; a write that fails is logged and said."""
    lines, where = tail(logs, container, task_arn, known=known)
    if not lines:
        return Kept(0, where)
    bucket = bucket or os.environ.get("ARTEFACTS_BUCKET")
    if not execution or not bucket:
        return Kept(len(lines), where)
    from ferry.aws import artefacts

    header = f"# the last {len(lines)} log lines of container {container} of task {task_arn}, masked\n"
    header += f"# from CloudWatch Logs {where}\n"
    try:
        key = artefacts.put_text(
            bucket, execution, f"logs/{task_arn.rsplit('/', 1)[-1]}.txt", header + "\n".join(lines) + "\n"
        )
    except (ClientError, BotoCoreError) as exc:
        from ferry.runtime.observability import logger

        reason = aws.error_code(exc) or type(exc).__name__
        logger.warning("a task's log tail could not be written to the artefacts bucket", extra={"error": reason})
        return Kept(len(lines), where, not_copied=reason)
    return Kept(len(lines), where, artefact=f"s3://{bucket}/{key}")


# GetLogEvents "can return empty results while there are more log events available through the token" (CloudWatch
# Logs API reference): follow the backward token, a bounded number of times (a step has a minute), until `limit`
# events are read or the token comes back unchanged (the stream's start).
LOG_PAGES = 10


def _last_events(client: Any, group: str, stream: str, limit: int) -> list[dict[str, Any]]:
    """The stream's last `limit` events, oldest first."""
    request: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "limit": limit, "startFromHead": False}
    events: list[dict[str, Any]] = []
    for _ in range(LOG_PAGES):
        page = client.get_log_events(**request)
        events = list(page.get("events") or []) + events
        token = page.get("nextBackwardToken")
        if len(events) >= limit or not token or token == request.get("nextToken"):
            break
        request = {**request, "limit": limit - len(events), "nextToken": token}
    return events[-limit:]


# How a task that ECS (or someone) stopped before the migration finished is told: stop code -> who stopped it.
# A container that traps SIGTERM can exit 0 on such a stop: only EssentialContainerExited with the migration's
# own container exiting 0 is a finished migration (botocore's ECS model, TaskStopCode, lists the codes).
