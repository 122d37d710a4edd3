"""Start deploys for ECR pushes ('ECR Image Action') and dropped release manifests (S3 'Object Created')."""

from ferry import config
from ferry.triggers import router
from ferry.runtime import settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


def _manifest(event, key):
    outcome = router.start_manifest(
        event, key, config_bucket=SETTINGS.config_bucket, state_machine_arn=SETTINGS.state_machine_arn,
        allowed_clusters=SETTINGS.allowed_clusters, environment=SETTINGS.environment)
    if outcome["refused"]:
        logger.warning("manifest refused: nothing deploys", extra={"manifest": key, "problems": outcome["refused"],
                                                                   "result": outcome["result"]})
    else:
        logger.info("deploys started", extra={"manifest": key, "started": outcome["started"], "result": outcome["result"]})
    return {"started": outcome["started"], "ignored": False, "refused": outcome["refused"]}


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    key = router.manifest_key(event, SETTINGS.config_bucket)
    if key is not None:
        return _manifest(event, key)
    push = router.parse_push(event)
    if push is None:
        logger.info("event ignored: not a successful ECR push with a tag, nor a manifest in the config bucket",
                    extra={"detailType": event.get("detail-type"), "eventId": event.get("id")})
        return {"started": [], "ignored": True}
    configs, broken = config.load_all(SETTINGS.config_bucket, SETTINGS.environment)
    for problem in broken:
        logger.warning("service config skipped", extra={"problem": problem})
    plans = router.plan_push(push, [c for c in configs if c.on_allowed_cluster(SETTINGS.allowed_clusters)])
    if not plans:
        logger.info("push deploys no service", extra={"repository": push.repository, "tag": push.tag})
        return {"started": [], "ignored": False}
    started = router.start(SETTINGS.state_machine_arn, plans)
    logger.info("deploys started", extra={"started": started})
    return {"started": started, "ignored": False}
