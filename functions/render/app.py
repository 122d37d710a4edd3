"""Render the new task definition and diff it against what runs; registers nothing (ferry.steps.render)."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import bind, logger
from ferry.steps import render

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(SETTINGS.artefacts_bucket)
def handler(event, context):
    request = render.Input.from_state(event, "Render's input")
    bind(request.execution, request.service)
    rendered = render.run(request, SETTINGS)
    bind(request.execution, request.service, rendered.where)
    logger.info("task definition rendered", extra={"summary": rendered.summary})
    return rendered.to_state()
