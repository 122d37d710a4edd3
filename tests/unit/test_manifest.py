import json
from pathlib import Path

import pytest

from ferry import aws as ferry_aws
from ferry.triggers import manifest
from ferry.triggers import requests
from ferry.config import validation
from ferry.triggers.manifest import ManifestProblem

from .conftest import ACCOUNT, REGISTRY, digest, push

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "ferry-config"
KEY = "manifests/release-7.json"
ALLOWED = ("prod",)

WEB = """cluster: prod
service: web
containers: {app: {repository: web}, nginx: {repository: nginx}}
migrations: [{name: migrate, container: app, command: [bin/migrate]}]
"""
API = "cluster: prod\nservice: api\ncontainers: {app: {repository: api}}\n"
LEGACY = "cluster: legacy\nservice: old\ncontainers: {app: {repository: web}}\n"


@pytest.fixture
def registry(aws):
    """The config bucket and ECR repositories web (v1, v2), nginx (1.27) and api (v3); no ECS needed."""
    ferry_aws.client("s3").create_bucket(Bucket=BUCKET)
    ecr = ferry_aws.client("ecr")
    for repo, tags in (("web", ("v1", "v2")), ("nginx", ("1.27",)), ("api", ("v3",))):
        ecr.create_repository(repositoryName=repo)
        for tag in tags:
            push(repo, tag)


@pytest.fixture
def world(registry):
    put_config("web", WEB)
    put_config("api", API)
    put_config("legacy", LEGACY)


def put_config(name: str, text: str) -> None:
    """conftest's put_config, on Ferry's own cached client: a new S3 client per call costs ~65 ms."""
    ferry_aws.client("s3").put_object(Bucket=BUCKET, Key=f"services/{name}/ferry.yaml", Body=text.encode())


def drop(document, key=KEY) -> None:
    body = document if isinstance(document, (str, bytes)) else json.dumps(document)
    ferry_aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)


def plan(key=KEY, **kwargs):
    options = {
        "allowed_clusters": ALLOWED,
        "environment": "prod",
        "event_id": "event-1",
        "account": ACCOUNT,
        "region": "us-east-1",
        **kwargs,
    }
    return manifest.plan_manifest(BUCKET, key, **options)


def release(*deployments, **top):
    return {"version": 1, "deployments": list(deployments), **top}


def refused(document) -> dict[str, str]:
    """Drop the manifest; assert nothing would deploy; the problems by path."""
    drop(document)
    plans, problems, _ = plan()
    assert plans == []
    assert problems
    return {p.path: p.message for p in problems}


# ------------------------------------------------------------------ valid manifests


def test_a_two_service_release_plans_one_pinned_execution_per_service(world):
    drop(
        release(
            {"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}, "values": {"RELEASE": "2026-11-22"}},
            {"service": "api", "images": {"app": "api:v3"}, "migrate": False},
            reason="release 7: faster checkout",
            commit="9f1c2ab",
        )
    )
    plans, problems, meta = plan()
    assert problems == []
    assert meta == {"name": "release-7", "reason": "release 7: faster checkout", "commit": "9f1c2ab"}
    assert [p["input"]["service"] for p in plans] == ["web", "api"]
    web, api = (p["input"] for p in plans)
    assert plans[0]["name"] == requests.execution_name("web", "release-7", "event-1")
    assert plans[1]["name"] == requests.execution_name("api", "release-7", "event-1")
    assert web["images"] == {"app": f"{REGISTRY}/web:v2@{digest('web:v2')}"}
    assert api["images"] == {"app": f"{REGISTRY}/api:v3@{digest('api:v3')}"}
    assert (web["migrate"], api["migrate"]) == (True, False)  # default true; false skips the migrations
    assert (web["values"], api["values"]) == ({"RELEASE": "2026-11-22"}, {})
    assert web["commit"] == api["commit"] == "9f1c2ab"
    assert web["reason"] == "release 7: faster checkout"
    trigger = web["trigger"]
    assert {k: v for k, v in trigger.items() if k != "requestedAt"} == {
        "type": "manifest",
        "bucket": BUCKET,
        "key": KEY,
        "eventId": "event-1",
    }
    modified = ferry_aws.client("s3").head_object(Bucket=BUCKET, Key=KEY)["LastModified"].timestamp()
    assert isinstance(trigger["requestedAt"], float) and trigger["requestedAt"] == modified
    json.dumps(plans)  # execution input must be JSON


def test_a_sidecar_release_is_one_execution_with_both_images(world):
    drop(release({"service": "web", "images": {"app": "web:v2", "nginx": "nginx:1.27"}}))
    plans, problems, _ = plan()
    assert problems == []
    assert len(plans) == 1
    assert plans[0]["input"]["images"] == {
        "app": f"{REGISTRY}/web:v2@{digest('web:v2')}",
        "nginx": f"{REGISTRY}/nginx:1.27@{digest('nginx:1.27')}",
    }
    assert plans[0]["input"]["commit"] is None and plans[0]["input"]["reason"] is None


@pytest.mark.parametrize(
    "image, reference",
    [
        ("web:v2", f"{REGISTRY}/web:v2@{digest('web:v2')}"),
        (f"web@{digest('web:v2')}", f"{REGISTRY}/web:v2@{digest('web:v2')}"),  # the tag comes back from ECR
        (f"web:v2@{digest('web:v2')}", f"{REGISTRY}/web:v2@{digest('web:v2')}"),
        (f"{REGISTRY}/web@{digest('web:v1')}", f"{REGISTRY}/web:v1@{digest('web:v1')}"),
        (f"{REGISTRY}/web:v1", f"{REGISTRY}/web:v1@{digest('web:v1')}"),
    ],
)
def test_short_and_full_image_names_expand_to_this_registry_and_are_pinned(world, image, reference):
    drop(release({"service": "web", "images": {"app": image}}))
    plans, problems, _ = plan()
    assert problems == []
    assert plans[0]["input"]["images"] == {"app": reference}


def test_without_account_and_region_the_short_names_use_the_callers(world):
    drop(release({"service": "web", "images": {"app": "web:v2"}}))
    plans, problems, _ = plan(account="", region="")
    assert problems == []
    assert plans[0]["input"]["images"]["app"].startswith(f"{REGISTRY}/web:v2@")


def test_the_example_release_is_valid_against_the_example_world(registry):
    put_config("web", (ROOT / "examples/sandbox/registry/web/ferry.yaml").read_text())
    event = json.loads((ROOT / "events/manifest-dropped-release.json").read_text())
    key = event["detail"]["object"]["key"]
    assert manifest.is_manifest_key(key) and event["detail-type"] == "Object Created"
    assert event["detail"]["bucket"]["name"] == "ferry-sandbox-configbucket-123456789012"  # the sandbox's ConfigBucket
    validation.require_valid(event, "event.schema.json", "event", ValueError)
    drop((ROOT / "examples/manifests/release-2026-11-22.json").read_bytes(), key=key)
    plans, problems, meta = manifest.plan_manifest(
        BUCKET,
        key,
        allowed_clusters=("prod",),
        environment="sandbox",
        event_id=event["id"],
        account=event["account"],
        region=event["region"],
    )
    assert problems == []
    assert meta["name"] == "release-2026-11-22"
    assert plans[0]["input"]["images"] == {"app": f"{REGISTRY}/web:v2@{digest('web:v2')}"}
    assert plans[0]["input"]["values"] == {"RELEASE": "2026-11-22"}
    result = json.loads((ROOT / "events/manifest-result-written.json").read_text())
    assert not manifest.is_manifest_key(result["detail"]["object"]["key"])


# ------------------------------------------------------------------ refused manifests


def test_not_json_is_one_problem_with_its_line_and_column(world):
    drop('{"version": 1,\n "deployments": [\n  {"service": "web",, }]}')
    plans, problems, meta = plan()
    assert plans == []
    assert problems == [
        ManifestProblem("$", "not JSON: Expecting property name enclosed in double quotes at line 3 column 21")
    ]
    assert meta == {"name": "release-7", "reason": None, "commit": None}


@pytest.mark.parametrize(
    "document, path, words",
    [
        (
            {"deployments": [{"service": "web", "images": {"app": "web:v2"}}]},
            "$",
            "'version' is a required property: add it",
        ),
        (
            release({"service": "web", "images": {"app": "web:v2"}}, version=2),
            "$.version",
            "2 is not a manifest version",
        ),
        (release({"service": "web", "images": {"app": "web:v2"}}, version=True), "$.version", "True is not"),
        (
            release({"service": "web", "images": {"app": "web:v2"}, "migrate": "yes"}),
            "$.deployments[0].migrate",
            "is not of type 'boolean'",
        ),
        (release({"service": "web", "images": ["web:v2"]}), "$.deployments[0].images", "is not of type 'object'"),
        (release({"service": "web", "images": {"app": 2}}), "$.deployments[0].images.app", "is not of type 'string'"),
        (release({"service": "web", "images": {}}), "$.deployments[0].images", "should be non-empty"),
        (release(), "$.deployments", "should be non-empty"),
        (release({"service": "web", "images": {"app": "web:v2"}}, extra=1), "$", "unknown key 'extra'"),
        (
            release({"service": "web", "images": {"app": "web:v2"}, "tag": "v2"}),
            "$.deployments[0]",
            "unknown key 'tag'",
        ),
        (release({"service": "../web", "images": {"app": "web:v2"}}), "$.deployments[0].service", "does not match"),
        (
            release({"service": "web", "images": {"app": "web:v2"}, "values": {"1X": "a"}}),
            "$.deployments[0].values",
            "does not match",
        ),
        (
            release({"service": "web", "images": {"app": "web:v2"}}, commit="not a commit!"),
            "$.commit",
            "does not match",
        ),
        ([], "$", "is not of type 'object'"),
    ],
)
def test_schema_violations_are_refused_with_their_path(world, document, path, words):
    problems = refused(document)
    assert words in problems[path]


def test_a_service_deployed_twice_is_refused(world):
    problems = refused(
        release({"service": "web", "images": {"app": "web:v2"}}, {"service": "web", "images": {"nginx": "nginx:1.27"}})
    )
    assert problems == {
        "$.deployments[1].service": (
            "service 'web' is deployed by $.deployments[0] already: give each service one deployment, with all its containers' images"
        )
    }


def test_an_unregistered_service_is_refused_naming_the_fix(world):
    problems = refused(release({"service": "checkout", "images": {"app": "web:v2"}}))
    message = problems["$.deployments[0].service"]
    assert "no config in the registry" in message and "services/checkout/ferry.yaml" in message


def test_a_service_with_a_broken_config_is_refused(world):
    put_config("broken", "cluster: prod\nservice: broken\n")  # no containers
    message = refused(release({"service": "broken", "images": {"app": "web:v2"}}))["$.deployments[0].service"]
    assert "cannot be used" in message and "containers" in message and "fix services/broken/" in message


def test_a_service_on_a_cluster_outside_the_allowed_ones_is_refused(world):
    message = refused(release({"service": "legacy", "images": {"app": "web:v2"}}))["$.deployments[0].service"]
    assert "cluster 'legacy'" in message and "Clusters parameter" in message


def test_a_container_the_config_does_not_name_is_refused(world):
    message = refused(release({"service": "web", "images": {"worker": "web:v2"}}))["$.deployments[0].images.worker"]
    assert "container 'worker' is not one Ferry deploys" in message and "app, nginx" in message


@pytest.mark.parametrize(
    "image, words",
    [
        ("api:v3", "repository 'api', but container app of service web is fed by 'web'"),
        (f"{REGISTRY}/nginx:1.27", "is fed by 'web'"),
        ("web:v9", "'web:v9' is not in ECR: push it"),
        (f"web@{digest('web:v9')}", "is not in ECR"),
        (f"web:v2@{digest('web:v1')}", "tag 'v2' in ECR is sha256:"),
        ("210987654321.dkr.ecr.us-east-1.amazonaws.com/web:v2", "account 210987654321 in us-east-1"),
        (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/web:v2", "in eu-west-1"),
        ("docker.io/library/web:v2", "not an ECR image of this account"),
        ("web", "neither a tag nor a digest"),
        ("Web Server:latest", "not an image reference"),
    ],
)
def test_images_that_cannot_deploy_are_refused(world, image, words):
    message = refused(release({"service": "web", "images": {"app": image}}))["$.deployments[0].images.app"]
    assert words in message


def test_a_manifest_over_256_kib_is_refused_without_being_read(world, monkeypatch):
    big = release({"service": "web", "images": {"app": "web:v2"}}, reason="x" * 10)
    text = json.dumps(big)
    drop(text + " " * (manifest.MAX_BYTES - len(text) + 1))
    s3 = ferry_aws.client("s3")
    monkeypatch.setattr(s3, "get_object", lambda **kw: pytest.fail("a manifest over the limit was read"))
    plans, problems, _ = plan()
    assert plans == []
    assert [p.path for p in problems] == ["$"]
    assert "262145 bytes" in problems[0].message and "split the release" in problems[0].message


def test_a_manifest_of_exactly_256_kib_is_read(world):
    text = json.dumps(release({"service": "web", "images": {"app": "web:v2"}}))
    drop(text + " " * (manifest.MAX_BYTES - len(text)))
    plans, problems, _ = plan()
    assert problems == [] and len(plans) == 1


def test_every_problem_is_listed_and_nothing_deploys(world):
    problems = refused(
        release(
            {"service": "web", "images": {"app": "web:v9", "worker": "web:v2", "nginx": "api:v3"}},
            {"service": "api", "images": {"app": "api:v3"}, "migrate": "no"},
            {"service": "checkout", "images": {"app": "checkout:v1"}},
            {"service": "legacy", "images": {"app": "web:v2"}},
            {"service": "web", "images": {"app": "web:v2"}},
            unknown=True,
        )
    )
    assert sorted(problems) == sorted(
        [
            "$",  # unknown key
            "$.deployments[0].images.app",  # not in ECR
            "$.deployments[0].images.worker",  # not in the config
            "$.deployments[0].images.nginx",  # wrong repository
            "$.deployments[1].migrate",  # wrong type (api itself is fine, and is not deployed)
            "$.deployments[2].service",  # not registered
            "$.deployments[3].service",  # cluster not allowed
            "$.deployments[4].service",  # twice
        ]
    )


def test_messages_do_not_repeat_long_values(world):
    long = "web:" + "v" * 900
    problems = refused(release({"service": "web", "images": {"app": long}, "values": {"A": "b" * 5000}}))
    assert all(long not in m and "b" * 100 not in m for m in problems.values())
    assert len(problems["$.deployments[0].values.A"]) < 200
    assert len(problems["$.deployments[0].images.app"]) < 300


# ------------------------------------------------------------------ keys


@pytest.mark.parametrize(
    "key, expected",
    [
        ("manifests/release-7.json", True),
        ("manifests/release_2026.11.22.json", True),
        ("manifests/release-7.result.json", False),
        ("manifests/team/release-7.json", False),
        ("manifests/../services/web/ferry.json", False),
        ("manifests/..json", False),
        ("manifests/.json", False),
        ("manifests/release 7.json", False),
        ("manifests/release-7.yaml", False),
        ("services/web/ferry.json", False),
        ("release-7.json", False),
        ("manifests/" + "a" * 201 + ".json", False),
    ],
)
def test_only_manifests_directly_under_manifests_are_manifests(key, expected):
    assert manifest.is_manifest_key(key) is expected


def test_result_files_sit_beside_their_manifest():
    assert manifest.result_key("manifests/release-7.json") == "manifests/release-7.result.json"
    with pytest.raises(ValueError):
        manifest.result_key("manifests/release-7.result.json")


# ------------------------------------------------------------------ the result file


def _started_release(world):
    """A valid two-service release, started on a (moto) state machine and its result written."""
    sfn = ferry_aws.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="deploy",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    drop(
        release(
            {"service": "web", "images": {"app": "web:v2"}},
            {"service": "api", "images": {"app": "api:v3"}},
            reason="release 7",
            commit="9f1c2ab",
        )
    )
    plans, problems, meta = plan()
    started = requests.start(arn, plans)
    document = manifest.result_document(KEY, plans=plans, problems=problems, started=started, meta=meta)
    return plans, manifest.write_result(BUCKET, KEY, document)


def read_result(key="manifests/release-7.result.json"):
    return json.loads(ferry_aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_started_release_is_recorded_beside_the_manifest(world):
    plans, key = _started_release(world)
    assert key == "manifests/release-7.result.json"
    body = ferry_aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert body.startswith('{\n  "manifest"')  # indented for people
    result = json.loads(body)
    assert {k: result[k] for k in ("manifest", "name", "reason", "commit", "status", "problems")} == {
        "manifest": KEY,
        "name": "release-7",
        "reason": "release 7",
        "commit": "9f1c2ab",
        "status": "STARTED",
        "problems": [],
    }
    assert [(d["service"], d["execution"], d["status"]) for d in result["deployments"]] == [
        ("web", plans[0]["name"], "RUNNING"),
        ("api", plans[1]["name"], "RUNNING"),
    ]
    assert all(d["executionArn"].endswith(":" + d["execution"]) for d in result["deployments"])


def test_a_refused_release_is_recorded_with_every_problem(world):
    drop(release({"service": "checkout", "images": {"app": "web:v2"}}, reason="r"))
    plans, problems, meta = plan()
    document = manifest.result_document(KEY, plans=plans, problems=problems, meta=meta)
    manifest.write_result(BUCKET, KEY, document)
    result = read_result()
    assert result["status"] == "REFUSED" and result["deployments"] == [] and result["reason"] == "r"
    assert result["problems"] == [{"path": "$.deployments[0].service", "message": problems[0].message}]


def test_an_end_updates_its_deployment_and_keeps_the_others(world):
    plans, key = _started_release(world)
    cause = "é" * 3000
    assert manifest.record_end(BUCKET, key, plans[1]["name"], "FAILED", "DeploymentFailed", cause) is True
    web, api = read_result()["deployments"]
    assert web["status"] == "RUNNING" and "error" not in web
    assert (api["status"], api["error"]) == ("FAILED", "DeploymentFailed")
    assert len(api["cause"].encode()) <= 2048 and api["cause"].startswith("éé")
    assert manifest.record_end(BUCKET, key, plans[0]["name"], "SUCCEEDED", None, None) is True
    web, api = read_result()["deployments"]
    assert (web["status"], api["status"]) == ("SUCCEEDED", "FAILED")
    assert manifest.record_end(BUCKET, key, "someone-else", "SUCCEEDED", None, None) is False
    assert (
        manifest.record_end(BUCKET, "manifests/nothing.result.json", plans[0]["name"], "SUCCEEDED", None, None) is False
    )


def test_an_unhandled_lambda_error_is_recorded_as_its_message(world):
    """Step Functions gives a step's unhandled exception as the Lambda runtime's error document, a JSON string."""
    plans, key = _started_release(world)
    document = json.dumps(
        {
            "errorMessage": "service prod/web does not exist: create it first",
            "errorType": "ServiceNotFound",
            "requestId": "9f7c6f0e-5b1a-4c1e-8d62-7d0d9b0b2f11",
            "stackTrace": ['  File "/var/task/app.py", line 12, in handler\n', "    raise ServiceNotFound(...)\n"],
        }
    )
    assert manifest.record_end(BUCKET, key, plans[1]["name"], "FAILED", "ServiceNotFound", document) is True
    api = read_result()["deployments"][1]
    assert (api["error"], api["cause"]) == ("ServiceNotFound", "service prod/web does not exist: create it first")
    # A Cause Ferry wrote itself, or one that only looks like JSON, is kept as it is.
    assert (
        manifest.record_end(BUCKET, key, plans[0]["name"], "FAILED", "Lambda.Unknown", "[1, 2] not a document") is True
    )
    assert read_result()["deployments"][0]["cause"] == "[1, 2] not a document"


def test_two_ends_written_at_once_both_survive(world, monkeypatch):
    plans, key = _started_release(world)
    read = manifest._get_result
    calls = []

    def read_then_race(bucket, result_key):
        found = read(bucket, result_key)
        calls.append(result_key)
        if len(calls) == 1:  # the other execution's end lands between this read and its write
            manifest.record_end(bucket, result_key, plans[0]["name"], "SUCCEEDED", None, None)
        return found

    monkeypatch.setattr(manifest, "_get_result", read_then_race)
    assert manifest.record_end(BUCKET, key, plans[1]["name"], "FAILED", "MigrationFailed", "exit 1") is True
    assert len(calls) == 3  # outer read, the racer's read, the outer's second read after its If-Match failed
    assert [d["status"] for d in read_result()["deployments"]] == ["SUCCEEDED", "FAILED"]


def test_rewriting_the_result_keeps_an_end_already_recorded(world):
    plans, key = _started_release(world)
    manifest.record_end(BUCKET, key, plans[0]["name"], "FAILED", "VerifyFailed", "missing secret")
    # A redelivered event: the executions exist already; its result must not reset the recorded end.
    again = [{"service": p["input"]["service"], "executionName": p["name"], "duplicate": True} for p in plans]
    manifest.write_result(
        BUCKET, KEY, manifest.result_document(KEY, plans=plans, problems=[], started=again, meta={"name": "release-7"})
    )
    web, api = read_result()["deployments"]
    assert (web["status"], web["error"], web["cause"]) == ("FAILED", "VerifyFailed", "missing secret")
    assert web["executionArn"] and api["executionArn"] and api["status"] == "RUNNING"
