"""The wait for an ECS deployment: its contract with both waits, target health on every page, and ECS's events
(not a state: no contract)."""

from __future__ import annotations

import boto3
import pytest

from ferry.steps import check_deployment
from ferry.aws import ecs, waiters
from ferry.aws.ecs import check_in_seconds
from ferry.errors import InputInvalid

from .conftest import awsvpc, run_tasks


def test_a_service_with_150_tasks_is_health_checked_on_all_of_them(runnable_world):
    """ListTasks answers 100 a page: the second page's tasks must be checked too."""
    net = awsvpc()
    tasks = run_tasks(150, runnable_world["taskDefinitionArn"], network=net, group="service:web")
    elb = boto3.client("elbv2")
    group = elb.create_target_group(Name="web-tg", Protocol="HTTP", Port=80, VpcId=net["vpc"], TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    ips = [ecs.task_ip(t) for t in tasks]
    for i in range(0, len(ips), 50):
        elb.register_targets(TargetGroupArn=group, Targets=[{"Id": ip, "Port": 80} for ip in ips[i : i + 50]])
    watch = check_deployment.Watch("prod", "web", runnable_world["taskDefinitionArn"], 0.0, 600, target_groups=(group,))
    assert check_deployment.target_health(watch, {"loadBalancers": []}) == {"web-tg": "150/150 healthy"}


def test_a_deployment_event_of_a_short_arn_service_is_logged_and_ignored(aws, logs):
    """ECS names a service created before the long ARN format arn:aws:ecs:<region>:<account>:service/<name>: no cluster
    to find its waiting state by (Verify refuses such services; an event of one must not crash the handler)."""
    short = "arn:aws:ecs:us-east-1:123456789012:service/web"
    assert check_deployment.service_from_arn(short) == ("", "")
    assert check_deployment.on_event("locks", short) is False
    [line] = [line for line in logs() if line.get("message", "").startswith("deployment event ignored")]
    assert line["serviceArn"] == short and "short ARN" in line["message"]


# ------------------------------------------------------------------ the step's contract

REVISION = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
# What "Wait for ECS to finish the deployment" passes
WAIT = {
    "token": "token-1",
    "execution": "web-v2-abc",
    "service": "web",
    "cluster": "prod",
    "ecsService": "web",
    "taskDefinitionArn": REVISION,
    "startedAt": 1000.5,
    "timeoutSeconds": 1800,
    "phase": "deployment",
    "strategy": "native",
    "targetGroups": ["web-internal"],
}
# ... and "Wait for ECS to finish the rollback"
ROLLBACK_WAIT = {key: value for key, value in WAIT.items() if key not in ("strategy", "targetGroups")} | {
    "phase": "rollback",
    "taskDefinitionArn": REVISION.replace(":2", ":1"),
}


def test_each_wait_reads_as_what_to_wait_for():
    assert check_deployment.read(WAIT).watch == check_deployment.Watch(
        "prod", "web", REVISION, 1000.5, 1800, "deployment", True, ("web-internal",)
    )
    rollback = check_deployment.read(ROLLBACK_WAIT)
    assert rollback.where == "prod/web" and rollback.service == "web"
    assert rollback.watch == check_deployment.Watch(
        "prod", "web", REVISION.replace(":2", ":1"), 1000.5, 1800, "rollback"
    )
    # the waiter's record (what ECS's event is settled with) is the same as before the contract
    assert check_deployment.Watch.from_context(rollback.watch.to_context()) == rollback.watch


@pytest.mark.parametrize(
    "event, words",
    [
        (
            {**WAIT, "startedAt": None},
            "Wait for ECS to finish the deployment's input: `startedAt` is missing: the state "
            "must pass it ($.deployment.startedAt",
        ),
        (
            {**ROLLBACK_WAIT, "timeoutSeconds": "1800"},
            "Wait for ECS to finish the rollback's input: `timeoutSeconds` must be a number, got a string",
        ),
        ({**WAIT, "ecsService": None}, "Wait for ECS to finish the deployment's input: `ecsService` is missing"),
        ({**WAIT, "phase": "canary"}, "`phase` must be deployment or rollback, got 'canary'"),
        ({**WAIT, "targetGroups": "web-internal"}, "`targetGroups` must be a list, got a string"),
        ({**WAIT, "targetGroups": [7]}, "`targetGroups` must be a list of target group names or ARNs"),
        ("{}", "Wait for ECS to finish the deployment's input must be a JSON object, got a string"),
    ],
)
def test_bad_input_is_refused_naming_the_field(event, words):
    with pytest.raises(InputInvalid) as refused:
        check_deployment.read(event)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    "output",
    [
        check_deployment.Output(
            state="COMPLETED", running=2, desired=2, failed_tasks=0, target_health={"web-tg": "2/2 healthy"}
        ),
        check_deployment.Output(
            state="COMPLETED",
            running=2,
            desired=2,
            failed_tasks=1,
            service_deployment_status="SUCCESSFUL",
            lifecycle_stage="CLEAN_UP",
            status_reason="done",
            stages=[{"stage": "BAKE_TIME", "at": 1300}],
        ),
        check_deployment.Waiting(waiting=True, check_in_seconds=1801),
    ],
    ids=["rolling", "native", "waiting"],
)
def test_the_output_round_trips(output):
    assert type(output).from_state(output.to_state()) == output


def test_the_token_is_completed_with_the_progress_and_the_stages_seen(monkeypatch):
    completed = []
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: completed.append((token, kw)) or True)
    monkeypatch.setattr(waiters, "delete", lambda *_: None)
    progress = {
        "state": "COMPLETED",
        "running": 2,
        "desired": 2,
        "failedTasks": 0,
        "serviceDeploymentStatus": "SUCCESSFUL",
        "lifecycleStage": "CLEAN_UP",
    }
    monkeypatch.setattr(check_deployment, "check", lambda watch: dict(progress))
    stages = [{"stage": "BAKE_TIME", "at": 1200}, {"stage": "CLEAN_UP", "at": 1300}]  # the last one seen already
    watch = check_deployment.read(WAIT).watch
    assert check_deployment.settle("locks", "token-1", watch, {"stages": list(stages)}) is True
    [(token, kw)] = completed
    assert token == "token-1"
    assert (
        kw["output"]
        == check_deployment.Output(
            state="COMPLETED",
            running=2,
            desired=2,
            failed_tasks=0,
            service_deployment_status="SUCCESSFUL",
            lifecycle_stage="CLEAN_UP",
            stages=stages,
        ).to_state()
    )
    # $.deployment.progress: every key the progress had, the stages seen, and null for the rest
    assert {k: v for k, v in kw["output"].items() if v is not None} == {**progress, "stages": stages}


def test_the_wait_answers_when_it_looks_again(runnable_world, monkeypatch):
    monkeypatch.setattr(waiters, "complete", lambda token, **kw: True)
    monkeypatch.setattr(
        check_deployment, "check", lambda watch: {"state": "IN_PROGRESS", "running": 1, "desired": 2, "failedTasks": 0}
    )
    waiting = check_deployment.run(check_deployment.read({**WAIT, "strategy": "rolling"}), "locks")
    assert waiting == check_deployment.Waiting(waiting=True, check_in_seconds=check_in_seconds(1800))
    assert waiting.message == "waiting for ECS to report the end of the deployment"
    looked = check_deployment.run(check_deployment.read({**WAIT, "token": None}), "locks")  # no token: one look
    assert looked == check_deployment.Output(state="IN_PROGRESS", running=1, desired=2, failed_tasks=0)


def test_a_deployment_event_no_state_waits_for_is_handled_without_a_contract(runnable_world, logs):
    event = {
        "source": "aws.ecs",
        "detail-type": "ECS Deployment State Change",
        "resources": ["arn:aws:ecs:us-east-1:123456789012:service/prod/web"],
        "detail": {"eventName": "SERVICE_DEPLOYMENT_COMPLETED"},
    }
    assert check_deployment.from_ecs(event) and not check_deployment.from_ecs(WAIT)
    assert check_deployment.deployment_changed("locks", event) == {"settled": False}
    [line] = [line for line in logs() if line.get("message") == "no state waits for this deployment's end"]
    assert line["eventName"] == "SERVICE_DEPLOYMENT_COMPLETED"
