"""AWS's published event samples (tests/fixtures/aws, sources in SOURCES.md) against Ferry's rules and handlers.

Part one matches every sample against the EventBridge rule patterns in
template.yaml exactly as the sandbox does (moto's matcher, intrinsic functions
resolved like sandbox.Sandbox). Part two delivers the samples a rule delivers
to the handler that consumes them, inside a sandbox built from the shipped
world, and checks the handler copes with the real shape. Where a sample must
name something that exists in the sandbox (a repository, the config bucket,
the service, the alarm, the state machine) the test rewrites that one field
and says so; nothing else in a sample is touched.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from typing import Any

import pytest
import yaml
from moto.events.models import EventPattern

from ferry_cli.sandbox.sandbox import DEFAULT_ACCOUNT, DEFAULT_REGION, ENVIRONMENT, REPO_ROOT
from ferry_cli.sandbox.template import Resolver, Template, physical_resources

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "aws"
EXAMPLE = REPO_ROOT / "examples" / "sandbox"
SAMPLES = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json"))

# Which rules each sample matches as AWS publishes it (the state machine ARN: the sample's own,
# substituted for !Ref DeployStateMachine, so a status sample stands for an execution of Ferry's).
EXPECTED = {
    "ecr/image-push.json": {"EcrPush"},
    "ecr/image-delete.json": set(),  # action-type DELETE
    "ecr/image-push-failure.json": set(),  # result FAILURE
    "s3/object-created.json": set(),  # another bucket, and a key outside manifests/
    "s3/object-created-put.json": set(),
    "ecs/task-state-change-running.json": set(),
    "ecs/task-state-change-container-stopped.json": set(),  # a container stopped; the task still RUNNING
    # The published task events carry no startedBy (or ECS's own "ecs-svc/..."): not Ferry's tasks.
    "ecs/task-stopped-essential-container-exited.json": set(),
    "ecs/task-stopped-out-of-memory.json": set(),
    "ecs/task-stopped-user-initiated.json": set(),
    "ecs/task-stopped-service-scheduler-initiated.json": set(),
    "ecs/task-stopped-task-failed-to-start.json": set(),
    "ecs/deployment-in-progress.json": set(),
    "ecs/deployment-in-progress-rollback.json": set(),
    "ecs/deployment-completed.json": {"DeploymentChanged"},
    "ecs/deployment-failed.json": {"DeploymentChanged"},
    "cloudwatch/alarm-single-metric.json": {"AlarmFired"},
    "cloudwatch/alarm-metric-math.json": {"AlarmFired"},
    "cloudwatch/alarm-anomaly-detection.json": {"AlarmFired"},
    "cloudwatch/alarm-single-metric-ok.json": set(),
    "states/execution-running.json": {"ExecutionEnded"},
    "states/execution-succeeded.json": {"ExecutionEnded"},
    "states/execution-failed.json": {"ExecutionEnded"},
    "states/execution-timed-out.json": {"ExecutionEnded"},
    "states/execution-aborted.json": {"ExecutionEnded"},
    "states/execution-started-redrive-fields.json": {"ExecutionEnded"},
    "states/execution-failed-redrive-fields.json": {"ExecutionEnded"},
    "states/execution-redriven.json": {"ExecutionEnded"},
}
TASK_STOPPED = [s for s in SAMPLES if s.startswith("ecs/task-stopped-")]
STATUS_SAMPLES = [s for s in SAMPLES if s.startswith("states/")]
ALARM_SAMPLES = [s for s, rules in EXPECTED.items() if rules == {"AlarmFired"}]
# startedBy of a migration task Ferry runs: "ferry-" and 30 hex digits (ferry.migrate.started_by).
FERRY_STARTED_BY = "ferry-0123456789abcdef0123456789abcd"


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def rule_patterns(**refs: str) -> dict[str, dict[str, Any]]:
    """{rule name: pattern} of every EventBridge rule in template.yaml, resolved as sandbox.Sandbox resolves them.

    `refs` replace the Ref values of logical ids (DeployStateMachine, ConfigBucket) with a sample's own.
    """
    template = Template.load(REPO_ROOT)
    physical, attrs, pseudo = physical_resources(
        template,
        account=DEFAULT_ACCOUNT,
        region=DEFAULT_REGION,
        environment=ENVIRONMENT,
        parameters={"EnvironmentName": ENVIRONMENT, "Clusters": ["prod"]},
    )
    resolver = Resolver({**physical, **refs}, attrs, pseudo)
    patterns: dict[str, dict[str, Any]] = {}
    for function in template.functions().values():
        for rule, pattern in function.rules.items():
            assert rule not in patterns, f"two functions name an event {rule}"
            patterns[rule] = resolver.resolve(pattern)
    return patterns


def matching(event: dict[str, Any], **refs: str) -> set[str]:
    return {
        rule
        for rule, pattern in rule_patterns(**refs).items()
        if EventPattern.load(json.dumps(pattern)).matches_event(event)
    }


def own_refs(event: dict[str, Any]) -> dict[str, str]:
    """The sample's own state machine ARN for !Ref DeployStateMachine (status samples only)."""
    arn = (event.get("detail") or {}).get("stateMachineArn")
    return {"DeployStateMachine": arn} if event.get("source") == "aws.states" and arn else {}


# ------------------------------------------------------------------ the samples themselves
def test_every_sample_is_classified_and_has_a_recorded_source():
    assert sorted(EXPECTED) == SAMPLES, "a sample was added or removed: say which rules it matches"
    sources = (FIXTURES / "SOURCES.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+\.json)` \|", sources, flags=re.M))
    assert listed == set(SAMPLES), "SOURCES.md must list every sample, one row each, and nothing else"


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_are_eventbridge_events(name):
    event = sample(name)
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert event["version"] == "0" and isinstance(event["resources"], list) and isinstance(event["detail"], dict)


# ------------------------------------------------------------------ a. the rules
def test_the_template_has_the_rules_this_file_expects():
    assert set(rule_patterns()) == {
        "EcrPush",
        "ManifestDropped",
        "TaskStopped",
        "ExecutionEnded",
        "AlarmFired",
        "DeploymentChanged",
    }


@pytest.mark.parametrize("name", SAMPLES)
def test_each_published_sample_matches_exactly_the_expected_rules(name):
    event = sample(name)
    assert matching(event, **own_refs(event)) == EXPECTED[name]


@pytest.mark.parametrize("name", STATUS_SAMPLES)
def test_a_status_change_of_another_state_machine_matches_no_rule(name):
    # The ARN the template resolves to (the sandbox's state machine), not the sample's.
    assert matching(sample(name)) == set()


@pytest.mark.parametrize("name", TASK_STOPPED)
def test_a_stopped_task_ferry_started_matches_task_stopped_only(name):
    event = sample(name)
    # Rewritten: detail.startedBy, to the form Ferry's migration tasks carry.
    event["detail"]["startedBy"] = FERRY_STARTED_BY
    assert matching(event) == {"TaskStopped"}
    event["detail"]["startedBy"] = "ecs-svc/9223370556150183303"  # a service's task: not Ferry's
    assert matching(event) == set()


def test_a_running_task_ferry_started_matches_no_rule():
    event = sample("ecs/task-state-change-running.json")
    event["detail"]["startedBy"] = FERRY_STARTED_BY  # rewritten: startedBy
    assert matching(event) == set()


def test_an_object_created_in_the_config_bucket_matches_only_under_manifests():
    event = sample("s3/object-created.json")
    bucket = rule_patterns()["ManifestDropped"]["detail"]["bucket"]["name"][0]
    event["detail"]["bucket"]["name"] = bucket  # rewritten: the bucket, to the config bucket
    assert matching(event) == set()  # key "example-key": not a manifest
    event["detail"]["object"]["key"] = "manifests/release.json"  # rewritten: the key
    assert matching(event) == set()  # the sample's account, 111122223333, is not the stack's
    event["account"] = DEFAULT_ACCOUNT  # rewritten: the account, to the stack's
    assert matching(event) == {"ManifestDropped"}


# ------------------------------------------------------------------ b. the handlers, in a sandbox
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from ferry_cli.sandbox.run import world_session

    folder = tmp_path_factory.mktemp("world")
    shutil.copy(EXAMPLE / "web-task-def.json", folder / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", folder / "registry")
    world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    (folder / "world.yaml").write_text(yaml.safe_dump(world))
    with world_session(folder / "world.yaml") as (box, _world):
        yield box


def in_sandbox(box, event: dict[str, Any]) -> dict[str, Any]:
    """The sample as the sandbox's account and region would receive it (rewritten: account, region)."""
    event = copy.deepcopy(event)
    event["account"], event["region"] = box.account, box.region
    return event


def delivered(box, event: dict[str, Any], rule: str) -> dict[str, Any]:
    """Deliver through the rules; the one target's result, checked to have run without error."""
    targets = box.deliver(event)
    assert [t["rule"] for t in targets] == [rule], targets
    [target] = targets
    assert target["error"] is None, target["result"]
    return target["result"]


def test_the_published_push_starts_a_deploy_of_the_pushed_image(sandbox):
    event = in_sandbox(sandbox, sample("ecr/image-push.json"))
    # Rewritten: the repository and tag, to one the world's service config deploys (web, tags v*).
    event["detail"]["repository-name"], event["detail"]["image-tag"] = "web", "v2"
    result = delivered(sandbox, event, "EcrPush")
    assert result["ignored"] is False
    [started] = result["started"]
    assert started["service"] == "web" and not started["duplicate"]
    execution = sandbox.client("stepfunctions").describe_execution(executionArn=started["executionArn"])
    request = json.loads(execution["input"])
    assert request["trigger"] == {
        **request["trigger"],
        "type": "ecr-push",
        "repository": "web",
        "tag": "v2",
        "digest": sample("ecr/image-push.json")["detail"]["image-digest"],
        "eventId": event["id"],
    }
    sandbox.wait_for_executions()  # the sample's digest names no image: it fails, and ends


@pytest.mark.parametrize("name", ["ecr/image-delete.json", "ecr/image-push-failure.json"])
def test_a_delete_or_a_failed_push_reaches_no_handler(sandbox, name):
    event = in_sandbox(sandbox, sample(name))
    event["detail"]["repository-name"] = "web"  # rewritten: a repository the world has
    assert sandbox.deliver(event) == []


def test_the_published_object_created_event_in_manifests_is_read_as_a_manifest(sandbox):
    key = "manifests/published-sample.json"
    sandbox.client("s3").put_object(Bucket=sandbox.config_bucket, Key=key, Body=b"not a manifest")
    event = in_sandbox(sandbox, sample("s3/object-created.json"))
    # Rewritten: the bucket (to the config bucket) and the key (to the manifest just dropped there).
    event["detail"]["bucket"]["name"], event["detail"]["object"]["key"] = sandbox.config_bucket, key
    result = delivered(sandbox, event, "ManifestDropped")
    assert result["started"] == [] and result["ignored"] is False and result["refused"]
    written = sandbox.client("s3").get_object(
        Bucket=sandbox.config_bucket, Key="manifests/published-sample.result.json"
    )
    assert json.loads(written["Body"].read())["status"] == "REFUSED"


@pytest.mark.parametrize("name", TASK_STOPPED)
def test_a_stopped_task_nobody_waits_for_is_handled_without_error(sandbox, name):
    event = in_sandbox(sandbox, sample(name))
    event["detail"]["startedBy"] = FERRY_STARTED_BY  # rewritten: startedBy, as Ferry's tasks
    assert delivered(sandbox, event, "TaskStopped") == {"completed": False}


@pytest.mark.parametrize("name", ["ecs/deployment-completed.json", "ecs/deployment-failed.json"])
def test_the_end_of_a_deployment_of_the_worlds_service_is_handled_without_error(sandbox, name):
    event = in_sandbox(sandbox, sample(name))
    # Rewritten: resources, to the world's service (the handler reads the service from its ARN).
    event["resources"] = [f"arn:aws:ecs:{sandbox.region}:{sandbox.account}:service/prod/web"]
    assert delivered(sandbox, event, "DeploymentChanged") == {"settled": False}  # no state waits for it


@pytest.mark.parametrize("name", ["ecs/deployment-in-progress.json", "ecs/deployment-in-progress-rollback.json"])
def test_a_deployment_in_progress_reaches_no_handler(sandbox, name):
    event = in_sandbox(sandbox, sample(name))
    event["resources"] = [f"arn:aws:ecs:{sandbox.region}:{sandbox.account}:service/prod/web"]  # rewritten
    assert sandbox.deliver(event) == []


@pytest.mark.parametrize("name", ALARM_SAMPLES)
def test_an_alarm_no_bake_watches_is_handled_without_error(sandbox, name):
    event = in_sandbox(sandbox, sample(name))
    event["detail"]["alarmName"] = "web-5xx"  # rewritten: the world's alarm
    assert delivered(sandbox, event, "AlarmFired") == {"bakesFailed": 0}


def test_an_alarm_back_to_ok_reaches_no_handler(sandbox):
    event = in_sandbox(sandbox, sample("cloudwatch/alarm-single-metric-ok.json"))
    event["detail"]["alarmName"] = "web-5xx"  # rewritten
    assert sandbox.deliver(event) == []


@pytest.mark.parametrize("name", STATUS_SAMPLES)
def test_a_status_change_of_an_unknown_execution_is_handled_without_error(sandbox, name):
    published = sample(name)
    event = in_sandbox(sandbox, published)
    # Rewritten: stateMachineArn, to the sandbox's state machine (the rule matches only Ferry's). The
    # executionArn stays the sample's: an execution this account never ran.
    event["detail"]["stateMachineArn"] = sandbox.state_machine_arn
    result = delivered(sandbox, event, "ExecutionEnded")
    status = published["detail"]["status"]
    assert result["handled"] is True and result["status"] == status
    if status != "RUNNING":  # input "{}": no service named, so no lock, canary or result file to clean up
        assert (
            result["lockReleased"],
            result["canaryTasksStopped"],
            result["migrationTasksStopped"],
            result["resultRecorded"],
        ) == (False, 0, 0, False)
