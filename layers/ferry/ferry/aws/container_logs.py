"""A container's last log lines, for a Cause a person can act on: read from its awslogs stream, masked, capped.

Migrations and canaries that fail say why in their container's log; Ferry puts the last lines in the failure's
Cause (4 KiB at most), with anything that looks like a credential (`PASSWORD=...`) masked.
"""

from __future__ import annotations

import re
from typing import Any

from ferry import aws

LOG_LINES = 20
LOG_BYTES = 4096
# Lines that look like they carry a credential are masked before they reach a Cause.
_SECRETISH = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|private[_-]?key|credential)(\S*\s*[=:]\s*)\S+")


def config(task_definition_arn: str, container: str) -> dict[str, str] | None:
    """Where the container's awslogs stream lives: {group, region, prefix}, or None without awslogs."""
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
    }


def tail(logs: dict[str, str] | None, container: str, task_arn: str, limit: int = LOG_LINES) -> tuple[list[str], str]:
    """The container's last log lines (masked, capped) and where they came from."""
    if not logs or not logs.get("group"):
        return [], "the container does not log to CloudWatch (awslogs)"
    task_id = task_arn.rsplit("/", 1)[-1]
    stream = f"{logs['prefix']}/{container}/{task_id}" if logs.get("prefix") else task_id
    where = f"{logs['group']} {stream}"
    client = aws.client("logs") if not logs.get("region") else aws.regional_client("logs", logs["region"])
    try:
        events = _last_events(client, logs["group"], stream, limit)
    except client.exceptions.ResourceNotFoundException:
        return [], f"no log stream {where}"
    lines = [_SECRETISH.sub(r"\1\2***", e["message"].rstrip()) for e in events]
    kept: list[str] = []
    for line in reversed(lines):
        if sum(len(x) + 1 for x in kept) + len(line) > LOG_BYTES:
            break
        kept.insert(0, line[:500])
    return kept, where


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
