"""Take or release a service's deploy lock, and find what a rollback request goes back to (ferry.steps.lock)."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import lock

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    request = lock.read(event)
    bind(request.execution, request.service, request.where)
    result = lock.run(request, SETTINGS)
    state = result.to_state()
    logger.info(result.message, extra=state)
    return state
