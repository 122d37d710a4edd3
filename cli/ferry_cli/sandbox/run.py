"""`ferry sandbox run`: build a world, deliver events, run every execution to its end."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from ferry.config.validation import require_valid

from .. import graph, history
from .delivery import EventDelivery
from .faults import Faults
from .sandbox import Sandbox
from .state import SandboxState
from .world import World, WorldError, derived_digest, push_image, read_structured

GAP_BETWEEN_DELIVERIES = 15.0  # simulated seconds: the next event arrives while earlier executions still run


@dataclass
class Delivery:
    kind: str  # "event" or "manifest"
    path: Path
    body: dict[str, Any] = field(default_factory=dict)


def load_delivery(kind: str, path: Path) -> Delivery:
    body = read_structured(path, f"{kind} file")
    if kind == "event":
        if not isinstance(body, dict):
            raise WorldError(f"{path}: $: an EventBridge event is a JSON object, got {type(body).__name__}")
        require_valid(
            body, "event.schema.json", str(path), WorldError, what="is not an EventBridge event (event.schema.json)"
        )
    return Delivery(kind, path, body)


def _deliver(sandbox: Sandbox, world: World, delivery: Delivery) -> list[dict[str, Any]]:
    if delivery.kind == "manifest":
        key = f"manifests/{delivery.path.stem}.json"
        body = delivery.path.read_bytes()
        put = sandbox.client("s3").put_object(Bucket=sandbox.config_bucket, Key=key, Body=body)
        # The detail as S3 sends it to EventBridge (tests/fixtures/aws/s3/object-created.json).
        obj = {
            "key": key,
            "size": len(body),
            "etag": put["ETag"].strip('"'),
            "sequencer": f"{int(sandbox.clock.now() * 1e6):016X}",
        }
        if put.get("VersionId"):
            obj["version-id"] = put["VersionId"]
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "source": "aws.s3",
            "detail-type": "Object Created",
            "account": sandbox.account,
            "region": sandbox.region,
            "resources": [f"arn:aws:s3:::{sandbox.config_bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": sandbox.config_bucket},
                "object": obj,
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": sandbox.account,
                "source-ip-address": "127.0.0.1",
                "reason": "PutObject",
            },
        }
        return sandbox.deliver(event)
    event = json.loads(json.dumps(delivery.body))
    detail = event.get("detail", {})
    if event.get("source") == "aws.ecr" and detail.get("action-type") == "PUSH" and detail.get("result") == "SUCCESS":
        # An ECR push event follows a push: make the pushed image exist, as it would.
        repo, tag = detail.get("repository-name"), detail.get("image-tag")
        if repo and tag:
            digest = detail.get("image-digest") or world.images().get(repo, {}).get(tag) or derived_digest(repo, tag)
            detail["image-digest"] = digest
            ecr = sandbox.client("ecr")
            known = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
            if repo not in known:
                ecr.create_repository(repositoryName=repo)
            existing = ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"]
            if {"imageTag": tag, "imageDigest": digest} not in existing:  # new tag, or a tag moved to a new digest
                push_image(sandbox, repo, tag, digest)
        event.setdefault("account", sandbox.account)
        event.setdefault("region", sandbox.region)
    # The event happens when the sandbox delivers it: EventBridge events carry the time they occurred, and a file's
    # fixed time (a published sample's, months from the sandbox's clock) would order it wrongly against the
    # requests made in the sandbox (the newest request wins: ferry.steps.lock).
    event["time"] = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    return sandbox.deliver(event)


@contextmanager
def world_session(
    world_path: Path,
    *,
    speed: float | None = None,
    log_echo=None,
    fault_hooks=None,
    faults: Faults | None = None,
    delivery: EventDelivery | None = None,
    state: Path | None = None,
) -> Iterator[tuple[Sandbox, World]]:
    """A sandbox with the world built and its simulated ECS running; boto3 in this process talks to it.

    `fault_hooks` run before every handler invocation (and may raise); `faults` injects AWS API errors,
    handler crashes and timeouts, and ECS task interruptions (see faults.Faults); `delivery` sets how events
    reach their targets (duplicates; delivery.EventDelivery). With `state`, the sandbox lasts between
    commands: the commands journalled there are replayed first, and `sandbox.journal` records this one's
    changes (state.SandboxState)."""
    world = World.load(world_path)
    with Sandbox(
        speed=speed,
        account=world.account,
        region=world.region,
        clusters=world.clusters,
        log_echo=log_echo,
        faults=faults,
        delivery=delivery,
        lambda_seconds=world.data.get("lambdaSeconds"),
    ) as sandbox:
        from .moto_ecs import EcsSimulator  # moto's ECS and EC2 load their models under the sandbox's loader

        sandbox.fault_hooks.extend(fault_hooks or [])
        simulator = EcsSimulator(
            sandbox.clock, account_id=world.account, region=world.region, **world.simulator_options()
        )
        simulator.install()
        sandbox.simulator = simulator
        world.build(sandbox)
        sandbox.start_driver()
        if state is not None:
            sandbox.journal = SandboxState(state, world)
            sandbox.journal.replay(sandbox, world)
        yield sandbox, world


def deliver_all(sandbox: Sandbox, world: World, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """Deliver in order, each while the executions earlier ones started still run."""
    delivered = []
    for i, delivery in enumerate(deliveries):
        if i:
            sandbox.clock.sleep(GAP_BETWEEN_DELIVERIES)  # the world runs meanwhile
        delivered.append({"file": str(delivery.path), "targets": _deliver(sandbox, world, delivery)})
    return delivered


def run(
    world_path: Path,
    deliveries: list[Delivery],
    *,
    speed: float | None = None,
    log_echo=None,
    fault_hooks=None,
    faults: Faults | None = None,
    graphs: bool = False,
    delivery: EventDelivery | None = None,
    state: Path | None = None,
    watch=None,
) -> dict[str, Any]:
    """Run the scenario; returns the summary plus per-execution histories under `histories`
    (and, with `graphs`, each execution as Mermaid text under `graphs`; with `faults`, its report under `faults`).
    With `state`, the sandbox kept there runs on, and the summary lists only the executions this run started.
    `watch` sees every history event of this run's executions as it is written (Sandbox.watch_history)."""
    with world_session(
        world_path,
        speed=speed,
        log_echo=log_echo,
        fault_hooks=fault_hooks,
        faults=faults,
        delivery=delivery,
        state=state,
    ) as (sandbox, world):
        earlier = {e["executionArn"] for e in sandbox.executions()}
        # A kept sandbox has replayed earlier commands: this run's counts are what it added.
        invocations, deliveries_before = sandbox.lambda_invocations, dict(sandbox.deliveries)
        dead_before = len(sandbox.dead_letters)
        sandbox.watch_history = watch
        delivered = deliver_all(sandbox, world, deliveries)
        sandbox.wait_for_executions()
        sandbox.settle_world()
        if sandbox.journal is not None:
            sandbox.journal.record_deliveries("sandbox run", deliveries)
        found = summarise(sandbox, delivered, graphs=graphs, earlier=earlier)
        found["lambdaInvocations"] -= invocations
        found["eventDeliveries"] = {
            **{k: v - deliveries_before.get(k, 0) for k, v in sandbox.deliveries.items()},
            "deadLettered": len(sandbox.dead_letters) - dead_before,
        }
        return found


def summarise(
    sandbox: Sandbox, delivered: list[dict[str, Any]], *, graphs: bool = False, earlier: set[str] = frozenset()
) -> dict[str, Any]:
    """The sandbox now; its executions but those in `earlier` (ARNs: a kept sandbox's replayed ones)."""
    executions, histories, outputs, mermaid, total_transitions = [], {}, {}, {}, 0
    for execution in sandbox.executions():
        if execution["executionArn"] in earlier:
            continue
        events = sandbox.history(execution["executionArn"])
        if graphs:
            described = sandbox.client("stepfunctions").describe_state_machine_for_execution(
                executionArn=execution["executionArn"]
            )
            mermaid[execution["name"]] = graph.mermaid(
                json.loads(described["definition"]), events, title=f"{execution['name']} {execution['status']}"
            )
        start = execution["startDate"]
        error, cause = history.outcome(events)
        payload = json.loads(events[0]["executionStartedEventDetails"].get("input") or "{}") if events else {}
        service_key = _service_key(sandbox, payload.get("service"))
        total_transitions += history.transitions(events)
        succeeded = next((e["executionSucceededEventDetails"] for e in events if e["type"] == "ExecutionSucceeded"), {})
        executions.append(
            {
                "name": execution["name"],
                "service": service_key,
                "status": execution["status"],
                "error": error,
                "cause": cause,
                "states": history.entered_states(events),
                "output": json.loads(succeeded.get("output") or "null"),
                "supersededBy": history.superseded(events),
            }
        )
        histories[execution["name"]] = history.rows(events, _offset(start))
        outputs[execution["name"]] = history.task_results(events)
    services = {
        key: {
            "taskDefinition": svc["taskDefinition"],
            "images": svc["images"],
            "desiredCount": svc["desiredCount"],
            "runningCount": svc["runningCount"],
        }
        for key, svc in sorted(sandbox.simulator.services().items())
    }
    found = {
        "manifestResults": _manifest_results(sandbox),
        "executions": executions,
        "services": services,
        "canaryTasks": sandbox.simulator.canary_tasks(),
        "migrationTasks": {
            "started": sandbox.simulator.task_count("migration"),
            "running": sandbox.simulator.running_tasks("migration"),
        },
        "locksHeld": sandbox.locks_held(),
        "transitions": total_transitions,
        "lambdaInvocations": sandbox.lambda_invocations,
        "eventDeliveries": {**sandbox.deliveries, "deadLettered": len(sandbox.dead_letters)},
        "deadLetters": sandbox.dead_letter_queue(),
        "delivered": delivered,
        "histories": histories,
        "outputs": outputs,
        "logLines": list(sandbox.logs.lines),
    }
    if graphs:
        found["graphs"] = mermaid
    if sandbox.faults is not None:
        found["faults"] = sandbox.faults.report()
    return found


def _manifest_results(sandbox: Sandbox) -> dict[str, Any]:
    """manifests/<name>.result.json documents in the config bucket, by key."""
    s3 = sandbox.client("s3")
    found = s3.list_objects_v2(Bucket=sandbox.config_bucket, Prefix="manifests/").get("Contents", [])
    return {
        o["Key"]: json.loads(s3.get_object(Bucket=sandbox.config_bucket, Key=o["Key"])["Body"].read())
        for o in found
        if o["Key"].endswith(".result.json")
    }


def _service_key(sandbox: Sandbox, name: str | None) -> str | None:
    """The cluster/service an execution deployed, from the registry config it named."""
    if not isinstance(name, str) or not name:
        return None
    from ferry import config

    try:
        cfg = config.load(sandbox.config_bucket, name)
    except Exception:
        return name
    return cfg.key


def _offset(start: datetime):
    """Simulated seconds since the execution started (its history's timestamps are simulated time)."""

    def to_offset(ts: datetime) -> float:
        return (ts - start).total_seconds()

    return to_offset
