"""The bake's alarm watchers: every bake watching an alarm is failed when it fires; its contract."""

from __future__ import annotations

import boto3
import pytest

from ferry.steps import bake
from ferry.aws import waiters
from ferry.errors import AlarmTriggered, InputInvalid


def bake_input(
    execution: str, ecs_service: str, alarms: list[str], revision: str, seconds: int, token: str | None = None
) -> bake.BakeInput:
    """What "Bake while watching the alarms" passes (with a token) or "Check the alarms as the bake ends"."""
    cluster, name = ecs_service.split("/")
    event = {
        "execution": execution,
        "service": name,
        "cluster": cluster,
        "ecsService": name,
        "taskDefinitionArn": revision,
        "alarms": alarms,
        "bakeSeconds": seconds,
    }
    return bake.read({**event, "token": token} if token else {**event, "action": "finish"})


def test_every_bake_watching_a_shared_alarm_is_failed_and_forgotten(ecs_world, monkeypatch):
    completed = []
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: completed.append((token, kw)) or True)
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="alb-5xx",
        MetricName="5xx",
        Namespace="X",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    for execution, service in (("web-exec", "prod/web"), ("api-exec", "prod/api")):
        watching = bake.start(
            bake_input(execution, service, ["alb-5xx"], "x:2", 300, token=f"token-{execution}"), "locks"
        )
        assert watching == bake.Watching(watching=["alb-5xx"], firing=[])
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
    cw.put_metric_alarm(
        AlarmName="web-latency",
        MetricName="p99",
        Namespace="X",
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cw.set_alarm_state(AlarmName="web-latency", StateValue="ALARM", StateReason="p99 2.3 s")
    result = bake.start(bake_input("e", "prod/web", ["web-latency"], "web:2", 60, token="t"), "locks")
    assert result == bake.Watching(watching=[], firing=["web-latency"])
    [call] = completed
    assert call["cause"] == "alarm web-latency went into ALARM during the 60 s bake of web:2 on prod/web: p99 2.3 s"


def test_the_bake_passes_only_without_an_alarm_in_alarm_when_it_ends(ecs_world, monkeypatch):
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: True)
    cw = boto3.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="web-5xx",
        MetricName="5xx",
        Namespace="X",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    assert bake.run(bake_input("e", "prod/web", ["web-5xx"], "web:2", 60, token="t"), "locks").watching == ["web-5xx"]
    ending = bake_input("e", "prod/web", ["web-5xx"], "web:2", 60)
    assert isinstance(ending, bake.FinishInput)
    assert bake.run(ending, "locks") == bake.Passed(passed=True, alarms=1)
    cw.set_alarm_state(AlarmName="web-5xx", StateValue="ALARM", StateReason="5 errors")  # its event was lost
    with pytest.raises(
        AlarmTriggered,
        match=r"alarm web-5xx went into ALARM during the 60 s bake of web:2 on "
        r"prod/web: 5 errors \(seen when the bake ended\)",
    ):
        bake.finish(ending, "locks")


@pytest.mark.parametrize(
    "event, words",
    [
        (
            {"execution": "e", "cluster": "prod", "ecsService": "web", "alarms": []},
            "Bake while watching the alarms' input: `token` is missing",
        ),
        (
            {"action": "finish", "execution": "e", "cluster": "prod", "alarms": []},
            "Check the alarms as the bake ends' input: `ecsService` is missing",
        ),
        (
            {"action": "finish", "execution": "e", "cluster": "prod", "ecsService": "web", "alarms": "web-5xx"},
            "`alarms` must be a list, got a string",
        ),
        (
            {"action": "finish", "execution": "e", "cluster": "prod", "ecsService": "web", "alarms": ["web-5xx", 7]},
            "`alarms` must be a list of CloudWatch alarm names: pass $.render.alarms",
        ),
        (
            {"action": "finish", "execution": "e", "cluster": "prod", "ecsService": "web", "bakeSeconds": "60"},
            "`bakeSeconds` must be a number, got a string",
        ),
        (
            {"action": "start", "execution": "e", "cluster": "prod", "ecsService": "web"},
            "`action` must be finish, or absent for the bake itself, got 'start'",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(event, words):
    with pytest.raises(InputInvalid) as refused:
        bake.read(event)
    assert words in str(refused.value)


def test_the_output_round_trips():
    for output in (bake.Passed(passed=True, alarms=3), bake.Watching(watching=["a"], firing=["b"])):
        assert type(output).from_state(output.to_state()) == output
    assert bake.Passed(passed=True, alarms=3).to_state() == {"passed": True, "alarms": 3}


def test_an_alarm_event_is_handled_without_a_contract(ecs_world, logs):
    event = {"source": "aws.cloudwatch", "detail": {"alarmName": "nobody-watches", "state": {"value": "ALARM"}}}
    assert bake.from_cloudwatch(event) and not bake.from_cloudwatch({"token": "t"})
    assert bake.alarm_event("locks", event) == {"bakesFailed": 0}
    [line] = [line for line in logs() if line.get("message") == "no bake watches this alarm"]
    assert line["alarm"] == "nobody-watches"
