"""Is the service's ECS deployment complete, still going, or failed? And wait for it without polling.

Complete means what ecspresso checks since v2.6 and users asked for: the
deployment finished (rolloutState COMPLETED, running = desired) *and* the
PRIMARY deployment runs the revision Ferry deployed. A circuit-breaker
rollback by ECS is therefore a failure, never a silent success. The new
tasks must also not be unhealthy in any target group the health gates name.

Waiting costs nothing per minute: the state waits on a task token stored
under the service (`watch`), and ECS's own `ECS Deployment State Change`
events complete it (`on_event`). `watch` checks once right after storing the
token, so a deployment that ended before the token was stored is not missed.
When no event comes, the state's heartbeat runs out after `checkInSeconds`
and its Retry calls `watch` again: a lost event costs at most one fallback
interval (and one state transition), and the phase timeout is enforced there.

A native (ECS blue/green, linear or canary) deployment has no event per
lifecycle stage; its waiter looks every minute and keeps the stages it saw,
which the state's output lists when the deployment ends.

The step's contract (CONTRACTS): "Wait for ECS to finish the deployment" and
"Wait for ECS to finish the rollback" pass `Input`; their output (at
$.deployment.progress and $.rollback.progress) is `Output`, the progress the
task token is completed with. The function's own answer (`Waiting`) only goes
to its log. ECS's Deployment State Change events reach the same function
(`deployment_changed`): not a state, so no contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from ferry import aws
from ferry import states as S
from ferry.runtime import clock
from ferry.aws import waiters
from ferry.aws.ecs import (
    check_in_seconds,
    describe_service,
    describe_tasks,
    primary_deployment,
    revision_name,
    task_arns,
    task_ip,
)
from ferry.contract import EcsStepInput, Model, Progress, key
from ferry.errors import DeploymentFailed, FerryError, InputInvalid, PhaseTimedOut
from ferry.runtime.observability import logger


@dataclass(frozen=True)
class Watch:
    """What to wait for: the service's PRIMARY deployment of `task_definition_arn`, by `started_at + timeout_seconds`."""

    cluster: str
    service: str
    task_definition_arn: str
    started_at: float
    timeout_seconds: int
    phase: str = "deployment"  # or "rollback": named in messages
    native: bool = False  # an ECS blue/green, linear or canary deployment: report its lifecycle stage
    target_groups: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"deployment#{self.cluster}/{self.service}"

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> "Watch":
        return cls(
            str(data["cluster"]),
            str(data["service"]),
            str(data["taskDefinitionArn"]),
            float(data["startedAt"]),
            int(data["timeoutSeconds"]),
            str(data.get("phase") or "deployment"),
            bool(data.get("native")),
            tuple(data.get("targetGroups") or ()),
        )

    def to_context(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_groups"] = list(self.target_groups)
        return data

    @classmethod
    def from_context(cls, data: dict[str, Any]) -> "Watch":
        return cls(**{**data, "target_groups": tuple(data.get("target_groups") or ())})


# ------------------------------------------------------------------ the step's contract

PHASES = ("deployment", "rollback")


@dataclass(frozen=True, kw_only=True)
class Input(EcsStepInput):
    """The input of "Wait for ECS to finish the deployment" and "Wait for ECS to finish the rollback"."""

    token: str | None = key(
        "token",
        required=False,
        doc="$$.Task.Token: completed when the deployment ends; without one, the step looks once",
    )
    task_definition_arn: str = key(
        "taskDefinitionArn",
        doc="the revision the PRIMARY deployment must run: $.register.taskDefinitionArn, "
        "or for the rollback $.render.previousTaskDefinitionArn",
    )
    started_at: float = key(
        "startedAt",
        kinds=(int, float),
        doc="$.deployment.startedAt (or $.rollback.startedAt): the phase timeout counts from it",
    )
    timeout_seconds: int = key("timeoutSeconds", kinds=(int,), doc="$.render.timeouts.deployment (or .rollback)")
    phase: str = key("phase", required=False, default="deployment", doc="deployment or rollback")
    strategy: str | None = key(
        "strategy",
        required=False,
        doc="$.render.strategy: a native deployment is followed through its lifecycle stages",
    )
    target_groups: list[str] = key(
        "targetGroups",
        kinds=(list,),
        required=False,
        default=[],
        doc="$.render.targetGroups: the health gates' target groups, checked at the end",
    )

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise InputInvalid(
                f"`phase` must be deployment or rollback, got {self.phase!r}: fix the state's Parameters"
            )
        if not all(isinstance(group, str) for group in self.target_groups):
            raise InputInvalid(
                "`targetGroups` must be a list of target group names or ARNs: pass $.render.targetGroups"
            )

    @property
    def watch(self) -> Watch:
        """What to wait for."""
        return Watch(
            self.cluster,
            self.ecs_service,
            self.task_definition_arn,
            float(self.started_at),
            self.timeout_seconds,
            self.phase,
            self.strategy == "native",
            tuple(self.target_groups),
        )


@dataclass(frozen=True, kw_only=True)
class Output(Progress):
    """The deployment's progress ($.deployment.progress, $.rollback.progress): COMPLETED when the token is completed
    with it (a failure fails the waiting state instead); without a token, IN_PROGRESS too."""

    state: str = key("state", doc="COMPLETED (or, looked at without a token, IN_PROGRESS)")
    check_in_seconds: int | None = key(
        "checkInSeconds",
        kinds=(int,),
        required=False,
        doc="null in the answer: the heartbeat the wait was entered with, which the "
        "step before it wrote at this path (Update the service, Roll back)",
    )
    running: int = key("running", kinds=(int,), doc="the PRIMARY deployment's running tasks")
    desired: int = key("desired", kinds=(int,), doc="its desired tasks")
    failed_tasks: int = key("failedTasks", kinds=(int,), doc="tasks of it that failed to start")
    service_deployment_status: str | None = key(
        "serviceDeploymentStatus", required=False, doc="native: the ECS service deployment's status"
    )
    lifecycle_stage: str | None = key("lifecycleStage", required=False, doc="native: its lifecycle stage")
    status_reason: str | None = key("statusReason", required=False, doc="native: why it is in that status")
    target_health: dict[str, str] | None = key(
        "targetHealth", kinds=(dict,), required=False, doc="target group -> how many of the new tasks are healthy there"
    )
    stages: list[dict[str, Any]] | None = key(
        "stages", kinds=(list,), required=False, doc="native: the lifecycle stages seen, each with when"
    )

    @classmethod
    def of(cls, progress: dict[str, Any], stages: list[dict[str, Any]] | None = None) -> "Output":
        """`check`'s progress as the state's output, with the lifecycle stages seen."""
        return cls.from_state({**progress, "stages": stages or None}, "the deployment's progress")

    @property
    def message(self) -> str:
        return f"the deployment is {self.state}"


@dataclass(frozen=True, kw_only=True)
class Waiting(Model):
    """The function's answer, for its log: whether the state still waits, and when its heartbeat looks again."""

    waiting: bool = key("waiting", kinds=(bool,), doc="false when the deployment had ended and the token is completed")
    check_in_seconds: int = key(
        "checkInSeconds", kinds=(int,), doc="when the state looks for itself, if no event comes"
    )

    @property
    def message(self) -> str:
        return (
            "waiting for ECS to report the end of the deployment"
            if self.waiting
            else "the deployment had already ended"
        )


# action -> (input, output): what both waits pass, and what their token is completed with (the state's output).
CONTRACTS = {None: (Input, Output)}


def read(event: Any) -> Input:
    """The typed input of the wait that invoked the function."""
    phase = event.get("phase") if isinstance(event, Mapping) else None
    state = S.WAIT_FOR_ROLLBACK if phase == "rollback" else S.WAIT_FOR_DEPLOYMENT
    return Input.from_state(event, f"{state}'s input")


def run(request: Input, table: str) -> Waiting | Output:
    """The step: leave the state waiting for the deployment's end (completed at once if it has ended); without a
    token, look once and answer the progress."""
    if request.token:
        return watch(table, request.token, request.watch)
    return Output.of(check(request.watch))


def check(watch: Watch) -> dict[str, Any]:
    """The deployment's progress; DeploymentFailed or PhaseTimedOut when it will not complete."""
    where = f"service {watch.cluster}/{watch.service}"
    ours = revision_name(watch.task_definition_arn)
    current = describe_service(watch.cluster, watch.service)
    primary = primary_deployment(current)
    stage = _native_stage(watch, current) if watch.native else {}
    if primary["taskDefinition"] != watch.task_definition_arn:
        raise DeploymentFailed(
            f"{where}: ECS replaced the {watch.phase} of {ours}; the PRIMARY deployment now runs "
            f"{revision_name(primary['taskDefinition'])} ({primary.get('rolloutStateReason', 'no reason given')})"
            + (
                f"; the service deployment is {stage['serviceDeploymentStatus']}"
                if stage.get("serviceDeploymentStatus")
                else ""
            )
        )
    state = primary.get("rolloutState", "COMPLETED")
    progress = {
        "running": primary.get("runningCount", 0),
        "desired": primary.get("desiredCount", 0),
        "failedTasks": primary.get("failedTasks", 0),
        **stage,
    }
    if state == "FAILED" or stage.get("serviceDeploymentStatus") in (
        "STOPPED",
        "ROLLBACK_SUCCESSFUL",
        "ROLLBACK_FAILED",
    ):
        raise DeploymentFailed(
            f"{where}: the ECS {watch.phase} of {ours} FAILED after {progress['failedTasks']} failed tasks: "
            f"{stage.get('statusReason') or primary.get('rolloutStateReason', 'no reason given')}"
        )
    finished = state == "COMPLETED" and progress["running"] >= progress["desired"]
    if finished and watch.native and stage.get("serviceDeploymentStatus") not in (None, "SUCCESSFUL"):
        finished = False  # ECS's blue/green bake and clean-up run after the new tasks are up
    if finished:
        health = target_health(watch, current)
        return {"state": "COMPLETED", **progress, **({"targetHealth": health} if health else {})}
    if clock.now() - watch.started_at > watch.timeout_seconds:
        raise PhaseTimedOut(
            f"{where}: the {watch.phase} of {ours} did not complete within {watch.timeout_seconds} s "
            f"({progress['running']}/{progress['desired']} tasks running, rolloutState {state}"
            + (f", lifecycle stage {stage['lifecycleStage']}" if stage.get("lifecycleStage") else "")
            + f"); raise timeouts.{watch.phase} in the service config if the service is just slow"
        )
    return {"state": "IN_PROGRESS", **progress}


def _native_stage(watch: Watch, service: dict[str, Any]) -> dict[str, Any]:
    """The current service deployment's status and lifecycle stage (ECS blue/green, linear, canary)."""
    arn = service.get("currentServiceDeployment")
    if not arn:
        return {}
    found = aws.client("ecs").describe_service_deployments(serviceDeploymentArns=[arn]).get("serviceDeployments") or []
    if not found:
        return {}
    sd = found[0]
    return {
        k: v
        for k, v in {
            "serviceDeploymentStatus": sd.get("status"),
            "lifecycleStage": sd.get("lifecycleStage"),
            "statusReason": sd.get("statusReason"),
        }.items()
        if v
    }


def _task_addresses(watch: Watch) -> set[str]:
    """Private IPs of the service's running tasks of the new revision (awsvpc)."""
    arns = task_arns(watch.cluster, serviceName=watch.service, desiredStatus="RUNNING")  # every page: 100 a page
    return {
        ip
        for task in describe_tasks(watch.cluster, arns)
        if task.get("taskDefinitionArn") == watch.task_definition_arn and (ip := task_ip(task))
    }


def target_health(watch: Watch, service: dict[str, Any]) -> dict[str, str]:
    """The new tasks' health in every target group of the service and of the health gates; unhealthy fails.

    ECS already waits for the target groups it manages; this also covers the
    extra `healthGates.targetGroups`, and a target that turned unhealthy in
    the moment ECS called the deployment complete.
    """
    groups = [lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")]
    groups += [tg for tg in watch.target_groups if tg not in groups]
    if not groups or watch.phase != "deployment":
        return {}
    addresses = _task_addresses(watch)
    elbv2 = aws.client("elbv2")
    report, bad = {}, []
    for ref in groups:
        try:
            arn = (
                ref
                if ref.startswith("arn:")
                else elbv2.describe_target_groups(Names=[ref])["TargetGroups"][0]["TargetGroupArn"]
            )
            described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        except ClientError as exc:  # deleted since Verify looked at it
            raise DeploymentFailed(
                f"service {watch.cluster}/{watch.service}: target group {ref} of the health gates cannot be read "
                f"({aws.error_code(exc)}): restore it, or remove it from healthGates.targetGroups"
            ) from exc
        name = arn.split(":")[-1].split("/")[1] if "/" in arn else arn
        ours = [d for d in described if d["Target"]["Id"] in addresses]
        states = [d["TargetHealth"]["State"] for d in ours]
        report[name] = f"{states.count('healthy')}/{len(ours)} healthy" if ours else "no targets of the new tasks"
        bad += [
            f"{name}: {d['Target']['Id']}:{d['Target'].get('Port', '?')} {d['TargetHealth']['State']} "
            f"({d['TargetHealth'].get('Reason', 'no reason')}: {d['TargetHealth'].get('Description', '')})"
            for d in ours
            if d["TargetHealth"]["State"] in ("unhealthy", "unavailable")
        ]
    if bad:
        raise DeploymentFailed(
            f"service {watch.cluster}/{watch.service}: ECS completed the deployment of "
            f"{revision_name(watch.task_definition_arn)} but its tasks are not healthy in every target group: "
            + "; ".join(bad)
        )
    return report


def watch(table: str, token: str, request: Watch) -> Waiting:
    """Leave the state waiting for the deployment's end; completes it at once when it has ended already.

    Called again by the state's Retry after each heartbeat without an event:
    the new token replaces the old one, and the stages seen so far are kept.
    """
    context = request.to_context()
    previous = waiters.get(table, request.key)
    if previous and _same_wait(previous[1], context):
        context["stages"] = previous[1].get("stages", [])
    waiters.put(table, request.key, token, context)
    settled = settle(table, token, request, context)
    return Waiting(waiting=not settled, check_in_seconds=check_in_seconds(request.timeout_seconds, request.native))


def _same_wait(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(old.get(k) == new.get(k) for k in ("task_definition_arn", "started_at", "phase"))


def settle(table: str, token: str, request: Watch, context: dict[str, Any] | None = None) -> bool:
    """Complete the waiting state if the deployment has ended (or failed); False while it is still going."""
    stages = list((context or {}).get("stages") or [])
    try:
        progress = check(request)
    except FerryError as exc:
        waiters.delete(table, request.key, token)
        seen = f" Lifecycle stages seen: {', '.join(s['stage'] for s in stages)}." if stages else ""
        return waiters.complete(token, error=type(exc).__name__, cause=str(exc) + seen)
    if progress.get("lifecycleStage") and (not stages or stages[-1]["stage"] != progress["lifecycleStage"]):
        stages.append({"stage": progress["lifecycleStage"], "at": round(clock.now())})
        if context is not None:
            context["stages"] = stages
            waiters.put(table, request.key, token, context)
    if progress["state"] == "IN_PROGRESS":
        return False
    output = Output.of(progress, stages).to_state()
    waiters.delete(table, request.key, token)
    return waiters.complete(token, output=output)


def from_ecs(event: Any) -> bool:
    """Whether the function was invoked by ECS's Deployment State Change event (its EventBridge rule)."""
    return isinstance(event, Mapping) and event.get("source") == "aws.ecs"


def deployment_changed(table: str, event: dict[str, Any]) -> dict[str, Any]:
    """ECS's Deployment State Change event: settle the wait of each service it names, if one waits."""
    resources = event.get("resources") or []
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    settled = any(on_event(table, arn) for arn in resources if isinstance(arn, str))
    logger.info(
        "deployment state change handled" if settled else "no state waits for this deployment's end",
        extra={"resources": resources, "eventName": detail.get("eventName")},
    )
    return {"settled": settled}


def on_event(table: str, service_arn: str) -> bool:
    """ECS reported a change of this service's deployment: settle the state waiting for it, if any."""
    cluster, service = service_from_arn(service_arn)
    if not cluster:
        # A service created before the long ARN format (arn:aws:ecs:<region>:<account>:service/<name>) names no
        # cluster to find its waiting state by; Verify refuses such services (check service-arn-format), and a
        # waiting state still ends by its own heartbeat's look.
        logger.warning(
            "deployment event ignored: "
            + (
                "a service with a short ARN names no cluster"
                if is_short_service_arn(service_arn)
                else "not an ECS service ARN"
            ),
            extra={"serviceArn": service_arn},
        )
        return False
    found = waiters.get(table, f"deployment#{cluster}/{service}")
    if found is None:
        return False
    token, context = found
    return settle(table, token, Watch.from_context({k: v for k, v in context.items() if k != "stages"}), context)


def service_from_arn(arn: str) -> tuple[str, str]:
    """('cluster', 'service') of arn:aws:ecs:<region>:<account>:service/<cluster>/<service>; ('', '') for anything
    else, short ARNs (arn:aws:ecs:<region>:<account>:service/<service>, from before the long format) included."""
    path = arn.split(":", 5)[-1] if isinstance(arn, str) and arn.count(":") >= 5 else ""
    parts = path.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "service" and all(parts) else ("", "")


def is_short_service_arn(arn: str) -> bool:
    """arn:aws:ecs:<region>:<account>:service/<name>: a service created before ECS's long ARN format."""
    path = arn.split(":", 5)[-1] if isinstance(arn, str) and arn.count(":") >= 5 and ":ecs:" in arn else ""
    parts = path.split("/")
    return len(parts) == 2 and parts[0] == "service" and bool(parts[1])
