"""Bake: watch the health gates' alarms for bakeSeconds (from the state), or fail it when one fires (from EventBridge)."""

from ferry import bake, settings
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    if isinstance(event, dict) and event.get("source") == "aws.cloudwatch":
        detail = event.get("detail") or {}
        failed = bake.alarm_changed(SETTINGS.lock_table, detail)
        logger.info("alarm state change handled" if failed else "no bake watches this alarm",
                    extra={"alarm": detail.get("alarmName"), "bakesFailed": failed})
        return {"bakesFailed": failed}
    token, execution = field(event, "token"), field(event, "execution")
    cluster, service = field(event, "cluster"), field(event, "service")
    bind(execution, f"{cluster}/{service}")
    alarms = [a for a in (event.get("alarms") or []) if isinstance(a, str)]
    watching = bake.start(table=SETTINGS.lock_table, token=token, alarms=alarms, context={
        "execution": execution, "service": f"{cluster}/{service}", "revision": event.get("taskDefinitionArn", "?"),
        "bakeSeconds": event.get("bakeSeconds")})
    logger.info("bake started", extra=watching)
    return watching
