"""Virtual time: fibers run one at a time, simulated time jumps to the next timer, and nothing waits on the wall."""

from __future__ import annotations

import time

import pytest

from ferry_cli.sandbox.scheduler import Scheduler, SchedulerError, VCondition, VEvent, VThreading


@pytest.fixture
def scheduler():
    scheduler = Scheduler()
    yield scheduler
    scheduler.close()


def test_an_hour_of_sleeps_and_waits_passes_in_no_wall_time_in_the_order_of_their_timers(scheduler):
    threads, log, ready = VThreading(scheduler), [], VEvent(scheduler)

    def rollout():
        scheduler.sleep(600)
        log.append(("rolled out", scheduler.elapsed()))
        ready.set()

    def watcher():
        came = ready.wait(3600)
        log.append(("ready", scheduler.elapsed(), came))

    def impatient():
        came = VEvent(scheduler).wait(50)
        log.append(("gave up", scheduler.elapsed(), came))

    began = time.monotonic()
    for target in (rollout, watcher, impatient):
        threads.Thread(target=target).start()
    scheduler.settle()
    assert log == [("gave up", 50.0, False), ("rolled out", 600.0), ("ready", 600.0, True)]
    assert time.monotonic() - began < 5


def test_the_driver_sleeping_lets_the_world_run_and_a_join_waits_in_simulated_time(scheduler):
    threads, log = VThreading(scheduler), []
    worker = threads.Thread(target=lambda: scheduler.sleep(5))
    worker.start()

    def joiner():
        worker.join()
        log.append(("joined", scheduler.elapsed()))

    threads.Thread(target=joiner).start()
    scheduler.sleep(100)  # the driver
    assert log == [("joined", 5.0)]
    assert scheduler.elapsed() == 100.0


def test_a_wait_shorter_than_the_clocks_resolution_still_ends_later(scheduler):
    """Unix time as a float resolves about 2e-7 s: a token bucket that waits 1e-8 s for its last token must still
    see time pass, or it waits forever at the same instant (botocore's adaptive TokenBucket did)."""
    before = scheduler.now()
    scheduler.sleep(1e-8)  # the driver
    assert scheduler.now() > before
    seen = []
    VThreading(scheduler).Thread(target=lambda: (scheduler.sleep(1e-9), seen.append(scheduler.now()))).start()
    scheduler.settle()
    assert seen and seen[0] > before


def test_the_driver_waiting_on_a_condition_runs_the_world_until_notified_or_its_timeout(scheduler):
    condition = VCondition(scheduler)

    def notifier():
        scheduler.sleep(30)
        with condition:
            condition.notify_all()

    VThreading(scheduler).Thread(target=notifier).start()
    with condition:
        assert condition.wait(60) is True
    assert scheduler.elapsed() == 30.0
    with condition:
        assert condition.wait(10) is False  # nobody notifies: the wait lasts its whole timeout
    assert scheduler.elapsed() == 40.0


def test_a_thread_outside_the_scheduler_cannot_wait_on_it(scheduler):
    import threading

    errors = []

    def outsider():
        try:
            VEvent(scheduler).wait(1)
        except SchedulerError as error:
            errors.append(str(error))

    thread = threading.Thread(target=outsider)
    thread.start()
    thread.join(5)
    assert errors == ["a thread outside the scheduler waits on one of its events"]


def test_the_same_fibers_run_in_the_same_order_every_time():
    def run() -> list[tuple[str, float]]:
        scheduler, log = Scheduler(), []
        threads = VThreading(scheduler)
        for name, pause in (("a", 3), ("b", 1), ("c", 3), ("d", 0)):

            def body(name=name, pause=pause):
                for step in range(3):
                    scheduler.sleep(pause)
                    log.append((f"{name}{step}", scheduler.elapsed()))

            threads.Thread(target=body).start()
        scheduler.settle()
        scheduler.close()
        return log

    first = run()
    assert len(first) == 12
    assert all(run() == first for _ in range(5))


def test_a_wait_that_timed_out_is_not_woken_by_its_event_during_a_later_wait(scheduler):
    """A fiber that gave up on one event and now waits on another must not be woken when the first is set
    (moto's state timeout waits on a fresh event after the heartbeat's wait on another timed out)."""
    threads, first, second, log = VThreading(scheduler), VEvent(scheduler), VEvent(scheduler), []

    def waiter():
        log.append(("first", first.wait(10), scheduler.elapsed()))
        log.append(("second", second.wait(100), scheduler.elapsed()))

    def setter():
        scheduler.sleep(20)
        first.set()  # long after the waiter gave up on it

    threads.Thread(target=waiter).start()
    threads.Thread(target=setter).start()
    scheduler.settle()
    assert log == [("first", False, 10.0), ("second", False, 110.0)]


def test_notify_wakes_a_waiter_that_still_waits_not_one_that_timed_out(scheduler):
    threads, condition, log = VThreading(scheduler), VCondition(scheduler), []

    def impatient():
        with condition:
            log.append(("impatient", condition.wait(5), scheduler.elapsed()))

    def patient():
        with condition:
            log.append(("patient", condition.wait(100), scheduler.elapsed()))

    def notifier():
        scheduler.sleep(30)
        with condition:
            condition.notify(1)

    for target in (impatient, patient, notifier):
        threads.Thread(target=target).start()
    scheduler.settle()
    assert log == [("impatient", False, 5.0), ("patient", True, 30.0)]
