"""Task definitions checked against ECS's own input shape before registration.

botocore ships ECS's service model; validating the rendered document against
RegisterTaskDefinition's input shape turns a wrong field into a render error
that names the field, instead of an AWS error after something has changed.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from ferry.errors import TaskDefinitionInvalid

# Fields DescribeTaskDefinition returns that RegisterTaskDefinition does not take.
READ_ONLY_FIELDS = frozenset(
    {
        "taskDefinitionArn",
        "revision",
        "status",
        "requiresAttributes",
        "compatibilities",
        "registeredAt",
        "registeredBy",
        "deregisteredAt",
    }
)
MAX_ERRORS = 20
MAX_TAGS = 50  # "Maximum number of tags per resource - 50" (botocore ecs model, RegisterTaskDefinitionRequest.tags)


@functools.cache
def _input_shape():
    return botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape


def user_tags(tags: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """A revision's own tags, less those no caller may set: `aws:*` is reserved (CloudFormation puts it there)
    and `ferry:*` is Ferry's; room is kept for Ferry's execution tag under ECS's 50 tags a resource."""
    return [t for t in tags or [] if not t["key"].startswith(("ferry:", "aws:"))][: MAX_TAGS - 1]


def registration_input(described: dict[str, Any]) -> dict[str, Any]:
    """A DescribeTaskDefinition result as a RegisterTaskDefinition input (a deep copy: callers edit it)."""
    return copy.deepcopy({k: v for k, v in described.items() if k not in READ_ONLY_FIELDS})


# botocore's report quotes each wrong value ("Invalid type for parameter containerDefinitions[0].cpu, value: ...").
# A template fills values in from SSM parameters and CloudFormation outputs, and this text becomes a Cause that
# every reader of the execution sees: the problem is said with the parameter's path and the value's type, never
# the value.
_UNQUOTED = {
    "invalid type": "Invalid type for parameter {name}: {kind}, valid types: {valid_types}",
    "invalid type for document": "Invalid type for document parameter {name}: {kind}, valid types: {valid_types}",
    "invalid range": "Invalid value for parameter {name}: below the valid min value {min_allowed}",
    "invalid length": "Invalid length for parameter {name}: shorter than the valid min length {min_allowed}",
}


def _problem(report: Any, error: tuple[str, str, dict[str, Any]]) -> str:
    """One problem of botocore's validation report, as botocore words it but without the value."""
    reason, name, details = error
    if reason not in _UNQUOTED:
        return " ".join(report._format_error(error).split())
    return _UNQUOTED[reason].format(
        name=name.lstrip(".") or "input",
        kind=type(details.get("param")).__name__,
        valid_types=", ".join(map(str, details.get("valid_types") or ())),
        min_allowed=details.get("min_allowed"),
    )


def problems(spec: Any) -> list[str]:
    """Every way `spec` breaks RegisterTaskDefinition's input shape, plus the rules ECS checks on register."""
    if not isinstance(spec, dict):
        return [f"$: expected an object with family and containerDefinitions, got {type(spec).__name__}"]
    found = []
    report = ParamValidator().validate(spec, _input_shape())
    if report.has_errors():
        found += [_problem(report, error) for error in report._errors]
    containers = spec.get("containerDefinitions")
    if isinstance(containers, list):
        names = [c.get("name") for c in containers if isinstance(c, dict)]
        for name in sorted({n for n in names if names.count(n) > 1 and n}):
            found.append(f"containerDefinitions: container name {name!r} is used twice")
        if containers and not any(isinstance(c, dict) and c.get("essential", True) for c in containers):
            found.append("containerDefinitions: at least one container must be essential")
    if "FARGATE" in (spec.get("requiresCompatibilities") or []):
        for needed in ("cpu", "memory"):
            if not spec.get(needed):
                found.append(f"{needed}: Fargate needs a task-level {needed}")
        if spec.get("networkMode") != "awsvpc":
            found.append("networkMode: Fargate needs networkMode awsvpc")
    return found


def check(spec: Any, source: str) -> None:
    found = problems(spec)
    if found:
        shown = found[:MAX_ERRORS] + ([f"... and {len(found) - MAX_ERRORS} more"] if len(found) > MAX_ERRORS else [])
        raise TaskDefinitionInvalid(
            f"{source} is not a valid RegisterTaskDefinition input (nothing was registered):\n"
            + "\n".join(f"  - {p}" for p in shown)
            + "\nFix the template (field names and types are those of `aws ecs register-task-definition`)."
        )
