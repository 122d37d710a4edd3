"""Benchmark: what a deploy costs, and whether that grows with how long ECS takes (prints figures; not a test).

    .venv/bin/python bench/cost.py [--services 50] [--skip-scale]

1. State transitions and Lambda invocations of one canary deploy (60 s healthy
   window) whose main rollout takes 10 simulated minutes, and of one that takes
   60, and their ratio: waiting is event-driven, so it should stay near 1.
2. Cost per deploy from those counts and published prices, next to a CI runner
   waiting for the same rollout.
3. Reaction latency: simulated seconds from ECS reporting the deployment
   complete to the workflow leaving its wait state (on virtual time this is
   the latency the sandbox models, not a measurement of AWS's).
4. Cold start: see bench/cold_start.py (`make bench` runs both).
5. Scale: one manifest deploying N services in one sandbox run.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ferry import states
from ferry_cli.sandbox.run import Delivery, deliver_all, load_delivery, summarise, world_session

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sandbox"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

# Published prices (us-east-1, checked November 2026). Change them here.
STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1000  # Standard workflows: $0.025 per 1,000 state transitions
LAMBDA_PER_REQUEST = 0.20 / 1_000_000  # $0.20 per 1M requests
LAMBDA_ARM_PER_GB_SECOND = 0.0000133334  # arm64, first 6 billion GB-seconds a month
CI_RUNNER_PER_MINUTE = 0.008  # GitHub-hosted Linux 2-core runner, per minute
LAMBDA_MEMORY_MB = 256  # template.yaml Globals.Function.MemorySize
# The sandbox's handlers talk to moto in-process, so their durations are far below AWS's; the
# bill below also uses this per-invocation floor, a typical duration of a step making 2-5 AWS calls.
AWS_HANDLER_SECONDS = 0.3

CANARY_CONFIG = {
    "cluster": "prod",
    "service": "web",
    "containers": {"app": {"repository": "web"}},
    "strategy": {"type": "canary", "canary": {"count": 1, "healthyForSeconds": 60, "unhealthyThreshold": 3}},
    "timeouts": {"deployment": 7200},
}
WAIT_STATE = states.WAIT_FOR_DEPLOYMENT


def push_event(tag: str) -> dict[str, Any]:
    import hashlib

    return {
        "id": f"bench-{tag}",
        "source": "aws.ecr",
        "detail-type": "ECR Image Action",
        "account": "123456789012",
        "region": "us-east-1",
        "detail": {
            "action-type": "PUSH",
            "result": "SUCCESS",
            "repository-name": "web",
            "image-tag": tag,
            "image-digest": "sha256:" + hashlib.sha256(f"web:{tag}".encode()).hexdigest(),
        },
    }


def make_world(tmp: Path, *, rollout_seconds: float = 0, services: int = 0) -> Path:
    """The demo world, with the canary config, a slower rollout, or `services` more services."""
    shutil.copy(EXAMPLE / "web-task-def.json", tmp / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", tmp / "registry")
    world = yaml.safe_load((EXAMPLE / "world.yaml").read_text())
    (tmp / "registry" / "web" / "ferry.yaml").write_text(yaml.safe_dump(CANARY_CONFIG))
    if rollout_seconds:
        world["timing"] = {"rolloutSeconds": rollout_seconds}
    spec = json.loads((tmp / "web-task-def.json").read_text())
    for i in range(services):
        name = f"svc{i:02d}"
        (tmp / f"{name}-task-def.json").write_text(json.dumps({**spec, "family": name}))
        world["services"].append(
            {
                "cluster": "prod",
                "name": name,
                "desiredCount": 1,
                "running": {"app": "web:v1", "nginx": "nginx:1.27"},
                "taskDefinition": f"{name}-task-def.json",
            }
        )
        (tmp / "registry" / name).mkdir()
        (tmp / "registry" / name / "ferry.yaml").write_text(
            f"cluster: prod\nservice: {name}\ncontainers: {{app: {{repository: web}}}}\n"
        )
    path = tmp / "world.yaml"
    path.write_text(yaml.safe_dump(world))
    return path


def run_world(world: Path, deliveries: list[Delivery]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, measurements) of one sandbox run."""
    with world_session(world) as (sandbox, _world):
        completed: list[float] = []
        sandbox.fault_hooks.append(
            lambda fn, event: (
                completed.append(_epoch(event["detail"]["updatedAt"]))
                if event.get("detail-type") == "ECS Deployment State Change"
                and event["detail"].get("eventName") == "SERVICE_DEPLOYMENT_COMPLETED"
                else None
            )
        )
        started = time.perf_counter()
        delivered = deliver_all(sandbox, _world, deliveries)
        sandbox.wait_for_executions()
        switches = sandbox.clock.switches
        wall = time.perf_counter() - started
        summary = summarise(sandbox, delivered)
        durations = dict(sandbox.handler_seconds)
        exits = []
        for execution in sandbox.executions():
            for event in sandbox.history(execution["executionArn"]):
                if event["type"] == "TaskStateExited" and event["stateExitedEventDetails"]["name"] == WAIT_STATE:
                    exits.append(event["timestamp"].timestamp())  # history timestamps are simulated time
    return summary, {
        "wall": wall,
        "handlerSeconds": durations,
        "completedAt": completed,
        "waitExits": exits,
        "switches": switches,
    }


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def cost(transitions: int, invocations: int, handler_seconds: float) -> dict[str, float]:
    gb = LAMBDA_MEMORY_MB / 1024
    step_functions = transitions * STEP_FUNCTIONS_PER_TRANSITION
    measured = invocations * LAMBDA_PER_REQUEST + handler_seconds * gb * LAMBDA_ARM_PER_GB_SECOND
    floor = invocations * LAMBDA_PER_REQUEST + invocations * max(AWS_HANDLER_SECONDS, 0) * gb * LAMBDA_ARM_PER_GB_SECOND
    return {
        "stepFunctions": step_functions,
        "lambdaMeasured": measured,
        "lambdaAtAwsLatency": floor,
        "total": step_functions + max(measured, floor),
    }


def rollout_runs() -> list[dict[str, Any]]:
    rows = []
    for minutes in (10, 60):
        with tempfile.TemporaryDirectory() as tmp:
            # Tasks start and turn healthy in about a minute; the rest of the rollout is ECS's own pace.
            world = make_world(Path(tmp), rollout_seconds=minutes * 60 - 60)
            summary, measured = run_world(world, [load_delivery("event", _write_event(Path(tmp), "v2"))])
        [execution] = summary["executions"]
        history = summary["histories"][execution["name"]]
        entered = {r["state"]: r["offset"] for r in history if r["type"] == "TaskStateEntered"}
        left = [r["offset"] for r in history if r["type"] == "TaskStateExited" and r["state"] == WAIT_STATE]
        rollout = (left[-1] - entered[states.UPDATE_SERVICE]) if left else float("nan")
        handler_total = sum(sum(v) for v in measured["handlerSeconds"].values())
        rows.append(
            {
                "minutes": minutes,
                "status": execution["status"],
                "transitions": summary["transitions"],
                "lambdaCalls": summary["lambdaInvocations"],
                "rolloutSimulated": rollout,
                "handlerSeconds": handler_total,
                "cost": cost(summary["transitions"], summary["lambdaInvocations"], handler_total),
                "latency": _latencies(measured),
            }
        )
    return rows


def _latencies(measured: dict[str, Any]) -> list[float]:
    return [exit_ - done for done, exit_ in zip(sorted(measured["completedAt"]), sorted(measured["waitExits"]))]


def _write_event(tmp: Path, tag: str) -> Path:
    path = tmp / f"push-{tag}.json"
    path.write_text(json.dumps(push_event(tag)))
    return path


def latency_run(runs: int = 3) -> list[float]:
    """The demo's rolling deploy, three times (virtual time: the same figures every time)."""
    found = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            world = make_world(Path(tmp))
            (Path(tmp) / "registry" / "web" / "ferry.yaml").write_text(
                "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"
            )
            _summary, measured = run_world(world, [load_delivery("event", _write_event(Path(tmp), "v2"))])
        found += _latencies(measured)
    return found


def scale_run(services: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp), services=services)
        manifest = Path(tmp) / "manifests" / "release.json"
        manifest.parent.mkdir()
        manifest.write_text(
            json.dumps(
                {
                    "version": 1,
                    "reason": "bench",
                    "deployments": [{"service": f"svc{i:02d}", "images": {"app": "web:v2"}} for i in range(services)],
                }
            )
        )
        summary, measured = run_world(world, [load_delivery("manifest", manifest)])
    statuses = [e["status"] for e in summary["executions"]]
    return {
        "started": len(statuses),
        "succeeded": statuses.count("SUCCEEDED"),
        "wall": measured["wall"],
        "peakMemoryMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "transitions": summary["transitions"],
        "lambdaCalls": summary["lambdaInvocations"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=50, help="services in the scale run's manifest")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = rollout_runs()
    latencies = latency_run()
    scale = None if args.skip_scale else scale_run(args.services)
    if args.json:
        json.dump({"rollouts": rows, "latency": latencies, "scale": scale}, sys.stdout, indent=2)
        print()
        return

    print("1. One canary deploy (healthyForSeconds 60), by length of the main rollout")
    print(f"   {'rollout':>8}  {'status':<9}  {'measured':>9}  {'transitions':>11}  {'lambda calls':>12}")
    for r in rows:
        print(
            f"   {r['minutes']:>5} min  {r['status']:<9}  {r['rolloutSimulated'] / 60:>7.1f} m  "
            f"{r['transitions']:>11}  {r['lambdaCalls']:>12}"
        )
    ten, sixty = rows
    print(
        f"   ratio 60/10: transitions {sixty['transitions'] / ten['transitions']:.2f}, "
        f"Lambda calls {sixty['lambdaCalls'] / ten['lambdaCalls']:.2f}   (target <= 1.1; <= 50 transitions)"
    )
    print()
    print(
        "2. Cost per deploy (Step Functions Standard $0.025/1k transitions; Lambda arm64 "
        f"{LAMBDA_MEMORY_MB} MB, $0.20/1M requests, ${LAMBDA_ARM_PER_GB_SECOND}/GB-s)"
    )
    print(
        f"   {'rollout':>8}  {'Step Functions':>14}  {'Lambda (measured)':>17}  {'Lambda (0.3 s each)':>19}  "
        f"{'total':>9}  {'CI runner waiting':>17}"
    )
    for r in rows:
        c = r["cost"]
        runner = r["rolloutSimulated"] / 60 * CI_RUNNER_PER_MINUTE
        print(
            f"   {r['minutes']:>5} min  ${c['stepFunctions']:>13.5f}  ${c['lambdaMeasured']:>16.7f}  "
            f"${c['lambdaAtAwsLatency']:>18.7f}  ${c['total']:>8.5f}  ${runner:>16.3f}"
        )
    print(
        f"   CI runner: ${CI_RUNNER_PER_MINUTE}/minute (GitHub-hosted Linux 2-core) for the rollout alone. "
        "Target: under $0.002 for the 60-minute rollout."
    )
    print()
    print("3. Reaction latency (simulated s from ECS's SERVICE_DEPLOYMENT_COMPLETED to leaving the wait state)")
    if latencies:
        print(
            f"   3 rolling deploys: {', '.join(f'{x:.2f}' for x in latencies)} s, "
            f"median {statistics.median(latencies):.2f} s (target <= 2 s)"
        )
        print("   (virtual time: the latency the sandbox models, which is event delivery only; AWS adds its own)")
    print()
    print("4. Cold start: .venv/bin/python bench/cold_start.py")
    if scale:
        print()
        print(f"5. Scale: one manifest of {args.services} services")
        print(
            f"   executions started {scale['started']}, succeeded {scale['succeeded']}, wall {scale['wall']:.1f} s, "
            f"peak memory {scale['peakMemoryMiB']:.0f} MiB, transitions {scale['transitions']}, "
            f"Lambda calls {scale['lambdaCalls']}"
        )


if __name__ == "__main__":
    main()
