"""Rollback: put the service back on the revision it ran before Ferry changed it.

Any failure after the service was updated ends here. ECS may already have
rolled back by itself (the circuit breaker); otherwise an in-flight
deployment of the failed revision is stopped with StopServiceDeployment's
ROLLBACK, and when that is not possible the service is updated to the
previous revision with the desired count it had. The failed revision is then
deregistered, keeping the newest `rollback.keepFailedRevisions` of them.

The step (functions/rollback) has three actions, each with its contract
(CONTRACTS): `start` ("Roll back to the previous revision": `Started`, at
$.rollback, what "Wait for ECS to finish the rollback" waits for), `finish`
("Deregister the failed revision": `RolledBack`, at $.report, whose cause is
the `Rolled back` Fail state's Cause) and `explain` ("Explain the failed
rollback": `Explained`, at $.report, the `Rollback failed` Cause).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry import states as S
from ferry.runtime import clock
from ferry.aws import canary_tasks
from ferry.aws.ecs import check_in_seconds, created_at, describe_service, primary_deployment, revision_name
from ferry.contract import EcsStepInput, Model, Progress, key, read_action
from ferry.errors import CleanupIncomplete, cause_text
from ferry.runtime.observability import logger
from ferry.runtime.settings import Settings
from ferry.text import fit_lines

MAX_CAUSE = 30_000  # in json_length: under a Fail state's 32768-character Cause
# Where the whole of a cut Cause is: the failure it quotes is the Cause of a state in the execution's history.
HISTORY = "the execution's history (the Cause of the state that failed)"
# How long the rollback's deployment may take when the state does not say ($.render.timeouts.rollback).
DEFAULT_TIMEOUT_SECONDS = 1800


# ------------------------------------------------------------------ the step's contracts


@dataclass(frozen=True, kw_only=True)
class RollbackInput(EcsStepInput):
    """What every rollback state passes (statemachine/build.py ROLLBACK): the failed deploy, what the service ran
    before, and why it failed."""

    action: str = key("action", doc="start, finish or explain")
    previous_task_definition_arn: str = key(
        "previousTaskDefinitionArn", doc="the revision the service ran before, $.render.previousTaskDefinitionArn"
    )
    desired_count: int = key("desiredCount", kinds=(int,), doc="the tasks it ran before, $.render.desiredCount")
    failed_task_definition_arn: str | None = key(
        "failedTaskDefinitionArn", required=False, doc="the new revision, $.register.taskDefinitionArn"
    )
    failure: dict[str, Any] | None = key(
        "failure", kinds=(dict,), required=False, doc="what failed, $.failure: the Catch's Error and Cause"
    )
    request_action: str | None = key(
        "requestAction", required=False, doc="$.render.requestAction: deploy, or rollback for a rollback request"
    )

    @property
    def failed(self) -> str | None:
        """The revision to retire: none for a rollback request, whose target is a known-good revision."""
        return None if self.request_action == "rollback" else self.failed_task_definition_arn


@dataclass(frozen=True, kw_only=True)
class StartInput(RollbackInput):
    """The input of "Roll back to the previous revision"."""

    timeout_seconds: int | None = key(
        "timeoutSeconds",
        kinds=(int,),
        required=False,
        doc="$.render.timeouts.rollback: when the wait for it looks for itself",
    )

    @property
    def timeout(self) -> int:
        return self.timeout_seconds or DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True, kw_only=True)
class FinishInput(RollbackInput):
    """The input of "Deregister the failed revision"."""

    keep_failed_revisions: int = key(
        "keepFailedRevisions",
        kinds=(int,),
        doc="failed revisions left registered, $.render.keepFailedRevisions: read from the config when the deploy "
        "began (a config edited or deleted since must not turn a good rollback into a failed one)",
    )
    method: str | None = key("method", required=False, doc="what the rollback did, $.rollback.method")


@dataclass(frozen=True, kw_only=True)
class ExplainInput(RollbackInput):
    """The input of "Explain the failed rollback"."""

    rollback_failure: dict[str, Any] | None = key(
        "rollbackFailure", kinds=(dict,), required=False, doc="what failed in the rollback, $.rollbackFailure"
    )


@dataclass(frozen=True, kw_only=True)
class Started(Model):
    """The rollback started ($.rollback): what "Wait for ECS to finish the rollback" waits for."""

    method: str = key(
        "method",
        doc="what Ferry did: waited for ECS's own rollback, stopped the deployment with "
        "ROLLBACK, or updated the service",
    )
    started_at: float = key(
        "startedAt", kinds=(int, float), doc="when the rollback's deployment began: its timeout counts from it"
    )
    canary_tasks_stopped: int = key(
        "canaryTasksStopped", kinds=(int,), doc="canary tasks stopped before rolling back; -1 when removing them failed"
    )
    progress: Progress = key("progress", nested=Progress, doc="when the wait looks for itself")

    @property
    def message(self) -> str:
        return "rollback started"

    @property
    def level(self) -> int:
        return logging.WARNING


@dataclass(frozen=True, kw_only=True)
class RolledBack(Model):
    """The rollback completed ($.report): the Cause of the `Rolled back` Fail state."""

    error: str = key("error", doc="RolledBack")
    cause: str = key("cause", doc="what failed, and that the service is stable on the revision it ran before")
    retired: list[str] = key("retired", kinds=(list,), doc="failed revisions deregistered (family:revision)")

    @property
    def message(self) -> str:
        return "rolled back"

    @property
    def level(self) -> int:
        return logging.WARNING


@dataclass(frozen=True, kw_only=True)
class Explained(Model):
    """The rollback failed ($.report): the Cause of the `Rollback failed` Fail state."""

    error: str = key("error", doc="RollbackFailed, or RolledBack when the service is back after all")
    cause: str = key(
        "cause",
        doc="both failures, what the service runs now and the command that puts it back; or, back after all, the "
        "Cause of `Rolled back`",
    )
    cleanup_unfinished: bool = key(
        "cleanupUnfinished",
        kinds=(bool,),
        required=False,
        default=False,
        doc="the service is back on the previous revision, but what is left of the canary could not be removed or "
        "read: the execution ends `Clean-up did not finish`, with this Cause",
    )
    recovered: bool = key(
        "recovered",
        kinds=(bool,),
        required=False,
        default=False,
        doc="the service is back on the previous revision after all, its deployment COMPLETED with every task "
        "running: ECS finished the rollback while Ferry's watch of it failed, so it ends `Rolled back`",
    )

    @property
    def message(self) -> str:
        return "rollback failed: a person must act"

    @property
    def level(self) -> int:
        return logging.ERROR


# action -> (input, output): what each rollback state passes, and what it writes.
CONTRACTS = {"start": (StartInput, Started), "finish": (FinishInput, RolledBack), "explain": (ExplainInput, Explained)}
# What an InputInvalid names: the state whose Parameters are wrong.
INPUT_OF = {
    "start": f"{S.ROLL_BACK}'s input",
    "finish": f"{S.DEREGISTER_FAILED_REVISION}'s input",
    "explain": f"{S.EXPLAIN_FAILED_ROLLBACK}'s input",
}


def read(event: Any) -> RollbackInput:
    """The typed input of the rollback state that invoked the function, by its action."""
    return read_action(event, CONTRACTS, INPUT_OF, "the rollback")


def run(request: RollbackInput, settings: Settings) -> Started | RolledBack | Explained:
    """The step: the action the state asked for."""
    if isinstance(request, StartInput):
        return roll_back(request)
    if isinstance(request, FinishInput):
        return finish(request, settings.lock_table, request.keep_failed_revisions)
    return explain(request)  # type: ignore[arg-type]


def failure_message(failure: dict[str, Any] | None) -> str:
    """'Error: message' of a Catch result; a Lambda error's Cause is JSON with an errorMessage."""
    failure = failure or {}
    error, cause = failure.get("Error") or "Error", cause_text(failure.get("Cause")) or ""
    return f"{error}: {cause}".strip()


def roll_back(request: StartInput) -> Started:
    """Take the canary away, then start (or find) the deployment back to the previous revision."""
    try:
        # The canary must not keep serving; the failed revision is the one it runs (its family finds crashed ones).
        stopped = canary_tasks.remove_now(
            request.cluster,
            request.ecs_service,
            request.execution,
            task_definition_arn=request.failed_task_definition_arn or None,
        )
    except Exception as exc:  # never let the canary keep the service from being rolled back
        logger.warning("canary removal failed; rolling back anyway", extra={"error": type(exc).__name__})
        stopped = -1
    started = start(
        request.cluster,
        request.ecs_service,
        request.previous_task_definition_arn,
        request.desired_count,
        request.failed,
    )
    return Started(
        method=started["method"],
        started_at=started["startedAt"],
        canary_tasks_stopped=stopped,
        progress=Progress(state="IN_PROGRESS", check_in_seconds=check_in_seconds(request.timeout)),
    )


def start(cluster: str, service: str, previous: str, desired: int, failed: str | None) -> dict[str, Any]:
    """Start (or find) the deployment back to `previous`; safe to call again after a retry."""
    ecs = aws.client("ecs")
    primary = primary_deployment(describe_service(cluster, service))
    if primary["taskDefinition"] == previous:
        # ECS's circuit breaker rolled back, or the update never took: wait from now for it to settle.
        return {"method": f"the service was already back on {revision_name(previous)}", "startedAt": clock.now()}
    if failed and primary["taskDefinition"] == failed and primary.get("rolloutState") == "IN_PROGRESS":
        try:
            found = aws.items(
                ecs,
                "list_service_deployments",
                "serviceDeployments",
                cluster=cluster,
                service=service,
                status=["PENDING", "IN_PROGRESS"],
            )  # every page: 20 a page
            for deployment in found:
                ecs.stop_service_deployment(
                    serviceDeploymentArn=deployment["serviceDeploymentArn"], stopType="ROLLBACK"
                )
            primary = primary_deployment(describe_service(cluster, service))
            if found and primary["taskDefinition"] == previous:
                return {"method": "stopped the in-flight deployment with ROLLBACK", "startedAt": created_at(primary)}
        except (ClientError, BotoCoreError, AttributeError):
            pass  # no service deployments API here, or nothing to stop: update the service instead
    updated = ecs.update_service(cluster=cluster, service=service, taskDefinition=previous, desiredCount=desired)[
        "service"
    ]
    primary = primary_deployment(updated)
    return {"method": f"updated the service to {revision_name(previous)}", "startedAt": created_at(primary)}


def _retire(table: str, key: str, failed: str, keep: int) -> list[str]:
    """Deregister failed revisions beyond the newest `keep`; the list of them lives in the lock table."""
    ddb = aws.client("dynamodb")
    item = ddb.update_item(
        TableName=table,
        Key={"pk": {"S": f"failed#{key}"}},
        UpdateExpression="SET revisions = list_append(if_not_exists(revisions, :empty), :this)",
        ExpressionAttributeValues={":empty": {"L": []}, ":this": {"L": [{"S": failed}]}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    revisions = list(dict.fromkeys(r["S"] for r in item["revisions"]["L"]))
    retired, kept = revisions[: max(0, len(revisions) - keep)], revisions[max(0, len(revisions) - keep) :]
    for arn in retired:
        try:
            aws.client("ecs").deregister_task_definition(taskDefinition=arn)
        except aws.client("ecs").exceptions.ClientException:
            pass  # already deregistered
    ddb.put_item(TableName=table, Item={"pk": {"S": f"failed#{key}"}, "revisions": {"L": [{"S": r} for r in kept]}})
    return retired


def _remove_canary(request: RollbackInput) -> None:
    """Remove whatever of the failed revision's canary is left; CleanupIncomplete (retried by the state for up to
    55 minutes) while anything of it still runs or is registered."""
    cluster, service, execution = request.cluster, request.ecs_service, request.execution
    recorded = {"task_definition_arn": request.failed_task_definition_arn or None}
    try:
        _, left, error = canary_tasks.removed(cluster, service, execution, **recorded)
    except (ClientError, BotoCoreError) as exc:  # ECS or ELB did not answer: whether it is gone is unknown
        raise CleanupIncomplete(
            f"the rollback of {request.where} completed, but whether the canary of {execution} is gone could not "
            f"be read ({aws.error_code(exc) or type(exc).__name__}). Ferry keeps trying; to check by hand: aws ecs "
            f"list-tasks --cluster {cluster} --started-by {canary_tasks.started_by(execution)}"
        ) from exc
    if error:
        logger.warning("canary removal failed", extra={"error": error})
    if left:
        raise CleanupIncomplete(
            f"the rollback of {request.where} completed, but the canary of {execution} is not removed yet: "
            f"{'; '.join(left)}. Ferry keeps trying; to remove it by hand: aws ecs stop-task --cluster {cluster} "
            "--task <task>, and aws elbv2 deregister-targets for each target named"
        )


def finish(request: FinishInput, table: str, keep: int) -> RolledBack:
    """After the rollback completed: retire the failed revision and write the Cause of the RolledBack Fail state."""
    where, previous, desired = request.where, request.previous_task_definition_arn, request.desired_count
    failed, failure, method = request.failed, request.failure, request.method or "rolled back"
    # The canary goes first: `Rolled back` is never reported while it still serves (the start only tried once).
    _remove_canary(request)
    retired: list[str] = []
    note = ""
    if failed and failed != previous:
        try:
            retired = _retire(table, where, failed, keep)
        except (ClientError, BotoCoreError) as exc:
            note = f" Deregistering {revision_name(failed)} failed ({aws.error_code(exc) or type(exc).__name__}); it is still registered."
    failed_name = revision_name(failed) if failed else "the new revision"
    kept = (
        ""
        if failed in retired or not failed
        else f" {failed_name} stays registered (rollback.keepFailedRevisions: {keep})."
    )
    gone = f" {failed_name} was deregistered." if failed in retired else ""
    cause = (
        f"{failed_name} failed: {failure_message(failure)}\n"
        f"Ferry rolled {where} back to {revision_name(previous)} ({desired} tasks; {method}) and that deployment "
        f"completed: the service is stable on {revision_name(previous)}.{gone}{kept}{note}"
    )
    return RolledBack(
        error="RolledBack", cause=fit_lines(cause, MAX_CAUSE, HISTORY), retired=[revision_name(r) for r in retired]
    )


def explain(request: ExplainInput) -> Explained:
    """The Cause of the RollbackFailed Fail state: a person must act, and exactly how. Unless the service is back on
    its previous revision after all: then the Cause of `Rolled back` (`recovered`), or, when what is left of the
    canary cannot be removed or read, the Cause of `Clean-up did not finish` (`cleanupUnfinished`)."""
    cluster, service, where = request.cluster, request.ecs_service, request.where
    previous, desired, failed = request.previous_task_definition_arn, request.desired_count, request.failed
    failure, rollback_failure = request.failure, request.rollback_failure
    recorded = {"task_definition_arn": request.failed_task_definition_arn or None}
    back, left = False, None  # left: what of the canary is still there, None while it cannot be read
    try:
        current = describe_service(cluster, service)
        primary = primary_deployment(current)
        # Back after all: the previous revision is the PRIMARY deployment, COMPLETED with every task running, and
        # no other deployment runs a task.
        back = (
            primary.get("taskDefinition") == previous
            and primary.get("rolloutState") == "COMPLETED"
            and primary.get("runningCount") == primary.get("desiredCount") == desired
            and not any(d.get("runningCount") for d in current.get("deployments", []) if d is not primary)
        )
        now = (
            f"It now runs {revision_name(primary['taskDefinition'])} (PRIMARY deployment {primary.get('rolloutState', '?')}, "
            f"{primary.get('runningCount', '?')}/{primary.get('desiredCount', '?')} tasks running)."
        )
    except Exception as exc:  # the explanation must still be written when ECS cannot be read
        now = f"Its current state could not be read ({type(exc).__name__})."
    unreadable = ""
    try:  # a canary must not keep serving, whatever else failed (the start tried once)
        _, left, error = canary_tasks.removed(cluster, service, request.execution, **recorded)
        if error:
            logger.warning("canary removal failed", extra={"error": error})
    except Exception as exc:
        unreadable = aws.error_code(exc) or type(exc).__name__
    failed_name = revision_name(failed) if failed else "The new revision"
    if back and left == []:
        # The Cause of `Rolled back` when the rollback cannot be finished by its own states (the Choice after this).
        cause = (
            f"{failed_name} failed: {failure_message(failure)}\n"
            f"{where} is stable on {revision_name(previous)} ({desired} tasks; ECS completed the rollback, or the "
            f"service never left it), though Ferry could not follow it: {failure_message(rollback_failure)}"
        )
        return Explained(error="RolledBack", cause=fit_lines(cause, MAX_CAUSE, HISTORY), recovered=True)
    if back:
        what = "; ".join(left) if left else f"whether it is gone could not be read ({unreadable})"
        cause = (
            f"{failed_name} failed: {failure_message(failure)}\n"
            f"{where} is stable on {revision_name(previous)} ({desired} tasks), but the canary of {request.execution} "
            f"is not known to be removed: {what}. The execution-ended function and the reaper go on removing it; by "
            f"hand: aws ecs stop-task --cluster {cluster} --task <task>, and aws elbv2 deregister-targets for each "
            "target"
        )
        return Explained(error="CleanupIncomplete", cause=fit_lines(cause, MAX_CAUSE, HISTORY), cleanup_unfinished=True)
    cause = (
        f"ROLLBACK FAILED: a person must act on {where}.\n"
        f"{failed_name} failed ({failure_message(failure)}), and rolling back "
        f"to {revision_name(previous)} failed too: {failure_message(rollback_failure)}\n{now}\n"
        f"It should run {revision_name(previous)} with {desired} tasks: aws ecs update-service --cluster {cluster} "
        f"--service {service} --task-definition {revision_name(previous)} --desired-count {desired}"
    )
    return Explained(error="RollbackFailed", cause=fit_lines(cause, MAX_CAUSE, HISTORY), recovered=False)
