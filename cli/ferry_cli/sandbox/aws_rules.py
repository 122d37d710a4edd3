"""What AWS enforces on the calls Ferry makes, enforced in the sandbox too.

moto accepts requests AWS refuses and answers in one page what AWS answers in
many, so code proven against it alone can fail on its first real call. This
module is the catalogue of the rules AWS documents for those calls, each with
its source, and the thin layer that enforces them in front of moto:

- RULES: request rules. Every botocore client made while `enforce()` is active
  checks each request against them (and against its service model's `max`
  and `enum` constraints, which botocore leaves to the server) before it is
  sent, and answers a broken one with the error AWS gives.
- PAGES: page sizes. moto answers List calls in one page; these operations
  answer at most the documented number of items a page, with a `nextToken`.
- RATES: ECS's per-action request throttling (token buckets on the sandbox's
  clock), applied by the sandbox to the handlers' calls (see faults.client_patches).

A rule is cited by the botocore model's documentation string (what the SDK
ships, so a test can check the text is still there) or by an AWS page.
tests/sandbox/test_aws_rules.py shows each rule refusing what AWS refuses.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from unittest import mock

ECS_API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference"
ECS_QUOTAS = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html"
ECS_THROTTLING = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html"


def botocore_doc(service: str, shape: str, member: str | None = None) -> str:
    """A source that is the botocore model's own documentation string (tests check the quoted text is in it)."""
    return f"botocore {service} model: {shape}{'.' + member if member else ''}"


@dataclass(frozen=True)
class Rule:
    """One request rule: `check(params, account)` returns why the request breaks it, or None."""

    service: str  # botocore's service name (ecs, elbv2, stepfunctions, ...)
    operation: str  # the API operation (ListTasks)
    says: str  # the rule, in words
    source: str  # where AWS documents it
    quote: str  # the sentence of the source that states it
    check: Callable[[dict[str, Any], "Account"], str | None]
    error: str = "InvalidParameterException"


@dataclass(frozen=True)
class Account:
    """Where a request goes: lets a rule look at what exists (a DAEMON service, say)."""

    account: str
    region: str


# ---------------------------------------------------------------- the request rules
_LIST_TASKS_FILTERS = ("containerInstance", "family", "serviceName", "desiredStatus", "launchType", "daemonName")


def _started_by_alone(params: dict[str, Any], _: Account) -> str | None:
    if params.get("startedBy") and any(params.get(k) is not None for k in _LIST_TASKS_FILTERS):
        return "cannot specify startedBy with other arguments"
    return None


def _at_most(key: str, limit: int, what: str) -> Callable[[dict[str, Any], Account], str | None]:
    def check(params: dict[str, Any], _: Account) -> str | None:
        items = params.get(key) or []
        if len(items) > limit:
            return f"{what}: {len(items)} given, at most {limit} are allowed in one call"
        return None

    return check


def _between(key: str, low: int, high: int) -> Callable[[dict[str, Any], Account], str | None]:
    def check(params: dict[str, Any], _: Account) -> str | None:
        value = params.get(key)
        if value is not None and not low <= int(value) <= high:
            return f"{key} must be between {low} and {high}, got {value}"
        return None

    return check


def _overrides_size(params: dict[str, Any], _: Account) -> str | None:
    size = len(json.dumps(params.get("overrides") or {}, separators=(",", ":")))
    if size > 8192:
        return f"Container Overrides length must be at most 8192 characters, got {size}"
    return None


TASK_DEFINITION_MAX_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def _task_definition_size(params: dict[str, Any], _: Account) -> str | None:
    size = len(json.dumps(params, separators=(",", ":"), default=str).encode())
    if size > TASK_DEFINITION_MAX_BYTES:
        return f"Task definition size {size} bytes exceeds the limit of {TASK_DEFINITION_MAX_BYTES} bytes (64 KiB)"
    return None


def _family_name(params: dict[str, Any], _: Account) -> str | None:
    family = params.get("family")
    if family is not None and not _NAME.match(family):
        return (
            f"Family contains invalid characters: {family!r}; up to 255 letters (uppercase and lowercase), "
            "numbers, underscores, and hyphens are allowed"
        )
    return None


def _container_names(params: dict[str, Any], _: Account) -> str | None:
    for container in params.get("containerDefinitions") or []:
        name = container.get("name")
        if name is not None and not _NAME.match(name):
            return (
                f"Container name contains invalid characters: {name!r}; up to 255 letters (uppercase and "
                "lowercase), numbers, underscores, and hyphens are allowed"
            )
    return None


def _started_by_value(params: dict[str, Any], _: Account) -> str | None:
    value = params.get("startedBy")
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_/-]{1,128}", value):
        return (
            f"startedBy {value!r} is invalid: up to 128 letters (uppercase and lowercase), numbers, hyphens (-), "
            "forward slash (/), and underscores (_) are allowed"
        )
    return None


def _tags(
    key: str = "tags", key_name: str = "key", value_name: str = "value"
) -> Callable[[dict[str, Any], Account], str | None]:
    def check(params: dict[str, Any], _: Account) -> str | None:
        tags = params.get(key) or []
        if len(tags) > 50:
            return f"{len(tags)} tags given: the maximum number of tags per resource is 50"
        seen = set()
        for tag in tags:
            k, v = tag.get(key_name, ""), tag.get(value_name, "")
            if len(k) > 128 or len(v or "") > 256:
                return f"tag {k[:40]!r}: keys are at most 128 characters and values at most 256"
            if k in seen:
                return f"tag key {k!r} is given twice: each tag key must be unique"
            seen.add(k)
        return None

    return check


def _no_desired_count_for_daemon(params: dict[str, Any], where: Account) -> str | None:
    if params.get("desiredCount") is None:
        return None
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[where.account][where.region]
    cluster = str(params.get("cluster") or "default").rsplit("/", 1)[-1]
    name = str(params.get("service") or "").rsplit("/", 1)[-1]
    service = backend.services.get(f"{cluster}:{name}")
    if service is not None and getattr(service, "scheduling_strategy", "REPLICA") == "DAEMON":
        return "The daemon scheduling strategy does not support a desired count for services."
    return None


RULES: tuple[Rule, ...] = (
    Rule(
        "ecs",
        "ListTasks",
        "startedBy must be the only filter of a ListTasks call",
        botocore_doc("ecs", "ListTasksRequest", "startedBy"),
        "When you specify startedBy as the filter, it must be the only filter that you use.",
        _started_by_alone,
    ),
    Rule(
        "ecs",
        "ListTasks",
        "maxResults is between 1 and 100",
        botocore_doc("ecs", "ListTasksRequest", "maxResults"),
        "This value can be between 1 and 100.",
        _between("maxResults", 1, 100),
    ),
    Rule(
        "ecs",
        "ListTaskDefinitions",
        "maxResults is between 1 and 100",
        botocore_doc("ecs", "ListTaskDefinitionsRequest", "maxResults"),
        "This value can be between 1 and 100.",
        _between("maxResults", 1, 100),
    ),
    Rule(
        "ecs",
        "ListServiceDeployments",
        "maxResults is between 1 and 100",
        botocore_doc("ecs", "ListServiceDeploymentsRequest", "maxResults"),
        "This value can be between 1 and 100.",
        _between("maxResults", 1, 100),
    ),
    Rule(
        "ecs",
        "DescribeTasks",
        "at most 100 tasks a call",
        botocore_doc("ecs", "DescribeTasksRequest", "tasks"),
        "A list of up to 100 task IDs or full ARN entries.",
        _at_most("tasks", 100, "tasks"),
    ),
    Rule(
        "ecs",
        "DescribeServices",
        "at most 10 services a call",
        botocore_doc("ecs", "DescribeServicesRequest", "services"),
        "You may specify up to 10 services to describe in a single operation.",
        _at_most("services", 10, "services"),
    ),
    Rule(
        "ecs",
        "DescribeServiceDeployments",
        "at most 20 service deployment ARNs a call",
        botocore_doc("ecs", "DescribeServiceDeploymentsRequest", "serviceDeploymentArns"),
        "You can specify a maximum of 20 ARNs.",
        _at_most("serviceDeploymentArns", 20, "serviceDeploymentArns"),
    ),
    Rule(
        "ecs",
        "DescribeServiceRevisions",
        "at most 20 service revision ARNs a call",
        botocore_doc("ecs", "DescribeServiceRevisionsRequest", "serviceRevisionArns"),
        "You can specify a maximum of 20 ARNs.",
        _at_most("serviceRevisionArns", 20, "serviceRevisionArns"),
    ),
    Rule(
        "ecs",
        "RunTask",
        "count is between 1 and 10",
        botocore_doc("ecs", "RunTaskRequest", "count"),
        "You can specify up to 10 tasks for each call.",
        _between("count", 1, 10),
    ),
    Rule(
        "ecs",
        "RunTask",
        "overrides are at most 8192 characters, JSON formatting included",
        botocore_doc("ecs", "RunTaskRequest", "overrides"),
        "A total of 8192 characters are allowed for overrides. This limit includes the JSON formatting characters "
        "of the override structure.",
        _overrides_size,
    ),
    Rule(
        "ecs",
        "RunTask",
        "startedBy is up to 128 letters, numbers, hyphens, forward slashes and underscores",
        botocore_doc("ecs", "RunTaskRequest", "startedBy"),
        "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), and underscores (_) "
        "are allowed.",
        _started_by_value,
    ),
    Rule(
        "ecs",
        "RunTask",
        "at most 50 tags, keys up to 128 and values up to 256 characters, keys unique",
        botocore_doc("ecs", "RunTaskRequest", "tags"),
        "Maximum number of tags per resource - 50",
        _tags(),
    ),
    Rule(
        "ecs",
        "RegisterTaskDefinition",
        "a task definition is at most 64 KiB",
        ECS_QUOTAS,
        "Task definition size: 64 KiB",
        _task_definition_size,
        "ClientException",
    ),
    Rule(
        "ecs",
        "RegisterTaskDefinition",
        "family: up to 255 letters, numbers, underscores and hyphens",
        botocore_doc("ecs", "RegisterTaskDefinitionRequest", "family"),
        "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        _family_name,
        "ClientException",
    ),
    Rule(
        "ecs",
        "RegisterTaskDefinition",
        "container names: up to 255 letters, numbers, underscores and hyphens",
        botocore_doc("ecs", "ContainerDefinition", "name"),
        "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        _container_names,
        "ClientException",
    ),
    Rule(
        "ecs",
        "RegisterTaskDefinition",
        "at most 50 tags, keys up to 128 and values up to 256 characters",
        botocore_doc("ecs", "RegisterTaskDefinitionRequest", "tags"),
        "Maximum number of tags per resource - 50",
        _tags(),
    ),
    Rule(
        "ecs",
        "TagResource",
        "at most 50 tags, keys up to 128 and values up to 256 characters",
        botocore_doc("ecs", "TagResourceRequest", "tags"),
        "Maximum number of tags per resource - 50",
        _tags(),
    ),
    Rule(
        "ecs",
        "UpdateService",
        "a DAEMON service takes no desiredCount",
        f"{ECS_API}/API_CreateService.html",
        "When you're using this strategy, you don't need to specify a desired number of tasks",
        _no_desired_count_for_daemon,
    ),
)

# Model-constraint errors, by service: the code each service answers a value outside its model with.
MODEL_ERRORS = {
    "ecs": "InvalidParameterException",
    "ecr": "InvalidParameterException",
    "logs": "InvalidParameterException",
    "secretsmanager": "InvalidParameterException",
    "elbv2": "ValidationError",
    "cloudwatch": "InvalidParameterValue",
    "iam": "ValidationError",
    "cloudformation": "ValidationError",
    "lambda": "InvalidParameterValueException",
    "sns": "InvalidParameter",
    # A SendTaskFailure cause over 32768 characters (SensitiveCause "max": 32768) was answered on AWS with
    # "ValidationException ... 1 validation error detected: Value at 'cause' failed to satisfy constraint: Member
    # must have length less than or equal to 32768", and the same cause cut to 32768 was taken (irothschild/stefuna
    # pull request #8, "Truncate the failure cause if over the result size limit").
    "stepfunctions": "ValidationException",
}
MODEL_SOURCE = "botocore service models: each shape's max and enum (botocore.validate checks only min and required)"


def model_problems(shape: Any, value: Any, path: str = "") -> list[str]:
    """Where `value` breaks its botocore input shape's `max` or `enum`: the constraints AWS checks on arrival."""
    problems: list[str] = []
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                problems += model_problems(member, value[name], f"{path}.{name}" if path else name)
        return problems
    if kind == "list" and isinstance(value, (list, tuple)):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length less than or "
                f"equal to {meta['max']}"
            )
        for i, item in enumerate(value):
            problems += model_problems(shape.member, item, f"{path}.{i + 1}")
        return problems
    if kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            problems += model_problems(shape.value, v, f"{path}.{k}")
        return problems
    if kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length less than or "
                f"equal to {meta['max']}"
            )
        if shape.enum and value not in shape.enum:
            problems.append(
                f"Value '{value[:100]}' at '{path}' failed to satisfy constraint: Member must satisfy "
                f"enum value set: [{', '.join(shape.enum)}]"
            )
        return problems
    if kind in ("integer", "long", "double", "float") and isinstance(value, (int, float)) and "max" in meta:
        if value > meta["max"]:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value less "
                f"than or equal to {meta['max']}"
            )
    if kind == "blob" and isinstance(value, (bytes, str)) and "max" in meta and len(value) > meta["max"]:
        problems.append(
            f"Value at '{path}' failed to satisfy constraint: Member must have length less than or "
            f"equal to {meta['max']}"
        )
    return problems


# ---------------------------------------------------------------- page sizes
@dataclass(frozen=True)
class Pages:
    """A List operation answered a page at a time, `default` items unless maxResults asks for fewer."""

    service: str
    operation: str
    key: str  # the list in the response
    default: int
    source: str
    quote: str


PAGES: tuple[Pages, ...] = (
    Pages(
        "ecs",
        "ListTasks",
        "taskArns",
        100,
        botocore_doc("ecs", "ListTasksRequest", "maxResults"),
        "If this parameter isn't used, then ListTasks returns up to 100 results and a nextToken value if applicable.",
    ),
    Pages(
        "ecs",
        "ListTaskDefinitions",
        "taskDefinitionArns",
        100,
        botocore_doc("ecs", "ListTaskDefinitionsRequest", "maxResults"),
        "If this parameter isn't used, then ListTaskDefinitions returns up to 100 results and a nextToken value if "
        "applicable.",
    ),
    Pages(
        "ecs",
        "ListServices",
        "serviceArns",
        10,
        botocore_doc("ecs", "ListServicesRequest", "maxResults"),
        "If this parameter isn't used, then ListServices returns up to 10 results and a nextToken value if applicable.",
    ),
    Pages(
        "ecs",
        "ListClusters",
        "clusterArns",
        100,
        botocore_doc("ecs", "ListClustersRequest", "maxResults"),
        "If this parameter isn't used, then ListClusters returns up to 100 results and a nextToken value if "
        "applicable.",
    ),
)


# ---------------------------------------------------------------- request throttling
@dataclass(frozen=True)
class Rate:
    """A token bucket: `capacity` requests at once, refilled at `refill` a second (per account and region)."""

    service: str
    actions: tuple[str, ...]  # the actions that share the bucket
    capacity: float
    refill: float
    source: str


ELB_THROTTLING = "https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html"
FARGATE_THROTTLING = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/throttling.html"

# "API actions are grouped into categories. All API actions in a category share the same token bucket." (ECS API
# reference, Request throttling: bucket maximum capacity, then refill rate a second, per account and Region.)
RATES: tuple[Rate, ...] = (
    Rate(
        "ecs",
        ("DescribeTasks", "ListTasks", "DescribeContainerInstances", "ListContainerInstances", "ListAttributes"),
        100,
        20,
        ECS_THROTTLING,
    ),  # cluster resource read actions
    Rate(
        "ecs",
        ("RunTask", "StopTask", "StartTask", "ExecuteCommand", "PutAttributes", "DeleteAttributes"),
        100,
        40,
        ECS_THROTTLING,
    ),  # cluster resource modify actions
    # "The rate quota for calls to the Amazon ECS RunTask API is 20 calls per second (burst and sustained)" on
    # Fargate, in addition to the above.
    Rate("ecs", ("RunTask",), 20, 20, FARGATE_THROTTLING),
    Rate("ecs", ("DescribeServices", "ListServices"), 100, 20, ECS_THROTTLING),  # service read actions
    Rate("ecs", ("CreateService", "UpdateService", "DeleteService"), 50, 5, ECS_THROTTLING),  # service modify
    Rate(
        "ecs", ("RegisterTaskDefinition", "DeregisterTaskDefinition"), 20, 1, ECS_THROTTLING
    ),  # task definition modify
    Rate(
        "ecs", ("DescribeTaskDefinition", "ListTaskDefinitions", "ListTaskDefinitionFamilies"), 50, 20, ECS_THROTTLING
    ),  # task definition read actions
    Rate("ecs", ("TagResource", "UntagResource"), 20, 10, ECS_THROTTLING),  # tag modify actions
    Rate("ecs", ("ListTagsForResource",), 50, 20, ECS_THROTTLING),  # tag read actions
    Rate("ecs", ("ListServiceDeployments", "DescribeServiceDeployments"), 50, 20, ECS_THROTTLING),
    Rate("ecs", ("DescribeServiceRevisions",), 50, 20, ECS_THROTTLING),
    Rate("ecs", ("DescribeClusters", "ListClusters"), 50, 20, ECS_THROTTLING),  # cluster read actions
    Rate("ecs", ("PutAccountSetting", "PutAccountSettingDefault", "DeleteAccountSetting"), 10, 1, ECS_THROTTLING),
    # Elastic Load Balancing: "Registration API actions" and "Non-mutating (describe) API actions".
    Rate("elbv2", ("RegisterTargets", "DeregisterTargets"), 20, 4, ELB_THROTTLING),
    Rate(
        "elbv2",
        (
            "DescribeTargetGroups",
            "DescribeTargetHealth",
            "DescribeTargetGroupAttributes",
            "DescribeLoadBalancers",
            "DescribeListeners",
            "DescribeRules",
            "DescribeTags",
        ),
        40,
        10,
        ELB_THROTTLING,
    ),
)


class Throttle:
    """AWS's request throttling: one token bucket per rate, on the sandbox's clock. An action may draw on
    several buckets (RunTask: the cluster's modify actions and Fargate's RunTask rate)."""

    def __init__(self, now: Callable[[], float], rates: tuple[Rate, ...] | None = None) -> None:
        self._now = now
        self._rates = RATES if rates is None else rates
        self._by_action: dict[tuple[str, str], list[int]] = {}
        for i, rate in enumerate(self._rates):
            for action in rate.actions:
                self._by_action.setdefault((rate.service, action), []).append(i)
        self._tokens = [float(r.capacity) for r in self._rates]
        self._stamp = [now() for _ in self._rates]
        self._lock = threading.Lock()
        self.throttled: dict[str, int] = {}

    def take(self, service: str, operation: str) -> bool:
        """Spend a token of each of the action's buckets; False (nothing spent) when one is empty: AWS then
        answers ThrottlingException, "Rate exceeded"."""
        buckets = self._by_action.get((service, operation), [])
        with self._lock:
            now = self._now()
            for i in buckets:
                rate = self._rates[i]
                self._tokens[i] = min(
                    float(rate.capacity), self._tokens[i] + max(0.0, now - self._stamp[i]) * rate.refill
                )
                self._stamp[i] = now
            if any(self._tokens[i] < 1 for i in buckets):
                self.throttled[operation] = self.throttled.get(operation, 0) + 1
                return False
            for i in buckets:
                self._tokens[i] -= 1
            return True


# ---------------------------------------------------------------- enforcement
class RuleBroken(Exception):
    """Raised in place of the request: carries the code and message AWS answers with."""


@dataclass
class Enforcement:
    """What enforce() saw: every refusal, for tests and the run summary."""

    refused: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _refuse(client: Any, operation: str, code: str, message: str) -> Exception:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": str(uuid.uuid4()), "HTTPHeaders": {}},
    }
    return client.exceptions.from_code(code)(response, operation)


def _rules_by_operation() -> dict[tuple[str, str], list[Rule]]:
    found: dict[tuple[str, str], list[Rule]] = {}
    for rule in RULES:
        found.setdefault((rule.service, rule.operation), []).append(rule)
    return found


def _account() -> str:
    import os

    from moto.core import DEFAULT_ACCOUNT_ID

    return os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID


# The Enforcement of the enforce() running now: a client the sandbox keeps between sandboxes (faults.client_patches)
# reports its refusals to the sandbox it is used in, not the one it was made in.
_ACTIVE: list[Enforcement] = []


def _checker(client: Any, made_in: Enforcement) -> Callable[..., None]:
    service = client.meta.service_model.service_name
    rules = _rules_by_operation()
    region = client.meta.region_name

    def check(params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        problems = [
            (rule.error, f"{message}")
            for rule in rules.get((service, operation), [])
            if (message := rule.check(params, Account(_account(), region))) is not None
        ]
        if not problems and model.input_shape is not None:
            found = model_problems(model.input_shape, params)
            if found:
                code = MODEL_ERRORS.get(service, "ValidationException")
                problems = [
                    (code, f"{len(found)} validation error{'s' * (len(found) > 1)} detected: " + "; ".join(found))
                ]
        if problems:
            code, message = problems[0]
            seen = _ACTIVE[-1] if _ACTIVE else made_in
            with seen.lock:
                seen.refused.append({"service": service, "operation": operation, "error": code, "message": message})
            raise _refuse(client, operation, code, message)

    return check


def paginate_response(method: Callable, pages: Pages) -> Callable:
    """Wrap a moto response method so that it answers a page at a time, as AWS does."""

    def paged(response: Any) -> Any:
        result = method(response)
        data = getattr(result, "result", None)
        if not isinstance(data, dict) or not isinstance(data.get(pages.key), list):
            return result
        size = int(response._get_param("maxResults") or pages.default)
        token = response._get_param("nextToken")
        try:
            start = int(base64.b64decode(token).decode()) if token else 0
        except ValueError:
            from moto.ecs.exceptions import InvalidParameterException

            raise InvalidParameterException("Invalid nextToken") from None
        items = data[pages.key]
        page = {**data, pages.key: items[start : start + size]}
        if start + size < len(items):
            page["nextToken"] = base64.b64encode(str(start + size).encode()).decode()
        return type(result)(page)

    return paged


def _running_by_default(list_tasks: Callable) -> Callable:
    """ListTasks without desiredStatus lists the tasks ECS wants RUNNING ("The default status filter is RUNNING":
    botocore ecs model, ListTasksRequest.desiredStatus); moto lists every task."""

    def listed(
        backend: Any,
        cluster_str: Any = None,
        container_instance: Any = None,
        family: Any = None,
        started_by: Any = None,
        service_name: Any = None,
        desiredStatus: Any = None,
    ) -> Any:  # noqa: N803
        return list_tasks(
            backend, cluster_str, container_instance, family, started_by, service_name, desiredStatus or "RUNNING"
        )

    return listed


def _registered_by(register_task_definition: Callable) -> Callable:
    """A registered revision names who registered it: DescribeTaskDefinition's and RegisterTaskDefinition's
    taskDefinition has `registeredBy`, "The principal that registered the task definition" (ECS API reference,
    TaskDefinition: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskDefinition.html; botocore ecs model, TaskDefinition.registeredBy); moto
    leaves it out. The principal is the caller's ARN as STS GetCallerIdentity gives it for the request's access
    key (for a role's session, `arn:aws:sts::<account>:assumed-role/<role>/<session>`, as ECS reports it)."""
    from moto.sts.models import sts_backends

    def registered(response: Any) -> Any:
        result = register_task_definition(response)
        task_definition = (getattr(result, "result", None) or {}).get("taskDefinition")
        if task_definition is not None:
            sts = sts_backends[response.current_account][response.partition]
            _, arn, _ = sts.get_caller_identity(response.get_access_key(), response.region)
            task_definition.registered_by = arn
        return result

    return registered


def _sorted_as_asked(list_task_definitions: Callable) -> Callable:
    """ListTaskDefinitions lists "by family name and in ascending numerical order by revision so that the newest
    task definitions in a family are listed last. Setting this parameter to DESC reverses the sort order" (botocore
    ecs model, ListTaskDefinitionsRequest.sort); moto lists in the order it keeps, and ignores `sort`, so a page
    of the newest revisions (Register's look for the one its execution registered) was a page of the oldest."""

    def key(arn: str) -> tuple[str, int]:
        family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
        return family, int(revision) if revision.isdigit() else 0

    def listed(response: Any) -> Any:
        result = list_task_definitions(response)
        data = getattr(result, "result", None)
        if not isinstance(data, dict) or not isinstance(data.get("taskDefinitionArns"), list):
            return result
        arns = sorted(data["taskDefinitionArns"], key=key, reverse=response._get_param("sort") == "DESC")
        return type(result)({**data, "taskDefinitionArns": arns})

    return listed


@contextmanager
def enforce() -> Iterator[Enforcement]:
    """While active (inside mock_aws), every new botocore client obeys RULES and the models' constraints,
    and the PAGES operations answer a page at a time."""
    import botocore.session
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.ecs.responses import EC2ContainerServiceResponse

    seen = Enforcement()
    create = botocore.session.Session.create_client

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(session, *args, **kwargs)
        client.meta.events.register_first("before-parameter-build", _checker(client, seen))
        return client

    responses = {"ecs": EC2ContainerServiceResponse}
    patches = [
        mock.patch.object(botocore.session.Session, "create_client", create_client),
        mock.patch.object(
            EC2ContainerServiceBackend, "list_tasks", _running_by_default(EC2ContainerServiceBackend.list_tasks)
        ),
        mock.patch.object(
            EC2ContainerServiceResponse,
            "register_task_definition",
            _registered_by(EC2ContainerServiceResponse.register_task_definition),
        ),
    ]
    # What moto answers wrongly before it is cut into pages: the order of the whole list.
    ordered = {("ecs", "ListTaskDefinitions"): _sorted_as_asked}
    for pages in PAGES:
        owner = responses[pages.service]
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", pages.operation).lower()
        method = getattr(owner, name)
        if (pages.service, pages.operation) in ordered:
            method = ordered[(pages.service, pages.operation)](method)
        patches.append(mock.patch.object(owner, name, paginate_response(method, pages)))
    with ExitStack() as stack:
        for patcher in patches:
            stack.enter_context(patcher)
        _ACTIVE.append(seen)
        stack.callback(_ACTIVE.remove, seen)
        yield seen
