"""Register: the revision Render planned and Verify checked, registered once per execution.

Render writes the planned RegisterTaskDefinition input to the artefacts bucket and passes on the sha256 of the
bytes it stored ($.render.planSha256); this step reads the plan back, refuses any document with another hash
(the plan was changed after it was verified: nothing is registered), checks it against ECS's input shape once
more, and registers it, tagged with the execution's name.

A retried step (its first attempt timed out after registering) finds the revision it registered among the
family's newest ones and reuses it, so one execution registers one revision. The tag alone proves nothing:
anyone who may register and tag revisions of the family can put the execution's tag on a revision of their
own while the deploy waits for its lock. So a revision is reused only when it carries the tag, its content is
the plan (both normalised as the diff compares them: ferry.taskdef.diff.normalise_task_definition) and ECS says
it was registered by this function's own role (DescribeTaskDefinition's `registeredBy`, against the role
STS GetCallerIdentity names). Any other revision with the tag is ignored, named in the step's output and
log, and the plan is registered anew: a planted revision then neither deploys nor stops the deploy (refusing
would hand whoever can register in the family a way to stop every deploy of it). A normalisation that misses
some default ECS fills in costs one more revision on a retry, never a revision that is not the plan.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from ferry import aws, taskdef
from ferry.aws import artefacts
from ferry.aws.ecs import revision_name
from ferry.contract import Model, key
from ferry.errors import TaskDefinitionInvalid

log = logging.getLogger(__name__)

EXECUTION_TAG = "ferry:execution"
IDEMPOTENCY_LOOKBACK = 10
REGISTERED_ARTEFACT = "task-definition.json"
# A role as IAM names it, and a session of it as STS names it (GetCallerIdentity and ECS's registeredBy).
ROLE_ARN = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[^/]+)$")
ASSUMED_ROLE_ARN = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/]+)/[^/]+$")


@dataclass(frozen=True, kw_only=True)
class Input(Model):
    """The input of "Register the new revision"."""

    execution: str = key(
        "execution",
        doc="the execution's name, $$.Execution.Name: whose plan is registered, and the tag that finds it again",
    )
    service: str = key("service", doc="the service's name in the config registry, $.service")
    plan_sha256: str = key(
        "planSha256",
        doc="$.render.planSha256: the sha256 of the plan Render stored and Verify checked; only it is registered",
    )


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """The revision registered ($.register): what every later step deploys."""

    task_definition_arn: str = key("taskDefinitionArn", doc="the new revision's ARN")
    revision: str = key("revision", doc="the same, as family:revision")
    reused: bool = key("reused", kinds=(bool,), doc="a retried step found the revision its first attempt registered")
    artefact_key: str = key("artefact", doc="the registered task definition, in the artefacts bucket")
    ignored: list = key(
        "ignoredRevisions",
        kinds=(list,),
        required=False,
        default=[],
        doc="revisions tagged with this execution that were not reused, each with why (not the plan, or not "
        "registered by Ferry's role)",
    )


# action -> (input, output): what "Register the new revision" passes and stores at $.register.
CONTRACTS = {None: (Input, Output)}


def run(request: Input, artefacts_bucket: str) -> Output:
    """The step: register the revision Render planned and Verify checked."""
    return register_planned(request.execution, artefacts_bucket, request.plan_sha256)


def principal(arn: str | None) -> str | None:
    """Who an ARN names, as IAM grants it: a role (`arn:<partition>:iam::<account>:role/<name>`) for the role
    itself and for any session of it (STS's assumed-role ARN, which GetCallerIdentity and registeredBy give),
    any other ARN as it is; None for none."""
    if not arn:
        return None
    match = ROLE_ARN.match(arn) or ASSUMED_ROLE_ARN.match(arn)
    if match is None:
        return arn
    return f"arn:{match['partition']}:iam::{match['account']}:role/{match['name']}"


def own_principal() -> str | None:
    """The role this function runs as (the Lambda's execution role), from STS GetCallerIdentity."""
    return principal(aws.client("sts").get_caller_identity()["Arn"])


class _Candidates:
    """The family's newest revisions tagged with the execution, judged against the plan."""

    def __init__(self, spec: dict[str, Any], execution: str) -> None:
        from ferry.taskdef.diff import normalise_task_definition

        self._normalise = normalise_task_definition
        self.execution = execution
        self.wanted = normalise_task_definition(spec)
        self.ignored: list[str] = []
        self._me: list[str | None] = []  # asked of STS once, and only when a revision's content is the plan

    def me(self) -> str | None:
        if not self._me:
            self._me.append(own_principal())
        return self._me[0]

    def why_not(self, found: dict[str, Any]) -> str | None:
        """None when `found` (DescribeTaskDefinition's taskDefinition) is the revision this execution registered."""
        if self._normalise(found) != self.wanted:
            return "its content is not the plan Verify checked"
        registered_by = found.get("registeredBy")
        if principal(registered_by) is None or principal(registered_by) != self.me():
            return (
                f"it was registered by {registered_by or 'a principal ECS does not name'}, not by Ferry's "
                f"register function ({self.me()})"
            )
        return None

    def find(self, family: str) -> dict[str, Any] | None:
        ecs = aws.client("ecs")
        arns = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=IDEMPOTENCY_LOOKBACK)[
            "taskDefinitionArns"
        ]
        for arn in arns:
            found = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            if not any(t["key"] == EXECUTION_TAG and t["value"] == self.execution for t in found.get("tags", [])):
                continue
            why = self.why_not(found["taskDefinition"])
            if why is None:
                return found["taskDefinition"]
            line = f"{revision_name(arn)}: tagged {EXECUTION_TAG}={self.execution}, but {why}; not deployed"
            log.warning("revision ignored: %s", line)
            self.ignored.append(line)
        return None


def register(spec: dict[str, Any], execution: str, artefacts_bucket: str) -> Output:
    """Register the planned revision once per execution: a retried step finds and reuses it (the tag, the content
    and the role that registered it must all say it is this execution's)."""
    ecs = aws.client("ecs")
    spec = dict(spec)
    candidates = _Candidates(spec, execution)
    existing = candidates.find(spec["family"])
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
    return Output(
        task_definition_arn=arn,
        revision=revision_name(arn),
        reused=reused,
        artefact_key=stored,
        ignored=candidates.ignored,
    )


def register_planned(execution: str, artefacts_bucket: str, plan_sha256: str | None = None) -> Output:
    """The Register step: the revision Render planned (and Verify checked), from the artefacts bucket.

    `plan_sha256` is the hash Render passed on ($.render.planSha256; the step always has it): a document with
    another hash is refused, nothing registered. None only for a caller that stored the plan itself a moment
    ago (tests, tools), which has nothing to check it against."""
    where = f"s3://{artefacts_bucket}/{artefacts.key(execution, artefacts.PLAN_ARTEFACT)}"
    if plan_sha256 is None:
        spec = artefacts.get_json(artefacts_bucket, execution, artefacts.PLAN_ARTEFACT)
    else:
        spec = artefacts.get_plan(
            artefacts_bucket,
            execution,
            plan_sha256,
            changed="after it was verified",
            nothing="nothing was registered",
        )
    taskdef.check(spec, where)
    return register(spec, execution, artefacts_bucket)
