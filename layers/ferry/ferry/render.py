"""Render: the new task definition revision, registered once per execution.

`taskDefinition: current` takes the revision the service runs now and swaps
in the new images, pinned by digest so a tag moved after the push cannot
change what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import artefacts, aws, images
from .config import ServiceConfig
from .ecs import describe_service, revision_name
from .errors import InputInvalid, TaskDefinitionInvalid

EXECUTION_TAG = "ferry:execution"
# Fields DescribeTaskDefinition returns that RegisterTaskDefinition does not take.
READ_ONLY_FIELDS = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt",
}
IDEMPOTENCY_LOOKBACK = 5


@dataclass(frozen=True)
class Rendered:
    task_definition_arn: str
    previous_task_definition_arn: str
    desired_count: int
    images: dict[str, str]
    changes: list[str]
    artefact_key: str
    reused: bool

    def to_state(self) -> dict[str, Any]:
        return {
            "taskDefinitionArn": self.task_definition_arn,
            "revision": revision_name(self.task_definition_arn),
            "previousTaskDefinitionArn": self.previous_task_definition_arn,
            "previousRevision": revision_name(self.previous_task_definition_arn),
            "desiredCount": self.desired_count,
            "images": self.images,
            "summary": "; ".join(self.changes) or "no image changes",
            "artefacts": {"taskDefinition": self.artefact_key},
        }


def pin(uri: str) -> images.ImageRef:
    ref = images.parse(uri)
    if ref is None:
        raise InputInvalid(
            f"image {uri!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>)"
        )
    return images.resolve(ref.registry, ref.region, ref.repository, tag=ref.tag, digest=ref.digest)


def check_images_match_config(config: ServiceConfig, pinned: dict[str, images.ImageRef]) -> None:
    """Only the containers the config names may change, and only to images of their own repository."""
    for name, ref in sorted(pinned.items()):
        if name not in config.containers:
            raise InputInvalid(
                f"container {name!r} is not one Ferry deploys for service {config.name} "
                f"(its config names {sorted(config.containers)}): add it under `containers` to deploy it"
            )
        expected = config.containers[name]
        if ref.repository != expected:
            raise InputInvalid(
                f"container {name} is fed by ECR repository {expected!r}, not {ref.repository!r}: "
                "deploy an image of that repository, or change `containers` in the config"
            )


def registration_input(current: dict[str, Any], new_images: dict[str, images.ImageRef]) -> tuple[dict[str, Any], list[str]]:
    """The RegisterTaskDefinition input: `current` with images swapped in."""
    spec = {k: v for k, v in current.items() if k not in READ_ONLY_FIELDS}
    by_name = {c["name"]: c for c in spec["containerDefinitions"]}
    unknown = sorted(set(new_images) - set(by_name))
    if unknown:
        raise TaskDefinitionInvalid(
            f"containers {unknown} are not in task definition {current['family']}:{current['revision']} "
            f"(it has {sorted(by_name)}): fix `containers` in the service config"
        )
    changes = []
    for name, ref in sorted(new_images.items()):
        old = by_name[name]["image"]
        if old != ref.pinned:
            old_ref = images.parse(old)
            old_label = old_ref.short() if old_ref else old
            changes.append(f"image {name} {old_label} -> {ref.short()}")
            by_name[name]["image"] = ref.pinned
    return spec, changes


def _registered_by_execution(family: str, execution: str) -> dict[str, Any] | None:
    ecs = aws.client("ecs")
    arns = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=IDEMPOTENCY_LOOKBACK)["taskDefinitionArns"]
    for arn in arns:
        found = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        if any(t["key"] == EXECUTION_TAG and t["value"] == execution for t in found.get("tags", [])):
            return found["taskDefinition"]
    return None


def render(config: ServiceConfig, new_images: dict[str, str], execution: str, artefacts_bucket: str) -> Rendered:
    if not new_images:
        raise InputInvalid("the input names no images: give {\"images\": {\"<container>\": \"<image uri>\"}}")
    ecs = aws.client("ecs")
    service = describe_service(config.cluster, config.service)
    current = ecs.describe_task_definition(taskDefinition=service["taskDefinition"], include=["TAGS"])
    pinned = {name: pin(uri) for name, uri in new_images.items()}
    check_images_match_config(config, pinned)
    spec, changes = registration_input(current["taskDefinition"], pinned)

    existing = _registered_by_execution(spec["family"], execution)
    if existing is not None:
        registered, reused = existing, True
    else:
        # aws:* tags are reserved (CloudFormation puts them there) and cannot be set by a caller.
        tags = [t for t in current.get("tags", []) if not t["key"].startswith(("ferry:", "aws:"))][:49]
        tags.append({"key": EXECUTION_TAG, "value": execution[:256]})
        try:
            registered = ecs.register_task_definition(**spec, tags=tags)["taskDefinition"]
        except (ecs.exceptions.ClientException, ecs.exceptions.InvalidParameterException) as exc:
            raise TaskDefinitionInvalid(f"ECS refused the rendered task definition for {spec['family']}: {exc}") from exc
        reused = False

    document = {k: v for k, v in registered.items() if k not in {"registeredAt", "deregisteredAt"}}
    key = artefacts.put_json(artefacts_bucket, execution, "task-definition.json", document)
    return Rendered(
        task_definition_arn=registered["taskDefinitionArn"],
        previous_task_definition_arn=service["taskDefinition"],
        desired_count=service["desiredCount"],
        images={name: ref.pinned for name, ref in pinned.items()},
        changes=changes,
        artefact_key=key,
        reused=reused,
    )
