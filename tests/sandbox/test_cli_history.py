"""`ferry status` and `ferry history`, in an account (moto) and in sandbox worlds; `ferry sandbox run --graph`."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from ferry.triggers.requests import execution_name
from ferry_cli.main import main

from .test_graph import classed, names_by_id, parse, state_names, taken_edges

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sandbox"
EVENT = ROOT / "events" / "ecr-push-web-v2.json"
EXECUTION = execution_name("web", "v2", json.loads(EVENT.read_text())["id"])  # the router's name for EVENT
SPEED = "240"
VERIFY = "Verify secrets, images and roles"
RELEASE_AFTER_FAILURE = "Release the deploy lock after the failure"


def deploy_definition() -> dict:
    return json.loads((ROOT / "statemachine" / "deploy.asl.json").read_text())


def world(tmp_path: Path, **changes) -> Path:
    """The example world in tmp_path, with top-level fields replaced."""
    shutil.copytree(EXAMPLE, tmp_path / "world")
    path = tmp_path / "world" / "world.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def entered_in_table(out: str) -> list[str]:
    """The step column of the *StateEntered rows of a printed history table."""
    header = next(line for line in out.splitlines() if line.lstrip().startswith("#  time"))
    start, end = header.index("step"), header.index("detail")
    return [
        line[start:end].strip() for line in out.splitlines() if re.match(r"\s*\d+\s+\+\S+\s+\w+StateEntered\b", line)
    ]


def assert_every_state_once(parsed: dict) -> None:
    names = state_names(deploy_definition()["States"])
    labels = list(names_by_id(parsed).values())
    assert len(labels) == len(set(labels)) and sorted(labels) == sorted(names)


# ---------------------------------------------------------------- sandbox worlds


def test_history_of_a_sandbox_deploy_prints_the_table_and_summary_and_writes_its_graph(tmp_path, capsys):
    code = main(
        [
            "history",
            "web-v2",
            "--world",
            str(EXAMPLE / "world.yaml"),
            "--event",
            str(EVENT),
            "--graph",
            str(tmp_path / "run.mmd"),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert out.splitlines()[0] == f"== {EXECUTION}  (prod/web)  SUCCEEDED"
    assert "ExecutionStarted" in out and "ExecutionSucceeded" in out
    assert re.search(r"\n +\d+ +\+\S+ +LambdaFunctionSucceeded +Register the new revision +revision: web:2\n", out)
    # The lock's release returns the deploy's summary: shown as a person reads it, never a dict's repr.
    assert re.search(
        r"LambdaFunctionSucceeded +Release the deploy lock +summary: DEPLOYED image app web:v1 -> web:v2", out
    )
    assert "{'" not in out
    summary = out[out.index("\n== Summary\n") :].splitlines()
    assert re.fullmatch(r"started 2026-01-01 \d\d:\d\d:\d\dZ, took \d:\d\d:\d\d, \d+ state transitions", summary[2])
    assert summary[3].startswith("image app web:v1 -> web:v2 (sha256:00261f24…), task definition web:1 -> web:(new)")
    assert f"wrote {tmp_path / 'run.mmd'}" in captured.err

    parsed = parse((tmp_path / "run.mmd").read_text())
    assert parsed["title"] == f"{EXECUTION} SUCCEEDED"
    assert_every_state_once(parsed)
    entered = entered_in_table(out)
    assert entered[0] == "Check the request" and entered[-1] == "Deployed"
    assert classed(parsed, "visited") == set(entered)
    assert classed(parsed, "failed") == set() and classed(parsed, "current") == set()
    taken = taken_edges(parsed)
    assert ("start", "-->", "", "Check the request") in taken
    assert ("Release the deploy lock", "-->", "", "Deployed") in taken
    assert not any(arrow == "-.->" and text for _, arrow, text, _ in taken)  # no Catch was taken


def test_history_lists_a_failed_sandbox_deploy_as_json_and_its_graph_marks_the_failed_state(tmp_path, capsys):
    broken = world(tmp_path, secrets={"prod/web/db-password": {}})
    code = main(
        ["history", "--json", "--world", str(broken), "--event", str(EVENT), "--graph", str(tmp_path / "runs.md")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [execution] = json.loads(captured.out)["executions"]
    assert (execution["name"], execution["service"], execution["target"]) == (EXECUTION, "web", "prod/web")
    assert (execution["status"], execution["error"]) == ("FAILED", "VerifyFailed")
    assert "secret prod/web/db-password (used by app) exists but has no value" in execution["cause"]
    assert execution["states"][-3:] == [VERIFY, RELEASE_AFTER_FAILURE, "Deploy failed"]

    markdown = (tmp_path / "runs.md").read_text()
    assert markdown.startswith(f"## {EXECUTION}\n\n```mermaid\n")
    [block] = re.findall(r"```mermaid\n(.*?)```", markdown, re.S)
    parsed = parse(block)
    assert parsed["title"] == f"{EXECUTION} FAILED"
    assert_every_state_once(parsed)
    assert classed(parsed, "visited") == set(execution["states"])
    assert classed(parsed, "failed") == {VERIFY, "Deploy failed"}
    taken = taken_edges(parsed)
    assert (VERIFY, "-.->", "States.ALL", RELEASE_AFTER_FAILURE) in taken
    assert not any(source == VERIFY and arrow == "-->" for source, arrow, _, _ in taken)


def test_status_follows_a_running_sandbox_deploy_to_its_failure(tmp_path, capsys):
    broken = world(tmp_path, secrets={"prod/web/db-password": {}})
    code = main(["status", "web", "--follow", "--world", str(broken), "--event", str(EVENT)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "web: latest 1 execution"
    assert re.match(
        rf"{EXECUTION}\s+RUNNING\s+2026-01-01 \S+\s+\d:\d\d:\d\d\+\s+"
        r"deploy web: app=web:v2@sha256:00261f24…$",
        lines[3],
    )
    assert any(line.startswith(f"{EXECUTION} is RUNNING (") for line in lines)
    # The states entered before the first look are listed (ok, now), the later ones as they come (->).
    shown = [re.split(r"\s{2,}", line.strip()) for line in lines if re.match(r"  (ok|now|->) ", line)]
    assert [row[2] for row in shown] == [
        "Check the request",
        "Take the deploy lock for this service",
        "Is this a rollback request?",
        "Render the new task definition and diff it",
        VERIFY,
        RELEASE_AFTER_FAILURE,
        "Deploy failed",
    ]
    assert [row[0] for row in shown][-3:] == ["->", "->", "->"]
    [error] = [line for line in lines if line.startswith("  err")]
    assert VERIFY in error and "VerifyFailed: Verify found 1 problem in web" in error
    end = lines.index(next(line for line in lines if line.startswith(f"{EXECUTION} FAILED after ")))
    assert lines[end + 1] == "Error: VerifyFailed"
    assert lines[end + 2].startswith("Cause: Verify found 1 problem in web (new revision) (nothing was changed)")


def test_sandbox_run_writes_a_graph_of_each_execution(tmp_path, capsys):
    code = main(
        [
            "sandbox",
            "run",
            "--world",
            str(EXAMPLE / "world.yaml"),
            "--event",
            str(EVENT),
            "--json",
            "--graph",
            str(tmp_path / "demo.mmd"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)  # stdout still holds the JSON and nothing else
    assert "graphs" not in summary
    [execution] = summary["executions"]
    parsed = parse((tmp_path / "demo.mmd").read_text())
    assert_every_state_once(parsed)
    assert classed(parsed, "visited") == set(execution["states"])
    assert f"wrote {tmp_path / 'demo.mmd'}" in captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["history", "--world", str(EXAMPLE / "world.yaml")], "give --event or --manifest to deliver first"),
        (["status", "web", "--event", str(EVENT)], "--event and --manifest are delivered to a sandbox world"),
    ],
)
def test_a_sandbox_needs_deliveries_and_deliveries_need_a_sandbox(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- an account (moto)

MACHINE = {
    "StartAt": "Check the request",
    "States": {
        "Check the request": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.refuse", "IsPresent": True, "Next": "Refuse the request"}],
            "Default": "Render: the (new) revision",
        },
        "Render: the (new) revision": {
            "Type": "Pass",
            "ResultPath": "$.render",
            "Next": "Wait for ECS, then check",
            "Result": {"summary": "image app web:v1 -> web:v2", "cluster": "prod", "ecsService": "web"},
        },
        "Wait for ECS, then check": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Deployed"},
        "Deployed": {"Type": "Succeed"},
        "Refuse the request": {"Type": "Fail", "Error": "InputInvalid", "Cause": "The request was refused"},
    },
}


@pytest.fixture
def account(monkeypatch):
    """Ferry's stack in a moto account: a state machine that really runs, found through the stack's outputs."""
    import boto3
    from moto import mock_aws

    from ferry import aws

    monkeypatch.delenv("FERRY_ENVIRONMENT", raising=False)
    aws.reset()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        role = boto3.client("iam").create_role(RoleName="states", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(name="ferry-dev-deploy", definition=json.dumps(MACHINE), roleArn=role)[
            "stateMachineArn"
        ]
        boto3.client("cloudformation").create_stack(
            StackName="ferry-dev",
            TemplateBody=json.dumps(
                {
                    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
                    "Outputs": {
                        "StateMachineArn": {"Value": arn},
                        "ConfigBucketName": {"Value": {"Ref": "ConfigBucket"}},
                    },
                }
            ),
        )

        def start(name: str, payload: dict, wait_for_end: bool = True) -> str:
            started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"]
            deadline = time.monotonic() + 30
            while wait_for_end and sfn.describe_execution(executionArn=started)["status"] == "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.02)  # distinct start dates
            return started

        yield start
        for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
            sfn.stop_execution(executionArn=execution["executionArn"])
    aws.reset()


WEB = {"service": "web", "images": {"app": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v2@sha256:" + "ab" * 32}}


def test_status_in_an_account_shows_the_service_executions_and_the_running_ones_progress(account, capsys):
    account("web-v1-000000000001", {**WEB, "wait": 0})
    account("web-api-v1-000000000002", {"service": "web-api", "images": {}, "wait": 0})  # another service
    account("api-v1-000000000003", {"service": "api", "images": {}, "wait": 0})
    account("web-v2-000000000004", {**WEB, "refuse": True})
    account("web-v3-000000000005", {**WEB, "wait": 3600}, wait_for_end=False)
    time.sleep(0.3)
    assert main(["status", "web", "--limit", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "web: latest 3 executions"
    assert lines[2].split() == ["NAME", "STATUS", "STARTED", "DURATION", "SUMMARY"]
    rows = lines[3:7]
    assert rows[0].split()[:2] == ["web-v3-000000000005", "RUNNING"] and rows[0].endswith("image app web:v1 -> web:v2")
    assert rows[1].split()[:2] == ["web-v2-000000000004", "FAILED"]
    assert rows[1].endswith("deploy web: app=web:v2@sha256:abababab…")
    assert rows[2].strip() == "InputInvalid: The request was refused"
    assert rows[3].split()[:2] == ["web-v1-000000000001", "SUCCEEDED"]
    assert lines[7] == ""
    progress = lines[8:]
    assert progress[0].startswith("web-v3-000000000005 is RUNNING (") and progress[0].endswith(
        "so far), now in: Wait for ECS, then check"
    )
    assert [line.split()[0] for line in progress[1:]] == ["ok", "ok", "now"]
    assert [re.split(r"\s{2,}", line.strip())[2] for line in progress[1:]] == [
        "Check the request",
        "Render: the (new) revision",
        "Wait for ECS, then check",
    ]


def test_status_follow_in_an_account_polls_until_the_end(account, capsys):
    account("web-v2-000000000001", {**WEB, "wait": 1}, wait_for_end=False)
    assert main(["status", "web", "--follow", "--interval", "0.05", "--json"]) == 0
    [execution] = json.loads(capsys.readouterr().out)["executions"]
    assert execution["status"] == "SUCCEEDED" and execution["target"] == "prod/web"
    assert execution["states"] == [
        "Check the request",
        "Render: the (new) revision",
        "Wait for ECS, then check",
        "Deployed",
    ]
    assert execution["summary"] == "image app web:v1 -> web:v2"
    assert main(["status", "api"]) == 1
    assert "no executions of service api (among the latest 1000 of ferry-dev-deploy)" in capsys.readouterr().out


def test_history_in_an_account_lists_finds_by_prefix_and_draws_the_definition_it_ran(account, capsys, tmp_path):
    account("web-v1-000000000001", {**WEB, "wait": 0})
    account("web-v2-000000000002", {**WEB, "refuse": True})
    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "SERVICE", "STATUS", "STARTED", "DURATION", "SUMMARY"]
    assert [line.split()[:3] for line in lines[1:] if not line.startswith("    ")] == [
        ["web-v2-000000000002", "web", "FAILED"],
        ["web-v1-000000000001", "web", "SUCCEEDED"],
    ]

    assert main(["history", "web-v2", "--graph", str(tmp_path / "run.md")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "== web-v2-000000000002  (web)  FAILED"
    assert re.search(r"\n +4 +\+\S+ +FailStateEntered +Refuse the request\n", out)
    assert "\nError: InputInvalid\nCause: The request was refused\n" in out
    [block] = re.findall(r"```mermaid\n(.*?)```", (tmp_path / "run.md").read_text(), re.S)
    parsed = parse(block)
    assert sorted(names_by_id(parsed).values()) == sorted(MACHINE["States"])
    assert classed(parsed, "visited") == {"Check the request", "Refuse the request"}
    assert classed(parsed, "failed") == {"Refuse the request"}
    assert ("Check the request", "-->", "refuse present", "Refuse the request") in taken_edges(parsed)

    assert main(["history", "web-v"]) == 2
    assert (
        "web-v starts 2 execution names (web-v2-000000000002, web-v1-000000000001): give more of the name"
        in capsys.readouterr().err
    )
    assert main(["history", "nope"]) == 2
    assert "no execution of ferry-dev-deploy is named nope" in capsys.readouterr().err
    assert main(["history", "web-v1-000000000001", "--stack", "ferry-prod"]) == 2
    assert "cannot read stack ferry-prod" in capsys.readouterr().err
