"""Service configs from the config registry (the config bucket).

A service is deployable only once `services/<name>/ferry.yaml` (or .yml /
.json) is in the registry and valid against service-config.schema.json.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from botocore.exceptions import ClientError

from . import aws
from .errors import ClusterNotAllowed, ConfigInvalid, ServiceNotRegistered
from .validation import require_valid, with_defaults

SCHEMA = "service-config.schema.json"
PREFIX = "services/"
CONFIG_FILES = ("ferry.yaml", "ferry.yml", "ferry.json")
MAX_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    cluster: str
    service: str
    containers: dict[str, str]  # container -> repository
    triggers: tuple[tuple[str, tuple[str, ...]], ...]
    strategy: str
    deployment_timeout: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.service}"

    def on_allowed_cluster(self, allowed: tuple[str, ...]) -> bool:
        return self.cluster in allowed

    def containers_fed_by(self, repository: str) -> list[str]:
        return sorted(c for c, repo in self.containers.items() if repo == repository)

    def deploys_push(self, repository: str, tag: str) -> bool:
        return any(repo == repository and any(fnmatch.fnmatchcase(tag, p) for p in patterns)
                   for repo, patterns in self.triggers)


def parse(name: str, text: str, source: str) -> ServiceConfig:
    """Parse and validate one config; `source` names the file in error messages."""
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigInvalid(f"{source} is not valid {'JSON' if source.endswith('.json') else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{source}: $: expected a mapping of settings, got {type(data).__name__}")
    require_valid(data, SCHEMA, source, ConfigInvalid)
    data = with_defaults(data, SCHEMA)
    containers = {c: spec["repository"] for c, spec in data["containers"].items()}
    triggers = data.get("triggers") or [{"repository": r} for r in sorted(set(containers.values()))]
    for i, trigger in enumerate(triggers):
        if trigger["repository"] not in containers.values():
            raise ConfigInvalid(
                f"{source}: $.triggers[{i}].repository: {trigger['repository']!r} feeds no container; "
                f"use one of {sorted(set(containers.values()))} or add it under containers"
            )
    return ServiceConfig(
        name=name,
        cluster=data["cluster"],
        service=data["service"],
        containers=containers,
        triggers=tuple((t["repository"], tuple(t.get("tags") or ["*"])) for t in triggers),
        strategy=data["strategy"]["type"],
        deployment_timeout=data["timeouts"]["deployment"],
        raw=data,
    )


def check_cluster(config: ServiceConfig, allowed: tuple[str, ...]) -> None:
    if not config.on_allowed_cluster(allowed):
        raise ClusterNotAllowed(
            f"service {config.name} is on cluster {config.cluster!r}, which this Ferry installation may not touch "
            f"(allowed: {', '.join(allowed)}); add it to the stack's Clusters parameter"
        )


def _read(bucket: str, key: str) -> str | None:
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        # Without s3:ListBucket on the key's prefix, S3 answers a missing key with 403, not 404.
        if aws.error_code(exc) in ("NoSuchKey", "AccessDenied", "404", "403"):
            return None
        raise ConfigInvalid(f"s3://{bucket}/{key} could not be read: {exc}") from exc
    if obj.get("ContentLength", 0) > MAX_CONFIG_BYTES:
        raise ConfigInvalid(f"s3://{bucket}/{key} is larger than {MAX_CONFIG_BYTES} bytes")
    return obj["Body"].read().decode("utf-8")


def load(bucket: str, name: str) -> ServiceConfig:
    """The config of one registered service."""
    if not name or "/" in name or name.startswith("."):
        raise ServiceNotRegistered(f"{name!r} is not a service name: use the folder name under {PREFIX} in the config bucket")
    for filename in CONFIG_FILES:
        key = f"{PREFIX}{name}/{filename}"
        text = _read(bucket, key)
        if text is not None:
            return parse(name, text, f"s3://{bucket}/{key}")
    raise ServiceNotRegistered(
        f"service {name!r} has no config in the registry: add {PREFIX}{name}/ferry.yaml to s3://{bucket}"
    )


def registered_names(bucket: str) -> list[str]:
    s3 = aws.client("s3")
    names: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(PREFIX):].split("/")
            if len(parts) == 2 and parts[1] in CONFIG_FILES:
                names.add(parts[0])
    return sorted(names)


def load_all(bucket: str) -> tuple[list[ServiceConfig], list[str]]:
    """Every registered config; a broken one is reported, not fatal to the others."""
    configs, broken = [], []
    for name in registered_names(bucket):
        try:
            configs.append(load(bucket, name))
        except (ConfigInvalid, ServiceNotRegistered) as exc:
            broken.append(str(exc))
    return configs, broken
