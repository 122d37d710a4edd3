"""Virtual time: simulated time advances only when nothing can run, and one thread runs at a time.

The sandbox is many threads: moto runs each execution, each state's timeout and each Map iteration in a thread
of its own; the ECS simulator and the event outbox have theirs. On virtual time every one of them is a *fiber*
of this scheduler, and only the fiber that holds the baton runs. A fiber gives the baton up only where it
waits: a sleep, an event, a condition or a join, each through the primitives below (moto's and botocore's own
`threading` and `time` are pointed at them). The baton then goes to the next fiber that is ready, in the order
they became ready; when none is, the clock jumps to the earliest timer and wakes that fiber. Nothing ever
waits on the wall clock, so a ten-minute rollout takes as long as the work it causes, and the same world and
events give the same history, state by state, on every run.

The thread that drives the sandbox (a test, or `ferry sandbox run`) is the *driver*: while it holds the
baton the world stands still, so it can deliver events and look at what happened. `run_until(predicate)`
lets the world run, and gives the baton back to the driver at every quiescent point (no fiber ready: the
clock is about to jump) until the predicate holds. A driver that sleeps or waits lets the world run too.

Threads that are neither (a thread pool's worker, say) wait on the wall clock as before; the sandbox runs
such pools inline instead (sandbox.Sandbox), so that they cannot hold the baton while a worker waits for it.

Why this is written here: no library schedules *foreign* threads (moto's interpreter) on a virtual clock;
simpy and friends need their processes written as generators.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time as _time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
FOREVER = float("inf")
STUCK_AFTER = 20.0  # real seconds the driver waits for the baton before it reports who holds it


class SchedulerError(Exception):
    """The scheduler was used as it cannot be (a wait outside any fiber, a predicate that cannot hold, ...)."""


class SchedulerClosed(BaseException):
    """Raised in a fiber that waits when the sandbox closes, so that its thread ends (a BaseException: moto's
    `except Exception` must not catch it and carry on)."""


@dataclass(eq=False)
class Fiber:
    """A thread the scheduler runs: it runs only while its `go` is set, and holds the baton meanwhile."""

    name: str
    go: threading.Event = field(default_factory=threading.Event)
    woken: str | None = None  # "event" or "timeout", once a wait has ended
    wait_token: int = 0  # which wait a timer entry belongs to (older ones are stale)
    done: bool = False
    thread: int | None = None  # the ident of the thread it runs in, once it has started


DRIVER = Fiber("driver")


class Scheduler:
    """The clock and the baton. `now()` is simulated seconds since the Unix epoch."""

    def __init__(self, start: float = EPOCH, pace: float | None = None) -> None:
        if pace is not None and not pace > 0:
            raise SchedulerError(f"pace must be a positive number of simulated seconds per real second, not {pace!r}")
        self._now = float(start)
        self._start = float(start)
        self.pace = pace  # watch the run: at most `pace` simulated seconds per real second (None: as fast as it goes)
        self._mutex = threading.Lock()
        self._ready: deque[Fiber] = deque()
        self._timers: list[tuple[float, int, Fiber, int]] = []
        self._seq = itertools.count()
        self._running: Fiber | None = DRIVER  # the driver holds the baton until it lets the world run
        self._local = threading.local()
        self._driver_thread = threading.get_ident()
        self._driver_waiting = False
        self._fibers: set[Fiber] = set()
        self.closed = False
        self.switches = 0  # times the baton changed hands (a measure of the work, for benchmarks)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        return self._now

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self._now, tz=timezone.utc)

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return self._now - self._start

    # ------------------------------------------------------------------ who is calling
    def fiber(self) -> Fiber | None:
        return getattr(self._local, "fiber", None)

    def is_driver(self) -> bool:
        return threading.get_ident() == self._driver_thread and self.fiber() is None

    def adopt_driver(self) -> None:
        """Make the calling thread the driver (the one that made the scheduler usually is)."""
        self._driver_thread = threading.get_ident()

    # ------------------------------------------------------------------ fibers
    def spawn(self, target: Callable[..., Any], name: str) -> Callable[..., Any]:
        """Register a new fiber, ready to run, and return what its thread must run: it waits for the baton, runs
        `target`, and hands the baton on when it ends."""
        fiber = Fiber(name)
        with self._mutex:
            if self.closed:
                raise SchedulerClosed()
            self._ready.append(fiber)
            self._fibers.add(fiber)

        def run(*args: Any, **kwargs: Any) -> Any:
            self._local.fiber = fiber
            fiber.thread = threading.get_ident()
            fiber.go.wait()
            fiber.go.clear()
            try:
                if not self.closed:
                    return target(*args, **kwargs)
                return None
            except SchedulerClosed:
                return None
            finally:
                with self._mutex:
                    fiber.done = True
                    self._fibers.discard(fiber)
                    if self._running is fiber:
                        self._running = None
                        self._dispatch()

        return run

    def _dispatch(self) -> None:
        """Hand the baton on (the mutex is held and nobody holds the baton): to the next ready fiber; else to the
        driver if it waits for a quiescent point; else nobody (the world waits for the driver)."""
        if self.closed:
            return
        if self._ready:
            fiber = self._ready.popleft()
            self._running = fiber
            self.switches += 1
            fiber.go.set()
        elif self._driver_waiting:
            self._driver_waiting = False
            self._running = DRIVER
            DRIVER.go.set()

    def _after(self, seconds: float) -> float:
        """The time `seconds` from now, and later than now whenever `seconds` is positive: a wait shorter than the
        clock's resolution (a float of Unix time: about 2e-7 s) must still end later, or a loop that waits until
        a token bucket refills would wait forever at the same instant."""
        seconds = max(0.0, float(seconds))
        due = self._now + seconds
        return math.nextafter(self._now, FOREVER) if seconds > 0 and due <= self._now else due

    def _next_timer(self) -> tuple[float, Fiber] | None:
        """The earliest live timer (stale ones, of waits that ended otherwise, are dropped)."""
        while self._timers:
            due, _, fiber, token = self._timers[0]
            if fiber.woken is None and fiber.wait_token == token and not fiber.done:
                return due, fiber
            heapq.heappop(self._timers)
        return None

    def block(self, timeout: float | None, register: Callable[[tuple[Fiber, int]], None] | None = None) -> bool:
        """The running fiber waits until woken (True) or `timeout` simulated seconds pass (False). `register` files
        the waiter (the fiber and its wait's token) where `wake` is called with it from."""
        fiber = self.fiber()
        if fiber is None:
            raise SchedulerError("only a fiber can block on the scheduler")
        with self._mutex:
            if self._running is not fiber:
                raise SchedulerError(f"fiber {fiber.name} waits without holding the baton")
            fiber.woken = None
            fiber.wait_token = next(self._seq)
            if register is not None:
                register((fiber, fiber.wait_token))
            if timeout is not None and timeout != FOREVER:
                heapq.heappush(self._timers, (self._after(timeout), fiber.wait_token, fiber, fiber.wait_token))
            self._running = None
            self._dispatch()
        fiber.go.wait()
        fiber.go.clear()
        if self.closed:
            raise SchedulerClosed()
        return fiber.woken == "event"

    def close(self) -> None:
        """End every fiber: each wakes in its wait and raises SchedulerClosed, so its thread ends."""
        with self._mutex:
            self.closed = True
            fibers = list(self._fibers)
        for fiber in fibers:
            fiber.go.set()

    def wake(self, waiter: tuple[Fiber, int]) -> bool:
        """Make a waiting fiber ready (called with the mutex held). `waiter` is what `block` registered: the fiber
        and the token of its wait, so that a fiber whose wait timed out is not woken from a later, unrelated wait
        by the primitive it once waited on. False when that wait is over (nobody was woken)."""
        fiber, token = waiter
        if fiber.woken is None and not fiber.done and fiber.wait_token == token:
            fiber.woken = "event"
            self._ready.append(fiber)
            return True
        return False

    # ------------------------------------------------------------------ the driver
    def run_until(
        self,
        predicate: Callable[[], bool],
        *,
        limit: float | None = None,
        what: str = "the condition",
        timed_wait: bool = False,
    ) -> bool:
        """Let the world run until `predicate()` holds at a quiescent point; False when nothing is left to run
        (or `limit` simulated seconds passed) before it did. Only the driver calls this; it holds the baton when
        the predicate is evaluated and when this returns. A `timed_wait` (the driver's own sleep or wait with a
        timeout) that ends unsatisfied has lasted its whole `limit`, even when nothing else was due meanwhile."""
        if not self.is_driver():
            raise SchedulerError("only the driver runs the world")
        deadline = FOREVER if limit is None else self._after(limit)
        while True:
            if predicate():
                return True
            with self._mutex:
                if self._ready:
                    fiber = self._ready.popleft()
                else:
                    nxt = self._next_timer()
                    if nxt is None or nxt[0] > deadline:
                        if deadline != FOREVER and (nxt is not None or timed_wait):
                            self._now = max(self._now, deadline)
                        return False
                    due, fiber = nxt
                    heapq.heappop(self._timers)
                    if self.pace:
                        _time.sleep(max(0.0, due - self._now) / self.pace)
                    self._now = max(self._now, due)
                    fiber.woken = "timeout"
                self._running = fiber
                self.switches += 1
                self._driver_waiting = True
                fiber.go.set()
            if not DRIVER.go.wait(STUCK_AFTER):
                raise SchedulerError(self._stuck())
            DRIVER.go.clear()

    def _stuck(self) -> str:
        """Why the driver has waited for the baton for STUCK_AFTER real seconds: name who holds it, and where."""
        import sys
        import traceback

        holder = self._running
        where = ""
        if holder is not None and holder.thread is not None:
            frame = sys._current_frames().get(holder.thread)
            if frame is not None:
                where = "\n" + "".join(traceback.format_stack(frame)[-6:])
            elif holder.done:
                where = " (its thread has ended)"
        return (
            f"the world has not given the baton back for {STUCK_AFTER:.0f} real seconds: "
            f"{'nobody' if holder is None else holder.name} holds it; ready: {[f.name for f in self._ready]}. "
            "A fiber waits on something outside the scheduler (a real lock, event or sleep)" + where
        )

    def settle(self, *, limit: float | None = None) -> None:
        """Run until nothing is left to run (every fiber waits for something that will not come by itself)."""
        self.run_until(lambda: False, limit=limit)

    def later(self, seconds: float, action: Callable[[], Any], name: str = "later") -> None:
        """Run `action` on a fiber of its own `seconds` of simulated time from now (threading.Timer on the
        scheduler: a test's fault hook fires an alarm during a bake with it)."""

        def body() -> None:
            self.sleep(seconds)
            action()

        VThreading(self).Thread(target=body, name=name, daemon=True).start()

    # ------------------------------------------------------------------ waiting, for anyone
    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of simulated time: a fiber gives the baton up; the driver lets the world run meanwhile;
        any other thread (not scheduled) returns at once."""
        seconds = max(0.0, float(seconds))
        if self.fiber() is not None:
            self.block(seconds)
        elif self.is_driver():
            until = self._after(seconds)
            self.run_until(lambda: self._now >= until, limit=seconds, timed_wait=True)


class _Waitable:
    """What fibers wait on: the waiters, each a (fiber, wait token) pair as `Scheduler.block` registers it (a
    VCondition's may also hold the driver's _DriverWaiter)."""

    _waiters: list[Any]

    def _register(self, waiter: tuple[Fiber, int]) -> None:
        """File a waiter, dropping those whose waits ended otherwise (timed out), so the list stays short."""
        self._waiters[:] = [w for w in self._waiters if not isinstance(w, tuple) or w[0].wait_token == w[1]]
        self._waiters.append(waiter)


class VEvent(_Waitable):
    """threading.Event on the scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._flag = False
        self._waiters: list[Any] = []

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set  # noqa: N815 (threading's old name)

    def set(self) -> None:
        with self._scheduler._mutex:
            self._flag = True
            for waiter in self._waiters:
                self._scheduler.wake(waiter)
            self._waiters.clear()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        scheduler = self._scheduler
        if scheduler.fiber() is not None:
            scheduler.block(timeout, self._register)
            return self._flag
        if scheduler.is_driver():
            return scheduler.run_until(self.is_set, limit=timeout, what="an event", timed_wait=True)
        raise SchedulerError("a thread outside the scheduler waits on one of its events")


class _DriverWaiter:
    """The driver, waiting on a VCondition (it runs the world meanwhile, so it is not a fiber to wake)."""

    notified = False


class VCondition(_Waitable):
    """threading.Condition on the scheduler (botocore's token bucket and moto's count-down latch use one)."""

    def __init__(self, scheduler: Scheduler, lock: Any = None) -> None:
        self._scheduler = scheduler
        self._lock = lock if lock is not None else threading.RLock()
        self._waiters: list[Any] = []

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._lock.__exit__(*exc)

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        scheduler = self._scheduler
        if scheduler.fiber() is not None:
            self._lock.release()
            try:
                return scheduler.block(timeout, self._register)
            finally:
                self._lock.acquire()
        if not scheduler.is_driver():
            raise SchedulerError("a thread outside the scheduler waits on one of its conditions")
        # The driver (a handler's client called by a test, say) lets the world run until notified.
        waiter = _DriverWaiter()
        self._waiters.append(waiter)
        self._lock.release()
        try:
            return scheduler.run_until(lambda: waiter.notified, limit=timeout, what="a condition", timed_wait=True)
        finally:
            self._lock.acquire()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self._scheduler.now() + timeout
        result = predicate()
        while not result:
            remaining = None if deadline is None else deadline - self._scheduler.now()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to `n` waiters that still wait (those whose wait timed out meanwhile do not count)."""
        with self._scheduler._mutex:
            while n > 0 and self._waiters:
                waiter = self._waiters.pop(0)
                if isinstance(waiter, _DriverWaiter):
                    waiter.notified = True
                    n -= 1
                elif self._scheduler.wake(waiter):
                    n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    notifyAll = notify_all  # noqa: N815


class VThreading:
    """Stands in for the `threading` module of moto's interpreter and botocore: its threads are fibers, its events
    and conditions wait on the scheduler; locks stay real (nothing waits on the scheduler while holding one)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        scheduler_ = scheduler

        class Thread(threading.Thread):
            """A thread that is a fiber: it runs only with the baton; join() waits on the scheduler."""

            def start(self) -> None:
                done = self._ferry_done = VEvent(scheduler_)
                original = self.run

                def body() -> None:
                    try:
                        original()
                    finally:
                        done.set()

                self.run = scheduler_.spawn(body, self.name)  # type: ignore[method-assign]
                super().start()

            def join(self, timeout: float | None = None) -> None:
                done = getattr(self, "_ferry_done", None)
                if done is None:
                    return super().join(timeout)
                done.wait(timeout)
                return None

        self.Thread = Thread

    def Event(self) -> VEvent:  # noqa: N802 (threading's name)
        return VEvent(self._scheduler)

    def Condition(self, lock: Any = None) -> VCondition:  # noqa: N802
        return VCondition(self._scheduler, lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


class VTime:
    """Stands in for the `time` module: sleep() and time() are simulated; the rest is the real module's."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def sleep(self, seconds: float) -> None:
        self._scheduler.sleep(seconds)

    def time(self) -> float:
        return self._scheduler.now()

    def monotonic(self) -> float:
        return self._scheduler.now()

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)
