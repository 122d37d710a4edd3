"""Point the ECS service at the new revision."""

from ferry import deploy, settings
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution, cluster, service = field(event, "execution"), field(event, "cluster"), field(event, "service")
    bind(execution, f"{cluster}/{service}")
    started = deploy.update_service(cluster, service, field(event, "taskDefinitionArn"), execution, SETTINGS.artefacts_bucket)
    logger.info("service update started", extra=started.to_state())
    return started.to_state()
