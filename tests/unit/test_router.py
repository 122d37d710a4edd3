import json

import boto3
import pytest

from ferry import config
from ferry.triggers import router
from ferry.triggers import requests

from .conftest import REGISTRY, digest, put_config

PUSH = {
    "id": "event-1",
    "account": "123456789012",
    "region": "us-east-1",
    "source": "aws.ecr",
    "detail-type": "ECR Image Action",
    "detail": {
        "action-type": "PUSH",
        "result": "SUCCESS",
        "repository-name": "web",
        "image-tag": "main-42",
        "image-digest": digest("web:main-42"),
    },
}


def test_a_push_is_parsed_into_a_pinned_image():
    push = router.parse_push(PUSH)
    assert push.image.pinned == f"{REGISTRY}/web@{digest('web:main-42')}"


@pytest.mark.parametrize(
    "change",
    [
        {"action-type": "DELETE"},
        {"result": "FAILURE"},
        {"image-tag": None},
        {"image-digest": None},
    ],
)
def test_pushes_that_cannot_deploy_are_not_pushes(change):
    event = json.loads(json.dumps(PUSH))
    event["detail"].update(change)
    assert router.parse_push(event) is None


def test_execution_names_are_stable_short_and_safe():
    name = requests.execution_name("web", "main-42", "event-1")
    assert name == requests.execution_name("web", "main-42", "event-1")
    assert name != requests.execution_name("web", "main-42", "event-2")
    long = requests.execution_name("a" * 100, "feature/ünïcode tag", "e")
    assert len(long) <= 80
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in long)


def test_one_execution_per_matching_service(ecs_world):
    put_config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}, worker: {repository: web}}\n"
        "triggers: [{repository: web, tags: ['main-*']}]\n",
    )
    put_config("web-canary", "cluster: prod\nservice: web-canary\ncontainers: {app: {repository: web}}\n")
    put_config("api", "cluster: prod\nservice: api\ncontainers: {app: {repository: api}}\n")
    configs, _ = config.load_all("ferry-config")
    plans = router.plan_push(router.parse_push(PUSH), configs)
    assert sorted(p["input"]["service"] for p in plans) == ["web", "web-canary"]
    web = next(p for p in plans if p["input"]["service"] == "web")
    pinned = f"{REGISTRY}/web:main-42@{digest('web:main-42')}"  # the tag stays, for {{ tag }} and the diff
    assert web["input"]["images"] == {"app": pinned, "worker": pinned}
    assert web["input"]["trigger"]["eventId"] == "event-1"
    assert web["input"]["summary"] == "deploy web: app=web:main-42, worker=web:main-42 (ECR push of web:main-42)"


def test_a_tag_outside_the_pattern_deploys_nothing(ecs_world):
    put_config(
        "web",
        "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
        "triggers: [{repository: web, tags: ['main-*']}]\n",
    )
    event = json.loads(json.dumps(PUSH))
    event["detail"]["image-tag"] = "pr-7"
    assert router.plan_push(router.parse_push(event), config.load_all("ferry-config")[0]) == []


def test_starting_the_same_plan_twice_starts_one_execution(ecs_world):
    sfn = boto3.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/sfn"
    arn = sfn.create_state_machine(
        name="deploy",
        roleArn=role,
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    plan = [{"name": "web-main-42-abc", "input": {"service": "web"}}]
    first = requests.start(arn, plan)
    # While the first runs, Step Functions answers a same-name, same-input start with the same execution.
    assert requests.start(arn, plan)[0]["executionArn"] == first[0]["executionArn"]
    sfn.stop_execution(executionArn=first[0]["executionArn"])
    # Once it has ended, the name is refused: a redelivered event cannot deploy again.
    assert requests.start(arn, plan)[0] == {"service": "web", "executionName": "web-main-42-abc", "duplicate": True}
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_two_pushes_in_one_second_tie_on_their_time_and_a_redelivery_keeps_its_place(ecs_world):
    """EventBridge's `time` has whole seconds: two pushes in one second have the same requestedAt, and what orders
    them (ferry.steps.lock.DeployOrder) is their executions' starts, which a redelivered event cannot change."""
    from ferry.steps import lock

    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="deploy",
        roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Wait", "Seconds": 60, "End": True}}}),
    )["stateMachineArn"]
    configs, _ = config.load_all("ferry-config")
    plans = []
    for event_id, tag in (("e-2", "v2"), ("e-3", "v3")):
        event = json.loads(json.dumps(PUSH))
        event.update(id=event_id, time="2026-01-01T00:00:07Z")
        event["detail"]["image-tag"] = tag
        [plan] = router.plan_push(router.parse_push(event), configs)
        plans.append(plan)
    older, newer = (p["input"]["trigger"]["requestedAt"] for p in plans)
    assert older == newer == 1767225607.0
    assert plans[0]["name"] != plans[1]["name"]

    def order(plan):
        [started] = requests.start(arn, [plan])
        execution = sfn.describe_execution(executionArn=started["executionArn"])
        start = execution["startDate"].isoformat()
        return lock.order_of(json.loads(execution["input"]), start, execution["executionArn"])

    first = order(plans[0])
    assert order(plans[0]) == first  # the same event again: the same execution, the same place
