"""Deploy metrics, in CloudWatch's Embedded Metric Format (Powertools Metrics), one set per ended deploy.

Namespace `Ferry`. Dimensions are kept few, so the metric count stays small
however many deploys run:

- `Deploys` (1 per ended deploy) and `DeployDuration` (seconds, start to end),
  by {service, environment, Result} and by {environment, Result};
- `Deploys` by {environment, Error} for deploys that ended with an Error
  (failed, rolled back, rollback failed, timed out): failures by error;
- `CanaryDuration`, `RolloutDuration`, `BakeDuration` (seconds each phase's
  states took, from the execution history; only phases that ran),
  `CanaryHealthWait` (seconds from the canary tasks' start until they were
  healthy, for a canary that passed) and `Rollbacks` (1 when the service was
  rolled back, else 0), by {service, environment} and by {environment}.

Each document also carries the execution's name (`execution`, metadata: not
a dimension), so a Logs Insights query finds the deploy behind a data point.

The documents are written where the Logger writes (stdout on Lambda, where
CloudWatch Logs extracts them), so the local sandbox captures them with the
log lines instead of mixing them into `ferry sandbox run --json`'s output.
template.yaml's dashboard and failed-rollback alarm use these names
(tests/infra/test_template.py checks them against this module).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from ferry.lifecycle.notify import Execution
from ferry import states
from ferry.runtime.observability import log_stream

NAMESPACE = "Ferry"
DEPLOYS = "Deploys"
DEPLOY_DURATION = "DeployDuration"
CANARY_DURATION = "CanaryDuration"
ROLLOUT_DURATION = "RolloutDuration"
BAKE_DURATION = "BakeDuration"
CANARY_HEALTH_WAIT = "CanaryHealthWait"
ROLLBACKS = "Rollbacks"
SERVICE, ENVIRONMENT, RESULT, ERROR = "service", "environment", "Result", "Error"

# The execution's result -> the Result dimension's value.
RESULTS = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "ROLLED_BACK": "rolled_back",
    "SUPERSEDED": "superseded",
    "ROLLBACK_FAILED": "rollback_failed",
    "ABORTED": "aborted",
    "TIMED_OUT": "timed_out",
}
# Results whose Error is a failure worth counting by name (an ABORTED execution's error is free text).
WITH_ERROR = ("FAILED", "ROLLED_BACK", "ROLLBACK_FAILED", "TIMED_OUT")
# The states of each phase, as statemachine/deploy.asl.json names them (tests/unit/test_notify.py checks they exist).
PHASES = {
    CANARY_DURATION: (states.START_CANARY, states.WAIT_FOR_CANARY, states.CHECK_CANARY, states.IS_CANARY_HEALTHY),
    ROLLOUT_DURATION: (states.UPDATE_SERVICE, states.WAIT_FOR_DEPLOYMENT),
    BAKE_DURATION: (states.BAKE, states.CHECK_ALARMS),
}
CANARY_CHECK_STATE = states.CHECK_CANARY
ROLLBACK_STATE = states.ROLL_BACK
MAX_ERROR_CHARS = 64  # an Error the state machine does not name (a Python exception) stays a short value


def phase_seconds(history: tuple[dict[str, Any], ...] | list[dict[str, Any]], states: tuple[str, ...]) -> float | None:
    """Seconds from entering the phase's first state to leaving its last one; None when it never ran.

    A state entered and never left (the execution was stopped there) ends at the next event.
    """
    start = stop = None
    open_at: int | None = None
    for index, event in enumerate(history):
        entered, exited = event.get("stateEnteredEventDetails"), event.get("stateExitedEventDetails")
        if entered and entered.get("name") in states:
            start = start if start is not None else event["timestamp"]
            open_at = index
        elif exited and exited.get("name") in states:
            stop, open_at = event["timestamp"], None
    if start is None:
        return None
    if open_at is not None:
        stop = history[min(open_at + 1, len(history) - 1)]["timestamp"]
    return max(0.0, _seconds(stop) - _seconds(start))


def canary_health_wait(history: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> float | None:
    """Seconds from the canary tasks' start until they were healthy, for a canary that passed."""
    for event in reversed(history):
        exited = event.get("stateExitedEventDetails") or {}
        if exited.get("name") != CANARY_CHECK_STATE:
            continue
        try:
            canary = json.loads(exited.get("output") or "{}").get("canary") or {}
        except (ValueError, AttributeError):
            return None
        progress = canary.get("progress") if isinstance(canary.get("progress"), dict) else {}
        since, started = progress.get("healthySince"), canary.get("startedAt")
        if progress.get("state") == "PASSED" and isinstance(since, (int, float)) and isinstance(started, (int, float)):
            return max(0.0, float(since) - float(started))
        return None
    return None


def documents(execution: Execution, *, environment: str) -> list[dict[str, Any]]:
    """The EMF documents of one ended deploy (none while it runs)."""
    result = execution.result
    if result is None:
        return []
    service = execution.service or "unknown"
    history = execution.history
    found = []

    deploy = _metrics(execution.name, service=service, environment=environment, Result=RESULTS[result])
    deploy.add_dimensions(environment=environment, Result=RESULTS[result])
    deploy.add_metric(name=DEPLOYS, unit=MetricUnit.Count, value=1)
    if execution.duration is not None:
        deploy.add_metric(name=DEPLOY_DURATION, unit=MetricUnit.Seconds, value=execution.duration)
    found.append(deploy.serialize_metric_set())

    if result in WITH_ERROR and isinstance(execution.error, str) and execution.error.strip():
        failure = _metrics(execution.name, environment=environment, Error=execution.error.strip()[:MAX_ERROR_CHARS])
        failure.add_metric(name=DEPLOYS, unit=MetricUnit.Count, value=1)
        found.append(failure.serialize_metric_set())

    phases = _metrics(execution.name, service=service, environment=environment)
    phases.add_dimensions(environment=environment)
    for name, entered in PHASES.items():
        seconds = phase_seconds(history, entered)
        if seconds is not None:
            phases.add_metric(name=name, unit=MetricUnit.Seconds, value=seconds)
    wait = canary_health_wait(history)
    if wait is not None:
        phases.add_metric(name=CANARY_HEALTH_WAIT, unit=MetricUnit.Seconds, value=wait)
    rolled_back = ROLLBACK_STATE in execution.entered() or result in ("ROLLED_BACK", "ROLLBACK_FAILED")
    phases.add_metric(name=ROLLBACKS, unit=MetricUnit.Count, value=1 if rolled_back else 0)
    found.append(phases.serialize_metric_set())
    return found


def record(execution: Execution, *, environment: str) -> list[dict[str, Any]]:
    """Write the deploy's EMF documents, one JSON line each, where the Logger writes."""
    found = documents(execution, environment=environment)
    if found and not is_metrics_disabled():
        stream = log_stream()
        for document in found:
            stream.write(json.dumps(document, separators=(",", ":")) + "\n")
        stream.flush()
    return found


def _metrics(execution: str, **dimensions: str) -> EphemeralMetrics:
    """A metric set of its own (no state shared with other sets), its primary dimensions in this order, and the
    execution's name as metadata (searchable in the logs, not a dimension).

    service="" keeps Powertools from adding its own `service` dimension (POWERTOOLS_SERVICE_NAME).
    """
    metrics = EphemeralMetrics(namespace=NAMESPACE, service="")
    for name, value in dimensions.items():
        metrics.add_dimension(name=name, value=value)
    metrics.add_metadata(key="execution", value=execution)
    return metrics


def _seconds(moment: Any) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)
