"""Register: the revision Render planned and Verify checked, registered once per execution.

Render writes the planned RegisterTaskDefinition input to the artefacts bucket; this step reads it back,
checks it against ECS's input shape once more, and registers it, tagged with the execution's name. A retried
step (its first attempt timed out after registering) finds the revision it registered among the family's
newest ones by that tag and reuses it, so one execution registers one revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry import aws, taskdef
from ferry.aws import artefacts
from ferry.aws.ecs import revision_name
from ferry.contract import Model, key
from ferry.errors import TaskDefinitionInvalid

EXECUTION_TAG = "ferry:execution"
IDEMPOTENCY_LOOKBACK = 10
REGISTERED_ARTEFACT = "task-definition.json"


@dataclass(frozen=True, kw_only=True)
class Input(Model):
    """The input of "Register the new revision"."""

    execution: str = key(
        "execution",
        doc="the execution's name, $$.Execution.Name: whose plan is registered, and the tag that finds it again",
    )
    service: str = key("service", doc="the service's name in the config registry, $.service")


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """The revision registered ($.register): what every later step deploys."""

    task_definition_arn: str = key("taskDefinitionArn", doc="the new revision's ARN")
    revision: str = key("revision", doc="the same, as family:revision")
    reused: bool = key("reused", kinds=(bool,), doc="a retried step found the revision its first attempt registered")
    artefact_key: str = key("artefact", doc="the registered task definition, in the artefacts bucket")


# action -> (input, output): what "Register the new revision" passes and stores at $.register.
CONTRACTS = {None: (Input, Output)}


def run(request: Input, artefacts_bucket: str) -> Output:
    """The step: register the revision Render planned and Verify checked."""
    return register_planned(request.execution, artefacts_bucket)


def _registered_by_execution(family: str, execution: str) -> dict[str, Any] | None:
    ecs = aws.client("ecs")
    arns = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=IDEMPOTENCY_LOOKBACK)[
        "taskDefinitionArns"
    ]
    for arn in arns:
        found = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        if any(t["key"] == EXECUTION_TAG and t["value"] == execution for t in found.get("tags", [])):
            return found["taskDefinition"]
    return None


def register(spec: dict[str, Any], execution: str, artefacts_bucket: str) -> Output:
    """Register the planned revision once per execution: a retried step finds and reuses it."""
    ecs = aws.client("ecs")
    spec = dict(spec)
    existing = _registered_by_execution(spec["family"], execution)
    if existing is not None:
        registered, reused = existing, True
    else:
        tags = taskdef.user_tags(spec.pop("tags", None)) + [{"key": EXECUTION_TAG, "value": execution[:256]}]
        try:
            registered = ecs.register_task_definition(**spec, tags=tags)["taskDefinition"]
        except (ecs.exceptions.ClientException, ecs.exceptions.InvalidParameterException) as exc:
            raise TaskDefinitionInvalid(
                f"ECS refused the rendered task definition for {spec['family']}: {exc}"
            ) from exc
        reused = False
    document = {k: v for k, v in registered.items() if k not in {"registeredAt", "deregisteredAt"}}
    stored = artefacts.put_json(artefacts_bucket, execution, REGISTERED_ARTEFACT, document)
    arn = registered["taskDefinitionArn"]
    return Output(task_definition_arn=arn, revision=revision_name(arn), reused=reused, artefact_key=stored)


def register_planned(execution: str, artefacts_bucket: str) -> Output:
    """The Register step: the revision Render planned (and Verify checked), from the artefacts bucket."""
    spec = artefacts.get_json(artefacts_bucket, execution, artefacts.PLAN_ARTEFACT)
    taskdef.check(spec, f"s3://{artefacts_bucket}/{artefacts.key(execution, artefacts.PLAN_ARTEFACT)}")
    return register(spec, execution, artefacts_bucket)
