"""The time Ferry's steps see, and how they wait.

`now()` and `sleep()` are the wall clock on AWS. The local sandbox replaces them with its simulated clock
(virtual time), so that timeouts measured against ECS timestamps stay consistent and a wait takes no real time.
"""

from __future__ import annotations

import time
from typing import Callable

_now: Callable[[], float] = time.time
_sleep: Callable[[float], None] = time.sleep


def now() -> float:
    return _now()


def sleep(seconds: float) -> None:
    _sleep(seconds)


def use(source: Callable[[], float] | None, sleeper: Callable[[float], None] | None = None) -> None:
    """Read the time from `source` and wait with `sleeper` (None: the wall clock again)."""
    global _now, _sleep
    _now = source or time.time
    _sleep = sleeper or time.sleep
