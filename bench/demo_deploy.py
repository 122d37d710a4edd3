"""Benchmark: the demo deploy in the sandbox, and the same push as a canary deploy, repeated; prints figures
(not a test).

    .venv/bin/python bench/demo_deploy.py [--runs 3]

Reports, per run: state transitions and Lambda invocations (what Step Functions
and Lambda bill for), simulated duration of the execution, and real wall time
of the whole sandbox run (world build included). The sandbox runs on virtual
time, so every run gives the same simulated figures; only wall time varies.
The canary deploy is the demo world with the web service's config set to the
canary strategy (one canary task, healthy for 60 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ferry_cli.sandbox.run import load_delivery, run

ROOT = Path(__file__).resolve().parents[1]


CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    event = load_delivery("event", ROOT / "events" / "ecr-push-web-v2.json")
    with tempfile.TemporaryDirectory() as tmp:
        canary_world = Path(tmp) / "sandbox"
        shutil.copytree(ROOT / "examples" / "sandbox", canary_world)
        (canary_world / "registry" / "web" / "ferry.yaml").write_text(CANARY)
        for title, world in (
            ("The demo deploy (rolling)", ROOT / "examples" / "sandbox" / "world.yaml"),
            ("The same push as a canary deploy", canary_world / "world.yaml"),
        ):
            print(title)
            measure(world, event, args.runs)


def measure(world: Path, event, runs: int) -> None:
    rows = []
    for _ in range(runs):
        started = time.perf_counter()
        summary = run(world, [event])
        wall = time.perf_counter() - started
        [execution] = summary["executions"]
        history = summary["histories"][execution["name"]]
        rows.append(
            (execution["status"], summary["transitions"], summary["lambdaInvocations"], history[-1]["offset"], wall)
        )
    print(f"{'run':>3}  {'status':<9}  {'transitions':>11}  {'lambda calls':>12}  {'simulated s':>11}  {'wall s':>7}")
    for i, (status, transitions, calls, simulated, wall) in enumerate(rows, 1):
        print(f"{i:>3}  {status:<9}  {transitions:>11}  {calls:>12}  {simulated:>11.0f}  {wall:>7.2f}")
    print(f"median wall time {statistics.median(r[4] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
