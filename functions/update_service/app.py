"""Point the ECS service at the new revision."""

from ferry.steps import update_service
from ferry.runtime import settings
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution, cluster, service = field(event, "execution"), field(event, "cluster"), field(event, "ecsService")
    bind(execution, event.get("service"), f"{cluster}/{service}")
    native = event.get("strategy") == "native"
    started = update_service.update_service(cluster, service, field(event, "taskDefinitionArn"), execution,
                                    SETTINGS.artefacts_bucket, native=native)
    state = started.to_state(int(field(event, "timeoutSeconds", int)), native=native)
    logger.info("service update started", extra=state)
    return state
