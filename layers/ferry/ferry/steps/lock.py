"""One deploy per service at a time: a lock item per service in DynamoDB.

Conditional writes make acquire and release safe under retries: taking a lock
you already own succeeds again, releasing one you do not own changes nothing.
`expiresAt` (TTL) is only a safety net for an owner that vanished; a live
deploy never relies on it.

The newest request wins, by one total order of a service's deploys (DeployOrder, compared with `newer`):

1. `requestedAt`, when the deploy was asked for: the push's or the manifest drop's EventBridge `time`, or, for
   a manual deploy, its execution's start cut to the whole second, so that every kind is on the one-second
   clock EventBridge gives;
2. then the execution's start ($$.Execution.StartTime, to the millisecond);
3. then the execution's ARN.

Why these: EventBridge's `time` has one-second resolution, so two pushes in the same second tie on it, and
the ECR event's id is a random UUID that orders nothing. The execution's start is when the router started the
deploy after the event reached it: the best witness Ferry has of which of two same-second pushes came later,
and the same on every delivery of the event (a redelivered event names the same execution, which Step
Functions refuses to start again, so its start is fixed once). The ARN, unique to the execution, breaks the
last tie (two starts in the same millisecond): arbitrary, but the same wherever it is compared, so no two
deploys ever tie. Every order kept in the table keeps the three parts, and the conditions that compare them in
DynamoDB (`_not_newer`) say what `newer` says.

`requestedAt` comes from the execution's input, which whoever may start an execution writes: a time in the
future would make that deploy newer than every later one, and every later deploy would step aside (Superseded)
until then. So it is bounded by the execution's start, which Step Functions writes: a request is asked for
before its execution starts (the router starts it after the event's `time`), give or take CLOCK_SKEW_SECONDS
between the clocks of the service that timed the event and of Step Functions. An input with a later
`requestedAt` is refused (InputInvalid, before anything is locked). The same bound makes every record that
makes later deploys step aside expire: a deploy record or a queued request is newer than a later request only
if that request was asked for before the recorded execution's start plus the skew; and a record that claims
more (written before Ferry bounded `requestedAt`, or by hand) counts for nothing (`credible`) and is replaced.

While it waits for the lock a deploy records itself in the service's `queue#` item if it is the newest. A
waiting deploy is superseded (it steps aside, it does not fail) only by a newer deploy that has already gone
out (`deployed#`), or that is still running and has taken the lock: an older image never goes out over a
newer one. A newer deploy that is itself only waiting can still be stopped, so the older one waits behind it
rather than stepping aside, and goes ahead if the newer one ends without taking the lock (a queued deploy
that has ended counts for nothing: the next request takes its place).

Nothing polls while a deploy waits: its state's task token is kept in the service's `waiting#` item
(`wait`), and every waiter is woken (`LockReleased`, which their state retries at once) when something they
wait for happens: `release`; a deploy taking the lock (an older waiter then steps aside); and the end of an
execution while the lock is free (`waiter_ended`, called by the execution-ended function: an older deploy
waiting behind one that was stopped goes ahead). A waiter looks again once its token is stored, so a change
that came first is not missed (`_still_waits`); the state's heartbeat is only a fallback.

The step (functions/lock) has three actions, each with its contract (CONTRACTS): `acquire` ("Take the deploy
lock for this service", a `.waitForTaskToken` state: its output at $.lock is `Held`, sent through the token),
`release` (the four "Release the deploy lock" states: `Released`, whose summary is a successful deploy's output)
and `rollback-target` ("Find the revision to roll back to": `RollbackTarget`, written at $.render as Render's
output is, with the same keys for what both provide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws, config
from ferry.aws import waiters
from ferry.aws.ecs import revision_name
from ferry.contract import Model, key, read_action
from ferry.errors import InputInvalid, LockUnavailable, NothingToRollBack, ServiceLocked, Superseded
from ferry.lifecycle import journal, summary
from ferry.runtime import clock
from ferry.runtime.settings import Settings

# Longer than the longest deploy the config allows (canary, five migrations, rollout, bake and
# rollback at their maximum timeouts: 19 hours): the TTL only cleans up after a vanished owner.
DEFAULT_TTL_SECONDS = 24 * 3600
# How long a deploy waits for another one of the same service before it gives up (ServiceLocked).
MAX_LOCK_WAIT_SECONDS = 3600
# How much later than its execution's start a request may say it was asked for. The request time is EventBridge's
# `time` (stamped by ECR or S3) and the start is Step Functions' clock: two services' clocks, which may differ a
# little. 5 minutes is the skew AWS itself tolerates between a signed request's time and its own clock (SigV4's
# RequestTimeTooSkewed), far more than two of its services' clocks differ, so a time further ahead is no clock's
# error. A manual deploy's request time is its start, so it never comes near.
CLOCK_SKEW_SECONDS = 300


def _key(service: str, kind: str = "service") -> dict:
    return {"pk": {"S": f"{kind}#{service}"}}


@dataclass(frozen=True, order=True)
class DeployOrder:
    """Where a deploy stands among its service's deploys (the module docstring says why these three parts): the
    fields are compared in this order, and the one with the greater value is the newer deploy."""

    requested_at: float  # requestedAt: EventBridge's `time` (whole seconds), or a manual deploy's start to the second
    started_at: float  # the execution's start; -inf in a record written before Ferry kept it
    owner: str  # the execution's ARN: unique, so two deploys never tie

    def __post_init__(self) -> None:
        if math.isnan(self.requested_at) or math.isnan(self.started_at):
            raise ValueError(f"a deploy's order has no NaN in it: {self!r}")

    @property
    def name(self) -> str:
        """The execution's name, as messages give it."""
        return self.owner.rsplit(":", 1)[-1]


def credible(order: DeployOrder, now: float | None = None) -> bool:
    """Whether a recorded order's request time is one a deploy could have: no later than its execution's start
    (the time `now`, for a record that does not keep its start) plus CLOCK_SKEW_SECONDS. A record that is not
    (written before Ferry bounded requestedAt, or by hand) makes no deploy step aside."""
    known = math.isfinite(order.started_at) and order.started_at > 0
    bound = order.started_at if known else (clock.now() if now is None else now)
    return order.requested_at <= bound + CLOCK_SKEW_SECONDS


def newer(a: DeployOrder, b: DeployOrder) -> bool:
    """True when deploy `a` is newer than deploy `b`: the total order every comparison of deploys uses.

    For any two deploys exactly one of newer(a, b), newer(b, a) and a == b holds, and a == b only for one
    execution (its ARN is the last part)."""
    return a > b


def order_of(request: Mapping[str, Any], started_at: str | None, owner: str) -> DeployOrder | None:
    """The order of the execution `owner`, from its input and its start ($$.Execution.StartTime); None (no
    superseding) only for a caller outside the state machine that gives neither a request time nor a start."""
    at = requested_at(request, started_at)
    if at is None:
        return None
    start = _instant(started_at)
    return DeployOrder(at, 0.0 if start is None else start, owner)


def _not_newer(at: str, start: str, owner: str) -> str:
    """The condition "the item's order (attributes `at`, `start`, `owner`) is not newer than :at, :start, :me":
    `newer` in DynamoDB's words. A missing part, written before Ferry kept it, is older than any value."""
    return (
        f"attribute_not_exists({at}) OR {at} < :at OR ({at} = :at AND (attribute_not_exists({start}) "
        f"OR {start} < :start OR ({start} = :start AND {owner} <= :me)))"
    )


def _order_values(order: DeployOrder) -> dict:
    return {":at": {"N": repr(order.requested_at)}, ":start": {"N": repr(order.started_at)}, ":me": {"S": order.owner}}


def _stored_order(item: Mapping[str, Any], at: str, start: str, owner: str) -> DeployOrder:
    """The order kept in an item's attributes `at`, `start` and `owner`."""
    return DeployOrder(
        float(item[at]["N"]), float(item[start]["N"]) if start in item else float("-inf"), item[owner]["S"]
    )


def _queued(table: str, service: str) -> DeployOrder | None:
    """The newest deploy queued for the lock, or None."""
    item = (
        aws.client("dynamodb")
        .get_item(TableName=table, Key=_key(service, "queue"), ConsistentRead=True)
        .get("Item", {})
    )
    if "newest" not in item or "newestAt" not in item:
        return None
    return _stored_order(item, "newestAt", "newestStart", "newest")


def _queue(table: str, service: str, me: DeployOrder, condition: str, values: dict | None = None) -> bool:
    """Record `me` as the newest deploy queued for the lock if `condition` holds; False when it does not."""
    try:
        aws.client("dynamodb").update_item(
            TableName=table,
            Key=_key(service, "queue"),
            UpdateExpression="SET newest = :me, newestAt = :at, newestStart = :start, expiresAt = :ttl",
            ConditionExpression=condition,
            ExpressionAttributeValues={
                **_order_values(me),
                ":ttl": {"N": str(int(clock.now() + DEFAULT_TTL_SECONDS))},
                **(values or {}),
            },
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True


def _check_gone_out(table: str, service: str, me: DeployOrder) -> None:
    """Raise Superseded when a newer deploy than `me` has already gone out."""
    deployed = (
        aws.client("dynamodb").get_item(TableName=table, Key=_key(service, "deployed"), ConsistentRead=True).get("Item")
    )
    if not deployed or deployed["owner"]["S"] == me.owner:
        return
    out = _stored_order(deployed, "requestedAt", "startedAt", "owner")
    if newer(out, me) and credible(out):
        raise Superseded(
            f"a newer deploy of {service} ({out.name}) has already gone out; "
            "this older request steps aside so it cannot roll the service back. Nothing was changed."
        )


def _check_not_superseded(table: str, service: str, me: DeployOrder) -> None:
    """Queue `me` as the newest deploy waiting for the lock, or say why not: Superseded when a newer deploy has
    gone out or, still running, has taken the lock; ServiceLocked (wait) while a newer one only waits too.

    A queued deploy that has ended without going out counts for nothing: `me` takes its place."""
    _check_gone_out(table, service, me)
    for _ in range(3):
        if _queue(table, service, me, _not_newer("newestAt", "newestStart", "newest")):
            return
        queued = _queued(table, service)
        if queued is None:  # its newest ended meanwhile (waiter_ended): look again
            continue
        if queued.owner == me.owner:
            return
        if not credible(queued) or _ended(queued.owner):
            if _queue(table, service, me, "newest = :was", {":was": {"S": queued.owner}}):
                # It may have gone out just before it ended: its record is written by then.
                _check_gone_out(table, service, me)
                return
            continue
        if holder_of(table, service) == queued.owner:
            raise Superseded(
                f"a newer deploy of {service} is queued ({queued.name}), and has taken the lock; this one steps "
                "aside so that the newest image wins. Nothing was changed."
            )
        raise ServiceLocked(
            f"a newer deploy of {service} ({queued.name}) is waiting for the lock too; this one waits behind it: "
            "it steps aside once that one takes the lock, and goes ahead if that one ends first"
        )
    raise ServiceLocked(
        f"the deploys queued for {service} kept changing while this one looked; it waits and looks again"
    )


def _still_waits(table: str, service: str, owner: str, me: DeployOrder | None) -> bool:
    """Whether a deploy whose token is now stored still has something to wait for. Anything that changes this
    after the token is stored wakes it; this catches a change that came before."""
    holder = holder_of(table, service)
    if holder == owner:
        return False
    queued = _queued(table, service) if me is not None else None
    if queued is not None and me is not None and newer(queued, me) and credible(queued) and not _ended(queued.owner):
        return holder != queued.owner  # a newer one still waits; once it holds the lock, this one steps aside
    return holder is not None and not _ended(holder)


def record_deployed(
    table: str,
    service: str,
    owner: str,
    requested_at: float,
    revision: str | None = None,
    previous: str | None = None,
    desired_count: int | None = None,
    *,
    started_at: float = 0.0,
) -> None:
    """Remember the newest request that reached the service (older ones are superseded from now on: its order
    is kept whole, `started_at` being its execution's start), with the revision it deployed and the one it
    replaced (what a rollback request goes back to).

    A rollback request records its target with no previous revision: rolling back twice must not
    go "back" to the revision that was just rolled away from."""
    values: dict = _order_values(DeployOrder(requested_at, started_at, owner))
    update = "SET #owner = :me, requestedAt = :at, startedAt = :start"
    if revision and previous:
        update += ", revision = :rev, previousRevision = :prev, desiredCount = :count"
        values.update({":rev": {"S": revision}, ":prev": {"S": previous}, ":count": {"N": str(desired_count or 1)}})
    elif revision:
        update += ", revision = :rev REMOVE previousRevision"
        values[":rev"] = {"S": revision}
    try:
        aws.client("dynamodb").update_item(
            TableName=table,
            Key=_key(service, "deployed"),
            UpdateExpression=update,
            ConditionExpression=_not_newer("requestedAt", "startedAt", "#owner"),
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":  # a newer one is already recorded
            raise LockUnavailable(f"could not record the deploy of {service} in table {table}: {exc}") from exc
        try:
            _replace_incredible(table, service, update, values)
        except ClientError as again:
            if aws.error_code(again) != "ConditionalCheckFailedException":
                raise LockUnavailable(f"could not record the deploy of {service} in table {table}: {again}") from again
        except BotoCoreError as again:
            raise LockUnavailable(
                f"could not record the deploy of {service}: could not reach table {table}: {again}"
            ) from again
    except BotoCoreError as exc:  # as LockUnavailable, the release states retry it like a ClientError
        raise LockUnavailable(
            f"could not record the deploy of {service}: could not reach table {table}: {exc}"
        ) from exc


def _replace_incredible(table: str, service: str, update: str, values: dict) -> None:
    """The deploy record kept a newer order than this deploy's: when that order is not `credible` (a request
    time later than its execution's start plus the skew), it counts for nothing, and this deploy's record
    replaces it, unless it changed meanwhile."""
    ddb = aws.client("dynamodb")
    item = ddb.get_item(TableName=table, Key=_key(service, "deployed"), ConsistentRead=True).get("Item")
    if not item or "requestedAt" not in item or "owner" not in item:
        return
    if credible(_stored_order(item, "requestedAt", "startedAt", "owner")):
        return  # a newer deploy is recorded: it stays
    ddb.update_item(
        TableName=table,
        Key=_key(service, "deployed"),
        UpdateExpression=update,
        ConditionExpression="#owner = :was AND requestedAt = :wasAt",
        ExpressionAttributeNames={"#owner": "owner"},
        ExpressionAttributeValues={**values, ":was": item["owner"], ":wasAt": item["requestedAt"]},
    )


def rollback_target(table: str, service: str) -> tuple[str, str, int]:
    """(revision to go back to, revision running now by Ferry's record, desired count) for a rollback request."""
    try:
        item = (
            aws.client("dynamodb")
            .get_item(TableName=table, Key=_key(service, "deployed"), ConsistentRead=True)
            .get("Item")
        )
    except (ClientError, BotoCoreError) as exc:
        raise LockUnavailable(f"could not read the deploy record of {service} in table {table}: {exc}") from exc
    if not item or "previousRevision" not in item:
        raise NothingToRollBack(
            f"Ferry has no record of deploying {service}, so it knows no previous revision to roll back to: "
            'deploy the image you want with {"service": ..., "images": {...}} instead. Nothing was changed.'
        )
    return item["previousRevision"]["S"], item["revision"]["S"], int(item.get("desiredCount", {}).get("N", "1"))


def _put(table: str, service: str, owner: str, now: float, ttl_seconds: int, condition: str, values: dict) -> None:
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={
            **_key(service),
            "owner": {"S": owner},
            "acquiredAt": {"N": str(int(now))},
            "expiresAt": {"N": str(int(now + ttl_seconds))},
        },
        ConditionExpression=condition,
        ExpressionAttributeNames={"#owner": "owner"},
        ExpressionAttributeValues=values,
    )


def acquire(
    table: str,
    service: str,
    owner: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    requested_at: float | None = None,
    started_at: float | None = None,
) -> dict:
    """Take the lock for `owner` (an execution ARN), or raise ServiceLocked naming the holder.

    A lock whose holder is an execution that has ended (aborted or timed out,
    so no Catch released it) is taken over at once rather than left to its TTL.
    With `requested_at` (and `started_at`, the execution's start: DeployOrder), a request older than one that
    has gone out, or than a running one that holds the lock, is Superseded; one older than a running one that
    only waits waits too (ServiceLocked).
    """
    now = clock.now() if now is None else now
    try:
        if requested_at is not None and holder_of(table, service) != owner:
            me = DeployOrder(requested_at, 0.0 if started_at is None else started_at, owner)
            _check_not_superseded(table, service, me)
        try:
            _put(
                table,
                service,
                owner,
                now,
                ttl_seconds,
                "attribute_not_exists(pk) OR #owner = :owner",
                {":owner": {"S": owner}},
            )
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service), ConsistentRead=True).get("Item")
            holder = item["owner"]["S"] if item else None
            expired = bool(item) and float(item.get("expiresAt", {}).get("N", "0")) < now
            # A running execution keeps its lock however long it takes; only an ended one, or an
            # expired lock of an owner that is not an execution, is taken over.
            if holder is None or _ended(holder) or (expired and ":execution:" not in holder):
                _put(
                    table,
                    service,
                    owner,
                    now,
                    ttl_seconds,
                    "attribute_not_exists(pk) OR #owner = :holder",
                    {":holder": {"S": holder or owner}},
                )
            else:
                raise ServiceLocked(
                    f"service {service} is being deployed by {holder}; this deploy waits for it to finish"
                ) from exc
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":  # lost a race for the takeover
            raise ServiceLocked(f"service {service} was just locked by another execution; this deploy waits") from exc
        raise LockUnavailable(f"could not take the deploy lock for {service} in table {table}: {exc}") from exc
    except BotoCoreError as exc:
        raise LockUnavailable(f"could not reach the lock table {table}: {exc}") from exc
    return {"service": service, "owner": owner, "expiresAt": int(now + ttl_seconds)}


def _ended(holder: str) -> bool:
    """True when the holder is a Step Functions execution that is no longer running."""
    if ":execution:" not in holder:
        return False
    sfn = aws.client("stepfunctions")
    try:
        return sfn.describe_execution(executionArn=holder)["status"] != "RUNNING"
    except sfn.exceptions.ExecutionDoesNotExist:
        return True


def wait(table: str, service: str, owner: str, token: str) -> None:
    """Keep the task token of `owner`'s state waiting for the lock, for `release` to wake it."""
    ddb = aws.client("dynamodb")
    try:
        ddb.update_item(
            TableName=table,
            Key=_key(service, "waiting"),
            UpdateExpression="SET waiters = if_not_exists(waiters, :empty), expiresAt = :ttl",
            ExpressionAttributeValues={":empty": {"M": {}}, ":ttl": {"N": str(int(clock.now() + DEFAULT_TTL_SECONDS))}},
        )
        ddb.update_item(
            TableName=table,
            Key=_key(service, "waiting"),
            UpdateExpression="SET waiters.#o = :t",
            ExpressionAttributeNames={"#o": owner},
            ExpressionAttributeValues={":t": {"S": token}},
        )
    except (ClientError, BotoCoreError) as exc:
        raise LockUnavailable(f"could not queue for the deploy lock of {service} in table {table}: {exc}") from exc


def wake_waiters(table: str, service: str, cause: str = "") -> int:
    """Tell every state waiting for the lock to look again (they retry taking it: the lock was released, unless
    `cause` says what else changed); how many were woken.

    Best effort: a waiter that is not woken finds the lock free at its next heartbeat.
    """
    ddb = aws.client("dynamodb")
    try:
        item = ddb.get_item(TableName=table, Key=_key(service, "waiting"), ConsistentRead=True).get("Item") or {}
        woken = 0
        for owner, token in (item.get("waiters", {}).get("M") or {}).items():
            ddb.update_item(
                TableName=table,
                Key=_key(service, "waiting"),
                UpdateExpression="REMOVE waiters.#o",
                ConditionExpression="waiters.#o = :t",
                ExpressionAttributeNames={"#o": owner},
                ExpressionAttributeValues={":t": token},
            )
            woken += waiters.complete(
                token["S"],
                error="LockReleased",
                cause=cause or f"the deploy lock of {service} was released: take it now",
            )
        return woken
    except (ClientError, BotoCoreError):
        return 0


def release(table: str, service: str, owner: str) -> bool:
    """Release the lock if `owner` holds it, and wake the deploys waiting for it; True when it was released."""
    ddb = aws.client("dynamodb")
    try:
        ddb.delete_item(
            TableName=table,
            Key=_key(service),
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise LockUnavailable(f"could not release the deploy lock for {service} in table {table}: {exc}") from exc
    except BotoCoreError as exc:
        raise LockUnavailable(f"could not reach the lock table {table}: {exc}") from exc
    wake_waiters(table, service)
    return True


def waiter_ended(table: str, service: str, owner: str) -> int:
    """The execution `owner` of `service` has ended, however (the execution-ended function calls this for every
    end, after `release`): drop its task token and its place at the head of the queue, and, when the lock is
    free, wake the deploys still waiting (an older one that waited behind it goes ahead). How many were woken.

    Best effort, like wake_waiters: a waiter it misses looks again at its heartbeat."""
    ddb = aws.client("dynamodb")
    try:
        for kind, remove, condition in (
            ("waiting", "REMOVE waiters.#o", "attribute_exists(waiters.#o)"),
            ("queue", "REMOVE newest, newestAt, newestStart", "newest = :me"),
        ):
            try:
                ddb.update_item(
                    TableName=table,
                    Key=_key(service, kind),
                    UpdateExpression=remove,
                    ConditionExpression=condition,
                    **(
                        {"ExpressionAttributeNames": {"#o": owner}}
                        if kind == "waiting"
                        else {"ExpressionAttributeValues": {":me": {"S": owner}}}
                    ),
                )
            except ClientError as exc:
                if aws.error_code(exc) != "ConditionalCheckFailedException":
                    raise
        holder = holder_of(table, service)
        if holder is not None and not _ended(holder):
            return 0  # its release wakes them
    except (ClientError, BotoCoreError):
        return 0
    return wake_waiters(
        table, service, f"{owner.rsplit(':', 1)[-1]} has ended, and the deploy lock of {service} is free: take it now"
    )


def holder_of(table: str, service: str) -> str | None:
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service), ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None


# ------------------------------------------------------------------ the step: its contracts and its actions


@dataclass(frozen=True, kw_only=True)
class LockInput(Model):
    """What every lock state passes (statemachine/build.py LOCK), and which action it asks for."""

    action: str = key("action", doc="acquire, release or rollback-target")
    service: str = key("service", doc="the service's name in the config registry, $.service")
    owner: str = key("owner", doc="the execution that holds or wants the lock, $$.Execution.Id")

    @property
    def execution(self) -> str:
        """The execution's name (the owner's last part), as every log line names it."""
        return self.owner.rsplit(":", 1)[-1]

    @property
    def where(self) -> str | None:
        """The ECS service (cluster/service) locked, when the input says it before the config is read."""
        return None


@dataclass(frozen=True, kw_only=True)
class AcquireInput(LockInput):
    """The input of "Take the deploy lock for this service"."""

    started_at: str | None = key(
        "startedAt",
        required=False,
        doc="$$.Execution.StartTime: a manual deploy's request time, and when the wait began",
    )
    request: dict = key(
        "request",
        kinds=(dict,),
        required=False,
        default={},
        doc="the execution's input, $: its trigger's requestedAt decides which deploy is the newest",
    )
    token: str | None = key(
        "token", required=False, doc="$$.Task.Token: answered with the lock, or kept until the holder releases it"
    )


@dataclass(frozen=True, kw_only=True)
class Held(Model):
    """The lock taken ($.lock): what the lock function sends through the acquire state's task token."""

    service: str = key("service", doc="the ECS service locked, cluster/service (the lock's key)")
    owner: str = key("owner", doc="the execution holding it")
    expires_at: int = key("expiresAt", kinds=(int,), doc="the lock item's TTL, a safety net for a vanished owner")
    lock_key: str = key("key", doc="the lock's key, cluster/service: what the release states release")
    requested_at: float | None = key(
        "requestedAt",
        kinds=(int, float),
        required=False,
        doc="when the deploy was asked for: recorded as deployed by the release",
    )

    @property
    def message(self) -> str:
        return "lock acquired"


@dataclass(frozen=True, kw_only=True)
class Waiting(Model):
    """The lock is held by another deploy: the state's token is kept for the holder's release to wake it. The
    function's answer only (a `.waitForTaskToken` state's output is what the token is completed with)."""

    waiting: bool = key("waiting", kinds=(bool,), doc="always true")
    lock_key: str = key("key", doc="the lock waited for, cluster/service")
    reason: str = key("reason", doc="who holds it")

    @property
    def message(self) -> str:
        return "waiting for the deploy lock"


@dataclass(frozen=True, kw_only=True)
class ReleaseInput(LockInput):
    """The "Release the deploy lock" states (after a deploy, a failure, a rollback or a failed rollback)."""

    request: dict = key(
        "request",
        kinds=(dict,),
        required=False,
        default={},
        doc="the execution's state, $: its lock, and what the deploy registered and replaced",
    )
    deployed: bool = key(
        "deployed",
        kinds=(bool,),
        required=False,
        default=False,
        doc="true after a successful deploy: record it, and summarise it as the execution's output",
    )
    started_at: str | None = key("startedAt", required=False, doc="$$.Execution.StartTime: the summary's duration")

    @property
    def taken(self) -> dict[str, Any]:
        """The lock this execution took ($.lock), {} when it never took one."""
        taken = self.request.get("lock")
        return taken if isinstance(taken, dict) else {}

    @property
    def where(self) -> str | None:
        return self.taken.get("key") or None


@dataclass(frozen=True, kw_only=True)
class Released(Model):
    """The lock released ($.released after a deploy; the other release states keep nothing)."""

    service: str = key("service", doc="the service's name in the config registry")
    released: bool = key(
        "released", kinds=(bool,), doc="false when this execution did not hold it (never taken, or already released)"
    )
    summary: dict | None = key(
        "summary",
        kinds=(dict,),
        required=False,
        doc="after a deploy: its summary, the execution's output (Deployed's OutputPath)",
    )

    @property
    def message(self) -> str:
        return "lock released" if self.released else "lock was not held by this execution"


@dataclass(frozen=True, kw_only=True)
class RollbackTargetInput(LockInput):
    """The input of "Find the revision to roll back to"."""


@dataclass(frozen=True, kw_only=True)
class RollbackTarget(Model):
    """What a rollback request goes back to, written at $.render like Render's output: the same keys for what
    both provide (the states after it read them from either), and rollbackTo, which "Roll back to that
    revision" puts where Register's revision would be."""

    request_action: str = key("requestAction", doc="rollback: the rollback states record no previous revision")
    cluster: str = key("cluster", doc="the ECS cluster")
    ecs_service: str = key("ecsService", doc="the ECS service")
    timeouts: dict = key("timeouts", kinds=(dict,), doc="the config's timeouts: canary, deployment, rollback")
    target_groups: list = key("targetGroups", kinds=(list,), doc="none: there is no canary to register")
    strategy: str = key("strategy", doc="rolling, or native for a service that keeps its own deployment settings")
    rollback_to: str = key("rollbackTo", doc="the revision Ferry's last deploy replaced")
    previous_task_definition_arn: str = key(
        "previousTaskDefinitionArn", doc="the revision Ferry's last deploy put there: a failed rollback goes back to it"
    )
    previous_revision: str = key("previousRevision", doc="the same, as family:revision")
    desired_count: int = key("desiredCount", kinds=(int,), doc="the service's task count before that deploy")
    keep_failed_revisions: int = key(
        "keepFailedRevisions",
        kinds=(int,),
        doc="the config's rollback.keepFailedRevisions, read now, as Render's output has it",
    )
    summary: str = key("summary", doc="one line: roll back cluster/service from ... to ...")

    @property
    def message(self) -> str:
        return "rollback target found"


# action -> (input, output): what each lock state passes, and stores at its ResultPath.
CONTRACTS = {
    "acquire": (AcquireInput, Held),
    "release": (ReleaseInput, Released),
    "rollback-target": (RollbackTargetInput, RollbackTarget),
}
# How InputInvalid names the state whose Parameters are wrong.
STATE_INPUTS = {
    "acquire": "Take the deploy lock's input",
    "release": "Release the deploy lock's input",
    "rollback-target": "Find the rollback target's input",
}


def read(event: Any) -> AcquireInput | ReleaseInput | RollbackTargetInput:
    """The lock step's input, read with its action's model."""
    return read_action(event, CONTRACTS, STATE_INPUTS, "the lock")


def run(request: LockInput, settings: Settings) -> Held | Waiting | Released | RollbackTarget:
    """The step: the action its input asks for."""
    if isinstance(request, AcquireInput):
        return take_lock(request, settings)
    if isinstance(request, ReleaseInput):
        return release_lock(request, settings.lock_table)
    return find_rollback_target(request, settings)


def requested_at(request: Mapping[str, Any], started_at: str | None) -> float | None:
    """When the deploy was asked for: the trigger's time, else the execution's start (a manual deploy).

    A trigger's time later than the execution's start (now, without one) plus CLOCK_SKEW_SECONDS is refused
    (InputInvalid): no request is asked for after its deploy began, and one that said so would make every later
    deploy of the service step aside. None (no superseding) only for a caller outside the state machine that
    gives neither.
    """
    trigger = request.get("trigger") if isinstance(request.get("trigger"), dict) else {}
    at = trigger.get("requestedAt")
    start = _instant(started_at)
    if isinstance(at, (int, float)) and not isinstance(at, bool) and math.isfinite(at):
        bound = (clock.now() if start is None else start) + CLOCK_SKEW_SECONDS
        if at > bound:
            began = f"the execution's start ({started_at})" if start is not None else f"now ({_iso(clock.now())})"
            raise InputInvalid(
                f"the input's `trigger.requestedAt` ({at!r}: {_iso(at)}) is later than {began} plus "
                f"{CLOCK_SKEW_SECONDS // 60} minutes of clock skew: a deploy cannot be asked for after it began, "
                "and one that claimed so would make every later deploy of the service step aside. Leave "
                "`trigger.requestedAt` out (a deploy started by hand is as new as its start). Nothing was locked "
                "or changed."
            )
        return float(at)
    # On EventBridge's one-second clock, as the events' times are: the start itself orders a tie (DeployOrder).
    return float(math.floor(start)) if start is not None else None


def _iso(seconds: float) -> str:
    """A time in seconds, as ISO 8601 in UTC (for messages); what it is when it is no date."""
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "no date"


def _instant(started_at: str | None) -> float | None:
    """An execution's start ($$.Execution.StartTime, ISO 8601) in seconds, or None."""
    if not isinstance(started_at, str) or not started_at:
        return None
    try:
        return datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _config(service: str, settings: Settings) -> config.ServiceConfig:
    cfg = config.load(settings.config_bucket, service, settings.environment)
    config.check_cluster(cfg, settings.allowed_clusters)
    return cfg


def take_lock(request: AcquireInput, settings: Settings) -> Held | Waiting:
    """Take the lock; with a task token (the state machine), answer through it, or leave it waiting.

    A deploy that finds the service locked, or a newer deploy waiting for it, keeps its token in the lock table
    and returns: the holder's release, the newer one taking the lock or ending wakes it (LockReleased, which
    its state retries). After MAX_LOCK_WAIT_SECONDS it gives up. A deploy that takes the lock wakes the waiters:
    the older ones step aside.
    """
    # The request's order first: an input that claims a request time after the execution began is refused before
    # anything is written.
    me = order_of(request.request, request.started_at, request.owner)
    cfg = _config(request.service, settings)
    # The journal opens before the lock is taken: whatever ends this execution finds the lock (and what it
    # starts later) there, however the config changes meanwhile (ferry.lifecycle.journal).
    journal.open(
        settings.lock_table,
        owner=request.owner,
        service=request.service,
        cluster=cfg.cluster,
        ecs_service=cfg.service,
        migrations=[m.name for m in cfg.migrations],
    )
    at = me.requested_at if me is not None else None
    try:
        taken = acquire(
            settings.lock_table,
            cfg.key,
            request.owner,
            requested_at=at,
            started_at=me.started_at if me is not None else None,
        )
    except ServiceLocked as exc:
        if not request.token:
            raise
        began = _instant(request.started_at) or clock.now()
        if clock.now() - began > MAX_LOCK_WAIT_SECONDS:
            raise ServiceLocked(
                f"{exc}; gave up after waiting {MAX_LOCK_WAIT_SECONDS // 60} minutes. "
                "Nothing was changed: deploy again once it has finished"
            ) from exc
        wait(settings.lock_table, cfg.key, request.owner, request.token)
        if not _still_waits(settings.lock_table, cfg.key, request.owner, me):  # it changed before the token was kept
            waiters.complete(
                request.token,
                error="LockReleased",
                cause=f"what the deploy of {cfg.key} waited for changed as it began to wait: it looks again",
            )
        return Waiting(waiting=True, lock_key=cfg.key, reason=str(exc))
    if me is not None:  # older deploys waiting for the lock look again, and step aside for this one
        wake_waiters(
            settings.lock_table,
            cfg.key,
            f"{request.execution} took the deploy lock of {cfg.key}: an older deploy steps aside, a newer one waits",
        )
    held = Held(
        service=taken["service"], owner=taken["owner"], expires_at=taken["expiresAt"], lock_key=cfg.key, requested_at=at
    )
    if request.token:
        waiters.complete(request.token, output=held.to_state())
    return held


def release_lock(request: ReleaseInput, table: str) -> Released:
    """Release the lock this execution took; after a deploy, first record it (what a rollback request goes back
    to, and what makes an older waiting request step aside) and summarise it (the execution's output)."""
    state, taken = request.request, request.taken
    # The execution's output on success: a summary for people, not the whole state.
    done = summary.deployed(state, request.started_at) if request.deployed else None
    if not taken.get("key"):  # it was never taken
        return Released(service=request.service, released=False, summary=done)
    try:
        if request.deployed:
            # Recorded before the lock goes: a newer request must see this deploy once it can run.
            record_state(table, request.owner, state, request.started_at)
        released = release(table, taken["key"], request.owner)
    except LockUnavailable as exc:
        if not request.deployed:
            raise
        revision = revision_name(str((state.get("register") or {}).get("taskDefinitionArn") or "the new revision"))
        raise LockUnavailable(
            f"{taken['key']} is deployed: the service runs {revision}. Only the deploy's record and lock are "
            f"stuck ({exc}); the execution-ended function records the deploy and releases the lock from this "
            "execution's history once the table answers."
        ) from exc
    return Released(service=request.service, released=released, summary=done)


def record_state(table: str, owner: str, state: Mapping[str, Any], started_at: str | None) -> bool:
    """Record the deploy an execution's state describes (its lock, what it registered and replaced): the release
    after a deploy, and the execution-ended function after a release that failed for good. False when the state
    names no lock taken with its request time."""
    taken = state.get("lock") if isinstance(state.get("lock"), dict) else {}
    if not taken.get("key") or not isinstance(taken.get("requestedAt"), (int, float)):
        return False
    revision = (state.get("register") or {}).get("taskDefinitionArn")
    render = state.get("render") or {}
    previous = None if state.get("action") == "rollback" else render.get("previousTaskDefinitionArn")
    record_deployed(
        table,
        taken["key"],
        owner,
        float(taken["requestedAt"]),
        revision,
        previous,
        render.get("desiredCount"),
        started_at=_instant(started_at) or 0.0,
    )
    return True


def find_rollback_target(request: RollbackTargetInput, settings: Settings) -> RollbackTarget:
    """A rollback request: the revision Ferry's last deploy of the service replaced, shaped like Render's output."""
    cfg = _config(request.service, settings)
    target, current, desired = rollback_target(settings.lock_table, cfg.key)
    return RollbackTarget(
        request_action="rollback",
        cluster=cfg.cluster,
        ecs_service=cfg.service,
        timeouts=cfg.timeouts,
        target_groups=[],
        # The way back is a plain update (never a canary); a native service keeps its own deployment settings.
        strategy="native" if cfg.strategy == "native" else "rolling",
        rollback_to=target,
        previous_task_definition_arn=current,
        previous_revision=revision_name(current),
        desired_count=desired,
        keep_failed_revisions=cfg.raw["rollback"]["keepFailedRevisions"],
        summary=f"roll back {cfg.key} from {revision_name(current)} to {revision_name(target)}",
    )
