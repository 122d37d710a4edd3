"""Simulated time for the sandbox, and every wait that runs on it.

The sandbox runs on virtual time (scheduler.Scheduler): simulated time advances only when nothing can run, so
a deploy takes as long as the work it causes, the same world gives the same history on every run, and a
duration the world sets (a 600 s rollout) is reported as exactly that. Handler work takes no simulated time.

`SimClock` is the sandbox's scheduler. `wait_patches` points every place moto's Step Functions interpreter and
botocore sleep, wait or start a thread at it:

- moto's interpreter runs each execution, each state's TimeoutSeconds and each Map iteration in a thread of
  its own, and waits on events (Wait states, task-token callbacks, heartbeats), conditions, joins and
  time.sleep (Retry back-off); its `threading`, `time` and `datetime` are replaced in every module of
  moto.stepfunctions.parser, so its threads are fibers and its timestamps (the execution's history, its
  start and stop dates) are simulated time;
- botocore sleeps between a call's attempts (standard and adaptive retries) and, once throttled, adaptive mode
  waits for its token bucket: on AWS that time passes inside the Lambda function, on the clock the handlers
  read, so here it passes on the simulated clock.

Elsewhere time is only read (`clock.now()`: handlers through ferry.runtime.clock, the ECS model, the token
buckets of aws_rules.Throttle) or slept through `SimClock.sleep` (a handler whose LambdaFault times it out).
The sandbox's own threads (the ECS simulator's driver, the outbox's) are fibers too (sandbox, delivery).
"""

from __future__ import annotations

import datetime as _datetime
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator
from unittest import mock

from .scheduler import EPOCH, Scheduler, VEvent, VThreading, VTime

__all__ = ["EPOCH", "SimClock", "VEvent", "active", "wait_patches"]

_active: list["SimClock"] = []  # the running sandbox's clock (one sandbox runs at a time: its patches are global)


def active() -> "SimClock":
    """The clock of the sandbox that is running, for code the sandbox calls without handing it over (a test's
    fault hook that schedules something with `active().later(...)`)."""
    if not _active:
        raise RuntimeError("no sandbox is running")
    return _active[-1]


class SimClock(Scheduler):
    """The sandbox's clock: virtual time. `speed`, when given, paces a run to watch it (at most `speed` simulated
    seconds per real second); it never changes what happens or the durations reported."""

    def __init__(self, speed: float | None = None, start: float = EPOCH) -> None:
        super().__init__(start, pace=speed)

    @property
    def speed(self) -> float | None:
        return self.pace

    @contextmanager
    def activate(self) -> Iterator[None]:
        """While the sandbox runs, `active()` is this clock."""
        _active.append(self)
        try:
            yield
        finally:
            _active.remove(self)

    def advance(self, seconds: float) -> None:
        """Move the clock on by hand (the ECS model's own tests, which run no fibers)."""
        self._now += max(0.0, float(seconds))


def _datetime_module(clock: Scheduler) -> Any:
    """A `datetime` module whose datetime.now() (and utcnow()) is simulated time."""

    class SimulatedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            moment = _datetime.datetime.fromtimestamp(clock.now(), tz=_datetime.timezone.utc)
            return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> Any:
            return _datetime.datetime.fromtimestamp(clock.now(), tz=_datetime.timezone.utc).replace(tzinfo=None)

    class Module:
        datetime = SimulatedDatetime

        def __getattr__(self, name: str) -> Any:
            return getattr(_datetime, name)

    return Module()


def wait_patches(clock: Scheduler) -> Iterator[Any]:
    """Every place moto's Step Functions interpreter and botocore sleep, wait, start a thread or read the time,
    put on `clock` (see the module docstring)."""
    import moto.stepfunctions.parser  # noqa: F401  (its modules must be loaded to be patched)
    from botocore import endpoint
    from botocore.retries import bucket

    _load_parser_modules()
    threads, time_, dates = VThreading(clock), VTime(clock), _datetime_module(clock)
    for name, module in list(sys.modules.items()):
        if not name.startswith("moto.stepfunctions.parser") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is threading:
                yield mock.patch.object(module, attribute, threads)
            elif value is threading.Thread:
                yield mock.patch.object(module, attribute, threads.Thread)
            elif value is threading.Event:
                yield mock.patch.object(module, attribute, threads.Event)
            elif value is _time_module():
                yield mock.patch.object(module, attribute, time_)
            elif value is _datetime and name.rsplit(".", 1)[-1] in _DATED:
                yield mock.patch.object(module, attribute, dates)
    # botocore's retries and adaptive rate limiting.
    yield mock.patch.object(endpoint, "time", time_)
    yield mock.patch.object(bucket, "Clock", type("SimulatedClock", (_BotocoreClock,), {"clock": clock}))
    yield mock.patch.object(bucket, "threading", threads)


# The interpreter's modules that read the date (history timestamps, executions' start and stop dates, a state's
# EnteredTime, a Wait's Timestamp); others only test isinstance(x, datetime.datetime), which must stay the real class.
_DATED = {
    "event_manager",
    "execution",
    "execution_worker",
    "provider",
    "models",
    "state",
    "map_run_record",
    "timestamp",
}


def _time_module() -> Any:
    import time

    return time


def _load_parser_modules() -> None:
    """Import every module of moto's Step Functions interpreter, so that none escapes the patches by being
    imported after them."""
    import importlib
    import pkgutil

    import moto.stepfunctions.parser as parser

    for info in pkgutil.walk_packages(parser.__path__, parser.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception:  # a module of an integration Ferry does not use may need an extra it lacks
            continue


class _BotocoreClock:
    """botocore.retries.bucket.Clock on the simulated clock: adaptive mode measures send rates and waits in it.

    Subclassed per sandbox with `clock` set (botocore creates it with no arguments)."""

    clock: Scheduler

    def sleep(self, amount: float) -> None:
        self.clock.sleep(amount)

    def current_time(self) -> float:
        return self.clock.now()
