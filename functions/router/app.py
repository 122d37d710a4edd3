"""Start deploys for ECR pushes ('ECR Image Action') and dropped release manifests (S3 'Object Created')."""

from ferry.runtime import settings
from ferry.runtime.observability import logger
from ferry.triggers import router

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return router.route(event, SETTINGS)
