"""Causes that fit: a step's long error ends the execution on its normal failure path, the whole of it kept in S3.

Step Functions takes a Cause of at most 32768 characters (ExecutionFailedEventDetails, TaskFailedEventDetails and
LambdaFunctionFailedEventDetails: `cause`, botocore's SensitiveCause, "max": 32768), and a state's output of at most
256 KiB (the Step Functions quotas page, "Maximum input or output size for a task, state, or execution"). A Lambda
step's Catch puts the error document under $.failure: 500 unresolved placeholders made a 133 KB message, and the
execution failed in Render with States.DataLimitExceeded, which no Catch matches: no "Release the deploy lock after
the failure", no "Deploy failed", not one placeholder named.
"""

from __future__ import annotations

import json

import yaml

from ferry_cli.sandbox.run import deliver_all, load_delivery, summarise, world_session

from .conftest import failed_at, push_event
from .test_render import WEB, template_of

RENDER = "Render the new task definition and diff it"
MISSING = [f"MISSING_{i:03d}" for i in range(500)]


def test_500_unresolved_placeholders_fail_render_naming_the_first_few_and_keeping_all_in_the_artefacts_bucket(
    scenario,
):
    environment = ", ".join(
        f'{{"name": "V{i:03d}", "value": "{{{{ must_env `{name}` }}}}"}}' for i, name in enumerate(MISSING)
    )
    port = '{"name": "PORT", "value": "8080"}'
    scenario.config("web", template_of(scenario, **{port: f"{port}, {environment}"}), "task-definition.json")
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\n")
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    (scenario.dir / "push.json").write_text(json.dumps(push_event("web", "v2")))

    with world_session(world_path) as (sandbox, world):
        delivered = deliver_all(sandbox, world, [load_delivery("event", scenario.dir / "push.json")])
        sandbox.wait_for_executions()
        summary = summarise(sandbox, delivered)
        s3 = sandbox.client("s3")
        stored = {
            item["Key"]: s3.get_object(Bucket=sandbox.artefacts_bucket, Key=item["Key"])["Body"].read().decode()
            for item in s3.list_objects_v2(Bucket=sandbox.artefacts_bucket).get("Contents", [])
        }
        terminal = list(sandbox.terminal_errors)
        [arn] = [e["executionArn"] for e in sandbox.executions()]
        [failed] = [e for e in sandbox.history(arn) if e["type"] == "ExecutionFailed"]

    assert terminal == []
    execution = failed_at(summary, RENDER)  # the normal failure path: the lock released, the service untouched
    assert execution["error"] == "TemplateUnresolved"
    raw = failed["executionFailedEventDetails"]["cause"]  # the Lambda error document, as the Fail state got it
    assert len(raw) <= 32768 // 2, len(raw)
    cause = execution["cause"]  # its errorMessage
    assert "500 template placeholders could not be resolved" in cause
    assert all(f'{{{{ must_env "{name}" }}}}' in cause for name in MISSING[:5]), cause
    assert MISSING[-1] not in cause
    [key] = [k for k in stored if k.startswith(f"executions/{execution['name']}/errors/")]
    assert f"s3://{sandbox.artefacts_bucket}/{key}" in cause
    assert "more lines not shown" in cause
    whole = stored[key]
    assert "500 template placeholders could not be resolved" in whole
    assert all(f'must_env "{name}"' in whole for name in MISSING)
