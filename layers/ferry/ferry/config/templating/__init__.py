"""Templates: task definitions and service configs with placeholders filled in.

A template lives in the config bucket beside a service's `ferry.yaml`: JSON
or YAML text with `{{ fn "arg" }}` placeholders (placeholders.py), or Jsonnet
(`.jsonnet`/`.libsonnet`) where the same functions are native functions
(jsonnet.py). Both call the template functions of functions.py, against the
Context of the deploy being rendered, and both report every call that could
not be resolved in one error (problems.py), each with where it is, what is
wrong and how to fix it.

This package is what the rest of Ferry imports: render_text and
render_jsonnet with a Context. It is imported on first use, not at a
handler's cold start, and go-jsonnet and PyYAML only when a template of
their format is rendered.
"""

from __future__ import annotations

from typing import Any

from ferry.config.templating.functions import FUNCTIONS, Context, Function, Lookups, Unresolved
from ferry.config.templating.jsonnet import EXT_VARS, JSONNET_FULL_NAMES, JsonnetRun, render_jsonnet
from ferry.config.templating.placeholders import Placeholder, render_json, render_yaml, scan
from ferry.config.templating.problems import Problem
from ferry.errors import ConfigInvalid

__all__ = [
    "EXT_VARS",
    "FUNCTIONS",
    "JSONNET_FULL_NAMES",
    "Context",
    "Function",
    "JsonnetRun",
    "Lookups",
    "Placeholder",
    "Problem",
    "Unresolved",
    "render_json",
    "render_jsonnet",
    "render_text",
    "render_yaml",
    "scan",
]


def _kind(source: str) -> str:
    lower = source.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith((".jsonnet", ".libsonnet")):
        return "jsonnet"
    raise ConfigInvalid(
        f"{source}: cannot tell the template's format: name it .json, .yaml, .yml, .jsonnet or .libsonnet"
    )


def render_text(text: str, source: str, ctx: Context) -> Any:
    """Resolve the placeholders in a JSON/YAML template and return the parsed document.

    The format comes from `source`'s extension (.json, .yaml/.yml; .jsonnet/
    .libsonnet go to render_jsonnet, without imports). Raises
    TemplateUnresolved listing every placeholder that could not be resolved,
    and ConfigInvalid when the result is not valid JSON/YAML.
    """
    kind = _kind(source)
    if kind == "jsonnet":
        return render_jsonnet(text, source, ctx)
    if kind == "json":
        return render_json(text, source, ctx)
    return render_yaml(text, source, ctx)
