"""The ECS model (ecs_model) on moto: the adapter between the two.

moto's ECS only simulates API shapes: services never start tasks, update_service
adds no deployment, tasks go STOPPED after four describe calls and registered
load balancer targets are always healthy. `EcsSimulator.install()` patches moto
(inside an active ``mock_aws``) so that the sandbox sees what the model does:
each ECS and ELBv2 backend call for the simulator's account and region first
catches the model up with the clock, under its lock; ECS calls are forwarded
to the model (`service_created`, `task_started`, ...), the model's state is
published onto moto's Task and Service objects, which moto's serializer turns
into the API's answers, and target health comes from the model. The service
deployment API, which moto 5.2.5 lacks, answers from the model.

It also works around what moto gets wrong on its own (each method says how):
the service ARN format, task-level memory, CreateService's dropped
parameters, optional security groups, ENI DNS names and addresses, ListTasks'
serviceName filter and default desiredStatus, and DescribeTasks' side effect.

Everything here touches moto's internals; the model itself imports nothing
from moto.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any, Callable

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

from .ecs_model import DEFAULT_DEPLOYMENT_CONFIGURATION, EcsError, EcsModel, _count, _dt, _Service, _Task

SERVICE_EXTRAS = (
    "deploymentConfiguration",
    "capacityProviderStrategy",
    "healthCheckGracePeriodSeconds",
    "placementConstraints",
    "placementStrategy",
    "enableExecuteCommand",
)
IMAGE_RE = re.compile(
    r"^(?P<acct>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?$"
)
_MISSING = object()


def _with_security_groups(net: dict | None) -> dict | None:
    """securityGroups is optional on AWS (the VPC's default group); moto raises KeyError without it."""
    net = copy.deepcopy(net) or None
    if net and "awsvpcConfiguration" in net:
        net["awsvpcConfiguration"].setdefault("securityGroups", [])
    return net


def _fargate_platform(mt: Task) -> None:
    """Fargate resolves LATEST to a version ("LATEST ... 1.4.0" for Linux: ECS developer guide, "Fargate Linux
    platform versions"); DescribeTasks and the task events name the version."""
    if mt.launch_type == "FARGATE" and mt.platform_version in (None, "LATEST"):
        mt.platform_version = "1.4.0"


class EcsSimulator(EcsModel):
    """The ECS model, installed into moto's ECS, ELBv2, EC2, ECR and CloudWatch Logs backends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls = threading.local()
        self._patches: list[tuple[Any, str, Any]] = []

    # ---------------------------------------------------------------- installing
    @property
    def _ecs(self) -> EC2ContainerServiceBackend:
        return ecs_backends[self.account_id][self.region]

    @property
    def _elb(self) -> ELBv2Backend:
        return elbv2_backends[self.account_id][self.region]

    @property
    def _ec2(self) -> Any:
        return ec2_backends[self.account_id][self.region]

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
        for name in (
            "create_service",
            "update_service",
            "delete_service",
            "run_task",
            "describe_tasks",
            "list_tasks",
            "stop_task",
            "describe_services",
        ):
            self._patch(E, name, self._guard(getattr(E, name), getattr(self, f"_ecs_{name}", None)))
        for name in ("register_targets", "deregister_targets", "describe_target_health"):
            self._patch(L, name, self._guard(getattr(L, name), getattr(self, f"_elb_{name}", None)))
        self._patch(
            E,
            "_calculate_task_resource_requirements",
            staticmethod(self._task_level_memory(E._calculate_task_resource_requirements)),
        )
        self._patch(R, "create_service", self._keep_create_service_params(R.create_service))
        for name in (
            "list_service_deployments",
            "describe_service_deployments",
            "stop_service_deployment",
            "describe_service_revisions",
        ):
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

    # ---------------------------------------------------------------- moto workarounds
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
                cd
                if any(x in cd for x in ("memory", "Memory", "memoryReservation", "MemoryReservation"))
                else {**cd, "memory": 0}
                for cd in td.container_definitions
            ]
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
        m.deployment_configuration = {
            **copy.deepcopy(DEFAULT_DEPLOYMENT_CONFIGURATION),
            **(getattr(m, "deployment_configuration", None) or {}),
        }
        if getattr(m, "capacity_provider_strategy", None):
            m.launch_type = None

    # ---------------------------------------------------------------- ECS backend methods
    # (called under the lock, caught up with the clock)
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
            self.service_created(m, m.cluster_name, m.name, m.task_definition, m.desired_count)
        return m

    def _ecs_update_service(self, orig: Callable, be: Any, props: dict) -> Any:
        cluster = be._get_cluster(props.get("cluster", "default")).name
        key = f"{cluster}/{props['service'].split('/')[-1]}"
        m = orig(be, dict(props))  # moto pops from the dict it is given
        self._fix_service_attrs(m)
        new_config = any(
            props.get(x) is not None
            for x in ("network_configuration", "load_balancers", "capacity_provider_strategy", "platform_version")
        )
        self.service_updated(
            key, props.get("task_definition"), bool(props.get("force_new_deployment")) or new_config, m.desired_count
        )
        return m

    def _ecs_delete_service(self, orig: Callable, be: Any, cluster_name: str, service_name: str, force: bool) -> Any:
        m = orig(be, cluster_name, service_name, force)
        self.service_deleted(f"{m.cluster_name}/{m.name}")
        return m

    def _ecs_run_task(
        self,
        orig: Callable,
        be: Any,
        cluster_str: str,
        task_definition_str: str,
        count: int,
        overrides: Any,
        started_by: str,
        tags: Any,
        launch_type: str | None,
        networking_configuration: Any = None,
        group: str | None = None,
        platform_version: str | None = None,
        capacity_provider_strategy: Any = None,
    ) -> list:
        tasks = orig(
            be,
            cluster_str,
            task_definition_str,
            count,
            overrides,
            started_by,
            tags,
            launch_type,
            _with_security_groups(networking_configuration),
            group,
            platform_version,
            capacity_provider_strategy,
        )
        td = be.describe_task_definition(task_definition_str)
        for mt in tasks:
            _fargate_platform(mt)
            self.task_started(mt, td)
        return tasks

    def _ecs_describe_tasks(self, orig: Callable, be: Any, cluster_str: str, tasks: list[str]) -> list:
        """moto's version advances a 'STOPPED after four describe calls' state machine; ours only reads."""
        be._get_cluster(cluster_str)
        if not tasks:
            raise InvalidParameterException("Tasks cannot be empty.")
        wanted = {t.split("/")[-1] for t in tasks}
        return [mt for ct in be.tasks.values() for arn, mt in ct.items() if arn.split("/")[-1] in wanted]

    def _ecs_list_tasks(
        self,
        orig: Callable,
        be: Any,
        cluster_str: str | None = None,
        container_instance: str | None = None,
        family: str | None = None,
        started_by: str | None = None,
        service_name: str | None = None,
        desiredStatus: str | None = None,
    ) -> list:
        """Adds the serviceName filter moto ignores, and ECS's default desiredStatus=RUNNING."""
        found = orig(be, cluster_str, container_instance, family, started_by, None, desiredStatus or "RUNNING")
        if service_name:
            found = [mt for mt in found if mt.group == f"service:{service_name.split('/')[-1]}"]
        return found

    def _ecs_stop_task(self, orig: Callable, be: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        """The model's task goes STOPPING, then STOPPED (EcsModel.task_stopped); any other is moto's."""
        cluster = be._get_cluster(cluster_str).name
        k = self.task_stopped(cluster, task_str.split("/")[-1], reason)
        if k is None:
            return orig(be, cluster_str, task_str, reason)
        return k.api

    # ---------------------------------------------------------------- ELBv2
    def _elb_describe_target_health(self, orig: Callable, be: Any, target_group_arn: str, targets: list) -> list:
        """Without a target list, ELB also reports the targets that are still draining."""
        tg = be.target_groups.get(target_group_arn)
        if not targets and tg is not None:
            targets = list(tg.targets.values()) + self._draining(tg.arn, tg.targets)
        return orig(be, target_group_arn, targets)

    def _record_registration(self, orig: Callable, registering: bool) -> Callable:
        """Remember when each target was (de)registered: health starts `initial`, draining lasts drainSeconds."""

        def method(tg: Any, targets: list[dict]) -> None:
            ports = {t["Id"]: tg.targets.get(t["Id"], {}).get("Port", t.get("Port", tg.port)) for t in targets}
            orig(tg, targets)
            for target_id, port in ports.items():
                self._registered(tg.arn, target_id, registering, port)

        return method

    def _simulated_health(self, orig: Callable) -> Callable:
        """Targets whose IP belongs to a simulated task get that task's health; other targets keep moto's."""

        def health_for(tg: Any, target: dict, ec2_backend: Any) -> Any:
            k = self._by_ip.get(target["Id"])
            if k is None or f":{self.region}:{self.account_id}:" not in tg.arn:
                return orig(tg, target, ec2_backend)
            with self._step():
                state = self._target_state(tg.arn, target["Id"], target["Id"] in tg.targets, k)
            if state is None:
                return orig(tg, target, ec2_backend)
            port = tg.targets.get(target["Id"], {}).get("Port") or target.get("Port") or tg.port
            return FakeHealthStatus(target["Id"], port, tg.health_check_port, *state)

        return health_for

    # ---------------------------------------------------------------- the service deployment API
    # (botocore has it, moto 5.2.5 does not)
    def _api_list_service_deployments(self, resp: Any) -> ActionResult:
        with self._step():
            cluster = resp.ecs_backend._get_cluster(resp._get_param("cluster") or "default").name
            found = self.list_service_deployments(
                f"{cluster}/{(resp._get_param('service') or '').split('/')[-1]}",
                resp._get_param("status"),
                resp._get_param("createdAt"),
                resp._get_param("nextToken"),
                resp._get_param("maxResults"),
            )
            if found is None:
                raise ServiceNotFoundException()
            return ActionResult(found)

    def _api_describe_service_deployments(self, resp: Any) -> ActionResult:
        with self._step():
            return ActionResult(self.describe_service_deployments(resp._get_param("serviceDeploymentArns") or []))

    def _api_describe_service_revisions(self, resp: Any) -> ActionResult:
        with self._step():
            return ActionResult(self.describe_service_revisions(resp._get_param("serviceRevisionArns") or []))

    def _api_stop_service_deployment(self, resp: Any) -> ActionResult:
        with self._step():
            try:
                return ActionResult(
                    self.stop_service_deployment(resp._get_param("serviceDeploymentArn"), resp._get_param("stopType"))
                )
            except EcsError as error:
                if error.code == "InvalidParameterException":
                    raise InvalidParameterException(error.message) from None
                raise ECSException(error.code, error.message) from None

    # ---------------------------------------------------------------- where the model meets moto
    def _task_definition(self, ref: str) -> Any:
        return self._ecs.describe_task_definition(ref)

    def _start_service_task(self, s: _Service, td: Any, started_by: str) -> Task:
        be, m = self._ecs, s.api
        cps = getattr(m, "capacity_provider_strategy", None)
        net = _with_security_groups(m.network_configuration)
        tags = list(m.tags) if m.propagate_tags == "SERVICE" else []
        mt = Task(
            cluster=be.clusters[s.cluster],
            task_definition=td,
            container_instance_arn=None,
            resource_requirements=be._calculate_task_resource_requirements(td),
            backend=be,
            group=f"service:{s.name}",
            launch_type=m.launch_type or "",
            started_by=started_by,
            tags=tags,
            networking_configuration=net,
            platform_version=m.platform_version,
            capacity_provider_name=cps[0]["capacityProvider"] if cps else None,
        )
        be.tasks.setdefault(s.cluster, {})[mt.task_arn] = mt
        _fargate_platform(mt)
        return mt

    def _new_number(self) -> int:
        return mock_random.randint(10**18, 10**19 - 1)  # moto's random: seeded alike with moto's own ids

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
            digest = next(
                (img.get_image_digest() for img in (repository.images if repository else []) if tag in img.image_tags),
                None,
            )
            if digest is None:
                return keys, []
        if digest:
            repository = ecr_backends[m["acct"]][m["region"]].repositories.get(repo)
            for img in repository.images if repository else []:
                if img.get_image_digest() == digest:
                    keys += [f"{repo}:{t}" for t in img.image_tags]
            keys.append(f"{repo}@{digest}")
            return keys, [digest]
        return keys or [f"{repo}:latest"], []

    def _attach_network(self, k: _Task) -> tuple[str, str, str] | None:
        """moto gives awsvpc tasks a random 10.x.y.z; use a free address inside the task's subnet instead."""
        att = next((a for a in k.api.attachments if a.get("type") == "ElasticNetworkInterface"), None)
        if att is None:
            return None
        details = {x["name"]: x for x in att["details"]}
        eni = self._ec2.get_network_interface(details["networkInterfaceId"]["value"])
        ip = self._pick_ip(eni.subnet.cidr_block, eni.private_ip_address)
        domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        dns = f"ip-{ip.replace('.', '-')}.{domain}"
        eni.private_ip_address, eni.private_dns_name = ip, dns
        eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": ip, "PrivateDnsName": dns}]
        details["privateIPv4Address"]["value"], details["privateDnsName"]["value"] = ip, dns
        return ip, att["id"], eni.subnet.availability_zone

    def _release_network(self, k: _Task) -> None:
        for att in k.api.attachments:
            if att.get("type") == "ElasticNetworkInterface" and att.get("status") != "DELETED":
                att["status"] = "DELETED"
                eni_id = next(x["value"] for x in att["details"] if x["name"] == "networkInterfaceId")
                self._ec2.enis.pop(eni_id, None)

    def _register_target(self, tg_arn: str, ip: str, container_port: int | None) -> int | None:
        tg = self._elb.target_groups.get(tg_arn)
        if tg is None:
            return None
        port = int(container_port or tg.port or 80)
        tg.register([{"Id": ip, "Port": port}])
        return port

    def _deregister_target(self, tg_arn: str, ip: str, port: int) -> bool:
        tg = self._elb.target_groups.get(tg_arn)
        if tg is not None and ip in tg.targets:
            tg.deregister([{"Id": ip, "Port": port}])
            return True
        return False

    def _put_log_events(self, region: str, group: str | None, stream: str, events: list[dict]) -> None:
        found = logs_backends[self.account_id][region].groups.get(group)
        if found is None:
            return
        if stream not in found.streams:
            found.create_log_stream(stream)
        # straight to the stream: the backend refuses events older than 14 days of *wall* time
        found.streams[stream].put_log_events(events)

    def _publish_task(self, k: _Task) -> None:
        """Copy the model's state onto the moto Task, which moto's serializer turns into the API response."""
        mt = k.api
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

    def _publish_services(self) -> None:
        """Write deployments and counts onto moto's Service objects (describe_services serializes those)."""
        for s in self._services.values():
            if s.deleted or not s.deployments:
                continue
            m, p = s.api, s.deployments[0]
            m.task_definition = p.td
            tasks = [k for d in s.deployments for k in d.tasks]
            m.running_count, m.pending_count = _count(tasks, "RUNNING"), _count(tasks, "PROVISIONING", "PENDING")
            m.deployments = [self._deployment_view(s, d) for d in s.deployments]
            m.current_service_deployment = p.sd.arn
            m.events = list(s.events)
