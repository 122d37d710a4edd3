"""Artefacts live in S3; executions carry only their keys (state stays small)."""

from __future__ import annotations

import json
from typing import Any

from ferry import aws

# The planned RegisterTaskDefinition input: written by Render, read by Verify and Register.
PLAN_ARTEFACT = "task-definition.input.json"


def key(execution: str, name: str) -> str:
    return f"executions/{execution}/{name}"


def put_json(bucket: str, execution: str, name: str, document: Any) -> str:
    object_key = key(execution, name)
    aws.client("s3").put_object(
        Bucket=bucket,
        Key=object_key,
        ContentType="application/json",
        Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
    )
    return object_key


def put_text(bucket: str, execution: str, name: str, text: str) -> str:
    object_key = key(execution, name)
    aws.client("s3").put_object(
        Bucket=bucket, Key=object_key, ContentType="text/plain; charset=utf-8", Body=text.encode()
    )
    return object_key


def get_json(bucket: str, execution: str, name: str) -> Any:
    body = aws.client("s3").get_object(Bucket=bucket, Key=key(execution, name))["Body"].read()
    return json.loads(body)
