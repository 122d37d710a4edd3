"""Release manifests: several services deployed together, or not at all.

CI writes `manifests/<name>.json` into the config bucket once every image of a
release is in ECR. The router reads it (`plan_manifest`), checks all of it
(schema, registry, clusters, containers, repositories, ECR) and reports every
problem at once, each with its JSON path. Only a manifest without a single
problem starts anything: one execution per deployment, each named after the
event so a redelivered event starts nothing twice.

The outcome goes beside the manifest as `manifests/<name>.result.json`
(`write_result`), and each execution's end is recorded in it (`record_end`)
with S3 conditional writes, so executions that end together keep each
other's updates.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ferry import aws, config
from ferry.aws import images
from ferry.triggers import requests
from ferry.config import validation
from ferry.runtime import clock
from ferry.errors import FerryError, ImageNotFound, cause_text
from ferry.text import shorten

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

SCHEMA = "manifest.schema.json"
PREFIX = "manifests/"
SUFFIX = ".json"
RESULT_SUFFIX = ".result.json"
MAX_BYTES = 256 * 1024
MAX_ECHO = 80  # characters of a manifest's value repeated in a message
MAX_ERROR = 256  # characters of an execution's error name kept in the result
MAX_CAUSE_BYTES = 2048  # bytes of an execution's failure cause kept in the result
WRITE_ATTEMPTS = 8  # conditional writes of the result file before giving up

_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")  # fullmatch: `$` would let "release\n" through
# An ECR repository name, as the service config's schema has it.
_REPOSITORY = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"  # a Docker tag
_SHORT = re.compile(  # fullmatch
    rf"(?P<repository>{_REPOSITORY})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?"
)
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_MISSING = ("NoSuchKey", "404", "NotFound", "AccessDenied", "403")


@dataclass(frozen=True)
class ManifestProblem:
    path: str  # JSON path in the manifest, e.g. "$.deployments[1].images.app"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


# ------------------------------------------------------------------ keys


def is_manifest_key(key: str) -> bool:
    """True for manifests/<name>.json directly under manifests/; false for result files, nested keys and odd names."""
    if (
        not isinstance(key, str)
        or not key.startswith(PREFIX)
        or not key.endswith(SUFFIX)
        or key.endswith(RESULT_SUFFIX)
    ):
        return False
    name = key[len(PREFIX) : -len(SUFFIX)]
    return bool(_NAME.fullmatch(name)) and ".." not in name and not name.startswith(".")


def manifest_name(key: str) -> str:
    """manifests/release-1.json -> release-1."""
    if not is_manifest_key(key):
        raise ValueError(
            f"{key!r} is not a manifest key: manifests/<name>.json, name of [A-Za-z0-9._-], not *.result.json"
        )
    return key[len(PREFIX) : -len(SUFFIX)]


def result_key(key: str) -> str:
    """manifests/x.json -> manifests/x.result.json."""
    return f"{PREFIX}{manifest_name(key)}{RESULT_SUFFIX}"


# ------------------------------------------------------------------ messages


def _cap(value: Any, limit: int = MAX_ECHO) -> str:
    """repr of a value from the manifest, cut to `limit` characters: a message never repeats a big string."""
    return shorten(repr(value), limit)


@functools.cache
def _validator() -> Any:
    return validation.validator_class()(validation.schema(SCHEMA))


def _describe(error: ValidationError) -> str:
    if error.validator == "const" and list(error.absolute_path) == ["version"]:
        return f"{_cap(error.instance)} is not a manifest version Ferry reads: use 1"
    message = error.message
    if error.validator == "additionalProperties":
        extra = sorted(k for k in error.instance if k not in error.schema.get("properties", {}))
        message = (
            f"unknown {'keys' if len(extra) > 1 else 'key'} {', '.join(_cap(k) for k in extra[:10])}"
            f"{' …' if len(extra) > 10 else ''} (remove it, or check its spelling against the schema)"
        )
    elif error.validator == "required":
        message = f"{error.message}: add it"
    elif not isinstance(error.instance, (bool, int, float)) and error.instance is not None:
        whole = repr(error.instance)
        if len(whole) > MAX_ECHO:
            message = message.replace(whole, _cap(error.instance))
    return shorten(message, 500)


def schema_problems(document: Any) -> list[ManifestProblem]:
    """Every violation of manifest.schema.json, each with its JSON path, sorted by path."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: (validation.json_path(e), e.message))
    return [ManifestProblem(validation.json_path(e), _describe(e)) for e in errors]


# ------------------------------------------------------------------ reading


def _read(bucket: str, key: str) -> tuple[bytes | None, float | None, list[ManifestProblem]]:
    """(body, LastModified as epoch seconds, problems); the size is checked before anything is read."""
    s3 = aws.client("s3")
    where = f"s3://{bucket}/{key}"
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("ContentLength", 0) > MAX_BYTES:
            return (
                None,
                None,
                [
                    ManifestProblem(
                        "$",
                        (
                            f"the manifest is {head['ContentLength']} bytes, more than the {MAX_BYTES} bytes (256 KiB) Ferry reads: "
                            "split the release into several manifests"
                        ),
                    )
                ],
            )
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in _MISSING:
            return (
                None,
                None,
                [
                    ManifestProblem(
                        "$",
                        f"{where} could not be read ({aws.error_code(exc)}): was it deleted right after it was written?",
                    )
                ],
            )
        raise
    body = obj["Body"].read(MAX_BYTES + 1)  # the object may have been replaced between HEAD and GET
    if len(body) > MAX_BYTES:
        return (
            None,
            None,
            [
                ManifestProblem(
                    "$",
                    f"the manifest is more than the {MAX_BYTES} bytes (256 KiB) Ferry reads: "
                    "split the release into several manifests",
                )
            ],
        )
    modified = obj.get("LastModified") or head.get("LastModified")
    return body, (modified.timestamp() if modified else None), []


def _decode(body: bytes) -> tuple[Any, list[ManifestProblem]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [ManifestProblem("$", f"not JSON: not UTF-8 text (byte {exc.start})")]
    try:
        document = json.loads(text, parse_constant=_no_constant, object_pairs_hook=validation.json_object)
    except json.JSONDecodeError as exc:
        return None, [ManifestProblem("$", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
    except ValueError as exc:  # NaN / Infinity, which JSON does not have; a number of over 4300 digits
        return None, [ManifestProblem("$", f"not JSON: {exc}")]
    except RecursionError:
        return None, [
            ManifestProblem("$", f"nested more than {validation.MAX_DEPTH} levels deep: a manifest needs 4; flatten it")
        ]
    found = [ManifestProblem(path, message) for path, message in validation.shape_problems(document)]
    return (None, found) if found else (document, [])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _meta(name: str, document: Any) -> dict[str, Any]:
    doc = document if isinstance(document, dict) else {}
    reason, commit = doc.get("reason"), doc.get("commit")
    return {
        "name": name,
        "reason": reason[:1000] if isinstance(reason, str) else None,
        "commit": commit[:128] if isinstance(commit, str) else None,
    }


# ------------------------------------------------------------------ checking


class _Place:
    """This installation's account and region, asked for only when a short image name needs them."""

    def __init__(self, account: str, region: str):
        self._account, self._region = account, region

    @property
    def account(self) -> str:
        if not self._account:
            self._account = aws.client("sts").get_caller_identity()["Account"]
        return self._account

    @property
    def region(self) -> str:
        if not self._region:
            self._region = aws.client("ecr").meta.region_name
        return self._region


def _looks_like_other_registry(value: str) -> bool:
    first, slash, _ = value.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _image(value: str, place: _Place) -> tuple[images.ImageRef | None, str | None]:
    """The image a manifest names, expanded to a full ECR reference, or (None, what is wrong)."""
    shown = _cap(value)
    if ".dkr.ecr." in value:
        ref = images.parse(value)
        if ref is None or (ref.tag is not None and not re.fullmatch(_TAG, ref.tag)) or value != value.strip():
            return None, (
                f"{shown} is not an ECR image URI: write <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> "
                "(or @sha256:<digest>), or the short <repository>:<tag>"
            )
        if (ref.registry, ref.region) != (place.account, place.region):
            return None, (
                f"{shown} is in the ECR of account {ref.registry} in {ref.region}; Ferry deploys images of "
                f"{place.account} in {place.region}: push the image there"
            )
    elif _looks_like_other_registry(value):
        return None, (
            f"{shown} is not an ECR image of this account: Ferry deploys images of "
            f"{place.account}.dkr.ecr.{place.region}.amazonaws.com; push it there and name it <repository>:<tag>"
        )
    else:
        match = _SHORT.fullmatch(value)
        if match is None:
            return None, (
                f"{shown} is not an image reference: write <repository>:<tag>, <repository>@sha256:<digest>, "
                "or a full ECR URI"
            )
        ref = images.ImageRef(place.account, place.region, match["repository"], match["tag"], match["digest"])
    if not ref.tag and not ref.digest:
        return None, f"{shown} names neither a tag nor a digest: add :<tag> or @sha256:<digest>"
    return ref, None


def _in_ecr(ref: images.ImageRef, shown: str) -> tuple[images.ImageRef | None, str | None]:
    """The image with its digest from ECR, or (None, what is wrong)."""
    try:
        found = images.resolve(
            ref.registry, ref.region, ref.repository, tag=ref.tag, digest=None if ref.tag else ref.digest
        )
    except ImageNotFound:
        return None, f"{shown} is not in ECR: push it before writing the manifest"
    if ref.digest and found.digest != ref.digest:
        return None, (
            f"{shown}: tag {_cap(ref.tag)} in ECR is {found.digest[:19]}…, not {ref.digest[:19]}…: "
            "name the digest alone, or the tag the image has now"
        )
    return found, None


def _config(
    bucket: str, name: str, environment: str, allowed: tuple[str, ...]
) -> tuple[config.ServiceConfig | None, str | None]:
    try:
        cfg = config.load(bucket, name, environment)
    except config.ServiceNotRegistered as exc:
        return None, f"{exc}; or fix the name in the manifest"
    except FerryError as exc:  # ConfigInvalid, or TemplateUnresolved from a Jsonnet config
        text = shorten(str(exc), 2000)
        return (
            None,
            f"the config of service {name!r} cannot be used: {text}\nfix {config.PREFIX}{name}/ in s3://{bucket} first",
        )
    try:
        config.check_cluster(cfg, allowed)
    except FerryError as exc:
        return None, str(exc)
    return cfg, None


def _check_deployment(
    i: int,
    deployment: Any,
    *,
    bucket: str,
    environment: str,
    allowed: tuple[str, ...],
    place: _Place,
    seen: dict[str, int],
    configs: dict[str, Any],
    flagged: set[str],
) -> tuple[dict[str, str], list[ManifestProblem]]:
    """Pinned image references of one deployment, and its problems (parts the schema refused are not checked again)."""
    at = f"$.deployments[{i}]"
    found: list[ManifestProblem] = []
    if not isinstance(deployment, dict):
        return {}, found
    service = deployment.get("service")
    if not isinstance(service, str) or f"{at}.service" in flagged:
        return {}, found
    if service in seen:
        found.append(
            ManifestProblem(
                f"{at}.service",
                (
                    f"service {service!r} is deployed by $.deployments[{seen[service]}] already: "
                    "give each service one deployment, with all its containers' images"
                ),
            )
        )
    else:
        seen[service] = i
    if service not in configs:
        configs[service] = _config(bucket, service, environment, allowed)
    cfg, wrong = configs[service]
    if cfg is None:
        if seen[service] == i:  # said once, at the first deployment of the service
            found.append(ManifestProblem(f"{at}.service", wrong))
        return {}, found
    pinned: dict[str, str] = {}
    wanted = deployment.get("images")
    if not isinstance(wanted, dict) or f"{at}.images" in flagged:
        return {}, found
    for container, value in wanted.items():
        path = f"{at}.images.{container}"
        if not isinstance(value, str) or path in flagged:
            continue
        if container not in cfg.containers:
            found.append(
                ManifestProblem(
                    path,
                    (
                        f"container {_cap(container)} is not one Ferry deploys for service {service} "
                        f"(its config names {', '.join(sorted(cfg.containers))}): use one of those, or add it under `containers` "
                        f"in {config.PREFIX}{service}/ferry.yaml"
                    ),
                )
            )
            continue
        ref, wrong = _image(value, place)
        if ref is None:
            found.append(ManifestProblem(path, wrong))
            continue
        expected = cfg.containers[container]
        if ref.repository != expected:
            found.append(
                ManifestProblem(
                    path,
                    (
                        f"{_cap(value)} is an image of repository {_cap(ref.repository)}, but container {container} of service "
                        f"{service} is fed by {expected!r}: name an image of {expected}"
                    ),
                )
            )
            continue
        resolved, wrong = _in_ecr(ref, _cap(value))
        if resolved is None:
            found.append(ManifestProblem(path, wrong))
            continue
        pinned[container] = resolved.reference
    return pinned, found


def plan_manifest(
    bucket: str,
    key: str,
    *,
    allowed_clusters: tuple[str, ...],
    environment: str,
    event_id: str,
    account: str = "",
    region: str = "",
) -> tuple[list[dict[str, Any]], list[ManifestProblem], dict[str, Any]]:
    """(plans, problems, metadata) of the manifest at s3://bucket/key.

    Every problem is reported; when there is any, there are no plans (nothing
    deploys). Otherwise one plan per deployment, shaped like a push's (ferry.triggers.router.plan_push).
    `account` and `region` (the event's) expand short image names; when empty
    they are looked up (STS and the client's region).
    """
    name = manifest_name(key)
    body, requested_at, found = _read(bucket, key)
    if body is None:
        return [], found, _meta(name, None)
    document, found = _decode(body)
    if found:
        return [], found, _meta(name, None)
    found = schema_problems(document)
    meta = _meta(name, document)
    if not isinstance(document, dict) or not isinstance(document.get("deployments"), list):
        return [], found, meta
    flagged = {p.path for p in found}
    place = _Place(account, region)
    seen: dict[str, int] = {}
    configs: dict[str, Any] = {}
    pinned_by_index: dict[int, dict[str, str]] = {}
    for i, deployment in enumerate(document["deployments"]):
        pinned, wrong = _check_deployment(
            i,
            deployment,
            bucket=bucket,
            environment=environment,
            allowed=tuple(allowed_clusters),
            place=place,
            seen=seen,
            configs=configs,
            flagged=flagged,
        )
        pinned_by_index[i] = pinned
        found.extend(wrong)
    if found:
        return [], found, meta
    document = validation.with_defaults(document, SCHEMA)
    plans = []
    for i, deployment in enumerate(document["deployments"]):
        service = deployment["service"]
        plans.append(
            {
                "name": requests.execution_name(service, name, event_id),
                "input": {
                    "summary": requests.request_summary(service, pinned_by_index[i], f"manifest {name}"),
                    "service": service,
                    "images": pinned_by_index[i],
                    "migrate": deployment["migrate"],
                    "values": dict(deployment.get("values", {})),
                    "commit": meta["commit"],
                    "reason": meta["reason"],
                    "trigger": {
                        "type": "manifest",
                        "bucket": bucket,
                        "key": key,
                        "eventId": event_id,
                        "requestedAt": requested_at,
                    },
                },
            }
        )
    return plans, [], meta


# ------------------------------------------------------------------ the result file


def result_document(
    key: str,
    *,
    plans: list[dict[str, Any]],
    problems: list[ManifestProblem],
    started: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What manifests/<name>.result.json says: REFUSED with every problem, or STARTED with each deployment's execution.

    `started` is requests.start's answer for `plans`. A deployment not (yet)
    started is PLANNED; one whose execution already existed (a redelivered
    event) has no executionArn here, and write_result keeps what the file
    already says about it.
    """
    by_service = {s.get("service"): s for s in started or []}
    deployments = []
    if not problems:
        for plan in plans:
            service = plan["input"]["service"]
            start = by_service.get(service)
            deployments.append(
                {
                    "service": service,
                    "execution": plan["name"],
                    "executionArn": start.get("executionArn") if start else None,
                    "status": "RUNNING" if start else "PLANNED",
                }
            )
    return {
        "manifest": key,
        **(meta or {}),
        "status": "REFUSED" if problems else "STARTED",
        "problems": [p.to_dict() for p in problems],
        "deployments": deployments,
    }


def _get_result(bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """(document, ETag) of a result file, or (None, None) when there is none."""
    try:
        obj = aws.client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in _MISSING:
            return None, None
        raise
    try:
        document = json.loads(obj["Body"].read())
    except ValueError:
        document = None  # not ours any more: replaced whole
    return (document if isinstance(document, dict) else None), obj["ETag"]


def _put_if(bucket: str, key: str, document: dict[str, Any], etag: str | None) -> bool:
    """Put `document` only if the object is still at `etag` (or still absent); False when someone wrote first."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        aws.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(document, indent=2).encode(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if aws.error_code(exc) in _CONFLICTS:
            return False
        raise
    return True


def _pause(attempt: int) -> None:
    clock.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))


_NOT_ENDED = ("PLANNED", "RUNNING")


def _merge(existing: dict[str, Any] | None, document: dict[str, Any]) -> dict[str, Any]:
    """`document`, keeping what `existing` recorded about the same executions (an end recorded before this write)."""
    if not existing:
        return document
    known = {d.get("execution"): d for d in existing.get("deployments", []) if isinstance(d, dict)}
    merged = []
    for entry in document.get("deployments", []):
        old = known.get(entry["execution"])
        entry = dict(entry)
        if old:
            if not entry.get("executionArn") and old.get("executionArn"):
                entry["executionArn"] = old["executionArn"]
            if old.get("status") not in _NOT_ENDED:
                for field in ("status", "error", "cause"):
                    if field in old:
                        entry[field] = old[field]
        merged.append(entry)
    return {**document, "deployments": merged}


def write_result(bucket: str, key: str, document: dict[str, Any]) -> str:
    """Write manifests/<name>.result.json for the manifest `key`; returns the result file's key.

    An execution's end that record_end already wrote (it can beat the router's
    write) is kept, with the same conditional writes record_end uses.
    """
    target = result_key(key)
    for attempt in range(WRITE_ATTEMPTS):
        existing, etag = _get_result(bucket, target)
        if _put_if(bucket, target, _merge(existing, document), etag):
            return target
        _pause(attempt)
    raise RuntimeError(
        f"s3://{bucket}/{target} kept changing while it was written ({WRITE_ATTEMPTS} attempts): try again"
    )


def _cut_bytes(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "…"


def record_end(
    bucket: str, result_key: str, execution_name: str, status: str, error: str | None, cause: str | None
) -> bool:
    """Record how one execution ended in its manifest's result file; False when the file does not list it.

    Read, change, put with If-Match on the ETag read: when another execution's
    end was written in between, read again and redo the change.
    """
    for attempt in range(WRITE_ATTEMPTS):
        document, etag = _get_result(bucket, result_key)
        if document is None:
            return False
        entry = next(
            (
                d
                for d in document.get("deployments", [])
                if isinstance(d, dict) and d.get("execution") == execution_name
            ),
            None,
        )
        if entry is None:
            return False
        entry.update(
            status=status,
            error=error if error is None else error[:MAX_ERROR],
            cause=_cut_bytes(cause_text(cause), MAX_CAUSE_BYTES),
        )
        if _put_if(bucket, result_key, document, etag):
            return True
        _pause(attempt)
    raise RuntimeError(
        f"s3://{bucket}/{result_key} kept changing while {execution_name}'s end was recorded "
        f"({WRITE_ATTEMPTS} attempts): try again"
    )
