"""The environment every handler runs in, read once and checked.

A missing variable is a deployment mistake, so it fails at cold start with the
variable's name rather than later with a confusing AWS error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    environment: str
    config_bucket: str
    artefacts_bucket: str
    lock_table: str
    allowed_clusters: tuple[str, ...]
    state_machine_arn: str | None = None


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is not set: the function's template entry must define it")
    return value


def load() -> Settings:
    return Settings(
        environment=_required("FERRY_ENVIRONMENT"),
        config_bucket=_required("CONFIG_BUCKET"),
        artefacts_bucket=_required("ARTEFACTS_BUCKET"),
        lock_table=_required("LOCK_TABLE"),
        allowed_clusters=tuple(c.strip() for c in _required("ALLOWED_CLUSTERS").split(",") if c.strip()),
        state_machine_arn=os.environ.get("STATE_MACHINE_ARN") or None,
    )
