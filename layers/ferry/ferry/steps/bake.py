"""Bake: after the rollout, the health gates' alarms must stay out of ALARM for `bakeSeconds`.

Nothing polls. The Bake state waits on a task token with the bake time as
its timeout; every alarm named in the config lists the waiting bakes (one item per
alarm in the lock table, a watcher per execution, so services sharing an
alarm are all failed), and CloudWatch's own `Alarm State Change` event
for an alarm entering ALARM fails the state with AlarmTriggered at once. The
state timing out ends the bake; `finish` then looks at the alarms once more,
so a lost alarm event cannot let a bake pass with an alarm firing.

The step's contracts (CONTRACTS): "Bake while watching the alarms" passes
`StartInput` and is never completed with an output (its time running out is
the bake passing: its Catch writes States.Timeout at $.bake; an alarm fails
it); the function's own answer (`Watching`) only goes to its log. "Check the
alarms as the bake ends" (action finish) passes `FinishInput` and writes
`Passed` at $.bake. CloudWatch's Alarm State Change events reach the same
function (`alarm_event`): not a state, so no contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferry import aws
from ferry import states as S
from ferry.runtime import clock
from ferry.aws import waiters
from ferry.aws.ecs import revision_name
from ferry.contract import EcsStepInput, Model, key
from ferry.errors import AlarmTriggered, InputInvalid
from ferry.runtime.observability import logger


@dataclass(frozen=True, kw_only=True)
class BakeInput(EcsStepInput):
    """What both bake states pass: the service, the new revision, its alarms and the bake time."""

    task_definition_arn: str | None = key(
        "taskDefinitionArn", required=False, doc="the new revision, $.register.taskDefinitionArn: the Cause names it"
    )
    alarms: list[str] = key(
        "alarms", kinds=(list,), required=False, default=[], doc="the health gates' alarms, $.render.alarms"
    )
    bake_seconds: int | None = key(
        "bakeSeconds",
        kinds=(int,),
        required=False,
        doc="$.render.bakeSeconds, named in the Cause (the state's timeout ends the bake)",
    )

    def __post_init__(self) -> None:
        if not all(isinstance(alarm, str) and alarm for alarm in self.alarms):
            raise InputInvalid("`alarms` must be a list of CloudWatch alarm names: pass $.render.alarms")

    @property
    def context(self) -> dict[str, Any]:
        """What an alarm's watcher keeps of the bake, for the AlarmTriggered Cause."""
        return {
            "execution": self.execution,
            "service": self.where,
            "revision": self.task_definition_arn or "?",
            "bakeSeconds": self.bake_seconds,
        }


@dataclass(frozen=True, kw_only=True)
class StartInput(BakeInput):
    """The input of "Bake while watching the alarms"."""

    token: str = key(
        "token",
        doc="$$.Task.Token: failed with AlarmTriggered by an alarm entering ALARM; otherwise "
        "the state's timeout (bakeSeconds) ends the bake",
    )


@dataclass(frozen=True, kw_only=True)
class FinishInput(BakeInput):
    """The input of "Check the alarms as the bake ends"."""

    action: str = key("action", doc="finish")


@dataclass(frozen=True, kw_only=True)
class Watching(Model):
    """The function's answer, for its log: the alarms now watched, or those already in ALARM (the state was failed
    at once)."""

    watching: list[str] = key("watching", kinds=(list,), doc="the alarms whose ALARM event fails the bake")
    firing: list[str] = key("firing", kinds=(list,), doc="the alarms in ALARM already")

    @property
    def message(self) -> str:
        return "bake started"


@dataclass(frozen=True, kw_only=True)
class Passed(Model):
    """The bake passed ($.bake): no alarm of the health gates was in ALARM when its time was up."""

    passed: bool = key("passed", kinds=(bool,), doc="true (an alarm in ALARM fails the state with AlarmTriggered)")
    alarms: int = key("alarms", kinds=(int,), doc="how many alarms it looked at")

    @property
    def message(self) -> str:
        return "bake passed"


# action -> (input, output): what each bake state passes, and what it writes at $.bake. The bake's own state is
# never completed with an output: its time running out is the bake passing.
CONTRACTS = {None: (StartInput, None), "finish": (FinishInput, Passed)}


def read(event: Any) -> BakeInput:
    """The typed input of the bake state that invoked the function."""
    action = event.get("action") if isinstance(event, Mapping) else None
    if action is None:
        return StartInput.from_state(event, f"{S.BAKE}' input")
    if action != "finish":
        raise InputInvalid(f"`action` must be finish, or absent for the bake itself, got {action!r}")
    return FinishInput.from_state(event, f"{S.CHECK_ALARMS}' input")


def run(request: BakeInput, table: str) -> Watching | Passed:
    """The step: start watching the alarms, or look at them once more as the bake ends."""
    return finish(request, table) if isinstance(request, FinishInput) else start(request, table)


def _cause(alarm: str, reason: str, context: dict[str, Any]) -> str:
    return (
        f"alarm {alarm} went into ALARM during the {context.get('bakeSeconds', '?')} s bake of "
        f"{revision_name(context.get('revision', '?'))} on {context.get('service', '?')}: {reason}"
    )


def _key(alarm: str) -> dict:
    return {"pk": {"S": f"alarm#{alarm}"}}


def _watch(table: str, alarm: str, execution: str, token: str, context: dict[str, Any]) -> None:
    """Add this bake to the alarm's watchers (several services may bake on one shared alarm)."""
    ddb = aws.client("dynamodb")
    ddb.update_item(
        TableName=table,
        Key=_key(alarm),
        UpdateExpression="SET watchers = if_not_exists(watchers, :empty), expiresAt = :ttl",
        ExpressionAttributeValues={":empty": {"M": {}}, ":ttl": {"N": str(int(clock.now() + waiters.TTL_SECONDS))}},
    )
    ddb.update_item(
        TableName=table,
        Key=_key(alarm),
        UpdateExpression="SET watchers.#e = :w",
        ExpressionAttributeNames={"#e": execution},
        ExpressionAttributeValues={
            ":w": {"M": {"token": {"S": token}, "context": {"S": json.dumps(context, sort_keys=True)}}}
        },
    )


def _forget(table: str, alarms: list[str], execution: str) -> None:
    for alarm in alarms:
        aws.client("dynamodb").update_item(
            TableName=table,
            Key=_key(alarm),
            UpdateExpression="REMOVE watchers.#e",
            ExpressionAttributeNames={"#e": execution},
        )


def start(request: StartInput, table: str) -> Watching:
    """Point every alarm at the waiting state; fail it at once if one is already in ALARM."""
    alarms, context, token = list(request.alarms), request.context, request.token
    execution = context["execution"]
    for alarm in alarms:
        _watch(table, alarm, execution, token, {**context, "alarms": alarms})
    firing = _firing(alarms)
    if firing:
        name, reason = firing[0]
        _forget(table, alarms, execution)
        waiters.complete(token, error="AlarmTriggered", cause=_cause(name, reason, context))
        return Watching(watching=[], firing=[n for n, _ in firing])
    return Watching(watching=alarms, firing=[])


# DescribeAlarms takes at most 100 AlarmNames a call and answers 50 alarms a page (botocore's CloudWatch model).
ALARM_BATCH = 100


def _firing(alarms: list[str]) -> list[tuple[str, str]]:
    """(name, reason) of the alarms in ALARM now."""
    cloudwatch, firing = aws.client("cloudwatch"), []
    for batch in aws.batches(alarms, ALARM_BATCH):
        found = aws.items(
            cloudwatch,
            "describe_alarms",
            ("MetricAlarms", "CompositeAlarms"),
            AlarmNames=batch,
            AlarmTypes=["MetricAlarm", "CompositeAlarm"],
        )  # every page: 50 a page
        firing += [(a["AlarmName"], a.get("StateReason", "")) for a in found if a.get("StateValue") == "ALARM"]
    return firing


def finish(request: FinishInput, table: str) -> Passed:
    """The bake's time is up: stop watching, and pass only if no alarm is in ALARM now."""
    alarms, context = list(request.alarms), request.context
    _forget(table, alarms, context["execution"])
    firing = _firing(alarms)
    if firing:
        name, reason = firing[0]
        raise AlarmTriggered(_cause(name, reason, context) + " (seen when the bake ended)")
    return Passed(passed=True, alarms=len(alarms))


def alarm_changed(table: str, detail: dict[str, Any]) -> int:
    """An alarm entered ALARM: fail every bake that watches it. Returns how many were failed."""
    name = detail.get("alarmName", "")
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(name), ConsistentRead=True).get("Item") or {}
    reason = (detail.get("state") or {}).get("reason") or "no reason given"
    failed = 0
    for execution, watcher in (item.get("watchers", {}).get("M") or {}).items():
        token, context = watcher["M"]["token"]["S"], json.loads(watcher["M"]["context"]["S"])
        _forget(table, list(context.get("alarms") or [name]), execution)
        failed += waiters.complete(token, error="AlarmTriggered", cause=_cause(name, reason, context))
    return failed


def from_cloudwatch(event: Any) -> bool:
    """Whether the function was invoked by CloudWatch's Alarm State Change event (its EventBridge rule)."""
    return isinstance(event, Mapping) and event.get("source") == "aws.cloudwatch"


def alarm_event(table: str, event: dict[str, Any]) -> dict[str, Any]:
    """CloudWatch's Alarm State Change event (an alarm entered ALARM): fail every bake that watches the alarm."""
    detail = event.get("detail") or {}
    failed = alarm_changed(table, detail)
    logger.info(
        "alarm state change handled" if failed else "no bake watches this alarm",
        extra={"alarm": detail.get("alarmName"), "bakesFailed": failed},
    )
    return {"bakesFailed": failed}
