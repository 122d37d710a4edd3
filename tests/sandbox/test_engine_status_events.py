"""The sandbox emits Step Functions' "Execution Status Change" events, as AWS sends them to EventBridge."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from moto.events.models import EventPattern

from ferry_cli.sandbox.run import world_session

from ..statemachine.conftest import EXAMPLE, push_event

DETAIL_TYPE = "Step Functions Execution Status Change"
DETAIL_KEYS = {
    "executionArn",
    "stateMachineArn",
    "name",
    "status",
    "startDate",
    "stopDate",
    "input",
    "inputDetails",
    "output",
    "outputDetails",
    "error",
    "cause",
    "stateMachineVersionArn",
    "stateMachineAliasArn",
    "redriveCount",
    "redriveDate",
    "redriveStatus",
    "redriveStatusReason",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One session: a deploy that succeeds, a request refused at once, and a slow deploy stopped while it waits."""
    folder = tmp_path_factory.mktemp("world")
    shutil.copy(EXAMPLE / "web-task-def.json", folder / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", folder / "registry")
    world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    world["ecr"]["web"].append("v3")
    world["behaviour"] = {"web:v3": {"startSeconds": 900}}  # still deploying when it is stopped
    (folder / "world.yaml").write_text(yaml.safe_dump(world))

    with world_session(folder / "world.yaml") as (sandbox, _):
        sandbox.deliver(push_event("web", "v2", "push-v2"))
        sandbox.wait_for_executions()
        [succeeded] = sandbox.executions()

        refused = sandbox.start_execution({"service": 7}, name="refused")
        sandbox.wait_for_executions()

        sandbox.deliver(push_event("web", "v3", "push-v3"))
        [stopped] = [e for e in sandbox.executions() if e["status"] == "RUNNING"]
        sandbox.run_until(lambda: any(e["type"] == "TaskSubmitted" for e in sandbox.history(stopped["executionArn"])))
        sandbox.client("stepfunctions").stop_execution(
            executionArn=stopped["executionArn"], error="Operator.Stop", cause="stopped by the test"
        )
        sandbox.wait_for_executions()  # returns only once the ABORTED event has been delivered

        yield {
            "sandbox": sandbox,
            "arns": {"succeeded": succeeded["executionArn"], "refused": refused, "stopped": stopped["executionArn"]},
            "records": list(sandbox.status_events),
            "executions": {e["executionArn"]: e for e in sandbox.executions()},
            "rules": sandbox.rules(),
            "described": {
                e["executionArn"]: sandbox.client("stepfunctions").describe_execution(executionArn=e["executionArn"])
                for e in sandbox.executions()
            },
        }


def _events(run, which):
    arn = run["arns"][which]
    return [r["event"] for r in run["records"] if r["event"]["detail"]["executionArn"] == arn]


def test_each_execution_sends_running_then_its_end_once(run):
    assert [e["detail"]["status"] for e in _events(run, "succeeded")] == ["RUNNING", "SUCCEEDED"]
    assert [e["detail"]["status"] for e in _events(run, "refused")] == ["RUNNING", "FAILED"]
    assert [e["detail"]["status"] for e in _events(run, "stopped")] == ["RUNNING", "ABORTED"]
    assert len(run["records"]) == 6
    for arn, execution in run["executions"].items():  # the last event of each says what DescribeExecution says
        assert [r["event"] for r in run["records"] if r["event"]["resources"] == [arn]][-1]["detail"][
            "status"
        ] == execution["status"]


def test_events_have_the_shape_aws_sends(run):
    sandbox = run["sandbox"]
    for record in run["records"]:
        event = record["event"]
        assert set(event) == {
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        }
        assert (event["version"], event["source"], event["detail-type"]) == ("0", "aws.states", DETAIL_TYPE)
        assert (event["account"], event["region"]) == (sandbox.account, sandbox.region)
        assert event["time"].endswith("Z") and "T" in event["time"]
        detail = event["detail"]
        assert set(detail) == DETAIL_KEYS
        assert event["resources"] == [detail["executionArn"]]
        assert detail["stateMachineArn"] == sandbox.state_machine_arn
        assert detail["executionArn"].endswith(":" + detail["name"])
        assert isinstance(detail["startDate"], int) and isinstance(detail["input"], str)
        assert detail["inputDetails"] == {"included": True}
        described = run["described"][detail["executionArn"]]
        assert detail["startDate"] == int(described["startDate"].timestamp() * 1000)
        assert json.loads(detail["input"]) == json.loads(described["input"])
        if detail["status"] == "RUNNING":
            assert (detail["stopDate"], detail["output"], detail["outputDetails"]) == (None, None, None)
            assert (detail["error"], detail["cause"]) == (None, None)
        else:
            assert isinstance(detail["stopDate"], int) and detail["stopDate"] >= detail["startDate"]
    assert len({r["event"]["id"] for r in run["records"]}) == len(run["records"])


def test_the_succeeded_event_carries_the_output(run):
    [_, done] = _events(run, "succeeded")
    assert json.loads(done["detail"]["input"])["images"]  # the router's request
    assert json.loads(done["detail"]["output"]) == json.loads(run["described"][run["arns"]["succeeded"]]["output"])
    assert done["detail"]["outputDetails"] == {"included": True}
    assert (done["detail"]["error"], done["detail"]["cause"]) == (None, None)


def test_the_failed_event_carries_the_error_and_cause(run):
    [_, failed] = _events(run, "refused")
    assert json.loads(failed["detail"]["input"]) == {"service": 7}
    assert failed["detail"]["name"] == "refused"
    assert failed["detail"]["error"] == "InputInvalid"
    assert "Nothing was locked or changed" in failed["detail"]["cause"]
    assert (failed["detail"]["output"], failed["detail"]["outputDetails"]) == (None, None)


def test_the_aborted_event_carries_the_stop_executions_error_and_cause(run):
    [_, aborted] = _events(run, "stopped")
    assert (aborted["detail"]["error"], aborted["detail"]["cause"]) == ("Operator.Stop", "stopped by the test")
    assert aborted["detail"]["output"] is None
    history = run["sandbox"].history(run["arns"]["stopped"])
    assert history[-1]["type"] == "ExecutionAborted"
    assert history[-1]["executionAbortedEventDetails"] == {"error": "Operator.Stop", "cause": "stopped by the test"}


def test_events_go_through_deliver_to_the_rules_that_match_them(run):
    for record in run["records"]:
        assert record["error"] is None
        event = record["event"]
        matching = [
            (fn, rule)
            for fn, rule, pattern in run["rules"]
            if EventPattern.load(json.dumps(pattern)).matches_event(event)
        ]
        assert [(t["function"], t["rule"]) for t in record["targets"]] == matching
    if not any("aws.states" in json.dumps(pattern) for _, _, pattern in run["rules"]):
        # No rule in the template listens to aws.states yet: every event was delivered, to no target.
        assert all(record["targets"] == [] for record in run["records"])
