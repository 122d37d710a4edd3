"""The chaos suite: for many seeds, a deploy under a random combination of faults (tests/statemachine/chaos.py
says which: crashed, timed-out and refused handlers; throttling, 5xx and unanswered calls to ECS, ELB, DynamoDB,
S3 and ECR, long outages of StopTask and DeregisterTargets among them; stops at random states, with AWS's stop
timing; events lost or delivered twice; the config edited, broken, pointed elsewhere or deleted mid-deploy; the
canary interrupted by ECS). After the run, and again after the reaper's next pass, what Ferry promises must hold:
one complete revision at its desired count, the one the execution and the deploy record say; no canary or
migration task running and no canary in a target group; no lock held; no journal left open.

`make test` runs the first DEFAULT_SEEDS seeds not in KNOWN_FAILURES (about a second of CPU each, on virtual
time). More by hand, known failures included (reported as xfail, with their reason under -rx):

    FERRY_CHAOS_SEEDS=500 .venv/bin/pytest -q -n 2 -rx tests/statemachine/test_chaos.py   # seeds 0..499
    FERRY_CHAOS_SEED=17 .venv/bin/pytest tests/statemachine/test_chaos.py -k seed_17      # one seed (or "17,23")

A failure prints the seed, the deploy, the faults, the execution's states, error and cause, what broke, and
the command that runs it again.
"""

from __future__ import annotations

import os

import pytest

from . import chaos

DEFAULT_SEEDS = 20

# Seeds that find a fault in Ferry: kept out of the default run, each with what breaks and where. A run of seeds
# 0..499 found eleven, in five ways (a push dropped while S3 failed; Rolled back with the canary serving; a loop
# after a rollback found complete; Rollback failed after a rollback ECS completed, twice over); each is fixed, and
# none is left.
KNOWN_FAILURES: dict[int, str] = {}


def seeds() -> list[object]:
    chosen = os.environ.get("FERRY_CHAOS_SEED")
    if chosen:
        numbers = [int(s) for s in chosen.replace(",", " ").split()]
    elif os.environ.get("FERRY_CHAOS_SEEDS"):
        numbers = list(range(int(os.environ["FERRY_CHAOS_SEEDS"])))
    else:
        return [s for s in range(DEFAULT_SEEDS + len(KNOWN_FAILURES)) if s not in KNOWN_FAILURES][:DEFAULT_SEEDS]
    return [
        pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[s], strict=False)) if s in KNOWN_FAILURES else s
        for s in numbers
    ]


@pytest.mark.parametrize("seed", seeds(), ids=lambda s: f"seed_{s}")
def test_whatever_fails_nothing_is_left_behind(seed, tmp_path):
    outcome = chaos.run(seed, tmp_path)
    assert not outcome.problems, outcome.message()
