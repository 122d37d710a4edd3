import boto3
import pytest
from moto import mock_aws

from ferry import aws, lock
from ferry.errors import LockUnavailable, ServiceLocked


def test_one_owner_at_a_time_and_retries_are_safe(ecs_world):
    held = lock.acquire("locks", "web", "exec-1", now=1000)
    assert held["expiresAt"] == 1000 + lock.DEFAULT_TTL_SECONDS
    assert lock.acquire("locks", "web", "exec-1", now=1001)["owner"] == "exec-1"  # a retried acquire
    with pytest.raises(ServiceLocked, match="being deployed by exec-1"):
        lock.acquire("locks", "web", "exec-2", now=1002)
    lock.acquire("locks", "api", "exec-2", now=1002)  # other services are independent
    assert lock.release("locks", "web", "exec-2") is False  # not the owner: nothing changes
    assert lock.holder_of("locks", "web") == "exec-1"
    assert lock.release("locks", "web", "exec-1") is True
    assert lock.release("locks", "web", "exec-1") is False  # a retried release
    assert lock.acquire("locks", "web", "exec-2", now=1003)["owner"] == "exec-2"


def test_an_expired_lock_can_be_taken_over(ecs_world):
    lock.acquire("locks", "web", "vanished", ttl_seconds=60, now=1000)
    assert lock.acquire("locks", "web", "exec-2", now=1061)["owner"] == "exec-2"


def test_no_table_means_no_deploy():
    aws.reset()
    with mock_aws():
        with pytest.raises(LockUnavailable, match="could not take the deploy lock"):
            lock.acquire("missing-table", "web", "exec-1")
    aws.reset()


def _execution(status: str) -> str:
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"deploy-{status.lower()}", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition='{"StartAt": "x", "States": {"x": {"Type": "Pass", "End": true}}}')["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name="holder")["executionArn"]
    if status == "ABORTED":
        sfn.stop_execution(executionArn=execution)
    return execution


def test_a_lock_held_by_an_execution_that_ended_is_taken_over(ecs_world):
    aborted = _execution("ABORTED")
    lock.acquire("locks", "web", aborted, now=1000)
    assert lock.acquire("locks", "web", "exec-2", now=1001)["owner"] == "exec-2"
    assert lock.holder_of("locks", "web") == "exec-2"


def test_a_lock_held_by_a_running_execution_is_respected(ecs_world):
    running = _execution("RUNNING")
    lock.acquire("locks", "web", running, now=1000)
    with pytest.raises(ServiceLocked, match="being deployed by arn:aws:states"):
        lock.acquire("locks", "web", "exec-2", now=1001)
    assert lock.holder_of("locks", "web") == running
