"""One deploy per service at a time: a lock item per service in DynamoDB.

Conditional writes make acquire and release safe under retries: taking a lock
you already own succeeds again, releasing one you do not own changes nothing.
`expiresAt` (TTL) is only a safety net for an owner that vanished; a live
deploy never relies on it.

The newest request wins. Every deploy has a `requestedAt` (the push's or
manifest's time, or the execution's start for a manual deploy). While it
waits for the lock it records itself in the service's queue item if it is the
newest; a waiting deploy that finds a newer one queued, or a newer image
already deployed, is superseded (it steps aside, it does not fail), so an
older image never goes out over a newer one.

Nothing polls while a deploy waits: its state's task token is kept in the
service's `waiting#` item (`wait`), and `release` wakes every waiter
(`LockReleased`, which their state retries at once: the newest takes the lock,
the older ones are superseded). The state's heartbeat is only a fallback.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.runtime import clock
from ferry.aws import waiters
from ferry.errors import LockUnavailable, NothingToRollBack, ServiceLocked, Superseded

# Longer than the longest deploy the config allows (canary, five migrations, rollout, bake and
# rollback at their maximum timeouts: 19 hours): the TTL only cleans up after a vanished owner.
DEFAULT_TTL_SECONDS = 24 * 3600


def _key(service: str, kind: str = "service") -> dict:
    return {"pk": {"S": f"{kind}#{service}"}}


def _check_not_superseded(table: str, service: str, owner: str, requested_at: float) -> None:
    """Queue `owner` as the newest waiter, or raise Superseded when a newer deploy is queued or already out."""
    ddb = aws.client("dynamodb")
    deployed = ddb.get_item(TableName=table, Key=_key(service, "deployed"), ConsistentRead=True).get("Item")
    if deployed and float(deployed["requestedAt"]["N"]) > requested_at and deployed["owner"]["S"] != owner:
        raise Superseded(
            f"a newer deploy of {service} ({deployed['owner']['S'].rsplit(':', 1)[-1]}) has already gone out; "
            "this older request steps aside so it cannot roll the service back. Nothing was changed."
        )
    try:
        ddb.update_item(
            TableName=table, Key=_key(service, "queue"),
            UpdateExpression="SET newest = :me, newestAt = :at, expiresAt = :ttl",
            ConditionExpression="attribute_not_exists(newestAt) OR newestAt <= :at",
            ExpressionAttributeValues={":me": {"S": owner}, ":at": {"N": repr(requested_at)},
                                       ":ttl": {"N": str(int(clock.now() + DEFAULT_TTL_SECONDS))}},
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
        newest = ddb.get_item(TableName=table, Key=_key(service, "queue"), ConsistentRead=True).get("Item", {})
        newer = newest.get("newest", {}).get("S", "another execution")
        if newer != owner:
            raise Superseded(
                f"a newer deploy of {service} is queued ({newer.rsplit(':', 1)[-1]}); this one steps aside so that "
                "the newest image wins. Nothing was changed."
            ) from exc


def record_deployed(table: str, service: str, owner: str, requested_at: float, revision: str | None = None,
                    previous: str | None = None, desired_count: int | None = None) -> None:
    """Remember the newest request that reached the service (older ones are superseded from now on),
    with the revision it deployed and the one it replaced (what a rollback request goes back to).

    A rollback request records its target with no previous revision: rolling back twice must not
    go "back" to the revision that was just rolled away from."""
    values: dict = {":me": {"S": owner}, ":at": {"N": repr(requested_at)}}
    update = "SET #owner = :me, requestedAt = :at"
    if revision and previous:
        update += ", revision = :rev, previousRevision = :prev, desiredCount = :count"
        values.update({":rev": {"S": revision}, ":prev": {"S": previous}, ":count": {"N": str(desired_count or 1)}})
    elif revision:
        update += ", revision = :rev REMOVE previousRevision"
        values[":rev"] = {"S": revision}
    try:
        aws.client("dynamodb").update_item(
            TableName=table, Key=_key(service, "deployed"), UpdateExpression=update,
            ConditionExpression="attribute_not_exists(requestedAt) OR requestedAt <= :at",
            ExpressionAttributeNames={"#owner": "owner"}, ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":  # a newer one is already recorded
            raise LockUnavailable(f"could not record the deploy of {service} in table {table}: {exc}") from exc
    except BotoCoreError as exc:  # as LockUnavailable, the release states retry it like a ClientError
        raise LockUnavailable(
            f"could not record the deploy of {service}: could not reach table {table}: {exc}") from exc


def rollback_target(table: str, service: str) -> tuple[str, str, int]:
    """(revision to go back to, revision running now by Ferry's record, desired count) for a rollback request."""
    try:
        item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service, "deployed"),
                                               ConsistentRead=True).get("Item")
    except (ClientError, BotoCoreError) as exc:
        raise LockUnavailable(f"could not read the deploy record of {service} in table {table}: {exc}") from exc
    if not item or "previousRevision" not in item:
        raise NothingToRollBack(
            f"Ferry has no record of deploying {service}, so it knows no previous revision to roll back to: "
            "deploy the image you want with {\"service\": ..., \"images\": {...}} instead. Nothing was changed."
        )
    return item["previousRevision"]["S"], item["revision"]["S"], int(item.get("desiredCount", {}).get("N", "1"))


def _put(table: str, service: str, owner: str, now: float, ttl_seconds: int, condition: str, values: dict) -> None:
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={**_key(service), "owner": {"S": owner}, "acquiredAt": {"N": str(int(now))},
              "expiresAt": {"N": str(int(now + ttl_seconds))}},
        ConditionExpression=condition,
        ExpressionAttributeNames={"#owner": "owner"},
        ExpressionAttributeValues=values,
    )


def acquire(table: str, service: str, owner: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, now: float | None = None,
            requested_at: float | None = None) -> dict:
    """Take the lock for `owner` (an execution ARN), or raise ServiceLocked naming the holder.

    A lock whose holder is an execution that has ended (aborted or timed out,
    so no Catch released it) is taken over at once rather than left to its TTL.
    With `requested_at`, a request older than one queued or deployed is Superseded.
    """
    now = clock.now() if now is None else now
    try:
        if requested_at is not None and holder_of(table, service) != owner:
            _check_not_superseded(table, service, owner, requested_at)
        try:
            _put(table, service, owner, now, ttl_seconds, "attribute_not_exists(pk) OR #owner = :owner",
                 {":owner": {"S": owner}})
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service), ConsistentRead=True).get("Item")
            holder = item["owner"]["S"] if item else None
            expired = bool(item) and float(item.get("expiresAt", {}).get("N", "0")) < now
            # A running execution keeps its lock however long it takes; only an ended one, or an
            # expired lock of an owner that is not an execution, is taken over.
            if holder is None or _ended(holder) or (expired and ":execution:" not in holder):
                _put(table, service, owner, now, ttl_seconds,
                     "attribute_not_exists(pk) OR #owner = :holder",
                     {":holder": {"S": holder or owner}})
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
        ddb.update_item(TableName=table, Key=_key(service, "waiting"),
                        UpdateExpression="SET waiters = if_not_exists(waiters, :empty), expiresAt = :ttl",
                        ExpressionAttributeValues={":empty": {"M": {}},
                                                   ":ttl": {"N": str(int(clock.now() + DEFAULT_TTL_SECONDS))}})
        ddb.update_item(TableName=table, Key=_key(service, "waiting"), UpdateExpression="SET waiters.#o = :t",
                        ExpressionAttributeNames={"#o": owner}, ExpressionAttributeValues={":t": {"S": token}})
    except (ClientError, BotoCoreError) as exc:
        raise LockUnavailable(f"could not queue for the deploy lock of {service} in table {table}: {exc}") from exc


def wake_waiters(table: str, service: str) -> int:
    """Tell every state waiting for the lock that it is free (they retry taking it); how many were woken.

    Best effort: a waiter that is not woken finds the lock free at its next heartbeat.
    """
    ddb = aws.client("dynamodb")
    try:
        item = ddb.get_item(TableName=table, Key=_key(service, "waiting"), ConsistentRead=True).get("Item") or {}
        woken = 0
        for owner, token in (item.get("waiters", {}).get("M") or {}).items():
            ddb.update_item(TableName=table, Key=_key(service, "waiting"), UpdateExpression="REMOVE waiters.#o",
                            ConditionExpression="waiters.#o = :t", ExpressionAttributeNames={"#o": owner},
                            ExpressionAttributeValues={":t": token})
            woken += waiters.complete(token["S"], error="LockReleased",
                                      cause=f"the deploy lock of {service} was released: take it now")
        return woken
    except (ClientError, BotoCoreError):
        return 0


def release(table: str, service: str, owner: str) -> bool:
    """Release the lock if `owner` holds it, and wake the deploys waiting for it; True when it was released."""
    ddb = aws.client("dynamodb")
    try:
        ddb.delete_item(
            TableName=table, Key=_key(service),
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


def holder_of(table: str, service: str) -> str | None:
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service), ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None
