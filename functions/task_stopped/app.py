"""ECS `Task State Change` (STOPPED) of a Ferry task: complete the state waiting for it."""

from ferry.lifecycle import task_stopped
from ferry.runtime import settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return task_stopped.stopped(event, SETTINGS.lock_table)
