"""Register the revision Render planned and Verify checked, once per execution (ferry.steps.register)."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import register

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(SETTINGS.artefacts_bucket)
def handler(event, context):
    request = register.Input.from_state(event, "Register's input")
    bind(request.execution, request.service)
    state = register.run(request, SETTINGS.artefacts_bucket).to_state()
    logger.info("task definition registered", extra=state)
    return state
