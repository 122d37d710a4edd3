"""Stopping an execution as AWS does: ABORTED at once, while a step's Lambda may still run."""

from __future__ import annotations

import shutil

from ferry_cli.sandbox.run import world_session

from ..statemachine.conftest import EXAMPLE, push_event


def test_a_stop_during_a_running_step_is_aborted_and_announced_at_once_while_the_step_runs_on(tmp_path):
    """As on AWS: StopExecution makes the execution ABORTED and sends its status event at once, while the Lambda
    it had invoked runs on (nothing stops it) and its late answer is dropped."""
    shutil.copy(EXAMPLE / "web-task-def.json", tmp_path / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", tmp_path / "registry")
    shutil.copy(EXAMPLE / "world.yaml", tmp_path / "world.yaml")
    held = {"began": False, "released": False}

    def hold_verify(function: str, event: dict) -> None:
        if function == "VerifyFunction":
            from ferry_cli.sandbox.clock import active

            held["began"] = True
            clock = active()
            while not held["released"]:  # Verify runs on, minute after minute, until the test lets it go
                clock.sleep(60)

    with world_session(tmp_path / "world.yaml", fault_hooks=[hold_verify]) as (sandbox, _):
        sandbox.deliver(push_event("web", "v2"))
        sandbox.run_until(lambda: held["began"])
        sandbox.clock.sleep(90)
        [execution] = sandbox.executions()
        arn = execution["executionArn"]
        sfn = sandbox.client("stepfunctions")
        stopped = sfn.stop_execution(executionArn=arn, error="Operator.Stop", cause="while Verify runs")
        described = sfn.describe_execution(executionArn=arn)
        assert described["status"] == "ABORTED"
        assert described["stopDate"] == stopped["stopDate"] == sandbox.clock.now_datetime()
        # The ABORTED event reaches the execution-ended function while Verify is still held.
        sandbox.run_until(
            lambda: any(
                r["event"]["resources"] == [arn] and r["event"]["detail"]["status"] == "ABORTED"
                for r in sandbox.status_events
            ),
            limit=30,
        )
        aborted = [
            r
            for r in sandbox.status_events
            if r["event"]["resources"] == [arn] and r["event"]["detail"]["status"] == "ABORTED"
        ]
        [record] = aborted
        assert [t["function"] for t in record["targets"]] == ["ferry-sandbox-execution-ended"]
        assert record["targets"][0]["error"] is None
        assert record["event"]["detail"]["error"] == "Operator.Stop"
        assert not held["released"]
        held["released"] = True  # Verify goes on, and answers a stopped execution
        sandbox.wait_for_executions()  # waits for the late Verify to return as well
        events = sandbox.history(arn)
        assert events[-1]["type"] == "ExecutionAborted"
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        assert entered[-1] == "Verify secrets, images and roles"  # nothing ran after the late answer
        assert len([r for r in sandbox.status_events if r["event"]["resources"] == [arn]]) == 2  # RUNNING, ABORTED
        assert sfn.describe_execution(executionArn=arn)["stopDate"] == stopped["stopDate"]
