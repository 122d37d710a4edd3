import boto3
import pytest
from moto import mock_aws

from ferry import aws
from ferry.aws import waiters
from ferry.errors import InputInvalid, LockUnavailable, NothingToRollBack, ServiceLocked
from ferry.runtime import clock
from ferry.runtime.settings import Settings
from ferry.steps import lock, render

from .conftest import put_config

SETTINGS = Settings(
    environment="prod",
    config_bucket="ferry-config",
    artefacts_bucket="ferry-artefacts",
    lock_table="locks",
    allowed_clusters=("prod",),
)
OWNER = "arn:aws:states:us-east-1:123456789012:execution:ferry-deploy:exec-1"
STARTED, START = "2026-12-01T10:00:00Z", 1796119200.0  # the execution's start, and as a time


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
        name=f"deploy-{status.lower()}",
        roleArn="arn:aws:iam::123456789012:role/sfn",
        definition='{"StartAt": "x", "States": {"x": {"Type": "Pass", "End": true}}}',
    )["stateMachineArn"]
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
        lock.acquire("locks", "prod/web", "v3", now=1001, requested_at=101.0)  # queued
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v4", now=1002, requested_at=102.0)  # queued, newest
    with pytest.raises(Superseded, match=r"a newer deploy of prod/web is queued \(v4\)"):
        lock.acquire("locks", "prod/web", "v3", now=1003, requested_at=101.0)  # v3's retry
    lock.release("locks", "prod/web", "v2")
    lock.record_deployed("locks", "prod/web", "v2", 100.0)
    with pytest.raises(Superseded):
        lock.acquire("locks", "prod/web", "v3", now=1004, requested_at=101.0)  # even with the lock free
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


# ---------------------------------------------------------------- the step: its three actions


@pytest.fixture
def registry(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")


@pytest.fixture
def sent(monkeypatch):
    """What the step sends through task tokens, instead of Step Functions."""
    calls = []
    monkeypatch.setattr(waiters, "complete", lambda token, **result: calls.append((token, result)) or True)
    return calls


@pytest.fixture
def at(monkeypatch):
    """Sets the clock the step sees."""

    def set_to(seconds: float) -> None:
        monkeypatch.setattr(clock, "_now", lambda: seconds)

    set_to(START + 10)
    return set_to


def step(action: str, **fields):
    return lock.read({"action": action, "service": "web", "owner": OWNER, **fields})


def test_acquire_answers_through_the_token_with_the_lock_it_took(registry, sent, at):
    held = lock.run(
        step("acquire", startedAt=STARTED, request={"trigger": {"requestedAt": START - 99.5}}, token="t-1"), SETTINGS
    )
    assert held == lock.Held(
        service="prod/web",
        owner=OWNER,
        expires_at=START + 10 + lock.DEFAULT_TTL_SECONDS,
        lock_key="prod/web",
        requested_at=START - 99.5,
    )
    assert sent == [("t-1", {"output": held.to_state()})]
    assert held.to_state() == {
        "service": "prod/web",
        "owner": OWNER,
        "expiresAt": held.expires_at,
        "key": "prod/web",
        "requestedAt": START - 99.5,
    }
    assert lock.holder_of("locks", "prod/web") == OWNER


def test_a_deploy_asked_for_by_hand_is_as_new_as_its_executions_start():
    assert lock.requested_at({"trigger": {"requestedAt": 7}}, STARTED) == 7.0
    assert lock.requested_at({}, STARTED) == START
    assert lock.requested_at({"trigger": "push"}, None) is None


def test_acquire_waits_on_its_token_while_another_deploy_holds_the_lock(registry, sent, at):
    lock.acquire("locks", "prod/web", "someone-else")
    waiting = lock.run(step("acquire", startedAt=STARTED, token="t-1"), SETTINGS)
    assert waiting.waiting and waiting.lock_key == "prod/web" and "being deployed by someone-else" in waiting.reason
    assert sent == []  # the holder's release wakes it
    lock.release("locks", "prod/web", "someone-else")
    assert sent == [
        ("t-1", {"error": "LockReleased", "cause": "the deploy lock of prod/web was released: take it now"})
    ]
    lock.acquire("locks", "prod/web", "someone-else")
    with pytest.raises(ServiceLocked, match="being deployed by someone-else"):  # no token: nothing to wait on
        lock.run(step("acquire", startedAt=STARTED), SETTINGS)


def test_acquire_gives_up_after_an_hour(registry, sent, at):
    lock.acquire("locks", "prod/web", "someone-else")
    at(START + lock.MAX_LOCK_WAIT_SECONDS + 1)
    with pytest.raises(ServiceLocked, match="gave up after waiting 60 minutes. Nothing was changed"):
        lock.run(step("acquire", startedAt=STARTED, token="t-1"), SETTINGS)


def test_release_records_a_deploy_before_the_lock_goes_and_summarises_it(registry, at):
    lock.acquire("locks", "prod/web", OWNER)
    state = {
        "service": "web",
        "lock": {"key": "prod/web", "requestedAt": 100.0},
        "render": {
            "cluster": "prod",
            "ecsService": "web",
            "previousTaskDefinitionArn": "web:1",
            "desiredCount": 2,
            "summary": "image app web:v1 -> web:v2",
        },
        "register": {"taskDefinitionArn": "web:2"},
    }
    released = lock.run(step("release", request=state, deployed=True, startedAt=STARTED), SETTINGS)
    assert released.released and released.summary["result"] == "DEPLOYED" and released.summary["to"] == "web:2"
    assert lock.holder_of("locks", "prod/web") is None
    assert lock.rollback_target("locks", "prod/web") == ("web:1", "web:2", 2)
    assert lock.run(step("release", request=state), SETTINGS) == lock.Released(service="web", released=False)


def test_release_without_a_lock_taken_changes_nothing(registry):
    lock.acquire("locks", "prod/web", "someone-else")
    released = lock.run(step("release", request={"service": "web"}), SETTINGS)
    assert released.to_state() == {"service": "web", "released": False, "summary": None}
    assert lock.holder_of("locks", "prod/web") == "someone-else"


def test_the_rollback_target_is_shaped_like_renders_output(registry):
    with pytest.raises(NothingToRollBack):
        lock.run(step("rollback-target"), SETTINGS)
    lock.record_deployed(
        "locks",
        "prod/web",
        "deploy-v2",
        100.0,
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
        3,
    )
    target = lock.run(step("rollback-target"), SETTINGS)
    assert target.to_state() == {
        "requestAction": "rollback",
        "cluster": "prod",
        "ecsService": "web",
        "timeouts": {"canary": 600, "deployment": 1800, "rollback": 1800},
        "targetGroups": [],
        "strategy": "rolling",
        "rollbackTo": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
        "previousTaskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
        "previousRevision": "web:2",
        "desiredCount": 3,
        "summary": "roll back prod/web from web:2 to web:1",
    }
    # The states after it read $.render from either writer: every key both provide has the same name and meaning.
    assert set(lock.RollbackTarget.keys()) - set(render.Output.keys()) == {"rollbackTo"}
    assert render.Timeouts.from_state(target.timeouts)


def test_a_bad_input_is_refused_naming_the_field():
    with pytest.raises(InputInvalid, match=r"`action` must be acquire, release or rollback-target, got 'bogus'"):
        lock.read({"action": "bogus", "service": "web", "owner": OWNER})
    with pytest.raises(InputInvalid, match=r"Take the deploy lock's input: `owner` is missing: the state must pass it"):
        lock.read({"action": "acquire", "service": "web"})
    with pytest.raises(InputInvalid, match=r"Release the deploy lock's input: `deployed` must be true or false"):
        lock.read({"action": "release", "service": "web", "owner": OWNER, "deployed": "yes"})
    with pytest.raises(InputInvalid, match=r"the lock's input must be a JSON object, got a list"):
        lock.read([])


def test_every_output_reads_back_as_it_was_written():
    outputs = [
        lock.Held(service="prod/web", owner=OWNER, expires_at=1, lock_key="prod/web", requested_at=None),
        lock.Waiting(waiting=True, lock_key="prod/web", reason="service prod/web is being deployed by x"),
        lock.Released(service="web", released=True, summary={"result": "DEPLOYED"}),
        lock.RollbackTarget(
            request_action="rollback",
            cluster="prod",
            ecs_service="web",
            timeouts={"canary": 600},
            target_groups=[],
            strategy="rolling",
            rollback_to="web:1",
            previous_task_definition_arn="web:2",
            previous_revision="web:2",
            desired_count=1,
            summary="roll back prod/web from web:2 to web:1",
        ),
    ]
    for output in outputs:
        assert type(output).from_state(output.to_state()) == output
