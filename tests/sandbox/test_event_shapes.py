"""The sandbox's own AWS events and API answers, held against what AWS publishes and botocore's models.

One canary deploy runs in the sandbox (with a health-gate alarm that changes
state during the bake, and a refused manifest drop); every event the sandbox
delivers and the raw body of every ECS and ELBv2 answer are captured. Then:

- each simulated event is compared with AWS's published samples of its
  detail-type (tests/fixtures/aws, sources in SOURCES.md): the same top-level
  keys; every detail field present in a sample (or in the fields AWS documents
  for the event, listed below with their source) with the same JSON type;
  enum fields holding values botocore's models (or the named AWS page) allow;
  timestamps written the way the samples write them; and every field the
  samples of the same kind (a task's state, an execution's status, ...) all
  carry, carried;
- each API answer is walked against botocore's output shape: every field a
  member of its shape, of the shape's type, enums within their values.

A failure here is a divergence of the simulator (cli/ferry_cli/sandbox) from
AWS: fix the simulator, not the check.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator
from unittest import mock

import pytest
import yaml
from botocore.session import get_session

from ferry_cli.sandbox.sandbox import REPO_ROOT, Sandbox

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "aws"
EXAMPLE = REPO_ROOT / "examples" / "sandbox"
CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 60, unhealthyThreshold: 3}}\n"
    "healthGates: {alarms: [web-5xx], bakeSeconds: 300}\n"
)
SIMULATED_SOURCES = {"aws.ecs", "aws.states", "aws.cloudwatch", "aws.s3"}  # the ECR push is the test's own input
DETAIL_TYPES = [
    "ECS Task State Change",
    "ECS Deployment State Change",
    "Step Functions Execution Status Change",
    "CloudWatch Alarm State Change",
    "Object Created",
]
API_OPERATIONS = [
    "ecs.DescribeTasks",
    "ecs.DescribeServices",
    "ecs.ListServiceDeployments",
    "ecs.DescribeServiceDeployments",
    "ecs.DescribeServiceRevisions",
    "elastic-load-balancing-v2.DescribeTargetHealth",
]

_SESSION = get_session()
ECS_MODEL = _SESSION.get_service_model("ecs")
SFN_MODEL = _SESSION.get_service_model("stepfunctions")
CW_MODEL = _SESSION.get_service_model("cloudwatch")
ELB_MODEL = _SESSION.get_service_model("elbv2")

# Fields of the ECS task state change detail AWS documents beyond the samples: the EventBridge schema
# registry's aws.ecs@ECSTaskStateChange, as published in the AWS CDK API reference
# https://docs.aws.amazon.com/cdk/api/v2/docs/@aws-cdk_mixins-preview.aws_ecs.events.ClusterEvents.ECSTaskStateChange.ECSTaskStateChangeProps.html
# (the ECS guide adds: "The health status of the event isn't provided in the task state change event").
_TASK_FIELDS = (
    "attachments attributes availabilityZone clusterArn connectivity connectivityAt "
    "containerInstanceArn containers cpu createdAt desiredStatus executionStoppedAt group lastStatus "
    "launchType memory overrides platformVersion pullStartedAt pullStoppedAt startedAt startedBy stopCode "
    "stoppedAt stoppedReason stoppingAt taskArn taskDefinitionArn updatedAt version"
).split()
_CONTAINER_FIELDS = (
    "containerArn cpu exitCode gpuIds image imageDigest lastStatus memory memoryReservation name "
    "networkBindings networkInterfaces reason runtimeId taskArn"
).split()
DOCUMENTED = {
    "ECS Task State Change": {
        *_TASK_FIELDS,
        *(f"containers[].{f}" for f in _CONTAINER_FIELDS),
        "containers[].networkInterfaces[].attachmentId",
        "containers[].networkInterfaces[].ipv6Address",
        "containers[].networkInterfaces[].privateIpv4Address",
        "attachments[].id",
        "attachments[].type",
        "attachments[].status",
        "attachments[].details",
        "attachments[].details[].name",
        "attachments[].details[].value",
        "attributes[].name",
        "attributes[].value",
        "overrides.containerOverrides",
        *(f"overrides.containerOverrides[].{f}" for f in ("command", "cpu", "environment", "memory", "name")),
    },
}
# Where a field's type is not shown by any sample (absent, or null in every one): the API shape the event's
# detail mirrors. ECS: "the detail section resembles the Task object" with ISO string timestamps (ECS guide,
# task state change events). Step Functions: the detail "provides the same information as the
# DescribeExecution API" (Step Functions guide), with epoch-millisecond timestamps as the samples show.
MIRRORED_SHAPE = {
    "ECS Task State Change": (ECS_MODEL.shape_for("Task"), "string"),
    "Step Functions Execution Status Change": (SFN_MODEL.operation_model("DescribeExecution").output_shape, "integer"),
}

# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-lifecycle-explanation.html
TASK_LIFECYCLE = {
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
}
ENUMS: dict[str, dict[str, tuple[set[str], str]]] = {
    "ECS Task State Change": {
        "lastStatus": (TASK_LIFECYCLE, "ECS guide, task lifecycle (botocore has no enum for Task.lastStatus)"),
        "containers[].lastStatus": (TASK_LIFECYCLE, "ECS guide, task lifecycle"),
        "desiredStatus": (set(ECS_MODEL.shape_for("DesiredStatus").enum), "botocore ecs DesiredStatus"),
        "stopCode": (set(ECS_MODEL.shape_for("TaskStopCode").enum), "botocore ecs TaskStopCode"),
        "launchType": (set(ECS_MODEL.shape_for("LaunchType").enum), "botocore ecs LaunchType"),
        "connectivity": (set(ECS_MODEL.shape_for("Connectivity").enum), "botocore ecs Connectivity"),
        "healthStatus": (set(ECS_MODEL.shape_for("HealthStatus").enum), "botocore ecs HealthStatus"),
        "containers[].healthStatus": (set(ECS_MODEL.shape_for("HealthStatus").enum), "botocore ecs HealthStatus"),
        "attachments[].type": (
            {"eni"},
            "every published task event sample (the API's DescribeTasks says "
            "ElasticNetworkInterface; the event says eni)",
        ),
        "attachments[].status": (
            {"PRECREATED", "CREATED", "ATTACHING", "ATTACHED", "DETACHING", "DETACHED", "DELETED", "FAILED"},
            "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Attachment.html",
        ),
    },
    "ECS Deployment State Change": {
        "eventType": ({"INFO", "WARN", "ERROR"}, "ECS guide, service action events"),
        "eventName": (
            {"SERVICE_DEPLOYMENT_IN_PROGRESS", "SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"},
            "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_service_deployment_events.html",
        ),
    },
    "Step Functions Execution Status Change": {
        "status": (set(SFN_MODEL.shape_for("ExecutionStatus").enum), "botocore stepfunctions ExecutionStatus"),
        "redriveStatus": (
            set(SFN_MODEL.shape_for("ExecutionRedriveStatus").enum),
            "botocore stepfunctions ExecutionRedriveStatus",
        ),
    },
    "CloudWatch Alarm State Change": {
        "state.value": (set(CW_MODEL.shape_for("StateValue").enum), "botocore cloudwatch StateValue"),
        "previousState.value": (set(CW_MODEL.shape_for("StateValue").enum), "botocore cloudwatch StateValue"),
    },
    "Object Created": {
        "reason": (
            {"PutObject", "POST Object", "CopyObject", "CompleteMultipartUpload"},
            "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html",
        ),
    },
}

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?P<fraction>\.\d+)?(?P<zone>Z|[+-]\d{2}:?\d{2})$")


# ------------------------------------------------------------------ the run
@dataclass
class Captured:
    events: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[str, int, bytes]] = field(default_factory=list)  # (service.Operation, status, raw body)
    executions: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Captured:
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.events.models import EventPattern

    from ferry_cli.sandbox.run import Delivery, deliver_all, world_session

    folder = tmp_path_factory.mktemp("world")
    shutil.copy(EXAMPLE / "web-task-def.json", folder / "web-task-def.json")
    shutil.copytree(EXAMPLE / "registry", folder / "registry")
    (folder / "registry" / "web" / "ferry.yaml").write_text(CANARY)
    (folder / "world.yaml").write_text(yaml.safe_dump(yaml.safe_load((EXAMPLE / "world.yaml").read_text())))
    push = folder / "push.json"
    shutil.copy(REPO_ROOT / "events" / "ecr-push-web-v2.json", push)
    (folder / "refused.json").write_text("not a manifest")  # dropped: the sandbox's S3 Object Created event

    captured = Captured()
    deliver, answer, matches = Sandbox.deliver, BotocoreStubber.__call__, EventPattern.matches_event
    delivering = threading.local()

    # Captured as the rules see it: Sandbox.deliver first fills in what EventBridge adds (time, id, ...).
    def capture_event(sandbox: Sandbox, event: dict[str, Any]) -> list[dict[str, Any]]:
        delivering.event = None  # the attribute exists only while this thread delivers
        try:
            return deliver(sandbox, event)
        finally:
            del delivering.event

    def matched(pattern: Any, event: dict[str, Any]) -> bool:
        if hasattr(delivering, "event") and delivering.event is not event:
            delivering.event = event
            captured.events.append(json.loads(json.dumps(event)))
        return matches(pattern, event)

    def capture_answer(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        response = answer(stubber, event_name, request, **kwargs)
        operation = event_name.split(".", 1)[1]
        # Only ECS and ELBv2: reading .content consumes a streaming body (Lambda's Invoke payload).
        if response is not None and operation.split(".")[0] in ("ecs", "elastic-load-balancing-v2"):
            captured.answers.append((operation, response.status_code, response.content))
        return response

    def flip_alarm_during_bake(function: str, event: dict[str, Any]) -> None:
        """Two alarm state changes that fail nothing: into INSUFFICIENT_DATA and back to OK."""
        import boto3

        from ferry_cli.sandbox.clock import active

        if function == "BakeFunction" and "token" in event:
            cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")

            def flip() -> None:
                cloudwatch.set_alarm_state(AlarmName="web-5xx", StateValue="INSUFFICIENT_DATA", StateReason="no data")
                cloudwatch.set_alarm_state(AlarmName="web-5xx", StateValue="OK", StateReason="data again")

            active().later(60, flip)

    with (
        mock.patch.object(Sandbox, "deliver", capture_event),
        mock.patch.object(EventPattern, "matches_event", matched),
        mock.patch.object(BotocoreStubber, "__call__", capture_answer),
        world_session(folder / "world.yaml", fault_hooks=[flip_alarm_during_bake]) as (box, world),
    ):
        deliver_all(
            box,
            world,
            [Delivery("event", push, json.loads(push.read_text())), Delivery("manifest", folder / "refused.json")],
        )
        box.wait_for_executions()
        captured.executions = box.executions()
        # The answers Ferry's handlers read, asked once more now the deploy is done.
        ecs, elb = box.client("ecs"), box.client("elbv2")
        deployments = ecs.list_service_deployments(cluster="prod", service="web")["serviceDeployments"]
        described = ecs.describe_service_deployments(
            serviceDeploymentArns=[d["serviceDeploymentArn"] for d in deployments]
        )["serviceDeployments"]
        revisions = {
            r["arn"] for d in described for r in [d["targetServiceRevision"], *d.get("sourceServiceRevisions", [])]
        }
        ecs.describe_service_revisions(serviceRevisionArns=sorted(revisions))
        ecs.describe_services(cluster="prod", services=["web"])
        tasks = [
            arn
            for status in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster="prod", desiredStatus=status)["taskArns"]
        ]
        ecs.describe_tasks(cluster="prod", tasks=tasks[:100])
        [group] = elb.describe_target_groups(Names=["web-tg"])["TargetGroups"]
        elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    return captured


def simulated(run: Captured, detail_type: str) -> list[dict[str, Any]]:
    found = [e for e in run.events if e.get("detail-type") == detail_type and e.get("source") in SIMULATED_SOURCES]
    assert found, f"the run delivered no {detail_type!r} event"
    return found


# ------------------------------------------------------------------ the samples
def samples(detail_type: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(p.relative_to(FIXTURES).as_posix(), json.loads(p.read_text())) for p in sorted(FIXTURES.rglob("*.json"))]
    return [(name, event) for name, event in found if event["detail-type"] == detail_type]


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def nodes(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every object member and array item: 'containers[].name', 'state.value', ..."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            yield here, item
            yield from nodes(item, here)
    elif isinstance(value, list):
        for item in value:
            yield f"{path}[]", item
            yield from nodes(item, f"{path}[]")


def timestamp_format(value: Any) -> str | None:
    """'no fraction, Z', 'fraction, +0000', ...: the way a timestamp is written, or None for any other value."""
    match = TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    zone = match["zone"]
    zone = "Z" if zone == "Z" else ("+hh:mm" if ":" in zone else "+hhmm")
    return f"{'fraction' if match['fraction'] else 'no fraction'}, {zone}"


@dataclass
class Profile:
    """What the samples of one detail-type show at each path of their detail."""

    types: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    formats: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    everywhere: set[str] = field(default_factory=set)  # detail paths every sample has
    top_level: set[str] = field(default_factory=set)
    time_formats: set[str] = field(default_factory=set)


def profile(detail_type: str) -> Profile:
    found = samples(detail_type)
    assert found, f"no published sample of {detail_type!r}"
    shown = Profile()
    keys_of_each = []
    for _name, event in found:
        shown.top_level |= set(event)
        shown.time_formats.add(timestamp_format(event["time"]))
        keys = set()
        for path, value in nodes(event["detail"]):
            shown.types[path].add(json_type(value))
            if timestamp_format(value):
                shown.formats[path].add(timestamp_format(value))
            keys.add(path)
        keys_of_each.append(keys)
    shown.everywhere = set.intersection(*keys_of_each)
    return shown


def mirrored_type(detail_type: str, path: str) -> str | None:
    """The JSON type the API shape the detail mirrors gives `path` (None when no shape says)."""
    if detail_type not in MIRRORED_SHAPE:
        return None
    shape, timestamps = MIRRORED_SHAPE[detail_type]
    for part in path.replace("[]", ".[]").split("."):
        if part == "[]":
            if shape.type_name != "list":
                return None
            shape = shape.member
        elif shape.type_name == "structure" and part in shape.members:
            shape = shape.members[part]
        else:
            return None
    return {
        "structure": "object",
        "map": "object",
        "list": "array",
        "string": "string",
        "boolean": "boolean",
        "integer": "integer",
        "long": "integer",
        "double": "number",
        "float": "number",
        "timestamp": timestamps,
        "blob": "string",
    }[shape.type_name]


def parent_of(path: str) -> str:
    """'containers[].name' -> 'containers[]' -> 'containers' -> ''."""
    parent = re.sub(r"(\[\]|\.[^.\[]+)$", "", path)
    return "" if parent == path else parent


def inside_null(shown: Profile, detail_type: str, path: str) -> bool:
    """True for a field inside one every sample shows as null, when the API shape the detail mirrors has it
    (Step Functions' outputDetails.included: null in every published sample, a structure in DescribeExecution)."""
    parent = parent_of(path)
    while parent and parent not in shown.types:
        parent = parent_of(parent)
    return bool(parent) and shown.types[parent] == {"null"} and mirrored_type(detail_type, path) is not None


def report(problems: dict[str, str]) -> str:
    return "\n".join(f"- {where}: {what}" for where, what in sorted(problems.items()))


# ------------------------------------------------------------------ the run itself
def test_the_canary_deploy_succeeded_and_every_kind_of_event_was_delivered(run):
    assert [e["status"] for e in run.executions] == ["SUCCEEDED"], run.executions
    delivered = {e["detail-type"] for e in run.events if e.get("source") in SIMULATED_SOURCES}
    assert delivered >= set(DETAIL_TYPES)


# ------------------------------------------------------------------ a. the events against the samples
@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_simulated_events_have_the_samples_top_level_keys(run, detail_type):
    shown = profile(detail_type)
    problems = {}
    for event in simulated(run, detail_type):
        if set(event) != shown.top_level:
            problems[str(sorted(set(event) ^ shown.top_level))] = (
                f"top-level keys {sorted(event)}, samples {sorted(shown.top_level)}"
            )
        if timestamp_format(event.get("time")) not in shown.time_formats:
            problems["time"] = f"simulated {event.get('time')!r}, samples written {sorted(shown.time_formats)}"
    assert not problems, f"{detail_type}:\n{report(problems)}"


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_simulated_detail_fields_are_fields_of_the_samples_with_their_types(run, detail_type):
    shown, documented = profile(detail_type), DOCUMENTED.get(detail_type, set())
    problems = {}
    for event in simulated(run, detail_type):
        for path, value in nodes(event["detail"]):
            kind = json_type(value)
            if path not in shown.types and path not in documented and not inside_null(shown, detail_type, path):
                problems.setdefault(f"detail.{path}", f"not in any sample nor documented (simulated {value!r}, {kind})")
                continue
            allowed = shown.types.get(path, set()) - {"null"}
            if not allowed:  # no sample shows a value: the API shape the detail mirrors says
                allowed = {mirrored_type(detail_type, path)} - {None}
            if "null" in shown.types.get(path, set()):
                allowed.add("null")
            if allowed and kind not in allowed and not (kind == "integer" and "number" in allowed):
                problems.setdefault(f"detail.{path}", f"simulated {value!r} ({kind}), samples {sorted(allowed)}")
    assert not problems, f"{detail_type}:\n{report(problems)}"


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_simulated_enum_fields_hold_values_aws_allows(run, detail_type):
    problems = {}
    for event in simulated(run, detail_type):
        for path, value in nodes(event["detail"]):
            if path in ENUMS.get(detail_type, {}):
                allowed, source = ENUMS[detail_type][path]
                if value not in allowed:
                    problems.setdefault(f"detail.{path} = {value!r}", f"not one of {sorted(allowed)} ({source})")
    assert not problems, f"{detail_type}:\n{report(problems)}"


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_simulated_timestamps_are_written_as_the_samples_write_them(run, detail_type):
    shown = profile(detail_type)
    problems = {}
    for event in simulated(run, detail_type):
        for path, value in nodes(event["detail"]):
            if path in shown.formats and timestamp_format(value) not in shown.formats[path]:
                problems.setdefault(
                    f"detail.{path}", f"simulated {value!r}, samples written {sorted(shown.formats[path])}"
                )
    assert not problems, f"{detail_type}:\n{report(problems)}"


def kind_of(event: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two events of one detail-type comparable field for field: the task's state and launch type,
    the deployment event's name, the execution's status, the alarm's new state."""
    detail = event["detail"]
    return {
        "ECS Task State Change": lambda: (detail.get("lastStatus"), detail.get("launchType")),
        "ECS Deployment State Change": lambda: (detail.get("eventName"),),
        "Step Functions Execution Status Change": lambda: (detail.get("status"),),
        "CloudWatch Alarm State Change": lambda: ((detail.get("state") or {}).get("value"),),
    }.get(event["detail-type"], lambda: ())()


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_simulated_events_carry_every_field_the_samples_of_their_kind_carry(run, detail_type):
    """Compared with the samples of the same kind (kind_of) when there are some, else with all of them."""
    every = {}
    for _name, published in samples(detail_type):
        every.setdefault(kind_of(published), []).append({path for path, _ in nodes(published["detail"])})
    problems = {}
    for event in simulated(run, detail_type):
        kind = kind_of(event)
        required = set.intersection(*every.get(kind, [keys for group in every.values() for keys in group]))
        present = {path for path, _ in nodes(event["detail"])}
        for path in sorted(required - present):
            if ".dimensions." in path:  # a metric's dimensions are its own names and values, not the event's fields
                continue
            parent = parent_of(path)
            if parent and parent not in present:  # reported once, at the outermost missing field
                continue
            which = f"every sample of {kind}" if kind in every else "every sample"
            problems.setdefault(f"detail.{path} ({which})", "missing from the simulated event")
    assert not problems, f"{detail_type}:\n{report(problems)}"


# ------------------------------------------------------------------ b. the API answers against botocore
def walk_json(value: Any, shape: Any, path: str, problems: dict[str, str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.setdefault(path, f"{json_type(value)}, shape {shape.name} is a structure")
            return
        names = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for key, item in value.items():
            if key not in names:
                problems.setdefault(f"{path}.{key}", f"not a member of {shape.name} (value {item!r})")
            else:
                walk_json(item, names[key], f"{path}.{key}", problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.setdefault(path, f"{json_type(value)}, shape {shape.name} is a list")
            return
        for item in value:
            walk_json(item, shape.member, f"{path}[]", problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.setdefault(path, f"{json_type(value)}, shape {shape.name} is a map")
            return
        for key, item in value.items():
            walk_json(key, shape.key, f"{path}{{key}}", problems)
            walk_json(item, shape.value, f"{path}{{}}", problems)
    else:
        expected = {
            "string": (str,),
            "blob": (str,),
            "boolean": (bool,),
            "integer": (int,),
            "long": (int,),
            "double": (int, float),
            "float": (int, float),
            "timestamp": (int, float),
        }[kind]
        if not isinstance(value, expected) or (isinstance(value, bool) and kind != "boolean"):
            problems.setdefault(path, f"{value!r} ({json_type(value)}), shape {shape.name} is a {kind}")
        elif kind == "string" and shape.enum and value not in shape.enum:
            problems.setdefault(f"{path} = {value!r}", f"not one of {shape.name} {shape.enum}")


def walk_xml(element: ET.Element, shape: Any, path: str, problems: dict[str, str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        names = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for child in element:
            tag = child.tag.split("}")[-1]
            if tag not in names:
                problems.setdefault(f"{path}.{tag}", f"not a member of {shape.name}")
            else:
                walk_xml(child, names[tag], f"{path}.{tag}", problems)
    elif kind == "list":
        item_name = shape.member.serialization.get("name", "member")
        for child in element:
            tag = child.tag.split("}")[-1]
            if tag != item_name:
                problems.setdefault(f"{path}.{tag}", f"a list of {shape.name} holds <{item_name}> elements")
            else:
                walk_xml(child, shape.member, f"{path}[]", problems)
    elif kind == "map":
        problems.setdefault(path, "maps are not checked in XML answers")
    else:
        text = element.text or ""
        if len(element):
            problems.setdefault(path, f"elements inside the {kind} {shape.name}")
        elif kind in ("integer", "long") and not re.fullmatch(r"-?\d+", text):
            problems.setdefault(path, f"{text!r}, shape {shape.name} is an {kind}")
        elif kind == "boolean" and text not in ("true", "false"):
            problems.setdefault(path, f"{text!r}, shape {shape.name} is a boolean")
        elif kind == "string" and shape.enum and text not in shape.enum:
            problems.setdefault(f"{path} = {text!r}", f"not one of {shape.name} {shape.enum}")


@pytest.mark.parametrize("operation", API_OPERATIONS)
def test_api_answers_are_botocore_output_shapes(run, operation):
    service, name = operation.split(".")
    bodies = [body for op, status, body in run.answers if op == operation and status == 200]
    assert bodies, f"no successful {operation} answer was captured"
    output = (ECS_MODEL if service == "ecs" else ELB_MODEL).operation_model(name).output_shape
    problems: dict[str, str] = {}
    for body in bodies:
        if service == "ecs":
            walk_json(json.loads(body), output, name, problems)
            continue
        root = ET.fromstring(body)
        assert root.tag.split("}")[-1] == f"{name}Response", root.tag
        for child in root:
            tag = child.tag.split("}")[-1]
            if tag == output.serialization["resultWrapper"]:
                walk_xml(child, output, name, problems)
            elif tag != "ResponseMetadata":
                problems.setdefault(f"{name}Response.{tag}", "neither the result nor ResponseMetadata")
    assert not problems, f"{operation}:\n{report(problems)}"
