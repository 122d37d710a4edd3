"""A deploy execution ended (any status): remove its canary, stop its migrations, release its lock, record its result.

Catch blocks do not run when an operator stops an execution or it times out,
so the lock of an ABORTED or TIMED_OUT execution is released here, from
Step Functions' own status change event. For a deploy started by a manifest,
the end is written into the manifest's result document.
"""

import json

from ferry import canary, config, lock, manifest, migrate, settings
from ferry.errors import FerryError
from ferry.observability import bind, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or not detail.get("executionArn"):
        logger.info("event ignored: not an execution status change")
        return {"handled": False}
    arn, status = detail["executionArn"], detail.get("status")
    try:
        request = json.loads(detail.get("input") or "{}")
    except ValueError:
        request = {}
    name = request.get("service") if isinstance(request, dict) else None
    bind(detail.get("name"), name if isinstance(name, str) else None)
    released, canaries, migrations = False, 0, 0
    if isinstance(name, str) and name:
        try:
            cfg = config.load(SETTINGS.config_bucket, name, SETTINGS.environment)
        except FerryError as exc:  # an unregistered service never took a lock or started a canary
            logger.info("no lock to release", extra={"reason": type(exc).__name__})
        else:
            # Every path of the state machine removes its canary; an aborted or timed-out one cannot.
            try:
                canaries = canary.remove_now(cfg.cluster, cfg.service, detail.get("name", ""))
                migrations = migrate.stop_all(cfg.cluster, detail.get("name", ""), [m.name for m in cfg.migrations])
            except Exception as exc:  # the lock and the result record must not wait on the tasks
                logger.warning("task cleanup failed", extra={"error": type(exc).__name__})
            released = lock.release(SETTINGS.lock_table, cfg.key, arn)
    trigger = request.get("trigger") if isinstance(request, dict) and isinstance(request.get("trigger"), dict) else {}
    recorded = False
    if trigger.get("type") == "manifest" and manifest.is_manifest_key(str(trigger.get("key", ""))):
        recorded = manifest.record_end(SETTINGS.config_bucket, manifest.result_key(trigger["key"]), detail.get("name", ""),
                                       status, detail.get("error"), detail.get("cause"))
    logger.info("execution ended", extra={"status": status, "lockReleased": released, "canaryTasksStopped": canaries,
                                          "migrationTasksStopped": migrations, "resultRecorded": recorded})
    return {"handled": True, "status": status, "lockReleased": released, "canaryTasksStopped": canaries,
            "migrationTasksStopped": migrations, "resultRecorded": recorded}
