"""Simulated time for the sandbox.

Everything in the sandbox that takes time (Wait states, Retry back-off, tasks
starting, deployments rolling out) runs on one clock that moves `speed`
simulated seconds per real second, so a ten-minute rollout plays out in a few
real seconds while the order of events stays the same as on AWS.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


class SimClock:
    def __init__(self, speed: float = 60.0, start: float = EPOCH) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_sim = start
        self._start_real = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Simulated seconds since the Unix epoch."""
        with self._lock:
            elapsed = time.monotonic() - self._start_real
            return self._start_sim + elapsed * self.speed + self._offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return self.now() - self._start_sim

    def real_seconds(self, sim_seconds: float) -> float:
        """How long `sim_seconds` of simulated time takes in real time."""
        return max(0.0, sim_seconds) / self.speed

    def sleep(self, sim_seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Sleep for simulated seconds; returns True when `interrupt` was set."""
        real = self.real_seconds(sim_seconds)
        if interrupt is not None:
            return interrupt.wait(real)
        time.sleep(real)
        return False

    def advance(self, sim_seconds: float) -> None:
        """Jump ahead (tests use it to skip over quiet periods)."""
        with self._lock:
            self._offset += sim_seconds
