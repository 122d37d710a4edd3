"""Start, watch and remove the canary tasks of the new revision."""

from ferry.steps import canary
from ferry.runtime import settings
from ferry.errors import InputInvalid
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    action, execution = field(event, "action"), field(event, "execution")
    cluster, service = field(event, "cluster"), field(event, "ecsService")
    bind(execution, event.get("service"), f"{cluster}/{service}")
    settings_ = event.get("canary") if isinstance(event.get("canary"), dict) else {}
    if action == "start":
        started = canary.start(cluster, service, field(event, "taskDefinitionArn"), int(settings_.get("count", 1)), execution)
        logger.info("canary started", extra={"tasks": len(started["taskArns"])})
        return started
    if action == "check":
        started = field(event, "started", dict)
        progress = canary.check(
            cluster, service, started["taskArns"], event.get("progress") or {},
            revision=field(event, "taskDefinitionArn").rsplit("/", 1)[-1], started_at=float(started["startedAt"]),
            healthy_for=int(settings_.get("healthyForSeconds", 60)),
            unhealthy_threshold=int(settings_.get("unhealthyThreshold", 3)), timeout=int(field(event, "timeoutSeconds", int)))
        logger.info("canary observed", extra={"state": progress["state"]})
        return progress
    if action == "deregister":
        drained = canary.deregister(cluster, service, execution, **_recorded(event))
        logger.info("canary deregistered", extra=drained)
        return drained
    if action == "stop":
        return {"stopped": canary.stop(cluster, execution)}
    if action == "remove":
        return {"stopped": canary.remove_now(cluster, service, execution, **_recorded(event))}
    raise InputInvalid(f"`action` must be start, check, deregister, stop or remove, got {action!r}")


def _recorded(event: dict) -> dict:
    """What the state recorded of the canary, when the state passes it: the revision it runs (`taskDefinitionArn`,
    whose family finds the canary tasks that already stopped) and the tasks Start started (`started.taskArns`)."""
    arn = event.get("taskDefinitionArn")
    if arn is not None and not (isinstance(arn, str) and arn):
        raise InputInvalid(f"`taskDefinitionArn` must be the new revision's task definition ARN (a string), got a "
                           f"{type(arn).__name__}: pass $.register.taskDefinitionArn, or leave it out")
    started = event.get("started")
    arns = started.get("taskArns") if isinstance(started, dict) else None
    if arns is not None and not (isinstance(arns, list) and all(isinstance(a, str) and a for a in arns)):
        raise InputInvalid("`started.taskArns` must be a list of task ARNs (what Start the canary tasks returned): "
                           "pass $.canary, or leave it out")
    return {"task_definition_arn": arn, "task_arns": arns or []}
