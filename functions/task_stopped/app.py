"""ECS `Task State Change` (STOPPED) of a Ferry task: complete the state waiting for it."""

from ferry.steps import migrate
from ferry.runtime import settings
from ferry.runtime.observability import logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or detail.get("lastStatus") != "STOPPED" or not detail.get("taskArn"):
        logger.info("event ignored: not a stopped ECS task")
        return {"completed": False}
    completed = migrate.finish(SETTINGS.lock_table, detail)
    logger.info("stopped task handled" if completed else "no state waits for this task",
                extra={"taskArn": detail["taskArn"], "stopCode": detail.get("stopCode")})
    return {"completed": completed}
