"""Start, watch and remove the canary tasks of the new revision."""

from ferry.runtime import settings
from ferry.runtime.observability import bind, logger
from ferry.steps import canary

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    request = canary.read(event)
    bind(request.execution, request.service, request.where)
    result = canary.run(request)
    state = result.to_state()
    logger.info(result.message, extra=state)
    return state
