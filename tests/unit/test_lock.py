import boto3
import pytest
from moto import mock_aws

from ferry import aws
from ferry.steps import lock
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


def test_a_waiting_request_is_superseded_by_a_newer_one_queued_behind_it(ecs_world):
    from ferry.errors import Superseded

    lock.acquire("locks", "prod/web", "v2", now=1000, requested_at=100.0)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v3", now=1001, requested_at=101.0)   # queued
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v4", now=1002, requested_at=102.0)   # queued, newest
    with pytest.raises(Superseded, match=r"a newer deploy of prod/web is queued \(v4\)"):
        lock.acquire("locks", "prod/web", "v3", now=1003, requested_at=101.0)   # v3's retry
    lock.release("locks", "prod/web", "v2")
    lock.record_deployed("locks", "prod/web", "v2", 100.0)
    with pytest.raises(Superseded):
        lock.acquire("locks", "prod/web", "v3", now=1004, requested_at=101.0)   # even with the lock free
    assert lock.acquire("locks", "prod/web", "v4", now=1005, requested_at=102.0)["owner"] == "v4"
    assert lock.acquire("locks", "prod/web", "v4", now=1006, requested_at=102.0)["owner"] == "v4"  # a retried acquire


def test_an_older_request_arriving_after_a_newer_one_went_out_is_superseded(ecs_world):
    from ferry.errors import Superseded

    lock.acquire("locks", "prod/web", "new", now=1000, requested_at=200.0)
    lock.release("locks", "prod/web", "new")
    lock.record_deployed("locks", "prod/web", "new", 200.0)
    lock.record_deployed("locks", "prod/web", "old", 150.0)  # a late record never moves the mark back
    with pytest.raises(Superseded, match=r"a newer deploy of prod/web \(new\) has already gone out"):
        lock.acquire("locks", "prod/web", "old", now=1001, requested_at=150.0)
    assert lock.holder_of("locks", "prod/web") is None
    assert lock.acquire("locks", "prod/api", "old", now=1002, requested_at=150.0)["owner"] == "old"  # other services


def test_a_running_execution_keeps_its_lock_past_the_ttl(ecs_world):
    running = _execution("RUNNING")
    lock.acquire("locks", "prod/web", running, ttl_seconds=60, now=1000)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "exec-2", now=1000 + 3600)  # expired, but its owner still runs
    assert lock.holder_of("locks", "prod/web") == running


def test_a_rollback_request_leaves_nothing_further_to_roll_back_to(ecs_world):
    from ferry.errors import NothingToRollBack

    lock.record_deployed("locks", "prod/web", "deploy-v2", 100.0, "web:2", "web:1", 2)
    assert lock.rollback_target("locks", "prod/web") == ("web:1", "web:2", 2)
    lock.record_deployed("locks", "prod/web", "rollback", 200.0, "web:1")  # the rollback request itself
    with pytest.raises(NothingToRollBack):
        lock.rollback_target("locks", "prod/web")
