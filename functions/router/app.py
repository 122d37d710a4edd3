"""Start deploys for ECR pushes ('ECR Image Action') and dropped release manifests (S3 'Object Created')."""

from ferry.runtime import causes, settings
from ferry.runtime.observability import logger
from ferry.triggers import router

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
@causes.guard(None)  # its role may not write to the artefacts bucket: a cut message's whole is in its log
def handler(event, context):
    return router.route(event, SETTINGS)
