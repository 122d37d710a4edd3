"""`ferry status` and `ferry history`: the deploy state machine's executions, read back.

Both read the AWS account of the usual environment (the state machine of Ferry's stack, found as
`ferry deploy` finds it) or a sandbox world, where the given events and manifests are delivered
first: a sandbox starts with no executions.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from botocore.exceptions import ClientError

from . import graph, history
from .local import CommandError, _installation, target

SCAN_LIMIT = 1000  # executions looked at, newest first, to find a service's or a name's
SUMMARY_WIDTH = 100
NAME_LIMIT = 80  # Step Functions' limit on execution names; the router's names end in -<12 hex>
FAILURE_SUFFIXES = ("Failed", "TimedOut", "Aborted")


@dataclass(frozen=True)
class Clock:
    """Execution times as the user reads them: the account's own clock, or the sandbox's simulated one."""

    speed: float = 1.0
    anchor: tuple[datetime, datetime] | None = None  # one moment, on the wall clock and on the clock shown

    def at(self, moment: datetime) -> datetime:
        moment = moment.astimezone(timezone.utc)
        if self.anchor is None:
            return moment
        real, shown = self.anchor
        return shown + (moment - real) * self.speed

    def now(self) -> datetime:
        return self.at(datetime.now(timezone.utc))

    def seconds(self, start: datetime, end: datetime) -> float:
        return (end - start).total_seconds() * self.speed


@dataclass
class Source:
    sfn: Any
    state_machine_arn: str
    clock: Clock
    poll: float
    wait: Callable[[float], None] = time.sleep  # between two looks (the sandbox's world runs meanwhile)
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


@dataclass
class Execution:
    arn: str
    name: str
    status: str
    start_date: datetime  # as the API gave it
    started: datetime  # on the clock shown
    seconds: float  # how long it ran, or has run so far
    service: str | None  # the service's name in the config registry, from the input
    target: str | None  # cluster/service, once the render step has read the config
    summary: str
    error: str | None = None
    cause: str | None = None
    events: list[dict[str, Any]] | None = field(default=None, repr=False)

    def offsets(self, clock: Clock):
        return lambda ts: clock.seconds(self.start_date, ts)

    def as_json(self) -> dict[str, Any]:
        found = {
            "name": self.name,
            "executionArn": self.arn,
            "service": self.service,
            "target": self.target,
            "status": self.status,
            "started": self.started.isoformat(),
            "seconds": round(self.seconds, 1),
            "summary": self.summary,
            "error": self.error,
            "cause": self.cause,
            "states": None,
            "current": None,
        }
        if self.events is not None:  # null when the history was not read
            found["states"] = history.entered_states(self.events)
            found["current"] = history.trace(self.events).current
        return found


# ---------------------------------------------------------------- reading


@contextmanager
def source(args) -> Iterator[Source]:
    """The account's state machine, or a sandbox's once the given deliveries have started their executions."""
    deliveries = getattr(args, "deliveries", None) or []
    if args.world is None:
        if deliveries:
            raise CommandError("--event and --manifest are delivered to a sandbox world: give --world too")
        from ferry import aws

        with target(None):
            installation = _installation(args)
            yield Source(aws.client("stepfunctions"), installation.state_machine_arn, Clock(), args.interval or 5.0)
        return
    state = getattr(args, "state", None)
    if not deliveries and state is None:
        raise CommandError(
            "a sandbox world has no executions until something starts one: "
            "give --event or --manifest to deliver first, or --state DIR to look at a kept sandbox"
        )
    from .sandbox.run import deliver_all, load_delivery, world_session

    loaded = [load_delivery(kind, path) for kind, path in deliveries]
    with world_session(args.world, speed=args.speed, state=state) as (sandbox, world):
        deliver_all(sandbox, world, loaded)
        if loaded and sandbox.journal is not None:
            sandbox.journal.record_deliveries(args.command, loaded)
        if not getattr(args, "follow", False):
            sandbox.wait_for_executions()
        # Histories are on the sandbox's simulated clock, and time passes there only while the world runs: each
        # look lets it run on for `interval` simulated seconds.
        yield Source(
            sandbox.client("stepfunctions"),
            sandbox.state_machine_arn,
            Clock(),
            args.interval or 5.0,
            wait=sandbox.clock.sleep,
            now=sandbox.clock.now_datetime,
        )


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def name_prefix(service: str) -> str:
    """How a service's execution names start: `<service>-<tag>-…` (router), `<service>-manual-…` (ferry deploy)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{service}-").lstrip("-")[: NAME_LIMIT - 13]


def _listed(src: Source) -> Iterator[dict[str, Any]]:
    """ListExecutions, newest first, at most SCAN_LIMIT."""
    seen = 0
    pages = src.sfn.get_paginator("list_executions").paginate(
        stateMachineArn=src.state_machine_arn, PaginationConfig={"PageSize": 100}
    )
    for page in pages:
        for item in sorted(page["executions"], key=lambda e: e["startDate"], reverse=True):
            yield item
            seen += 1
            if seen >= SCAN_LIMIT:
                return


def recent(src: Source, *, service: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """DescribeExecution of the latest executions, of one service when `service` is given."""
    found: list[dict[str, Any]] = []
    prefix = name_prefix(service) if service else ""
    for item in _listed(src):
        if len(found) >= limit:
            break
        if not item["name"].startswith(prefix):
            continue
        described = src.sfn.describe_execution(executionArn=item["executionArn"])
        payload = _json(described.get("input"))
        if service and not (isinstance(payload, dict) and payload.get("service") == service):
            continue
        found.append(described)
    return found


def find(src: Source, text: str) -> dict[str, Any]:
    """An execution by ARN, by name, or by the start of its name when that names one execution."""
    if text.startswith("arn:"):
        arn = text
    else:
        arn = src.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{text}"
    try:
        return src.sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ExecutionDoesNotExist", "InvalidArn") or text.startswith("arn:"):
            raise CommandError(f"no execution {text}: {exc.response['Error']['Message']}") from exc
    matches = [e for e in _listed(src) if e["name"].startswith(text)]
    if len(matches) == 1:
        return src.sfn.describe_execution(executionArn=matches[0]["executionArn"])
    machine = src.state_machine_arn.rsplit(":", 1)[-1]
    if not matches:
        raise CommandError(
            f"no execution of {machine} is named {text} or starts so "
            f"(among its latest {SCAN_LIMIT}); `ferry history` lists them"
        )
    names = ", ".join(m["name"] for m in matches[:5]) + (", …" if len(matches) > 5 else "")
    raise CommandError(f"{text} starts {len(matches)} execution names ({names}): give more of the name")


def events_of(src: Source, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in src.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def definition_of(src: Source, arn: str) -> dict[str, Any]:
    """The definition the execution ran (the state machine may have been updated since)."""
    return json.loads(src.sfn.describe_state_machine_for_execution(executionArn=arn)["definition"])


def _short_image(uri: str) -> str:
    return re.sub(r"(sha256:[0-9a-f]{8})[0-9a-f]+", r"\1…", uri.rsplit("/", 1)[-1])


def request_summary(payload: Any) -> str:
    """What the input asked for, when nothing better is known: `deploy web: app=web:v2@sha256:00261f24…`."""
    if not isinstance(payload, dict) or not payload.get("service"):
        return ""
    if payload.get("action") == "rollback":
        return f"rollback of {payload['service']}"
    images = ", ".join(f"{c}={_short_image(str(i))}" for c, i in sorted((payload.get("images") or {}).items()))
    return f"deploy {payload['service']}" + (f": {images}" if images else "")


def _render(document: Any) -> dict[str, Any] | None:
    render = document.get("render") if isinstance(document, dict) else None
    return render if isinstance(render, dict) and render.get("summary") else None


def render_of(described: dict[str, Any], events: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What the render step decided, from the output or the last state output that has it ({} before it ran)."""
    found = _render(_json(described.get("output")))
    for event in reversed(events or []):
        if found:
            break
        if event["type"].endswith("StateExited"):
            found = _render(_json(event["stateExitedEventDetails"].get("output")))
    return found or {}


def load(src: Source, described: dict[str, Any], *, events: bool) -> Execution:
    """An execution as shown; with `events`, its history is read too (summary, error, progress)."""
    found = events_of(src, described["executionArn"]) if events else None
    error, cause = described.get("error"), described.get("cause")
    if error is None and found is not None:
        error, cause = history.outcome(found)
    elif error is not None or cause is not None:
        error, cause = history.error_and_cause({"error": error, "cause": cause})
    start = described["startDate"]
    stop = described.get("stopDate")
    payload = _json(described.get("input"))
    render = render_of(described, found)
    return Execution(
        arn=described["executionArn"],
        name=described["name"],
        status=described["status"],
        start_date=start,
        started=src.clock.at(start),
        seconds=src.clock.seconds(start, stop) if stop else (src.now() - src.clock.at(start)).total_seconds(),
        service=payload.get("service") if isinstance(payload, dict) else None,
        target=f"{render['cluster']}/{render['ecsService']}"
        if render.get("cluster") and render.get("ecsService")
        else None,
        summary=render.get("summary") or request_summary(payload),
        error=error,
        cause=cause,
        events=found,
    )


def _needs_history(described: dict[str, Any]) -> bool:
    return described["status"] not in ("SUCCEEDED", "RUNNING") and "error" not in described


# ---------------------------------------------------------------- showing


def duration(seconds: float) -> str:
    return history.format_offset(seconds)[1:]


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def executions_table(executions: list[Execution], *, with_service: bool) -> str:
    """One line per execution, newest first; a failed one's error under it."""
    headers = ["NAME", *(["SERVICE"] if with_service else []), "STATUS", "STARTED", "DURATION"]
    rows = [
        [
            e.name,
            *([e.service or "?"] if with_service else []),
            e.status,
            when(e.started),
            duration(e.seconds) + ("+" if e.status == "RUNNING" else ""),
        ]
        for e in executions
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  SUMMARY"]
    for execution, row in zip(executions, rows):
        summary = history._short(execution.summary, SUMMARY_WIDTH)
        lines.append(("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + summary).rstrip())
        if execution.error:
            text = f"{execution.error}: {execution.cause}" if execution.cause else execution.error
            lines.append("    " + history._short(text, SUMMARY_WIDTH + 20))
    return "\n".join(lines)


def progress(execution: Execution, clock: Clock) -> list[str]:
    """The states a running execution entered so far, each once in the order first entered, and where it is now."""
    events = execution.events or []
    run = history.trace(events)
    rows = history.rows(events, execution.offsets(clock))
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    details: dict[str, str] = {}
    offsets = {r["id"]: r["offset"] for r in rows}
    for name, event_id in run.entered:
        first.setdefault(name, offsets[event_id])
        counts[name] = counts.get(name, 0) + 1
    for row in rows:
        if row["detail"] and row["state"] in first:
            details[row["state"]] = row["detail"]
    labels = {name: name + (f" (x{counts[name]})" if counts[name] > 1 else "") for name in first}
    width = min(56, max([len(label) for label in labels.values()] + [4]))
    now = run.current[-1] if run.current else None
    lines = [
        f"{execution.name} is {execution.status} ({duration(execution.seconds)} so far)"
        + (f", now in: {now}" if now else "")
    ]
    for name, offset in first.items():
        marker = "FAIL" if name in run.failed else "now" if name in run.current else "ok"
        lines.append(
            f"  {marker:<4}  {history.format_offset(offset):<9}  {labels[name]:<{width}}  "
            f"{details.get(name, '')}".rstrip()
        )
    return lines


def _ending(execution: Execution) -> list[str]:
    lines = [f"{execution.name} {execution.status} after {duration(execution.seconds)}"]
    if execution.error:
        lines += [f"Error: {execution.error}", f"Cause: {execution.cause}"]
    return lines


def follow(src: Source, execution: Execution, out: TextIO, *, quiet: bool = False) -> Execution:
    """Poll until the execution ends, printing each state the first time it is entered and every error."""
    shown_states = set(history.trace(execution.events or []).visited)
    last_id = max((e["id"] for e in execution.events or []), default=0)
    while True:
        described = src.sfn.describe_execution(executionArn=execution.arn)
        execution = load(src, described, events=True)
        rows = history.rows(execution.events, execution.offsets(src.clock))
        for row in rows:
            if row["id"] <= last_id or quiet:
                continue
            offset = history.format_offset(row["offset"])
            if row["type"].endswith("StateEntered") and row["state"] not in shown_states:
                shown_states.add(row["state"])
                print(f"  ->    {offset:<9}  {row['state']}", file=out, flush=True)
            elif row["type"].endswith(FAILURE_SUFFIXES) and not row["type"].startswith("Execution"):
                print(f"  err   {offset:<9}  {row['state']}  {row['detail']}".rstrip(), file=out, flush=True)
        last_id = max([last_id] + [r["id"] for r in rows])
        if described["status"] != "RUNNING":
            return execution
        src.wait(src.poll)


def write_graphs(src: Source, path: Path, executions: list[Execution], err: TextIO) -> None:
    graphs = []
    for execution in executions:
        events = execution.events if execution.events is not None else events_of(src, execution.arn)
        graphs.append(
            (
                execution.name,
                graph.mermaid(definition_of(src, execution.arn), events, title=f"{execution.name} {execution.status}"),
            )
        )
    for written in graph.write(path, graphs):
        print(f"wrote {written}", file=err)


# ---------------------------------------------------------------- commands


def cmd_status(args, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The service's latest executions; the running one's progress, followed to its end with --follow."""
    out, err = out or sys.stdout, err or sys.stderr
    with source(args) as src:
        executions = [load(src, d, events=True) for d in recent(src, service=args.service, limit=args.limit)]
        if not executions:
            if args.json:
                print(json.dumps({"service": args.service, "executions": []}, indent=2), file=out)
            else:
                print(
                    f"no executions of service {args.service} (among the latest {SCAN_LIMIT} of "
                    f"{src.state_machine_arn.rsplit(':', 1)[-1]})",
                    file=out,
                )
            return 1
        running = next((e for e in executions if e.status == "RUNNING"), None)
        if not args.json:
            print(f"{args.service}: latest {len(executions)} execution{'s' * (len(executions) > 1)}\n", file=out)
            print(executions_table(executions, with_service=False), file=out)
            for execution in executions:
                if execution.status == "RUNNING":
                    print("", *progress(execution, src.clock), sep="\n", file=out, flush=True)
        if not (args.follow and running):
            if args.json:
                print(
                    json.dumps({"service": args.service, "executions": [e.as_json() for e in executions]}, indent=2),
                    file=out,
                )
            return 0 if not args.follow or executions[0].status == "SUCCEEDED" else 1
        ended = follow(src, running, out, quiet=args.json)
        if args.json:
            executions = [ended if e.arn == ended.arn else e for e in executions]
            print(
                json.dumps({"service": args.service, "executions": [e.as_json() for e in executions]}, indent=2),
                file=out,
            )
        else:
            print("", *_ending(ended), sep="\n", file=out)
        return 0 if ended.status == "SUCCEEDED" else 1


def cmd_history(args, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """One execution's history as the console lists it, or the latest executions."""
    out, err = out or sys.stdout, err or sys.stderr
    with source(args) as src:
        if args.execution is None:
            described = recent(src, limit=args.limit)
            executions = [load(src, d, events=bool(args.graph) or _needs_history(d)) for d in described]
            if args.graph:
                write_graphs(src, args.graph, executions, err)
            if args.json:
                print(json.dumps({"executions": [e.as_json() for e in executions]}, indent=2), file=out)
            elif executions:
                print(executions_table(executions, with_service=True), file=out)
            else:
                print(f"no executions of {src.state_machine_arn.rsplit(':', 1)[-1]}", file=out)
            return 0
        execution = load(src, find(src, args.execution), events=True)
        rows = history.rows(execution.events, execution.offsets(src.clock))
        if args.graph:
            write_graphs(src, args.graph, [execution], err)
        if args.json:
            print(
                json.dumps(
                    {
                        "execution": execution.as_json(),
                        "history": [{**r, "offset": round(r["offset"], 3)} for r in rows],
                    },
                    indent=2,
                ),
                file=out,
            )
            return 0
        print(f"== {execution.name}  ({execution.target or execution.service or '?'})  {execution.status}", file=out)
        print(history.table(rows), file=out)
        if execution.error:
            print(f"\nError: {execution.error}\nCause: {execution.cause}", file=out)
        print("\n== Summary", file=out)
        print(
            f"started {when(execution.started)}, "
            + ("running for " if execution.status == "RUNNING" else "took ")
            + duration(execution.seconds)
            + f", {history.transitions(execution.events)} state transitions",
            file=out,
        )
        if execution.summary:
            print(execution.summary, file=out)
        return 0
