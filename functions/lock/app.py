"""Take or release a service's deploy lock."""

from ferry import lock, settings
from ferry.errors import InputInvalid
from ferry.observability import bind, field, logger

SETTINGS = settings.load()


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    service, owner, action = field(event, "service"), field(event, "owner"), field(event, "action")
    bind(owner.rsplit(":", 1)[-1], service)
    if action == "acquire":
        held = lock.acquire(SETTINGS.lock_table, service, owner)
        logger.info("lock acquired", extra={"expiresAt": held["expiresAt"]})
        return held
    if action == "release":
        released = lock.release(SETTINGS.lock_table, service, owner)
        logger.info("lock released" if released else "lock was not held by this execution")
        return {"service": service, "released": released}
    raise InputInvalid(f"`action` must be acquire or release, got {action!r}")
