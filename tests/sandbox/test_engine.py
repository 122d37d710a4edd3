"""Each moto workaround in the sandbox engine, tested on its own."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from ferry.steps import lock
from ferry_cli import history
from ferry_cli.sandbox.sandbox import Sandbox
from ferry_cli.sandbox.world import World, derived_digest, push_image

from ..statemachine.conftest import EXAMPLE, push_event


@pytest.fixture
def sandbox():
    """The demo world, on virtual time."""
    world = World.load(EXAMPLE / "world.yaml")
    with Sandbox(clusters=world.clusters) as box:
        from ferry_cli.sandbox.moto_ecs import EcsSimulator

        box.simulator = EcsSimulator(box.clock, account_id=box.account, region=box.region, **world.simulator_options())
        box.simulator.install()
        world.build(box)
        box.start_driver()
        yield box


def test_lambda_tasks_run_the_template_handler_and_report_errors_like_the_lambda_runtime(sandbox):
    response = sandbox.client("lambda").invoke(
        FunctionName="ferry-sandbox-lock",
        Payload=json.dumps({"action": "bogus", "service": "web", "owner": "me"}).encode(),
    )
    assert response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "InputInvalid"  # the name the ASL's Catch and Retry match
    assert "`action` must be acquire, release or rollback-target" in payload["errorMessage"]
    ok = sandbox.client("lambda").invoke(
        FunctionName="ferry-sandbox-lock",
        Payload=json.dumps({"action": "acquire", "service": "web", "owner": "me"}).encode(),
    )
    assert "FunctionError" not in ok and json.loads(ok["Payload"].read())["owner"] == "me"
    assert sandbox.lambda_invocations == 2


def test_handler_log_lines_are_captured_with_the_execution_as_correlation_id(sandbox):
    sandbox.deliver(push_event("web", "v2"))
    sandbox.wait_for_executions()
    lines = [json.loads(line) for line in sandbox.logs.lines]
    rendered = next(line for line in lines if line["message"] == "task definition rendered")
    assert rendered["correlation_id"] == sandbox.executions()[0]["name"]
    assert (rendered["service"], rendered["ecs_service"]) == ("web", "prod/web")


def test_heartbeats_and_retries_run_on_the_simulated_clock_and_a_release_wakes_the_waiter(sandbox):
    # Hold the lock as someone else: the deploy waits on a task token; its 300 s heartbeat looks again.
    lock.acquire(sandbox.lock_table, "prod/web", "someone-else")
    sandbox.deliver(push_event("web", "v2"))
    [execution] = sandbox.executions()
    arn = execution["executionArn"]

    def timed_out_so_far() -> int:
        return sum(1 for e in sandbox.history(arn) if e["type"] == "TaskTimedOut")

    # Two heartbeats (600 simulated seconds), and waiting again, before the holder lets go.
    sandbox.run_until(lambda: timed_out_so_far() >= 2 and sandbox.history(arn)[-1]["type"] == "TaskSubmitted")
    released_at = sandbox.clock.now_datetime()
    lock.release(sandbox.lock_table, "prod/web", "someone-else")  # wakes the waiting deploy at once
    sandbox.wait_for_executions()
    [execution] = sandbox.executions()
    assert execution["status"] == "SUCCEEDED"
    events = sandbox.history(arn)
    woken = [e for e in events if e["type"] == "TaskFailed" and e["taskFailedEventDetails"]["error"] == "LockReleased"]
    heartbeats = [
        e
        for e in events
        if e["type"] == "TaskTimedOut" and e["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"
    ]
    assert len(woken) == 1 and len(heartbeats) == 2
    assert woken[0]["timestamp"] == released_at  # the release woke the waiter at that instant, not at a heartbeat
    # Each wait on the token lasted exactly its 300 s heartbeat.
    submitted = [e["timestamp"] for e in events if e["type"] == "TaskSubmitted"]
    assert [(h["timestamp"] - s).total_seconds() for h, s in zip(heartbeats, submitted)] == [300.0, 300.0]
    assert history.transitions(events) == len(history.entered_states(events)) + len(woken) + len(heartbeats)


def test_an_execution_stopped_while_waiting_for_a_callback_ends_aborted(sandbox):
    sandbox.deliver(push_event("web", "v2"))
    [execution] = sandbox.executions()
    sandbox.run_until(lambda: any(e["type"] == "TaskSubmitted" for e in sandbox.history(execution["executionArn"])))
    stopped = sandbox.clock.now()
    sandbox.client("stepfunctions").stop_execution(
        executionArn=execution["executionArn"], error="Stopped", cause="test"
    )
    sandbox.wait_for_executions()
    assert sandbox.clock.now() == stopped  # nothing waited: the execution ended at the stop
    assert sandbox.executions()[0]["status"] == "ABORTED"


def test_an_aborted_deploy_does_not_block_the_next_one(sandbox):
    sandbox.deliver(push_event("web", "v2", "first"))
    [first] = sandbox.executions()
    sandbox.run_until(lambda: "Wait for ECS to finish the deployment" in str(sandbox.history(first["executionArn"])))
    sandbox.client("stepfunctions").stop_execution(executionArn=first["executionArn"])
    sandbox.wait_for_executions()
    # No Catch runs on abort: the execution-ended function, fed by Step Functions' status event, released it.
    assert sandbox.locks_held() == 0
    push_image(sandbox, "web", "v3", derived_digest("web", "v3"))
    sandbox.deliver(push_event("web", "v3", "second"))
    sandbox.wait_for_executions()
    assert [e["status"] for e in sandbox.executions()] == ["ABORTED", "SUCCEEDED"]
    assert sandbox.locks_held() == 0
    assert sandbox.simulator.services()["prod/web"]["taskDefinition"] == "web:3"


# ----------------------------------------------------------------------------- what the sandbox shares to save time
def test_a_definition_is_parsed_and_built_once_and_its_program_keeps_no_evaluation_state(sandbox):
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    first_program, first_tree = AmazonStateLanguageParser.parse(definition)
    second_program, second_tree = AmazonStateLanguageParser.parse(definition)
    assert first_tree is second_tree and first_program is second_program  # parsed and built once
    # Executions share the program, so its components must keep no evaluation state: once built they
    # assign only these attributes (EvalComponent's heap_key, made once; the Map and Parallel workers, made anew
    # for each evaluation). A moto upgrade that adds one fails here, before it could mix two executions' data.
    assert component_state_assignments() == KNOWN_COMPONENT_STATE
    for _ in range(2):  # a definition with a syntax error is refused every time, not cached as good
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse('{"StartAt": "Done", "States": {"Done": {"Type": }}}')
    sfn = sandbox.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="tiny", definition=definition, roleArn=f"arn:aws:iam::{sandbox.account}:role/tiny"
    )["stateMachineArn"]
    runs = [sfn.start_execution(stateMachineArn=machine, name=f"run-{i}")["executionArn"] for i in range(2)]
    sandbox.wait_for_executions()
    assert [sfn.describe_execution(executionArn=arn)["status"] for arn in runs] == ["SUCCEEDED", "SUCCEEDED"]
    for attempt in range(2):  # validated once when good; refused every time when not
        with pytest.raises(ClientError, match="ASLParserException"):
            sfn.create_state_machine(
                name=f"bad-{attempt}",
                definition='{"StartAt": "Nowhere", "States": {}}',
                roleArn=f"arn:aws:iam::{sandbox.account}:role/tiny",
            )


def test_every_session_in_the_sandbox_reads_the_service_models_once(sandbox):
    import boto3

    loaders = {id(boto3.session.Session()._session.get_component("data_loader")) for _ in range(3)}
    assert len(loaders) == 1
    assert sandbox.client("ecs") is sandbox.client("ecs")  # the sandbox's own clients are made once


def test_a_client_kept_between_sandboxes_answers_to_the_sandbox_it_is_used_in():
    import boto3

    refused = []
    for account in ("111111111111", "222222222222"):
        with Sandbox(clusters=["prod"], account=account) as box:
            ecs = boto3.client("ecs", region_name=box.region)
            refused.append((ecs, box))
            ecs.create_cluster(clusterName=f"only-in-{account}")
            names = {arn.rsplit("/", 1)[-1] for arn in ecs.list_clusters()["clusterArns"]}
            assert f"only-in-{account}" in names and len([n for n in names if n.startswith("only-in-")]) == 1
            with pytest.raises(ClientError):  # AWS refuses startedBy with another filter (aws_rules)
                ecs.list_tasks(cluster="prod", startedBy="ferry", desiredStatus="RUNNING")
            assert box.enforcement.refused[-1]["operation"] == "ListTasks"
    (first, first_box), (second, second_box) = refused
    assert first is second  # made once, used in both
    assert len(first_box.enforcement.refused) == len(second_box.enforcement.refused) == 1


KNOWN_COMPONENT_STATE = {
    "EvalComponent.heap_key: __heap_key",
    "IterationWorker.sig_stop: _stop_signal_received",
    "JobPool.close_job: _worker_exception",
    "Counter.offset: _count",
    "Counter.count: _count",
    "MapRunRecord.set_stop: status",
    "MapRunRecord.set_stop: stop_date",
    "MapRunRecord.update: max_concurrency",
    "MapRunRecord.update: tolerated_failure_count",
    "MapRunRecord.update: tolerated_failure_percentage",
    "BranchWorker.start: _worker_thread",
    "BranchWorkerPool.on_terminated: _terminated_with_error",
    "BranchWorkerPool.on_terminated: _active_workers_num",
}


def component_state_assignments() -> set[str]:
    """Every `self.<attribute> = ...` of moto's ASL components outside the methods that build them (__init__, and
    from_state_props, which the preprocessor calls as it builds the program)."""
    import ast
    from pathlib import Path

    import moto.stepfunctions.parser.asl.component as components

    found = set()
    for path in Path(components.__file__).parent.rglob("*.py"):
        for cls in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)):
            building = ("__init__", "from_state_props")
            for method in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name not in building):
                for node in ast.walk(method):
                    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                    for target in targets:
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "self"
                        ):
                            found.add(f"{cls.name}.{method.name}: {target.attr}")
    return found
