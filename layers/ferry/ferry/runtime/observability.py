"""Logger for every handler, created once per process.

Handlers log with the execution name as correlation id and the service as a
key, so one deploy's lines can be followed across all steps in CloudWatch.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from aws_lambda_powertools import Logger

from ferry.errors import InputInvalid

logger = Logger()


def bind(execution: str | None, service: str | None = None, ecs_service: str | None = None) -> None:
    """Every log line names the execution (its correlation id), the service's name in the config registry
    (`service`) and, once known, the ECS service it deploys (`ecs_service`: cluster/name)."""
    logger.set_correlation_id(execution)
    logger.append_keys(service=service, ecs_service=ecs_service)


def log_stream() -> IO[str]:
    """Where the Logger writes: stdout on Lambda; the local sandbox points it at its own log capture."""
    for handler in logger._logger.handlers:  # the Powertools Logger's own stream handler
        if isinstance(handler, logging.StreamHandler):
            return handler.stream
    return sys.stdout


def field(event: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of a step's input, or InputInvalid naming it."""
    if not isinstance(event, dict):
        raise InputInvalid(f"the step's input must be a JSON object, got {type(event).__name__}")
    value = event.get(name)
    if value is None or not isinstance(value, kind) or (isinstance(value, (str, dict)) and not value):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "nothing" if value is None else f"a {type(value).__name__}"  # never echo a value: it may be secret
        raise InputInvalid(f"the step's input needs `{name}` ({expected}); got {got}")
    return value
