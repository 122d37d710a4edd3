"""Notifications and metrics in the real state machine: each deploy's start and end reach EventBridge (source
ferry) and the service's SNS topic, and its metrics are written, without a secret value anywhere.

One sandbox session (runs are slow): web:v2 deploys through a canary and succeeds; then, with a rolling config,
web:v3, whose tasks crash, is rolled back by ECS and Ferry. An EventBridge rule on source ferry and the topic the
config names each deliver to an SQS queue created here; the EMF documents are read from the log lines the sandbox
captures (the metrics are written where the Logger writes).
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ferry_cli.sandbox.run import summarise, world_session

from .conftest import EXAMPLE, push_event

SECRET = "sandbox-db-password-do-not-print"  # examples/sandbox/world.yaml's secret value
TOPIC = "arn:aws:sns:us-east-1:123456789012:web-deploys"
CONFIG = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
NOTIFY = f"notifications: {{snsTopicArn: '{TOPIC}', events: [started, rolledBack]}}\n"
CANARY = "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60}}\n"
ROLLING = "strategy: {type: rolling}\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    shutil.copy(EXAMPLE / "web-task-def.json", folder / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", folder / "registry")
    (folder / "registry" / "web" / "ferry.yaml").write_text(CONFIG + CANARY + NOTIFY)
    world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    assert world["secrets"]["prod/web/db-password"]["value"] == SECRET
    world["ecr"]["web"].append("v3")
    world["behaviour"] = {"web:v3": {"exitCode": 1}}
    (folder / "world.yaml").write_text(yaml.safe_dump(world))

    with world_session(folder / "world.yaml") as (sandbox, _world):
        sqs, sns, events = sandbox.client("sqs"), sandbox.client("sns"), sandbox.client("events")

        def queue(name):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        events_url, events_arn = queue("ferry-events")
        events.put_rule(Name="ferry-deploys", EventPattern=json.dumps({"source": ["ferry"]}))
        events.put_targets(Rule="ferry-deploys", Targets=[{"Id": "queue", "Arn": events_arn}])
        sns_url, sns_arn = queue("web-deploys")
        assert sns.create_topic(Name="web-deploys")["TopicArn"] == TOPIC
        sns.subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=sns_arn)

        sandbox.deliver(push_event("web", "v2", "push-v2"))
        sandbox.wait_for_executions()
        sandbox.client("s3").put_object(
            Bucket=sandbox.config_bucket, Key="services/web/ferry.yaml", Body=(CONFIG + ROLLING + NOTIFY).encode()
        )
        sandbox.deliver(push_event("web", "v3", "push-v3"))
        sandbox.wait_for_executions()

        def drain(url):
            found = []
            while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                found += [json.loads(m["Body"]) for m in batch]
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
                )
            return found

        summary = summarise(sandbox, [])
        yield {
            "summary": summary,
            "events": drain(events_url),
            "sns": drain(sns_url),
            "artefacts": sandbox.artefacts_bucket,
            "emf": [json.loads(line) for line in summary["logLines"] if line.startswith('{"_aws"')],
            "executions": {e["name"]: e for e in summary["executions"]},
        }


def _names(run):
    [succeeded] = [n for n, e in run["executions"].items() if e["status"] == "SUCCEEDED"]
    [rolled_back] = [n for n, e in run["executions"].items() if e["error"] == "RolledBack"]
    return succeeded, rolled_back


def test_the_two_deploys_ended_as_expected(run):
    succeeded, rolled_back = _names(run)
    assert "Check the canary" in run["executions"][succeeded]["states"]
    assert run["executions"][rolled_back]["states"][-1] == "Rolled back"
    assert run["summary"]["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert run["summary"]["locksHeld"] == 0


def test_each_deploy_puts_a_started_and_an_ended_event_on_the_default_bus(run):
    succeeded, rolled_back = _names(run)
    by_execution = {}
    for event in run["events"]:
        assert (event["source"], event["region"]) == ("ferry", "us-east-1")
        by_execution.setdefault(event["detail"]["execution"], []).append(event)
    assert set(by_execution) == {succeeded, rolled_back}
    for name, result in ((succeeded, "SUCCEEDED"), (rolled_back, "ROLLED_BACK")):
        started, ended = sorted(by_execution[name], key=lambda e: e["detail-type"] != "Ferry Deploy Started")
        assert (started["detail-type"], ended["detail-type"]) == ("Ferry Deploy Started", "Ferry Deploy Ended")
        assert "result" not in started["detail"] and ended["detail"]["result"] == result
        for event in (started, ended):
            detail = event["detail"]
            assert (detail["service"], detail["cluster"], detail["ecsService"], detail["environment"]) == (
                "web",
                "prod",
                "web",
                "sandbox",
            )
            assert event["resources"] == [detail["executionArn"]] and detail["executionArn"].endswith(":" + name)
            tag = "v2" if name == succeeded else "v3"
            assert detail["images"]["app"].startswith(f"123456789012.dkr.ecr.us-east-1.amazonaws.com/web:{tag}@sha256:")
            assert detail["artefacts"] == f"s3://{run['artefacts']}/executions/{name}/"
            assert detail["consoleUrl"].endswith("#/v2/executions/details/" + detail["executionArn"])
        assert (
            ended["detail"]["summary"].startswith("image app web")
            and f"-> web:{tag} (sha256:" in ended["detail"]["summary"]
        )
        assert isinstance(ended["detail"]["durationSeconds"], int)
    ok = next(e["detail"] for e in by_execution[succeeded] if e["detail-type"] == "Ferry Deploy Ended")
    assert (ok["error"], ok["cause"]) == (None, None)
    failed = next(e["detail"] for e in by_execution[rolled_back] if e["detail-type"] == "Ferry Deploy Ended")
    assert failed["error"] == "RolledBack"
    assert failed["cause"].startswith("web:3 failed: DeploymentFailed:")
    assert failed["cause"] == run["executions"][rolled_back]["cause"]  # the Lambda error document's message, whole


def test_the_topic_gets_what_notifications_events_asks_for(run):
    succeeded, rolled_back = _names(run)
    # events: [started, rolledBack]: both starts, the rollback's end, not the success's end.
    messages = [(json.loads(m["Message"])["detail"]["execution"], m["Subject"]) for m in run["sns"]]
    assert sorted(messages) == sorted(
        [
            (succeeded, "Ferry sandbox: deploy of web started"),
            (rolled_back, "Ferry sandbox: deploy of web started"),
            (rolled_back, "Ferry sandbox: web rolled back"),
        ]
    )
    # An SQS subscriber gets the event as EventBridge carries it; the same detail.
    message = next(m for m in run["sns"] if m["Subject"].endswith("rolled back"))
    put = next(
        e for e in run["events"] if e["detail-type"] == "Ferry Deploy Ended" and e["detail"]["execution"] == rolled_back
    )
    assert json.loads(message["Message"]) == {
        "source": "ferry",
        "detail-type": "Ferry Deploy Ended",
        "detail": put["detail"],
    }
    assert {k: v["Value"] for k, v in message["MessageAttributes"].items()} == {
        "result": "ROLLED_BACK",
        "service": "web",
        "environment": "sandbox",
    }


def test_metrics_are_written_for_each_end_with_its_result(run):
    succeeded, rolled_back = _names(run)
    by_execution = {}
    for document in run["emf"]:
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ferry"
        by_execution.setdefault(document["execution"], []).append(document)
    assert set(by_execution) == {succeeded, rolled_back}

    deploy, phases = by_execution[succeeded]
    assert (deploy["Result"], deploy["service"], deploy["environment"], deploy["Deploys"]) == (
        "succeeded",
        "web",
        "sandbox",
        [1.0],
    )
    assert deploy["DeployDuration"][0] > 0
    assert {"CanaryDuration", "CanaryHealthWait", "RolloutDuration"} <= set(phases) and phases["Rollbacks"] == [0.0]
    assert phases["CanaryHealthWait"][0] >= 0 and "BakeDuration" not in phases

    deploy, failure, phases = by_execution[rolled_back]
    assert (deploy["Result"], failure["Error"], failure["Deploys"]) == ("rolled_back", "RolledBack", [1.0])
    assert phases["Rollbacks"] == [1.0] and "RolloutDuration" in phases and "CanaryDuration" not in phases


def test_no_secret_value_is_published(run):
    published = run["events"] + run["sns"] + run["emf"]
    assert published
    for item in published:
        assert SECRET not in json.dumps(item)
