"""JSON Schema validation with errors a person can act on.

Every config, manifest and sandbox world goes through `validate`, which
reports every failing field at once, each with its JSON path.
"""

from __future__ import annotations

import functools
import json
import math
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from ferry.text import shorten

if TYPE_CHECKING:  # jsonschema is imported on first use: steps that never validate skip it at cold start
    from jsonschema.exceptions import ValidationError

MAX_DEPTH = 64  # levels of nesting Ferry reads; its documents need 6
MAX_ECHO = 80  # characters of a document's value repeated in a message
MAX_MESSAGE = 500  # characters of one schema problem's message


@functools.cache
def schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("ferry").joinpath("schemas", name).read_text())


@functools.cache
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled with JSON Schema's (ECMA-262) meaning of `$` and `\\d`.

    Python's `$` also matches before a final newline, so without this "prod\\n"
    would pass `^[A-Za-z0-9_-]{1,255}$`; and Python's `\\d` (and `\\w`) match any
    Unicode digit, so an account id of Tamil digits would pass `\\d{12}`.
    """
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append(r"\Z" if char == "$" and not in_class else char)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any):
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def validator_class() -> Any:
    """Draft 2020-12 with JSON Schema's own meaning of `pattern` (see _ecma_pattern)."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})


@functools.cache
def _validator(name: str) -> Any:
    return validator_class()(schema(name))


def cap(value: Any, limit: int = MAX_ECHO) -> str:
    """repr of a value from a document, cut to `limit` characters: a message never repeats a big value."""
    return shorten(repr(value), limit)


# ------------------------------------------------------------------ shape


class DuplicateKeys(dict):
    """A JSON object that named a key twice; `duplicates` lists them (json.loads keeps the last value)."""

    duplicates: list[str]


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook for json.loads: an object with a key written twice is remembered, for shape_problems."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    marked = DuplicateKeys(found)
    seen: set[str] = set()
    marked.duplicates = list(dict.fromkeys(k for k, _ in pairs if k in seen or seen.add(k)))
    return marked


def _type_name(value: Any) -> str:
    names = {
        "date": "a date",
        "datetime": "a timestamp",
        "bytes": "binary data",
        "set": "a set",
        "int": "a number",
        "float": "a number",
        "bool": "true or false",
        "NoneType": "null",
        "tuple": "a list",
    }
    return names.get(type(value).__name__, f"a {type(value).__name__}")


def shape_problems(document: Any, max_depth: int = MAX_DEPTH) -> list[tuple[str, str]]:
    """What keeps a decoded document from being plain JSON Ferry can check, as (json path, what is wrong).

    A key written twice (the parser kept one silently), a key that is not text
    (YAML reads `1:` or `2024-01-01:` as a number or a date), a value JSON does
    not have (a YAML date, binary, set, .nan) and nesting deeper than
    `max_depth` are reported here, before the schema is checked: the schema
    cannot see the first two, and deep nesting would exhaust Python's stack.
    Iterative, so any depth is safe.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(document, "$", 0)]
    while stack and len(found) < 20:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)) and depth >= max_depth:
            found.append(
                (path, f"nested more than {max_depth} levels deep: Ferry's documents need a few levels; flatten it")
            )
            continue
        if isinstance(value, dict):
            for key in getattr(value, "duplicates", ()):
                found.append(
                    (path, f"key {cap(key)} is written twice: keep one (the parser would silently use the last)")
                )
            children = []
            for key, item in value.items():
                if not isinstance(key, str):
                    found.append(
                        (path, f"key {cap(key)} is {_type_name(key)}, not text: quote it, e.g. {cap(str(key))}")
                    )
                    continue
                children.append((item, path + path_part(key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append((path, f"{value!r} is not a number JSON has: write a finite number"))
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            found.append((path, f"{_type_name(value)} is not a value Ferry reads: write it as text (quote it)"))
    return found


def path_part(key: Any) -> str:
    """A key as a step of a JSON path: `.name`, cut past 256 characters (no name in Ferry's schemas is longer)."""
    text = str(key)
    return f".{text if len(text) <= 256 else text[:255] + '…'}"


def json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else path_part(part)
    return path


def _unquoted(error: ValidationError) -> str:
    """The schema's message with the value it quotes replaced by what kind of value it is (see problems)."""
    value = error.instance
    kind = {str: "a string", dict: "an object", list: "a list"}.get(type(value)) or _type_name(value)
    return error.message.replace(repr(value), f"the value ({kind}, not shown)", 1)


def _describe(error: ValidationError, quote_values: bool = True) -> str:
    message = error.message if quote_values else _unquoted(error)
    if error.validator == "additionalProperties":
        if error.schema.get("additionalProperties") is False and isinstance(error.instance, dict):
            extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
            shown = ", ".join(cap(k) for k in extra[:10]) + (", …" if len(extra) > 10 else "")
            message = (
                f"Additional properties are not allowed ({shown} {'was' if len(extra) == 1 else 'were'} unexpected)"
            )
        message = f"{shorten(message, MAX_MESSAGE)} (remove it, or check its spelling against the schema)"
    elif error.validator == "required":
        message = f"{message}: add it"
    elif quote_values and not isinstance(error.instance, (bool, int, float)) and error.instance is not None:
        whole = repr(error.instance)
        if len(whole) > MAX_ECHO:
            message = message.replace(whole, cap(error.instance))
    return shorten(message, MAX_MESSAGE)


def problems(instance: Any, schema_name: str, quote_values: bool = True) -> list[str]:
    """Every schema violation as '<json path>: <what is wrong>', sorted by path. Without `quote_values` a message
    names the path and the kind of value, never the value: a Jsonnet config's values may come from SSM parameters
    and CloudFormation outputs (its native functions), and the message becomes a Cause every reader sees."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: (json_path(e), e.message))
    return [f"{json_path(e)}: {_describe(e, quote_values)}" for e in errors]


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


def require_valid(
    instance: Any, schema_name: str, source: str, error: type[Exception], what: str = "", quote_values: bool = True
) -> None:
    """Raise `error` listing every violation, e.g. 'ferry.yaml breaks service-config.schema.json: ...'."""
    found = problems(instance, schema_name, quote_values)
    if found:
        head = f"{source} {what}" if what else f"{source} breaks {schema_name}"
        raise error(f"{head}:\n" + "\n".join(f"  - {p}" for p in found))
