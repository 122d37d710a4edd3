"""Wait for the service's ECS deployment to end: from the state (watch or check) or from ECS's event."""

from ferry.steps import check_deployment
from ferry.runtime import settings
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    if isinstance(event, dict) and event.get("source") == "aws.ecs":
        resources = event.get("resources") or []
        detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
        settled = any(check_deployment.on_event(SETTINGS.lock_table, arn) for arn in resources if isinstance(arn, str))
        logger.info("deployment state change handled" if settled else "no state waits for this deployment's end",
                    extra={"resources": resources, "eventName": detail.get("eventName")})
        return {"settled": settled}
    bind(field(event, "execution"), event.get("service"), f"{field(event, 'cluster')}/{field(event, 'ecsService')}")
    watch = check_deployment.Watch.from_state({
        "cluster": event["cluster"], "service": event["ecsService"], "taskDefinitionArn": field(event, "taskDefinitionArn"),
        "startedAt": float(field(event, "startedAt", (int, float))), "timeoutSeconds": int(field(event, "timeoutSeconds", int)),
        "phase": event.get("phase"), "native": event.get("strategy") == "native", "targetGroups": event.get("targetGroups"),
    })
    if event.get("token"):
        waiting = check_deployment.watch(SETTINGS.lock_table, field(event, "token"), watch)
        logger.info("waiting for ECS to report the end of the deployment" if waiting["waiting"]
                    else "the deployment had already ended", extra=waiting)
        return waiting
    return check_deployment.check(watch)
