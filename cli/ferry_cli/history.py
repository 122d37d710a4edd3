"""Execution histories, printed the way the Step Functions console lists them.

Used by `ferry sandbox run`, `ferry status` and `ferry history`; the rows come from GetExecutionHistory, so the
same code reads executions in a real account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from ferry.errors import cause_text
from ferry.text import shorten

DETAIL_WIDTH = 110


def _detail_key(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _short(text: Any, width: int = DETAIL_WIDTH) -> str:
    return shorten(" ".join(str(text).split()), width)


def error_and_cause(details: dict[str, Any]) -> tuple[str | None, str | None]:
    """An event's error, and its Cause as a person reads it (a Lambda error document's message)."""
    error, cause = details.get("error"), details.get("cause")
    return error, (cause_text(cause) if cause is not None else None)


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
                    return _short(f"{key}: {_readable(output[key])}")
    return ""


def _readable(value: Any) -> str:
    """A value as a person reads it in one line: never a Python repr of a dict or list."""
    if isinstance(value, dict):
        if isinstance(value.get("summary"), str):  # a deploy's summary: its result, then what changed
            return " ".join(str(part) for part in (value.get("result"), value["summary"]) if part)
        return ", ".join(f"{k}={_readable(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
    if isinstance(value, list):
        return ", ".join(_readable(v) for v in value)
    return str(value)


def rows(events: list[dict[str, Any]], to_offset: Callable[[datetime], float]) -> list[dict[str, Any]]:
    """One row per history event: id, simulated offset, type, state, detail."""
    by_id = {e["id"]: e for e in events}
    return [
        {
            "id": event["id"],
            "offset": to_offset(event["timestamp"]),
            "type": event["type"],
            "state": _state_of(event, by_id),
            "detail": describe(event),
        }
        for event in events
    ]


def _state_of(event: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> str:
    """The state an event belongs to: its own name, or that of the StateEntered event it follows from."""
    state = _detail_key(event).get("name")
    parent = by_id.get(event.get("previousEventId"))
    while state is None and parent is not None:
        state = _detail_key(parent).get("name") if parent["type"].endswith("StateEntered") else None
        parent = by_id.get(parent.get("previousEventId"))
    return state or ""


def task_results(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The last result of every Task state (a Lambda's return value, or a callback's output), by state name."""
    by_id = {e["id"]: e for e in events}
    results = {}
    for event in events:
        if event["type"] in ("TaskSucceeded", "LambdaFunctionSucceeded"):
            try:
                results[_state_of(event, by_id)] = json.loads(_detail_key(event).get("output") or "null")
            except ValueError:
                continue
    return results


def progress_printer(out: Any) -> Callable[[str, str, dict[str, Any], float], None]:
    """A sandbox's watch_history: one line per state entered, and one when an execution ends, as they happen."""
    started: dict[str, float] = {}
    endings = {
        "ExecutionSucceeded": "SUCCEEDED",
        "ExecutionFailed": "FAILED",
        "ExecutionAborted": "ABORTED",
        "ExecutionTimedOut": "TIMED_OUT",
    }

    def watch(execution: str, kind: str, details: dict[str, Any], now: float) -> None:
        started.setdefault(execution, now)
        if kind.endswith("StateEntered"):
            state = (details.get("stateEnteredEventDetails") or {}).get("name", "")
            line = state
        elif kind in endings:
            line = endings[kind]
            failed = details.get("executionFailedEventDetails") or details.get("executionAbortedEventDetails") or {}
            if failed.get("error"):
                line += f" {failed['error']}"
        else:
            return
        print(f"{format_offset(now - started[execution])}  {execution}  {line}", file=out, flush=True)

    return watch


def format_offset(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"+{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def table(history_rows: list[dict[str, Any]]) -> str:
    state_width = min(48, max([len(r["state"]) for r in history_rows] + [4]))
    type_width = max([len(r["type"]) for r in history_rows] + [4])
    lines = [f"{'#':>3}  {'time':<9}  {'type':<{type_width}}  {'step':<{state_width}}  detail"]
    for r in history_rows:
        lines.append(
            f"{r['id']:>3}  {format_offset(r['offset']):<9}  {r['type']:<{type_width}}  "
            f"{_short(r['state'], state_width):<{state_width}}  {r['detail']}".rstrip()
        )
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


def superseded(events: list[dict[str, Any]]) -> str | None:
    """Why an execution stepped aside for a newer deploy (the lock step's Superseded Cause), or None."""
    for event in events:
        error, cause = error_and_cause(_detail_key(event))
        if error == "Superseded":
            return cause
    return None


_EXECUTION_ENDS = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


@dataclass
class Trace:
    """The path one execution took through the state machine, read from its history."""

    entered: list[tuple[str, int]] = field(default_factory=list)  # (state, event id) in order
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, how); from "" = the start
    failed: set[str] = field(default_factory=set)
    current: list[str] = field(default_factory=list)  # states the execution is in now, outermost first
    ended: str | None = None  # the Execution* event that ended it

    @property
    def visited(self) -> set[str]:
        return {name for name, _ in self.entered}


def trace(events: list[dict[str, Any]]) -> Trace:
    """Which states were entered, how each was reached, which failed and which are still running.

    A transition's `how` is "start" (the first state), "branch" (the first state of a Map iteration or
    a Parallel branch, reached from the Map or Parallel state), "caught" (left with an error a Catch
    matched) or "next" (every other way). A state failed when its last attempt ended in an error,
    caught or not; a retried error that then succeeded is no failure. The Fail state that ended
    an execution failed too.
    """
    by_id = {e["id"]: e for e in events}
    owner: dict[int, str | None] = {}
    failed: dict[str, bool] = {}
    open_entries: dict[str, int] = {}
    containers: list[str] = []
    result = Trace()
    for event in sorted(events, key=lambda e: e["id"]):
        kind, name = event["type"], _detail_key(event).get("name")
        if kind.endswith("StateEntered"):
            source, how = _reached_from(event, by_id)
            if how == "next" and failed.get(source):
                how = "caught"
            result.transitions.append((source, name, how))
            result.entered.append((name, event["id"]))
            failed[name] = False
            open_entries[name] = open_entries.get(name, 0) + 1
            if kind in ("MapStateEntered", "ParallelStateEntered"):
                containers.append(name)
            owner[event["id"]] = name
            continue
        if kind.endswith("StateExited"):
            owner[event["id"]] = name
            open_entries[name] = max(0, open_entries.get(name, 0) - 1)
            if name in containers:
                del containers[len(containers) - 1 - containers[::-1].index(name)]
            continue
        if kind.startswith("MapIteration") and name:
            state = name
        elif kind.startswith(("MapState", "ParallelState", "MapRun")):
            state = containers[-1] if containers else None
        else:
            state = owner.get(event.get("previousEventId"))
        owner[event["id"]] = state
        if kind in _EXECUTION_ENDS:
            result.ended = kind
        if state is None or kind in ("ExecutionSucceeded", "MapIterationSucceeded"):
            continue
        if kind.endswith(("Failed", "TimedOut", "Aborted")):
            failed[state] = True
        elif kind.endswith(("Scheduled", "Started", "Succeeded")):
            failed[state] = False
    result.failed = {state for state, yes in failed.items() if yes}
    if result.ended is None:
        last_entered = {name: i for i, (name, _) in enumerate(result.entered)}
        result.current = sorted(
            (name for name in last_entered if open_entries.get(name) and not failed.get(name)),
            key=last_entered.__getitem__,
        )
    return result


def _reached_from(event: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> tuple[str, str]:
    parent = by_id.get(event.get("previousEventId"))
    while parent is not None:
        kind, name = parent["type"], _detail_key(parent).get("name")
        if kind.endswith("StateExited"):
            return name, "next"
        if kind.endswith("StateEntered") or (kind.startswith("MapIteration") and name):
            return name, "branch"
        if kind == "ExecutionStarted":
            break
        parent = by_id.get(parent.get("previousEventId"))
    return "", "start"
