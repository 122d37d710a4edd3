"""The time Ferry's steps see.

`now()` is wall-clock time on AWS. The local sandbox replaces it with its
simulated clock so that timeouts measured against ECS timestamps stay
consistent while a ten-minute rollout plays out in seconds.
"""

from __future__ import annotations

import time
from typing import Callable

_source: Callable[[], float] = time.time


def now() -> float:
    return _source()


def use(source: Callable[[], float] | None) -> None:
    global _source
    _source = source or time.time
