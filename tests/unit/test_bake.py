"""The bake's alarm watchers: every bake watching an alarm is failed when it fires."""

from __future__ import annotations

import boto3

from ferry.steps import bake
from ferry.aws import waiters


def test_every_bake_watching_a_shared_alarm_is_failed_and_forgotten(ecs_world, monkeypatch):
    completed = []
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: completed.append((token, kw)) or True)
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="alb-5xx", MetricName="5xx", Namespace="X", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    for execution, service in (("web-exec", "prod/web"), ("api-exec", "prod/api")):
        watching = bake.start(table="locks", token=f"token-{execution}", alarms=["alb-5xx"],
                              context={"execution": execution, "service": service, "revision": "x:2", "bakeSeconds": 300})
        assert watching == {"watching": ["alb-5xx"], "firing": []}
    assert completed == []
    failed = bake.alarm_changed("locks", {"alarmName": "alb-5xx", "state": {"value": "ALARM", "reason": "5xx > 5%"}})
    assert failed == 2
    assert sorted(token for token, _ in completed) == ["token-api-exec", "token-web-exec"]
    assert all(kw["error"] == "AlarmTriggered" and "5xx > 5%" in kw["cause"] for _, kw in completed)
    assert bake.alarm_changed("locks", {"alarmName": "alb-5xx", "state": {"value": "ALARM"}}) == 0  # forgotten


def test_an_alarm_already_in_alarm_fails_the_bake_at_once(ecs_world, monkeypatch):
    completed = []
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: completed.append(kw) or True)
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="web-latency", MetricName="p99", Namespace="X", Statistic="Maximum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    cw.set_alarm_state(AlarmName="web-latency", StateValue="ALARM", StateReason="p99 2.3 s")
    result = bake.start(table="locks", token="t", alarms=["web-latency"],
                        context={"execution": "e", "service": "prod/web", "revision": "web:2", "bakeSeconds": 60})
    assert result == {"watching": [], "firing": ["web-latency"]}
    [call] = completed
    assert call["cause"] == "alarm web-latency went into ALARM during the 60 s bake of web:2 on prod/web: p99 2.3 s"
