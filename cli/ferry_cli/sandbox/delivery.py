"""How events reach their Lambda targets, as AWS delivers them, and what the sandbox has yet to deliver.

`EventDelivery` says how EventBridge's asynchronous invocations behave (retries, duplicates); the Sandbox
matches each event against the template's rules and invokes the targets (sandbox.Sandbox.deliver).

`Outbox` holds what is still to be delivered, with the threads that deliver it: the events AWS services send
EventBridge on their own (moto_sfn queues them as executions start and end and alarms change state), and the
invocations Lambda makes later (retries, duplicates), due on the simulated clock. Each is announced before it
exists and counted until it has been delivered, and the handler invocations still running are counted too, so
`Sandbox.wait_for_executions` can tell when nothing is left (`idle`).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .clock import SimClock
from .scheduler import VEvent, VThreading


@dataclass(frozen=True)
class EventDelivery:
    """How events reach their Lambda targets, as AWS delivers them.

    EventBridge invokes a Lambda target asynchronously. "If the function returns an error, by default Lambda
    attempts to run it two more times, with a one-minute wait between the first two attempts, and two minutes
    between the second and third attempts" (Lambda developer guide, invocation-async-error-handling.html); the
    template's EventInvokeConfig sets how many, and where the event goes after the last (its OnFailure
    destination). Delivery is at least once ("it's possible for it to receive the same event from Lambda multiple
    times", same page): `duplicates` is the fraction of deliveries that also arrive a second time,
    `duplicate_after` simulated seconds later, chosen by a hash of (seed, event id, function), so the same run
    duplicates the same deliveries.
    """

    duplicates: float = 0.0
    seed: int = 0
    retry_after: tuple[float, ...] = (60.0, 120.0)
    duplicate_after: float = 1.0

    def duplicated(self, event_id: str, function: str) -> bool:
        if self.duplicates <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}|{event_id}|{function}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.duplicates


class Outbox:
    """What the sandbox has yet to deliver, and the two fibers that deliver it until the sandbox closes.

    - Events AWS services send EventBridge on their own (Step Functions execution status changes, CloudWatch
      alarm state changes): `put` as they happen, delivered in order by one fiber. Step Functions' are recorded
      in `status_events` ({"event", "targets", "error"} each); `order` is held while an execution's RUNNING is
      queued, so its terminal status cannot be queued before it.
    - Invocations due later (`later`: Lambda's retries of a failed asynchronous invocation, duplicate
      deliveries): a heap by due time on the simulated clock, run as they fall due by the other fiber.
    Both wait on the clock (scheduler), so a retry a minute later happens a simulated minute later, at once.
    """

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.status_events: list[dict[str, Any]] = []
        self.order = threading.Lock()  # an execution's RUNNING is queued before its terminal status
        self._queue: deque[dict[str, Any]] = deque()
        self._counts = threading.Lock()  # guards _pending and _in_flight
        self._pending = 0  # changes announced (or about to be) and not yet delivered
        self._in_flight = 0  # handler invocations running now (a stopped execution's may outlive it)
        self._due: list[tuple] = []  # heap of (due, seq, *item)
        self._seq = 0
        self._arrived = VEvent(clock)  # something was queued
        self._scheduled = VEvent(clock)  # something was scheduled

    # ------------------------------------------------------------ the count
    def announce(self) -> None:
        """Count one delivery to come (before what it delivers exists, so no wait can miss it)."""
        with self._counts:
            self._pending += 1

    def delivered(self) -> None:
        """One announced delivery is done (or will never happen)."""
        with self._counts:
            self._pending -= 1

    @contextmanager
    def invoking(self) -> Iterator[None]:
        """Count a handler invocation while it runs."""
        with self._counts:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._counts:
                self._in_flight -= 1

    def idle(self) -> bool:
        """Every announced delivery done, and no handler running (a stopped execution's may outlive it)."""
        return self._pending == 0 and self._in_flight == 0

    # ------------------------------------------------------------ what is delivered
    def put(self, event: dict[str, Any]) -> None:
        """Queue an event announced with `announce`, for EventBridge to deliver."""
        self._queue.append(event)
        self._arrived.set()

    def later(self, delay: float, *item: Any) -> None:
        """Schedule an invocation `delay` simulated seconds from now; pending until it has run."""
        self.announce()
        self._seq += 1
        heapq.heappush(self._due, (self.clock.now() + delay, self._seq, *item))
        self._scheduled.set()

    # ------------------------------------------------------------ the fibers
    def start(self, deliver: Callable[[dict[str, Any]], list[dict[str, Any]]], run: Callable[..., Any]) -> None:
        """Deliver queued events with `deliver(event)`, and run each due item with `run(*item)`, until the
        sandbox closes (the scheduler ends its fibers)."""
        threads = VThreading(self.clock)
        threads.Thread(target=self._emit, args=(deliver,), name="ferry-sandbox-status-events", daemon=True).start()
        threads.Thread(target=self._run_due, args=(run,), name="ferry-sandbox-redeliveries", daemon=True).start()

    def _emit(self, deliver: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
        """Deliver the queued events, in order."""
        while True:
            if not self._queue:
                self._arrived.clear()
                self._arrived.wait()
                continue
            event = self._queue.popleft()
            record: dict[str, Any] = {"event": event, "targets": [], "error": None}
            try:
                record["targets"] = deliver(event)
            except Exception as exc:  # keep emitting; the record and the log say what went wrong
                record["error"] = f"{type(exc).__name__}: {exc}"
                logging.getLogger(__name__).exception(
                    "delivering the %s event of %s failed", event["detail-type"], event["resources"][0]
                )
            finally:
                if event["source"] == "aws.states":
                    self.status_events.append(record)
                self.delivered()

    def _run_due(self, run: Callable[..., Any]) -> None:
        """Run the scheduled invocations as they fall due."""
        while True:
            if not self._due:
                self._scheduled.clear()
                self._scheduled.wait()
                continue
            due = self._due[0]
            if due[0] > self.clock.now():
                self._scheduled.clear()
                self._scheduled.wait(due[0] - self.clock.now())
                continue
            heapq.heappop(self._due)
            try:
                run(*due[2:])
            except Exception:  # keep delivering; the log says what went wrong
                logging.getLogger(__name__).exception("a scheduled invocation failed")
            finally:
                self.delivered()
