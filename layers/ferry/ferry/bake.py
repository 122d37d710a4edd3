"""Bake: after the rollout, the health gates' alarms must stay out of ALARM for `bakeSeconds`.

Nothing polls. The Bake state waits on a task token with the bake time as
its timeout; every alarm named in the config points at that token (waiter
items in the lock table), and CloudWatch's own `Alarm State Change` event
for an alarm entering ALARM fails the state with AlarmTriggered at once. The
state timing out is the bake passing.
"""

from __future__ import annotations

from typing import Any

from . import aws, waiters
from .ecs import revision_name


def _cause(alarm: str, reason: str, context: dict[str, Any]) -> str:
    return (f"alarm {alarm} went into ALARM during the {context.get('bakeSeconds', '?')} s bake of "
            f"{revision_name(context.get('revision', '?'))} on {context.get('service', '?')}: {reason}")


def start(*, table: str, token: str, alarms: list[str], context: dict[str, Any]) -> dict[str, Any]:
    """Point every alarm at the waiting state; fail it at once if one is already in ALARM."""
    for alarm in alarms:
        waiters.put(table, f"alarm#{alarm}", token, {**context, "alarms": alarms})
    firing = []
    for i in range(0, len(alarms), 100):
        found = aws.client("cloudwatch").describe_alarms(AlarmNames=alarms[i:i + 100], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        firing += [(a["AlarmName"], a.get("StateReason", "")) for key in ("MetricAlarms", "CompositeAlarms")
                   for a in found.get(key, []) if a.get("StateValue") == "ALARM"]
    if firing:
        name, reason = firing[0]
        _forget(table, alarms, token)
        waiters.complete(token, error="AlarmTriggered", cause=_cause(name, reason, context))
        return {"watching": [], "firing": [n for n, _ in firing]}
    return {"watching": alarms, "firing": []}


def _forget(table: str, alarms: list[str], token: str) -> None:
    for alarm in alarms:
        waiters.delete(table, f"alarm#{alarm}", token)


def alarm_changed(table: str, detail: dict[str, Any]) -> bool:
    """An alarm entered ALARM: fail the bake that watches it, if any. False when nobody watches it."""
    name = detail.get("alarmName", "")
    found = waiters.get(table, f"alarm#{name}")
    if found is None:
        return False
    token, context = found
    _forget(table, list(context.get("alarms") or [name]), token)
    reason = (detail.get("state") or {}).get("reason") or "no reason given"
    return waiters.complete(token, error="AlarmTriggered", cause=_cause(name, reason, context))
