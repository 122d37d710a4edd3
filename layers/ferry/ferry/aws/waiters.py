"""Task tokens of states waiting for an ECS resource, kept in the lock table.

A state that waits for an ECS task (a migration) stores its task token under
the task's ARN; the function that receives ECS's `Task State Change` event
for that task looks the token up and completes the state. Nothing polls and
nothing sleeps. The item's TTL removes a waiter whose execution vanished.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from ferry import aws, text
from ferry.runtime import clock
from ferry.runtime.observability import logger

TTL_SECONDS = 24 * 3600
# SendTaskFailure's cause: at most 32768 characters (botocore's stepfunctions model, SensitiveCause "max": 32768).
# AWS refuses a longer one with ValidationException, and the state is never completed: it waits until it times out
# (irothschild/stefuna pull request #8).
CAUSE_MAX_CHARS = 32768


def _key(resource: str) -> dict:
    return {"pk": {"S": f"waiter#{resource}"}}


def put(table: str, resource: str, token: str, context: dict[str, Any]) -> None:
    """Store (or replace, on a retried state) the token that waits for `resource`."""
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={
            **_key(resource),
            "token": {"S": token},
            "context": {"S": json.dumps(context, sort_keys=True)},
            "expiresAt": {"N": str(int(clock.now() + TTL_SECONDS))},
        },
    )


def get(table: str, resource: str) -> tuple[str, dict[str, Any]] | None:
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(resource), ConsistentRead=True).get("Item")
    if not item:
        return None
    return item["token"]["S"], json.loads(item["context"]["S"])


def delete(table: str, resource: str, token: str) -> None:
    """Remove the waiter, unless a retried state has replaced it with a newer token meanwhile."""
    try:
        aws.client("dynamodb").delete_item(
            TableName=table,
            Key=_key(resource),
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":t": {"S": token}},
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise


def complete(token: str, *, output: dict[str, Any] | None = None, error: str | None = None, cause: str = "") -> bool:
    """Send the state its result; False when the token is no longer waited on (timed out, execution ended)."""
    sfn = aws.client("stepfunctions")
    try:
        if error:
            sfn.send_task_failure(taskToken=token, error=error, cause=fit_cause(cause))
        else:
            sfn.send_task_success(taskToken=token, output=json.dumps(output or {}))
    except ClientError as exc:
        if aws.error_code(exc) in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            return False
        raise
    return True


def fit_cause(cause: str) -> str:
    """`cause` as it is when SendTaskFailure takes it, else its first whole lines, how many lines were left out and
    where the whole is: this function's log, where it is written now (text.fit_lines, measured as JSON text costs
    it, which is never less than its characters)."""
    if len(cause) <= CAUSE_MAX_CHARS:
        return cause
    keys = logger.get_current_keys()
    function = keys.get("function_name") or "ferry"
    request = keys.get("function_request_id") or "unknown"
    logger.error(cause, extra={"characters": len(cause)})
    return text.fit_lines(cause, CAUSE_MAX_CHARS, f"the log of Lambda function {function}, request {request}")
