"""Render the new task definition and diff it against what runs; registers nothing."""

from ferry import config
from ferry.steps import render
from ferry.runtime import settings
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution, name = field(event, "execution"), field(event, "service")
    bind(execution, name)
    cfg = config.load(SETTINGS.config_bucket, name, SETTINGS.environment)
    config.check_cluster(cfg, SETTINGS.allowed_clusters)
    bind(execution, name, cfg.key)
    request = event.get("request") or {}
    planned = render.plan(
        cfg, field(event, "images", dict), execution=execution, environment=SETTINGS.environment,
        values=render.request_values(request), commit=render.request_commit(request),
    )
    state = render.write_plan(planned, execution, SETTINGS.artefacts_bucket)
    logger.info("task definition rendered", extra={"summary": state["summary"], "source": planned.source})
    return {
        "cluster": cfg.cluster,
        "ecsService": cfg.service,
        "requestAction": "deploy",
        "strategy": cfg.strategy,
        "canary": cfg.raw["strategy"].get("canary") or {},
        "timeouts": cfg.timeouts,
        "alarms": list(cfg.alarms),
        "bakeSeconds": cfg.raw["healthGates"]["bakeSeconds"],
        "targetGroups": list(cfg.target_groups),
        "readSecretValues": cfg.read_secret_values,
        "migrations": render.migration_steps(cfg),
        # A manifest can skip them for one release ("migrate": false).
        "hasMigrations": bool(cfg.migrations) and request.get("migrate", True) is not False,
        **state,
    }
