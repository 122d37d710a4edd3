"""Start one migration task of the new revision and leave the state waiting for it to stop."""

from ferry.runtime import settings
from ferry.runtime.observability import bind, logger
from ferry.steps import migrate

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    request = migrate.Input.from_state(event, "Run the migration task's input")
    bind(request.execution, request.service, request.where)
    started = migrate.run(request, SETTINGS.lock_table)
    state = started.to_state()
    logger.log(started.level, started.message, extra=state)
    return state
