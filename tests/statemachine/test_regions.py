"""Whole deploys outside us-east-1, of a service written the way real task definitions are: a sidecar listed
first, secrets and parameters by full ARN in the service's own region, logs in that region."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_cli.sandbox.run import Delivery, run

ACCOUNT = "210987654321"


def task_definition(region: str) -> dict[str, Any]:
    registry = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"
    logs = {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/ecs/shop", "awslogs-region": region, "awslogs-stream-prefix": "shop"},
    }
    return {
        "family": "shop",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "1024",
        "memory": "2048",
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shop-execution",
        "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/shop-task",
        "containerDefinitions": [
            {
                "name": "envoy",
                "image": f"{registry}/envoy:v1.31",
                "essential": True,
                "portMappings": [{"containerPort": 8443, "protocol": "tcp"}],
                "logConfiguration": logs,
            },
            {
                "name": "shop",
                "image": f"{registry}/shop:2026.12.1",
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "AWS_REGION", "value": region}],
                "secrets": [
                    {
                        "name": "DATABASE_URL",
                        "valueFrom": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:shop/database-url",
                    },
                    {
                        "name": "STRIPE_KEY",
                        "valueFrom": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:shop/stripe:api_key::",
                    },
                    {"name": "FEATURES", "valueFrom": f"arn:aws:ssm:{region}:{ACCOUNT}:parameter/shop/features"},
                ],
                "dependsOn": [{"containerName": "envoy", "condition": "START"}],
                "logConfiguration": logs,
            },
        ],
    }


CONFIG = """cluster: shop-prod
service: shop
containers: {shop: {repository: shop}}
triggers: [{repository: shop, tags: ["2026.*"]}]
strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}
healthGates: {alarms: [shop-5xx], bakeSeconds: 120}
migrations: [{name: migrate, container: shop, command: [bin/migrate], timeoutSeconds: 600}]
"""


def world(folder: Path, region: str) -> Path:
    (folder / "shop-task-def.json").write_text(json.dumps({"taskDefinition": task_definition(region)}))
    (folder / "registry" / "shop").mkdir(parents=True)
    (folder / "registry" / "shop" / "ferry.yaml").write_text(CONFIG)
    (folder / "world.yaml").write_text(
        yaml.safe_dump(
            {
                "account": ACCOUNT,
                "region": region,
                "ecr": {"shop": ["2026.12.1", "2026.12.2"], "envoy": ["v1.31"]},
                "services": [
                    {
                        "cluster": "shop-prod",
                        "name": "shop",
                        "desiredCount": 3,
                        "running": {"envoy": "envoy:v1.31", "shop": "shop:2026.12.1"},
                        "taskDefinition": "shop-task-def.json",
                        "targetGroup": {"name": "shop-tg", "container": "envoy", "port": 8443},
                    }
                ],
                "secrets": {
                    "shop/database-url": {"value": "postgres://shop@db/shop"},
                    "shop/stripe": {"value": json.dumps({"api_key": "sk_live_do_not_print"})},
                },
                "parameters": {"/shop/features": "checkout-v2"},
                "roles": ["shop-execution", "shop-task"],
                "logGroups": ["/ecs/shop"],
                "alarms": {"shop-5xx": "OK"},
                "migration": {"exitCode": 0, "logLines": ["migrated 3 tables"]},
                "registry": "registry",
            }
        )
    )
    return folder / "world.yaml"


@pytest.mark.parametrize("region", ["ap-northeast-1", "eu-west-1"])
def test_a_canary_deploy_with_a_migration_and_a_bake_outside_us_east_1(tmp_path, region):
    path = world(tmp_path, region)
    digest = "sha256:" + hashlib.sha256(b"shop:2026.12.2").hexdigest()
    push = {
        "id": "push-1",
        "source": "aws.ecr",
        "detail-type": "ECR Image Action",
        "account": ACCOUNT,
        "region": region,
        "detail": {
            "action-type": "PUSH",
            "result": "SUCCESS",
            "repository-name": "shop",
            "image-tag": "2026.12.2",
            "image-digest": digest,
        },
    }
    (tmp_path / "push.json").write_text(json.dumps(push))
    summary = run(path, [Delivery("event", tmp_path / "push.json", push)])
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    assert {
        "Run the migration task and wait for it to stop",
        "Check the canary",
        "Bake while watching the alarms",
        "Stop the canary tasks",
        "Deployed",
    } <= set(execution["states"])
    shop = summary["services"]["shop-prod/shop"]
    assert shop["taskDefinition"] == "shop:2" and shop["runningCount"] == shop["desiredCount"] == 3
    assert shop["images"]["shop"] == f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/shop@{digest}"
    assert shop["images"]["envoy"] == f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/envoy:v1.31"
    assert summary["canaryTasks"] == 0 and summary["migrationTasks"] == {"started": 1, "running": 0}
    assert summary["locksHeld"] == 0
    everything = json.dumps(summary, default=str)
    assert "sk_live_do_not_print" not in everything and "postgres://shop@db/shop" not in everything
