"""Artefacts live in S3; executions carry only their keys (state stays small).

The plan (PLAN_ARTEFACT, the RegisterTaskDefinition input Render wrote) is the one artefact a later step acts on,
so it travels with its content hash: Render keeps the sha256 of the exact bytes it stored in the execution's
state ($.render.planSha256), and Verify and Register read the plan through `get_plan`, which refuses a document
whose bytes have another hash. The state is written only by Step Functions; the bucket may be written by more
principals than Ferry's functions, so the hash, not the key, says which document was verified. The bucket is
versioned (template.yaml), so a replaced plan's earlier versions stay readable for whoever looks into it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ferry import aws
from ferry.errors import TaskDefinitionInvalid

# The planned RegisterTaskDefinition input: written by Render, read by Verify and Register.
PLAN_ARTEFACT = "task-definition.input.json"


def key(execution: str, name: str) -> str:
    return f"executions/{execution}/{name}"


def encode_json(document: Any) -> bytes:
    """The bytes a JSON artefact is stored as."""
    return json.dumps(document, indent=2, sort_keys=True, default=str).encode()


def sha256(body: bytes) -> str:
    """The content hash of stored bytes, as the state carries it (hex)."""
    return hashlib.sha256(body).hexdigest()


def _put(bucket: str, object_key: str, body: bytes, content_type: str) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=object_key, ContentType=content_type, Body=body)


def put_json(bucket: str, execution: str, name: str, document: Any) -> str:
    object_key = key(execution, name)
    _put(bucket, object_key, encode_json(document), "application/json")
    return object_key


def put_plan(bucket: str, execution: str, document: Any) -> tuple[str, str]:
    """Store the plan; (its key, the sha256 of the bytes stored): the hash is what Verify and Register accept."""
    object_key, body = key(execution, PLAN_ARTEFACT), encode_json(document)
    _put(bucket, object_key, body, "application/json")
    return object_key, sha256(body)


def put_text(bucket: str, execution: str, name: str, text: str) -> str:
    object_key = key(execution, name)
    _put(bucket, object_key, text.encode(), "text/plain; charset=utf-8")
    return object_key


def get_json(bucket: str, execution: str, name: str) -> Any:
    body = aws.client("s3").get_object(Bucket=bucket, Key=key(execution, name))["Body"].read()
    return json.loads(body)


def get_plan(bucket: str, execution: str, expected_sha256: str, *, changed: str, nothing: str) -> Any:
    """The plan Render stored for `execution`, read once and parsed from the bytes whose hash is checked: a
    document whose sha256 is not `expected_sha256` (or none at all) is refused with TaskDefinitionInvalid,
    saying the plan was changed `changed` (after what) and that `nothing` was done."""
    object_key = key(execution, PLAN_ARTEFACT)
    where = f"s3://{bucket}/{object_key}"
    s3 = aws.client("s3")
    try:
        found = s3.get_object(Bucket=bucket, Key=object_key)
    except s3.exceptions.NoSuchKey:
        raise TaskDefinitionInvalid(
            f"{where} is gone; Render stored the plan with sha256 {expected_sha256}: the plan was changed "
            f"{changed}; {nothing}. Deploy again to render and verify a new plan."
        ) from None
    body = found["Body"].read()
    digest = sha256(body)
    if digest != expected_sha256:
        version = f" (version {found['VersionId']})" if found.get("VersionId") not in (None, "null") else ""
        raise TaskDefinitionInvalid(
            f"{where}{version} has sha256 {digest}, but Render stored the plan with sha256 {expected_sha256}: "
            f"the plan was changed {changed}; {nothing}. Someone who may write to the artefacts bucket replaced "
            "it (the bucket keeps its earlier versions); deploy again to render and verify a new plan."
        )
    return json.loads(body)
