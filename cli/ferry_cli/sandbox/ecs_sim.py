"""A small, believable Amazon ECS on top of moto, driven by simulated time.

moto's ECS only simulates API shapes: services never start tasks, update_service
adds no deployment, tasks go STOPPED after four describe calls and registered
load balancer targets are always healthy. This module patches moto (inside an
active ``mock_aws``) so that the sandbox sees what ECS really does: service
deployments that roll out, fail, trip the circuit breaker and roll back; tasks
that move PROVISIONING -> PENDING -> RUNNING -> STOPPED on the SimClock; target
health that is ``initial`` before it is ``healthy`` (or ``unhealthy``); migration
logs in CloudWatch Logs; and the service deployment API moto lacks.

State is advanced lazily: every patched call (and ``tick()``) first replays all
scheduled transitions up to ``clock.now()`` in time order, so jumping the clock
ten minutes ahead gives the same history as waiting ten minutes.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import itertools
import math
import re
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ecr.models import ecr_backends
from moto.ecs.exceptions import ECSException, InvalidParameterException, ServiceNotFoundException
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
from moto.ecs.models import Service as MotoService
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup, elbv2_backends
from moto.logs.models import logs_backends
from moto.moto_api._internal import mock_random

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
SERVICE_EXTRAS = ("deploymentConfiguration", "capacityProviderStrategy", "healthCheckGracePeriodSeconds",
                  "placementConstraints", "placementStrategy", "enableExecuteCommand")
IMAGE_RE = re.compile(r"^(?P<acct>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                      r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?$")
_MISSING = object()


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)


def _iso(t: float | None, millis: bool = True) -> str | None:
    if t is None:
        return None
    d = _dt(t)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z" if millis else d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _with_security_groups(net: dict | None) -> dict | None:
    """securityGroups is optional on AWS (the VPC's default group); moto raises KeyError without it."""
    net = copy.deepcopy(net) or None
    if net and "awsvpcConfiguration" in net:
        net["awsvpcConfiguration"].setdefault("securityGroups", [])
    return net


def _count(tasks: Any, *states: str) -> int:
    return sum(k.last in states for k in tasks)


class _Task:
    """Simulator state of one ECS task (the moto Task is its API view)."""

    def __init__(self, moto_task: Task, td: Any, cluster: str, purpose: str | None, behaviour: dict,
                 container: str, image_digests: dict, created: float) -> None:
        self.moto, self.td, self.cluster = moto_task, td, cluster
        self.arn, self.id = moto_task.task_arn, moto_task.task_arn.split("/")[-1]
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
        prefix = f"arn:aws:ecs:{moto_task.region_name}:{moto_task._account_id}:container/{cluster}/{self.id}"
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
    def __init__(self, moto_service: Any) -> None:
        self.moto = moto_service
        self.name, self.cluster = moto_service.name, moto_service.cluster_name
        self.key = f"{self.cluster}/{self.name}"
        self.deployments: list[_Deployment] = []  # [0] is PRIMARY
        self.sds: list[_ServiceDeployment] = []
        self.last_completed: _Deployment | None = None
        self.events: list[dict] = []
        self.deleted = False

    @property
    def config(self) -> dict:
        return getattr(self.moto, "deployment_configuration", None) or DEFAULT_DEPLOYMENT_CONFIGURATION

    @property
    def breaker(self) -> dict:
        return self.config.get("deploymentCircuitBreaker") or {}


class EcsSimulator:
    def __init__(self, clock: SimClock, *, account_id: str, region: str, behaviour: dict[str, dict] | None = None,
                 migration: dict | None = None, defaults: dict | None = None) -> None:
        self.clock, self.account_id, self.region = clock, account_id, region
        self.behaviour = behaviour or {}
        self.migration = migration or {}
        self.d = {**DEFAULTS, **(defaults or {})}
        self._lock = threading.RLock()
        self._busy = False
        self._t = clock.now()
        self._tls = threading.local()
        self._patches: list[tuple[Any, str, Any]] = []
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
                td = self._ecs.describe_task_definition(p.td)
                out[s.key] = {
                    "taskDefinition": p.td.split("/")[-1],
                    "images": {cd["name"]: cd["image"] for cd in td.container_definitions},
                    "desiredCount": s.moto.desired_count,
                    "runningCount": s.moto.running_count,
                    "deployments": [{"id": d.id, "status": d.status, "taskDefinition": d.td.split("/")[-1],
                                     "rolloutState": d.rollout, "runningCount": _count(d.tasks, "RUNNING"),
                                     "failedTasks": d.failed} for d in s.deployments],
                }
            return out

    def canary_tasks(self) -> int:
        with self._step():
            return sum(1 for k in self._tasks.values()
                       if k.service is None and k.purpose == "canary" and k.last != "STOPPED")

    def running_tasks(self, purpose: str) -> int:
        """Tasks started for `purpose` (migration, canary) that have not stopped yet."""
        with self._step():
            return sum(1 for k in self._tasks.values() if k.purpose == purpose and k.last != "STOPPED")

    def task_count(self, purpose: str) -> int:
        with self._lock:
            return self._purposes.get(purpose, 0)

    # ---------------------------------------------------------------- engine
    @contextmanager
    def _step(self) -> Iterator[float]:
        """Hold the lock, catch up with the clock, and refresh API views on the way out."""
        with self._lock:
            if self._busy:  # re-entered from inside the simulator (e.g. our own register_targets)
                yield self._t
                return
            self._busy = True
            try:
                self._advance(self.clock.now())
                yield self._t
                self._refresh()
            finally:
                self._busy = False

    def _advance(self, now: float) -> None:
        """Replay every scheduled transition up to `now`, earliest first."""
        while True:
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
                grace = getattr(k.service.moto, "health_check_grace_period_seconds", None) or 0
                k.schedule.append((max(when + self.d["replaceUnhealthySeconds"], k.started + grace), "KILL"))
                k.schedule.sort(key=lambda x: x[0])
            self._touch(k)
            return  # a health change is no task state change event
        elif action == "KILL":
            reason = (f"Task failed ELB health checks in (target-group {k.targets[0][0]})" if k.targets
                      else "Task failed container health checks")
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
        self._release_eni(k)
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
            for k in live[p.desired:]:
                self._begin_stop(k, "ServiceSchedulerInitiated", f"Scaling activity initiated by (deployment {p.id})")
            live = live[:p.desired]
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
        be, m = self._ecs, s.moto
        td = be.describe_task_definition(dep.td)
        cps = getattr(m, "capacity_provider_strategy", None)
        net = _with_security_groups(m.network_configuration)
        tags = list(m.tags) if m.propagate_tags == "SERVICE" else []
        mt = Task(cluster=be.clusters[s.cluster], task_definition=td, container_instance_arn=None,
                  resource_requirements=be._calculate_task_resource_requirements(td), backend=be,
                  group=f"service:{s.name}", launch_type=m.launch_type or "", started_by=dep.id, tags=tags,
                  networking_configuration=net, platform_version=m.platform_version,
                  capacity_provider_name=cps[0]["capacityProvider"] if cps else None)
        be.tasks.setdefault(s.cluster, {})[mt.task_arn] = mt
        k = self._adopt(mt, td, s, dep, backdate)
        dep.tasks.append(k)
        return k

    def _new_deployment(self, s: _Service, td: str, rollback_to: _Deployment | None = None,
                        reason: str | None = None) -> _Deployment:
        t = self._t
        old = s.deployments[0] if s.deployments else None
        if old:
            old.status = "ACTIVE"
            if old.rollout == "IN_PROGRESS" and rollback_to is None and old.sd.status in (
                    "PENDING", "IN_PROGRESS", "ROLLBACK_IN_PROGRESS"):
                old.sd.status, old.sd.stopped, old.sd.updated = "STOPPED", t, t
                old.sd.status_reason = "Superseded by a newer service deployment."
        dep_id = f"ecs-svc/{mock_random.randint(10 ** 18, 10 ** 19 - 1)}"
        revision = rollback_to.revision if rollback_to else self._new_revision(s, td)
        dep = _Deployment(dep_id, td, revision, s.moto.desired_count, t, rollback=rollback_to is not None)
        if rollback_to is not None and old is not None:
            dep.sd = old.sd  # a rollback belongs to the service deployment it undoes
        else:
            sources = list(dict.fromkeys(d.revision for d in s.deployments
                                         if any(k.last != "STOPPED" for k in d.tasks)))
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
        m = s.moto
        arn = (f"arn:aws:ecs:{self.region}:{self.account_id}:service-revision/{s.cluster}/{s.name}/"
               f"{mock_random.randint(10 ** 18, 10 ** 19 - 1)}")
        td = self._ecs.describe_task_definition(td_arn)
        images = []
        for cd in td.container_definitions:
            digest = next(iter(self._resolve_image(cd["image"])[1]), None)
            images.append(_clean({"containerName": cd["name"], "image": cd["image"], "imageDigest": digest}))
        self._revisions[arn] = _clean({
            "serviceRevisionArn": arn, "serviceArn": m.arn, "clusterArn": m.cluster_arn, "taskDefinition": td_arn,
            "capacityProviderStrategy": getattr(m, "capacity_provider_strategy", None), "launchType": m.launch_type,
            "platformVersion": m.platform_version, "loadBalancers": copy.deepcopy(m.load_balancers),
            "networkConfiguration": copy.deepcopy(m.network_configuration) or None,
            "containerImages": images, "createdAt": _dt(self._t)})
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
        if (dep is s.deployments[0] and dep.rollout == "IN_PROGRESS" and cb.get("enable")
                and dep.failed >= self._threshold(dep.desired)):
            self._fail(s, dep, bool(cb.get("rollback")))

    @staticmethod
    def _threshold(desired: int) -> int:
        return max(3, min(200, math.ceil(desired * 0.5)))

    def _fail(self, s: _Service, dep: _Deployment, rollback: bool) -> None:
        t = self._t
        dep.rollout, dep.updated = "FAILED", t
        dep.reason = "ECS deployment circuit breaker: tasks failed to start."
        self._service_event(s, f"(service {s.name}) (deployment {dep.id}) deployment failed: tasks failed to start.")
        self._emit_deployment(s, dep, "SERVICE_DEPLOYMENT_FAILED",
                              "ECS deployment circuit breaker: task failed to start.", "ERROR")
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
        self._new_deployment(s, target.td, rollback_to=target,
                             reason=f"ECS deployment circuit breaker: rolling back to deploymentId {target.id}.")

    # ---------------------------------------------------------------- tasks, networking, logs
    def _adopt(self, mt: Task, td: Any, s: _Service | None = None, dep: _Deployment | None = None,
               backdate: bool = False) -> _Task:
        """Take over a moto Task: behaviour, IP, schedule, API view."""
        tags = {x.get("key"): x.get("value") for x in (mt.tags or [])}
        purpose = tags.get(PURPOSE_TAG)
        behaviour, container, digests = self._behaviour(td, purpose, mt.overrides)
        k = _Task(mt, td, mt.cluster_name, purpose, behaviour, container, digests, self._t)
        k.service, k.deployment = s, dep
        if mt.launch_type == "FARGATE" and mt.platform_version in (None, "LATEST"):
            # Fargate resolves LATEST to a version ("LATEST ... 1.4.0" for Linux: ECS developer guide, "Fargate
            # Linux platform versions"); DescribeTasks and the task events name the version.
            mt.platform_version = "1.4.0"
        if backdate:  # a service that already existed: its tasks started long ago
            k.created -= float(behaviour.get("startSeconds", self.d["startSeconds"])) + self.d["healthyAfterSeconds"] + 1
        if purpose:
            self._purposes[purpose] = self._purposes.get(purpose, 0) + 1
        self._assign_ip(k)
        k.schedule = self._plan(k)
        self._tasks[k.arn] = k
        self._live[k] = None
        self._changed(k)
        return k

    def _behaviour(self, td: Any, purpose: str | None, overrides: dict | None = None) -> tuple[dict, str, dict]:
        """Behaviour of the first essential container whose image has an entry; migrations use `migration`.

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
                    if key in self.behaviour:
                        found, container = dict(self.behaviour[key]), cd["name"]
                        break
        if purpose == "migration":
            kept = {k: v for k, v in found.items() if k in ("startSeconds", "stopCode", "stoppedReason")}
            found = {**kept, **self.migration}
            names = {cd["name"] for cd in td.container_definitions}
            container = next((o["name"] for o in (overrides or {}).get("containerOverrides") or []
                              if o.get("command") and o.get("name") in names), container)
        return found, container, digests

    def _resolve_image(self, image: str) -> tuple[list[str], list[str]]:
        """Behaviour keys ("repository:tag") and digests for an image URI; digests map back through ECR."""
        m = IMAGE_RE.match(image)
        if not m:
            last = image.rsplit("/", 1)[-1]
            return ([image] if ":" in last or "@" in last else [image, f"{image}:latest"]), []
        repo, tag, digest = m["repo"], m["tag"], m["digest"]
        keys = [f"{repo}:{tag}"] if tag else []
        if tag and not digest:  # ECS pulls the tag and reports the digest it got (DescribeTasks, task events)
            repository = ecr_backends[m["acct"]][m["region"]].repositories.get(repo)
            digest = next((img.get_image_digest() for img in (repository.images if repository else [])
                           if tag in img.image_tags), None)
            if digest is None:
                return keys, []
        if digest:
            repository = ecr_backends[m["acct"]][m["region"]].repositories.get(repo)
            for img in (repository.images if repository else []):
                if img.get_image_digest() == digest:
                    keys += [f"{repo}:{t}" for t in img.image_tags]
            keys.append(f"{repo}@{digest}")
            return keys, [digest]
        return keys or [f"{repo}:latest"], []

    def _assign_ip(self, k: _Task) -> None:
        """moto gives awsvpc tasks a random 10.x.y.z; use a free address inside the task's subnet instead."""
        att = next((a for a in k.moto.attachments if a.get("type") == "ElasticNetworkInterface"), None)
        if att is None:
            return
        details = {x["name"]: x for x in att["details"]}
        eni = self._ec2.get_network_interface(details["networkInterfaceId"]["value"])
        # AWS reserves the first addresses of a subnet; prefer never-used addresses, then those of stopped tasks
        hosts = [str(h) for h in itertools.islice(ipaddress.ip_network(eni.subnet.cidr_block).hosts(), 3, 4096)]
        ip = next((h for h in hosts if h not in self._by_ip), None) or next(
            (h for h in hosts if self._by_ip[h].last == "STOPPED"), eni.private_ip_address)
        domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        dns = f"ip-{ip.replace('.', '-')}.{domain}"
        eni.private_ip_address, eni.private_dns_name = ip, dns
        eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": ip, "PrivateDnsName": dns}]
        details["privateIPv4Address"]["value"], details["privateDnsName"]["value"] = ip, dns
        k.ip, k.attachment_id, k.zone = ip, att["id"], eni.subnet.availability_zone
        self._by_ip[ip] = k

    def _release_eni(self, k: _Task) -> None:
        for att in k.moto.attachments:
            if att.get("type") == "ElasticNetworkInterface" and att.get("status") != "DELETED":
                att["status"] = "DELETED"
                eni_id = next(x["value"] for x in att["details"] if x["name"] == "networkInterfaceId")
                self._ec2.enis.pop(eni_id, None)

    def _register(self, k: _Task) -> None:
        """ECS registers a service task's IP in the service's target groups once it is RUNNING."""
        if k.service is None or not k.ip:
            return
        for lb in k.service.moto.load_balancers or []:
            tg = self._elb.target_groups.get(lb.get("targetGroupArn"))
            if tg is not None:
                port = int(lb.get("containerPort") or tg.port or 80)
                tg.register([{"Id": k.ip, "Port": port}])
                self._reg_at[(tg.arn, k.ip)] = k.started
                k.targets.append((tg.arn, port))

    def _deregister(self, k: _Task) -> bool:
        drained = False
        for arn, port in k.targets:
            tg = self._elb.target_groups.get(arn)
            if tg is not None and k.ip in tg.targets:
                tg.deregister([{"Id": k.ip, "Port": port}])
                drained = True
        return drained

    def _write_logs(self, k: _Task) -> None:
        """Behaviour/migration `logLines` go to the container's awslogs stream when the task stops."""
        lines = k.behaviour.get("logLines")
        cd = next((c for c in k.td.container_definitions if c["name"] == k.container), None)
        lc = (cd or {}).get("logConfiguration") or {}
        if not lines or not k.started or lc.get("logDriver") != "awslogs":
            return
        opts = lc.get("options") or {}
        group = logs_backends[self.account_id][opts.get("awslogs-region", self.region)].groups.get(opts.get("awslogs-group"))
        if group is None:
            return
        prefix = opts.get("awslogs-stream-prefix")
        stream = f"{prefix}/{k.container}/{k.id}" if prefix else k.id
        if stream not in group.streams:
            group.create_log_stream(stream)
        span = (self._t - k.started) / (len(lines) + 1)
        # straight to the stream: the backend refuses events older than 14 days of *wall* time
        group.streams[stream].put_log_events(
            [{"timestamp": int((k.started + span * (i + 1)) * 1000), "message": str(line)} for i, line in enumerate(lines)])

    # ---------------------------------------------------------------- views and events
    def _containers(self, k: _Task) -> list[dict]:
        out = []
        for cd in k.td.container_definitions:
            name = cd["name"]
            status = "STOPPED" if k.containers_stopped else ("RUNNING" if k.started else "PENDING")
            health = k.health if cd.get("healthCheck") and k.started else "UNKNOWN"
            out.append(_clean({
                "containerArn": k.container_arns[name], "taskArn": k.arn, "name": name, "image": cd["image"],
                "imageDigest": k.digests.get(name), "lastStatus": status, "exitCode": k.exit_codes.get(name),
                "reason": k.container_reason, "healthStatus": health, "cpu": str(cd.get("cpu", 0)),
                "memory": str(cd["memory"]) if cd.get("memory") else None,
                "networkInterfaces": [{"attachmentId": k.attachment_id, "privateIpv4Address": k.ip}] if k.ip else [],
            }))
        return out

    def _touch(self, k: _Task) -> None:
        """Copy simulator state onto the moto Task, which moto's serializer turns into the API response."""
        mt = k.moto
        mt.last_status, mt.desired_status = k.last, k.desired
        mt.created_at, mt.started_at = _dt(k.created), _dt(k.started)
        mt.stopping_at, mt.stopped_at, mt.execution_stopped_at = _dt(k.stopping), _dt(k.stopped), _dt(k.stopped)
        mt.pull_started_at = _dt(k.created + 1) if k.last != "PROVISIONING" else None
        mt.stop_code, mt.stopped_reason = k.stop_code, k.stop_reason
        mt.health_status = k.health if k.has_health_check() and k.started else "UNKNOWN"
        mt.containers = self._containers(k)
        mt.cpu, mt.memory = k.td.cpu, k.td.memory
        mt.version = k.version
        mt.connectivity = "CONNECTED" if k.started else None

    def _changed(self, k: _Task) -> None:
        k.version += 1
        self._touch(k)
        self._emit("ECS Task State Change", [k.arn], self._task_event(k))

    def _task_event(self, k: _Task) -> dict:
        """The detail of ECS's Task State Change event, as AWS publishes it (tests/fixtures/aws/ecs, checked by
        tests/sandbox/test_event_shapes.py): not DescribeTasks' view. The attachment's type is `eni`, each
        container of the task is listed in overrides.containerOverrides, and no health status is given ("The
        health status of the event isn't provided in the task state change event", ECS developer guide)."""
        mt = k.moto
        pulled = k.created + 1 if k.last != "PROVISIONING" else None
        attachments = [{**copy.deepcopy(a), "type": "eni" if a.get("type") == "ElasticNetworkInterface" else a.get("type"),
                        "details": [d for d in a.get("details", []) if d.get("name") != "privateDnsName"]}
                       for a in mt.attachments]
        named = {o.get("name"): o for o in (mt.overrides or {}).get("containerOverrides") or []}
        overrides = {**copy.deepcopy(mt.overrides or {}), "containerOverrides": [
            copy.deepcopy(named.get(cd["name"]) or {"name": cd["name"]}) for cd in k.td.container_definitions]}
        containers = []
        for view in self._containers(k):
            view = {key: value for key, value in view.items() if key != "healthStatus"}
            if k.started:
                view["runtimeId"] = k.runtime_ids[view["name"]]
            containers.append(view)
        return _clean({
            "attachments": attachments, "availabilityZone": k.zone, "clusterArn": mt.cluster_arn,
            "containers": containers, "createdAt": _iso(k.created), "launchType": mt.launch_type or None,
            "cpu": k.td.cpu, "memory": k.td.memory, "desiredStatus": k.desired, "group": mt.group,
            "lastStatus": k.last, "overrides": overrides, "startedBy": mt.started_by or None, "taskArn": k.arn,
            "taskDefinitionArn": k.td.arn, "updatedAt": _iso(self._t), "version": k.version,
            "platformVersion": mt.platform_version, "capacityProviderName": mt.capacity_provider_name,
            "connectivity": mt.connectivity, "connectivityAt": _iso(pulled - 0.5) if pulled else None,
            "pullStartedAt": _iso(pulled), "pullStoppedAt": _iso(k.started - 1) if k.started else None,
            "startedAt": _iso(k.started), "stoppingAt": _iso(k.stopping), "stoppedAt": _iso(k.stopped),
            "executionStoppedAt": _iso(k.stopped), "stopCode": k.stop_code, "stoppedReason": k.stop_reason,
        })

    def _emit(self, detail_type: str, resources: list[str], detail: dict) -> None:
        self._events.append({"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.ecs",
                             "account": self.account_id, "time": _iso(self._t, millis=False), "region": self.region,
                             "resources": resources, "detail": detail})

    def _emit_deployment(self, s: _Service, dep: _Deployment, name: str, reason: str, etype: str = "INFO") -> None:
        self._emit("ECS Deployment State Change", [s.moto.arn], {  # updatedAt in whole seconds, as AWS's samples
            "eventType": etype, "eventName": name, "deploymentId": dep.id, "updatedAt": _iso(self._t, millis=False),
            "reason": reason})

    def _service_event(self, s: _Service, message: str) -> None:
        s.events = [{"id": str(uuid.uuid4()), "createdAt": _dt(self._t), "message": message}] + s.events[:99]

    def _refresh(self) -> None:
        """Write deployments and counts onto moto's Service objects (describe_services serializes those)."""
        for s in self._services.values():
            if s.deleted or not s.deployments:
                continue
            m, p = s.moto, s.deployments[0]
            m.task_definition = p.td
            tasks = [k for d in s.deployments for k in d.tasks]
            m.running_count, m.pending_count = _count(tasks, "RUNNING"), _count(tasks, "PROVISIONING", "PENDING")
            m.deployments = [self._deployment_view(s, d) for d in s.deployments]
            m.current_service_deployment = p.sd.arn
            m.events = list(s.events)

    def _deployment_view(self, s: _Service, d: _Deployment) -> dict:
        m = s.moto
        return _clean({
            "id": d.id, "status": d.status, "taskDefinition": d.td, "desiredCount": d.desired,
            "pendingCount": _count(d.tasks, "PROVISIONING", "PENDING"), "runningCount": _count(d.tasks, "RUNNING"),
            "failedTasks": d.failed,
            "createdAt": _dt(d.created), "updatedAt": _dt(d.updated), "launchType": m.launch_type,
            "capacityProviderStrategy": getattr(m, "capacity_provider_strategy", None),
            "platformVersion": m.platform_version, "networkConfiguration": m.network_configuration or None,
            "rolloutState": d.rollout, "rolloutStateReason": d.reason})

    def _revision_counts(self, s: _Service, arn: str) -> dict:
        tasks = [k for d in s.deployments if d.revision == arn for k in d.tasks]
        primary = s.deployments[0] if s.deployments else None
        return {"arn": arn, "requestedTaskCount": primary.desired if primary and primary.revision == arn else 0,
                "runningTaskCount": _count(tasks, "RUNNING"), "pendingTaskCount": _count(tasks, "PROVISIONING", "PENDING")}

    def _sd_view(self, sd: _ServiceDeployment) -> dict:
        s = sd.service
        cb, alarms = sd.config.get("deploymentCircuitBreaker") or {}, sd.config.get("alarms") or {}
        first = sd.origin
        running = sd.status in ("PENDING", "IN_PROGRESS")
        breaker = "MONITORING" if running else "MONITORING_COMPLETE"
        return _clean({
            "serviceDeploymentArn": sd.arn, "serviceArn": s.moto.arn, "clusterArn": s.moto.cluster_arn,
            "createdAt": _dt(sd.created), "startedAt": _dt(sd.started), "finishedAt": _dt(sd.finished),
            "stoppedAt": _dt(sd.stopped), "updatedAt": _dt(sd.updated),
            "sourceServiceRevisions": [self._revision_counts(s, a) for a in sd.sources],
            "targetServiceRevision": self._revision_counts(s, sd.target), "status": sd.status,
            "statusReason": sd.status_reason, "lifecycleStage": self._lifecycle_stage(sd),
            "deploymentConfiguration": sd.config, "rollback": sd.rollback,
            "deploymentCircuitBreaker": {
                "status": "DISABLED" if not cb.get("enable") else (
                    "TRIGGERED" if first and first.rollout == "FAILED" else breaker),
                "failureCount": first.failed if first else 0, "threshold": self._threshold(first.desired if first else 0)},
            "alarms": ({"status": "MONITORING" if running else "MONITORING_COMPLETE",
                        "alarmNames": alarms.get("alarmNames", []), "triggeredAlarmNames": []}
                       if alarms.get("enable") else {"status": "DISABLED"}),
        })

    # ---------------------------------------------------------------- moto plumbing
    @property
    def _ecs(self) -> EC2ContainerServiceBackend:
        return ecs_backends[self.account_id][self.region]

    @property
    def _elb(self) -> ELBv2Backend:
        return elbv2_backends[self.account_id][self.region]

    @property
    def _ec2(self) -> Any:
        return ec2_backends[self.account_id][self.region]

    def _now(self) -> float:
        return self._t if self._busy else self.clock.now()

    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self._patches.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, new)

    def _guard(self, orig: Callable, body: Callable | None = None) -> Callable:
        """A backend method that, for our account and region, first catches up with the clock (under the lock)."""
        def method(be: Any, *args: Any, **kwargs: Any) -> Any:
            if be.account_id != self.account_id or be.region_name != self.region:
                return orig(be, *args, **kwargs)
            with self._step():
                return body(orig, be, *args, **kwargs) if body else orig(be, *args, **kwargs)
        return method

    def install(self) -> None:
        """Patch moto; call inside an active mock_aws. Undo with uninstall()."""
        if self._patches:
            return
        E, R, TG, L = EC2ContainerServiceBackend, EC2ContainerServiceResponse, FakeTargetGroup, ELBv2Backend
        for name in ("create_service", "update_service", "delete_service", "run_task", "describe_tasks", "list_tasks",
                     "stop_task", "describe_services"):
            self._patch(E, name, self._guard(getattr(E, name), getattr(self, f"_ecs_{name}", None)))
        for name in ("register_targets", "deregister_targets", "describe_target_health"):
            self._patch(L, name, self._guard(getattr(L, name), getattr(self, f"_elb_{name}", None)))
        self._patch(E, "_calculate_task_resource_requirements",
                    staticmethod(self._task_level_memory(E._calculate_task_resource_requirements)))
        self._patch(R, "create_service", self._keep_create_service_params(R.create_service))
        for name in ("list_service_deployments", "describe_service_deployments", "stop_service_deployment",
                     "describe_service_revisions"):
            # a plain function: moto's dispatcher only looks for functions on the response class
            self._patch(R, name, lambda resp, n=name: getattr(self, f"_api_{n}")(resp))
        self._patch(MotoService, "arn", property(self._service_arn))
        # moto sets private_dns_name only on ENIs in VPCs with DNS hostnames, but Task() reads it regardless
        self._patch(NetworkInterface, "private_dns_name", None)
        self._patch(TG, "register", self._record_registration(TG.register, registering=True))
        self._patch(TG, "deregister", self._record_registration(TG.deregister, registering=False))
        self._patch(TG, "health_for", self._simulated_health(TG.health_for))

    def uninstall(self) -> None:
        for owner, name, raw in reversed(self._patches):
            if raw is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, raw)
        self._patches = []

    # ---- moto workarounds
    @staticmethod
    def _service_arn(m: Any) -> str:
        """The service's ARN in the format it was created with: "Existing resources keep their ARN" when the
        account's setting changes (ECS developer guide, service-arn-migration.html); moto recomputes it."""
        prefix = f"arn:aws:ecs:{m.region_name}:{m._account_id}:service"
        short = getattr(m, "arn_format", "long") == "short"
        return f"{prefix}/{m.name}" if short else f"{prefix}/{m.cluster_name}/{m.name}"

    @staticmethod
    def _task_level_memory(orig: Callable) -> Callable:
        """Fargate task definitions may size memory at task level only; moto sums container memory (None + int)."""
        def calc(td: Any) -> dict:
            patched = copy.copy(td)
            patched.container_definitions = [
                cd if any(x in cd for x in ("memory", "Memory", "memoryReservation", "MemoryReservation"))
                else {**cd, "memory": 0} for cd in td.container_definitions]
            req = orig(patched)
            req["MEMORY"] = req["MEMORY"] or int(td.memory or 0)
            return req
        return calc

    def _keep_create_service_params(self, orig: Callable) -> Callable:
        """moto's CreateService handler drops these parameters; pass them to the backend on the side."""
        def create_service(resp: Any) -> Any:
            self._tls.extras = {k: resp._get_param(k) for k in SERVICE_EXTRAS}
            try:
                return orig(resp)
            finally:
                self._tls.extras = {}
        return create_service

    def _fix_service_attrs(self, m: Any) -> None:
        m.deployment_configuration = {**copy.deepcopy(DEFAULT_DEPLOYMENT_CONFIGURATION),
                                      **(getattr(m, "deployment_configuration", None) or {})}
        if getattr(m, "capacity_provider_strategy", None):
            m.launch_type = None

    # ---- ECS backend methods (called under the lock, caught up with the clock)
    def _ecs_create_service(self, orig: Callable, be: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("network_configuration"):
            kwargs["network_configuration"] = _with_security_groups(kwargs["network_configuration"])
        m = orig(be, *args, **kwargs)
        # A service keeps the ARN format it was created with (moto's changes with the account setting).
        m.arn_format = "long" if be.enable_long_arn_for_name(name="serviceLongArnFormat") else "short"
        for key, value in (getattr(self._tls, "extras", None) or {}).items():
            if value is not None:
                setattr(m, re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(), value)
        self._fix_service_attrs(m)
        m.created_at = _dt(self._t)
        if m.task_definition and m.deployment_controller.get("type", "ECS") == "ECS":
            s = self._services[f"{m.cluster_name}/{m.name}"] = _Service(m)
            mark = len(self._events)
            p = self._new_deployment(s, m.task_definition)
            for _ in range(m.desired_count):
                self._launch(s, p, backdate=True)
            self._advance(self._t)  # replay the backdated tasks' history up to now ...
            if p.rollout == "IN_PROGRESS":
                self._complete(s, p)
            del self._events[mark:]  # ... without telling anyone: the service already existed
        return m

    def _ecs_update_service(self, orig: Callable, be: Any, props: dict) -> Any:
        cluster = be._get_cluster(props.get("cluster", "default")).name
        s = self._services.get(f"{cluster}/{props['service'].split('/')[-1]}")
        m = orig(be, dict(props))  # moto pops from the dict it is given
        self._fix_service_attrs(m)
        if s is None or s.deleted:
            return m
        p = s.deployments[0]
        td = be.describe_task_definition(props["task_definition"]).arn if props.get("task_definition") else p.td
        new_config = any(props.get(x) is not None for x in
                         ("network_configuration", "load_balancers", "capacity_provider_strategy", "platform_version"))
        if td != p.td or props.get("force_new_deployment") or new_config:
            self._new_deployment(s, td)
        s.deployments[0].desired = m.desired_count
        self._reconcile(s)
        return m

    def _ecs_delete_service(self, orig: Callable, be: Any, cluster_name: str, service_name: str, force: bool) -> Any:
        m = orig(be, cluster_name, service_name, force)
        s = self._services.get(f"{m.cluster_name}/{m.name}")
        if s:
            for k in [k for d in s.deployments for k in d.tasks]:
                self._begin_stop(k, "ServiceSchedulerInitiated", "Service deleted")
            s.deleted = True
        return m

    def _ecs_run_task(self, orig: Callable, be: Any, cluster_str: str, task_definition_str: str, count: int,
                      overrides: Any, started_by: str, tags: Any, launch_type: str | None,
                      networking_configuration: Any = None, group: str | None = None,
                      platform_version: str | None = None, capacity_provider_strategy: Any = None) -> list:
        tasks = orig(be, cluster_str, task_definition_str, count, overrides, started_by, tags, launch_type,
                     _with_security_groups(networking_configuration), group, platform_version, capacity_provider_strategy)
        td = be.describe_task_definition(task_definition_str)
        for mt in tasks:
            self._adopt(mt, td)
        return tasks

    def _ecs_describe_tasks(self, orig: Callable, be: Any, cluster_str: str, tasks: list[str]) -> list:
        """moto's version advances a 'STOPPED after four describe calls' state machine; ours only reads."""
        be._get_cluster(cluster_str)
        if not tasks:
            raise InvalidParameterException("Tasks cannot be empty.")
        wanted = {t.split("/")[-1] for t in tasks}
        return [mt for ct in be.tasks.values() for arn, mt in ct.items() if arn.split("/")[-1] in wanted]

    def _ecs_list_tasks(self, orig: Callable, be: Any, cluster_str: str | None = None, container_instance: str | None = None,
                        family: str | None = None, started_by: str | None = None, service_name: str | None = None,
                        desiredStatus: str | None = None) -> list:
        """Adds the serviceName filter moto ignores, and ECS's default desiredStatus=RUNNING."""
        found = orig(be, cluster_str, container_instance, family, started_by, None, desiredStatus or "RUNNING")
        if service_name:
            found = [mt for mt in found if mt.group == f"service:{service_name.split('/')[-1]}"]
        return found

    def _ecs_stop_task(self, orig: Callable, be: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        """The task goes STOPPING, then STOPPED after stopSeconds (after drainSeconds first if ECS registered it)."""
        cluster = be._get_cluster(cluster_str).name
        k = next((k for k in self._tasks.values() if k.cluster == cluster and k.id == task_str.split("/")[-1]), None)
        if k is None:
            return orig(be, cluster_str, task_str, reason)
        self._begin_stop(k, "UserInitiated", reason or "Task stopped by user")
        if k.service:
            self._reconcile(k.service)  # ECS replaces a stopped service task
        return k.moto

    # ---- ELBv2
    def _elb_describe_target_health(self, orig: Callable, be: Any, target_group_arn: str, targets: list) -> list:
        """Without a target list, ELB also reports the targets that are still draining."""
        tg = be.target_groups.get(target_group_arn)
        if not targets and tg is not None:
            targets = list(tg.targets.values()) + [
                {"Id": ip, "Port": port} for (arn, ip), (t, port) in self._dereg_at.items()
                if arn == tg.arn and ip not in tg.targets and self._t < t + self.d["drainSeconds"]]
        return orig(be, target_group_arn, targets)

    def _record_registration(self, orig: Callable, registering: bool) -> Callable:
        """Remember when each target was (de)registered: health starts `initial`, draining lasts drainSeconds."""
        def method(tg: Any, targets: list[dict]) -> None:
            ports = {t["Id"]: tg.targets.get(t["Id"], {}).get("Port", t.get("Port", tg.port)) for t in targets}
            orig(tg, targets)
            for target_id, port in ports.items():
                if registering:
                    self._reg_at[(tg.arn, target_id)] = self._now()
                    self._dereg_at.pop((tg.arn, target_id), None)
                else:
                    self._dereg_at[(tg.arn, target_id)] = (self._now(), port)
        return method

    def _simulated_health(self, orig: Callable) -> Callable:
        """Targets whose IP belongs to a simulated task get that task's health; other targets keep moto's."""
        def health_for(tg: Any, target: dict, ec2_backend: Any) -> Any:
            k = self._by_ip.get(target["Id"])
            if k is None or f":{self.region}:{self.account_id}:" not in tg.arn:
                return orig(tg, target, ec2_backend)
            with self._step():
                state = self._target_state(tg, target["Id"], k)
            if state is None:
                return orig(tg, target, ec2_backend)
            port = tg.targets.get(target["Id"], {}).get("Port") or target.get("Port") or tg.port
            return FakeHealthStatus(target["Id"], port, tg.health_check_port, *state)
        return health_for

    def _target_state(self, tg: Any, ip: str, k: _Task) -> tuple[str, str | None, str | None] | None:
        now, key = self._t, (tg.arn, ip)
        if ip in tg.targets:
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

    # ---- the service deployment API (botocore has it, moto 5.2.5 does not)
    def _api_list_service_deployments(self, resp: Any) -> ActionResult:
        with self._step():
            cluster = resp.ecs_backend._get_cluster(resp._get_param("cluster") or "default").name
            s = self._services.get(f"{cluster}/{(resp._get_param('service') or '').split('/')[-1]}")
            if s is None:
                raise ServiceNotFoundException()
            statuses, created = resp._get_param("status") or [], resp._get_param("createdAt") or {}
            after, before = _ts(created.get("after")), _ts(created.get("before"))
            sds = [sd for sd in s.sds if (not statuses or sd.status in statuses)
                   and (after is None or sd.created >= after) and (before is None or sd.created <= before)]
            start, size = int(resp._get_param("nextToken") or 0), int(resp._get_param("maxResults") or 20)
            briefs = [_clean({"serviceDeploymentArn": sd.arn, "serviceArn": s.moto.arn, "clusterArn": s.moto.cluster_arn,
                              "startedAt": _dt(sd.started), "createdAt": _dt(sd.created), "finishedAt": _dt(sd.finished),
                              "targetServiceRevisionArn": sd.target, "status": sd.status, "statusReason": sd.status_reason})
                      for sd in sds[start:start + size]]
            return ActionResult(_clean({"serviceDeployments": briefs,
                                        "nextToken": str(start + size) if start + size < len(sds) else None}))

    def _api_describe_service_deployments(self, resp: Any) -> ActionResult:
        with self._step():
            arns = resp._get_param("serviceDeploymentArns") or []
            return ActionResult({"serviceDeployments": [self._sd_view(self._sds[a]) for a in arns if a in self._sds],
                                 "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in self._sds]})

    def _api_describe_service_revisions(self, resp: Any) -> ActionResult:
        with self._step():
            arns = resp._get_param("serviceRevisionArns") or []
            return ActionResult({"serviceRevisions": [self._revisions[a] for a in arns if a in self._revisions],
                                 "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a not in self._revisions]})

    def _api_stop_service_deployment(self, resp: Any) -> ActionResult:
        """StopType ROLLBACK (the only one ECS accepts): roll back to the last completed revision."""
        with self._step():
            arn = resp._get_param("serviceDeploymentArn")
            sd = self._sds.get(arn)
            if sd is None:
                raise ECSException("ServiceDeploymentNotFoundException", f"Service deployment {arn} not found.")
            if (resp._get_param("stopType") or "ROLLBACK") != "ROLLBACK":
                raise InvalidParameterException("The only supported stopType is ROLLBACK.")
            s, dep = sd.service, sd.deployment
            if sd.status not in ("PENDING", "IN_PROGRESS") or dep is not s.deployments[0]:
                raise ECSException("ConflictException", f"The service deployment {arn} is not in progress.")
            if s.last_completed is None or s.last_completed is dep:
                raise InvalidParameterException("There is no previous service revision to roll back to.")
            dep.rollout, dep.reason, dep.updated = "FAILED", "Service deployment stopped by StopServiceDeployment.", self._t
            self._rollback(s, dep, "Service deployment rolled back because of a StopServiceDeployment request.")
            self._reconcile(s)
            return ActionResult({"serviceDeploymentArn": arn})


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)
