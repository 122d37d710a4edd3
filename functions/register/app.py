"""Register the revision Render planned and Verify checked, once per execution."""

from ferry.steps import register
from ferry.runtime import settings
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution = field(event, "execution")
    bind(execution, field(event, "service"))
    registered = register.register_planned(execution, SETTINGS.artefacts_bucket)
    logger.info("task definition registered", extra=registered.to_state())
    return registered.to_state()
