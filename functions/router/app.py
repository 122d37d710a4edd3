"""Start deploys for ECR pushes (EventBridge 'ECR Image Action')."""

from ferry import config, router, settings
from ferry.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    push = router.parse_push(event)
    if push is None:
        logger.info("event ignored: not a successful ECR push with a tag",
                    extra={"detailType": event.get("detail-type"), "eventId": event.get("id")})
        return {"started": [], "ignored": True}
    configs, broken = config.load_all(SETTINGS.config_bucket)
    for problem in broken:
        logger.warning("service config skipped", extra={"problem": problem})
    plans = router.plan_push(push, [c for c in configs if c.on_allowed_cluster(SETTINGS.allowed_clusters)])
    if not plans:
        logger.info("push deploys no service", extra={"repository": push.repository, "tag": push.tag})
        return {"started": [], "ignored": False}
    started = router.start(SETTINGS.state_machine_arn, plans)
    logger.info("deploys started", extra={"started": started})
    return {"started": started, "ignored": False}
