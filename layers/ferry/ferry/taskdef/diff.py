"""Diff: what a deploy will change, shown before it changes anything.

Like `ecspresso diff`: both sides are normalised (read-only fields and the
defaults ECS fills in dropped, lists whose order means nothing sorted, keys
sorted), rendered as indented JSON and compared with difflib. The text goes
to the artefacts bucket; the one-line summary to the Step Functions console.

Pure: no AWS calls here.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from ferry.aws import images
from ferry.taskdef import READ_ONLY_FIELDS
from ferry.aws.ecs import revision_name
from ferry.text import shorten

# Tags are not part of DescribeTaskDefinition's `taskDefinition` (they come beside it),
# and Ferry's own execution tag differs on every revision: they are not compared.
IGNORED_TASK_FIELDS = frozenset({"tags"})
# Scalars ECS fills in when a registration leaves them out: equal to leaving them out.
TASK_DEFAULTS = {"enableFaultInjection": False}
CONTAINER_DEFAULTS = {"cpu": 0, "essential": True}
PORT_DEFAULTS = {"protocol": "tcp"}
MOUNT_DEFAULTS = {"readOnly": False}
# In these network modes the host port is always the container port; ECS fills it in.
HOST_PORT_IS_CONTAINER_PORT = {"awsvpc", "host"}

# Lists of objects whose order means nothing, sorted by these keys.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "containerDefinitions": ("name",),
    "environment": ("name",),
    "secrets": ("name",),
    "portMappings": ("containerPort", "containerPortRange", "protocol", "hostPort", "name"),
    "mountPoints": ("containerPath", "sourceVolume"),
    "volumesFrom": ("sourceContainer",),
    "volumes": ("name",),
    "dependsOn": ("containerName",),
    "ulimits": ("name",),
    "systemControls": ("namespace",),
    "extraHosts": ("hostname",),
    "environmentFiles": ("value",),
    "resourceRequirements": ("type",),
    "placementConstraints": ("type", "expression"),
    "inferenceAccelerators": ("deviceName",),
    "loadBalancers": ("targetGroupArn", "loadBalancerName", "containerName", "containerPort"),
    "capacityProviderStrategy": ("capacityProvider",),
    "serviceRegistries": ("registryArn",),
}
# Lists of strings whose order means nothing.
SORTED_STRING_LISTS = frozenset({"subnets", "securityGroups", "requiresCompatibilities"})

# Environment variable names that look like they hold a secret (matched without - and _).
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|APIKEY|PRIVATEKEY|CREDENTIAL", re.IGNORECASE)
MASK = "***"
MASK_CHANGED = "*** (changed)"

# Service attributes compared by service_diff, in summary order (others follow, by name).
SERVICE_FIELDS = (
    "taskDefinition",
    "desiredCount",
    "networkConfiguration",
    "loadBalancers",
    "capacityProviderStrategy",
    "launchType",
    "platformVersion",
    "enableExecuteCommand",
)
SERVICE_LABELS = {"taskDefinition": "task definition", "desiredCount": "desired count"}
# UpdateService parameters that are actions or addresses, not attributes of the service.
SERVICE_NOT_ATTRIBUTES = frozenset({"cluster", "service", "forceNewDeployment"})

MAX_TEXT_BYTES = 200 * 1024
MAX_SUMMARY_ITEMS = 6
MAX_SUMMARY_CHARS = 300
NO_CHANGES = "no changes"


@dataclass(frozen=True)
class Diff:
    text: str  # unified diff(s), "" when nothing changes
    summary: str  # one line, NO_CHANGES when nothing changes
    changes: list[str]  # every summary item, in a stable order (the summary may show only the first)


def looks_secret(name: str) -> bool:
    """True for environment variable names such as DB_PASSWORD, apiKey or GITHUB_TOKEN.

    Plain environment values are visible in the ECS console to anyone who can
    read the task definition anyway, so they are not secret in ECS's sense. But
    a diff leaves AWS: it is pasted into chat, tickets and pull requests. So
    values that look like they hold a secret (someone put a password in
    `environment` instead of `secrets`) are masked, in the text and the summary.
    """
    return bool(SECRET_NAME.search(name.replace("_", "").replace("-", "")))


# --- normalisation -------------------------------------------------------------------


def _sort_key(item: Any, keys: tuple[str, ...]) -> tuple:
    parts: list[tuple] = []
    for key in keys:
        value = item.get(key) if isinstance(item, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append((1, value, ""))
        else:
            parts.append((0 if value is None else 2, 0, "" if value is None else str(value)))
    # Ties (and items that are not objects) fall back to the whole item, so the order is total.
    parts.append((0, 0, json.dumps(item, sort_keys=True, default=str)))
    return tuple(parts)


def _clean(value: Any, name: str | None = None) -> Any:
    """Drop None and empty lists/objects (recursively), sort lists whose order means nothing."""
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            item = _clean(item, key)
            if item is None or item == [] or item == {}:
                continue
            cleaned[key] = item
        return cleaned
    if isinstance(value, list):
        items = [_clean(item) for item in value]
        if name in SORT_KEYS:
            items.sort(key=lambda item: _sort_key(item, SORT_KEYS[name]))
        elif name in SORTED_STRING_LISTS and all(isinstance(item, str) for item in items):
            items.sort()
        return items
    return value


def _drop_defaults(document: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, default in defaults.items():
        if key in document and document[key] == default and type(document[key]) is type(default):
            del document[key]


def normalise_task_definition(task_definition: dict[str, Any]) -> dict[str, Any]:
    """A task definition (described or to be registered) in the form both sides are compared in."""
    spec = {
        k: copy.deepcopy(v)
        for k, v in task_definition.items()
        if k not in READ_ONLY_FIELDS and k not in IGNORED_TASK_FIELDS
    }
    for key in ("cpu", "memory"):  # strings in the API; a hand-written input may use numbers
        if isinstance(spec.get(key), int) and not isinstance(spec.get(key), bool):
            spec[key] = str(spec[key])
    _drop_defaults(spec, TASK_DEFAULTS)
    network_mode = spec.get("networkMode")
    for container in spec.get("containerDefinitions") or []:
        if not isinstance(container, dict):
            continue
        _drop_defaults(container, CONTAINER_DEFAULTS)
        for port in [p for p in container.get("portMappings") or [] if isinstance(p, dict)]:
            _drop_defaults(port, PORT_DEFAULTS)
            if (
                network_mode in HOST_PORT_IS_CONTAINER_PORT
                and "containerPort" in port
                and port.get("hostPort") == port["containerPort"]
            ):
                del port["hostPort"]
        for mount in (container.get("mountPoints") or []) + (container.get("volumesFrom") or []):
            if isinstance(mount, dict):
                _drop_defaults(mount, MOUNT_DEFAULTS)
    return _clean(spec)


def normalise_service(service: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The `keys` of a service (described, or as the deploy will set them), normalised."""
    document = {key: copy.deepcopy(service.get(key)) for key in keys}
    if isinstance(document.get("taskDefinition"), str):
        document["taskDefinition"] = revision_name(document["taskDefinition"])
    awsvpc = (document.get("networkConfiguration") or {}).get("awsvpcConfiguration")
    if isinstance(awsvpc, dict):
        _drop_defaults(awsvpc, {"assignPublicIp": "DISABLED"})
    for strategy in document.get("capacityProviderStrategy") or []:
        _drop_defaults(strategy, {"base": 0})
    return _clean(document)


def _containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in spec.get("containerDefinitions", []) if isinstance(c, dict) and "name" in c}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("environment", []) if isinstance(e, dict) and "name" in e}


def _mask(current: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copies of both sides with the values of secret-looking environment variables masked."""
    current, new = copy.deepcopy(current), copy.deepcopy(new)
    old_env = {name: _env(c) for name, c in _containers(current).items()}
    for container in _containers(current).values():
        for entry in [e for e in container.get("environment", []) if isinstance(e, dict)]:
            if looks_secret(str(entry.get("name", ""))) and "value" in entry:
                entry["value"] = MASK
    for name, container in _containers(new).items():
        before = old_env.get(name, {})
        for entry in [e for e in container.get("environment", []) if isinstance(e, dict)]:
            key = str(entry.get("name", ""))
            if looks_secret(key) and "value" in entry:
                changed = key in before and before[key] != entry["value"]
                entry["value"] = MASK_CHANGED if changed else MASK
    return current, new


# --- rendering -----------------------------------------------------------------------


def _json_lines(document: dict[str, Any]) -> list[str]:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def _cap(text: str) -> str:
    if len(text.encode()) <= MAX_TEXT_BYTES:
        return text
    lines = text.splitlines(keepends=True)
    budget = MAX_TEXT_BYTES - 100  # room for the marker line
    kept: list[str] = []
    size = 0
    for line in lines:
        size += len(line.encode())
        if size > budget:
            break
        kept.append(line)
    return "".join(kept) + f"… (truncated, {len(lines) - len(kept)} more lines)\n"


def _unified(current: dict[str, Any], new: dict[str, Any], current_label: str, new_label: str) -> str:
    if current == new:
        return ""
    lines = difflib.unified_diff(
        _json_lines(current), _json_lines(new), fromfile=current_label, tofile=new_label, lineterm=""
    )
    return _cap("".join(line + "\n" for line in lines))


def summarise(changes: list[str]) -> str:
    """The one-line summary: the first items, "+N more" for the rest, under MAX_SUMMARY_CHARS."""
    if not changes:
        return NO_CHANGES
    for shown in range(min(len(changes), MAX_SUMMARY_ITEMS), 0, -1):
        items = changes[:shown] + ([f"+{len(changes) - shown} more"] if shown < len(changes) else [])
        line = ", ".join(items)
        if len(line) <= MAX_SUMMARY_CHARS:
            return line
    rest = f", +{len(changes) - 1} more" if len(changes) > 1 else ""
    return shorten(changes[0], MAX_SUMMARY_CHARS - len(rest)) + rest


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _image_label(uri: Any, labels: Mapping[str, str]) -> str:
    if not isinstance(uri, str):
        return _show(uri)
    if uri in labels:
        return labels[uri]
    ref = images.parse(uri)
    return ref.short() if ref else uri


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _port_label(port: dict[str, Any]) -> str:
    where = port.get("containerPort", port.get("containerPortRange", "?"))
    return f"{where}/{port.get('protocol', 'tcp')}"


def _by_label(ports: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for port in ports:
        found.setdefault(_port_label(port), []).append(port)
    return found


# Container fields with their own summary items; any other change is "<field> changed (<container>)".
CONTAINER_SUMMARISED = {"name", "image", "environment", "secrets", "portMappings", "cpu", "memory", "memoryReservation"}
TASK_SUMMARISED = {"containerDefinitions", "cpu", "memory"}


def _task_changes(current: dict[str, Any], new: dict[str, Any], image_labels: Mapping[str, str]) -> list[str]:
    old_containers, new_containers = _containers(current), _containers(new)
    both = sorted(set(old_containers) & set(new_containers))
    changes: list[str] = []

    for name in both:
        old_image, new_image = old_containers[name].get("image"), new_containers[name].get("image")
        if old_image != new_image:
            changes.append(
                f"image {name} {_image_label(old_image, image_labels)} -> {_image_label(new_image, image_labels)}"
            )

    env_counts = {"+": 0, "-": 0, "~": 0}
    env_where: dict[str, list[str]] = {"+": [], "-": [], "~": []}
    for name in both:
        old_env, new_env = _env(old_containers[name]), _env(new_containers[name])
        counts = {
            "+": len(set(new_env) - set(old_env)),
            "-": len(set(old_env) - set(new_env)),
            "~": sum(1 for key in set(old_env) & set(new_env) if old_env[key] != new_env[key]),
        }
        for sign, count in counts.items():
            if count:
                env_counts[sign] += count
                env_where[sign].append(name)
    for sign in "+-~":
        if env_counts[sign]:
            changes.append(f"{sign}{_plural(env_counts[sign], 'env var')} ({', '.join(env_where[sign])})")

    secrets: dict[str, dict[str, list[str]]] = {"+": {}, "-": {}, "~": {}}
    for name in both:
        old = {s["name"]: s.get("valueFrom") for s in old_containers[name].get("secrets", []) if "name" in s}
        new_ = {s["name"]: s.get("valueFrom") for s in new_containers[name].get("secrets", []) if "name" in s}
        for key in sorted(set(new_) - set(old)):
            secrets["+"].setdefault(key, []).append(name)
        for key in sorted(set(old) - set(new_)):
            secrets["-"].setdefault(key, []).append(name)
        for key in sorted(k for k in set(old) & set(new_) if old[k] != new_[k]):
            secrets["~"].setdefault(key, []).append(name)
    for sign in "+-~":
        for key in sorted(secrets[sign]):
            changes.append(f"{sign}secret {key} ({', '.join(secrets[sign][key])})")

    for key in ("cpu", "memory"):
        if current.get(key) != new.get(key):
            changes.append(f"{key} {_show(current.get(key))} -> {_show(new.get(key))}")
    for name in both:
        for key in ("cpu", "memory", "memoryReservation"):
            old, new_ = old_containers[name].get(key), new_containers[name].get(key)
            if old != new_:
                changes.append(f"{key} {name} {_show(old)} -> {_show(new_)}")

    changes += [f"+container {name}" for name in sorted(set(new_containers) - set(old_containers))]
    changes += [f"-container {name}" for name in sorted(set(old_containers) - set(new_containers))]

    for name in both:
        old_ports = _by_label(old_containers[name].get("portMappings", []))
        new_ports = _by_label(new_containers[name].get("portMappings", []))
        for label in sorted(set(new_ports) - set(old_ports)):
            changes.append(f"+port {label} ({name})")
        for label in sorted(set(old_ports) - set(new_ports)):
            changes.append(f"-port {label} ({name})")
        for label in sorted(set(old_ports) & set(new_ports)):
            if old_ports[label] != new_ports[label]:
                changes.append(f"~port {label} ({name})")

    for key in sorted((set(current) | set(new)) - TASK_SUMMARISED):
        if current.get(key) != new.get(key):
            changes.append(f"{key} changed")
    other: dict[str, list[str]] = {}
    for name in both:
        old, new_ = old_containers[name], new_containers[name]
        for key in sorted((set(old) | set(new_)) - CONTAINER_SUMMARISED):
            if old.get(key) != new_.get(key):
                other.setdefault(key, []).append(name)
    changes += [f"{key} changed ({', '.join(names)})" for key, names in sorted(other.items())]

    if not changes and current != new:  # e.g. containers without names: never report a difference as none
        changes.append("task definition changed")
    return changes


# --- API -----------------------------------------------------------------------------


def task_definition_diff(
    current: dict[str, Any],
    new: dict[str, Any],
    *,
    current_label: str,
    new_label: str,
    image_labels: Mapping[str, str] | None = None,
) -> Diff:
    """What registering `new` changes relative to `current`.

    `current` is a DescribeTaskDefinition `taskDefinition`; `new` a
    RegisterTaskDefinition input. Secrets show as their valueFrom references
    only (task definitions never hold their values); environment variables
    whose names look secret have their values masked (see `looks_secret`).

    Images are named in the summary by `ImageRef.short()` of their ECR URI, or
    by `image_labels[uri]` when the caller knows more than the URI says (a URI
    pinned by digest alone does not carry the tag it was resolved from:
    pass `{ref.pinned: ref.short()}`).
    """
    old_spec, new_spec = normalise_task_definition(current), normalise_task_definition(new)
    changes = _task_changes(old_spec, new_spec, image_labels or {})
    shown_old, shown_new = _mask(old_spec, new_spec)
    return Diff(_unified(shown_old, shown_new, current_label, new_label), summarise(changes), changes)


def service_diff(current_service: dict[str, Any], planned: dict[str, Any]) -> Diff:
    """What the deploy's UpdateService changes: only the attributes in `planned` are compared.

    `current_service` is a DescribeServices service; `planned` the attributes
    the deploy will set. Task definitions are compared (and shown) as
    family:revision.
    """
    known = [key for key in SERVICE_FIELDS if key in planned]
    keys = known + sorted(key for key in planned if key not in SERVICE_FIELDS and key not in SERVICE_NOT_ATTRIBUTES)
    old, new = normalise_service(current_service, keys), normalise_service(planned, keys)
    changes = []
    for key in keys:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        label = SERVICE_LABELS.get(key, key)
        if isinstance(before, (dict, list)) or isinstance(after, (dict, list)):
            changes.append(f"{label} changed")
        else:
            changes.append(f"{label} {_show(before)} -> {_show(after)}")
    name = current_service.get("serviceName", "service")
    text = _unified(old, new, f"service {name} (current)", f"service {name} (planned)")
    return Diff(text, summarise(changes), changes)


def combine(*diffs: Diff) -> Diff:
    """One Diff of several (e.g. the task definition's and the service's), in the order given."""
    text = "".join(d.text if d.text.endswith("\n") or not d.text else d.text + "\n" for d in diffs)
    changes = list(dict.fromkeys(item for d in diffs for item in d.changes))
    return Diff(_cap(text), summarise(changes), changes)
