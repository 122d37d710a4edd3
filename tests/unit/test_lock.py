import json
import math
from datetime import datetime

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def test_a_waiting_request_waits_behind_a_newer_waiting_one_and_steps_aside_once_it_takes_the_lock(ecs_world):
    from ferry.errors import Superseded

    lock.acquire("locks", "prod/web", "v2", now=1000, requested_at=100.0)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v3", now=1001, requested_at=101.0)  # queued
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v4", now=1002, requested_at=102.0)  # queued, newest
    # v4 only waits, and could still be stopped: v3 waits behind it rather than stepping aside.
    with pytest.raises(ServiceLocked, match=r"a newer deploy of prod/web \(v4\) is waiting for the lock too"):
        lock.acquire("locks", "prod/web", "v3", now=1003, requested_at=101.0)  # v3's retry
    lock.release("locks", "prod/web", "v2")
    lock.record_deployed("locks", "prod/web", "v2", 100.0)
    with pytest.raises(ServiceLocked, match=r"\(v4\) is waiting for the lock too"):
        lock.acquire("locks", "prod/web", "v3", now=1004, requested_at=101.0)  # even with the lock free
    assert lock.holder_of("locks", "prod/web") is None
    assert lock.acquire("locks", "prod/web", "v4", now=1005, requested_at=102.0)["owner"] == "v4"
    with pytest.raises(Superseded, match=r"a newer deploy of prod/web is queued \(v4\), and has taken the lock"):
        lock.acquire("locks", "prod/web", "v3", now=1006, requested_at=101.0)
    assert lock.acquire("locks", "prod/web", "v4", now=1007, requested_at=102.0)["owner"] == "v4"  # a retried acquire


def test_a_newer_waiting_deploy_that_ended_counts_for_nothing(ecs_world):
    stopped = _execution("ABORTED")  # v4, stopped while it waited
    lock.acquire("locks", "prod/web", "v2", now=1000, requested_at=100.0)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v3", now=1001, requested_at=101.0)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", stopped, now=1002, requested_at=102.0)
    with pytest.raises(ServiceLocked, match="being deployed by v2"):  # waits for v2 alone now
        lock.acquire("locks", "prod/web", "v3", now=1003, requested_at=101.0)
    lock.release("locks", "prod/web", "v2")
    lock.record_deployed("locks", "prod/web", "v2", 100.0)
    assert lock.acquire("locks", "prod/web", "v3", now=1004, requested_at=101.0)["owner"] == "v3"


def test_same_second_requests_are_ordered_by_their_executions_start(ecs_world):
    from ferry.errors import Superseded

    # Two pushes in the same second: v3's execution started 0.4 s after v2's. v3 takes the lock first.
    assert lock.acquire("locks", "prod/web", "v3", now=1000, requested_at=100.0, started_at=100.9)["owner"] == "v3"
    with pytest.raises(Superseded, match=r"is queued \(v3\), and has taken the lock"):
        lock.acquire("locks", "prod/web", "v2", now=1001, requested_at=100.0, started_at=100.5)
    lock.record_deployed("locks", "prod/web", "v3", 100.0, started_at=100.9)
    lock.release("locks", "prod/web", "v3")
    lock.record_deployed("locks", "prod/web", "v2", 100.0, started_at=100.5)  # a late record changes nothing
    with pytest.raises(Superseded, match=r"a newer deploy of prod/web \(v3\) has already gone out"):
        lock.acquire("locks", "prod/web", "v2", now=1002, requested_at=100.0, started_at=100.5)
    # The same second and the same start: the ARN decides, the same way every time.
    assert lock.acquire("locks", "prod/api", "b", now=1003, requested_at=100.0, started_at=100.5)["owner"] == "b"
    with pytest.raises(Superseded):
        lock.acquire("locks", "prod/api", "a", now=1004, requested_at=100.0, started_at=100.5)


def test_a_record_kept_before_the_start_was_is_older_than_a_same_second_request(ecs_world):
    ddb = aws.client("dynamodb")
    ddb.put_item(  # what an older Ferry wrote: no startedAt
        TableName="locks",
        Item={"pk": {"S": "deployed#prod/web"}, "owner": {"S": "old"}, "requestedAt": {"N": "100.0"}},
    )
    assert lock.acquire("locks", "prod/web", "new", now=1000, requested_at=100.0, started_at=100.2)["owner"] == "new"
    lock.record_deployed("locks", "prod/web", "new", 100.0, started_at=100.2)
    item = ddb.get_item(TableName="locks", Key={"pk": {"S": "deployed#prod/web"}})["Item"]
    assert (item["owner"]["S"], item["startedAt"]["N"]) == ("new", "100.2")


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


# ---------------------------------------------------------------- the order of deploys: one total order, never a tie

PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Few values drawn often (ties on the time, on the start, on both), and any others.
TIMES = st.one_of(st.sampled_from([0.0, -0.0, 100.0, 100.5, 101.0]), st.floats(allow_nan=False))
STARTS = st.one_of(TIMES, st.just(-math.inf))  # -inf: a record kept before the start was
OWNERS = st.one_of(st.sampled_from(["a", "b", OWNER]), st.text(max_size=6))
ORDERS = st.builds(lock.DeployOrder, TIMES, STARTS, OWNERS)


@PROPERTIES
@given(a=ORDERS, b=ORDERS)
def test_of_two_deploys_exactly_one_is_newer_unless_they_are_one_execution(a, b):
    assert [lock.newer(a, b), lock.newer(b, a), a == b].count(True) == 1  # total and antisymmetric
    if a.owner != b.owner:  # two executions never tie
        assert lock.newer(a, b) or lock.newer(b, a)
    assert not lock.newer(a, a)


@PROPERTIES
@given(orders=st.lists(ORDERS, min_size=3, max_size=3))
def test_the_order_of_deploys_is_transitive(orders):
    for x in orders:
        for y in orders:
            for z in orders:
                if lock.newer(x, y) and lock.newer(y, z):
                    assert lock.newer(x, z)


@PROPERTIES
@given(
    at=st.one_of(st.none(), st.integers(0, 2**33), st.floats(allow_nan=False)),
    start=st.datetimes(min_value=datetime(2000, 1, 1)),
    owner=OWNERS,
)
def test_every_delivery_of_a_request_has_the_same_order(at, start, owner):
    """The order reads only what every delivery of the event repeats: its time, the execution's start and ARN."""
    request = {"trigger": {"requestedAt": at}} if at is not None else {}
    started = start.isoformat(timespec="milliseconds") + "Z"
    begun = lock.order_of({}, started, owner).started_at
    if at is not None and math.isfinite(at) and at > begun + lock.CLOCK_SKEW_SECONDS:  # asked for after it began
        with pytest.raises(InputInvalid, match=r"`trigger\.requestedAt`"):
            lock.order_of(request, started, owner)
        return
    first = lock.order_of(request, started, owner)
    again = lock.order_of(json.loads(json.dumps(request)), started, owner)
    assert first == again and first is not None
    assert first.started_at == lock.order_of({}, started, owner).started_at
    if at is None or not math.isfinite(at):  # a manual deploy: its start, to the second, then the start itself
        assert first.requested_at == math.floor(first.started_at) <= first.started_at


def test_an_order_with_nan_in_it_is_refused():
    with pytest.raises(ValueError, match="no NaN"):
        lock.DeployOrder(math.nan, 0.0, "x")
    with pytest.raises(ValueError, match="no NaN"):
        lock.DeployOrder(0.0, math.nan, "x")


STORED_TIMES = st.one_of(st.sampled_from([0.0, 100.0, 100.5]), st.floats(min_value=-1e12, max_value=1e12))
STORED_OWNERS = st.one_of(
    st.sampled_from(["a", "b"]), st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6)
)
STORED = st.builds(lock.DeployOrder, STORED_TIMES, STORED_TIMES, STORED_OWNERS)


@settings(PROPERTIES, max_examples=60)
@given(a=STORED, b=STORED)
def test_the_tables_conditions_order_deploys_as_newer_does(ecs_world, a, b):
    """What DynamoDB's condition keeps (the deploy record: the newest deploy that went out) is what `newer` says."""
    ddb = aws.client("dynamodb")
    ddb.delete_item(TableName="locks", Key={"pk": {"S": "deployed#prod/web"}})
    lock.record_deployed("locks", "prod/web", a.owner, a.requested_at, started_at=a.started_at)
    lock.record_deployed("locks", "prod/web", b.owner, b.requested_at, started_at=b.started_at)
    item = ddb.get_item(TableName="locks", Key={"pk": {"S": "deployed#prod/web"}})["Item"]
    kept = lock.DeployOrder(float(item["requestedAt"]["N"]), float(item["startedAt"]["N"]), item["owner"]["S"])
    # A record that claims a request time after its execution's start (plus the skew) counts for nothing.
    assert kept == (a if lock.newer(a, b) and lock.credible(a) else b)


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
    # On EventBridge's one-second clock, like a push's time; the start itself breaks a tie.
    assert lock.requested_at({}, "2026-12-01T10:00:00.750Z") == START
    assert lock.order_of({}, "2026-12-01T10:00:00.750Z", OWNER) == lock.DeployOrder(START, START + 0.75, OWNER)
    for bogus in (float("nan"), float("inf"), True, "7"):  # not a time: the start stands in for it
        assert lock.requested_at({"trigger": {"requestedAt": bogus}}, STARTED) == START
    assert lock.order_of({"trigger": {"requestedAt": 7}}, None, "x") == lock.DeployOrder(7.0, 0.0, "x")
    assert lock.order_of({}, None, "x") is None


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


def test_a_deploy_that_takes_the_lock_wakes_the_older_ones_waiting_so_they_step_aside(registry, sent, at):
    lock.wait("locks", "prod/web", "older", "t-older")
    lock.run(step("acquire", startedAt=STARTED, token="t-1"), SETTINGS)
    assert sent[0] == (
        "t-older",
        {
            "error": "LockReleased",
            "cause": "exec-1 took the deploy lock of prod/web: an older deploy steps aside, a newer one waits",
        },
    )
    assert sent[1][0] == "t-1" and "output" in sent[1][1]


def test_a_waiter_looks_again_when_what_it_waits_for_changed_before_its_token_was_kept(registry, sent, at, monkeypatch):
    # A newer push (v4) waits too, with the lock free: this older deploy waits behind it...
    lock.acquire("locks", "prod/web", "someone-else", requested_at=START - 50)
    with pytest.raises(ServiceLocked):
        lock.acquire("locks", "prod/web", "v4", requested_at=START + 5)
    lock.release("locks", "prod/web", "someone-else")
    kept = lock.wait

    def v4_takes_the_lock_meanwhile(*args):  # ...and v4 takes the lock as it stores its token
        kept(*args)
        lock.acquire("locks", "prod/web", "v4", requested_at=START + 5)

    monkeypatch.setattr(lock, "wait", v4_takes_the_lock_meanwhile)
    waiting = lock.run(step("acquire", startedAt=STARTED, token="t-1"), SETTINGS)
    assert waiting.waiting and "(v4) is waiting for the lock too" in waiting.reason
    assert sent == [
        (
            "t-1",
            {
                "error": "LockReleased",
                "cause": "what the deploy of prod/web waited for changed as it began to wait: it looks again",
            },
        )
    ]


def test_the_end_of_a_waiting_deploy_wakes_the_others_once_the_lock_is_free(ecs_world, sent):
    ddb = aws.client("dynamodb")
    lock.acquire("locks", "prod/web", "v2", requested_at=100.0)
    for owner, at in (("v3", 101.0), ("v4", 102.0)):
        with pytest.raises(ServiceLocked):
            lock.acquire("locks", "prod/web", owner, requested_at=at)
        lock.wait("locks", "prod/web", owner, f"t-{owner}")
    assert lock.waiter_ended("locks", "prod/web", "v4") == 0  # v2 still holds the lock: its release wakes v3
    assert sent == []
    waiting = ddb.get_item(TableName="locks", Key={"pk": {"S": "waiting#prod/web"}})["Item"]
    assert set(waiting["waiters"]["M"]) == {"v3"}
    queue = ddb.get_item(TableName="locks", Key={"pk": {"S": "queue#prod/web"}})["Item"]
    assert "newest" not in queue  # v4 no longer counts
    assert lock.waiter_ended("locks", "prod/web", "v4") == 0  # a redelivered end changes nothing
    # With the lock free, the end of a waiter wakes those still waiting.
    lock.release("locks", "prod/web", "v2")
    sent.clear()
    lock.wait("locks", "prod/web", "v3", "t-v3-again")
    lock.wait("locks", "prod/web", "v5", "t-v5")
    assert lock.waiter_ended("locks", "prod/web", "v5") == 1
    assert sent == [
        (
            "t-v3-again",
            {"error": "LockReleased", "cause": "v5 has ended, and the deploy lock of prod/web is free: take it now"},
        )
    ]
    assert lock.waiter_ended("locks", "prod/api", "v5") == 0  # a service nobody waited for


def test_the_end_of_a_waiter_never_raises(ecs_world, sent):
    assert lock.waiter_ended("no-such-table", "prod/web", "v4") == 0


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
        "keepFailedRevisions": 0,
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
            keep_failed_revisions=0,
            summary="roll back prod/web from web:2 to web:1",
        ),
    ]
    for output in outputs:
        assert type(output).from_state(output.to_state()) == output


# ---------------------------------------------------------------- a request time in the future (issue 19)
# requestedAt is the execution's input: whoever may start an execution could write one in the future, and every
# later deploy of the service would step aside (Superseded, reported as a success) with no end.
FUTURE = START + 365 * 24 * 3600.0


def test_a_request_time_after_the_executions_start_is_refused_before_anything_is_written(registry, sent, at):
    with pytest.raises(InputInvalid) as refused:
        lock.run(
            step("acquire", startedAt=STARTED, request={"trigger": {"requestedAt": FUTURE}}, token="t-1"), SETTINGS
        )
    assert str(refused.value).startswith(
        f"the input's `trigger.requestedAt` ({FUTURE!r}: 2027-12-01T10:00:00Z) is later than the execution's start "
        f"({STARTED}) plus 5 minutes of clock skew"
    )
    assert str(refused.value).endswith("Nothing was locked or changed.")
    assert aws.client("dynamodb").scan(TableName="locks")["Items"] == [] and sent == []
    # A push's time a little after the start (another service's clock) is a request time like any other.
    skewed = START + lock.CLOCK_SKEW_SECONDS
    held = lock.run(step("acquire", startedAt=STARTED, request={"trigger": {"requestedAt": skewed}}), SETTINGS)
    assert held.requested_at == skewed


def test_a_deploy_record_from_the_future_supersedes_nothing_and_the_next_deploy_replaces_it(registry, sent, at):
    """A record written before Ferry bounded requestedAt (or by hand) with a time in the future: a later
    legitimate deploy goes ahead, and its record replaces that one, so what it deployed is what a rollback
    request goes back from."""
    ddb = aws.client("dynamodb")
    ddb.put_item(
        TableName="locks",
        Item={
            "pk": {"S": "deployed#prod/web"},
            "owner": {"S": "forged"},
            "requestedAt": {"N": repr(FUTURE)},
            "startedAt": {"N": repr(START - 600)},
            "revision": {"S": "web:9"},
        },
    )
    request = {"trigger": {"requestedAt": START - 1}}
    held = lock.run(step("acquire", startedAt=STARTED, request=request, token="t-1"), SETTINGS)
    assert held.owner == OWNER and sent[-1] == ("t-1", {"output": held.to_state()})
    lock.record_deployed("locks", "prod/web", OWNER, START - 1, "web:2", "web:1", 2, started_at=START)
    item = ddb.get_item(TableName="locks", Key={"pk": {"S": "deployed#prod/web"}})["Item"]
    assert (item["owner"]["S"], item["revision"]["S"], float(item["requestedAt"]["N"])) == (OWNER, "web:2", START - 1)
    # The record it wrote is credible: an older request steps aside for it, as before.
    from ferry.errors import Superseded

    lock.release("locks", "prod/web", OWNER)
    with pytest.raises(Superseded, match="has already gone out"):
        lock.acquire("locks", "prod/web", "older", requested_at=START - 30, started_at=START - 20)


def test_a_record_without_its_start_from_the_future_supersedes_nothing(ecs_world):
    """A record an older Ferry wrote (no startedAt) is bounded by the time it is read."""
    aws.client("dynamodb").put_item(
        TableName="locks",
        Item={"pk": {"S": "deployed#prod/web"}, "owner": {"S": "forged"}, "requestedAt": {"N": "1e12"}},
    )
    assert lock.acquire("locks", "prod/web", "new", now=START, requested_at=START - 5)["owner"] == "new"


def test_a_queued_request_from_the_future_counts_for_nothing(registry, sent, at):
    running = _execution("RUNNING")  # still running, and waiting: a credible one would make this deploy wait
    aws.client("dynamodb").put_item(
        TableName="locks",
        Item={
            "pk": {"S": "queue#prod/web"},
            "newest": {"S": running},
            "newestAt": {"N": repr(FUTURE)},
            "newestStart": {"N": repr(START - 60)},
        },
    )
    held = lock.run(step("acquire", startedAt=STARTED, request={"trigger": {"requestedAt": START - 1}}), SETTINGS)
    assert held.owner == OWNER and lock.holder_of("locks", "prod/web") == OWNER
    queue = aws.client("dynamodb").get_item(TableName="locks", Key={"pk": {"S": "queue#prod/web"}})["Item"]
    assert queue["newest"]["S"] == OWNER  # it took that one's place
