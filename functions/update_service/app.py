"""Point the ECS service at the new revision."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import update_service

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(SETTINGS.artefacts_bucket)
def handler(event, context):
    request = update_service.Input.from_state(event, "Update the service's input")
    bind(request.execution, request.service, request.where)
    state = update_service.run(request, SETTINGS.artefacts_bucket, SETTINGS.lock_table).to_state()
    logger.info("service update started", extra=state)
    return state
