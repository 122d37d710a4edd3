"""JSON Schema validation with errors a person can act on.

Every config, manifest and sandbox world goes through `validate`, which
reports every failing field at once, each with its JSON path.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


@functools.cache
def schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("ferry").joinpath("schemas", name).read_text())


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


def json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> str:
    if error.validator == "additionalProperties":
        return f"{error.message} (remove it, or check its spelling against the schema)"
    if error.validator == "required":
        return f"{error.message}: add it"
    return error.message


def problems(instance: Any, schema_name: str) -> list[str]:
    """Every schema violation as '<json path>: <what is wrong>', sorted by path."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: (json_path(e), e.message))
    return [f"{json_path(e)}: {_describe(e)}" for e in errors]


def with_defaults(instance: dict[str, Any], schema_name: str) -> dict[str, Any]:
    """A copy of `instance` with every `default` of the schema filled in, at any depth.

    An absent object whose properties have defaults is created, and items of
    arrays of objects get their defaults too, so callers read every default
    from the schema and never repeat it in code.
    """
    return _fill(json.loads(json.dumps(instance)), schema(schema_name))


def _has_defaults(prop: dict[str, Any]) -> bool:
    return any("default" in p or _has_defaults(p) for p in prop.get("properties", {}).values())


def _fill(value: Any, prop: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        for key, sub in prop.get("properties", {}).items():
            if key not in value:
                if "default" in sub:
                    value[key] = json.loads(json.dumps(sub["default"]))
                elif sub.get("type") == "object" and _has_defaults(sub):
                    value[key] = {}
            if key in value:
                value[key] = _fill(value[key], sub)
    elif isinstance(value, list) and isinstance(prop.get("items"), dict):
        value = [_fill(item, prop["items"]) for item in value]
    return value


def require_valid(instance: Any, schema_name: str, source: str, error: type[Exception], what: str = "") -> None:
    """Raise `error` listing every violation, e.g. 'ferry.yaml breaks service-config.schema.json: ...'."""
    found = problems(instance, schema_name)
    if found:
        head = f"{source} {what}" if what else f"{source} breaks {schema_name}"
        raise error(f"{head}:\n" + "\n".join(f"  - {p}" for p in found))
