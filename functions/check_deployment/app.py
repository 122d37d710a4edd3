"""Wait for the service's ECS deployment to end: from the state (its wait) or from ECS's event."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import check_deployment

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    if check_deployment.from_ecs(event):  # ECS's Deployment State Change event: not a state
        return check_deployment.deployment_changed(SETTINGS.lock_table, event)
    request = check_deployment.read(event)
    bind(request.execution, request.service, request.where)
    result = check_deployment.run(request, SETTINGS.lock_table)
    state = result.to_state()
    logger.info(result.message, extra=state)
    return state
