"""The canary step: its contract with the five canary states, and taking a crashed canary out of the target groups
(ECS deregisters no task outside a service, so Ferry must)."""

from __future__ import annotations

import boto3
import pytest

from ferry.steps import canary
from ferry.aws import ecs
from ferry.aws import canary_tasks
from ferry.errors import CanaryCrashed, InputInvalid

from .conftest import run_tasks


def registered(group: str) -> set[str]:
    return {
        d["Target"]["Id"]
        for d in boto3.client("elbv2").describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    }


@pytest.mark.parametrize("given", [True, False], ids=["revision-given", "revision-from-the-service"])
def test_crashed_canary_tasks_are_taken_out_of_the_target_groups(canary_world, given):
    execution = "web-v2-abc"
    tasks = run_tasks(
        2,
        canary_world["taskDefinitionArn"],
        network=canary_world["network"],
        startedBy=canary_tasks.started_by(execution),
    )
    ips = {ecs.task_ip(t) for t in tasks}
    boto3.client("elbv2").register_targets(
        TargetGroupArn=canary_world["targetGroup"], Targets=[{"Id": ip, "Port": 80} for ip in ips]
    )
    for task in tasks:  # both crashed: ListTasks with startedBy alone no longer lists them
        boto3.client("ecs").stop_task(cluster="prod", task=task["taskArn"], reason="Essential container in task exited")
    revision = {"task_definition_arn": canary_world["taskDefinitionArn"]} if given else {}
    drained = canary.deregister("prod", "web", execution, **revision)
    assert drained == {"drainSeconds": 0, "tasks": 0}
    assert not registered(canary_world["targetGroup"]) & ips


# ------------------------------------------------------------------ the step's contract

REVISION = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
ECS_SERVICE = {"execution": "web-v2-abc", "service": "web", "cluster": "prod", "ecsService": "web"}
TASK = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef"
# $.canary as "Start the canary tasks" leaves it: its ResultSelector keeps taskArns and startedAt, adds the first wait
STARTED = {"taskArns": [TASK], "startedAt": 1000.5, "progress": {"waitSeconds": 30}}
CHECK = {
    "action": "check",
    **ECS_SERVICE,
    "taskDefinitionArn": REVISION,
    "canary": {"count": 1},
    "started": STARTED,
    "progress": STARTED["progress"],
    "timeoutSeconds": 600,
}


def test_each_state_input_reads_as_its_action_takes_it():
    check = canary.read(CHECK)
    assert isinstance(check, canary.CheckInput) and check.where == "prod/web"
    # the schema's defaults for what the config leaves out
    assert check.canary == canary.CanarySettings(count=1, healthy_for=60, unhealthy_threshold=3)
    assert check.started.task_arns == [TASK] and check.progress.document() == {"waitSeconds": 30}
    start = canary.read({"action": "start", **ECS_SERVICE, "taskDefinitionArn": REVISION})
    assert isinstance(start, canary.StartInput) and start.canary.count == 1
    removal = canary.read({"action": "deregister", **ECS_SERVICE, "taskDefinitionArn": REVISION, "started": STARTED})
    assert removal.recorded == {"task_definition_arn": REVISION, "task_arns": [TASK]}
    remove = canary.read({"action": "remove", **ECS_SERVICE, "taskDefinitionArn": REVISION})
    assert remove.recorded == {"task_definition_arn": REVISION, "task_arns": []}
    assert isinstance(canary.read({"action": "stop", **ECS_SERVICE}), canary.StopInput)


def test_an_observation_read_back_by_the_next_check_is_the_same_document():
    """The state stores every key of the observation, null included; the next check reads back only those it has."""
    observed = canary.Observation(
        state="WAITING",
        wait_seconds=15,
        unhealthy=0,
        healthy_since=1040.0,
        registered=True,
        registered_at=1030.0,
        healthy_after=10,
        interval=5,
    )
    again = canary.read(
        {**CHECK, "started": {**STARTED, "progress": observed.to_state()}, "progress": observed.to_state()}
    )
    assert again.progress.document() == observed.to_state()  # every key set: nothing left out
    waiting = canary.Observation(state="WAITING", wait_seconds=15).to_state()
    assert canary.read({**CHECK, "progress": waiting}).progress.document() == {"state": "WAITING", "waitSeconds": 15}


@pytest.mark.parametrize(
    "event, words",
    [
        ({**CHECK, "timeoutSeconds": None}, "Check the canary's input: `timeoutSeconds` is missing"),
        ({**CHECK, "started": {"taskArns": [TASK]}}, "Check the canary's input.started: `startedAt` is missing"),
        (
            {**CHECK, "started": {**STARTED, "taskArns": [TASK, 7]}},
            "`started.taskArns` must be a list of task ARNs (what Start the canary tasks returned)",
        ),
        (
            {**CHECK, "progress": {"waitSeconds": "30"}},
            "Check the canary's input.progress: `waitSeconds` must be a number, got a string",
        ),
        (
            {**CHECK, "canary": {"healthyForSeconds": True}},
            "Check the canary's input.canary: `healthyForSeconds` must be a number, got true or false",
        ),
        ({"action": "start", **ECS_SERVICE}, "Start the canary tasks' input: `taskDefinitionArn` is missing"),
        (
            {"action": "remove", **ECS_SERVICE, "taskDefinitionArn": ""},
            "`taskDefinitionArn` must be the new revision's task definition ARN (a string), got an empty string",
        ),
        (
            {"action": "deregister", **ECS_SERVICE, "taskDefinitionArn": 7},
            "Take the canary out of the target groups' input: `taskDefinitionArn` must be a string, got a number",
        ),
        (
            {"action": "stop", "execution": "web-v2-abc", "cluster": "prod"},
            "Stop the canary tasks' input: `ecsService` is missing",
        ),
        (
            {**ECS_SERVICE, "action": "restart"},
            "`action` must be start, check, deregister, stop or remove, got 'restart'",
        ),
        ([CHECK], "the canary's input must be a JSON object, got a list"),
    ],
)
def test_bad_input_is_refused_naming_the_field(event, words):
    with pytest.raises(InputInvalid) as refused:
        canary.read(event)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    "output",
    [
        canary.Started(task_arns=[TASK], started_at=1000.5, marker="ferry-canary-0123"),
        canary.Started(task_arns=[TASK], started_at=1000.5, progress=canary.CanaryProgress(wait_seconds=30)),
        canary.Observation(
            state="PASSED",
            unhealthy=0,
            healthy_since=1040.0,
            registered=True,
            registered_at=1030.0,
            healthy_after=10,
            interval=5,
        ),
        canary.Observation(state="WAITING", wait_seconds=15),
        canary.Drained(drain_seconds=300, tasks=1),
        canary.Stopped(stopped=2),
    ],
    ids=lambda output: type(output).__name__,
)
def test_the_output_round_trips(output):
    assert type(output).from_state(output.to_state()) == output


def test_the_canary_is_started_once_and_watched_until_it_crashes(canary_world):
    start = canary.read(
        {
            "action": "start",
            **ECS_SERVICE,
            "taskDefinitionArn": canary_world["taskDefinitionArn"],
            "canary": {"count": 2},
        }
    )
    started = canary.run(start)
    assert len(started.task_arns) == 2 and started.marker == canary_tasks.started_by("web-v2-abc")
    assert sorted(canary.run(start).task_arns) == sorted(started.task_arns)  # a retried step starts no more
    kept = {"taskArns": started.task_arns, "startedAt": started.started_at, "progress": {"waitSeconds": 30}}
    check = canary.read(
        {**CHECK, "taskDefinitionArn": canary_world["taskDefinitionArn"], "started": kept, "progress": kept["progress"]}
    )
    observed = canary.run(check)
    assert observed.state == "WAITING" and observed.wait_seconds == canary.POLL_SECONDS
    boto3.client("ecs").stop_task(cluster="prod", task=started.task_arns[0], reason="Essential container exited")
    with pytest.raises(CanaryCrashed, match=r"(?s)a canary task of web:2 stopped: .*The service was not changed\."):
        canary.run(check)
    remove = canary.read({"action": "remove", **ECS_SERVICE, "taskDefinitionArn": canary_world["taskDefinitionArn"]})
    assert canary.run(remove) == canary.Stopped(stopped=1)
