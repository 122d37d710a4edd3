"""The task-stopped function: a stopped Ferry task completes the migration state waiting for it."""

import json

import boto3

from ferry.aws import waiters
from ferry.lifecycle import task_stopped

ARN = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef"


def stopped(**detail):
    return {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {"taskArn": ARN, "lastStatus": "STOPPED", **detail},
    }


def test_an_event_that_is_not_a_stopped_task_is_ignored(ecs_world, logs):
    for event in ({}, "text", {"detail": "x"}, stopped(lastStatus="RUNNING"), {"detail": {"lastStatus": "STOPPED"}}):
        assert task_stopped.stopped(event, "locks") == {"completed": False}
    assert all(line["message"] == "event ignored: not a stopped ECS task" for line in logs())


def test_a_stopped_task_nobody_waits_for_completes_nothing(ecs_world, logs):
    assert task_stopped.stopped(stopped(stopCode="EssentialContainerExited"), "locks") == {"completed": False}
    assert logs()[-1]["message"] == "no state waits for this task"


def test_a_migration_that_exited_0_completes_its_waiting_state_with_the_outcome(ecs_world, monkeypatch):
    sent = []
    monkeypatch.setattr(
        waiters,
        "complete",
        lambda token, output=None, error=None, cause=None: sent.append((token, output, error)) or True,
    )
    waiters.put(
        "locks",
        ARN,
        "token-1",
        {
            "migration": {
                "name": "migrate",
                "container": "app",
                "command": ["bin/migrate"],
                "environment": {},
                "timeout": 600,
            },
            "execution": "exec-1",
            "cluster": "prod",
            "revision": "web:2",
            "logs": None,
        },
    )
    event = stopped(
        stopCode="EssentialContainerExited",
        startedAt="2026-01-01T00:00:00Z",
        containers=[{"name": "app", "exitCode": 0}],
    )
    assert task_stopped.stopped(event, "locks") == {"completed": True}
    assert sent == [("token-1", {"name": "migrate", "taskArn": ARN, "exitCode": 0}, None)]
    assert boto3.client("dynamodb").scan(TableName="locks")["Items"] == []  # the waiter is gone
    assert json.dumps(sent)  # the output is JSON, as SendTaskSuccess needs
