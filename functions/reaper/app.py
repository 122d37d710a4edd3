"""EventBridge Scheduler's pass of the reaper: remove what no running execution owns.

What a pass looks at, and why, is ferry.lifecycle.reaper's docstring.
"""

from ferry.lifecycle import reaper
from ferry.runtime import causes, settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    return reaper.scheduled(event, SETTINGS)
