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


def acquire(table: str, service: str, owner: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, now: float | None = None) -> dict:
    now = clock.now() if now is None else now
    ddb = aws.client("dynamodb")
    try:
        ddb.put_item(
            TableName=table,
            Item={**_key(service), "owner": {"S": owner}, "acquiredAt": {"N": str(int(now))},
                  "expiresAt": {"N": str(int(now + ttl_seconds))}},
            ConditionExpression="attribute_not_exists(pk) OR #owner = :owner OR expiresAt < :now",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": str(int(now))}},
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            holder = holder_of(table, service)
            raise ServiceLocked(
                f"service {service} is being deployed by {holder or 'another execution'}; "
                "this deploy waits for it to finish"
            ) from exc
        raise LockUnavailable(f"could not take the deploy lock for {service} in table {table}: {exc}") from exc
    except BotoCoreError as exc:
        raise LockUnavailable(f"could not reach the lock table {table}: {exc}") from exc
    return {"service": service, "owner": owner, "expiresAt": int(now + ttl_seconds)}


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
