"""Execution histories, printed the way the Step Functions console lists them.

Used by `ferry sandbox run`; the rows come from GetExecutionHistory, so the
same code reads executions in a real account.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

DETAIL_WIDTH = 110


def _detail_key(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _short(text: Any, width: int = DETAIL_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _readable_cause(cause: str) -> str:
    """Lambda errors arrive as JSON; show their message."""
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return parsed["errorMessage"]
    return cause


def error_and_cause(details: dict[str, Any]) -> tuple[str | None, str | None]:
    error, cause = details.get("error"), details.get("cause")
    return error, (_readable_cause(cause) if cause is not None else None)


def describe(event: dict[str, Any]) -> str:
    details = _detail_key(event)
    kind = event["type"]
    if "error" in details or "cause" in details:
        error, cause = error_and_cause(details)
        return _short(f"{error}: {cause}" if cause else str(error))
    if kind.endswith("StateExited") and "output" in details:
        return ""
    if kind == "ExecutionStarted":
        try:
            payload = json.loads(details.get("input") or "{}")
        except ValueError:
            payload = {}
        parts = [f"service {payload['service']}"] if payload.get("service") else []
        parts += [f"{c}={i.rsplit('/', 1)[-1]}" for c, i in sorted((payload.get("images") or {}).items())]
        return _short(", ".join(parts))
    if kind in ("TaskSucceeded", "LambdaFunctionSucceeded"):
        try:
            output = json.loads(details.get("output") or "null")
        except ValueError:
            return ""
        if isinstance(output, dict):
            for key in ("summary", "state", "revision"):
                if key in output:
                    return _short(f"{key}: {output[key]}")
    return ""


def rows(events: list[dict[str, Any]], to_offset: Callable[[datetime], float]) -> list[dict[str, Any]]:
    """One row per history event: id, simulated offset, type, state, detail."""
    by_id = {e["id"]: e for e in events}
    out = []
    for event in events:
        details = _detail_key(event)
        state = details.get("name")
        if state is None:
            parent = by_id.get(event.get("previousEventId"))
            while parent is not None and state is None:
                state = _detail_key(parent).get("name") if parent["type"].endswith("StateEntered") else None
                parent = by_id.get(parent.get("previousEventId"))
        out.append({"id": event["id"], "offset": to_offset(event["timestamp"]), "type": event["type"],
                    "state": state or "", "detail": describe(event)})
    return out


def format_offset(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"+{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def table(history_rows: list[dict[str, Any]]) -> str:
    state_width = min(48, max([len(r["state"]) for r in history_rows] + [4]))
    type_width = max([len(r["type"]) for r in history_rows] + [4])
    lines = [f"{'#':>3}  {'time':<9}  {'type':<{type_width}}  {'step':<{state_width}}  detail"]
    for r in history_rows:
        lines.append(f"{r['id']:>3}  {format_offset(r['offset']):<9}  {r['type']:<{type_width}}  "
                     f"{_short(r['state'], state_width):<{state_width}}  {r['detail']}".rstrip())
    return "\n".join(lines)


def entered_states(events: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def transitions(events: list[dict[str, Any]]) -> int:
    """State transitions as Step Functions Standard bills them: every state entered, plus every retry."""
    entered = sum(1 for e in events if e["type"].endswith("StateEntered"))
    scheduled: dict[int, int] = {}
    current = None
    for e in events:
        if e["type"].endswith("StateEntered"):
            current = e["id"]
        elif e["type"] in ("TaskScheduled", "LambdaFunctionScheduled") and current is not None:
            scheduled[current] = scheduled.get(current, 0) + 1
    retries = sum(n - 1 for n in scheduled.values() if n > 1)
    return entered + retries


def outcome(events: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The Error and Cause the execution ended with (None, None) when it did not fail."""
    for event in reversed(events):
        if event["type"] in ("ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            return error_and_cause(_detail_key(event))
    return None, None
