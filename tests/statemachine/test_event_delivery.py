"""Events arrive as AWS delivers them: at least once, and a failed invocation again later.

EventBridge invokes each target asynchronously: Lambda retries a failed invocation twice (one minute, then two
minutes later), then sends the event to the function's OnFailure destination; now and then an event arrives
twice (ferry_cli.sandbox.delivery.EventDelivery). Duplicated and retried deliveries must change nothing.
"""

from __future__ import annotations

from ferry_cli.sandbox.delivery import EventDelivery
from ferry_cli.sandbox.faults import Faults, LambdaFault

from .conftest import push_event

CANARY_WITH_MIGRATION = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
    "healthGates: {alarms: [web-5xx], bakeSeconds: 120}\n"
    "migrations: [{name: migrate, container: app, command: [bin/rails, 'db:migrate'], timeoutSeconds: 900}]\n"
)
RUN = "Run the migration task and wait for it to stop"
SPEED = 240.0


def delivered_by_events(function: str):
    """A LambdaFault step for `function`'s invocations by EventBridge (not by the state machine)."""
    return lambda logical, event: logical if logical == function and "detail-type" in event else None


def settled(summary: dict) -> dict:
    [execution] = summary["executions"]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["desiredCount"], web["runningCount"]) == ("web:2", 2, 2), web
    assert summary["canaryTasks"] == 0 and summary["migrationTasks"]["running"] == 0
    assert summary["locksHeld"] == 0
    return execution


def test_every_event_delivered_twice_changes_nothing(scenario):
    scenario.config("web", CANARY_WITH_MIGRATION)
    once = scenario.run(push_event("web", "v2"))
    twice = scenario.run(push_event("web", "v2"), delivery=EventDelivery(duplicates=1.0))
    assert twice["eventDeliveries"]["duplicates"] > 0
    for summary in (once, twice):
        execution = settled(summary)
        assert execution["status"] == "SUCCEEDED", execution
    assert twice["executions"][0]["states"] == once["executions"][0]["states"]
    assert twice["migrationTasks"]["started"] == 1  # the duplicate push started no second deploy
    assert twice["eventDeliveries"]["deadLettered"] == 0


def test_a_stopped_task_event_whose_first_delivery_fails_completes_the_migration_on_its_retry(scenario):
    scenario.config("web", CANARY_WITH_MIGRATION)
    faults = Faults(lambdas=[LambdaFault("crash", step=delivered_by_events("TaskStoppedFunction"), times=1)])
    summary = scenario.run(push_event("web", "v2"), faults=faults)
    execution = settled(summary)
    assert execution["status"] == "SUCCEEDED", execution
    assert [f["function"] for f in faults.lambda_faults] == ["TaskStoppedFunction"]
    assert summary["eventDeliveries"]["retries"] >= 1 and summary["eventDeliveries"]["deadLettered"] == 0
    history = summary["histories"][execution["name"]]
    waits = [r for r in history if r["state"] == RUN and r["type"] in ("TaskSubmitted", "TaskSucceeded")]
    submitted, succeeded = waits[0]["offset"], waits[-1]["offset"]
    # Completed by the retried event, a minute after the task stopped; not by the heartbeat's own look.
    assert not any(r["type"] == "TaskTimedOut" for r in history if r["state"] == RUN)
    assert 60 <= succeeded - submitted < 300, (submitted, succeeded)


def test_an_event_that_fails_every_time_goes_to_the_dead_letter_queue_and_the_heartbeat_takes_over(scenario):
    scenario.config("web", CANARY_WITH_MIGRATION)
    faults = Faults(lambdas=[LambdaFault("crash", step=delivered_by_events("TaskStoppedFunction"), times=None)])
    summary = scenario.run(push_event("web", "v2"), faults=faults)
    execution = settled(summary)
    assert execution["status"] == "SUCCEEDED", execution
    # Three attempts (the first and Lambda's two retries) per stopped task event, then the OnFailure queue.
    stopped = [f for f in faults.lambda_faults if f["function"] == "TaskStoppedFunction"]
    assert len(stopped) % 3 == 0 and summary["eventDeliveries"]["deadLettered"] == len(stopped) // 3
    [record, *_] = summary["deadLetters"]  # read from the stack's SQS queue
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["detail-type"] == "ECS Task State Change"
    assert record["responsePayload"]["errorType"] == "InjectedCrash"
    # The migration's state looked for itself when its heartbeat ran out.
    history = summary["histories"][execution["name"]]
    assert any(r["type"] == "TaskTimedOut" for r in history if r["state"] == RUN)


def test_the_execution_ended_function_failing_once_still_releases_the_lock_on_its_retry(scenario):
    scenario.config("web", CANARY_WITH_MIGRATION)
    faults = Faults(lambdas=[LambdaFault("crash", step=delivered_by_events("ExecutionEndedFunction"), times=2)])
    summary = scenario.run(push_event("web", "v2"), faults=faults)
    execution = settled(summary)
    assert execution["status"] == "SUCCEEDED"
    assert summary["eventDeliveries"]["retries"] >= 1 and summary["eventDeliveries"]["deadLettered"] == 0
