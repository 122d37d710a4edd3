"""Bake: after the rollout, the health gates' alarms must stay out of ALARM for `bakeSeconds`.

Nothing polls. The Bake state waits on a task token with the bake time as
its timeout; every alarm named in the config lists the waiting bakes (one item per
alarm in the lock table, a watcher per execution, so services sharing an
alarm are all failed), and CloudWatch's own `Alarm State Change` event
for an alarm entering ALARM fails the state with AlarmTriggered at once. The
state timing out ends the bake; `finish` then looks at the alarms once more,
so a lost alarm event cannot let a bake pass with an alarm firing.
"""

from __future__ import annotations

import json
from typing import Any

from ferry import aws
from ferry.runtime import clock
from ferry.aws import waiters
from ferry.aws.ecs import revision_name
from ferry.errors import AlarmTriggered


def _cause(alarm: str, reason: str, context: dict[str, Any]) -> str:
    return (f"alarm {alarm} went into ALARM during the {context.get('bakeSeconds', '?')} s bake of "
            f"{revision_name(context.get('revision', '?'))} on {context.get('service', '?')}: {reason}")


def _key(alarm: str) -> dict:
    return {"pk": {"S": f"alarm#{alarm}"}}


def _watch(table: str, alarm: str, execution: str, token: str, context: dict[str, Any]) -> None:
    """Add this bake to the alarm's watchers (several services may bake on one shared alarm)."""
    ddb = aws.client("dynamodb")
    ddb.update_item(TableName=table, Key=_key(alarm),
                    UpdateExpression="SET watchers = if_not_exists(watchers, :empty), expiresAt = :ttl",
                    ExpressionAttributeValues={":empty": {"M": {}},
                                               ":ttl": {"N": str(int(clock.now() + waiters.TTL_SECONDS))}})
    ddb.update_item(TableName=table, Key=_key(alarm), UpdateExpression="SET watchers.#e = :w",
                    ExpressionAttributeNames={"#e": execution},
                    ExpressionAttributeValues={":w": {"M": {"token": {"S": token},
                                                            "context": {"S": json.dumps(context, sort_keys=True)}}}})


def _forget(table: str, alarms: list[str], execution: str) -> None:
    for alarm in alarms:
        aws.client("dynamodb").update_item(TableName=table, Key=_key(alarm), UpdateExpression="REMOVE watchers.#e",
                                           ExpressionAttributeNames={"#e": execution})


def start(*, table: str, token: str, alarms: list[str], context: dict[str, Any]) -> dict[str, Any]:
    """Point every alarm at the waiting state; fail it at once if one is already in ALARM."""
    execution = context["execution"]
    for alarm in alarms:
        _watch(table, alarm, execution, token, {**context, "alarms": alarms})
    firing = _firing(alarms)
    if firing:
        name, reason = firing[0]
        _forget(table, alarms, execution)
        waiters.complete(token, error="AlarmTriggered", cause=_cause(name, reason, context))
        return {"watching": [], "firing": [n for n, _ in firing]}
    return {"watching": alarms, "firing": []}


# DescribeAlarms takes at most 100 AlarmNames a call and answers 50 alarms a page (botocore's CloudWatch model).
ALARM_BATCH = 100


def _firing(alarms: list[str]) -> list[tuple[str, str]]:
    """(name, reason) of the alarms in ALARM now."""
    cloudwatch, firing = aws.client("cloudwatch"), []
    for batch in aws.batches(alarms, ALARM_BATCH):
        found = aws.items(cloudwatch, "describe_alarms", ("MetricAlarms", "CompositeAlarms"), AlarmNames=batch,
                          AlarmTypes=["MetricAlarm", "CompositeAlarm"])  # every page: 50 a page
        firing += [(a["AlarmName"], a.get("StateReason", "")) for a in found if a.get("StateValue") == "ALARM"]
    return firing


def finish(*, table: str, alarms: list[str], context: dict[str, Any]) -> dict[str, Any]:
    """The bake's time is up: stop watching, and pass only if no alarm is in ALARM now."""
    _forget(table, alarms, context["execution"])
    firing = _firing(alarms)
    if firing:
        name, reason = firing[0]
        raise AlarmTriggered(_cause(name, reason, context) + " (seen when the bake ended)")
    return {"passed": True, "alarms": len(alarms)}


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
