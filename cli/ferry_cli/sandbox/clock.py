"""Simulated time for the sandbox, and every wait that runs on it.

Everything in the sandbox that takes time (Wait states, Retry back-off, tasks
starting, deployments rolling out) runs on one clock that moves `speed`
simulated seconds per real second, so a ten-minute rollout plays out in a few
real seconds while the order of events stays the same as on AWS.

This module is the seam where simulated time plugs in. It holds the clock
(`SimClock`), the stand-ins for the `time` and `threading` modules that make
a wait count simulated seconds, and `wait_patches`, which puts each place in
moto's Step Functions interpreter and in botocore that sleeps or waits on
them. Elsewhere, time is only read (`clock.now()`) or slept through
`SimClock.sleep`:

- `SimClock.sleep`: a handler whose LambdaFault times it out sleeps out its
  function's Timeout (sandbox.Sandbox._run_handler);
- the ECS model replays its scheduled transitions up to `clock.now()` on every
  call (ecs_model.EcsModel._step), so it waits for nothing;
- Lambda's retries of a failed asynchronous invocation, and duplicate
  deliveries, fall due on `clock.now()` (delivery.Outbox.later);
- AWS's request throttling fills its token buckets on `clock.now()`
  (aws_rules.Throttle).

Three threads poll in real time, each until the sandbox closes: the ECS
driver (sandbox.Sandbox.start_driver, every 0.02 s), and the outbox's two
(delivery.Outbox: status and alarm events every 0.02 s, redeliveries every
0.01 s); `Sandbox.wait_for_executions` waits in real seconds, and
run.GAP_BETWEEN_DELIVERIES spaces the deliveries of `ferry sandbox run`.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator
from unittest import mock

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


# ------------------------------------------------------------------ stand-ins that wait on the clock
class ScaledTime:
    """Stands in for the `time` module where the interpreter sleeps between retries."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        time.sleep(self._clock.real_seconds(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class ScaledEvent(threading.Event):
    """A threading.Event whose wait(timeout) counts simulated seconds."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            timeout = min(self._clock.real_seconds(timeout), threading.TIMEOUT_MAX)
        return super().wait(timeout)


class ScaledThreading:
    """Stands in for the `threading` module where the interpreter waits out a state's TimeoutSeconds."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def Event(self) -> ScaledEvent:  # noqa: N802 (the name threading uses)
        return ScaledEvent(self._clock)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


class ScaledCondition(threading.Condition):
    """A threading.Condition whose wait(timeout) counts simulated seconds."""

    def __init__(self, clock: SimClock, lock: Any = None) -> None:
        super().__init__(lock)
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            timeout = min(self._clock.real_seconds(timeout), threading.TIMEOUT_MAX)
        return super().wait(timeout)


class BotocoreThreading(ScaledThreading):
    """Stands in for the `threading` module of botocore's token bucket (adaptive mode waits for capacity)."""

    def Condition(self, lock: Any = None) -> ScaledCondition:  # noqa: N802 (the name threading uses)
        return ScaledCondition(self._clock, lock)


class BotocoreClock:
    """botocore.retries.bucket.Clock on the simulated clock: adaptive mode measures send rates and waits in it.

    Subclassed per sandbox with `clock` set (botocore creates it with no arguments)."""

    clock: SimClock

    def sleep(self, amount: float) -> None:
        time.sleep(self.clock.real_seconds(amount))

    def current_time(self) -> float:
        return self.clock.now()


# ------------------------------------------------------------------ the waits of moto and botocore
def wait_patches(clock: SimClock) -> Iterator[Any]:
    """Every place moto's Step Functions interpreter and botocore sleep or wait, put on `clock`.

    moto: Wait states and Retry back-off sleep in real time, and TimeoutSeconds (every Task, Map and
    Parallel state) and HeartbeatSeconds wait in real time. botocore: in standard and adaptive mode it sleeps
    between attempts (botocore.endpoint) and, once throttled, adaptive mode waits for its token bucket; on AWS
    that time passes inside the Lambda function, on the clock the handlers read, so here it passes on the
    simulated clock.
    """
    from botocore import endpoint
    from botocore.retries import bucket
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.exec import execute_state
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
    from moto.stepfunctions.parser.asl.eval.callback import callback

    # Wait states sleep in real time: wait on the simulated clock, still interruptible by StopExecution.
    def wait_interval(_self, env, wait_seconds):
        if wait_seconds > 0:
            env.program_state_event.wait(clock.real_seconds(wait_seconds))

    yield mock.patch.object(wait_function.WaitFunction, "_wait_interval", wait_interval)
    # Retry back-off sleeps in real time too.
    yield mock.patch.object(retrier_decl, "time", ScaledTime(clock))
    # botocore's retries and adaptive rate limiting.
    yield mock.patch.object(endpoint, "time", ScaledTime(clock))
    yield mock.patch.object(bucket, "Clock", type("SimulatedClock", (BotocoreClock,), {"clock": clock}))
    yield mock.patch.object(bucket, "threading", BotocoreThreading(clock))
    # TimeoutSeconds (every Task, Map and Parallel state) and HeartbeatSeconds wait in real time.
    scaled = ScaledThreading(clock)
    yield mock.patch.object(execute_state, "threading", scaled)
    yield mock.patch.object(callback, "Event", scaled.Event)
