"""Roll the service back to its previous revision, and write what happened for the Fail state."""

from ferry.aws import canary_tasks
from ferry.aws.ecs import check_in_seconds
from ferry.steps import rollback
from ferry import config
from ferry.runtime import settings
from ferry.errors import InputInvalid
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    action, cluster, service = field(event, "action"), field(event, "cluster"), field(event, "ecsService")
    bind(event.get("execution"), event.get("service"), f"{cluster}/{service}")
    previous, desired = field(event, "previousTaskDefinitionArn"), int(field(event, "desiredCount", int))
    failed = event.get("failedTaskDefinitionArn")
    if event.get("requestAction") == "rollback":
        failed = None  # a rollback request's target is a known-good revision: never retire it
    if action == "start":
        try:
            # The canary must not keep serving; the failed revision is the one it runs (its family finds crashed ones).
            revision = event.get("failedTaskDefinitionArn")
            stopped = canary_tasks.remove_now(cluster, service, field(event, "execution"),
                                        task_definition_arn=revision if isinstance(revision, str) and revision else None)
        except Exception as exc:  # never let the canary keep the service from being rolled back
            logger.warning("canary removal failed; rolling back anyway", extra={"error": type(exc).__name__})
            stopped = -1
        started = rollback.start(cluster, service, previous, desired, failed)
        started["canaryTasksStopped"] = stopped
        timeout = int(event.get("timeoutSeconds") or 1800)
        started["progress"] = {"state": "IN_PROGRESS", "checkInSeconds": check_in_seconds(timeout)}
        logger.warning("rollback started", extra=started)
        return started
    if action == "finish":
        keep = config.load(SETTINGS.config_bucket, field(event, "service"), SETTINGS.environment).raw["rollback"]["keepFailedRevisions"]
        report = rollback.finish(table=SETTINGS.lock_table, cluster=cluster, service=service, previous=previous,
                                 desired=desired, failed=failed, failure=event.get("failure"), keep=keep,
                                 method=str(event.get("method") or "rolled back"))
        logger.warning("rolled back", extra={"retired": report["retired"]})
        return report
    if action == "explain":
        report = rollback.explain_failure(cluster=cluster, service=service, previous=previous, desired=desired,
                                          failed=failed, failure=event.get("failure"),
                                          rollback_failure=event.get("rollbackFailure"))
        logger.error("rollback failed: a person must act")
        return report
    raise InputInvalid(f"`action` must be start, finish or explain, got {action!r}")
