"""Start, watch and remove the canary tasks of the new revision."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import canary

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    request = canary.read(event)
    bind(request.execution, request.service, request.where)
    result = canary.run(request, SETTINGS.lock_table)
    state = result.to_state()
    logger.info(result.message, extra=state)
    return state
