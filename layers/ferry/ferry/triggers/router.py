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

from ferry import aws, config
from ferry.runtime import clock
from ferry.aws.images import ImageRef
from ferry.runtime.observability import logger
from ferry.text import shorten

NAME_LIMIT = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ACCOUNT = re.compile(r"[0-9]{12}")
_ECHO = 80  # characters of an event's value repeated in a log line


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


def _shown(value: Any) -> str:
    return shorten(repr(value), _ECHO)


def _ignored(event: Any, reason: str) -> None:
    """The one log line of an event the router starts nothing for, saying why."""
    fields = event if isinstance(event, dict) else {}
    logger.info(f"event ignored: {reason}", extra={
        name: value[:_ECHO] if isinstance(value, str) else None
        for name, value in (("eventId", fields.get("id")), ("source", fields.get("source")),
                            ("detailType", fields.get("detail-type")))})


def _why_not_a_push(event: Any) -> str | None:
    if not isinstance(event, dict):
        return f"the event is {type(event).__name__}, not a JSON object"
    if event.get("detail-type") != "ECR Image Action":
        return f"detail-type {_shown(event.get('detail-type'))} is not 'ECR Image Action' nor a manifest drop"
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return f"detail is {type(detail).__name__}, not an object: not an ECR event"
    if detail.get("action-type") != "PUSH":
        return f"action-type {_shown(detail.get('action-type'))} is not 'PUSH': only a push deploys"
    if detail.get("result") != "SUCCESS":
        return f"result {_shown(detail.get('result'))} is not 'SUCCESS': a failed push deploys nothing"
    for name in ("image-tag", "image-digest", "repository-name"):
        value = detail.get(name)
        if not isinstance(value, str) or not value:
            what = "missing" if value is None else f"{_shown(value)}, not text"
            hint = ": a push without a tag (by digest alone) deploys nothing" if name == "image-tag" else ""
            return f"detail.{name} is {what}{hint}"
    if not isinstance(event.get("account"), str) or not _ACCOUNT.fullmatch(event["account"]):
        return f"account {_shown(event.get('account'))} is not an AWS account id: the image's registry is unknown"
    if not isinstance(event.get("region"), str) or not event["region"]:
        return f"region {_shown(event.get('region'))} is not a region: the image's registry is unknown"
    return None


def _is_object_created(event: Any) -> bool:
    return isinstance(event, dict) and event.get("detail-type") == "Object Created" and event.get("source") == "aws.s3"


def parse_push(event: Any) -> Push | None:
    """The push in an EventBridge 'ECR Image Action' event, or None when it is not a deployable push.

    Any other event, of whatever shape, is None with one log line saying why
    (an S3 'Object Created' event's line is manifest_key's).
    """
    reason = _why_not_a_push(event)
    if reason is not None:
        if not _is_object_created(event):
            _ignored(event, reason)
        return None
    detail = event["detail"]
    return Push(event["account"], event["region"], detail["repository-name"], detail["image-tag"],
                detail["image-digest"], str(event.get("id") or ""), _event_time(event))


def _event_time(event: dict[str, Any]) -> float:
    """When the push or drop happened (EventBridge's `time`), on the clock of executions' StartTime,
    which orders manual deploys: requests of both kinds are compared."""
    try:
        return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return clock.now()


def execution_name(service: str, label: str, event_id: str) -> str:
    """<service>-<tag>-<hash of event and service>, at most 80 characters of [A-Za-z0-9_-]."""
    digest = hashlib.sha256(f"{event_id}|{service}|{label}".encode()).hexdigest()[:12]
    stem = _UNSAFE.sub("-", f"{service}-{label}").strip("-")
    return f"{stem[: NAME_LIMIT - len(digest) - 1]}-{digest}"


def request_summary(service: str, images: dict[str, str], how: str) -> str:
    """One line for the execution's input, e.g. 'deploy web: app=web:v2 (ECR push)'; digests are left out."""
    shown = ", ".join(f"{c}={uri.rsplit('/', 1)[-1].split('@', 1)[0]}" for c, uri in sorted(images.items()))
    return f"deploy {service}: {shown} ({how})"[:300]


def plan_push(push: Push, configs: list[config.ServiceConfig]) -> list[dict[str, Any]]:
    """The executions a push starts: one per service whose triggers match."""
    plans = []
    for cfg in configs:
        if not cfg.deploys_push(push.repository, push.tag):
            continue
        containers = cfg.containers_fed_by(push.repository)
        images = {c: push.image.reference for c in containers}
        plans.append({
            "name": execution_name(cfg.name, push.tag, push.event_id),
            "input": {
                "summary": request_summary(cfg.name, images, f"ECR push of {push.repository}:{push.tag}"),
                "service": cfg.name,
                "images": images,
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


def manifest_key(event: Any, config_bucket: str) -> str | None:
    """The manifest key of an S3 'Object Created' event in the config bucket, or None for anything else.

    An 'Object Created' event that is not a manifest drop (another bucket, a
    result file, a key outside manifests/, a detail of another shape) is
    logged with the reason; other events are parse_push's to explain.
    """
    from ferry.triggers import manifest

    if not _is_object_created(event):
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict):
        _ignored(event, f"detail is {type(detail).__name__}, not an object: not an S3 event")
        return None
    bucket, obj = detail.get("bucket"), detail.get("object")
    name = bucket.get("name") if isinstance(bucket, dict) else None
    key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(name, str):
        _ignored(event, "detail.bucket.name is missing or not text: not an S3 event")
        return None
    if name != config_bucket:
        _ignored(event, f"object created in bucket {_shown(name)}, not the config bucket {config_bucket!r}")
        return None
    if not isinstance(key, str):
        _ignored(event, "detail.object.key is missing or not text: not an S3 event")
        return None
    if not manifest.is_manifest_key(key):
        _ignored(event, f"object {_shown(key)} is not a manifest: manifests/<name>.json, name of [A-Za-z0-9._-], "
                        "not *.result.json")
        return None
    return key


def start_manifest(event: dict[str, Any], key: str, *, config_bucket: str, state_machine_arn: str,
                   allowed_clusters: tuple[str, ...], environment: str) -> dict[str, Any]:
    """Validate a dropped manifest and start one execution per service, or none; the result document says which."""
    from ferry.triggers import manifest

    def text(name: str) -> str:
        value = event.get(name)
        return value if isinstance(value, str) else ""

    plans, problems, meta = manifest.plan_manifest(
        config_bucket, key, allowed_clusters=allowed_clusters, environment=environment, event_id=text("id"),
        account=text("account") if _ACCOUNT.fullmatch(text("account")) else "", region=text("region"))
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
