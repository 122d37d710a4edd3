"""How events reach their Lambda targets, as AWS delivers them, and what the sandbox has yet to deliver.

`EventDelivery` says how EventBridge's asynchronous invocations behave (retries, duplicates); the Sandbox
matches each event against the template's rules and invokes the targets (sandbox.Sandbox.deliver).

`Outbox` holds what is still to be delivered, with the threads that deliver it: the events AWS services send
EventBridge on their own (moto_sfn queues them as executions start and end and alarms change state), and the
invocations Lambda makes later (retries, duplicates), due on the simulated clock. Each is announced before it
exists and counted until it has been delivered, and the handler invocations still running are counted too, so
`Sandbox.wait_for_executions` can tell when nothing is left (`settle`).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .clock import SimClock


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
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.duplicates


class Outbox:
    """What the sandbox has yet to deliver, and the two threads that deliver it until the sandbox closes.

    - Events AWS services send EventBridge on their own (Step Functions execution status changes, CloudWatch
      alarm state changes): `put` in moto's threads, delivered in order by one thread. Step Functions' are
      recorded in `status_events` ({"event", "targets", "error"} each); `order` is held while an execution's
      RUNNING is queued, so its terminal status cannot be queued before it.
    - Invocations due later (`later`: Lambda's retries of a failed asynchronous invocation, duplicate
      deliveries): a heap by due time on the simulated clock, run as they fall due by the other thread.
    """

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.status_events: list[dict[str, Any]] = []
        self.order = threading.Lock()   # an execution's RUNNING is queued before its terminal status
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cv = threading.Condition()  # guards _pending and _in_flight
        self._pending = 0                 # changes announced (or about to be) and not yet delivered
        self._in_flight = 0               # handler invocations running now (a stopped execution's may outlive it)
        self._due: list[tuple] = []       # heap of (due, seq, *item)
        self._due_lock = threading.Lock()
        self._seq = 0
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ the count
    def announce(self) -> None:
        """Count one delivery to come (before what it delivers exists, so no wait can miss it)."""
        with self._cv:
            self._pending += 1

    def delivered(self) -> None:
        """One announced delivery is done (or will never happen)."""
        with self._cv:
            self._pending -= 1
            self._cv.notify_all()

    @contextmanager
    def invoking(self) -> Iterator[None]:
        """Count a handler invocation while it runs."""
        with self._cv:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cv:
                self._in_flight -= 1
                self._cv.notify_all()

    def settle(self, timeout: float) -> bool:
        """Wait (real seconds) until every announced delivery is done and no handler runs; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0 and self._in_flight == 0, timeout=timeout)

    # ------------------------------------------------------------ what is delivered
    def put(self, event: dict[str, Any]) -> None:
        """Queue an event announced with `announce`, for EventBridge to deliver."""
        self._queue.put(event)

    def later(self, delay: float, *item: Any) -> None:
        """Schedule an invocation `delay` simulated seconds from now; pending until it has run."""
        self.announce()
        with self._due_lock:
            self._seq += 1
            heapq.heappush(self._due, (self.clock.now() + delay, self._seq, *item))

    # ------------------------------------------------------------ the threads
    def start(self, deliver: Callable[[dict[str, Any]], list[dict[str, Any]]], run: Callable[..., Any],
              stop: threading.Event) -> None:
        """Deliver queued events with `deliver(event)`, and run each due item with `run(*item)`, until `stop`."""
        self._threads = [
            threading.Thread(target=self._emit, args=(deliver, stop), name="ferry-sandbox-status-events", daemon=True),
            threading.Thread(target=self._run_due, args=(run, stop), name="ferry-sandbox-redeliveries", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _emit(self, deliver: Callable[[dict[str, Any]], list[dict[str, Any]]], stop: threading.Event) -> None:
        """Deliver the queued events, in order, until the sandbox closes."""
        while not stop.is_set():
            try:
                event = self._queue.get(timeout=0.02)
            except queue.Empty:
                continue
            record: dict[str, Any] = {"event": event, "targets": [], "error": None}
            try:
                record["targets"] = deliver(event)
            except Exception as exc:  # keep emitting; the record and the log say what went wrong
                record["error"] = f"{type(exc).__name__}: {exc}"
                logging.getLogger(__name__).exception(
                    "delivering the %s event of %s failed", event["detail-type"], event["resources"][0])
            finally:
                with self._cv:
                    if event["source"] == "aws.states":
                        self.status_events.append(record)
                self.delivered()

    def _run_due(self, run: Callable[..., Any], stop: threading.Event) -> None:
        """Run the scheduled invocations as they fall due, until the sandbox closes."""
        while not stop.wait(0.01):
            with self._due_lock:
                due = self._due[0] if self._due and self._due[0][0] <= self.clock.now() else None
                if due is not None:
                    heapq.heappop(self._due)
            if due is None:
                continue
            try:
                run(*due[2:])
            except Exception:  # keep delivering; the log says what went wrong
                logging.getLogger(__name__).exception("a scheduled invocation failed")
            finally:
                self.delivered()
