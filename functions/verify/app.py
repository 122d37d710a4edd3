"""Verify everything the planned revision refers to, before anything changes (ferry.steps.verify)."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import verify

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(SETTINGS.artefacts_bucket)
def handler(event, context):
    request = verify.Input.from_state(event, "Verify's input")
    bind(request.execution, request.service, request.where)
    state = verify.run(request, SETTINGS.artefacts_bucket).to_state()
    logger.info("verify finished", extra={"passed": state["passed"], "failed": state["failed"]})
    return state
