"""Router: turn an ECR push into one deploy execution per service it feeds.

Execution names are derived from the event, so EventBridge's at-least-once
delivery of the same push cannot start a second deploy: Step Functions
refuses a name it has already seen (ExecutionAlreadyExists).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from . import aws, clock, config
from .images import ImageRef

NAME_LIMIT = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Push:
    registry: str
    region: str
    repository: str
    tag: str
    digest: str
    event_id: str
    requested_at: float = 0.0  # the push's time (EventBridge `time`): the newest push wins

    @property
    def image(self) -> ImageRef:
        return ImageRef(self.registry, self.region, self.repository, self.tag, self.digest)


def parse_push(event: dict[str, Any]) -> Push | None:
    """The push in an EventBridge 'ECR Image Action' event, or None when it is not a deployable push."""
    detail = event.get("detail") or {}
    if event.get("detail-type") != "ECR Image Action" or detail.get("action-type") != "PUSH" or detail.get("result") != "SUCCESS":
        return None
    tag, digest, repository = detail.get("image-tag"), detail.get("image-digest"), detail.get("repository-name")
    if not (tag and digest and repository):
        return None
    return Push(event.get("account", ""), event.get("region", ""), repository, tag, digest, event.get("id", ""),
                _event_time(event))


def _event_time(event: dict[str, Any]) -> float:
    """When the push or drop happened (EventBridge's `time`), on the clock of executions' StartTime,
    which orders manual deploys: requests of both kinds are compared."""
    try:
        return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return clock.now()


def execution_name(service: str, label: str, event_id: str) -> str:
    """<service>-<tag>-<hash of event and service>, at most 80 characters of [A-Za-z0-9_-]."""
    digest = hashlib.sha256(f"{event_id}|{service}|{label}".encode()).hexdigest()[:12]
    stem = _UNSAFE.sub("-", f"{service}-{label}").strip("-")
    return f"{stem[: NAME_LIMIT - len(digest) - 1]}-{digest}"


def plan_push(push: Push, configs: list[config.ServiceConfig]) -> list[dict[str, Any]]:
    """The executions a push starts: one per service whose triggers match."""
    plans = []
    for cfg in configs:
        if not cfg.deploys_push(push.repository, push.tag):
            continue
        containers = cfg.containers_fed_by(push.repository)
        plans.append({
            "name": execution_name(cfg.name, push.tag, push.event_id),
            "input": {
                "service": cfg.name,
                "images": {c: push.image.reference for c in containers},
                "trigger": {"type": "ecr-push", "repository": push.repository, "tag": push.tag,
                            "digest": push.digest, "eventId": push.event_id, "requestedAt": push.requested_at},
            },
        })
    return plans


def start(state_machine_arn: str, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    started = []
    for plan in plans:
        try:
            arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=plan["name"],
                                      input=json.dumps(plan["input"]))["executionArn"]
            started.append({"service": plan["input"]["service"], "executionArn": arn, "duplicate": False})
        except sfn.exceptions.ExecutionAlreadyExists:
            started.append({"service": plan["input"]["service"], "executionName": plan["name"], "duplicate": True})
    return started


def manifest_key(event: dict[str, Any], config_bucket: str) -> str | None:
    """The manifest key of an S3 'Object Created' event in the config bucket, or None for anything else."""
    from . import manifest

    detail = event.get("detail") or {}
    if event.get("detail-type") != "Object Created" or event.get("source") != "aws.s3":
        return None
    bucket, key = (detail.get("bucket") or {}).get("name"), (detail.get("object") or {}).get("key")
    if bucket != config_bucket or not isinstance(key, str) or not manifest.is_manifest_key(key):
        return None
    return key


def start_manifest(event: dict[str, Any], key: str, *, config_bucket: str, state_machine_arn: str,
                   allowed_clusters: tuple[str, ...], environment: str) -> dict[str, Any]:
    """Validate a dropped manifest and start one execution per service, or none; the result document says which."""
    from . import manifest

    plans, problems, meta = manifest.plan_manifest(
        config_bucket, key, allowed_clusters=allowed_clusters, environment=environment, event_id=event.get("id", ""),
        account=event.get("account", ""), region=event.get("region", ""))
    requested_at = _event_time(event)  # the drop's time, on the same clock as pushes
    for plan in plans:
        plan["input"]["trigger"]["requestedAt"] = requested_at
    if problems:
        result = manifest.write_result(config_bucket, key, manifest.result_document(key, plans=[], problems=problems, meta=meta))
        return {"started": [], "refused": [str(p) for p in problems], "result": result}
    # Written before the executions start, so an execution that ends at once finds its line to record into.
    manifest.write_result(config_bucket, key, manifest.result_document(key, plans=plans, problems=[], meta=meta))
    started = start(state_machine_arn, plans)
    result = manifest.write_result(config_bucket, key, manifest.result_document(
        key, plans=plans, problems=[], started=started, meta=meta))
    return {"started": started, "refused": [], "result": result}
