"""What an execution carries: small state even for a big service, and never a secret's value anywhere."""

from __future__ import annotations

import json

import yaml

from ferry_cli.sandbox.run import deliver_all, summarise, world_session

from .conftest import push_event

SECRET = "sandbox-db-password-do-not-print"  # the value examples/sandbox/world.yaml gives prod/web/db-password
SIDECARS = [f"side{i:02d}" for i in range(1, 19)]  # with app and nginx: 20 containers


def big_service(scenario) -> None:
    """web with 20 containers, 19 of them deployed from the web repository, on the default (canary) strategy."""
    spec = json.loads((scenario.dir / "web-task-def.json").read_text())
    app = spec["containerDefinitions"][0]
    for name in SIDECARS:
        spec["containerDefinitions"].append(
            {
                "name": name,
                "image": app["image"],
                "essential": False,
                "memory": 64,
                "environment": [{"name": "ROLE", "value": name}],
                "secrets": app["secrets"],
                "logConfiguration": app["logConfiguration"],
            }
        )
    (scenario.dir / "web-task-def.json").write_text(json.dumps(spec))
    scenario.world["services"][0]["running"].update({name: "web:v1" for name in SIDECARS})
    containers = {"app": {"repository": "web"}, **{name: {"repository": "web"} for name in SIDECARS}}
    scenario.config(
        "web",
        yaml.safe_dump(
            {
                "cluster": "prod",
                "service": "web",
                "containers": containers,
                "healthGates": {"alarms": ["web-5xx"], "bakeSeconds": 60},
            }
        ),
    )


def test_a_20_container_canary_deploy_keeps_every_state_small_and_every_secret_out(scenario):
    big_service(scenario)
    world_path = scenario.dir / "world.yaml"
    world_path.write_text(yaml.safe_dump(scenario.world))
    event_path = scenario.dir / "push.json"
    event_path.write_text(json.dumps(push_event("web", "v2")))
    from ferry_cli.sandbox.run import load_delivery

    with world_session(world_path) as (sandbox, _world):
        delivered = deliver_all(sandbox, _world, [load_delivery("event", event_path)])
        sandbox.wait_for_executions()
        summary = summarise(sandbox, delivered)
        [execution] = summary["executions"]
        assert execution["status"] == "SUCCEEDED", execution
        assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"

        events = sandbox.history(sandbox.executions()[0]["executionArn"])
        payloads = [
            v
            for e in events
            for details in e.values()
            if isinstance(details, dict)
            for k, v in details.items()
            if k in ("input", "output") and isinstance(v, str)
        ]
        assert payloads and max(len(p.encode()) for p in payloads) < 32 * 1024, max(len(p) for p in payloads)

        s3 = sandbox.client("s3")
        stored = []
        for bucket in (sandbox.artefacts_bucket, sandbox.config_bucket):
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                stored.append((item["Key"], s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()))
        assert any(key.endswith("task-definition.input.json") for key, _ in stored)
        rows = sandbox.client("dynamodb").scan(TableName=sandbox.lock_table)["Items"]
        log_lines = list(sandbox.logs.lines)

    assert log_lines and rows
    for where, text in (
        [("history", p) for p in payloads]
        + stored
        + [("log", line) for line in log_lines]
        + [("lock table", json.dumps(rows))]
    ):
        assert SECRET not in text, f"the secret's value leaked into {where}"
