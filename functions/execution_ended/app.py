"""Step Functions' status change events of the deploy state machine: announce a start; clean up after an end.

What it does, and why an abort needs it, is ferry.lifecycle.execution_ended's docstring.
"""

from ferry.lifecycle import execution_ended
from ferry.runtime import causes, settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    return execution_ended.ended(event, SETTINGS)
