"""ECS's `Task State Change` (STOPPED) of a task Ferry started: complete the state waiting for it.

The rule delivers stopped tasks whose startedBy begins with `ferry-` (canaries and migrations). A migration's
state waits on a task token stored under the task's ARN (ferry.aws.waiters); this completes it with the
migration's outcome (ferry.steps.migrate.finish). Nothing waits for a canary: its state looks for itself.
"""

from __future__ import annotations

from typing import Any

from ferry.runtime.observability import logger
from ferry.steps import migrate


def stopped(event: Any, table: str) -> dict[str, bool]:
    """The task-stopped function: {"completed": whether a waiting state was completed}."""
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or detail.get("lastStatus") != "STOPPED" or not detail.get("taskArn"):
        logger.info("event ignored: not a stopped ECS task")
        return {"completed": False}
    completed = migrate.finish(table, detail)
    logger.info(
        "stopped task handled" if completed else "no state waits for this task",
        extra={"taskArn": detail["taskArn"], "stopCode": detail.get("stopCode")},
    )
    return {"completed": completed}
