"""Start one migration task of the new revision and leave the state waiting for it to stop."""

from ferry.steps import migrate
from ferry.runtime import settings
from ferry.aws import waiters
from ferry.errors import FerryError
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    token, execution = field(event, "token"), field(event, "execution")
    cluster, service = field(event, "cluster"), field(event, "ecsService")
    bind(execution, event.get("service"), f"{cluster}/{service}")
    migration = migrate.Migration.from_state(field(event, "migration", dict))
    try:
        started = migrate.start(
            table=SETTINGS.lock_table, token=token, execution=execution, cluster=cluster, service=service,
            task_definition_arn=field(event, "taskDefinitionArn"), migration=migration,
            previous_revision=event.get("previousRevision"),
        )
    except FerryError as exc:  # fails the waiting state with the error's own name (MigrationNotStarted, ...)
        logger.warning("migration could not start", extra={"migration": migration.name, "error": type(exc).__name__})
        waiters.complete(token, error=type(exc).__name__, cause=str(exc))
        return {"error": type(exc).__name__}
    logger.info("migration task started", extra={"migration": migration.name, **started})
    return started
