"""Render and register the new task definition revision."""

from ferry import config, render, settings
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution, name = field(event, "execution"), field(event, "service")
    bind(execution, name)
    cfg = config.load(SETTINGS.config_bucket, name)
    config.check_cluster(cfg, SETTINGS.allowed_clusters)
    rendered = render.render(cfg, field(event, "images", dict), execution, SETTINGS.artefacts_bucket)
    logger.info("task definition rendered", extra={"revision": rendered.task_definition_arn, "reused": rendered.reused})
    return {
        "cluster": cfg.cluster,
        "service": cfg.service,
        "strategy": cfg.strategy,
        "timeouts": {"deployment": cfg.deployment_timeout},
        **rendered.to_state(),
    }
