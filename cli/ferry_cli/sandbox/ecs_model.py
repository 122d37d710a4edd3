"""A small, believable Amazon ECS, driven by simulated time.

What ECS does and moto's ECS does not: service deployments that roll out,
fail, trip the circuit breaker and roll back; tasks that move PROVISIONING ->
PENDING -> RUNNING -> STOPPED on the SimClock, driven by the world's
`behaviour`; target health that is ``initial`` before it is ``healthy`` (or
``unhealthy``), and draining after deregistration; migration logs; ECS's task
and deployment state change events; and the answers of the service deployment
API (DescribeServiceDeployments and friends).

State is advanced lazily: every call (and ``tick()``) first replays all
scheduled transitions up to ``clock.now()`` in time order, so jumping the clock
ten minutes ahead gives the same history as waiting ten minutes.

The model imports nothing from moto. It meets the API through its adapter,
moto_ecs.EcsSimulator, in two ways only:

- the methods under "where the model meets the API" at the end of the class
  (task definitions, starting a service's task, image digests, network
  interfaces, target group registrations, log events, and publishing the
  model's state onto the API's records), which the adapter implements;
- the API's records of a service and a task (`_Service.api`, `_Task.api`),
  from which the model reads what the caller asked for, under the ECS API's
  field names in snake_case: a service's arn, cluster_arn, desired_count,
  running_count, deployment_configuration, health_check_grace_period_seconds,
  load_balancers, launch_type, capacity_provider_strategy, platform_version
  and network_configuration; a task's task_arn, cluster_name, tags,
  overrides, attachments, cluster_arn, launch_type, group, started_by,
  platform_version and capacity_provider_name. A task definition is read for its arn,
  container_definitions, cpu and memory.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import itertools
import math
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Any, Iterator

from .clock import SimClock

DEFAULTS: dict[str, float] = {
    "startSeconds": 30,  # PROVISIONING -> RUNNING
    "healthyAfterSeconds": 30,  # target initial -> healthy/unhealthy; container health checks
    "crashAfterSeconds": 20,  # RUNNING -> essential container exits (behaviour exitCode)
    "drainSeconds": 10,  # deregistration delay of a target
    "rolloutSeconds": 0,  # extra time a service deployment takes once its tasks are up
    "stopSeconds": 5,  # STOPPING -> STOPPED
    "runSeconds": 20,  # how long a migration task runs before it exits
    "replaceUnhealthySeconds": 10,  # unhealthy service task -> ECS stops it
}
PURPOSE_TAG = "ferry:purpose"
# ECS-native deployment strategies: after the new tasks are up, traffic shifts (rolloutSeconds) and the
# deployment bakes for bakeTimeInMinutes with both revisions running, then the old one is cleaned up.
NATIVE_STRATEGIES = ("BLUE_GREEN", "LINEAR", "CANARY")
DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


class EcsError(Exception):
    """An error ECS answers a call with (`code` is its name, e.g. InvalidParameterException)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)


def _iso(t: float | None, millis: bool = True) -> str | None:
    if t is None:
        return None
    d = _dt(t)
    return (
        d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
        if millis
        else d.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _count(tasks: Any, *states: str) -> int:
    return sum(k.last in states for k in tasks)


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


class _Task:
    """Model state of one ECS task (`api` is the API's record of it, which the adapter publishes the state onto)."""

    def __init__(
        self,
        api: Any,
        arn: str,
        td: Any,
        cluster: str,
        purpose: str | None,
        behaviour: dict,
        container: str,
        image_digests: dict,
        created: float,
        container_prefix: str,
    ) -> None:
        self.api, self.td, self.cluster = api, td, cluster
        self.arn, self.id = arn, arn.split("/")[-1]
        self.purpose, self.behaviour, self.container, self.digests = purpose, behaviour, container, image_digests
        self.service: _Service | None = None
        self.deployment: _Deployment | None = None
        self.created, self.started, self.stopping, self.stopped = created, None, None, None
        self.last, self.desired, self.health = "PROVISIONING", "RUNNING", "UNKNOWN"
        self.stop_code: str | None = None
        self.stop_reason: str | None = None
        self.container_reason: str | None = None  # set when the containers never started
        self.exit_codes: dict[str, int] = {}
        self.containers_stopped, self.version = False, 0
        self.ip: str | None = None
        self.attachment_id: str | None = None
        self.zone: str | None = None  # the availability zone of its subnet (awsvpc)
        self.runtime_ids = {cd["name"]: uuid.uuid4().hex + uuid.uuid4().hex for cd in td.container_definitions}
        self.targets: list[tuple[str, int]] = []  # (target group ARN, port) registered by ECS itself
        self.schedule: list[tuple[float, str]] = []  # (time, action), sorted
        prefix = f"{container_prefix}/{self.id}"
        self.container_arns = {cd["name"]: f"{prefix}/{uuid.uuid4()}" for cd in td.container_definitions}

    def has_health_check(self) -> bool:
        return any(cd.get("healthCheck") and cd.get("essential", True) for cd in self.td.container_definitions)


class _ServiceDeployment:
    """What DescribeServiceDeployments reports: one per update; an ECS rollback continues the one it undoes."""

    def __init__(self, arn: str, service: _Service, target: str, sources: list[str], t: float) -> None:
        self.arn, self.service, self.target, self.sources = arn, service, target, sources
        self.created = self.started = self.updated = t
        self.finished = self.stopped = None
        self.status, self.status_reason = "IN_PROGRESS", None
        self.rollback: dict | None = None
        self.deployment: _Deployment | None = None  # the latest ECS deployment (a rollback, if any)
        self.origin: _Deployment | None = None  # the ECS deployment that started it
        self.config = copy.deepcopy(service.config)


class _Deployment:
    def __init__(self, dep_id: str, td: str, revision: str, desired: int, t: float, rollback: bool) -> None:
        self.id, self.td, self.revision, self.desired = dep_id, td, revision, desired
        self.created = self.updated = t
        self.status, self.rollout = "PRIMARY", "IN_PROGRESS"
        self.reason = f"ECS deployment {dep_id} in progress."
        self.failed = 0
        self.tasks: list[_Task] = []
        self.ready_since: float | None = None
        self.is_rollback = rollback
        self.sd: _ServiceDeployment | None = None


class _Service:
    """Model state of one ECS service (`api` is the API's record of it: its configuration, as last updated)."""

    def __init__(self, api: Any, cluster: str, name: str) -> None:
        self.api = api
        self.name, self.cluster = name, cluster
        self.key = f"{self.cluster}/{self.name}"
        self.deployments: list[_Deployment] = []  # [0] is PRIMARY
        self.sds: list[_ServiceDeployment] = []
        self.last_completed: _Deployment | None = None
        self.events: list[dict] = []
        self.deleted = False

    @property
    def config(self) -> dict:
        return getattr(self.api, "deployment_configuration", None) or DEFAULT_DEPLOYMENT_CONFIGURATION

    @property
    def breaker(self) -> dict:
        return self.config.get("deploymentCircuitBreaker") or {}


class EcsModel:
    def __init__(
        self,
        clock: SimClock,
        *,
        account_id: str,
        region: str,
        behaviour: dict[str, dict] | None = None,
        migration: dict | None = None,
        defaults: dict | None = None,
    ) -> None:
        self.clock, self.account_id, self.region = clock, account_id, region
        self.behaviour = behaviour or {}
        self.migration = migration or {}
        self.d = {**DEFAULTS, **(defaults or {})}
        self._lock = threading.RLock()
        self._busy = False
        self._t = clock.now()
        self._tasks: dict[str, _Task] = {}
        self._live: dict[_Task, None] = {}  # tasks with a pending schedule (a dict: ties resolve in launch order)
        self._by_ip: dict[str, _Task] = {}
        self._services: dict[str, _Service] = {}
        self._sds: dict[str, _ServiceDeployment] = {}
        self._revisions: dict[str, dict] = {}
        self._reg_at: dict[tuple[str, str], float] = {}
        self._dereg_at: dict[tuple[str, str], tuple[float, int]] = {}
        self._events: list[dict] = []
        self._purposes: dict[str, int] = {}
        self.on_change: Callable[[], None] = lambda: None  # told after every step (the sandbox's driver listens)

    # ---------------------------------------------------------------- public API
    def tick(self) -> list[dict]:
        """Bring everything up to clock.now(); return the EventBridge events produced since the last tick."""
        with self._step():
            events, self._events = self._events, []
        return events

    def services(self) -> dict[str, dict]:
        with self._step():
            out = {}
            for s in self._services.values():
                if s.deleted or not s.deployments:
                    continue
                p = s.deployments[0]
                td = self._task_definition(p.td)
                out[s.key] = {
                    "taskDefinition": p.td.split("/")[-1],
                    "images": {cd["name"]: cd["image"] for cd in td.container_definitions},
                    "desiredCount": s.api.desired_count,
                    "runningCount": s.api.running_count,
                    "deployments": [
                        {
                            "id": d.id,
                            "status": d.status,
                            "taskDefinition": d.td.split("/")[-1],
                            "rolloutState": d.rollout,
                            "runningCount": _count(d.tasks, "RUNNING"),
                            "failedTasks": d.failed,
                        }
                        for d in s.deployments
                    ],
                }
            return out

    def canary_tasks(self) -> int:
        with self._step():
            return sum(
                1 for k in self._tasks.values() if k.service is None and k.purpose == "canary" and k.last != "STOPPED"
            )

    def running_tasks(self, purpose: str) -> int:
        """Tasks started for `purpose` (migration, canary) that have not stopped yet."""
        with self._step():
            return sum(1 for k in self._tasks.values() if k.purpose == purpose and k.last != "STOPPED")

    def task_count(self, purpose: str) -> int:
        with self._lock:
            return self._purposes.get(purpose, 0)

    def interrupt_task(self, task_arn: str, stop_code: str, reason: str) -> bool:
        """Stop a task the way ECS itself does (a Spot interruption, a host retirement), not through StopTask: the
        task drains, stops and gets the stop code and reason; a service's task is replaced. False: no such task."""
        with self._step():
            task = self._tasks.get(task_arn)
            if task is None:
                return False
            self._begin_stop(task, stop_code, reason)
            if task.service is not None:
                self._reconcile(task.service)  # ECS replaces a service's task
            return True

    # ---------------------------------------------------------------- time
    @contextmanager
    def _step(self) -> Iterator[float]:
        """Hold the lock, catch up with the clock, and publish the state onto the API's records on the way out."""
        with self._lock:
            if self._busy:  # re-entered from inside the simulator (e.g. our own register_targets)
                yield self._t
                return
            self._busy = True
            due = self._earliest()
            try:
                self._advance(self.clock.now())
                yield self._t
                self._publish_services()
            finally:
                self._busy = False
                # Tell the driver only when it has something new to do: an event to emit, or a schedule that
                # changed. A mere look (a test polling services()) must not wake it, or on virtual time the two
                # would take turns forever at one instant.
                after = self._earliest()
                if self._events or (due and due[0]) != (after and after[0]):
                    self.on_change()

    def _now(self) -> float:
        return self._t if self._busy else self.clock.now()

    def _earliest(self) -> tuple[float, Any] | None:
        """The next scheduled transition: (when, the task or the service whose rollout then completes)."""
        best: tuple[float, Any] | None = None
        for k in self._live:
            if k.schedule and (best is None or k.schedule[0][0] < best[0]):
                best = (k.schedule[0][0], k)
        for s in self._services.values():
            p = s.deployments[0] if s.deployments and not s.deleted else None
            if p and p.rollout == "IN_PROGRESS" and p.ready_since is not None:
                due = p.ready_since + self._finishing_seconds(p)
                if best is None or due < best[0]:
                    best = (due, s)
        return best

    def next_due(self) -> float | None:
        """When the next scheduled transition falls due (None: nothing scheduled): the sandbox's driver sleeps
        until then, or until a call changes the schedule (`on_change`)."""
        with self._lock:
            best = self._earliest()
            return None if best is None else best[0]

    def _advance(self, now: float) -> None:
        """Replay every scheduled transition up to `now`, earliest first."""
        while True:
            best = self._earliest()
            if best is None or best[0] > now:
                break
            self._t = max(self._t, best[0])
            if isinstance(best[1], _Task):
                k = best[1]
                when, action = k.schedule.pop(0)
                self._act(k, action, when)
                if not k.schedule:  # nothing more until someone stops it (_begin_stop puts it back)
                    self._live.pop(k, None)
                if k.service:
                    self._reconcile(k.service)
            else:
                self._reconcile(best[1])
        self._t = max(self._t, now)

    # ---------------------------------------------------------------- the ECS actions the adapter forwards
    def service_created(self, api: Any, cluster: str, name: str, task_definition: str, desired: int) -> None:
        """A service created with the ECS deployment controller: it already existed, so its tasks started long
        ago and its first deployment has completed."""
        s = self._services[f"{cluster}/{name}"] = _Service(api, cluster, name)
        mark = len(self._events)
        p = self._new_deployment(s, task_definition)
        for _ in range(desired):
            self._launch(s, p, backdate=True)
        self._advance(self._t)  # replay the backdated tasks' history up to now ...
        if p.rollout == "IN_PROGRESS":
            self._complete(s, p)
        del self._events[mark:]  # ... without telling anyone: the service already existed

    def service_updated(self, key: str, task_definition: str | None, redeploy: bool, desired: int) -> None:
        """UpdateService: a new deployment for a new task definition (or when `redeploy`), then the new count."""
        s = self._services.get(key)
        if s is None or s.deleted:
            return
        p = s.deployments[0]
        td = self._task_definition(task_definition).arn if task_definition else p.td
        if td != p.td or redeploy:
            self._new_deployment(s, td)
        s.deployments[0].desired = desired
        self._reconcile(s)

    def service_deleted(self, key: str) -> None:
        s = self._services.get(key)
        if s:
            for k in [k for d in s.deployments for k in d.tasks]:
                self._begin_stop(k, "ServiceSchedulerInitiated", "Service deleted")
            s.deleted = True

    def task_started(self, api: Any, td: Any) -> _Task:
        """RunTask started this task (its API record)."""
        return self._adopt(api, td)

    def task_stopped(self, cluster: str, task_id: str, reason: str | None) -> _Task | None:
        """StopTask: the task goes STOPPING, then STOPPED after stopSeconds (after drainSeconds first if ECS
        registered it). None when the model does not know the task."""
        k = next((k for k in self._tasks.values() if k.cluster == cluster and k.id == task_id), None)
        if k is None:
            return None
        self._begin_stop(k, "UserInitiated", reason or "Task stopped by user")
        if k.service:
            self._reconcile(k.service)  # ECS replaces a stopped service task
        return k

    # ---------------------------------------------------------------- tasks
    def _plan(self, k: _Task) -> list[tuple[float, str]]:
        b, d, t0 = k.behaviour, self.d, k.created
        start = float(b.get("startSeconds", d["startSeconds"]))
        plan = [(t0 + min(start / 2, 10.0), "PENDING")]
        if b.get("stopCode"):
            return plan + [(t0 + start, "FAILSTART")]
        plan += [(t0 + start, "RUNNING"), (t0 + start + d["healthyAfterSeconds"], "HEALTH")]
        if k.purpose == "migration":
            plan.append((t0 + start + float(b.get("runSeconds", d["runSeconds"])), "EXIT"))
        elif "exitCode" in b:
            plan.append((t0 + start + float(b.get("crashAfterSeconds", d["crashAfterSeconds"])), "EXIT"))
        return sorted(plan, key=lambda x: x[0])

    def _act(self, k: _Task, action: str, when: float) -> None:
        """Apply one scheduled transition; `when` is its own time (earlier than now for backdated tasks)."""
        if action in ("PENDING", "STOPPING"):
            k.last = action
        elif action == "RUNNING":
            k.last, k.started = "RUNNING", when
            self._register(k)
        elif action == "HEALTH":
            k.health = "UNHEALTHY" if k.behaviour.get("health") == "unhealthy" else "HEALTHY"
            if k.health == "UNHEALTHY" and self._needs_health(k):  # not before the health check grace period ends
                grace = getattr(k.service.api, "health_check_grace_period_seconds", None) or 0
                k.schedule.append((max(when + self.d["replaceUnhealthySeconds"], k.started + grace), "KILL"))
                k.schedule.sort(key=lambda x: x[0])
            self._publish_task(k)
            return  # a health change is no task state change event
        elif action == "KILL":
            reason = (
                f"Task failed ELB health checks in (target-group {k.targets[0][0]})"
                if k.targets
                else "Task failed container health checks"
            )
            self._begin_stop(k, "ServiceSchedulerInitiated", reason)
            self._task_failed(k)
            return
        elif action == "EXIT":
            code = int(k.behaviour.get("exitCode", 0))
            k.exit_codes = {name: 143 for name in k.container_arns}
            k.exit_codes[k.container] = code
            if k.behaviour.get("stoppedReason"):  # e.g. OutOfMemoryError: ECS reports it on the container
                k.container_reason = k.behaviour["stoppedReason"]
            k.containers_stopped = True
            self._begin_stop(k, "EssentialContainerExited", "Essential container in task exited")
            self._task_failed(k)
            return
        elif action == "FAILSTART":
            k.desired, k.stopping = "STOPPED", when
            k.stop_code = k.behaviour.get("stopCode", "TaskFailedToStart")
            k.stop_reason = k.container_reason = k.behaviour.get("stoppedReason", "Task failed to start")
            self._finish(k)
            self._task_failed(k)
            return
        elif action == "STOPPED":
            self._finish(k)
            return
        self._changed(k)

    def _begin_stop(self, k: _Task, code: str, reason: str) -> bool:
        if k.desired == "STOPPED":
            return False
        t = self._t
        k.desired, k.stop_code, k.stop_reason, k.stopping = "STOPPED", code, reason, t
        drained = self._deregister(k)
        wait = self.d["drainSeconds"] if drained else 0
        k.last = "DEACTIVATING" if drained else ("STOPPING" if k.last == "RUNNING" else k.last)
        k.schedule = ([(t + wait, "STOPPING")] if drained else []) + [(t + wait + self.d["stopSeconds"], "STOPPED")]
        self._live[k] = None
        self._changed(k)
        return True

    def _finish(self, k: _Task) -> None:
        k.last, k.desired, k.stopped, k.schedule = "STOPPED", "STOPPED", self._t, []
        k.stopping = k.stopping or self._t
        if k.started:
            for name in k.container_arns:
                k.exit_codes.setdefault(name, 143)
        k.containers_stopped = True
        self._live.pop(k, None)
        self._release_network(k)
        self._write_logs(k)
        self._changed(k)

    def _needs_health(self, k: _Task) -> bool:
        return k.service is not None and (bool(k.targets) or k.has_health_check())

    def _ready(self, k: _Task) -> bool:
        return k.last == "RUNNING" and k.desired == "RUNNING" and (k.health == "HEALTHY" or not self._needs_health(k))

    # ---------------------------------------------------------------- services and deployments
    def _reconcile(self, s: _Service) -> None:
        if s.deleted or not s.deployments:
            return
        p, t = s.deployments[0], self._t
        if p.rollout != "FAILED":
            live = [k for k in p.tasks if k.desired == "RUNNING"]
            while len(live) < p.desired:
                live.append(self._launch(s, p))
            for k in live[p.desired :]:
                self._begin_stop(k, "ServiceSchedulerInitiated", f"Scaling activity initiated by (deployment {p.id})")
            live = live[: p.desired]
            if p.rollout == "IN_PROGRESS":
                if all(self._ready(k) for k in live):
                    p.ready_since = t if p.ready_since is None else p.ready_since
                else:
                    p.ready_since = None
                if p.ready_since is not None and t >= p.ready_since + self._finishing_seconds(p):
                    self._complete(s, p)
        if p.rollout == "COMPLETED":  # drained deployments disappear once their tasks have stopped
            s.deployments = [p] + [d for d in s.deployments[1:] if any(k.last != "STOPPED" for k in d.tasks)]

    def _finishing_seconds(self, dep: _Deployment) -> float:
        """How long a deployment takes once its tasks are ready: the rollout, plus a native strategy's bake."""
        config = dep.sd.config if dep.sd else {}
        bake = 0.0
        if config.get("strategy") in NATIVE_STRATEGIES and not dep.is_rollback:
            bake = 60.0 * float(config.get("bakeTimeInMinutes") or 0)
        return self.d["rolloutSeconds"] + bake

    def _lifecycle_stage(self, sd: _ServiceDeployment) -> str | None:
        """DescribeServiceDeployments' lifecycleStage, for the ECS-native strategies only."""
        dep = sd.deployment
        if sd.config.get("strategy") not in NATIVE_STRATEGIES or dep is None:
            return None
        if sd.status not in ("PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS"):
            return "CLEAN_UP"
        if dep.ready_since is None:
            return "SCALE_UP" if dep.tasks else "PRE_SCALE_UP"
        return "PRODUCTION_TRAFFIC_SHIFT" if self._t < dep.ready_since + self.d["rolloutSeconds"] else "BAKE_TIME"

    def _launch(self, s: _Service, dep: _Deployment, backdate: bool = False) -> _Task:
        td = self._task_definition(dep.td)
        api = self._start_service_task(s, td, dep.id)
        k = self._adopt(api, td, s, dep, backdate)
        dep.tasks.append(k)
        return k

    def _new_deployment(
        self, s: _Service, td: str, rollback_to: _Deployment | None = None, reason: str | None = None
    ) -> _Deployment:
        t = self._t
        old = s.deployments[0] if s.deployments else None
        if old:
            old.status = "ACTIVE"
            if (
                old.rollout == "IN_PROGRESS"
                and rollback_to is None
                and old.sd.status in ("PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS")
            ):
                old.sd.status, old.sd.stopped, old.sd.updated = "STOPPED", t, t
                old.sd.status_reason = "Superseded by a newer service deployment."
        dep_id = f"ecs-svc/{self._new_number()}"
        revision = rollback_to.revision if rollback_to else self._new_revision(s, td)
        dep = _Deployment(dep_id, td, revision, s.api.desired_count, t, rollback=rollback_to is not None)
        if rollback_to is not None and old is not None:
            dep.sd = old.sd  # a rollback belongs to the service deployment it undoes
        else:
            sources = list(
                dict.fromkeys(d.revision for d in s.deployments if any(k.last != "STOPPED" for k in d.tasks))
            )
            token = base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()
            sd_arn = f"arn:aws:ecs:{self.region}:{self.account_id}:service-deployment/{s.cluster}/{s.name}/{token}"
            dep.sd = _ServiceDeployment(sd_arn, s, revision, sources, t)
            dep.sd.origin = dep
            s.sds.insert(0, dep.sd)
            self._sds[sd_arn] = dep.sd
        dep.sd.deployment = dep
        s.deployments.insert(0, dep)
        self._emit_deployment(s, dep, "SERVICE_DEPLOYMENT_IN_PROGRESS", reason or dep.reason)
        return dep

    def _new_revision(self, s: _Service, td_arn: str) -> str:
        m = s.api
        arn = f"arn:aws:ecs:{self.region}:{self.account_id}:service-revision/{s.cluster}/{s.name}/{self._new_number()}"
        td = self._task_definition(td_arn)
        images = []
        for cd in td.container_definitions:
            digest = next(iter(self._resolve_image(cd["image"])[1]), None)
            images.append(_clean({"containerName": cd["name"], "image": cd["image"], "imageDigest": digest}))
        self._revisions[arn] = _clean(
            {
                "serviceRevisionArn": arn,
                "serviceArn": m.arn,
                "clusterArn": m.cluster_arn,
                "taskDefinition": td_arn,
                "capacityProviderStrategy": getattr(m, "capacity_provider_strategy", None),
                "launchType": m.launch_type,
                "platformVersion": m.platform_version,
                "loadBalancers": copy.deepcopy(m.load_balancers),
                "networkConfiguration": copy.deepcopy(m.network_configuration) or None,
                "containerImages": images,
                "createdAt": _dt(self._t),
            }
        )
        return arn

    def _complete(self, s: _Service, p: _Deployment) -> None:
        t = self._t
        p.rollout, p.reason, p.updated = "COMPLETED", f"ECS deployment {p.id} completed.", t
        s.last_completed = p
        p.sd.status = "ROLLBACK_SUCCESSFUL" if p.is_rollback else "SUCCESSFUL"
        p.sd.finished = p.sd.updated = t
        for d in s.deployments[1:]:
            for k in d.tasks:
                self._begin_stop(k, "ServiceSchedulerInitiated", f"Scaling activity initiated by (deployment {p.id})")
        self._service_event(s, f"(service {s.name}) has reached a steady state.")
        self._emit_deployment(s, p, "SERVICE_DEPLOYMENT_COMPLETED", p.reason)

    def _task_failed(self, k: _Task) -> None:
        """A service task crashed, failed to start or failed health checks: count it, maybe trip the breaker."""
        dep, s = k.deployment, k.service
        if dep is None or s is None or s.deleted:
            return
        dep.failed += 1
        dep.updated = self._t
        self._service_event(s, f"(service {s.name}) (task {k.id}) stopped: {k.stop_reason}.")
        cb = s.breaker
        if (
            dep is s.deployments[0]
            and dep.rollout == "IN_PROGRESS"
            and cb.get("enable")
            and dep.failed >= self._threshold(dep.desired)
        ):
            self._fail(s, dep, bool(cb.get("rollback")))

    @staticmethod
    def _threshold(desired: int) -> int:
        return max(3, min(200, math.ceil(desired * 0.5)))

    def _fail(self, s: _Service, dep: _Deployment, rollback: bool) -> None:
        t = self._t
        dep.rollout, dep.updated = "FAILED", t
        dep.reason = "ECS deployment circuit breaker: tasks failed to start."
        self._service_event(s, f"(service {s.name}) (deployment {dep.id}) deployment failed: tasks failed to start.")
        self._emit_deployment(
            s, dep, "SERVICE_DEPLOYMENT_FAILED", "ECS deployment circuit breaker: task failed to start.", "ERROR"
        )
        sd = dep.sd
        sd.updated = t
        if rollback and not dep.is_rollback and s.last_completed and s.last_completed is not dep:
            self._rollback(s, dep, "Service deployment rolled back because the circuit breaker threshold was exceeded.")
        elif dep.is_rollback:
            sd.status, sd.finished = "ROLLBACK_FAILED", t
            sd.status_reason = "The rollback failed: the circuit breaker threshold was exceeded."
        else:
            sd.status, sd.stopped = "STOPPED", t
            sd.status_reason = "The circuit breaker threshold was exceeded and rollback is turned off."

    def _rollback(self, s: _Service, dep: _Deployment, reason: str) -> None:
        target = s.last_completed
        sd = dep.sd
        sd.status, sd.status_reason, sd.updated = "ROLLBACK_IN_PROGRESS", reason, self._t
        sd.rollback = {"reason": reason, "startedAt": _dt(self._t), "serviceRevisionArn": target.revision}
        self._new_deployment(
            s,
            target.td,
            rollback_to=target,
            reason=f"ECS deployment circuit breaker: rolling back to deploymentId {target.id}.",
        )

    # ---------------------------------------------------------------- tasks, networking, target health, logs
    def _adopt(
        self, api: Any, td: Any, s: _Service | None = None, dep: _Deployment | None = None, backdate: bool = False
    ) -> _Task:
        """Take over a task the API started: behaviour, IP, schedule, API view."""
        tags = {x.get("key"): x.get("value") for x in (api.tags or [])}
        purpose = tags.get(PURPOSE_TAG)
        behaviour, container, digests = self._behaviour(td, purpose, api.overrides, service_task=s is not None)
        k = _Task(
            api,
            api.task_arn,
            td,
            api.cluster_name,
            purpose,
            behaviour,
            container,
            digests,
            self._t,
            f"arn:aws:ecs:{self.region}:{self.account_id}:container/{api.cluster_name}",
        )
        k.service, k.deployment = s, dep
        if backdate:  # a service that already existed: its tasks started long ago
            k.created -= (
                float(behaviour.get("startSeconds", self.d["startSeconds"])) + self.d["healthyAfterSeconds"] + 1
            )
        if purpose:
            self._purposes[purpose] = self._purposes.get(purpose, 0) + 1
        network = self._attach_network(k)
        if network is not None:
            k.ip, k.attachment_id, k.zone = network
            self._by_ip[k.ip] = k
        k.schedule = self._plan(k)
        self._tasks[k.arn] = k
        self._live[k] = None
        self._changed(k)
        return k

    def _behaviour(
        self, td: Any, purpose: str | None, overrides: dict | None = None, service_task: bool = False
    ) -> tuple[dict, str, dict]:
        """Behaviour of the first essential container whose image has an entry that applies to it; migrations use
        `migration`.

        An image's entry is one behaviour or a list of them, and each may be narrowed: `container` (only where that
        container runs the image) and `tasks` (`canary`: only Ferry's canary tasks; `service`: only the service's
        own tasks). The first that applies wins, container by container in the task definition's order.

        A migration's exit code, stop reason and log lines belong to the container it runs in: the one whose
        command RunTask's overrides replace (not the first container of the task definition, which is often a
        sidecar). The task's other containers are stopped by ECS when it exits (_act EXIT)."""
        essentials = [cd for cd in td.container_definitions if cd.get("essential", True)] or td.container_definitions
        found, container, digests = {}, essentials[0]["name"], {}
        for cd in td.container_definitions:
            keys, dg = self._resolve_image(cd["image"])
            if dg:
                digests[cd["name"]] = dg[0]
            if not found and cd in essentials:
                for key in keys:
                    entry = self._entry_for(key, cd["name"], purpose, service_task)
                    if entry is not None:
                        found, container = entry, cd["name"]
                        break
        if purpose == "migration":
            kept = {k: v for k, v in found.items() if k in ("startSeconds", "stopCode", "stoppedReason")}
            found = {**kept, **self.migration}
            names = {cd["name"] for cd in td.container_definitions}
            container = next(
                (
                    o["name"]
                    for o in (overrides or {}).get("containerOverrides") or []
                    if o.get("command") and o.get("name") in names
                ),
                container,
            )
        return found, container, digests

    def _entry_for(self, key: str, container: str, purpose: str | None, service_task: bool) -> dict | None:
        """The first of the image's behaviours that applies to `container` in this task (without its narrowing)."""
        entries = self.behaviour.get(key)
        if entries is None:
            return None
        for entry in entries if isinstance(entries, list) else [entries]:
            if entry.get("container", container) != container:
                continue
            tasks = entry.get("tasks")
            if (tasks == "canary" and purpose != "canary") or (tasks == "service" and not service_task):
                continue
            return {k: v for k, v in entry.items() if k not in ("container", "tasks")}
        return None

    def _pick_ip(self, cidr: str, fallback: str) -> str:
        """A task's address in its subnet: AWS reserves the first addresses of a subnet; prefer never-used
        addresses, then those of stopped tasks."""
        hosts = [str(h) for h in itertools.islice(ipaddress.ip_network(cidr).hosts(), 3, 4096)]
        return next((h for h in hosts if h not in self._by_ip), None) or next(
            (h for h in hosts if self._by_ip[h].last == "STOPPED"), fallback
        )

    def _register(self, k: _Task) -> None:
        """ECS registers a service task's IP in the service's target groups once it is RUNNING."""
        if k.service is None or not k.ip:
            return
        for lb in k.service.api.load_balancers or []:
            arn = lb.get("targetGroupArn")
            port = self._register_target(arn, k.ip, lb.get("containerPort"))
            if port is not None:
                self._reg_at[(arn, k.ip)] = k.started
                k.targets.append((arn, port))

    def _deregister(self, k: _Task) -> bool:
        drained = False
        for arn, port in k.targets:
            if self._deregister_target(arn, k.ip, port):
                drained = True
        return drained

    def _registered(self, tg_arn: str, target_id: str, registering: bool, port: int) -> None:
        """A target was (de)registered (by ECS or anyone): health starts `initial`, draining lasts drainSeconds."""
        if registering:
            self._reg_at[(tg_arn, target_id)] = self._now()
            self._dereg_at.pop((tg_arn, target_id), None)
        else:
            self._dereg_at[(tg_arn, target_id)] = (self._now(), port)

    def _draining(self, tg_arn: str, registered: Any) -> list[dict]:
        """The targets of a target group still draining (not in `registered`): DescribeTargetHealth lists them."""
        return [
            {"Id": ip, "Port": port}
            for (arn, ip), (t, port) in self._dereg_at.items()
            if arn == tg_arn and ip not in registered and self._t < t + self.d["drainSeconds"]
        ]

    def _target_state(
        self, tg_arn: str, ip: str, registered: bool, k: _Task
    ) -> tuple[str, str | None, str | None] | None:
        """A task's target health in a target group: (state, reason, description), or None if it is no target."""
        now, key = self._t, (tg_arn, ip)
        if registered:
            if k.containers_stopped or k.last in ("DEACTIVATING", "STOPPING", "STOPPED"):
                return "unhealthy", "Target.FailedHealthChecks", "Health checks failed"
            if k.started is None or now < max(self._reg_at.get(key, now), k.started) + self.d["healthyAfterSeconds"]:
                return "initial", "Elb.RegistrationInProgress", "Target registration is in progress"
            if k.behaviour.get("health") == "unhealthy":
                return "unhealthy", "Target.FailedHealthChecks", "Health checks failed"
            return "healthy", None, None
        dereg = self._dereg_at.get(key)
        if dereg and now < dereg[0] + self.d["drainSeconds"]:
            return "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"
        return None

    def _write_logs(self, k: _Task) -> None:
        """Behaviour/migration `logLines` go to the container's awslogs stream when the task stops."""
        lines = k.behaviour.get("logLines")
        cd = next((c for c in k.td.container_definitions if c["name"] == k.container), None)
        lc = (cd or {}).get("logConfiguration") or {}
        if not lines or not k.started or lc.get("logDriver") != "awslogs":
            return
        opts = lc.get("options") or {}
        prefix = opts.get("awslogs-stream-prefix")
        stream = f"{prefix}/{k.container}/{k.id}" if prefix else k.id
        span = (self._t - k.started) / (len(lines) + 1)
        self._put_log_events(
            opts.get("awslogs-region", self.region),
            opts.get("awslogs-group"),
            stream,
            [
                {"timestamp": int((k.started + span * (i + 1)) * 1000), "message": str(line)}
                for i, line in enumerate(lines)
            ],
        )

    # ---------------------------------------------------------------- views and events
    def _containers(self, k: _Task) -> list[dict]:
        out = []
        for cd in k.td.container_definitions:
            name = cd["name"]
            status = "STOPPED" if k.containers_stopped else ("RUNNING" if k.started else "PENDING")
            health = k.health if cd.get("healthCheck") and k.started else "UNKNOWN"
            out.append(
                _clean(
                    {
                        "containerArn": k.container_arns[name],
                        "taskArn": k.arn,
                        "name": name,
                        "image": cd["image"],
                        "imageDigest": k.digests.get(name),
                        "lastStatus": status,
                        "exitCode": k.exit_codes.get(name),
                        "reason": k.container_reason,
                        "healthStatus": health,
                        "cpu": str(cd.get("cpu", 0)),
                        "memory": str(cd["memory"]) if cd.get("memory") else None,
                        "networkInterfaces": [{"attachmentId": k.attachment_id, "privateIpv4Address": k.ip}]
                        if k.ip
                        else [],
                    }
                )
            )
        return out

    def _changed(self, k: _Task) -> None:
        k.version += 1
        self._publish_task(k)
        self._emit("ECS Task State Change", [k.arn], self._task_event(k))

    def _task_event(self, k: _Task) -> dict:
        """The detail of ECS's Task State Change event, as AWS publishes it (tests/fixtures/aws/ecs, checked by
        tests/sandbox/test_event_shapes.py): not DescribeTasks' view. The attachment's type is `eni`, each
        container of the task is listed in overrides.containerOverrides, and no health status is given ("The
        health status of the event isn't provided in the task state change event", ECS developer guide)."""
        mt = k.api
        pulled = k.created + 1 if k.last != "PROVISIONING" else None
        attachments = [
            {
                **copy.deepcopy(a),
                "type": "eni" if a.get("type") == "ElasticNetworkInterface" else a.get("type"),
                "details": [d for d in a.get("details", []) if d.get("name") != "privateDnsName"],
            }
            for a in mt.attachments
        ]
        named = {o.get("name"): o for o in (mt.overrides or {}).get("containerOverrides") or []}
        overrides = {
            **copy.deepcopy(mt.overrides or {}),
            "containerOverrides": [
                copy.deepcopy(named.get(cd["name"]) or {"name": cd["name"]}) for cd in k.td.container_definitions
            ],
        }
        containers = []
        for view in self._containers(k):
            view = {key: value for key, value in view.items() if key != "healthStatus"}
            if k.started:
                view["runtimeId"] = k.runtime_ids[view["name"]]
            containers.append(view)
        return _clean(
            {
                "attachments": attachments,
                "availabilityZone": k.zone,
                "clusterArn": mt.cluster_arn,
                "containers": containers,
                "createdAt": _iso(k.created),
                "launchType": mt.launch_type or None,
                "cpu": k.td.cpu,
                "memory": k.td.memory,
                "desiredStatus": k.desired,
                "group": mt.group,
                "lastStatus": k.last,
                "overrides": overrides,
                "startedBy": mt.started_by or None,
                "taskArn": k.arn,
                "taskDefinitionArn": k.td.arn,
                "updatedAt": _iso(self._t),
                "version": k.version,
                "platformVersion": mt.platform_version,
                "capacityProviderName": mt.capacity_provider_name,
                "connectivity": "CONNECTED" if k.started else None,
                "connectivityAt": _iso(pulled - 0.5) if pulled else None,
                "pullStartedAt": _iso(pulled),
                "pullStoppedAt": _iso(k.started - 1) if k.started else None,
                "startedAt": _iso(k.started),
                "stoppingAt": _iso(k.stopping),
                "stoppedAt": _iso(k.stopped),
                "executionStoppedAt": _iso(k.stopped),
                "stopCode": k.stop_code,
                "stoppedReason": k.stop_reason,
            }
        )

    def _emit(self, detail_type: str, resources: list[str], detail: dict) -> None:
        self._events.append(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": detail_type,
                "source": "aws.ecs",
                "account": self.account_id,
                "time": _iso(self._t, millis=False),
                "region": self.region,
                "resources": resources,
                "detail": detail,
            }
        )

    def _emit_deployment(self, s: _Service, dep: _Deployment, name: str, reason: str, etype: str = "INFO") -> None:
        self._emit(
            "ECS Deployment State Change",
            [s.api.arn],
            {  # updatedAt in whole seconds, as AWS's samples
                "eventType": etype,
                "eventName": name,
                "deploymentId": dep.id,
                "updatedAt": _iso(self._t, millis=False),
                "reason": reason,
            },
        )

    def _service_event(self, s: _Service, message: str) -> None:
        s.events = [{"id": str(uuid.uuid4()), "createdAt": _dt(self._t), "message": message}] + s.events[:99]

    def _deployment_view(self, s: _Service, d: _Deployment) -> dict:
        """One of DescribeServices' `deployments`."""
        m = s.api
        return _clean(
            {
                "id": d.id,
                "status": d.status,
                "taskDefinition": d.td,
                "desiredCount": d.desired,
                "pendingCount": _count(d.tasks, "PROVISIONING", "PENDING"),
                "runningCount": _count(d.tasks, "RUNNING"),
                "failedTasks": d.failed,
                "createdAt": _dt(d.created),
                "updatedAt": _dt(d.updated),
                "launchType": m.launch_type,
                "capacityProviderStrategy": getattr(m, "capacity_provider_strategy", None),
                "platformVersion": m.platform_version,
                "networkConfiguration": m.network_configuration or None,
                "rolloutState": d.rollout,
                "rolloutStateReason": d.reason,
            }
        )

    def _revision_counts(self, s: _Service, arn: str) -> dict:
        tasks = [k for d in s.deployments if d.revision == arn for k in d.tasks]
        primary = s.deployments[0] if s.deployments else None
        return {
            "arn": arn,
            "requestedTaskCount": primary.desired if primary and primary.revision == arn else 0,
            "runningTaskCount": _count(tasks, "RUNNING"),
            "pendingTaskCount": _count(tasks, "PROVISIONING", "PENDING"),
        }

    def _sd_view(self, sd: _ServiceDeployment) -> dict:
        s = sd.service
        cb, alarms = sd.config.get("deploymentCircuitBreaker") or {}, sd.config.get("alarms") or {}
        first = sd.origin
        running = sd.status in ("PENDING", "IN_PROGRESS")
        breaker = "MONITORING" if running else "MONITORING_COMPLETE"
        return _clean(
            {
                "serviceDeploymentArn": sd.arn,
                "serviceArn": s.api.arn,
                "clusterArn": s.api.cluster_arn,
                "createdAt": _dt(sd.created),
                "startedAt": _dt(sd.started),
                "finishedAt": _dt(sd.finished),
                "stoppedAt": _dt(sd.stopped),
                "updatedAt": _dt(sd.updated),
                "sourceServiceRevisions": [self._revision_counts(s, a) for a in sd.sources],
                "targetServiceRevision": self._revision_counts(s, sd.target),
                "status": sd.status,
                "statusReason": sd.status_reason,
                "lifecycleStage": self._lifecycle_stage(sd),
                "deploymentConfiguration": sd.config,
                "rollback": sd.rollback,
                "deploymentCircuitBreaker": {
                    "status": "DISABLED"
                    if not cb.get("enable")
                    else ("TRIGGERED" if first and first.rollout == "FAILED" else breaker),
                    "failureCount": first.failed if first else 0,
                    "threshold": self._threshold(first.desired if first else 0),
                },
                "alarms": (
                    {
                        "status": "MONITORING" if running else "MONITORING_COMPLETE",
                        "alarmNames": alarms.get("alarmNames", []),
                        "triggeredAlarmNames": [],
                    }
                    if alarms.get("enable")
                    else {"status": "DISABLED"}
                ),
            }
        )

    # ---------------------------------------------------------------- the service deployment API
    def list_service_deployments(
        self,
        key: str,
        status: list[str] | None,
        created_at: dict | None,
        next_token: str | None,
        max_results: int | None,
    ) -> dict | None:
        """ListServiceDeployments' answer, a page of 20 unless `max_results` (None: no such service)."""
        s = self._services.get(key)
        if s is None:
            return None
        statuses, created = status or [], created_at or {}
        after, before = _ts(created.get("after")), _ts(created.get("before"))
        sds = [
            sd
            for sd in s.sds
            if (not statuses or sd.status in statuses)
            and (after is None or sd.created >= after)
            and (before is None or sd.created <= before)
        ]
        start, size = int(next_token or 0), int(max_results or 20)
        briefs = [
            _clean(
                {
                    "serviceDeploymentArn": sd.arn,
                    "serviceArn": s.api.arn,
                    "clusterArn": s.api.cluster_arn,
                    "startedAt": _dt(sd.started),
                    "createdAt": _dt(sd.created),
                    "finishedAt": _dt(sd.finished),
                    "targetServiceRevisionArn": sd.target,
                    "status": sd.status,
                    "statusReason": sd.status_reason,
                }
            )
            for sd in sds[start : start + size]
        ]
        return _clean(
            {"serviceDeployments": briefs, "nextToken": str(start + size) if start + size < len(sds) else None}
        )

    def describe_service_deployments(self, arns: list[str]) -> dict:
        return {
            "serviceDeployments": [self._sd_view(self._sds[a]) for a in arns if a in self._sds],
            "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in self._sds],
        }

    def describe_service_revisions(self, arns: list[str]) -> dict:
        return {
            "serviceRevisions": [self._revisions[a] for a in arns if a in self._revisions],
            "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in self._revisions],
        }

    def stop_service_deployment(self, arn: str, stop_type: str | None) -> dict:
        """StopType ROLLBACK (the only one ECS accepts): roll back to the last completed revision."""
        sd = self._sds.get(arn)
        if sd is None:
            raise EcsError("ServiceDeploymentNotFoundException", f"Service deployment {arn} not found.")
        if (stop_type or "ROLLBACK") != "ROLLBACK":
            raise EcsError("InvalidParameterException", "The only supported stopType is ROLLBACK.")
        s, dep = sd.service, sd.deployment
        if sd.status not in ("PENDING", "IN_PROGRESS") or dep is not s.deployments[0]:
            raise EcsError("ConflictException", f"The service deployment {arn} is not in progress.")
        if s.last_completed is None or s.last_completed is dep:
            raise EcsError("InvalidParameterException", "There is no previous service revision to roll back to.")
        dep.rollout, dep.reason, dep.updated = "FAILED", "Service deployment stopped by StopServiceDeployment.", self._t
        self._rollback(s, dep, "Service deployment rolled back because of a StopServiceDeployment request.")
        self._reconcile(s)
        return {"serviceDeploymentArn": arn}

    # ---------------------------------------------------------------- where the model meets the API
    # Implemented by the adapter (moto_ecs.EcsSimulator); each is called under the lock, caught up with the clock.
    def _task_definition(self, ref: str) -> Any:
        """The task definition a family:revision or ARN names."""
        raise NotImplementedError

    def _start_service_task(self, s: _Service, td: Any, started_by: str) -> Any:
        """Start a task of service `s` (its scheduler's, for a deployment): the API's record of it."""
        raise NotImplementedError

    def _new_number(self) -> int:
        """A 19-digit number for a deployment or revision id."""
        raise NotImplementedError

    def _resolve_image(self, image: str) -> tuple[list[str], list[str]]:
        """Behaviour keys ("repository:tag") and digests for an image URI."""
        raise NotImplementedError

    def _attach_network(self, k: _Task) -> tuple[str, str, str] | None:
        """Give the task its address (see _pick_ip): (ip, attachment id, zone), or None without awsvpc."""
        raise NotImplementedError

    def _release_network(self, k: _Task) -> None:
        """The task has stopped: its network interface goes."""
        raise NotImplementedError

    def _register_target(self, tg_arn: str, ip: str, container_port: int | None) -> int | None:
        """Register ip in a target group (on container_port, else the group's); the port, or None: no such group."""
        raise NotImplementedError

    def _deregister_target(self, tg_arn: str, ip: str, port: int) -> bool:
        """Deregister ip from a target group; False if it was not registered there."""
        raise NotImplementedError

    def _put_log_events(self, region: str, group: str | None, stream: str, events: list[dict]) -> None:
        """Write log events to a CloudWatch Logs stream (nothing if the group does not exist)."""
        raise NotImplementedError

    def _publish_task(self, k: _Task) -> None:
        """Copy the task's state onto its API record (DescribeTasks answers from it)."""
        raise NotImplementedError

    def _publish_services(self) -> None:
        """Copy every service's deployments and counts onto its API record (DescribeServices answers from it)."""
        raise NotImplementedError
