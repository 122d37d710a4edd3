"""Is the service's ECS deployment complete, still going, or failed?

Complete means what ecspresso checks since v2.6 and users asked for: the
deployment finished (rolloutState COMPLETED, running = desired) *and* the
PRIMARY deployment runs the revision Ferry deployed. A circuit-breaker
rollback by ECS is therefore a failure, never a silent success.
"""

from __future__ import annotations

from typing import Any

from . import clock
from .ecs import describe_service, primary_deployment, revision_name
from .errors import DeploymentFailed, PhaseTimedOut


def check(cluster: str, service: str, task_definition_arn: str, started_at: float, timeout_seconds: int) -> dict[str, Any]:
    current = describe_service(cluster, service)
    primary = primary_deployment(current)
    ours = revision_name(task_definition_arn)
    where = f"service {cluster}/{service}"
    if primary["taskDefinition"] != task_definition_arn:
        raise DeploymentFailed(
            f"{where}: ECS replaced the deployment of {ours}; the PRIMARY deployment now runs "
            f"{revision_name(primary['taskDefinition'])} ({primary.get('rolloutStateReason', 'no reason given')})"
        )
    state = primary.get("rolloutState", "COMPLETED")
    progress = {"running": primary.get("runningCount", 0), "desired": primary.get("desiredCount", 0),
                "failedTasks": primary.get("failedTasks", 0)}
    if state == "FAILED":
        raise DeploymentFailed(
            f"{where}: the ECS deployment of {ours} FAILED after {progress['failedTasks']} failed tasks: "
            f"{primary.get('rolloutStateReason', 'no reason given')}"
        )
    if state == "COMPLETED" and progress["running"] >= progress["desired"]:
        return {"state": "COMPLETED", **progress}
    elapsed = clock.now() - started_at
    if elapsed > timeout_seconds:
        raise PhaseTimedOut(
            f"{where}: the deployment of {ours} did not complete within {timeout_seconds} s "
            f"({progress['running']}/{progress['desired']} tasks running, rolloutState {state}); "
            "raise timeouts.deployment in the service config if the service is just slow"
        )
    return {"state": "IN_PROGRESS", **progress}
