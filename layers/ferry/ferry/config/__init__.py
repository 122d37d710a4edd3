"""Service configs from the config registry (the config bucket).

A service is deployable only once `services/<name>/ferry.yaml` (or .yml,
.json, .jsonnet) is in the registry and valid against
service-config.schema.json. The files beside it (task definition templates,
Jsonnet libraries) are read through the same `Folder`, which is either the
registry in S3 or a directory on a laptop (`ferry render --config-dir`).
"""

from __future__ import annotations

import fnmatch
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ferry import aws
from ferry.errors import ClusterNotAllowed, ConfigInvalid, FerryError, ServiceNotRegistered
from ferry.config.validation import MAX_DEPTH, cap, json_object, path_part, require_valid, shape_problems, with_defaults

SCHEMA = "service-config.schema.json"
PREFIX = "services/"
CONFIG_FILES = ("ferry.yaml", "ferry.yml", "ferry.json", "ferry.jsonnet")
MAX_CONFIG_BYTES = 256 * 1024
MAX_YAML_VALUES = 100_000  # values a YAML file may hold, an alias counting all of the value it repeats
MAX_FOLDER_FILES = 50
# The strategies (the schema's enum; canary is the default).
AVAILABLE_STRATEGIES = ("canary", "rolling", "native")


class Folder(Protocol):
    """The files of one service's config folder."""

    def read(self, filename: str) -> str | None: ...
    def names(self) -> list[str]: ...
    def describe(self, filename: str) -> str: ...


def _too_big(where: str, size: int | None = None) -> str:
    size_ = f"{size} bytes, more than" if size is not None else "more than"
    return (
        f"{where} is {size_} the {MAX_CONFIG_BYTES} bytes ({MAX_CONFIG_BYTES // 1024} KiB) Ferry reads of a config "
        "file: split it up (a Jsonnet library beside it, or a smaller template)"
    )


def _text(body: bytes, where: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(
            f"{where} is not UTF-8 text (byte {exc.start} is {body[exc.start : exc.start + 1]!r}): save it as UTF-8"
        ) from None


def _transient(exc: ClientError) -> bool:
    """An S3 error that says nothing about the object: a 5xx, or S3 asking the caller to slow down."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or aws.error_code(exc) in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout")


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
            if _transient(exc):
                # S3 did not answer (5xx, SlowDown): the config is not broken, so it must not be skipped as broken;
                # the error goes up, and the caller is retried (Lambda redelivers the router's push event; a
                # step's Retry runs it again).
                raise
            raise ConfigInvalid(f"{self.describe(filename)} could not be read: {exc}") from exc
        if obj.get("ContentLength", 0) > MAX_CONFIG_BYTES:
            raise ConfigInvalid(_too_big(self.describe(filename), obj["ContentLength"]))
        body = obj["Body"].read(MAX_CONFIG_BYTES + 1)  # never more than the limit, whatever ContentLength said
        if len(body) > MAX_CONFIG_BYTES:
            raise ConfigInvalid(_too_big(self.describe(filename)))
        return _text(body, self.describe(filename))

    def names(self) -> list[str]:
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        found = [o["Key"][len(self.prefix) :] for page in pages for o in page.get("Contents", [])]
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
        size = target.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigInvalid(_too_big(str(target), size))
        return _text(target.read_bytes(), str(target))

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
        return tuple(
            Migration(
                m["name"], m["container"], tuple(m["command"]), dict(m.get("environment", {})), m["timeoutSeconds"]
            )
            for m in self.raw.get("migrations", [])
        )

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
        return any(
            repo == repository and any(fnmatch.fnmatchcase(tag, p) for p in patterns)
            for repo, patterns in self.triggers
        )

    def read_file(self, filename: str) -> tuple[str, str]:
        """(text, description) of a file beside the config."""
        text = self.folder.read(filename) if self.folder else None
        where = self.folder.describe(filename) if self.folder else filename
        if text is None:
            raise ConfigInvalid(
                f"{where} does not exist: the config's taskDefinition.template names it; add the file beside ferry.yaml"
            )
        return text, where


def jsonnet_imports(folder: Folder | None) -> dict[str, str]:
    """The files a Jsonnet config or template beside them may import."""
    if folder is None:
        return {}
    return {n: folder.read(n) or "" for n in folder.names() if n.endswith((".jsonnet", ".libsonnet", ".json"))}


class _Refused(Exception):
    """A YAML document Ferry will not build: where (JSON path), what and how to fix it, and its line."""

    def __init__(self, path: str, message: str, mark: Any = None):
        super().__init__(f"{path}: {message}" + (f" (line {mark.line + 1})" if mark is not None else ""))


@functools.cache
def _strict_loader() -> Any:
    """The loader class, built on first use: PyYAML is imported only by steps that read a config."""
    import yaml

    class _StrictLoader(yaml.SafeLoader):
        """yaml.safe_load's loader, refusing what safe_load accepts silently or pays for dearly.

        - a key written twice in one mapping (safe_load keeps the last; `<<` merges may still be overridden);
        - nesting deeper than MAX_DEPTH (the composer is recursive: RecursionError otherwise);
        - more than MAX_YAML_VALUES values once aliases are expanded (a "billion laughs" file is a few
          hundred bytes; every check after loading, and the error messages, would walk it whole);
        - an alias inside the value it names (a value containing itself: RecursionError, or a loop).
        """

        def __init__(self, stream: str):
            super().__init__(stream)
            self._at: list[str] = []  # JSON path labels of the nodes being composed
            self._open: set[str] = set()  # anchors whose value is being composed
            self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

        def _path(self) -> str:
            return "$" + "".join(self._at)

        def compose_node(self, parent: Any, index: Any) -> Any:
            if parent is None or index is None:  # the document, or a mapping's key: the mapping's own path
                label = ""
            elif isinstance(index, int):
                label = f"[{index}]"
            else:
                label = path_part(index.value) if isinstance(index, yaml.ScalarNode) else ".<key>"
            self._at.append(label)
            try:
                event = self.peek_event()
                if isinstance(event, yaml.AliasEvent):
                    if event.anchor in self._open:
                        raise _Refused(
                            self._path(),
                            f"alias *{event.anchor} is inside the value &{event.anchor} it repeats, "
                            "which would contain itself forever: write the value out",
                            event.start_mark,
                        )
                    return super().compose_node(parent, index)
                depth = len(self._at) - 1  # the document is at depth 0; a key counts like a value
                if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) and depth >= MAX_DEPTH:
                    raise _Refused(
                        self._path(),
                        f"nested more than {MAX_DEPTH} levels deep: Ferry's settings need a few levels; flatten it",
                        event.start_mark,
                    )
                anchor = event.anchor
                if anchor is not None:
                    self._open.add(anchor)
                try:
                    node = super().compose_node(parent, index)
                finally:
                    self._open.discard(anchor)
                self._measure(node)
                if isinstance(node, yaml.MappingNode):
                    self._check_keys(node)
                return node
            finally:
                self._at.pop()

        def _measure(self, node: Any) -> None:
            if isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._sizes[id(child)] for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            else:
                size = 1
            if size > MAX_YAML_VALUES:
                raise _Refused(
                    self._path(),
                    f"holds more than {MAX_YAML_VALUES} values once its aliases (*name) are "
                    "expanded: a config needs far fewer; repeat less, or write the values out",
                    node.start_mark,
                )
            self._sizes[id(node)] = size

        def _check_keys(self, node: Any) -> None:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` may be overridden; a non-scalar key is refused when it is built
                try:
                    key = self.construct_object(key_node)
                    hash(key)
                except Exception:  # refused when the document is built, with PyYAML's own message
                    key = (key_node.tag, key_node.value)
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise _Refused(
                        self._path(),
                        f"key {cap(key_node.value)} is written twice (lines {first} and "
                        f"{key_node.start_mark.line + 1}): keep one; YAML would silently use the last",
                    )
                seen[key] = key_node

    return _StrictLoader


def _decode(name: str, text: str, source: str, folder: Folder | None, environment: str) -> Any:
    if source.endswith(".jsonnet"):
        from ferry.config import templating  # imported here: only Jsonnet configs pay for _jsonnet

        context = templating.Context(environment=environment, service=name)
        try:
            return templating.render_jsonnet(text, source, context, jsonnet_imports(folder))
        except RecursionError:
            raise ConfigInvalid(f"{source}: $: nested more than {MAX_DEPTH} levels deep: flatten it") from None
    import yaml

    kind = "JSON" if source.endswith(".json") else "YAML"
    try:
        if kind == "JSON":
            return json.loads(text, object_pairs_hook=json_object)
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader
    except _Refused as exc:
        raise ConfigInvalid(f"{source}: {exc}") from None
    except RecursionError:  # json's decoder, past ~1000 levels
        raise ConfigInvalid(
            f"{source}: $: nested more than {MAX_DEPTH} levels deep: Ferry's settings need a few levels; flatten it"
        ) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigInvalid(f"{source} is not valid {kind}: {exc}") from exc


def parse(name: str, text: str, source: str, folder: Folder | None = None, environment: str = "") -> ServiceConfig:
    """Parse and validate one config; `source` names the file in error messages."""
    if len(text) > MAX_CONFIG_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigInvalid(_too_big(source))  # before any parsing
    data = _decode(name, text, source, folder, environment)
    if data is None:
        raise ConfigInvalid(f"{source}: $: the file is empty: write the service's cluster, service and containers")
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{source}: $: expected a mapping of settings, got {type(data).__name__}")
    shape = shape_problems(data)
    if shape:
        raise ConfigInvalid(f"{source} cannot be read as settings:\n" + "\n".join(f"  - {p}: {m}" for p, m in shape))
    # A Jsonnet config's values may come from SSM parameters and stack outputs: its errors do not quote values.
    require_valid(data, SCHEMA, source, ConfigInvalid, quote_values=not source.endswith(".jsonnet"))
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
    names = [m["name"] for m in data.get("migrations", [])]
    for i, duplicate in enumerate(names):
        if names.index(duplicate) != i:
            raise ConfigInvalid(
                f"{source}: $.migrations[{i}].name: {duplicate!r} is used twice; give each migration its own name"
            )
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
        raise ServiceNotRegistered(
            f"{name!r} is not a service name: use the folder name under {PREFIX} in the config bucket"
        )
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
        raise ServiceNotRegistered(
            f"{path} has none of {', '.join(CONFIG_FILES)}: point --config-dir at a service's config folder"
        )
    return found


def registered_names(bucket: str) -> list[str]:
    s3 = aws.client("s3")
    names: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(PREFIX) :].split("/")
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
