"""Events of unexpected shapes: the router ignores each with one log line saying why, and starts nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ferry import aws as ferry_aws
from ferry.triggers import router

from .conftest import ACCOUNT, digest, push

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ferry-config"
PUSH = {
    "version": "0",
    "id": "event-1",
    "source": "aws.ecr",
    "detail-type": "ECR Image Action",
    "account": ACCOUNT,
    "region": "us-east-1",
    "time": "2026-11-22T10:00:00Z",
    "detail": {
        "action-type": "PUSH",
        "result": "SUCCESS",
        "repository-name": "web",
        "image-tag": "v2",
        "image-digest": digest("web:v2"),
    },
}
DROP = {
    "version": "0",
    "id": "event-2",
    "source": "aws.s3",
    "detail-type": "Object Created",
    "account": ACCOUNT,
    "region": "us-east-1",
    "time": "2026-11-22T10:00:00Z",
    "detail": {"bucket": {"name": BUCKET}, "object": {"key": "manifests/release-7.json"}},
}


def changed(event: dict, **detail) -> dict:
    """A copy of `event` with detail fields set (None removes one); top-level fields with a `_top` dict."""
    event = json.loads(json.dumps(event))
    for name, value in detail.pop("_top", {}).items():
        if value is None:
            event.pop(name, None)
        else:
            event[name] = value
    for name, value in detail.items():
        name = name.replace("_", "-")
        if value is None:
            event["detail"].pop(name, None)
        else:
            event["detail"][name] = value
    return event


def sample(name: str, **top) -> dict:
    event = json.loads((ROOT / "events" / name).read_text())
    return {**event, **top}


IGNORED = [
    (
        "a push without a tag",
        sample("ecr-push-without-tag.json"),
        "detail.image-tag is missing: a push without a tag (by digest alone) deploys nothing",
    ),
    ("a DELETE", sample("ecr-delete-web.json"), "action-type 'DELETE' is not 'PUSH': only a push deploys"),
    (
        "a failed push",
        changed(PUSH, result="FAILURE"),
        "result 'FAILURE' is not 'SUCCESS': a failed push deploys nothing",
    ),
    ("a push with no result", changed(PUSH, result=None), "result None is not 'SUCCESS'"),
    ("a push with an empty tag", changed(PUSH, image_tag=""), "detail.image-tag is '', not text"),
    ("a push with a number for a tag", changed(PUSH, image_tag=42), "detail.image-tag is 42, not text"),
    (
        "a push with a list for a repository",
        changed(PUSH, repository_name=["web"]),
        "detail.repository-name is ['web'], not text",
    ),
    ("a push without a digest", changed(PUSH, image_digest=None), "detail.image-digest is missing"),
    (
        "a push without an account",
        changed(PUSH, _top={"account": None}),
        "account None is not an AWS account id: the image's registry is unknown",
    ),
    (
        "a push with a bad account",
        changed(PUSH, _top={"account": "../../etc"}),
        "account '../../etc' is not an AWS account id",
    ),
    ("a push without a region", changed(PUSH, _top={"region": None}), "region None is not a region"),
    ("an ECR event without detail", changed(PUSH, _top={"detail": None}), "detail is NoneType, not an object"),
    ("an ECR event whose detail is text", changed(PUSH, _top={"detail": "PUSH"}), "detail is str, not an object"),
    (
        "an ECR event whose detail is a list",
        changed(PUSH, _top={"detail": [PUSH["detail"]]}),
        "detail is list, not an object",
    ),
    (
        "not an EventBridge event",
        json.loads((ROOT / "events/not-an-event.json").read_text()),
        "detail-type None is not 'ECR Image Action' nor a manifest drop",
    ),
    (
        "another service's event",
        changed(PUSH, _top={"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}),
        "detail-type 'EC2 Instance State-change Notification' is not 'ECR Image Action'",
    ),
    ("a huge detail-type", changed(PUSH, _top={"detail-type": "x" * 100_000}), "detail-type 'xxxxxxxx"),
    (
        "an S3 event for another bucket",
        changed(DROP, bucket={"name": "someone-elses"}),
        "object created in bucket 'someone-elses', not the config bucket 'ferry-config'",
    ),
    (
        "an S3 event for another prefix",
        changed(DROP, object={"key": "services/web/ferry.yaml"}),
        "object 'services/web/ferry.yaml' is not a manifest",
    ),
    ("a result file written", sample("manifest-result-written.json"), "not the config bucket"),
    (
        "a result file written in the config bucket",
        changed(DROP, object={"key": "manifests/release-7.result.json"}),
        "object 'manifests/release-7.result.json' is not a manifest",
    ),
    (
        "a manifest key with a path",
        changed(DROP, object={"key": "manifests/../../etc/passwd.json"}),
        "is not a manifest",
    ),
    ("an S3 event without an object key", changed(DROP, object=None), "detail.object.key is missing or not text"),
    ("an S3 event whose bucket is text", changed(DROP, bucket=BUCKET), "detail.bucket.name is missing or not text"),
    (
        "an S3 event whose detail is text",
        changed(DROP, _top={"detail": "manifests/release-7.json"}),
        "detail is str, not an object: not an S3 event",
    ),
    ("an S3 event without detail", changed(DROP, _top={"detail": None}), "detail is NoneType, not an object"),
]


@pytest.mark.parametrize("what, event, reason", IGNORED, ids=[i[0] for i in IGNORED])
def test_unexpected_events_are_ignored_with_one_log_line_saying_why(logs, what, event, reason):
    assert router.manifest_key(event, BUCKET) is None
    assert router.parse_push(event) is None
    lines = [line for line in logs() if line["message"].startswith("event ignored: ")]
    assert len(lines) == 1, lines
    assert reason in lines[0]["message"]
    assert len(lines[0]["message"]) < 400  # nothing big is echoed
    assert lines[0]["level"] == "INFO"


@pytest.mark.parametrize("event", [None, [], [PUSH], "ECR Image Action", 42])
def test_an_event_that_is_not_an_object_is_ignored_by_the_router(logs, event):
    assert router.manifest_key(event, BUCKET) is None
    assert router.parse_push(event) is None
    assert [line["message"] for line in logs()] == [
        f"event ignored: the event is {type(event).__name__}, not a JSON object"
    ]


def test_a_valid_push_and_a_valid_drop_log_nothing_from_the_router(logs):
    assert router.parse_push(PUSH).tag == "v2"
    assert router.manifest_key(DROP, BUCKET) == "manifests/release-7.json"
    assert logs() == []


# ------------------------------------------------------------------ through the Lambda handler, against moto


@pytest.fixture
def handler(aws, monkeypatch):
    """functions/router/app.py's handler, loaded with this test's settings, and a state machine to count starts."""
    s3 = ferry_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(
        Bucket=BUCKET,
        Key="services/web/ferry.yaml",
        Body=b"cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n",
    )
    ferry_aws.client("ecr").create_repository(repositoryName="web")
    push("web", "v2")
    arn = ferry_aws.client("stepfunctions").create_state_machine(
        name="deploy",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    for name, value in {
        "FERRY_ENVIRONMENT": "prod",
        "CONFIG_BUCKET": BUCKET,
        "ARTEFACTS_BUCKET": "ferry-artefacts",
        "LOCK_TABLE": "locks",
        "ALLOWED_CLUSTERS": "prod",
        "STATE_MACHINE_ARN": arn,
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("ferry_router_app_under_test", ROOT / "functions/router/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = SimpleNamespace(
        function_name="router",
        function_version="$LATEST",
        memory_limit_in_mb=256,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:router",
        aws_request_id="request-1",
        log_group_name="/aws/lambda/router",
        log_stream_name="test",
    )

    def invoke(event):
        return module.handler(event, context)

    invoke.executions = lambda: ferry_aws.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    return invoke


def test_the_router_function_starts_nothing_for_any_unexpected_event(handler, logs):
    """Every event above, through the deployed entry point (one moto world for all: each costs ~0.5 s to build)."""
    for what, event, reason in IGNORED:
        assert handler(event) == {"started": [], "ignored": True}, what
        assert any(line["message"].startswith("event ignored: ") and reason in line["message"] for line in logs()), what
    assert handler.executions() == []


def test_the_router_function_still_deploys_a_tagged_push(handler, logs):
    outcome = handler(PUSH)
    assert [s["service"] for s in outcome["started"]] == ["web"]
    assert len(handler.executions()) == 1
    assert not any(line["message"].startswith("event ignored") for line in logs())


def test_the_router_function_starts_nothing_for_a_refused_manifest(handler, logs):
    ferry_aws.client("s3").put_object(
        Bucket=BUCKET, Key="manifests/release-7.json", Body=b'{"version": 1, "version": 1, "deployments": []}'
    )
    outcome = handler(DROP)
    assert outcome["started"] == [] and outcome["ignored"] is False
    assert outcome["refused"] == [
        "$: key 'version' is written twice: keep one (the parser would silently use the last)"
    ]
    assert handler.executions() == []
    assert "manifest refused: nothing deploys" in [line["message"] for line in logs()]
