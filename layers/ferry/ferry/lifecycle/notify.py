"""Deploy notifications: each deploy's start and end, as Ferry's own EventBridge events and on SNS.

Every start and end goes to the account's default event bus, with source
`ferry` and detail-type "Ferry Deploy Started" or "Ferry Deploy Ended", so
anyone can route them with a rule. A service whose config names
`notifications.snsTopicArn` also gets them on that topic, filtered by
`notifications.events`; a failed rollback is always sent there.

The execution-ended function calls this after its own work (lock, canary,
migrations, manifest result), and a failure here is logged, never raised: a
lost notification must not hold up a lock release.

Nothing published carries a secret value: Causes are written without them
(a failed migration's or canary's Cause names its masked log tail in the
artefacts bucket and quotes no line: ferry.aws.container_logs), the summary
line masks them, and the request's `values` are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry.aws import artefacts
from ferry import aws, states
from ferry.errors import cause_text
from ferry.runtime.observability import logger
from ferry.text import shorten

SOURCE = "ferry"
STARTED = "Ferry Deploy Started"
ENDED = "Ferry Deploy Ended"
SUPERSEDED_STATE = states.SUPERSEDED
MAX_CAUSE_CHARS = 2000  # kept from both ends: a RollbackFailed Cause ends with the command that puts it back
MAX_ERROR_CHARS = 256
MAX_TEXT_CHARS = 256  # reason, commit
MAX_SUBJECT_CHARS = 100  # SNS's limit

# `notifications.events` of the service config: which ones reach the SNS topic.
EVENTS = ("started", "succeeded", "failed", "rolledBack")
# The result of an ended deploy -> the `notifications.events` entry that asks for it (None: always sent).
RESULTS: dict[str, str | None] = {
    "SUCCEEDED": "succeeded",
    "SUPERSEDED": "succeeded",  # the execution succeeded; nothing was changed
    "FAILED": "failed",
    "ABORTED": "failed",
    "TIMED_OUT": "failed",
    "ROLLED_BACK": "rolledBack",
    "ROLLBACK_FAILED": None,  # a person must act: always sent, whatever `events` says
}
_TRIGGER_KEYS = ("type", "repository", "tag", "digest", "bucket", "key", "requestedAt")
_CONSOLE = {
    "aws": "console.aws.amazon.com",
    "aws-us-gov": "console.amazonaws-us-gov.com",
    "aws-cn": "console.amazonaws.cn",
}


@dataclass(frozen=True)
class Execution:
    """One deploy execution, as Step Functions' status change event and (once it ended) its history tell it."""

    name: str
    arn: str
    status: str
    request: dict[str, Any]
    started_ms: int | None = None
    stopped_ms: int | None = None
    error: str | None = None
    cause: str | None = None
    output: Any = None
    history: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @classmethod
    def from_event(cls, detail: dict[str, Any], history: tuple[dict[str, Any], ...] = ()) -> "Execution":
        request = _json(detail.get("input"))
        return cls(
            name=str(detail.get("name") or detail["executionArn"].rsplit(":", 1)[-1]),
            arn=detail["executionArn"],
            status=str(detail.get("status") or ""),
            request=request if isinstance(request, dict) else {},
            started_ms=_int(detail.get("startDate")),
            stopped_ms=_int(detail.get("stopDate")),
            error=detail.get("error"),
            cause=detail.get("cause"),
            output=_json(detail.get("output")),
            history=tuple(history),
        )

    @property
    def service(self) -> str | None:
        name = self.request.get("service")
        return name if isinstance(name, str) and name else None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    @property
    def result(self) -> str | None:
        """SUCCEEDED, SUPERSEDED, FAILED, ROLLED_BACK, ROLLBACK_FAILED, ABORTED or TIMED_OUT; None while running."""
        if self.status == "SUCCEEDED":
            # Superseded ends in a Succeed state that keeps the whole state (with `superseded`); Deployed's
            # output is the deploy's summary. Without an output (too big for the event), the history tells.
            superseded = isinstance(self.output, dict) and "superseded" in self.output
            return "SUPERSEDED" if superseded or SUPERSEDED_STATE in self.entered() else "SUCCEEDED"
        if self.status == "FAILED":
            return {"RolledBack": "ROLLED_BACK", "RollbackFailed": "ROLLBACK_FAILED"}.get(self.error or "", "FAILED")
        if self.status in ("ABORTED", "TIMED_OUT"):
            return self.status
        return None

    @property
    def duration(self) -> float | None:
        if self.started_ms is None or self.stopped_ms is None:
            return None
        return max(0.0, (self.stopped_ms - self.started_ms) / 1000)

    def entered(self) -> list[str]:
        """The states entered, in order."""
        return [e["stateEnteredEventDetails"].get("name", "") for e in self.history if "stateEnteredEventDetails" in e]

    def summary(self) -> str | None:
        """The one-line diff Render (or the rollback target) wrote, from the output or the latest state that has it."""
        if isinstance(self.output, dict) and isinstance(self.output.get("summary"), str):
            return self.output["summary"] or None
        for event in reversed(self.history):
            for key, text_key in (("stateExitedEventDetails", "output"), ("stateEnteredEventDetails", "input")):
                text = (event.get(key) or {}).get(text_key)
                if not isinstance(text, str) or '"summary"' not in text:
                    continue
                state = _json(text)
                render = state.get("render") if isinstance(state, dict) else None
                if isinstance(render, dict) and isinstance(render.get("summary"), str):
                    return render["summary"] or None
        return None


def history(execution_arn: str) -> tuple[dict[str, Any], ...]:
    """The execution's history, oldest first; empty (and logged) when it cannot be read."""
    events: list[dict[str, Any]] = []
    try:
        pages = (
            aws.client("stepfunctions")
            .get_paginator("get_execution_history")
            .paginate(executionArn=execution_arn, PaginationConfig={"PageSize": 1000})
        )
        for page in pages:
            events.extend(page.get("events", []))
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "execution history could not be read", extra={"error": aws.error_code(exc) or type(exc).__name__}
        )
        return ()
    return tuple(events)


def recorded(history: tuple[dict[str, Any], ...] | list[dict[str, Any]], key: str) -> Any:
    """`key` of the latest state in the history that has it (a state's output as it exited, or its input as it
    entered): what the execution recorded, e.g. `register` (the new revision) or `canary` (the tasks it started)."""
    for event in reversed(history):
        for details, text_key in (("stateExitedEventDetails", "output"), ("stateEnteredEventDetails", "input")):
            text = (event.get(details) or {}).get(text_key)
            if not isinstance(text, str) or f'"{key}"' not in text:
                continue
            state = _json(text)
            if isinstance(state, dict) and key in state:
                return state[key]
    return None


def short_cause(cause: str | None) -> str | None:
    """The Cause to read (a Lambda error document's errorMessage), at most MAX_CAUSE_CHARS, its start and end kept."""
    cause = cause_text(cause)
    if not cause:
        return None
    cause = cause.strip()
    if len(cause) <= MAX_CAUSE_CHARS:
        return cause
    tail = MAX_CAUSE_CHARS // 4
    return cause[: MAX_CAUSE_CHARS - tail - 3].rstrip() + " … " + cause[-tail:].lstrip()


def detail(
    execution: Execution,
    *,
    environment: str,
    artefacts_bucket: str,
    cluster: str | None = None,
    ecs_service: str | None = None,
) -> dict[str, Any]:
    """The event's detail: what was asked for, where to look, and (once ended) how it ended."""
    request = execution.request
    images = request.get("images")
    trigger = request.get("trigger") if isinstance(request.get("trigger"), dict) else {}
    found: dict[str, Any] = {
        "environment": environment,
        "service": execution.service,
        "cluster": cluster,
        "ecsService": ecs_service,
        "execution": execution.name,
        "executionArn": execution.arn,
        "action": "rollback" if request.get("action") == "rollback" else "deploy",
        "images": {str(k): v for k, v in images.items() if isinstance(v, str)} if isinstance(images, dict) else {},
        "trigger": {k: trigger[k] for k in _TRIGGER_KEYS if isinstance(trigger.get(k), (str, int, float))},
        "commit": _text(request.get("commit")),
        "reason": _text(request.get("reason")),
        "startedAt": _iso(execution.started_ms),
        "consoleUrl": console_url(execution.arn),
        "artefacts": f"s3://{artefacts_bucket}/{artefacts.key(execution.name, '')}",
    }
    if not execution.running:
        found.update(
            {
                "result": execution.result,
                "error": execution.error[:MAX_ERROR_CHARS] if isinstance(execution.error, str) else None,
                "cause": short_cause(execution.cause),
                "endedAt": _iso(execution.stopped_ms),
                "durationSeconds": None if execution.duration is None else round(execution.duration),
                "summary": execution.summary(),
            }
        )
    return found


def sns_topic(notifications: Any, execution: Execution) -> str | None:
    """The config's topic, when its `notifications.events` asks for this start or end (a failed rollback: always)."""
    if not isinstance(notifications, dict) or not isinstance(notifications.get("snsTopicArn"), str):
        return None
    wanted = notifications.get("events")
    wanted = EVENTS if not isinstance(wanted, list) else wanted
    event = "started" if execution.running else RESULTS.get(execution.result or "", "failed")
    return notifications["snsTopicArn"] if event is None or event in wanted else None


def sns_message(detail_type: str, found: dict[str, Any]) -> dict[str, Any]:
    """Publish arguments: readable text by default, the event's JSON for SQS, Lambda and HTTP(S) subscribers,
    and attributes to filter subscriptions on."""
    service = found.get("service") or "?"
    where = f"{found['cluster']}/{found['ecsService']}" if found.get("cluster") else service
    result = found.get("result")
    if detail_type == STARTED:
        subject, first = f"deploy of {service} started", f"Deploy of {service} ({where}) started."
    elif result == "ROLLBACK_FAILED":
        subject = f"ROLLBACK FAILED on {service}: a person must act"
        first = f"ROLLBACK FAILED on {service} ({where}): a person must act."
    else:
        said = {
            "SUCCEEDED": "deployed",
            "SUPERSEDED": "superseded by a newer deploy",
            "ROLLED_BACK": "rolled back",
            "FAILED": "deploy failed",
            "ABORTED": "deploy aborted",
            "TIMED_OUT": "deploy timed out",
        }.get(result, result)
        subject = f"{service} {said}" + (
            f" ({found['error']})" if found.get("error") and result != "ROLLED_BACK" else ""
        )
        first = f"{service} ({where}): {said}."
    lines = [first, "", f"Result: {result or 'STARTED'}", f"Execution: {found['execution']}"]
    lines += [f"Image {c}: {i}" for c, i in sorted(found.get("images", {}).items())]
    for label, key in (
        ("Change", "summary"),
        ("Duration (s)", "durationSeconds"),
        ("Error", "error"),
        ("Cause", "cause"),
        ("Console", "consoleUrl"),
        ("Artefacts", "artefacts"),
    ):
        if found.get(key) not in (None, ""):
            lines.append(f"{label}: {found[key]}")
    event = json.dumps({"source": SOURCE, "detail-type": detail_type, "detail": found}, default=str)
    # SNS takes an ASCII subject of at most 100 characters, with no line breaks.
    subject = " ".join(f"Ferry {found.get('environment', '')}: {subject}".split()).encode("ascii", "replace").decode()
    attributes = {"service": service, "result": result or "STARTED", "environment": found.get("environment") or "?"}
    return {
        "Subject": shorten(subject, MAX_SUBJECT_CHARS, "..."),
        "MessageStructure": "json",
        "Message": json.dumps(
            {"default": "\n".join(lines), "sqs": event, "lambda": event, "http": event, "https": event}
        ),
        "MessageAttributes": {k: {"DataType": "String", "StringValue": str(v)} for k, v in attributes.items()},
    }


def publish(detail_type: str, found: dict[str, Any], topic_arn: str | None = None) -> dict[str, Any]:
    """Put the event on the default bus, and on the topic when one is given. Never raises: says what went out."""
    sent: dict[str, Any] = {"event": False, "sns": None}
    try:
        response = aws.client("events").put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(found, default=str),
                    "Resources": [found["executionArn"]],
                }
            ]
        )
        failed = [e for e in response.get("Entries", []) if e.get("ErrorCode")]
        if response.get("FailedEntryCount") or failed:
            logger.warning("deploy event not put", extra={"error": failed[0].get("ErrorCode") if failed else None})
        else:
            sent["event"] = True
    except (ClientError, BotoCoreError) as exc:
        logger.warning("deploy event not put", extra={"error": aws.error_code(exc) or type(exc).__name__})
    if topic_arn:
        sent["sns"] = False
        try:
            aws.client("sns").publish(TopicArn=topic_arn, **sns_message(detail_type, found))
            sent["sns"] = True
        except (ClientError, BotoCoreError) as exc:
            # AccessDenied: the topic is not in the stack's NotificationTopicArns (or its KMS key refuses Ferry).
            logger.warning(
                "deploy notification not published to SNS",
                extra={"topic": topic_arn, "error": aws.error_code(exc) or type(exc).__name__},
            )
    return sent


def announce(execution: Execution, *, environment: str, artefacts_bucket: str, config: Any = None) -> dict[str, Any]:
    """Publish this start or end; `config` is the service's config when it could be loaded."""
    found = detail(
        execution,
        environment=environment,
        artefacts_bucket=artefacts_bucket,
        cluster=getattr(config, "cluster", None),
        ecs_service=getattr(config, "service", None),
    )
    raw = getattr(config, "raw", None)
    topic = sns_topic(raw.get("notifications") if isinstance(raw, dict) else None, execution)
    sent = publish(STARTED if execution.running else ENDED, found, topic)
    return {"result": found.get("result"), **sent}


def console_url(execution_arn: str) -> str | None:
    parts = execution_arn.split(":")
    if len(parts) < 4 or parts[1] not in _CONSOLE:
        return None
    region = parts[3]
    return f"https://{region}.{_CONSOLE[parts[1]]}/states/home?region={region}#/v2/executions/details/{execution_arn}"


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT_CHARS] if isinstance(value, str) and value else None


def _iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
