"""Router: what the router function does with an event: an ECR push becomes one deploy request per service it
feeds; a release manifest dropped into the config bucket is handed to `manifest`; anything else is logged,
saying why, and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ferry import config
from ferry.aws.images import ImageRef
from ferry.runtime.observability import logger
from ferry.runtime.settings import Settings
from ferry.triggers import manifest, requests

_ACCOUNT = re.compile(r"[0-9]{12}")


@dataclass(frozen=True)
class Push:
    registry: str
    region: str
    repository: str
    tag: str
    digest: str
    event_id: str
    # The push's time (EventBridge `time`, whole seconds): the newest push wins. Two pushes in the same second are
    # told apart by their executions' starts, not by the event id, which is random (ferry.steps.lock.DeployOrder).
    requested_at: float = 0.0

    @property
    def image(self) -> ImageRef:
        return ImageRef(self.registry, self.region, self.repository, self.tag, self.digest)


def _why_not_a_push(event: Any) -> str | None:
    if not isinstance(event, dict):
        return f"the event is {type(event).__name__}, not a JSON object"
    if event.get("detail-type") != "ECR Image Action":
        return f"detail-type {requests.shown(event.get('detail-type'))} is not 'ECR Image Action' nor a manifest drop"
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return f"detail is {type(detail).__name__}, not an object: not an ECR event"
    if detail.get("action-type") != "PUSH":
        return f"action-type {requests.shown(detail.get('action-type'))} is not 'PUSH': only a push deploys"
    if detail.get("result") != "SUCCESS":
        return f"result {requests.shown(detail.get('result'))} is not 'SUCCESS': a failed push deploys nothing"
    for name in ("image-tag", "image-digest", "repository-name"):
        value = detail.get(name)
        if not isinstance(value, str) or not value:
            what = "missing" if value is None else f"{requests.shown(value)}, not text"
            hint = ": a push without a tag (by digest alone) deploys nothing" if name == "image-tag" else ""
            return f"detail.{name} is {what}{hint}"
    if not isinstance(event.get("account"), str) or not _ACCOUNT.fullmatch(event["account"]):
        return (
            f"account {requests.shown(event.get('account'))} is not an AWS account id: the image's registry is unknown"
        )
    if not isinstance(event.get("region"), str) or not event["region"]:
        return f"region {requests.shown(event.get('region'))} is not a region: the image's registry is unknown"
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
            requests.ignored(event, reason)
        return None
    detail = event["detail"]
    return Push(
        event["account"],
        event["region"],
        detail["repository-name"],
        detail["image-tag"],
        detail["image-digest"],
        str(event.get("id") or ""),
        requests.event_time(event),
    )


def plan_push(push: Push, configs: list[config.ServiceConfig]) -> list[dict[str, Any]]:
    """The executions a push starts: one per service whose triggers match."""
    plans = []
    for cfg in configs:
        if not cfg.deploys_push(push.repository, push.tag):
            continue
        containers = cfg.containers_fed_by(push.repository)
        images = {c: push.image.reference for c in containers}
        plans.append(
            {
                "name": requests.execution_name(cfg.name, push.tag, push.event_id),
                "input": {
                    "summary": requests.request_summary(cfg.name, images, f"ECR push of {push.repository}:{push.tag}"),
                    "service": cfg.name,
                    "images": images,
                    "trigger": {
                        "type": "ecr-push",
                        "repository": push.repository,
                        "tag": push.tag,
                        "digest": push.digest,
                        "eventId": push.event_id,
                        "requestedAt": push.requested_at,
                    },
                },
            }
        )
    return plans


def manifest_key(event: Any, config_bucket: str) -> str | None:
    """The manifest key of an S3 'Object Created' event in the config bucket, or None for anything else.

    An 'Object Created' event that is not a manifest drop (another bucket, a
    result file, a key outside manifests/, a detail of another shape) is
    logged with the reason; other events are parse_push's to explain.
    """
    if not _is_object_created(event):
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict):
        requests.ignored(event, f"detail is {type(detail).__name__}, not an object: not an S3 event")
        return None
    bucket, obj = detail.get("bucket"), detail.get("object")
    name = bucket.get("name") if isinstance(bucket, dict) else None
    key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(name, str):
        requests.ignored(event, "detail.bucket.name is missing or not text: not an S3 event")
        return None
    if name != config_bucket:
        requests.ignored(
            event, f"object created in bucket {requests.shown(name)}, not the config bucket {config_bucket!r}"
        )
        return None
    if not isinstance(key, str):
        requests.ignored(event, "detail.object.key is missing or not text: not an S3 event")
        return None
    if not manifest.is_manifest_key(key):
        requests.ignored(
            event,
            f"object {requests.shown(key)} is not a manifest: manifests/<name>.json, name of [A-Za-z0-9._-], "
            "not *.result.json",
        )
        return None
    return key


def start_manifest(
    event: dict[str, Any],
    key: str,
    *,
    config_bucket: str,
    state_machine_arn: str,
    allowed_clusters: tuple[str, ...],
    environment: str,
) -> dict[str, Any]:
    """Validate a dropped manifest and start one execution per service, or none; the result document says which."""

    def text(name: str) -> str:
        value = event.get(name)
        return value if isinstance(value, str) else ""

    plans, problems, meta = manifest.plan_manifest(
        config_bucket,
        key,
        allowed_clusters=allowed_clusters,
        environment=environment,
        event_id=text("id"),
        account=text("account") if _ACCOUNT.fullmatch(text("account")) else "",
        region=text("region"),
    )
    requested_at = requests.event_time(event)  # the drop's time, on the same clock as pushes
    for plan in plans:
        plan["input"]["trigger"]["requestedAt"] = requested_at
    if problems:
        result = manifest.write_result(
            config_bucket, key, manifest.result_document(key, plans=[], problems=problems, meta=meta)
        )
        return {"started": [], "refused": [str(p) for p in problems], "result": result}
    # Written before the executions start, so an execution that ends at once finds its line to record into.
    manifest.write_result(config_bucket, key, manifest.result_document(key, plans=plans, problems=[], meta=meta))
    started = requests.start(state_machine_arn, plans)
    result = manifest.write_result(
        config_bucket, key, manifest.result_document(key, plans=plans, problems=[], started=started, meta=meta)
    )
    return {"started": started, "refused": [], "result": result}


def route(event: Any, settings: Settings) -> dict[str, Any]:
    """The router function: start what the event asks for; `started` lists the executions (a duplicate event's
    are marked `duplicate`), `ignored` says the event asked for nothing, `refused` lists a manifest's problems."""
    key = manifest_key(event, settings.config_bucket)
    if key is not None:
        outcome = start_manifest(
            event,
            key,
            config_bucket=settings.config_bucket,
            state_machine_arn=settings.state_machine_arn,
            allowed_clusters=settings.allowed_clusters,
            environment=settings.environment,
        )
        if outcome["refused"]:
            logger.warning(
                "manifest refused: nothing deploys",
                extra={"manifest": key, "problems": outcome["refused"], "result": outcome["result"]},
            )
        else:
            logger.info(
                "deploys started", extra={"manifest": key, "started": outcome["started"], "result": outcome["result"]}
            )
        return {"started": outcome["started"], "ignored": False, "refused": outcome["refused"]}
    push = parse_push(event)
    if push is None:
        logger.info(
            "event ignored: not a successful ECR push with a tag, nor a manifest in the config bucket",
            extra={
                "detailType": event.get("detail-type") if isinstance(event, dict) else None,
                "eventId": event.get("id") if isinstance(event, dict) else None,
            },
        )
        return {"started": [], "ignored": True}
    configs, broken = config.load_all(settings.config_bucket, settings.environment)
    for problem in broken:
        logger.warning("service config skipped", extra={"problem": problem})
    for outside in (c for c in configs if not c.on_allowed_cluster(settings.allowed_clusters)):
        logger.warning(
            "service config skipped: its cluster is not one Ferry is installed for",
            extra={
                "service": outside.name,
                "cluster": outside.cluster,
                "fix": "add the cluster to the stack's Clusters parameter, or move the service",
            },
        )
    plans = plan_push(push, [c for c in configs if c.on_allowed_cluster(settings.allowed_clusters)])
    if not plans:
        logger.info("push deploys no service", extra={"repository": push.repository, "tag": push.tag})
        return {"started": [], "ignored": False}
    started = requests.start(settings.state_machine_arn, plans)
    logger.info("deploys started", extra={"started": started})
    return {"started": started, "ignored": False}
