"""Report whether the service's ECS deployment has completed."""

from ferry import deployment, settings
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    cluster, service = field(event, "cluster"), field(event, "service")
    bind(field(event, "execution"), f"{cluster}/{service}")
    return deployment.check(
        cluster, service, field(event, "taskDefinitionArn"),
        float(field(event, "startedAt", (int, float))), int(field(event, "timeoutSeconds", int)),
    )
