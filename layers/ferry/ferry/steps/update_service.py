"""Update the service to the new revision, remembering what it ran before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.aws import artefacts
from ferry import aws
from ferry.aws.ecs import check_in_seconds, created_at, describe_service, primary_deployment, revision_name


@dataclass(frozen=True)
class Started:
    deployment_id: str
    started_at: float
    task_definition_arn: str
    already_started: bool

    def to_state(self, timeout_seconds: int, native: bool = False) -> dict[str, Any]:
        """The state's view; `progress` tells the waiting state when to look for itself if no event comes."""
        return {"deploymentId": self.deployment_id, "startedAt": self.started_at,
                "revision": revision_name(self.task_definition_arn), "alreadyStarted": self.already_started,
                "progress": {"state": "IN_PROGRESS", "checkInSeconds": check_in_seconds(timeout_seconds, native)}}


def update_service(cluster: str, service: str, task_definition_arn: str, execution: str, artefacts_bucket: str,
                   native: bool = False) -> Started:
    """Start the ECS deployment; a retry after success returns the same deployment.

    `native` leaves the service's deployment configuration (its blue/green,
    linear or canary strategy, alarms and hooks) exactly as its owners set it.
    """
    current = describe_service(cluster, service)
    primary = primary_deployment(current)
    if primary["taskDefinition"] == task_definition_arn:
        return Started(primary["id"], created_at(primary), task_definition_arn, True)

    artefacts.put_json(artefacts_bucket, execution, "service-before.json", {
        "taskDefinition": current["taskDefinition"],
        "desiredCount": current["desiredCount"],
        "deploymentConfiguration": current.get("deploymentConfiguration", {}),
    })
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
