"""Take or release a service's deploy lock, and find what a rollback request goes back to.

The lock is keyed by the ECS service (cluster/service) the registry entry
names, so two registry entries for one service cannot deploy it at once. The same
table keeps each service's deploy record (the revision Ferry deployed last and
the one it replaced), which is what `{"action": "rollback"}` goes back to.
"""

from datetime import datetime

from ferry.runtime import clock, settings
from ferry import config
from ferry.steps import lock
from ferry.lifecycle import summary
from ferry.aws import waiters
from ferry.aws.ecs import revision_name
from ferry.errors import InputInvalid, ServiceLocked
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()
# How long a deploy waits for another one of the same service before it gives up (ServiceLocked).
MAX_LOCK_WAIT_SECONDS = 3600


def requested_at(request: dict, started_at: str | None) -> float | None:
    """When the deploy was asked for: the trigger's time, else the execution's start (a manual deploy).

    None (no superseding) only for a caller outside the state machine that gives neither.
    """
    trigger = request.get("trigger") if isinstance(request.get("trigger"), dict) else {}
    if isinstance(trigger.get("requestedAt"), (int, float)):
        return float(trigger["requestedAt"])
    if started_at:
        return datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp()
    return None


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    name, owner, action = field(event, "service"), field(event, "owner"), field(event, "action")
    bind(owner.rsplit(":", 1)[-1], name)
    request = event.get("request") if isinstance(event.get("request"), dict) else {}
    if action == "acquire":
        return _acquire(name, owner, request, event.get("startedAt"), event.get("token"))
    if action == "release":
        taken = request.get("lock") if isinstance(request.get("lock"), dict) else {}
        # The execution's output on success: a summary for people, not the whole state.
        done = {"summary": summary.deployed(request, event.get("startedAt"))} if event.get("deployed") else {}
        if not taken.get("key"):
            logger.info("no lock to release: it was never taken")
            return {"service": name, "released": False, **done}
        if event.get("deployed") and isinstance(taken.get("requestedAt"), (int, float)):
            # Recorded before the lock goes: a newer request must see this deploy once it can run.
            revision = (request.get("register") or {}).get("taskDefinitionArn")
            render = request.get("render") or {}
            previous = None if request.get("action") == "rollback" else render.get("previousTaskDefinitionArn")
            lock.record_deployed(SETTINGS.lock_table, taken["key"], owner, float(taken["requestedAt"]), revision,
                                 previous, render.get("desiredCount"))
        released = lock.release(SETTINGS.lock_table, taken["key"], owner)
        logger.info("lock released" if released else "lock was not held by this execution", extra={"key": taken["key"]})
        return {"service": name, "released": released, **done}
    if action == "rollback-target":
        return _rollback_target(name)
    raise InputInvalid(f"`action` must be acquire, release or rollback-target, got {action!r}")


def _acquire(name: str, owner: str, request: dict, started_at: str | None, token: str | None) -> dict:
    """Take the lock; with a task token (the state machine), answer through it, or leave it waiting.

    A deploy that finds the service locked keeps its token in the lock table and returns: the holder's
    release wakes it (LockReleased, which its state retries). After MAX_LOCK_WAIT_SECONDS it gives up.
    """
    cfg = config.load(SETTINGS.config_bucket, name, SETTINGS.environment)
    config.check_cluster(cfg, SETTINGS.allowed_clusters)
    at = requested_at(request, started_at)
    try:
        held = {**lock.acquire(SETTINGS.lock_table, cfg.key, owner, requested_at=at), "key": cfg.key, "requestedAt": at}
    except ServiceLocked as exc:
        if not token:
            raise
        began = requested_at({}, started_at) or clock.now()
        if clock.now() - began > MAX_LOCK_WAIT_SECONDS:
            raise ServiceLocked(f"{exc}; gave up after waiting {MAX_LOCK_WAIT_SECONDS // 60} minutes. "
                                "Nothing was changed: deploy again once it has finished") from exc
        lock.wait(SETTINGS.lock_table, cfg.key, owner, token)
        if lock.holder_of(SETTINGS.lock_table, cfg.key) is None:  # released before the token was stored
            waiters.complete(token, error="LockReleased", cause=f"the deploy lock of {cfg.key} is free: take it now")
        logger.info("waiting for the deploy lock", extra={"key": cfg.key, "reason": str(exc)})
        return {"waiting": True, "key": cfg.key}
    logger.info("lock acquired", extra={"key": cfg.key, "expiresAt": held["expiresAt"]})
    if token:
        waiters.complete(token, output=held)
    return held


def _rollback_target(name: str) -> dict:
    """A rollback request: the revision Ferry's last deploy of the service replaced, shaped like Render's output."""
    cfg = config.load(SETTINGS.config_bucket, name, SETTINGS.environment)
    config.check_cluster(cfg, SETTINGS.allowed_clusters)
    target, current, desired = lock.rollback_target(SETTINGS.lock_table, cfg.key)
    summary = f"roll back {cfg.key} from {revision_name(current)} to {revision_name(target)}"
    logger.info("rollback target found", extra={"summary": summary})
    return {"requestAction": "rollback", "cluster": cfg.cluster, "ecsService": cfg.service,
            "timeouts": cfg.timeouts, "targetGroups": [],
            # The way back is a plain update (never a canary); a native service keeps its own deployment settings.
            "strategy": "native" if cfg.strategy == "native" else "rolling",
            "rollbackTo": target, "previousTaskDefinitionArn": current, "previousRevision": revision_name(current),
            "desiredCount": desired,
            "summary": summary}
