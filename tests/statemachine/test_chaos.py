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

_ROLLED_BACK_WITH_THE_CANARY = (
    "'Rolled back' while the canary of the failed revision is RUNNING and healthy in web-tg (the reaper stops it "
    "later): after the canary passed and the bake failed, StopTask and DeregisterTargets were refused; "
    "ferry.steps.rollback.roll_back swallows the failed canary_tasks.remove_now (canaryTasksStopped -1) and no "
    "state of the rollback path (statemachine/build.py) removes the canary with the clean-up's patient retry"
)
# Seeds that find a fault in Ferry: kept out of the default run, each with what breaks and where (found by a run of
# seeds 0..499; none is below 100).
KNOWN_FAILURES: dict[int, str] = {
    105: "a loop: the rollback completed, then 'Deregister the failed revision' fails for good; its Catch goes to "
    "'Explain the failed rollback', which finds the service back (recovered), and the Choice 'Is the service back "
    "on its previous revision after all?' (statemachine/build.py) sends it to 'Deregister the failed revision' "
    "again, forever (on AWS until the 25,000-event history limit)",
    206: "'Rollback failed: a person must act' while the rollback completed: only 'Deregister the failed revision' "
    "failed for good; ferry.steps.rollback.explain's `recovered` is false because the failed revision's deployment "
    "is still ACTIVE with 0 tasks, so a good rollback ends RollbackFailed (with it true, seed 105's loop)",
    114: "'Rollback failed: a person must act' while prod/web never left web:1 (Update Service crashed before doing "
    "anything, then 'Roll back to the previous revision' crashed for good): explain sees web:1 COMPLETED but the "
    "Choice needs $.rollback.method; and the canary still runs when it ends, since only rollback.roll_back removes "
    "it on that path (the execution-ended function stops it afterwards)",
    419: _ROLLED_BACK_WITH_THE_CANARY,
    484: _ROLLED_BACK_WITH_THE_CANARY,
}


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
