"""Deploy notifications and metrics: status change event -> result, the event's detail, the SNS message, the EMF
documents, and the execution-ended function that sends them (against moto)."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from ferry import aws as ferry_aws
from ferry.steps import lock
from ferry.lifecycle import execution_ended, journal
from ferry.lifecycle import metrics, notify

from .conftest import ACCOUNT, REGISTRY, put_config

ROOT = Path(__file__).resolve().parents[2]
SM = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:ferry-prod-deploy"
ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:ferry-prod-deploy:web-v2-1a2b3c"
IMAGE = f"{REGISTRY}/web@sha256:{'0' * 64}"
REQUEST = {
    "service": "web",
    "images": {"app": IMAGE},
    "values": {"TOKEN": "s3cr3t-value"},
    "trigger": {
        "type": "ecr-push",
        "repository": "web",
        "tag": "v2",
        "digest": "sha256:" + "0" * 64,
        "eventId": "e-1",
        "requestedAt": 1795000000.0,
        "extra": {"x": 1},
    },
}
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
SECRET = "s3cr3t-value"


def status_event(status: str, *, error=None, cause=None, output=None, request=None, stop_ms=1795000312000) -> dict:
    return {
        "version": "0",
        "id": "ev",
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "account": ACCOUNT,
        "region": "us-east-1",
        "resources": [ARN],
        "detail": {
            "executionArn": ARN,
            "stateMachineArn": SM,
            "name": "web-v2-1a2b3c",
            "status": status,
            "startDate": 1795000000000,
            "stopDate": None if status == "RUNNING" else stop_ms,
            "input": json.dumps(request if request is not None else REQUEST),
            "output": None if output is None else json.dumps(output),
            "error": error,
            "cause": cause,
        },
    }


def execution(status: str, history=(), **kwargs) -> notify.Execution:
    return notify.Execution.from_event(status_event(status, **kwargs)["detail"], tuple(history))


def entered(name: str, seconds: float, kind: str = "Task", data: dict | None = None) -> dict:
    return {
        "type": f"{kind}StateEntered",
        "timestamp": T0 + timedelta(seconds=seconds),
        "stateEnteredEventDetails": {"name": name, "input": json.dumps(data or {})},
    }


def exited(name: str, seconds: float, kind: str = "Task", data: dict | None = None) -> dict:
    return {
        "type": f"{kind}StateExited",
        "timestamp": T0 + timedelta(seconds=seconds),
        "stateExitedEventDetails": {"name": name, "output": json.dumps(data or {})},
    }


DEPLOYED = {"result": "DEPLOYED", "service": "web", "summary": "image app web:v1 -> web:v2 (sha256:00000000…)"}
SUPERSEDED = {**REQUEST, "superseded": {"Error": "Superseded", "Cause": "a newer request for web was queued"}}


# ------------------------------------------------------------------ status change event -> result


@pytest.mark.parametrize(
    "status, kwargs, history, result",
    [
        ("RUNNING", {}, (), None),
        ("SUCCEEDED", {"output": DEPLOYED}, (), "SUCCEEDED"),
        ("SUCCEEDED", {"output": SUPERSEDED}, (), "SUPERSEDED"),
        (
            "SUCCEEDED",
            {},
            (entered("Superseded by a newer deploy", 5, "Succeed"),),
            "SUPERSEDED",
        ),  # output not included
        ("FAILED", {"error": "RolledBack", "cause": "web:2 failed: DeploymentFailed: …"}, (), "ROLLED_BACK"),
        (
            "FAILED",
            {"error": "RollbackFailed", "cause": "ROLLBACK FAILED: a person must act on prod/web."},
            (),
            "ROLLBACK_FAILED",
        ),
        ("FAILED", {"error": "VerifyFailed", "cause": "Verify found 1 problem"}, (), "FAILED"),
        ("FAILED", {"error": "LockUnavailable"}, (), "FAILED"),  # deployed, but the lock was not released
        ("FAILED", {"error": "States.Runtime"}, (), "FAILED"),
        ("ABORTED", {"error": "Operator.Stop", "cause": "stopped"}, (), "ABORTED"),
        ("TIMED_OUT", {}, (), "TIMED_OUT"),
    ],
    ids=[
        "running",
        "succeeded",
        "superseded-output",
        "superseded-history",
        "rolled-back",
        "rollback-failed",
        "failed",
        "lock-unavailable",
        "runtime",
        "aborted",
        "timed-out",
    ],
)
def test_each_status_event_maps_to_one_result(status, kwargs, history, result):
    assert execution(status, history, **kwargs).result == result
    if result is not None:
        assert result in metrics.RESULTS and result in notify.RESULTS


def test_metric_results_are_the_ones_the_dashboard_and_alarm_name():
    assert set(metrics.RESULTS.values()) >= {
        "succeeded",
        "failed",
        "rolled_back",
        "superseded",
        "rollback_failed",
        "aborted",
    }


def test_the_state_names_the_code_reads_exist_in_the_state_machine():
    states: set[str] = set()

    def walk(machine: dict) -> None:
        for name, spec in machine["States"].items():
            states.add(name)
            for branch in spec.get("Branches", []) + [spec.get("ItemProcessor") or spec.get("Iterator") or {}]:
                if branch:
                    walk(branch)

    walk(json.loads((ROOT / "statemachine/deploy.asl.json").read_text()))
    names = {notify.SUPERSEDED_STATE, metrics.ROLLBACK_STATE, metrics.CANARY_CHECK_STATE}
    names |= {s for phase in metrics.PHASES.values() for s in phase}
    assert not names - states, sorted(names - states)


# ------------------------------------------------------------------ the detail


def test_a_started_detail_says_what_was_asked_for_and_where_to_look():
    found = notify.detail(
        execution("RUNNING"), environment="prod", artefacts_bucket="ferry-artefacts", cluster="prod", ecs_service="web"
    )
    assert found == {
        "environment": "prod",
        "service": "web",
        "cluster": "prod",
        "ecsService": "web",
        "execution": "web-v2-1a2b3c",
        "executionArn": ARN,
        "action": "deploy",
        "images": {"app": IMAGE},
        "trigger": {
            "type": "ecr-push",
            "repository": "web",
            "tag": "v2",
            "digest": "sha256:" + "0" * 64,
            "requestedAt": 1795000000.0,
        },
        "commit": None,
        "reason": None,
        "startedAt": "2026-11-18T11:06:40Z",
        "consoleUrl": f"https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{ARN}",
        "artefacts": "s3://ferry-artefacts/executions/web-v2-1a2b3c/",
    }
    assert SECRET not in json.dumps(found)  # the request's values are never published


def test_an_ended_detail_adds_the_result_error_short_cause_duration_and_summary():
    cause = json.dumps(
        {
            "errorType": "VerifyFailed",
            "errorMessage": "Verify found 1 problem in web (new revision)",
            "stackTrace": ["  File app.py"],
        }
    )
    history = [
        exited(
            "Render the new task definition and diff it",
            3,
            data={"service": "web", "render": {"summary": "image app web:v1 -> web:v2"}},
        ),
        entered("Verify secrets, images and roles", 3),
    ]
    found = notify.detail(
        execution("FAILED", history, error="VerifyFailed", cause=cause), environment="prod", artefacts_bucket="a"
    )
    assert (found["result"], found["error"], found["cause"]) == (
        "FAILED",
        "VerifyFailed",
        "Verify found 1 problem in web (new revision)",
    )
    assert (found["durationSeconds"], found["endedAt"]) == (312, "2026-11-18T11:11:52Z")
    assert found["summary"] == "image app web:v1 -> web:v2"
    deployed = notify.detail(execution("SUCCEEDED", output=DEPLOYED), environment="prod", artefacts_bucket="a")
    assert deployed["summary"] == DEPLOYED["summary"] and deployed["result"] == "SUCCEEDED"
    assert deployed["error"] is None and deployed["cause"] is None


def test_a_long_cause_keeps_its_start_and_its_end():
    cause = (
        "ROLLBACK FAILED: a person must act on prod/web.\n"
        + "x" * 5000
        + "\nIt should run web:1 with 2 tasks: aws ecs update-service --cluster prod --service web"
    )
    short = notify.short_cause(cause)
    assert len(short) <= notify.MAX_CAUSE_CHARS
    assert short.startswith("ROLLBACK FAILED: a person must act on prod/web.")
    assert short.endswith("aws ecs update-service --cluster prod --service web") and " … " in short
    assert notify.short_cause(None) is None and notify.short_cause("plain") == "plain"


def test_a_request_that_is_not_a_deploy_still_gets_a_detail():
    found = notify.detail(
        execution("FAILED", error="InputInvalid", request={"service": 7}), environment="prod", artefacts_bucket="a"
    )
    assert (found["service"], found["images"], found["trigger"], found["result"]) == (None, {}, {}, "FAILED")


# ------------------------------------------------------------------ which events reach SNS

TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:deploys"


def test_the_events_a_config_may_name_are_the_schemas():
    schema = json.loads((ROOT / "schemas/service-config.schema.json").read_text())["properties"]["notifications"]
    assert tuple(schema["properties"]["events"]["items"]["enum"]) == notify.EVENTS
    assert set(notify.RESULTS.values()) - {None} <= set(notify.EVENTS)


@pytest.mark.parametrize(
    "events, which, sent",
    [
        (None, execution("RUNNING"), True),
        (["failed"], execution("RUNNING"), False),
        (["started"], execution("RUNNING"), True),
        (["succeeded"], execution("SUCCEEDED", output=DEPLOYED), True),
        (["failed"], execution("SUCCEEDED", output=DEPLOYED), False),
        (["succeeded"], execution("SUCCEEDED", output=SUPERSEDED), True),
        (["failed"], execution("FAILED", error="VerifyFailed"), True),
        (["failed"], execution("ABORTED"), True),
        (["failed"], execution("FAILED", error="RolledBack"), False),
        (["rolledBack"], execution("FAILED", error="RolledBack"), True),
        ([], execution("FAILED", error="RollbackFailed"), True),  # always, whatever `events` says
        (["started"], execution("FAILED", error="RollbackFailed"), True),
    ],
)
def test_notifications_events_picks_what_reaches_the_topic(events, which, sent):
    notifications = {"snsTopicArn": TOPIC} | ({} if events is None else {"events": events})
    assert notify.sns_topic(notifications, which) == (TOPIC if sent else None)
    assert notify.sns_topic({"events": ["failed"]}, which) is None
    assert notify.sns_topic(None, which) is None


def test_the_sns_message_reads_as_text_and_carries_the_event_for_machines():
    cause = "ROLLBACK FAILED: a person must act on prod/web.\nIt should run web:1 with 2 tasks: aws ecs update-service"
    found = notify.detail(
        execution("FAILED", error="RollbackFailed", cause=cause),
        environment="prod",
        artefacts_bucket="a",
        cluster="prod",
        ecs_service="web",
    )
    message = notify.sns_message(notify.ENDED, found)
    assert message["Subject"] == "Ferry prod: ROLLBACK FAILED on web: a person must act"
    assert message["MessageStructure"] == "json"
    bodies = json.loads(message["Message"])
    text = bodies["default"]
    assert text.startswith("ROLLBACK FAILED on web (prod/web): a person must act.")
    assert "Result: ROLLBACK_FAILED" in text and f"Image app: {IMAGE}" in text and "aws ecs update-service" in text
    assert json.loads(bodies["sqs"]) == {"source": "ferry", "detail-type": "Ferry Deploy Ended", "detail": found}
    assert bodies["lambda"] == bodies["https"] == bodies["http"] == bodies["sqs"]
    assert message["MessageAttributes"]["result"] == {"DataType": "String", "StringValue": "ROLLBACK_FAILED"}
    assert message["MessageAttributes"]["service"]["StringValue"] == "web"
    started = notify.sns_message(
        notify.STARTED, notify.detail(execution("RUNNING"), environment="prod", artefacts_bucket="a")
    )
    assert started["Subject"] == "Ferry prod: deploy of web started"
    assert "Result: STARTED" in json.loads(started["Message"])["default"]


def test_a_subject_stays_ascii_and_within_sns_limits():
    found = notify.detail(execution("FAILED", error="É" * 300), environment="prod", artefacts_bucket="a")
    subject = notify.sns_message(notify.ENDED, found)["Subject"]
    assert len(subject) <= 100 and subject.isascii() and "\n" not in subject


# ------------------------------------------------------------------ publishing, against moto


@pytest.fixture
def inboxes(aws):
    """An EventBridge rule on source ferry and an SNS topic, each delivering to its own SQS queue."""
    sqs, events, sns = boto3.client("sqs"), boto3.client("events"), boto3.client("sns")

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    events_url, events_arn = queue("ferry-events")
    events.put_rule(Name="ferry-deploys", EventPattern=json.dumps({"source": ["ferry"]}))
    events.put_targets(Rule="ferry-deploys", Targets=[{"Id": "q", "Arn": events_arn}])
    sns_url, sns_arn = queue("ferry-sns")
    topic = sns.create_topic(Name="deploys")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sns_arn)

    def read(url: str) -> list[dict]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return SimpleNamespace(topic=topic, events=lambda: read(events_url), sns=lambda: read(sns_url))


def test_a_start_and_an_end_are_put_on_the_default_bus_and_published_to_the_topic(inboxes):
    config = SimpleNamespace(cluster="prod", service="web", raw={"notifications": {"snsTopicArn": inboxes.topic}})
    for which in (
        execution("RUNNING"),
        execution("FAILED", error="RolledBack", cause="web:2 failed: AlarmTriggered: x"),
    ):
        sent = notify.announce(which, environment="prod", artefacts_bucket="a", config=config)
        assert sent["event"] is True and sent["sns"] is True
    put = inboxes.events()
    assert [(e["source"], e["detail-type"]) for e in put] == [
        ("ferry", "Ferry Deploy Started"),
        ("ferry", "Ferry Deploy Ended"),
    ]
    assert put[1]["detail"]["result"] == "ROLLED_BACK" and put[1]["resources"] == [ARN]
    published = inboxes.sns()
    assert [m["Subject"] for m in published] == ["Ferry prod: deploy of web started", "Ferry prod: web rolled back"]
    assert json.loads(published[1]["Message"])["detail"]["cause"] == "web:2 failed: AlarmTriggered: x"
    assert all(SECRET not in json.dumps(m) for m in put + published)


def test_a_topic_that_cannot_be_published_to_still_lets_the_event_out(inboxes):
    config = SimpleNamespace(
        cluster="prod", service="web", raw={"notifications": {"snsTopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:gone"}}
    )
    sent = notify.announce(
        execution("SUCCEEDED", output=DEPLOYED), environment="prod", artefacts_bucket="a", config=config
    )
    assert sent == {"result": "SUCCEEDED", "event": True, "sns": False}
    assert [e["detail"]["result"] for e in inboxes.events()] == ["SUCCEEDED"]


# ------------------------------------------------------------------ metrics


def test_a_canary_deploys_phases_are_timed_from_its_history():
    history = [
        entered("Start the canary tasks", 10),
        exited("Start the canary tasks", 12),
        entered("Wait for the canary", 12, "Wait"),
        exited("Wait for the canary", 40, "Wait"),
        entered("Check the canary", 40),
        exited(
            "Check the canary",
            41,
            data={"canary": {"startedAt": 1000.0, "progress": {"state": "PASSED", "healthySince": 1025.0}}},
        ),
        entered("Is the canary healthy for long enough?", 41, "Choice"),
        exited("Is the canary healthy for long enough?", 41, "Choice"),
        entered("Update the service to the new revision", 41),
        exited("Update the service to the new revision", 43),
        entered("Wait for ECS to finish the deployment", 43),
        exited("Wait for ECS to finish the deployment", 143),
        entered("Bake while watching the alarms", 143),
    ]  # stopped during the bake: ends at the last event
    assert metrics.phase_seconds(history, metrics.PHASES[metrics.CANARY_DURATION]) == 31
    assert metrics.phase_seconds(history, metrics.PHASES[metrics.ROLLOUT_DURATION]) == 102
    assert (
        metrics.phase_seconds(
            history + [{"type": "ExecutionAborted", "timestamp": T0 + timedelta(seconds=200)}],
            metrics.PHASES[metrics.BAKE_DURATION],
        )
        == 57
    )
    assert metrics.canary_health_wait(history) == 25
    assert metrics.phase_seconds([], metrics.PHASES[metrics.BAKE_DURATION]) is None


def test_an_ended_deploy_writes_deploys_by_result_and_failures_by_error():
    rolled = [
        entered("Update the service to the new revision", 0),
        exited("Update the service to the new revision", 2),
        entered("Roll back to the previous revision", 9),
    ]
    docs = metrics.documents(execution("FAILED", rolled, error="RolledBack"), environment="prod")
    assert [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in docs] == [
        [["service", "environment", "Result"], ["environment", "Result"]],
        [["environment", "Error"]],
        [["service", "environment"], ["environment"]],
    ]
    deploy, failure, phases = docs
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ferry" for d in docs)
    assert (deploy["Deploys"], deploy["DeployDuration"], deploy["Result"], deploy["service"]) == (
        [1.0],
        [312.0],
        "rolled_back",
        "web",
    )
    assert (failure["Deploys"], failure["Error"], "service" in failure) == ([1.0], "RolledBack", False)
    assert (phases["Rollbacks"], phases["RolloutDuration"], "BakeDuration" in phases) == ([1.0], [2.0], False)
    succeeded = metrics.documents(execution("SUCCEEDED", output=DEPLOYED), environment="prod")
    assert [d.get("Result") for d in succeeded] == ["succeeded", None] and succeeded[1]["Rollbacks"] == [0.0]
    aborted = metrics.documents(execution("ABORTED", error="Operator.Stop"), environment="prod")
    assert [d.get("Error") for d in aborted] == [None, None]  # free text is no dimension
    assert metrics.documents(execution("RUNNING"), environment="prod") == []


# ------------------------------------------------------------------ the execution-ended function


@pytest.fixture
def ended(ecs_world, inboxes, monkeypatch):
    """functions/execution_ended/app.py's handler, with web's config naming the topic, and web's lock held."""
    put_config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        f"notifications: {{snsTopicArn: '{inboxes.topic}', events: [failed]}}\n",
    )
    for name, value in {
        "FERRY_ENVIRONMENT": "prod",
        "CONFIG_BUCKET": "ferry-config",
        "ARTEFACTS_BUCKET": "ferry-artefacts",
        "LOCK_TABLE": "locks",
        "ALLOWED_CLUSTERS": "prod",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "ferry_execution_ended_app_under_test", ROOT / "functions/execution_ended/app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    journal.open("locks", owner=ARN, service="web", cluster="prod", ecs_service="web", migrations=[])
    lock.acquire("locks", "prod/web", ARN)
    context = SimpleNamespace(
        function_name="execution-ended",
        function_version="$LATEST",
        memory_limit_in_mb=256,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:execution-ended",
        aws_request_id="request-1",
        log_group_name="/aws/lambda/x",
        log_stream_name="test",
    )
    return SimpleNamespace(
        module=module,
        invoke=lambda event: module.handler(event, context),
        inboxes=inboxes,
        locked=lambda: (
            ferry_aws.client("dynamodb").get_item(TableName="locks", Key={"pk": {"S": "service#prod/web"}}).get("Item")
            is not None
        ),
    )


def test_running_is_announced_and_nothing_is_cleaned_up(ended, logs):
    outcome = ended.invoke(status_event("RUNNING"))
    assert outcome == {"handled": True, "status": "RUNNING", "notified": {"result": None, "event": True, "sns": None}}
    assert ended.locked(), "a running deploy keeps its lock"
    assert [e["detail-type"] for e in ended.inboxes.events()] == ["Ferry Deploy Started"]
    assert ended.inboxes.sns() == []  # events: [failed]
    assert not [line for line in logs() if "_aws" in line]


def test_an_end_is_cleaned_up_then_announced_then_measured(ended, logs):
    outcome = ended.invoke(status_event("FAILED", error="VerifyFailed", cause="Verify found 1 problem"))
    assert (outcome["lockReleased"], outcome["notified"]) == (True, {"result": "FAILED", "event": True, "sns": True})
    assert not ended.locked()
    [event] = ended.inboxes.events()
    assert (event["detail-type"], event["detail"]["cluster"], event["detail"]["error"]) == (
        "Ferry Deploy Ended",
        "prod",
        "VerifyFailed",
    )
    [published] = ended.inboxes.sns()
    assert published["Subject"] == "Ferry prod: web deploy failed (VerifyFailed)"
    emf = [line for line in logs() if "_aws" in line]
    assert [(d.get("Result"), d.get("Error")) for d in emf] == [("failed", None), (None, "VerifyFailed"), (None, None)]
    # This execution is not in moto's Step Functions: without its history, the end still goes out.
    assert any(line.get("message") == "execution history could not be read" for line in logs())


def test_a_notification_that_fails_blocks_nothing(ended, logs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("EventBridge is down")

    monkeypatch.setattr(execution_ended.notify, "publish", broken)
    outcome = ended.invoke(status_event("ABORTED", error="Operator.Stop"))
    assert outcome["lockReleased"] is True and not ended.locked()
    assert outcome["notified"] == {"event": False, "sns": None}
    assert any(line.get("message") == "deploy not announced" for line in logs())
    assert [line["Result"] for line in logs() if "_aws" in line and "Result" in line] == ["aborted"]
    assert ended.invoke(status_event("RUNNING"))["handled"] is True


def test_the_end_finds_the_revision_and_canary_tasks_the_execution_recorded(ended):
    """An aborted deploy's canary is removed by the execution-ended function: the revision's family finds canary
    tasks that already stopped, whose addresses must leave the target groups too."""
    revision = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
    task = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123"
    history = [
        entered("Register the new revision", 1, data=REQUEST),
        exited("Register the new revision", 2, data={**REQUEST, "register": {"taskDefinitionArn": revision}}),
        exited(
            "Start the canary tasks",
            3,
            data={
                **REQUEST,
                "register": {"taskDefinitionArn": revision},
                "canary": {"taskArns": [task], "startedAt": 1.0},
            },
        ),
        entered("Check the canary", 4, data={"register": "not what Register wrote", "canary": {"taskArns": 7}}),
    ]
    assert notify.recorded(history[:2], "register") == {"taskDefinitionArn": revision}
    assert notify.recorded(history, "missing") is None
    assert execution_ended._canary_recorded(history[:3]) == {"task_definition_arn": revision, "task_arns": [task]}
    assert execution_ended._canary_recorded(history) == {"task_definition_arn": None, "task_arns": []}
    assert execution_ended._canary_recorded(()) == {"task_definition_arn": None, "task_arns": []}
