"""Bake: watch the health gates' alarms for bakeSeconds (from the state), or fail it when one fires (from EventBridge)."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import bake

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    if bake.from_cloudwatch(event):  # CloudWatch's Alarm State Change event: not a state
        return bake.alarm_event(SETTINGS.lock_table, event)
    request = bake.read(event)
    bind(request.execution, request.service, request.where)
    result = bake.run(request, SETTINGS.lock_table)
    state = result.to_state()
    logger.info(result.message, extra=state)
    return state
