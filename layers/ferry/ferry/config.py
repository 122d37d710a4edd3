"""Service configs from the config registry (the config bucket).

A service is deployable only once `services/<name>/ferry.yaml` (or .yml,
.json, .jsonnet) is in the registry and valid against
service-config.schema.json. The files beside it (task definition templates,
Jsonnet libraries) are read through the same `Folder`, which is either the
registry in S3 or a directory on a laptop (`ferry render --config-dir`).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from botocore.exceptions import ClientError

from . import aws
from .errors import ClusterNotAllowed, ConfigInvalid, FerryError, ServiceNotRegistered
from .validation import require_valid, with_defaults

SCHEMA = "service-config.schema.json"
PREFIX = "services/"
CONFIG_FILES = ("ferry.yaml", "ferry.yml", "ferry.json", "ferry.jsonnet")
MAX_CONFIG_BYTES = 256 * 1024
MAX_FOLDER_FILES = 50
# Strategies this version of Ferry runs; the schema names the others so configs can be written ahead.
AVAILABLE_STRATEGIES = ("canary", "rolling")


class Folder(Protocol):
    """The files of one service's config folder."""

    def read(self, filename: str) -> str | None: ...
    def names(self) -> list[str]: ...
    def describe(self, filename: str) -> str: ...


@dataclass(frozen=True)
class S3Folder:
    bucket: str
    name: str

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.name}/"

    def describe(self, filename: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{filename}"

    def read(self, filename: str) -> str | None:
        key = self.prefix + filename
        try:
            obj = aws.client("s3").get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            # Without s3:ListBucket on the key's prefix, S3 answers a missing key with 403, not 404.
            if aws.error_code(exc) in ("NoSuchKey", "AccessDenied", "404", "403"):
                return None
            raise ConfigInvalid(f"{self.describe(filename)} could not be read: {exc}") from exc
        if obj.get("ContentLength", 0) > MAX_CONFIG_BYTES:
            raise ConfigInvalid(f"{self.describe(filename)} is larger than {MAX_CONFIG_BYTES} bytes: split it up")
        return obj["Body"].read().decode("utf-8")

    def names(self) -> list[str]:
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        found = [o["Key"][len(self.prefix):] for page in pages for o in page.get("Contents", [])]
        return sorted(n for n in found if n and "/" not in n)[:MAX_FOLDER_FILES]


@dataclass(frozen=True)
class LocalFolder:
    path: Path

    def describe(self, filename: str) -> str:
        return str(self.path / filename)

    def read(self, filename: str) -> str | None:
        target = self.path / filename
        if "/" in filename or not target.is_file():
            return None
        if target.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigInvalid(f"{target} is larger than {MAX_CONFIG_BYTES} bytes: split it up")
        return target.read_text()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_file())[:MAX_FOLDER_FILES]


@dataclass(frozen=True)
class Migration:
    name: str
    container: str
    command: tuple[str, ...]
    environment: dict[str, str]
    timeout: int


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
    folder: Folder | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.service}"

    @property
    def values(self) -> dict[str, str]:
        return dict(self.raw.get("values", {}))

    @property
    def template(self) -> str | None:
        """The task definition template's file name, or None for `current`."""
        source = self.raw["taskDefinition"]
        return source["template"] if isinstance(source, dict) else None

    @property
    def migrations(self) -> tuple[Migration, ...]:
        return tuple(Migration(m["name"], m["container"], tuple(m["command"]), dict(m.get("environment", {})),
                               m["timeoutSeconds"]) for m in self.raw.get("migrations", []))

    @property
    def alarms(self) -> tuple[str, ...]:
        return tuple(self.raw["healthGates"].get("alarms", []))

    @property
    def target_groups(self) -> tuple[str, ...]:
        return tuple(self.raw["healthGates"].get("targetGroups", []))

    @property
    def timeouts(self) -> dict[str, int]:
        return dict(self.raw["timeouts"])

    @property
    def read_secret_values(self) -> bool:
        return bool(self.raw["verify"]["readSecretValues"])

    def on_allowed_cluster(self, allowed: tuple[str, ...]) -> bool:
        return self.cluster in allowed

    def containers_fed_by(self, repository: str) -> list[str]:
        return sorted(c for c, repo in self.containers.items() if repo == repository)

    def deploys_push(self, repository: str, tag: str) -> bool:
        return any(repo == repository and any(fnmatch.fnmatchcase(tag, p) for p in patterns)
                   for repo, patterns in self.triggers)

    def read_file(self, filename: str) -> tuple[str, str]:
        """(text, description) of a file beside the config."""
        text = self.folder.read(filename) if self.folder else None
        where = self.folder.describe(filename) if self.folder else filename
        if text is None:
            raise ConfigInvalid(f"{where} does not exist: the config's taskDefinition.template names it; add the file beside ferry.yaml")
        return text, where


def jsonnet_imports(folder: Folder | None) -> dict[str, str]:
    """The files a Jsonnet config or template beside them may import."""
    if folder is None:
        return {}
    return {n: folder.read(n) or "" for n in folder.names() if n.endswith((".jsonnet", ".libsonnet", ".json"))}


def _decode(name: str, text: str, source: str, folder: Folder | None, environment: str) -> Any:
    if source.endswith(".jsonnet"):
        from . import templating  # imported here: only Jsonnet configs pay for _jsonnet

        context = templating.Context(environment=environment, service=name)
        return templating.render_jsonnet(text, source, context, jsonnet_imports(folder))
    try:
        return json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigInvalid(f"{source} is not valid {'JSON' if source.endswith('.json') else 'YAML'}: {exc}") from exc


def parse(name: str, text: str, source: str, folder: Folder | None = None, environment: str = "") -> ServiceConfig:
    """Parse and validate one config; `source` names the file in error messages."""
    data = _decode(name, text, source, folder, environment)
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{source}: $: expected a mapping of settings, got {type(data).__name__}")
    require_valid(data, SCHEMA, source, ConfigInvalid)
    data = with_defaults(data, SCHEMA)
    containers = {c: spec["repository"] for c, spec in data["containers"].items()}
    # No `triggers`: every push of a container's repository deploys; `triggers: []`: no push does (manual deploys only).
    triggers = data["triggers"] if "triggers" in data else [{"repository": r} for r in sorted(set(containers.values()))]
    for i, trigger in enumerate(triggers):
        if trigger["repository"] not in containers.values():
            raise ConfigInvalid(
                f"{source}: $.triggers[{i}].repository: {trigger['repository']!r} feeds no container; "
                f"use one of {sorted(set(containers.values()))} or add it under containers"
            )
    strategy = data["strategy"]["type"]
    if strategy not in AVAILABLE_STRATEGIES:
        raise ConfigInvalid(
            f"{source}: $.strategy.type: {strategy!r} is not available in this version of Ferry; "
            f"use one of {list(AVAILABLE_STRATEGIES)}"
        )
    names = [m["name"] for m in data.get("migrations", [])]
    for i, duplicate in enumerate(names):
        if names.index(duplicate) != i:
            raise ConfigInvalid(f"{source}: $.migrations[{i}].name: {duplicate!r} is used twice; give each migration its own name")
    return ServiceConfig(
        name=name,
        cluster=data["cluster"],
        service=data["service"],
        containers=containers,
        triggers=tuple((t["repository"], tuple(t.get("tags") or ["*"])) for t in triggers),
        strategy=strategy,
        deployment_timeout=data["timeouts"]["deployment"],
        raw=data,
        folder=folder,
    )


def check_cluster(config: ServiceConfig, allowed: tuple[str, ...]) -> None:
    if not config.on_allowed_cluster(allowed):
        raise ClusterNotAllowed(
            f"service {config.name} is on cluster {config.cluster!r}, which this Ferry installation may not touch "
            f"(allowed: {', '.join(allowed)}); add it to the stack's Clusters parameter"
        )


def load_folder(folder: Folder, name: str, environment: str = "") -> ServiceConfig | None:
    for filename in CONFIG_FILES:
        text = folder.read(filename)
        if text is not None:
            return parse(name, text, folder.describe(filename), folder, environment)
    return None


def load(bucket: str, name: str, environment: str = "") -> ServiceConfig:
    """The config of one registered service."""
    if not name or "/" in name or name.startswith("."):
        raise ServiceNotRegistered(f"{name!r} is not a service name: use the folder name under {PREFIX} in the config bucket")
    found = load_folder(S3Folder(bucket, name), name, environment)
    if found is None:
        raise ServiceNotRegistered(
            f"service {name!r} has no config in the registry: add {PREFIX}{name}/ferry.yaml to s3://{bucket}"
        )
    return found


def load_local(path: Path, environment: str = "") -> ServiceConfig:
    """A config folder on a laptop; the service's registry name is the folder's name."""
    path = path.resolve()
    found = load_folder(LocalFolder(path), path.name, environment) if path.is_dir() else None
    if found is None:
        raise ServiceNotRegistered(f"{path} has none of {', '.join(CONFIG_FILES)}: point --config-dir at a service's config folder")
    return found


def registered_names(bucket: str) -> list[str]:
    s3 = aws.client("s3")
    names: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(PREFIX):].split("/")
            if len(parts) == 2 and parts[1] in CONFIG_FILES:
                names.add(parts[0])
    return sorted(names)


def load_all(bucket: str, environment: str = "") -> tuple[list[ServiceConfig], list[str]]:
    """Every registered config; a broken one is reported, not fatal to the others."""
    configs, broken = [], []
    for name in registered_names(bucket):
        try:
            configs.append(load(bucket, name, environment))
        except FerryError as exc:  # ConfigInvalid, TemplateUnresolved (a Jsonnet config), ...
            broken.append(str(exc))
    return configs, broken
