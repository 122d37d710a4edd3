"""Rollback: put the service back on the revision it ran before Ferry changed it.

Any failure after the service was updated ends here. ECS may already have
rolled back by itself (the circuit breaker); otherwise an in-flight
deployment of the failed revision is stopped with StopServiceDeployment's
ROLLBACK, and when that is not possible the service is updated to the
previous revision with the desired count it had. The failed revision is then
deregistered, keeping the newest `rollback.keepFailedRevisions` of them.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.runtime import clock
from ferry.aws.ecs import created_at, describe_service, primary_deployment, revision_name
from ferry.errors import cause_text

MAX_CAUSE = 30_000


def failure_message(failure: dict[str, Any] | None) -> str:
    """'Error: message' of a Catch result; a Lambda error's Cause is JSON with an errorMessage."""
    failure = failure or {}
    error, cause = failure.get("Error") or "Error", cause_text(failure.get("Cause")) or ""
    return f"{error}: {cause}".strip()


def start(cluster: str, service: str, previous: str, desired: int, failed: str | None) -> dict[str, Any]:
    """Start (or find) the deployment back to `previous`; safe to call again after a retry."""
    ecs = aws.client("ecs")
    primary = primary_deployment(describe_service(cluster, service))
    if primary["taskDefinition"] == previous:
        # ECS's circuit breaker rolled back, or the update never took: wait from now for it to settle.
        return {"method": f"the service was already back on {revision_name(previous)}", "startedAt": clock.now()}
    if failed and primary["taskDefinition"] == failed and primary.get("rolloutState") == "IN_PROGRESS":
        try:
            found = aws.items(ecs, "list_service_deployments", "serviceDeployments", cluster=cluster, service=service,
                              status=["PENDING", "IN_PROGRESS"])  # every page: 20 a page
            for deployment in found:
                ecs.stop_service_deployment(serviceDeploymentArn=deployment["serviceDeploymentArn"], stopType="ROLLBACK")
            primary = primary_deployment(describe_service(cluster, service))
            if found and primary["taskDefinition"] == previous:
                return {"method": "stopped the in-flight deployment with ROLLBACK", "startedAt": created_at(primary)}
        except (ClientError, BotoCoreError, AttributeError):
            pass  # no service deployments API here, or nothing to stop: update the service instead
    updated = ecs.update_service(cluster=cluster, service=service, taskDefinition=previous, desiredCount=desired)["service"]
    primary = primary_deployment(updated)
    return {"method": f"updated the service to {revision_name(previous)}", "startedAt": created_at(primary)}


def _retire(table: str, key: str, failed: str, keep: int) -> list[str]:
    """Deregister failed revisions beyond the newest `keep`; the list of them lives in the lock table."""
    ddb = aws.client("dynamodb")
    item = ddb.update_item(
        TableName=table, Key={"pk": {"S": f"failed#{key}"}},
        UpdateExpression="SET revisions = list_append(if_not_exists(revisions, :empty), :this)",
        ExpressionAttributeValues={":empty": {"L": []}, ":this": {"L": [{"S": failed}]}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    revisions = list(dict.fromkeys(r["S"] for r in item["revisions"]["L"]))
    retired, kept = revisions[: max(0, len(revisions) - keep)], revisions[max(0, len(revisions) - keep):]
    for arn in retired:
        try:
            aws.client("ecs").deregister_task_definition(taskDefinition=arn)
        except aws.client("ecs").exceptions.ClientException:
            pass  # already deregistered
    ddb.put_item(TableName=table, Item={"pk": {"S": f"failed#{key}"}, "revisions": {"L": [{"S": r} for r in kept]}})
    return retired


def finish(*, table: str, cluster: str, service: str, previous: str, desired: int, failed: str | None,
           failure: dict[str, Any] | None, keep: int, method: str) -> dict[str, Any]:
    """After the rollback completed: retire the failed revision and write the Cause of the RolledBack Fail state."""
    where = f"{cluster}/{service}"
    retired: list[str] = []
    note = ""
    if failed and failed != previous:
        try:
            retired = _retire(table, where, failed, keep)
        except (ClientError, BotoCoreError) as exc:
            note = f" Deregistering {revision_name(failed)} failed ({aws.error_code(exc) or type(exc).__name__}); it is still registered."
    failed_name = revision_name(failed) if failed else "the new revision"
    kept = "" if failed in retired or not failed else f" {failed_name} stays registered (rollback.keepFailedRevisions: {keep})."
    gone = f" {failed_name} was deregistered." if failed in retired else ""
    cause = (f"{failed_name} failed: {failure_message(failure)}\n"
             f"Ferry rolled {where} back to {revision_name(previous)} ({desired} tasks; {method}) and that deployment "
             f"completed: the service is stable on {revision_name(previous)}.{gone}{kept}{note}")
    return {"error": "RolledBack", "cause": cause[:MAX_CAUSE], "retired": [revision_name(r) for r in retired]}


def explain_failure(*, cluster: str, service: str, previous: str, desired: int, failed: str | None,
                    failure: dict[str, Any] | None, rollback_failure: dict[str, Any] | None) -> dict[str, Any]:
    """The Cause of the RollbackFailed Fail state: a person must act, and exactly how."""
    where = f"{cluster}/{service}"
    try:
        current = describe_service(cluster, service)
        primary = primary_deployment(current)
        now = (f"It now runs {revision_name(primary['taskDefinition'])} (PRIMARY deployment {primary.get('rolloutState', '?')}, "
               f"{primary.get('runningCount', '?')}/{primary.get('desiredCount', '?')} tasks running).")
    except Exception as exc:  # the explanation must still be written when ECS cannot be read
        now = f"Its current state could not be read ({type(exc).__name__})."
    cause = (
        f"ROLLBACK FAILED: a person must act on {where}.\n"
        f"{revision_name(failed) if failed else 'The new revision'} failed ({failure_message(failure)}), and rolling back "
        f"to {revision_name(previous)} failed too: {failure_message(rollback_failure)}\n{now}\n"
        f"It should run {revision_name(previous)} with {desired} tasks: aws ecs update-service --cluster {cluster} "
        f"--service {service} --task-definition {revision_name(previous)} --desired-count {desired}"
    )
    return {"error": "RollbackFailed", "cause": cause[:MAX_CAUSE]}
