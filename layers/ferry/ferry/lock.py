"""One deploy per service at a time: a lock item per service in DynamoDB.

Conditional writes make acquire and release safe under retries: taking a lock
you already own succeeds again, releasing one you do not own changes nothing.
`expiresAt` (TTL) is only a safety net for an owner that vanished; a live
deploy never relies on it.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from . import aws, clock
from .errors import LockUnavailable, ServiceLocked

DEFAULT_TTL_SECONDS = 4 * 3600


def _key(service: str) -> dict:
    return {"pk": {"S": f"service#{service}"}}


def _put(table: str, service: str, owner: str, now: float, ttl_seconds: int, condition: str, values: dict) -> None:
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={**_key(service), "owner": {"S": owner}, "acquiredAt": {"N": str(int(now))},
              "expiresAt": {"N": str(int(now + ttl_seconds))}},
        ConditionExpression=condition,
        ExpressionAttributeNames={"#owner": "owner"},
        ExpressionAttributeValues=values,
    )


def acquire(table: str, service: str, owner: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> dict:
    """Take the lock for `owner` (an execution ARN), or raise ServiceLocked naming the holder.

    A lock whose holder is an execution that has ended (aborted or timed out,
    so no Catch released it) is taken over at once rather than left to its TTL.
    """
    now = clock.now() if now is None else now
    try:
        try:
            _put(table, service, owner, now, ttl_seconds,
                 "attribute_not_exists(pk) OR #owner = :owner OR expiresAt < :now",
                 {":owner": {"S": owner}, ":now": {"N": str(int(now))}})
        except ClientError as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
            holder = holder_of(table, service)
            if holder is None or _ended(holder):
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


def release(table: str, service: str, owner: str) -> bool:
    """Release the lock if `owner` holds it; True when an item was deleted."""
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
    return True


def holder_of(table: str, service: str) -> str | None:
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(service), ConsistentRead=True).get("Item")
    return item["owner"]["S"] if item else None
