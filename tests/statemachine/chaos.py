"""The chaos suite's machinery (tests/statemachine/test_chaos.py): a seed picks a deploy and what goes wrong
during it; one run delivers the push, lets the world settle, runs the reaper's next pass, and reads the sandbox
for what Ferry promises however a deploy ends.

A seed drives one `random.Random(seed)`, which picks:

- the deploy (`Plan.scenario`): canary or rolling, with or without a migration (which may fail) and a bake (whose
  alarm may fire), and an image that is good, slow to start, crashing or unhealthy;
- the faults (`Plan.faults`, each in words): handler crashes, timeouts and refused invocations
  (faults.LambdaFault), throttling, 5xx and unanswered requests on ECS, ELB, DynamoDB, S3 and ECR calls
  (faults.ApiFault), a long outage of StopTask and DeregisterTargets, a stop of the execution as a chosen step
  is invoked (the step's Lambda runs on, as on AWS) or at a chosen moment, events lost (every attempt failing:
  dead-lettered) or failing once, events delivered twice (delivery.EventDelivery), the service's config
  edited, made invalid, pointed at another service or deleted as a chosen step is invoked, and the canary
  stopped by ECS as it is checked (Faults.interrupt_task).

The same seed gives the same run: the faults are drawn from the seed, and the run's other chances (uuid4,
moto's identifiers, jitter) are seeded from it too (`seeded`).

The faults last as long as the run: once its execution has ended and the world has settled, the invariants are
checked (`problems`, "end"); then the outage is over (no more faults), the reaper's first pass that may act on
the execution runs (GRACE_SECONDS later), the world settles again, and every invariant is checked ("reaped").
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import yaml

from ferry import states
from ferry.lifecycle import reaper
from ferry_cli import history
from ferry_cli.sandbox import SandboxError
from ferry_cli.sandbox.delivery import EventDelivery
from ferry_cli.sandbox.faults import ApiFault, Faults, LambdaFault, state_step
from ferry_cli.sandbox.run import Delivery, deliver_all, world_session

from .conftest import Scenario, push_event

OLD, NEW = "web:1", "web:2"
DESIRED = 2  # the example world's web service
CONFIG_KEY = "services/web/ferry.yaml"
WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
CANARY = "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
ROLLING = "strategy: {type: rolling}\n"
BAKE = "healthGates: {alarms: [web-5xx], bakeSeconds: 120}\n"
MIGRATION = "migrations: [{name: migrate, container: app, command: [bin/rails, 'db:migrate'], timeoutSeconds: 600}]\n"
IMAGES = {
    "good": {},
    "slow": {"startSeconds": 240},  # wider windows for a stop or an edit to fall in
    "crashing": {"exitCode": 1},
    "unhealthy": {"health": "unhealthy"},
}

# Five times the most history events a deploy wrote in 500 seeds (302, with an hour of clean-up retries): an
# execution that writes this many loops, and is stopped.
MAX_HISTORY_EVENTS = 1500
# The steps the state machine invokes (faults.state_step, and the wait's phase), in the order a deploy meets them.
DEPLOY_STEPS = (
    "LockFunction:acquire",
    "RenderFunction",
    "VerifyFunction",
    "RegisterFunction",
    "MigrateFunction",
    "CanaryFunction:start",
    "CanaryFunction:check",
    "CanaryFunction:remove",
    "UpdateServiceFunction",
    "CheckDeploymentFunction:deployment",
    "BakeFunction",
    "BakeFunction:finish",
    "CanaryFunction:deregister",
    "CanaryFunction:stop",
    "LockFunction:release",
)
ROLLBACK_STEPS = (
    "RollbackFunction:start",
    "CheckDeploymentFunction:rollback",
    "RollbackFunction:finish",
    "RollbackFunction:explain",
)
# Functions EventBridge invokes during a deploy, whose events can be lost.
EVENT_TARGETS = ("TaskStoppedFunction", "CheckDeploymentFunction", "BakeFunction", "ExecutionEndedFunction")
API_ERRORS = {
    "ecs": (
        ("ThrottlingException",),
        ("ServiceUnavailable", "InternalServerError"),
        ("ThrottlingException", "ConnectTimeout"),
    ),
    "elbv2": (("ThrottlingException",), ("ServiceUnavailable",), ("ThrottlingException", "EndpointConnectionError")),
    "dynamodb": (
        ("ProvisionedThroughputExceededException",),
        ("InternalServerError", "ServiceUnavailable"),
        ("ThrottlingException", "ConnectTimeout"),
    ),
    "s3": (("SlowDown",), ("InternalError", "ServiceUnavailable"), ("SlowDown", "ConnectTimeout")),
    "ecr": (("ThrottlingException",), ("ServerException",)),
}
API_OPERATIONS = {
    "ecs": ("RunTask", "StopTask", "DescribeTasks", "ListTasks", "UpdateService", "DescribeServices"),
    "elbv2": ("RegisterTargets", "DeregisterTargets", "DescribeTargetHealth"),
    "dynamodb": ("PutItem", "UpdateItem", "DeleteItem", "GetItem"),
    "s3": ("GetObject", "PutObject"),
    "ecr": ("BatchGetImage", "DescribeImages"),
}
# How a failed execution may end (its last state): with the service as it was, or in a person's hands.
ENDS_UNCHANGED = (states.DEPLOY_FAILED, states.ROLLED_BACK)
ENDS_ROLLBACK_FAILED = (states.ROLLBACK_FAILED, states.ROLLBACK_FAILED_UNEXPLAINED)


def step_of(function: str, event: Any) -> str | None:
    """faults.state_step, telling the wait for the deployment from the wait for the rollback."""
    found = state_step(function, event)
    if found == "CheckDeploymentFunction":
        return f"{found}:{event.get('phase')}"
    return found


def only(steps: tuple[str, ...] | list[str]) -> Callable[[str, Any], str | None]:
    wanted = set(steps)
    return lambda function, event: s if (s := step_of(function, event)) in wanted else None


def draw(*key: Any) -> float:
    """A number in [0, 1) fixed by `key` (a seed, an event id...): the same on every run."""
    digest = hashlib.sha256("|".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ----------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """One seed's deploy and faults; `faults` says each in words (the failure message prints them)."""

    seed: int
    scenario: dict[str, Any]
    faults: list[str] = field(default_factory=list)
    api: list[ApiFault] = field(default_factory=list)
    lambdas: list[LambdaFault] = field(default_factory=list)
    duplicates: float = 0.0
    lost: list[tuple[str, float, int | None]] = field(default_factory=list)  # (function, share, attempts lost)
    stop: dict[str, Any] | None = None  # {"step", "nth", "hold"} or {"after"}
    config: dict[str, Any] | None = None  # {"step", "nth", "change"}
    interrupt: int | None = None  # ECS stops the canary as it is checked this many times

    def words(self) -> str:
        scenario = ", ".join(f"{k}={v}" for k, v in self.scenario.items())
        faults = "".join(f"\n    - {f}" for f in self.faults) or " none"
        return f"seed {self.seed}: {scenario}\n  faults:{faults}"


def plan(seed: int) -> Plan:
    rng = random.Random(seed)
    strategy = rng.choice(["canary", "rolling"])
    migration = rng.random() < 0.4
    bake = rng.random() < 0.4
    scenario = {
        "strategy": strategy,
        "migration": ("failing" if rng.random() < 0.2 else "yes") if migration else "no",
        "bake": ("alarm fires" if rng.random() < 0.25 else "yes") if bake else "no",
        "image": rng.choices(list(IMAGES), weights=[5, 2, 2, 2])[0],
    }
    if scenario["bake"] == "alarm fires":
        scenario["alarmAfter"] = rng.randint(5, 110)
    p = Plan(seed, scenario)
    steps = [
        s
        for s in DEPLOY_STEPS
        if (migration or s != "MigrateFunction")
        and (strategy == "canary" or not s.startswith("CanaryFunction"))
        and (bake or not s.startswith("BakeFunction"))
    ]
    steps += list(ROLLBACK_STEPS)
    kinds = [
        kind
        for kind, chance in (
            ("lambda", 0.5),
            ("api", 0.45),
            ("outage", 0.2),
            ("stop", 0.35),
            ("lost", 0.3),
            ("duplicates", 0.25),
            ("config", 0.25),
            ("interrupt", 0.15 if strategy == "canary" else 0.0),
        )
        if rng.random() < chance
    ] or [rng.choice(["lambda", "api", "stop", "lost", "config"])]
    for kind in kinds:
        ADD[kind](p, rng, steps)
    return p


def _lambda(p: Plan, rng: random.Random, steps: list[str]) -> None:
    for _ in range(rng.randint(1, 3)):
        chosen = sorted(rng.sample(steps, rng.randint(1, 3)))
        kind = rng.choices(["crash", "timeout", "unavailable"], weights=[4, 3, 1])[0]
        times = rng.choice([1, 1, 2, 2, 2, None]) if kind != "unavailable" else rng.choice([2, 4, None])
        error = rng.choice(["Sandbox.Timedout", "Lambda.Unknown"]) if kind == "timeout" else None
        p.lambdas.append(LambdaFault(kind, step=only(chosen), times=times, error=error))
        what = f"{kind}{f' ({error})' if error else ''}"
        p.faults.append(f"handler {what} {'every time' if times is None else f'{times}x'} in {', '.join(chosen)}")


def _api(p: Plan, rng: random.Random, steps: list[str]) -> None:
    for service in rng.sample(sorted(API_ERRORS), rng.randint(1, 2)):
        rate = rng.choice([0.1, 0.3, 0.5, 0.75, 0.9])
        errors = rng.choice(API_ERRORS[service])
        operations = (rng.choice(API_OPERATIONS[service]),) if rng.random() < 0.3 else ()
        limit = rng.choice([None, None, rng.randint(5, 60)])
        p.api.append(ApiFault(service, rate, errors, operations=operations, limit=limit))
        p.faults.append(
            f"{service} {'/'.join(operations) or 'every call'}: {rate:.0%} of attempts answered {'/'.join(errors)}"
            + (f", for {limit} errors" if limit else ", throughout")
        )


def _outage(p: Plan, rng: random.Random, steps: list[str]) -> None:
    limit = rng.choice([30, 100, 200])
    p.api += [
        ApiFault("ecs", 1.0, ("ThrottlingException",), operations=("StopTask",), limit=limit),
        ApiFault("elbv2", 1.0, ("Throttling",), operations=("DeregisterTargets",), limit=limit),
    ]
    p.faults.append(f"StopTask and DeregisterTargets refused for {limit} attempts each")


def _stop(p: Plan, rng: random.Random, steps: list[str]) -> None:
    if rng.random() < 0.6:
        p.stop = {"step": rng.choice(steps), "nth": rng.choice([1, 1, 2]), "hold": rng.choice([0, 5, 60])}
        p.faults.append(
            f"execution stopped as {p.stop['step']} is invoked (invocation {p.stop['nth']}), "
            f"the step running on {p.stop['hold']} s"
        )
    else:
        p.stop = {"after": rng.randint(5, 900)}
        p.faults.append(f"execution stopped {p.stop['after']} s after the push")


def _lost(p: Plan, rng: random.Random, steps: list[str]) -> None:
    for function in rng.sample(EVENT_TARGETS, rng.randint(1, 2)):
        share = rng.choice([0.5, 1.0])
        attempts = rng.choice([1, None])
        p.lost.append((function, share, attempts))
        how = "lost (every attempt fails: dead-lettered)" if attempts is None else "failing on their first delivery"
        p.faults.append(f"{share:.0%} of {function}'s events {how}")


def _duplicates(p: Plan, rng: random.Random, steps: list[str]) -> None:
    p.duplicates = rng.choice([0.3, 1.0])
    p.faults.append(f"{p.duplicates:.0%} of event deliveries duplicated")


def _config(p: Plan, rng: random.Random, steps: list[str]) -> None:
    p.config = {
        "step": rng.choice(steps),
        "nth": 1,
        "change": rng.choice(["deleted", "invalid", "edited", "elsewhere"]),
    }
    p.faults.append(f"config {p.config['change']} as {p.config['step']} is invoked")


def _interrupt(p: Plan, rng: random.Random, steps: list[str]) -> None:
    p.interrupt = rng.randint(1, 3)
    p.faults.append(f"ECS stops the canary (a Spot interruption) at its check number {p.interrupt}")


ADD = {
    "lambda": _lambda,
    "api": _api,
    "outage": _outage,
    "stop": _stop,
    "lost": _lost,
    "duplicates": _duplicates,
    "config": _config,
    "interrupt": _interrupt,
}  # each adds its kind of fault to a plan


# ----------------------------------------------------------------------------- the run
def config_text(scenario: dict[str, Any]) -> str:
    text = WEB + (CANARY if scenario["strategy"] == "canary" else ROLLING)
    if scenario["bake"] != "no":
        text += BAKE
    if scenario["migration"] != "no":
        text += MIGRATION
    return text


def edited(scenario: dict[str, Any], change: str) -> str | None:
    """The config as the edit leaves it (None: deleted)."""
    if change == "deleted":
        return None
    if change == "invalid":
        return "cluster: prod\nservice: [web\n"
    if change == "elsewhere":
        return config_text(scenario).replace("service: web", "service: api")
    flipped = {**scenario, "strategy": "rolling" if scenario["strategy"] == "canary" else "canary"}
    return config_text({**flipped, "migration": "no", "bake": "no"})


def seeded(seed: int) -> ExitStack:
    """The run's other chances fixed by the seed: uuid4 (event ids, request ids), moto's identifiers (task ARNs,
    addresses) and the global random (botocore's and Step Functions' jitter)."""
    from moto.moto_api._internal import mock_random
    from moto.stepfunctions.parser.asl.component import eval_component

    ids, keys = random.Random(f"uuid|{seed}"), random.Random()
    stack = ExitStack()
    stack.enter_context(mock.patch.object(uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4)))
    # moto names each parsed state's parts once, when first evaluated, and the parsed state machine is kept for the
    # process: those names come from elsewhere, or a seed's ids would depend on the seeds run before it.
    stack.enter_context(mock.patch.object(eval_component, "long_uid", lambda: f"{keys.getrandbits(128):032x}"))
    state, moto_state = random.getstate(), mock_random.getstate()
    random.seed(seed)
    mock_random.seed(seed)
    stack.callback(random.setstate, state)
    stack.callback(mock_random.setstate, moto_state)
    return stack


@dataclass
class Outcome:
    plan: Plan
    end: dict[str, Any]  # the sandbox once the run has settled
    reaped: dict[str, Any]  # ... and once the reaper's next pass has run and the world settled again
    reaper: dict[str, Any]  # that pass's result
    at_end: dict[str, Any] | None  # the service and Ferry's tasks as the execution ended (its last history event)
    history_events: int  # how many the execution wrote
    fired: list[dict[str, str]]  # the handler faults that happened
    report: dict[str, Any]  # faults.Faults.report()
    problems: list[str]

    def message(self) -> str:
        """Everything needed to see what happened and run it again."""
        lines = [self.plan.words()]
        for e in self.end["executions"]:
            lines += [
                f"  execution {e['name']}: {e['status']}, error {e['error']}",
                f"  cause: {e['cause']}",
                "  states: " + " -> ".join(_shortened(e["states"])),
            ]
        fired = Counter(f"{f['step']} {f['kind']}" for f in self.fired)
        lines.append(f"  handler faults fired: {', '.join(f'{what} x{n}' for what, n in fired.items()) or 'none'}")
        api = {s: (c["injected"], c["gaveUp"]) for s, c in self.report.get("services", {}).items() if c["injected"]}
        lines.append(f"  API errors injected (injected, calls that gave up): {api}")
        lines.append(f"  reaper's pass: {json.dumps(self.reaper, default=str)}")
        lines.append("  broken:" + "".join(f"\n    - {p}" for p in self.problems))
        lines.append(
            f"  again: FERRY_CHAOS_SEED={self.plan.seed} .venv/bin/pytest tests/statemachine/test_chaos.py "
            f"-k seed_{self.plan.seed}"
        )
        return "\n".join(lines)


def _shortened(entered: list[str], head: int = 40, tail: int = 15) -> list[str]:
    if len(entered) <= head + tail + 1:
        return entered
    return [*entered[:head], f"... {len(entered) - head - tail} more ...", *entered[-tail:]]


def run(seed: int, tmp_path: Path) -> Outcome:
    p = plan(seed)
    with seeded(seed):
        return _run(p, tmp_path)


def _run(p: Plan, tmp_path: Path) -> Outcome:
    from ferry_cli.sandbox.clock import active

    scenario = Scenario(tmp_path)
    scenario.config("web", config_text(p.scenario))
    scenario.world["behaviour"] = {"web:v2": IMAGES[p.scenario["image"]]} if IMAGES[p.scenario["image"]] else {}
    if p.scenario["migration"] == "failing":
        scenario.world["migration"] = {"exitCode": 2, "logLines": ["rake aborted!"]}
    if p.config and p.config["change"] == "elsewhere":
        # Another service, whose config follows another repository: only an edit can point a deploy at it.
        scenario.service("api", config="cluster: prod\nservice: api\ncontainers: {app: {repository: api}}\n")
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    box: dict[str, Any] = {"sandbox": None, "stopped": False, "at_end": None, "counts": {}}

    def stop_now() -> None:
        sandbox = box["sandbox"]
        if box["stopped"] or sandbox is None:
            return
        box["stopped"] = True
        for arn in sorted(sandbox.running):
            sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="the chaos suite stopped it")

    def nth(what: str, limit: int) -> bool:
        box["counts"][what] = box["counts"].get(what, 0) + 1
        return box["counts"][what] == limit

    def stop_at_step(function: str, event: Any) -> None:
        if p.stop and "step" in p.stop and step_of(function, event) == p.stop["step"] and nth("stop", p.stop["nth"]):
            clock = active()
            clock.later(0, stop_now, name="chaos-stop")  # StopExecution, as an operator calls it
            clock.sleep(p.stop["hold"])  # the step's Lambda runs on meanwhile (AWS cannot stop it)

    def edit_config(function: str, event: Any) -> None:
        if p.config and step_of(function, event) == p.config["step"] and nth("config", p.config["nth"]):
            s3, bucket = box["sandbox"].client("s3"), box["sandbox"].config_bucket
            text = edited(p.scenario, p.config["change"])
            if text is None:
                s3.delete_object(Bucket=bucket, Key=CONFIG_KEY)
            else:
                s3.put_object(Bucket=bucket, Key=CONFIG_KEY, Body=text.encode())

    def fire_alarm(function: str, event: Any) -> None:
        if "alarmAfter" in p.scenario and step_of(function, event) == "BakeFunction" and nth("alarm", 1):
            cloudwatch = box["sandbox"].client("cloudwatch")
            active().later(
                p.scenario["alarmAfter"],
                lambda: cloudwatch.set_alarm_state(AlarmName="web-5xx", StateValue="ALARM", StateReason="chaos"),
                name="chaos-alarm",
            )

    def interrupt_canary(function: str, event: Any) -> None:
        if p.interrupt and step_of(function, event) == "CanaryFunction:check" and nth("interrupt", p.interrupt):
            for arn in (event.get("started") or {}).get("taskArns") or []:
                try:
                    faults.interrupt_task(arn)
                except SandboxError:  # not a task the simulator knows: nothing to interrupt
                    pass

    def lose(function: str, share: float) -> Callable[[str, Any], str | None]:
        def step(logical: str, event: Any) -> str | None:
            if logical != function or not isinstance(event, dict) or "detail-type" not in event:
                return None
            return f"{logical}:{event.get('id')}" if draw(p.seed, event.get("id"), logical) < share else None

        return step

    def watch(name: str, kind: str, details: dict[str, Any], at: float) -> None:
        box["events"] = box.get("events", 0) + 1
        if box["events"] == MAX_HISTORY_EVENTS:  # a loop: end it, or it would run until the test times out
            box["looped"] = True
            box["stopped"] = False
            active().later(0, stop_now, name="chaos-stop-loop")
        if kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            box["at_end"] = box["at_end"] or at_end(box["sandbox"])

    lost = [LambdaFault("crash", step=lose(function, share), times=times) for function, share, times in p.lost]
    faults = Faults(p.api, [*p.lambdas, *lost], seed=p.seed)
    delivery = EventDelivery(duplicates=p.duplicates, seed=p.seed)
    hooks = [stop_at_step, edit_config, fire_alarm, interrupt_canary]
    with world_session(path, faults=faults, delivery=delivery, fault_hooks=hooks) as (sandbox, world):
        box["sandbox"] = sandbox
        sandbox.watch_history = watch
        event_path = scenario.dir / "push.json"
        event = push_event("web", "v2")
        event_path.write_text(json.dumps(event))
        deliver_all(sandbox, world, [Delivery("event", event_path, event)])
        if p.stop and "after" in p.stop:
            sandbox.clock.later(p.stop["after"], stop_now, name="chaos-stop")
        sandbox.wait_for_executions()
        sandbox.settle_world()
        end = observe(sandbox)
        box["stopped"] = True  # a stop not made by now never will be
        sandbox.faults = None  # the outage is over: the reaper's pass runs in a world that answers
        ran = sandbox.run_schedule("ReaperFunction", after=reaper.GRACE_SECONDS)
        sandbox.settle_world()
        reaped = observe(sandbox, end["executions"])
    found = problems(p, end, "end", box["at_end"])
    if box.get("looped"):
        found.insert(0, f"[end] the execution wrote {MAX_HISTORY_EVENTS} history events and was stopped: a loop")
    if ran["error"] is not None:
        found.append(f"the reaper's pass failed: {ran['error']}: {ran['result']}")
    found += problems(p, reaped, "reaped")
    return Outcome(
        p,
        end,
        reaped,
        ran["result"],
        box["at_end"],
        box.get("events", 0),
        list(faults.lambda_faults),
        faults.report(),
        found,
    )


# ----------------------------------------------------------------------------- what the sandbox holds
def at_end(sandbox: Any) -> dict[str, Any]:
    """The ECS model as the execution writes its last history event: the service, and the canary and migration
    tasks whose desired status is still RUNNING (read from the model itself, at that instant)."""
    simulator = sandbox.simulator
    with simulator._lock:
        running = sorted(
            f"{k.purpose} task {k.arn.rsplit('/', 1)[-1]}"
            for k in simulator._tasks.values()
            if k.service is None and k.purpose in ("canary", "migration") and k.desired == "RUNNING"
        )
        return {"service": simulator.services().get("prod/web"), "running": running}


def _name(task_definition: str | None) -> str | None:
    return task_definition.rsplit("/", 1)[-1] if task_definition else None


def _executions(sandbox: Any, sfn: Any) -> list[dict[str, Any]]:
    executions = []
    for execution in sandbox.executions():
        arn = execution["executionArn"]
        events = sandbox.history(arn)
        error, cause = history.outcome(events)
        described = sfn.describe_execution(executionArn=arn)
        registered = history.task_results(events).get(states.REGISTER) or {}
        executions.append(
            {
                "name": execution["name"],
                "arn": arn,
                "status": described["status"],
                "error": error or described.get("error"),
                "cause": cause or described.get("cause"),
                "states": history.entered_states(events),
                "registered": _name(registered.get("taskDefinitionArn")) if isinstance(registered, dict) else None,
            }
        )
    return executions


def observe(sandbox: Any, executions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the invariants read: the executions (`executions`, when they were read already and have ended), the
    services, the lock table, Ferry's tasks, the targets."""
    from ferry.aws.ecs import task_ip

    sfn, ecs, elb, ddb = (sandbox.client(s) for s in ("stepfunctions", "ecs", "elbv2", "dynamodb"))
    if executions is None:
        executions = _executions(sandbox, sfn)
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=sandbox.lock_table, ConsistentRead=True):
        items += page["Items"]
    by_key = {item["pk"]["S"]: item for item in items}
    deployed = by_key.get("deployed#prod/web")
    tasks = []
    for desired in ("RUNNING", "STOPPED"):
        arns = [
            arn
            for page in ecs.get_paginator("list_tasks").paginate(cluster="prod", desiredStatus=desired)
            for arn in page["taskArns"]
        ]
        for i in range(0, len(arns), 100):
            tasks += ecs.describe_tasks(cluster="prod", tasks=arns[i : i + 100], include=["TAGS"])["tasks"]
    ferry = []
    for task in tasks:
        tags = {t["key"]: t["value"] for t in task.get("tags") or []}
        started_by = task.get("startedBy") or ""
        if started_by.startswith("ferry-") or "ferry:execution" in tags:
            purpose = tags.get("ferry:purpose") or ("canary" if started_by.startswith("ferry-canary-") else "migration")
            ferry.append(
                {
                    "task": task["taskArn"].rsplit("/", 1)[-1],
                    "purpose": purpose,
                    "desired": task.get("desiredStatus"),
                    "last": task.get("lastStatus"),
                    "ip": task_ip(task),
                }
            )
    targets = []
    for group in elb.describe_target_groups()["TargetGroups"]:
        health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
        targets += [
            {"group": group["TargetGroupName"], "id": d["Target"]["Id"], "state": d["TargetHealth"]["State"]}
            for d in health
        ]
    return {
        "executions": executions,
        "services": sandbox.simulator.services(),
        "locks": {k: v.get("owner", {}).get("S") for k, v in by_key.items() if k.startswith("service#")},
        "openJournals": {
            k: sorted(v.get("left", {}).get("SS", []))
            for k, v in by_key.items()
            if k.startswith("journal#") and "closedAt" not in v
        },
        "record": {
            "revision": _name(deployed.get("revision", {}).get("S")),
            "owner": deployed.get("owner", {}).get("S"),
        }
        if deployed
        else None,
        "ferryTasks": ferry,
        "deadLetters": sorted({d["function"] for d in sandbox.dead_letters}),
        "targets": targets,
    }


# ----------------------------------------------------------------------------- the invariants
def problems(p: Plan, seen: dict[str, Any], when: str, at_end: dict[str, Any] | None = None) -> list[str]:
    """What Ferry promises, however the deploy ended, and what of it does not hold (`when`: "end", once the run
    settled; "reaped", once the reaper's next pass has run too). Every time: one complete revision at its desired
    count, the one the execution's end and the deploy record say. Once reaped: no canary or migration task
    running, no canary address in a target group, no lock held, no journal open. At the end already, for an
    execution that ended through its own states (not stopped, its clean-up not given up): nothing it started
    still running when it reported, and nothing of it left (that is the state machine's own work)."""
    found: list[str] = []

    def broken(what: str) -> None:
        found.append(f"[{when}] {what}")

    if len(seen["executions"]) > 1:
        broken(f"{len(seen['executions'])} executions: one push, however often delivered, starts one")
    if not seen["executions"]:  # the router could not start it (S3 or Step Functions down): the push waits in its DLQ
        if "ferry-sandbox-router" not in seen["deadLetters"]:
            broken("no execution, and the push is not in the router's dead-letter queue")
        seen = {
            **seen,
            "executions": [{"name": "(none)", "arn": "", "status": "NONE", "states": [], "registered": None}],
        }
    execution = seen["executions"][0]
    status, last = execution["status"], (execution["states"] or [""])[-1]
    new = execution["registered"] or NEW
    web = seen["services"]["prod/web"]
    revision = web["taskDefinition"]
    deployments = [(d["status"], d["taskDefinition"], d["rolloutState"], d["runningCount"]) for d in web["deployments"]]
    if deployments != [("PRIMARY", revision, "COMPLETED", DESIRED)] or (
        web["desiredCount"],
        web["runningCount"],
    ) != (DESIRED, DESIRED):
        broken(
            f"prod/web is not one complete revision at its desired count: desired {web['desiredCount']}, "
            f"running {web['runningCount']}, deployments {deployments}"
        )
    if "prod/api" in seen["services"]:  # the service an edited config pointed at: never touched
        api = seen["services"]["prod/api"]
        if (api["taskDefinition"], api["runningCount"], len(api["deployments"])) != ("api:1", 1, 1):
            broken(f"prod/api was changed: {api['taskDefinition']}, {api['runningCount']} running")

    record = seen["record"]
    ours = record is not None and record["owner"] == execution["arn"]
    changed = states.UPDATE_SERVICE in execution["states"]
    expected: tuple[str, ...]
    if status == "SUCCEEDED":
        expected = (new,) if last == states.DEPLOYED else ()
        if not ours or record["revision"] != new:
            broken(f"{status} but the deploy record is {record}, not {new} by this execution")
    elif status == "FAILED" and last in ENDS_UNCHANGED:
        expected = (OLD,)
        if ours:
            broken(f"ended in {last!r} but the deploy record names this execution: {record}")
    elif status == "FAILED" and last == states.DEPLOYED_LOCK_NOT_RELEASED:
        expected = (new,)
        if not ours or record["revision"] != new:
            broken(f"ended in {last!r} but the deploy record is {record}")
    elif status == "FAILED" and last == states.CLEANUP_FAILED:
        expected = (new,) if states.RELEASE_LOCK_DEPLOYED_CLEANUP_FAILED in execution["states"] else (OLD,)
    elif status == "FAILED" and last in ENDS_ROLLBACK_FAILED:
        expected = (OLD, new)  # a person must act: whichever ECS left, as long as it is whole
        service = (at_end or {}).get("service")
        if service and service["taskDefinition"] == OLD and _complete(service):
            broken(f"ended in {last!r} (a person must act) while prod/web was stable on {OLD}")
    elif status == "NONE":
        expected = (OLD,)
    elif status == "ABORTED":
        if ours:  # stopped after the deploy was recorded
            expected = (record["revision"],)
        else:  # docs/errors.md: a stop after the update leaves ECS carrying on with it, no rollback
            expected = (OLD, new) if changed else (OLD,)
    else:
        expected = ()
    if revision not in expected:
        broken(
            f"{status} in {last!r}: prod/web runs {revision}, expected {' or '.join(expected) or 'no such end'} "
            f"(deploy record: {record})"
        )
    if record is not None and record["revision"] != revision and status != "ABORTED":
        broken(f"the deploy record names {record['revision']} while prod/web runs {revision}")

    running = [f"{t['purpose']} task {t['task']}" for t in seen["ferryTasks"] if t["desired"] == "RUNNING"]
    canaries = {t["ip"] for t in seen["ferryTasks"] if t["purpose"] == "canary" and t["ip"]}
    # A draining target was deregistered: the load balancer removes it once the deregistration delay is over.
    registered = [
        f"{t['id']} in {t['group']} ({t['state']})"
        for t in seen["targets"]
        if t["id"] in canaries and t["state"] != "draining"
    ]
    own_end = status in ("SUCCEEDED", "FAILED") and last != states.CLEANUP_FAILED
    if when == "end" and own_end:
        if at_end is not None and at_end["running"]:
            broken(f"ended in {last!r} while {', '.join(at_end['running'])} still ran")
        if last not in (states.DEPLOYED_LOCK_NOT_RELEASED,) and seen["locks"]:
            broken(f"ended in {last!r} with the deploy lock still held: {seen['locks']}")
    if when == "reaped" or own_end:
        if running:
            broken(f"still running: {', '.join(running)}")
        if registered:
            broken(f"canary addresses still in target groups: {', '.join(registered)}")
    if when == "reaped":
        if seen["locks"]:
            broken(f"deploy lock still held: {seen['locks']}")
        if seen["openJournals"]:
            broken(f"journals not closed: {seen['openJournals']}")
    return found


def _complete(service: dict[str, Any]) -> bool:
    [primary, *others] = service["deployments"]
    return (
        not others
        and primary["rolloutState"] == "COMPLETED"
        and primary["runningCount"] == service["desiredCount"] == service["runningCount"]
    )
