"""boto3 clients shared by the handlers.

One client per service per process, created on first use (not at import, so
cold starts pay only for the clients a step really calls), with botocore's
adaptive retry mode: exponential back-off with jitter plus client-side rate
limiting when AWS throttles, at most MAX_ATTEMPTS attempts per call.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config

# Every attempt of one call, the first included: `total_max_attempts`, since botocore's `max_attempts`
# counts only the retries (8 there made 9 attempts). Between 8 attempts botocore backs off for 35 s on
# average (each wait drawn up to 1, 2, 4, 8, 16, 20, 20 s), within the functions' 60 s most of the time.
MAX_ATTEMPTS = int(os.environ.get("FERRY_MAX_ATTEMPTS", "8"))

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "total_max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
)


@functools.cache
def client(service: str):
    return boto3.client(service, config=RETRY_CONFIG)


def reset() -> None:
    """Forget cached clients (tests and the sandbox switch endpoints)."""
    client.cache_clear()
    regional_client.cache_clear()


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


@functools.cache
def regional_client(service: str, region: str):
    """A client for another region (a log group or secret that lives elsewhere)."""
    return boto3.client(service, region_name=region, config=RETRY_CONFIG)


T = TypeVar("T")


def items(
    client: Any, operation: str, key: str | tuple[str, ...], *, token: str = "nextToken", **params: Any
) -> list[Any]:
    """Every `key` item (or, for a tuple of keys, every item of each) of every page of a List or Describe call.

    AWS answers these a page at a time (ECS ListTasks 100 ARNs, ListServiceDeployments 20, CloudWatch
    DescribeAlarms 50, ...); botocore's paginator reads the pages where it has one (`client.can_paginate`),
    and the `token` loop (ECS's nextToken) where it has none.
    """
    keys = (key,) if isinstance(key, str) else key
    return [
        item for page in pages(client, operation, token=token, **params) for k in keys for item in page.get(k) or []
    ]


def pages(client: Any, operation: str, *, token: str = "nextToken", **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of a call: botocore's paginator where it has one, else the `token` loop."""
    if client.can_paginate(operation):
        yield from client.get_paginator(operation).paginate(**params)
        return
    call = getattr(client, operation)
    while True:
        page = call(**params)
        yield page
        if not page.get(token) or page.get(token) == params.get(token):
            return
        params = {**params, token: page[token]}


def batches(values: Sequence[T], size: int) -> Iterator[list[T]]:
    """`values` in lists of at most `size` (an API's most items a call), in order, without repeats."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]
