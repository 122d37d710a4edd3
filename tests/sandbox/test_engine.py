"""Each moto workaround in the sandbox engine, tested on its own."""

from __future__ import annotations

import json
import time

import pytest

from ferry.steps import lock
from ferry_cli import history
from ferry_cli.sandbox.sandbox import Sandbox
from ferry_cli.sandbox.world import World, derived_digest, push_image

from ..statemachine.conftest import EXAMPLE, push_event


@pytest.fixture
def sandbox(request):
    """The demo world at speed 600, or at the speed a test asks for with `@pytest.mark.parametrize(..., indirect=True)`."""
    world = World.load(EXAMPLE / "world.yaml")
    with Sandbox(clusters=world.clusters, speed=getattr(request, "param", 600)) as box:
        from ferry_cli.sandbox.moto_ecs import EcsSimulator

        box.simulator = EcsSimulator(box.clock, account_id=box.account, region=box.region, **world.simulator_options())
        box.simulator.install()
        world.build(box)
        box.start_driver()
        yield box


def test_lambda_tasks_run_the_template_handler_and_report_errors_like_the_lambda_runtime(sandbox):
    response = sandbox.client("lambda").invoke(
        FunctionName="ferry-sandbox-lock",
        Payload=json.dumps({"action": "bogus", "service": "web", "owner": "me"}).encode())
    assert response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "InputInvalid"  # the name the ASL's Catch and Retry match
    assert "`action` must be acquire, release or rollback-target" in payload["errorMessage"]
    ok = sandbox.client("lambda").invoke(
        FunctionName="ferry-sandbox-lock",
        Payload=json.dumps({"action": "acquire", "service": "web", "owner": "me"}).encode())
    assert "FunctionError" not in ok and json.loads(ok["Payload"].read())["owner"] == "me"
    assert sandbox.lambda_invocations == 2


def test_handler_log_lines_are_captured_with_the_execution_as_correlation_id(sandbox):
    sandbox.deliver(push_event("web", "v2"))
    sandbox.wait_for_executions(timeout=60)
    lines = [json.loads(line) for line in sandbox.logs.lines]
    rendered = next(line for line in lines if line["message"] == "task definition rendered")
    assert rendered["correlation_id"] == sandbox.executions()[0]["name"]
    assert (rendered["service"], rendered["ecs_service"]) == ("web", "prod/web")


# Speed 120: a 300 s heartbeat lasts 2.5 real seconds, long enough to see the state waiting between two.
@pytest.mark.parametrize("sandbox", [120], indirect=True)
def test_heartbeats_and_retries_run_on_the_simulated_clock_and_a_release_wakes_the_waiter(sandbox):
    # Hold the lock as someone else: the deploy waits on a task token; its 300 s heartbeat looks again.
    lock.acquire(sandbox.lock_table, "prod/web", "someone-else")
    started = time.monotonic()
    sandbox.deliver(push_event("web", "v2"))
    [execution] = sandbox.executions()

    def timed_out_so_far() -> int:
        return sum(1 for e in sandbox.history(execution["executionArn"]) if e["type"] == "TaskTimedOut")

    # Two heartbeats (600 simulated seconds), and waiting again, before the holder lets go.
    while timed_out_so_far() < 2 or sandbox.history(execution["executionArn"])[-1]["type"] != "TaskSubmitted":
        assert time.monotonic() - started < 15, "the lock's heartbeat never ran out"
        time.sleep(0.01)
    lock.release(sandbox.lock_table, "prod/web", "someone-else")  # wakes the waiting deploy at once
    sandbox.wait_for_executions(timeout=60)
    elapsed = time.monotonic() - started
    [execution] = sandbox.executions()
    assert execution["status"] == "SUCCEEDED"
    events = sandbox.history(execution["executionArn"])
    woken = [e for e in events if e["type"] == "TaskFailed" and e["taskFailedEventDetails"]["error"] == "LockReleased"]
    heartbeats = [e for e in events if e["type"] == "TaskTimedOut"
                  and e["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"]
    assert len(woken) == 1 and len(heartbeats) >= 2
    # Minutes of heartbeats and Retry back-off in a few real seconds.
    assert elapsed < 15
    assert history.transitions(events) == len(history.entered_states(events)) + len(woken) + len(heartbeats)


# Slow enough (the rollout lasts about a real second) that the stop lands while the state waits for ECS.
@pytest.mark.parametrize("sandbox", [60], indirect=True)
def test_an_execution_stopped_while_waiting_for_a_callback_ends_aborted(sandbox):
    sandbox.deliver(push_event("web", "v2"))
    [execution] = sandbox.executions()
    deadline = time.monotonic() + 20
    while not any(e["type"] == "TaskSubmitted" for e in sandbox.history(execution["executionArn"])):
        assert time.monotonic() < deadline, "the execution never reached a state waiting for a callback"
        time.sleep(0.01)
    sandbox.client("stepfunctions").stop_execution(executionArn=execution["executionArn"], error="Stopped", cause="test")
    stopped = time.monotonic()
    sandbox.wait_for_executions(timeout=10)
    assert time.monotonic() - stopped < 2
    assert sandbox.executions()[0]["status"] == "ABORTED"


@pytest.mark.parametrize("sandbox", [60], indirect=True)
def test_an_aborted_deploy_does_not_block_the_next_one(sandbox):
    sandbox.deliver(push_event("web", "v2", "first"))
    [first] = sandbox.executions()
    deadline = time.monotonic() + 20
    while "Wait for ECS to finish the deployment" not in str(sandbox.history(first["executionArn"])):
        assert time.monotonic() < deadline, "the execution never reached its wait for the deployment"
        time.sleep(0.01)
    sandbox.client("stepfunctions").stop_execution(executionArn=first["executionArn"])
    sandbox.wait_for_executions(timeout=10)
    # No Catch runs on abort: the execution-ended function, fed by Step Functions' status event, released it.
    assert sandbox.locks_held() == 0
    push_image(sandbox, "web", "v3", derived_digest("web", "v3"))
    sandbox.deliver(push_event("web", "v3", "second"))
    sandbox.wait_for_executions(timeout=60)
    assert [e["status"] for e in sandbox.executions()] == ["ABORTED", "SUCCEEDED"]
    assert sandbox.locks_held() == 0
    assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:3"
