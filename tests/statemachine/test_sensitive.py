"""Nothing a failed task logs reaches a shared place: the history, the manifest result, Ferry's events and SNS name
the masked log tail in the artefacts bucket, and carry none of its lines.

One sandbox session (runs are slow). The service's config names an SNS topic; an EventBridge rule on source ferry
and the topic each deliver to an SQS queue created here. Release manifest 1 deploys web:v2, whose migration fails;
then, with a canary config and no migrations, release manifest 2 deploys web:v3, whose canary crashes. Both log
the same credentials, in every form a log writes them, and the app's task definition sets API_TOKEN in its plain
environment, which the container logs bare. Release manifest 3 deploys with a template that fills a container's
cpu from an SSM parameter holding a string: Render fails, naming the parameter's path and never the value.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from ferry_cli.sandbox.run import deliver_all, load_delivery, summarise, world_session

from .conftest import EXAMPLE

TOPIC = "arn:aws:sns:us-east-1:123456789012:web-deploys"
BARE = "bare-api-token-4711"  # API_TOKEN's environment value, logged bare
SECRETS = {
    "DSN password": "dsn-pw-5150",
    "DB_PASS": "db-pass-8086",
    "bearer token": "bearer-tok-6502",
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2lnbmF0dXJlLTI2MDA",
    "access key id": "AKIA2E0A8F3B244C9986",
    "secret access key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLE01",
    "bare environment value": BARE,
}
HINT = "boot: missing REDIS_URL"  # a line that is no secret: it goes to the artefact, not to a Cause
LOG_LINES = [
    "starting",
    f"DATABASE_URL=postgres://app:{SECRETS['DSN password']}@db.internal:5432/shop",
    f"DB_PASS={SECRETS['DB_PASS']}",
    f"GET /orders Authorization: Bearer {SECRETS['bearer token']}",
    f"session {SECRETS['JWT']}",
    f"aws: {SECRETS['access key id']}",
    SECRETS["secret access key"],
    f"calling the API with {BARE}",
    HINT,
]
CPU = "cpu-from-ssm-s3cr3t-9931"  # a parameter value a template puts where a number belongs
CONFIG = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
NOTIFY = f"notifications: {{snsTopicArn: '{TOPIC}'}}\n"
MIGRATION = (
    "strategy: {type: rolling}\nmigrations: [{name: migrate, container: app, command: [bin/rails, db:migrate]}]\n"
)
CANARY = "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60}}\n"
REFERENCE = re.compile(
    r"Its last \d+ log lines, masked: s3://(?P<bucket>[^/\s]+)/(?P<key>executions/(?P<execution>[^/\s]+)/logs/"
    r"(?P<task>[0-9a-f-]+)\.txt) \(from CloudWatch Logs /ecs/web web/app/(?P=task)\)\."
)


def _manifest(folder, name: str, tag: str):
    path = folder / "manifests" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"version": 1, "deployments": [{"service": "web", "images": {"app": f"web:{tag}"}}]}))
    return load_delivery("manifest", path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    spec = json.loads((EXAMPLE / "web-task-def.json").read_text())
    spec["containerDefinitions"][0]["environment"].append({"name": "API_TOKEN", "value": BARE})
    (folder / "web-task-def.json").write_text(json.dumps(spec))
    shutil.copytree(EXAMPLE / "registry", folder / "registry")
    (folder / "registry" / "web" / "ferry.yaml").write_text(CONFIG + MIGRATION + NOTIFY)
    world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    world["ecr"]["web"].append("v3")
    world["migration"] = {"exitCode": 1, "logLines": LOG_LINES}
    world["behaviour"] = {"web:v3": {"exitCode": 1, "tasks": "canary", "logLines": LOG_LINES}}
    world["parameters"]["/prod/web/cpu"] = CPU
    (folder / "world.yaml").write_text(yaml.safe_dump(world))

    with world_session(folder / "world.yaml") as (sandbox, loaded):
        sqs, sns, events, s3 = (sandbox.client(n) for n in ("sqs", "sns", "events", "s3"))

        def queue(name):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        events_url, events_arn = queue("ferry-events")
        events.put_rule(Name="ferry-deploys", EventPattern=json.dumps({"source": ["ferry"]}))
        events.put_targets(Rule="ferry-deploys", Targets=[{"Id": "queue", "Arn": events_arn}])
        sns_url, sns_arn = queue("web-deploys")
        sns.create_topic(Name="web-deploys")
        sns.subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=sns_arn)

        deliver_all(sandbox, loaded, [_manifest(folder, "release-1", "v2")])
        sandbox.wait_for_executions()
        s3.put_object(
            Bucket=sandbox.config_bucket, Key="services/web/ferry.yaml", Body=(CONFIG + CANARY + NOTIFY).encode()
        )
        deliver_all(sandbox, loaded, [_manifest(folder, "release-2", "v3")])
        sandbox.wait_for_executions()
        # A template whose container cpu comes from an SSM parameter holding a string: botocore's shape check
        # refuses it, and the Cause names the parameter's path in the document, not the value.
        template = json.loads((folder / "web-task-def.json").read_text())
        template["containerDefinitions"][0]["image"] = "{{ image `app` }}"
        template["containerDefinitions"][0]["cpu"] = "CPU"
        s3.put_object(
            Bucket=sandbox.config_bucket,
            Key="services/web/task-definition.json",
            Body=json.dumps(template).replace('"CPU"', "{{ ssm `/prod/web/cpu` }}").encode(),
        )
        s3.put_object(
            Bucket=sandbox.config_bucket,
            Key="services/web/ferry.yaml",
            Body=(CONFIG + "strategy: {type: rolling}\ntaskDefinition: {template: task-definition.json}\n").encode(),
        )
        deliver_all(sandbox, loaded, [_manifest(folder, "release-3", "v2")])
        sandbox.wait_for_executions()

        def drain(url):
            found = []
            while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                found += [m["Body"] for m in batch]
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
                )
            return found

        logs = [o["Key"] for o in s3.list_objects_v2(Bucket=sandbox.artefacts_bucket).get("Contents", [])]
        yield {
            "summary": summarise(sandbox, []),
            "histories": {
                e["name"]: json.dumps(sandbox.history(e["executionArn"]), default=str) for e in sandbox.executions()
            },
            "events": drain(events_url),
            "sns": drain(sns_url),
            "bucket": sandbox.artefacts_bucket,
            "artefacts": {
                key: s3.get_object(Bucket=sandbox.artefacts_bucket, Key=key)["Body"].read().decode()
                for key in logs
                if "/logs/" in key
            },
            "lock table": json.dumps(sandbox.client("dynamodb").scan(TableName=sandbox.lock_table)["Items"]),
        }


def _by_error(run) -> dict[str, dict]:
    return {e["error"]: e for e in run["summary"]["executions"]}


def _leaks(text: str) -> list[str]:
    """The planted secrets in `text`, and any log line (a Cause names the tail, it quotes none of it)."""
    return [name for name, secret in SECRETS.items() if secret in text] + [line for line in LOG_LINES if line in text]


def test_both_deploys_failed_before_the_service_changed(run):
    migration, canary = _by_error(run)["MigrationFailed"], _by_error(run)["CanaryCrashed"]
    assert migration["states"][-3] == "Run the migration task and wait for it to stop", migration["states"]
    assert canary["states"][-3] == "Remove the canary after the failure", canary["states"]
    web = run["summary"]["services"]["prod/web"]
    assert (web["taskDefinition"], web["runningCount"]) == ("web:1", 2) and run["summary"]["locksHeld"] == 0


@pytest.mark.parametrize("error", ["MigrationFailed", "CanaryCrashed"])
def test_the_cause_names_the_masked_tail_and_holds_none_of_it(run, error):
    execution = _by_error(run)[error]
    found = REFERENCE.search(execution["cause"])
    assert found, execution["cause"]
    assert (found["bucket"], found["execution"]) == (run["bucket"], execution["name"])
    assert _leaks(execution["cause"]) == []
    assert _leaks(run["histories"][execution["name"]]) == [], "the execution's history holds a log line"
    assert found["key"] in run["histories"][execution["name"]]


@pytest.mark.parametrize("error", ["MigrationFailed", "CanaryCrashed"])
def test_the_artefact_holds_the_tail_masked(run, error):
    key = REFERENCE.search(_by_error(run)[error]["cause"])["key"]
    tail = run["artefacts"][key]
    assert HINT in tail and "postgres://app:***@db.internal:5432/shop" in tail and "DB_PASS=***" in tail
    assert "Authorization: Bearer ***" in tail and "calling the API with ***" in tail
    assert [name for name, secret in SECRETS.items() if secret in tail] == []


def test_the_manifest_results_name_the_tail_and_hold_none_of_it(run):
    results = run["summary"]["manifestResults"]
    by_error = {}
    for name in ("release-1", "release-2", "release-3"):
        [deployment] = results[f"manifests/{name}.result.json"]["deployments"]
        by_error[deployment["error"]] = deployment
        assert _leaks(json.dumps(results[f"manifests/{name}.result.json"])) == []
    for error in ("MigrationFailed", "CanaryCrashed"):
        assert REFERENCE.search(by_error[error]["cause"])["key"] in json.dumps(_by_error(run)[error]["cause"])


def test_ferrys_events_and_sns_name_the_tail_and_hold_none_of_it(run):
    assert run["events"] and run["sns"]
    for published in run["events"] + run["sns"]:
        assert _leaks(published) == []
    for error in ("MigrationFailed", "CanaryCrashed"):
        key = REFERENCE.search(_by_error(run)[error]["cause"])["key"]
        ended = [json.loads(e) for e in run["events"] if key in e]
        assert [e["detail"]["error"] for e in ended] == [error]
        # An SQS subscriber gets the event's JSON (the "sqs" message of the topic's message structure).
        messages = [json.loads(json.loads(m)["Message"]) for m in run["sns"] if key in m]
        assert len(messages) == 1 and f"s3://{run['bucket']}/{key}" in messages[0]["detail"]["cause"]


def test_the_lock_table_holds_no_secret_value(run):
    """The waiting migration's record keeps fingerprints of API_TOKEN's value, not the value."""
    assert run["lock table"] and BARE not in run["lock table"]


def test_a_template_value_that_breaks_the_register_shape_is_named_not_quoted(run):
    execution = _by_error(run)["TaskDefinitionInvalid"]
    assert execution["states"][-3] == "Render the new task definition and diff it", execution["states"]
    assert (
        "Invalid type for parameter containerDefinitions[0].cpu: str, valid types: <class 'int'>"
        in (execution["cause"])
    )
    for place in [json.dumps(run["summary"], default=str), *run["histories"].values(), *run["events"], *run["sns"]]:
        assert CPU not in place
