"""Deploy requests, as both triggers make them: an execution of the state machine per service, named after the
event that asked for it, with a one-line summary; and the log line of an event that asks for nothing.

Execution names are derived from the event, so EventBridge's at-least-once delivery of the same push or drop
cannot start a second deploy: Step Functions refuses a name it has already seen (ExecutionAlreadyExists).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from ferry import aws
from ferry.runtime import clock
from ferry.runtime.observability import logger
from ferry.text import shorten

NAME_LIMIT = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
ECHO = 80  # characters of an event's value repeated in a log line


def shown(value: Any) -> str:
    return shorten(repr(value), ECHO)


def ignored(event: Any, reason: str) -> None:
    """The one log line of an event the router starts nothing for, saying why."""
    fields = event if isinstance(event, dict) else {}
    logger.info(
        f"event ignored: {reason}",
        extra={
            name: value[:ECHO] if isinstance(value, str) else None
            for name, value in (
                ("eventId", fields.get("id")),
                ("source", fields.get("source")),
                ("detailType", fields.get("detail-type")),
            )
        },
    )


def event_time(event: dict[str, Any]) -> float:
    """When the push or drop happened (EventBridge's `time`, to the second), on the clock of executions' StartTime,
    which orders manual deploys: requests of both kinds are compared, a tie by their executions' starts
    (ferry.steps.lock.DeployOrder)."""
    try:
        return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return clock.now()


def execution_name(service: str, label: str, event_id: str) -> str:
    """<service>-<tag>-<hash of event and service>, at most 80 characters of [A-Za-z0-9_-]."""
    digest = hashlib.sha256(f"{event_id}|{service}|{label}".encode()).hexdigest()[:12]
    stem = _UNSAFE.sub("-", f"{service}-{label}").strip("-")
    return f"{stem[: NAME_LIMIT - len(digest) - 1]}-{digest}"


def request_summary(service: str, images: dict[str, str], how: str) -> str:
    """One line for the execution's input, e.g. 'deploy web: app=web:v2 (ECR push)'; digests are left out."""
    shown = ", ".join(f"{c}={uri.rsplit('/', 1)[-1].split('@', 1)[0]}" for c, uri in sorted(images.items()))
    return f"deploy {service}: {shown} ({how})"[:300]


def start(state_machine_arn: str, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    started = []
    for plan in plans:
        try:
            arn = sfn.start_execution(
                stateMachineArn=state_machine_arn, name=plan["name"], input=json.dumps(plan["input"])
            )["executionArn"]
            started.append({"service": plan["input"]["service"], "executionArn": arn, "duplicate": False})
        except sfn.exceptions.ExecutionAlreadyExists:
            started.append({"service": plan["input"]["service"], "executionName": plan["name"], "duplicate": True})
    return started
