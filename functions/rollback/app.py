"""Roll the service back to its previous revision, and write what happened for the Fail state."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import rollback

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    request = rollback.read(event)
    bind(request.execution, request.service, request.where)
    result = rollback.run(request, SETTINGS)
    state = result.to_state()
    logger.log(result.level, result.message, extra=state)
    return state
