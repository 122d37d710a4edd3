"""The rollback step: back to the previous revision (stopping an in-flight deployment on every page), the failed
revision retired as the config says, and its contract with the three rollback states."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from ferry import aws as ferry_aws
from ferry.steps import rollback
from ferry.aws import canary_tasks
from ferry.aws.ecs import check_in_seconds
from ferry.contract import Progress
from ferry.errors import InputInvalid
from ferry.runtime.settings import Settings


def test_a_rollback_stops_in_flight_service_deployments_on_every_page(aws):
    """ListServiceDeployments answers 20 a page by default."""
    client = ferry_aws.client("ecs")
    failed, previous = (
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
    )

    def service(revision):
        return {
            "services": [
                {
                    "serviceName": "web",
                    "status": "ACTIVE",
                    "deployments": [{"status": "PRIMARY", "taskDefinition": revision, "rolloutState": "IN_PROGRESS"}],
                }
            ]
        }

    arns = [f"arn:aws:ecs:us-east-1:123456789012:service-deployment/prod/web/sd{i}" for i in range(25)]
    with Stubber(client) as stub:
        stub.add_response("describe_services", service(failed))
        stub.add_response(
            "list_service_deployments",
            {"serviceDeployments": [{"serviceDeploymentArn": a} for a in arns[:20]], "nextToken": "page-2"},
            {"cluster": "prod", "service": "web", "status": ["PENDING", "IN_PROGRESS"]},
        )
        stub.add_response(
            "list_service_deployments",
            {"serviceDeployments": [{"serviceDeploymentArn": a} for a in arns[20:]]},
            {"cluster": "prod", "service": "web", "status": ["PENDING", "IN_PROGRESS"], "nextToken": "page-2"},
        )
        for arn in arns:
            stub.add_response(
                "stop_service_deployment",
                {"serviceDeploymentArn": arn},
                {"serviceDeploymentArn": arn, "stopType": "ROLLBACK"},
            )
        stub.add_response("describe_services", service(previous))
        started = rollback.start("prod", "web", previous, 2, failed)
        stub.assert_no_pending_responses()
    assert started["method"] == "stopped the in-flight deployment with ROLLBACK"


# ------------------------------------------------------------------ the step's contract

PREVIOUS = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1"
FAILED = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
FAILURE = {"Error": "AlarmTriggered", "Cause": "alarm web-5xx went into ALARM during the 60 s bake"}
# statemachine/build.py ROLLBACK: what every rollback state passes
ROLLBACK = {
    "execution": "web-v2-abc",
    "service": "web",
    "cluster": "prod",
    "ecsService": "web",
    "previousTaskDefinitionArn": PREVIOUS,
    "desiredCount": 2,
    "failedTaskDefinitionArn": FAILED,
    "failure": FAILURE,
    "requestAction": "deploy",
}
START = {"action": "start", **ROLLBACK, "timeoutSeconds": 1800}
FINISH = {"action": "finish", "method": "updated the service to web:1", "keepFailedRevisions": 0, **ROLLBACK}
EXPLAIN = {"action": "explain", "rollbackFailure": {"Error": "DeploymentFailed", "Cause": "ECS said no"}, **ROLLBACK}
SETTINGS = Settings(
    environment="prod",
    config_bucket="ferry-config",
    artefacts_bucket="ferry-artefacts",
    lock_table="locks",
    allowed_clusters=("prod",),
)


def test_each_state_input_reads_as_its_action_takes_it():
    start = rollback.read(START)
    assert isinstance(start, rollback.StartInput) and start.where == "prod/web" and start.failed == FAILED
    assert rollback.read({**START, "timeoutSeconds": None}).timeout == rollback.DEFAULT_TIMEOUT_SECONDS
    # a rollback request's target is a known-good revision: never retired
    assert rollback.read({**FINISH, "requestAction": "rollback"}).failed is None
    assert rollback.read({**FINISH, "method": None}).method is None
    assert isinstance(rollback.read(EXPLAIN), rollback.ExplainInput)


@pytest.mark.parametrize(
    "event, words",
    [
        (
            {**FINISH, "keepFailedRevisions": None},
            "Deregister the failed revision's input: `keepFailedRevisions` is missing: the state must pass "
            "it (failed revisions left registered, $.render.keepFailedRevisions",
        ),
        (
            {**START, "desiredCount": "2"},
            "Roll back to the previous revision's input: `desiredCount` must be a number, got a string",
        ),
        (
            {**EXPLAIN, "previousTaskDefinitionArn": None},
            "Explain the failed rollback's input: `previousTaskDefinitionArn` is missing",
        ),
        ({**EXPLAIN, "rollbackFailure": "DeploymentFailed"}, "`rollbackFailure` must be an object, got a string"),
        ({**START, "cluster": None}, "Roll back to the previous revision's input: `cluster` is missing"),
        ({**ROLLBACK, "action": "undo"}, "`action` must be start, finish or explain, got 'undo'"),
        (None, "the rollback's input must be a JSON object, got null"),
    ],
)
def test_bad_input_is_refused_naming_the_field(event, words):
    with pytest.raises(InputInvalid) as refused:
        rollback.read(event)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    "output",
    [
        rollback.Started(
            method="updated the service to web:1",
            started_at=1000.5,
            canary_tasks_stopped=-1,
            progress=Progress(state="IN_PROGRESS", check_in_seconds=1801),
        ),
        rollback.RolledBack(error="RolledBack", cause="web:2 failed: ...", retired=["web:2"]),
        rollback.Explained(error="RollbackFailed", cause="ROLLBACK FAILED: a person must act on prod/web."),
    ],
    ids=lambda output: type(output).__name__,
)
def test_the_output_round_trips(output):
    assert type(output).from_state(output.to_state()) == output


def test_the_canary_is_removed_first_and_a_removal_that_fails_does_not_stop_the_rollback(monkeypatch):
    calls = []
    monkeypatch.setattr(
        rollback,
        "start",
        lambda *args: calls.append(("start", *args)) or {"method": "updated the service to web:1", "startedAt": 1000.5},
    )

    def removal_fails(*args, **kwargs):
        calls.append(("remove_now", *args, kwargs))
        raise RuntimeError("the target group is gone")

    monkeypatch.setattr(canary_tasks, "remove_now", removal_fails)
    started = rollback.run(rollback.read({**START, "timeoutSeconds": 600}), SETTINGS)
    assert calls == [
        ("remove_now", "prod", "web", "web-v2-abc", {"task_definition_arn": FAILED}),
        ("start", "prod", "web", PREVIOUS, 2, FAILED),
    ]
    assert started == rollback.Started(
        method="updated the service to web:1",
        started_at=1000.5,
        canary_tasks_stopped=-1,
        progress=Progress(state="IN_PROGRESS", check_in_seconds=check_in_seconds(600)),
    )
    assert started.to_state()["progress"] == {"state": "IN_PROGRESS", "checkInSeconds": 601}

    monkeypatch.setattr(canary_tasks, "remove_now", lambda *args, **kwargs: 2)
    calls.clear()
    request = rollback.read({**START, "requestAction": "rollback", "timeoutSeconds": None})
    started = rollback.run(request, SETTINGS)
    assert started.canary_tasks_stopped == 2 and started.progress.check_in_seconds == check_in_seconds(1800)
    assert calls == [("start", "prod", "web", PREVIOUS, 2, None)]  # the target of a rollback request is not "failed"


@pytest.mark.parametrize("keep, retired", [(0, ["web:2"]), (1, [])])
def test_the_failed_revision_is_retired_as_the_configs_keep_failed_revisions_says(ecs_world, keep, retired):
    # Render read the config's rollback.keepFailedRevisions when the deploy began; the state passes it on.
    failed = boto3.client("ecs").register_task_definition(
        family="web", containerDefinitions=[{"name": "app", "image": "web:v2", "memory": 256}]
    )["taskDefinition"]
    request = rollback.read(
        {
            **FINISH,
            "keepFailedRevisions": keep,
            "previousTaskDefinitionArn": ecs_world["taskDefinitionArn"],
            "failedTaskDefinitionArn": failed["taskDefinitionArn"],
        }
    )
    report = rollback.run(request, SETTINGS)
    assert isinstance(report, rollback.RolledBack) and report.error == "RolledBack" and report.retired == retired
    assert report.cause.startswith(
        "web:2 failed: AlarmTriggered: alarm web-5xx went into ALARM during the 60 s bake\n"
        "Ferry rolled prod/web back to web:1 (2 tasks; updated the service to web:1) and "
        "that deployment completed: the service is stable on web:1."
    )
    assert report.cause.endswith(
        " web:2 was deregistered." if keep == 0 else " web:2 stays registered (rollback.keepFailedRevisions: 1)."
    )


def test_a_failed_rollback_is_explained_for_a_person(ecs_world):
    report = rollback.run(rollback.read(EXPLAIN), SETTINGS)
    assert report == rollback.Explained(error="RollbackFailed", cause=report.cause)
    assert report.cause.startswith("ROLLBACK FAILED: a person must act on prod/web.\nweb:2 failed (AlarmTriggered: ")
    assert "rolling back to web:1 failed too: DeploymentFailed: ECS said no\nIt now runs web:1" in report.cause
    assert report.cause.endswith(
        "aws ecs update-service --cluster prod --service web --task-definition web:1 --desired-count 2"
    )
