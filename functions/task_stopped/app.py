"""ECS `Task State Change` (STOPPED) of a Ferry task: complete the state waiting for it."""

from ferry.lifecycle import task_stopped
from ferry.runtime import causes, settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    return task_stopped.stopped(event, SETTINGS.lock_table)
