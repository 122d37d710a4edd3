"""Benchmark: the demo deploy in the sandbox, repeated; prints figures (not a test).

    .venv/bin/python bench/demo_deploy.py [--runs 3]

Reports, per run: state transitions and Lambda invocations (what Step Functions
and Lambda bill for), simulated duration of the execution, and real wall time
of the whole sandbox run (world build included). The sandbox runs on virtual
time, so every run gives the same simulated figures; only wall time varies.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ferry_cli.sandbox.run import load_delivery, run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    world = ROOT / "examples" / "sandbox" / "world.yaml"
    event = load_delivery("event", ROOT / "events" / "ecr-push-web-v2.json")
    rows = []
    for _ in range(args.runs):
        started = time.perf_counter()
        summary = run(world, [event])
        wall = time.perf_counter() - started
        [execution] = summary["executions"]
        history = summary["histories"][execution["name"]]
        rows.append((execution["status"], summary["transitions"], summary["lambdaInvocations"],
                     history[-1]["offset"], wall))
    print(f"{'run':>3}  {'status':<9}  {'transitions':>11}  {'lambda calls':>12}  {'simulated s':>11}  {'wall s':>7}")
    for i, (status, transitions, calls, simulated, wall) in enumerate(rows, 1):
        print(f"{i:>3}  {status:<9}  {transitions:>11}  {calls:>12}  {simulated:>11.0f}  {wall:>7.2f}")
    print(f"median wall time {statistics.median(r[4] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
