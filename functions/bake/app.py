"""Bake: watch the health gates' alarms for bakeSeconds (from the state), or fail it when one fires (from EventBridge)."""

from ferry.steps import bake
from ferry.runtime import settings
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    if isinstance(event, dict) and event.get("source") == "aws.cloudwatch":
        detail = event.get("detail") or {}
        failed = bake.alarm_changed(SETTINGS.lock_table, detail)
        logger.info("alarm state change handled" if failed else "no bake watches this alarm",
                    extra={"alarm": detail.get("alarmName"), "bakesFailed": failed})
        return {"bakesFailed": failed}
    execution = field(event, "execution")
    cluster, service = field(event, "cluster"), field(event, "ecsService")
    bind(execution, event.get("service"), f"{cluster}/{service}")
    alarms = [a for a in (event.get("alarms") or []) if isinstance(a, str)]
    context = {"execution": execution, "service": f"{cluster}/{service}", "revision": event.get("taskDefinitionArn", "?"),
               "bakeSeconds": event.get("bakeSeconds")}
    if event.get("action") == "finish":
        passed = bake.finish(table=SETTINGS.lock_table, alarms=alarms, context=context)
        logger.info("bake passed", extra=passed)
        return passed
    watching = bake.start(table=SETTINGS.lock_table, token=field(event, "token"), alarms=alarms, context=context)
    logger.info("bake started", extra=watching)
    return watching
