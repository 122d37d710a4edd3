"""Start one migration task of the new revision and leave the state waiting for it to stop."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import migrate

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    request = migrate.Input.from_state(event, "Run the migration task's input")
    bind(request.execution, request.service, request.where)
    started = migrate.run(request, SETTINGS.lock_table)
    state = started.to_state()
    logger.log(started.level, started.message, extra=state)
    return state
