"""Update the service to the new revision, remembering what it ran before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.aws import artefacts
from ferry import aws
from ferry.contract import EcsStepInput, Model, Progress, key
from ferry.lifecycle import journal
from ferry.aws.ecs import check_in_seconds, created_at, describe_service, primary_deployment, revision_name


@dataclass(frozen=True, kw_only=True)
class Input(EcsStepInput):
    """The input of "Update the service to the new revision"."""

    task_definition_arn: str = key("taskDefinitionArn", doc="the new revision, $.register.taskDefinitionArn")
    strategy: str = key("strategy", doc="$.render.strategy: native leaves the service's deployment settings alone")
    timeout_seconds: int = key("timeoutSeconds", kinds=(int,), doc="$.render.timeouts.deployment")

    @property
    def native(self) -> bool:
        return self.strategy == "native"


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """The deployment started ($.deployment): what "Wait for ECS to finish the deployment" waits for."""

    deployment_id: str = key("deploymentId", doc="ECS's deployment id")
    started_at: float = key(
        "startedAt", kinds=(int, float), doc="when ECS created it: the phase timeout counts from it"
    )
    revision: str = key("revision", doc="family:revision the service now runs towards")
    already_started: bool = key("alreadyStarted", kinds=(bool,), doc="a retried step found its own deployment")
    progress: Progress = key("progress", nested=Progress, doc="when the wait looks for itself")


@dataclass(frozen=True)
class Started:
    deployment_id: str
    started_at: float
    task_definition_arn: str
    already_started: bool

    def to_output(self, timeout_seconds: int, native: bool = False) -> Output:
        """The state's view; `progress` tells the waiting state when to look for itself if no event comes."""
        return Output(
            deployment_id=self.deployment_id,
            started_at=self.started_at,
            revision=revision_name(self.task_definition_arn),
            already_started=self.already_started,
            progress=Progress(state="IN_PROGRESS", check_in_seconds=check_in_seconds(timeout_seconds, native)),
        )


# action -> (input, output): what "Update the service to the new revision" passes and stores at $.deployment.
CONTRACTS = {None: (Input, Output)}


def run(request: Input, artefacts_bucket: str, table: str | None = None) -> Output:
    """The step: start the deployment (or find the one a first attempt started) and tell the wait about it. With
    the lock `table`, what the service ran before is journalled first (ferry.lifecycle.journal)."""
    started = update_service(
        request.cluster,
        request.ecs_service,
        request.task_definition_arn,
        request.execution,
        artefacts_bucket,
        native=request.native,
        table=table,
    )
    return started.to_output(request.timeout_seconds, native=request.native)


def update_service(
    cluster: str,
    service: str,
    task_definition_arn: str,
    execution: str,
    artefacts_bucket: str,
    native: bool = False,
    table: str | None = None,
) -> Started:
    """Start the ECS deployment; a retry after success returns the same deployment.

    `native` leaves the service's deployment configuration (its blue/green,
    linear or canary strategy, alarms and hooks) exactly as its owners set it.
    """
    current = describe_service(cluster, service)
    primary = primary_deployment(current)
    if primary["taskDefinition"] == task_definition_arn:
        return Started(primary["id"], created_at(primary), task_definition_arn, True)

    before = {
        "taskDefinition": current["taskDefinition"],
        "desiredCount": current["desiredCount"],
        "deploymentConfiguration": current.get("deploymentConfiguration", {}),
    }
    if table:
        # Journalled before the change: refused (ExecutionEnded) once the execution has ended, so a stopped
        # execution's step never changes the service after its clean-up ran.
        journal.record(table, execution, previous=before)
    artefacts.put_json(artefacts_bucket, execution, "service-before.json", before)
    params: dict[str, Any] = {"cluster": cluster, "service": service, "taskDefinition": task_definition_arn}
    if not native:
        config = dict(current.get("deploymentConfiguration") or {})
        # ECS stops a deployment whose tasks keep failing, and puts the previous
        # revision back; Ferry reports that as a failure (DeploymentFailed).
        config["deploymentCircuitBreaker"] = {"enable": True, "rollback": True}
        params["deploymentConfiguration"] = config
    updated = aws.client("ecs").update_service(**params)["service"]
    new = primary_deployment(updated)
    return Started(new["id"], created_at(new), task_definition_arn, False)
