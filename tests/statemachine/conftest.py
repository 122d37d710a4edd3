"""Scenario helpers: a world based on the shipped example, events built in place."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry_cli.sandbox.sandbox import REPO_ROOT
from ferry_cli.sandbox.run import Delivery, run

EXAMPLE = REPO_ROOT / "examples" / "sandbox"


def failed_at(summary: dict[str, Any], state: str) -> dict[str, Any]:
    """The one execution, checked to have failed in `state` with nothing changed and no lock left."""
    [execution] = summary["executions"]
    assert execution["status"] == "FAILED", execution
    assert execution["states"][-3:] == [state, "Release the deploy lock after the failure", "Deploy failed"], execution[
        "states"
    ]
    web = summary["services"]["prod/web"]
    assert (web["taskDefinition"], web["desiredCount"], web["runningCount"]) == ("web:1", 2, 2)
    assert web["images"]["app"].endswith("/web:v1")
    assert summary["locksHeld"] == 0
    return execution


def push_event(repository: str, tag: str, event_id: str = "event-1") -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "aws.ecr",
        "detail-type": "ECR Image Action",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {
            "action-type": "PUSH",
            "result": "SUCCESS",
            "repository-name": repository,
            "image-tag": tag,
            "image-digest": "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest(),
        },
    }


class Scenario:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        shutil.copy(EXAMPLE / "web-task-def.json", tmp_path / "web-task-def.json")
        shutil.copytree(EXAMPLE / "registry", tmp_path / "registry")
        self.world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())

    def config(self, name: str, text: str, filename: str = "ferry.yaml") -> None:
        """Write a file of service `name`'s config folder (the config itself by default)."""
        folder = self.dir / "registry" / name
        folder.mkdir(parents=True, exist_ok=True)
        if filename.startswith("ferry."):
            for old in folder.glob("ferry.*"):
                old.unlink()
        (folder / filename).write_text(text)

    def manifest(self, name: str, body: Any) -> Delivery:
        """A manifest to drop as manifests/<name>.json (a dict is written as JSON, bytes or str as they are)."""
        path = self.dir / "manifests" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body if isinstance(body, str) else json.dumps(body))
        return Delivery("manifest", path)

    def service(self, name: str, desired: int = 1, config: str | None = None) -> None:
        """Another Fargate service on cluster prod, running web:v1 like the example, with its own family."""
        spec = json.loads((self.dir / "web-task-def.json").read_text())
        spec["family"] = name
        (self.dir / f"{name}-task-def.json").write_text(json.dumps(spec))
        self.world["services"].append(
            {
                "cluster": "prod",
                "name": name,
                "desiredCount": desired,
                "running": {"app": "web:v1", "nginx": "nginx:1.27"},
                "taskDefinition": f"{name}-task-def.json",
            }
        )
        self.config(name, config or f"cluster: prod\nservice: {name}\ncontainers: {{app: {{repository: web}}}}\n")

    def run(self, *items: dict[str, Any] | Delivery, **kwargs: Any) -> dict[str, Any]:
        world_path = self.dir / "world.yaml"
        world_path.write_text(yaml.safe_dump(self.world))
        deliveries = []
        for i, item in enumerate(items):
            if isinstance(item, Delivery):
                deliveries.append(item)
                continue
            path = self.dir / f"event-{i}.json"
            path.write_text(json.dumps(item))
            deliveries.append(Delivery("event", path, copy.deepcopy(item)))
        return run(world_path, deliveries, **kwargs)


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)
