"""A deploy execution started or ended: announce it; once it ended, clean up after it first.

Step Functions' own status change events arrive here. RUNNING is announced
(Ferry's "Ferry Deploy Started" event, and the service's SNS topic) and
nothing else is done. Any end (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) first
marks the execution's journal ended, then removes its canary, stops its
migrations and releases its lock, as the journal names them
(ferry.lifecycle.cleanup): Catch blocks do not run when an operator stops an
execution or it times out, so this is what frees an ABORTED or TIMED_OUT
execution's lock. The config is read only for the announcement: it may have
been edited or deleted since the deploy began. What cannot be removed yet is
left in the journal, and the reaper removes it. For a deploy
started by a manifest, the end is written into the manifest's result document.
Then the end is announced ("Ferry Deploy Ended") and its metrics are written.
A failed announcement or metric is logged and never raised: it must not make
EventBridge redeliver an event whose clean-up is done.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from ferry import config
from ferry import states as S
from ferry.errors import FerryError
from ferry.lifecycle import cleanup, journal, metrics, notify
from ferry.runtime.observability import bind, logger
from ferry.runtime.settings import Settings
from ferry.steps import lock
from ferry.triggers import manifest


def _report(detail: dict, cfg: Any, history: tuple = (), *, settings: Settings) -> dict:
    """Announce the start or end and, for an end, write its metrics. Never raises: see the module docstring."""
    running = detail.get("status") == "RUNNING"
    sent = {"event": False, "sns": None}
    try:
        execution = notify.Execution.from_event(detail, history)
    except Exception as exc:
        logger.warning("deploy not announced", extra={"error": type(exc).__name__})
        return sent
    try:
        sent = notify.announce(
            execution, environment=settings.environment, artefacts_bucket=settings.artefacts_bucket, config=cfg
        )
        logger.info("deploy announced", extra=sent)
    except Exception as exc:  # a notification never blocks the rest
        logger.warning("deploy not announced", extra={"error": type(exc).__name__})
    if not running:
        try:
            metrics.record(execution, environment=settings.environment)
        except Exception as exc:  # nor do metrics
            logger.warning("deploy metrics not written", extra={"error": type(exc).__name__})
    return sent


def _canary_recorded(history: tuple) -> dict:
    """The revision the execution registered and the canary tasks it started, as its history recorded them: the
    revision's family finds canary tasks that already stopped (their addresses must leave the target groups too)."""
    register, started = notify.recorded(history, "register"), notify.recorded(history, "canary")
    arn = register.get("taskDefinitionArn") if isinstance(register, dict) else None
    arns = started.get("taskArns") if isinstance(started, dict) else None
    return {
        "task_definition_arn": arn if isinstance(arn, str) and arn else None,
        "task_arns": [a for a in arns if isinstance(a, str) and a] if isinstance(arns, list) else [],
    }


# The release states that record a deploy first (`deployed: true`): an execution that entered one and still
# failed is deployed, and only its record and lock may be stuck.
DEPLOYED_RELEASES = (S.RELEASE_LOCK, S.RELEASE_LOCK_DEPLOYED_CLEANUP_FAILED)


def _record_a_stuck_deploy(table: str, detail: dict, history: tuple) -> bool:
    """After a deploy whose release failed for good (`Deployed, but the lock was not released`), write its record
    from the input of the release state it entered, so that a later rollback request goes back to what this
    deploy replaced, not to what the one before it did. Raises when the table still fails (Lambda retries the
    event). True when a record was written (again: writing it twice changes nothing)."""
    if detail.get("status") == "SUCCEEDED":
        return False
    for event in reversed(history):
        entered = event.get("stateEnteredEventDetails") or {}
        if entered.get("name") in DEPLOYED_RELEASES:
            try:
                state = json.loads(entered.get("input") or "null")
            except ValueError:
                return False
            start = detail.get("startDate")
            started = (
                datetime.fromtimestamp(start / 1000, tz=timezone.utc).isoformat()
                if isinstance(start, (int, float))
                else None
            )
            return isinstance(state, dict) and lock.record_state(table, detail["executionArn"], state, started)
    return False


def ended(event: Any, settings: Settings) -> dict[str, Any]:
    """The execution-ended function: announce a start; clean up after an end, record it and announce it."""
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
    cfg = None
    if isinstance(name, str) and name:
        # Only for the announcement (the service's SNS topic): the clean-up reads the journal, never the config.
        try:
            cfg = config.load(settings.config_bucket, name, settings.environment)
        except FerryError as exc:
            logger.info("no config: no SNS topic", extra={"reason": type(exc).__name__})
        except Exception as exc:
            logger.warning("config not read", extra={"error": type(exc).__name__})
    if status == "RUNNING":
        return {"handled": True, "status": status, "notified": _report(detail, cfg, settings=settings)}

    history = notify.history(arn)  # empty (and logged) when it cannot be read
    # Marked ended first: from now on no step of this execution starts anything (ferry.lifecycle.journal). Then
    # everything its journal names is removed; what cannot be yet stays in the journal for the reaper.
    record = journal.end(settings.lock_table, arn, str(status))
    try:  # before the lock goes, as the release would have
        deploy_recorded, unrecorded = _record_a_stuck_deploy(settings.lock_table, detail, history), None
    except Exception as exc:  # LockUnavailable: the canary and the rest are still cleaned up first
        deploy_recorded, unrecorded = False, exc
    cleaned = cleanup.clean_up(settings.lock_table, record, **_canary_recorded(history))
    if unrecorded is not None:
        logger.warning("deploy not recorded: the event is retried", extra={"error": type(unrecorded).__name__})
        raise unrecorded  # Lambda retries the event (the clean-up again changes nothing), then dead-letters it
    trigger = request.get("trigger") if isinstance(request, dict) and isinstance(request.get("trigger"), dict) else {}
    recorded = False
    if trigger.get("type") == "manifest" and manifest.is_manifest_key(str(trigger.get("key", ""))):
        recorded = manifest.record_end(
            settings.config_bucket,
            manifest.result_key(trigger["key"]),
            detail.get("name", ""),
            status,
            detail.get("error"),
            detail.get("cause"),
        )
    logger.log(
        logging.WARNING if cleaned.left else logging.INFO,
        "execution ended" + (": clean-up left something for the reaper" if cleaned.left else ""),
        extra={"status": status, **cleaned.to_log(), "resultRecorded": recorded, "deployRecorded": deploy_recorded},
    )
    sent = _report(detail, cfg, history, settings=settings)
    return {
        "handled": True,
        "status": status,
        "lockReleased": cleaned.released,
        "canaryTasksStopped": cleaned.canaries,
        "migrationTasksStopped": cleaned.migrations,
        "left": list(cleaned.left),
        "resultRecorded": recorded,
        "deployRecorded": deploy_recorded,
        "notified": sent,
    }
