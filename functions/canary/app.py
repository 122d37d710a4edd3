"""Start, watch and remove the canary tasks of the new revision."""

from ferry import canary, settings
from ferry.errors import InputInvalid
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    action, execution = field(event, "action"), field(event, "execution")
    cluster, service = field(event, "cluster"), field(event, "service")
    bind(execution, f"{cluster}/{service}")
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
        drained = canary.deregister(cluster, service, execution)
        logger.info("canary deregistered", extra=drained)
        return drained
    if action == "stop":
        return {"stopped": canary.stop(cluster, execution)}
    if action == "remove":
        return {"stopped": canary.remove_now(cluster, service, execution)}
    raise InputInvalid(f"`action` must be start, check, deregister, stop or remove, got {action!r}")
