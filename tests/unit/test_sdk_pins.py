"""The layer ships its own AWS SDK, and Ferry calls only what that SDK has.

The Lambda runtime's bundled boto3 lags behind (AWS updates it on its own schedule), and Ferry calls
ECS APIs from 2025 (ListServiceDeployments, DescribeServiceDeployments, StopServiceDeployment), so the
layer pins boto3 and botocore in layers/ferry/requirements.txt (generated, with hashes, from
requirements.in). These tests check:

1. the dev venv has exactly the layer's pins (the Makefile installs them first, hash-checked, then
   constrains everything else to them), so every other test runs against the layer's SDK;
2. every AWS operation, paginator and waiter that the library (layers/ferry/ferry/**/*.py) and the
   handlers (functions/*/app.py) call exists in that botocore's service models.

How the scanner finds the calls (statically, with `ast`; nothing is imported or run):

- A client is made by a call `<anything>.client("svc")` or `<anything>.regional_client("svc", region)`
  with the service as a string literal: `aws.client`, `aws.regional_client`, and verify's `cx.client` /
  `self.client` (its `_Aws` wrapper, same signature). A client made from a variable service name is
  invisible to the scanner, so it is only allowed where `DYNAMIC_CLIENT_FACTORIES` says (the factories
  themselves); anywhere else fails the test.
- A name is a client of a service when it is bound to such a call in its function (`ecs = aws.client("ecs")`,
  `ecs, elb = aws.client("ecs"), aws.client("elbv2")`, `c = aws.client("logs") if x else
  aws.regional_client("logs", r)`), or in an enclosing function (closures), or when it is a parameter
  that a call in the same module passes a client to (`_health_settings(elb, ...)` binds the parameter
  `elb` of `def _health_settings(elb: Any, ...)` to the caller's `elb`: ELBv2). Call sites are followed
  to a fixpoint, so clients passed down several helpers are found too.
- A parameter no call in its module passes a client to (a helper called from another module) falls
  back on its name, in `PARAMETER_NAMES` (ecs, elb, elbv2, ecr, sfn, ddb, dynamodb, logs, cw, cloudwatch,
  s3, ssm, sm, secretsmanager, iam, cfn, events, sns, sts), but only if it has no annotation or the
  annotation `Any`: `logs: dict[str, str]` is a dict, not a CloudWatch Logs client.
- A helper that takes a client and an operation's python name (`OPERATION_HELPERS`: `aws.items(ecs,
  "list_tasks", "taskArns", ...)`, which reads every page) counts as a call of that operation; a name
  that is not a string literal there is not allowed (the scanner could not check it).
- Then every method call on a client is checked: `ecs.list_tasks(...)` or `aws.client("ecs").run_task(...)`
  must be an operation of the service (the python name botocore's `xform_name` makes of it);
  `get_paginator("x")` / `can_paginate("x")` need an operation x the client can paginate, `get_waiter("x")`
  a waiter x; the few other client methods (`close`, `generate_presigned_url`, s3's transfer helpers
  boto3 adds) must exist on a real client. Attributes that are not calls (`.meta`, `.exceptions`) are
  not checked.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import boto3
import botocore
import botocore.session
import pytest
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "ferry"
REQUIREMENTS = LAYER / "requirements.txt"
REQUIREMENTS_IN = LAYER / "requirements.in"

CLIENT_FACTORIES = {"client", "regional_client"}
# Where a client may be made from a service name held in a variable: (path from the repo root, qualified function).
DYNAMIC_CLIENT_FACTORIES = {
    ("layers/ferry/ferry/aws/__init__.py", "client"),
    ("layers/ferry/ferry/aws/__init__.py", "regional_client"),
    ("layers/ferry/ferry/steps/verify.py", "_Aws.client"),
}
PARAMETER_NAMES = {
    "ecs": "ecs",
    "elb": "elbv2",
    "elbv2": "elbv2",
    "ecr": "ecr",
    "sfn": "stepfunctions",
    "ddb": "dynamodb",
    "dynamodb": "dynamodb",
    "logs": "logs",
    "cw": "cloudwatch",
    "cloudwatch": "cloudwatch",
    "s3": "s3",
    "ssm": "ssm",
    "sm": "secretsmanager",
    "secretsmanager": "secretsmanager",
    "iam": "iam",
    "cfn": "cloudformation",
    "events": "events",
    "sns": "sns",
    "sts": "sts",
}
# Functions called as `helper(client, "operation", ...)`, as `aws.helper(...)` or by their bare name.
OPERATION_HELPERS = {"items"}
PAGINATOR_METHODS = {"get_paginator", "can_paginate"}
WAITER_METHODS = {"get_waiter"}
# Client methods that are not operations: botocore's own, and the transfer helpers boto3 adds to s3.
OTHER_CLIENT_METHODS = {
    "close",
    "generate_presigned_url",
    "generate_presigned_post",
    "upload_file",
    "upload_fileobj",
    "download_file",
    "download_fileobj",
    "copy",
}


# ------------------------------------------------------------------ the layer's pins


def pins(path: Path) -> dict[str, str]:
    """name (normalised) -> version of every `name==version` line."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


LAYER_PINS = pins(REQUIREMENTS)


def test_layer_ships_boto3_and_botocore_pinned_with_hashes():
    assert {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil"} <= set(LAYER_PINS)
    # pip-compile --generate-hashes: every requirement, transitive ones included, is followed by its hashes
    entries = re.split(r"\n(?=[A-Za-z0-9])", REQUIREMENTS.read_text().split("\n\n")[-1].strip())
    for entry in entries:
        if entry.startswith("#"):
            continue
        assert "--hash=sha256:" in entry, f"no hash for {entry.splitlines()[0]} in {REQUIREMENTS}"
    assert len(entries) >= len(LAYER_PINS)
    # requirements.txt was compiled from requirements.in as it is now
    for name, version in pins(REQUIREMENTS_IN).items():
        assert LAYER_PINS.get(name) == version, (
            f"{name}=={version} in requirements.in but {LAYER_PINS.get(name)} in requirements.txt: "
            "regenerate it (the command is in its header)"
        )


def test_dev_venv_has_the_layers_sdk():
    """The tests run against the SDK the layer ships: `make` installs the layer's pins into .venv."""
    assert botocore.__version__ == LAYER_PINS["botocore"], "the dev venv is stale: rm .venv/.installed && make"
    assert boto3.__version__ == LAYER_PINS["boto3"], "the dev venv is stale: rm .venv/.installed && make"


@pytest.mark.parametrize("name", sorted(LAYER_PINS))
def test_dev_venv_has_every_layer_pin(name):
    assert importlib.metadata.version(name) == LAYER_PINS[name], "the dev venv is stale: rm .venv/.installed && make"


# ------------------------------------------------------------------ the scanner


@dataclass(frozen=True)
class Call:
    service: str
    kind: str  # "operation", "paginator", "waiter", "method" (a client method that is not an operation)
    name: str  # the python name: list_tasks, describe_target_health, services_stable, close
    where: str  # path:line


@dataclass
class Scan:
    calls: list[Call] = field(default_factory=list)
    # what the scanner cannot check: a client made from a variable service name, a paginator or waiter
    # asked for by a variable name, each as (where, qualified function, what)
    dynamic: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _Scope:
    node: ast.AST
    parent: _Scope | None
    qualname: str
    params: list[tuple[str, ast.expr | None]]  # name, annotation
    env: dict[str, frozenset[str]] = field(default_factory=dict)


def _own_nodes(node: ast.AST):
    """The nodes of one function (or module) body in source order, without nested functions and classes."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # a nested def's decorators and defaults run in this scope; its body is a scope of its own
            for d in child.decorator_list:
                yield from _walk(d)
            if not isinstance(child, ast.ClassDef):
                for d in child.args.defaults + [d for d in child.args.kw_defaults if d is not None]:
                    yield from _walk(d)
            continue
        yield child
        yield from _own_nodes(child)


def _walk(node: ast.AST):
    yield node
    yield from _own_nodes(node)


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, ast.expr | None]]:
    a = fn.args
    return [(p.arg, p.annotation) for p in a.posonlyargs + a.args + a.kwonlyargs]


def _scopes(tree: ast.Module) -> list[_Scope]:
    scopes = [_Scope(tree, None, "", [])]

    def visit(node: ast.AST, scope: _Scope, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                s = _Scope(child, scope, prefix + child.name, _params(child))
                scopes.append(s)
                visit(child, s, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                # a class body's names are not seen by its methods: they hang off the enclosing scope
                visit(child, scope, prefix + child.name + ".")
            else:
                visit(child, scope, prefix)

    visit(tree, scopes[0], "")
    return scopes


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _client_service(node: ast.expr) -> str | None:
    """The service name, e.g. "ecs" for aws.client("ecs"), aws.regional_client("ecs", r), cx.client("ecs", r), self.client("ecs")."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLIENT_FACTORIES
        and node.args
    ):
        return _literal(node.args[0])
    return None


def _is_any(annotation: ast.expr | None) -> bool:
    return (
        annotation is None
        or (isinstance(annotation, ast.Name) and annotation.id == "Any")
        or (isinstance(annotation, ast.Attribute) and annotation.attr == "Any")
        or _literal(annotation) == "Any"
    )


def scan_source(source: str, path: str) -> Scan:
    tree = ast.parse(source, filename=path)
    scopes = _scopes(tree)
    functions: dict[str, list[_Scope]] = defaultdict(list)
    for s in scopes[1:]:
        functions[s.node.name].append(s)
    passed: dict[tuple[int, str], set[str]] = defaultdict(set)  # (id of scope, parameter) -> services

    def resolve(node: ast.expr, env: dict[str, frozenset[str]]) -> frozenset[str]:
        if (service := _client_service(node)) is not None:
            return frozenset({service})
        if isinstance(node, ast.Name):
            return env.get(node.id, frozenset())
        if isinstance(node, ast.IfExp):
            return resolve(node.body, env) | resolve(node.orelse, env)
        if isinstance(node, ast.NamedExpr):
            return resolve(node.value, env)
        return frozenset()

    def bind(target: ast.expr, value: ast.expr | None, env: dict, local: dict) -> None:
        if isinstance(target, ast.Name):
            services = resolve(value, env) if value is not None else frozenset()
            local[target.id] = local.get(target.id, frozenset()) | services
            env[target.id] = local[target.id]
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = (
                value.elts
                if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                else [None] * len(target.elts)
            )
            for t, v in zip(target.elts, values):
                bind(t, v, env, local)
        elif isinstance(target, ast.Starred):
            bind(target.value, None, env, local)

    def compute_envs() -> None:
        for s in scopes:  # parents come before their children
            env = dict(s.parent.env) if s.parent else {}
            local: dict[str, frozenset[str]] = {}
            for name, annotation in s.params:
                services = passed.get((id(s), name))
                if not services and name in PARAMETER_NAMES and _is_any(annotation):
                    services = {PARAMETER_NAMES[name]}
                env[name] = frozenset(services or ())
            for _ in range(2):  # twice, so an alias bound before its source (in a loop) is seen too
                for node in _own_nodes(s.node):
                    if isinstance(node, ast.Assign):
                        for target in node.targets:
                            bind(target, node.value, env, local)
                    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                        bind(node.target, node.value, env, local)
                    elif isinstance(node, ast.NamedExpr):
                        bind(node.target, node.value, env, local)
                    elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                        bind(node.target, None, env, local)
                    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                        bind(node.optional_vars, None, env, local)
                    elif isinstance(node, ast.ExceptHandler) and node.name:
                        local.setdefault(node.name, frozenset())
                        env[node.name] = local[node.name]
            s.env = env

    # Follow clients passed to functions of the same module, to a fixpoint.
    while True:
        compute_envs()
        before = sum(len(v) for v in passed.values())
        for s in scopes:
            for node in _own_nodes(s.node):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                for callee in functions.get(node.func.id, []):
                    names = [p for p, _ in callee.params]
                    args = [
                        (names[i], a) for i, a in enumerate(node.args[: len(names)]) if not isinstance(a, ast.Starred)
                    ]
                    args += [(k.arg, k.value) for k in node.keywords if k.arg in names]
                    for name, arg in args:
                        passed[(id(callee), name)] |= resolve(arg, s.env)
        if sum(len(v) for v in passed.values()) == before:
            break

    scan = Scan()
    for s in scopes:
        for node in _own_nodes(s.node):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path}:{node.lineno}"
            helper = (
                node.func.id
                if isinstance(node.func, ast.Name)
                else (node.func.attr if isinstance(node.func, ast.Attribute) else None)
            )
            if helper in OPERATION_HELPERS and len(node.args) >= 2:
                for service in sorted(resolve(node.args[0], s.env)):
                    if (name := _literal(node.args[1])) is None:
                        scan.dynamic.append((where, s.qualname, f"a {service} operation named by a variable"))
                    else:
                        scan.calls.append(Call(service, "operation", name, where))
            if not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr in CLIENT_FACTORIES and node.args and _literal(node.args[0]) is None:
                scan.dynamic.append(
                    (where, s.qualname, f"a client made by {ast.unparse(node.func)}({ast.unparse(node.args[0])}, ...)")
                )
                continue
            method = node.func.attr
            for service in sorted(resolve(node.func.value, s.env)):
                if method in PAGINATOR_METHODS | WAITER_METHODS:
                    name = _literal(node.args[0]) if node.args else None
                    kind = "paginator" if method in PAGINATOR_METHODS else "waiter"
                    if name is None:
                        scan.dynamic.append((where, s.qualname, f"a {service} {kind} named by a variable"))
                    else:
                        scan.calls.append(Call(service, kind, name, where))
                elif method in OTHER_CLIENT_METHODS:
                    scan.calls.append(Call(service, "method", method, where))
                else:
                    scan.calls.append(Call(service, "operation", method, where))
    return scan


def scan_files(paths: list[Path]) -> Scan:
    scan = Scan()
    for p in paths:
        one = scan_source(p.read_text(), p.relative_to(ROOT).as_posix())
        scan.calls += one.calls
        scan.dynamic += one.dynamic
    return scan


def ferry_sources() -> list[Path]:
    return sorted((LAYER / "ferry").rglob("*.py")) + sorted(ROOT.glob("functions/*/app.py"))


# ------------------------------------------------------------------ checking against botocore


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _client(service: str):
    # a boto3 client, so boto3's additions (s3's transfer helpers) are there; nothing is sent
    # (a boto3 Session of its own: boto3 adds s3's helpers to the botocore session it is given, once)
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client(service)


@cache
def _operations(service: str) -> frozenset[str]:
    return frozenset(xform_name(op) for op in _session().get_service_model(service).operation_names)


def problems(scan: Scan) -> list[str]:
    """Each call the pinned botocore does not have, as 'path:line: what'."""
    available = set(_session().get_available_services())
    found = []
    for c in scan.calls:
        if c.service not in available:
            found.append(f"{c.where}: botocore {botocore.__version__} has no service {c.service!r}")
        elif c.kind == "operation" and c.name not in _operations(c.service):
            found.append(f"{c.where}: {c.service} has no operation {c.name}")
        elif c.kind == "paginator" and not (
            c.name in _operations(c.service) and _client(c.service).can_paginate(c.name)
        ):
            found.append(f"{c.where}: {c.service} has no paginator {c.name}")
        elif c.kind == "waiter" and c.name not in _client(c.service).waiter_names:
            found.append(f"{c.where}: {c.service} has no waiter {c.name}")
        elif c.kind == "method" and not callable(getattr(_client(c.service), c.name, None)):
            found.append(f"{c.where}: a {c.service} client has no method {c.name}")
    return found


@pytest.fixture(scope="module")
def ferry_scan() -> Scan:
    return scan_files(ferry_sources())


def test_every_aws_call_exists_in_the_pinned_botocore(ferry_scan):
    assert problems(ferry_scan) == [], f"not in botocore {botocore.__version__} (layers/ferry/requirements.txt)"


def test_scanner_sees_every_client(ferry_scan):
    """A client made from a variable service name, or a paginator named by a variable, would not be checked."""
    unchecked = [
        d
        for d in ferry_scan.dynamic
        if (d[0].rsplit(":", 1)[0], d[1]) not in DYNAMIC_CLIENT_FACTORIES or "client made" not in d[2]
    ]
    assert unchecked == []


def test_scanner_finds_the_calls_ferry_makes(ferry_scan):
    """So a broken scanner cannot pass by finding nothing."""
    found = {(c.service, c.name) for c in ferry_scan.calls}
    ecs = {op for service, op in found if service == "ecs"}
    # the 2025 deployment APIs the layer's SDK is pinned for, and the task calls
    assert {
        "list_service_deployments",
        "describe_service_deployments",
        "stop_service_deployment",
        "list_tasks",
        "describe_tasks",
        "run_task",
        "stop_task",
        "update_service",
        "register_task_definition",
        "describe_services",
    } <= ecs
    assert {
        ("elbv2", "describe_target_groups"),  # through _health_settings(elb: Any, ...): a parameter
        ("elbv2", "describe_target_health"),
        ("ecr", "describe_images"),
        ("ecr", "batch_get_image"),  # ecr = cx.client("ecr", ref.region): verify's own client wrapper
        ("stepfunctions", "send_task_success"),
        ("stepfunctions", "get_execution_history"),  # a paginator
        ("logs", "get_log_events"),  # client = aws.client("logs") if ... else aws.regional_client("logs", ...)
        ("secretsmanager", "get_secret_value"),
        ("dynamodb", "update_item"),
        ("s3", "list_objects_v2"),
    } <= found
    assert {c.service for c in ferry_scan.calls} >= {
        "ecs",
        "elbv2",
        "ecr",
        "stepfunctions",
        "dynamodb",
        "s3",
        "logs",
        "cloudwatch",
        "events",
        "sns",
        "ssm",
        "iam",
        "secretsmanager",
        "cloudformation",
        "sts",
    }
    assert len(ferry_scan.calls) > 50


SNIPPET = """
from typing import Any
from ferry import aws

def rollout(cluster):
    ecs, elb = aws.client("ecs"), aws.client("elbv2")
    ecs.list_tasks(cluster=cluster)
    ecs.list_taskz(cluster=cluster)
    aws.client("ecs").describe_tasks(cluster=cluster, tasks=[])
    aws.client("ecs").stop_service_deploymentz(serviceDeploymentArn="x")
    elb.get_paginator("describe_target_groups").paginate()
    elb.get_paginator("describe_target_health")  # an operation, but not one botocore can paginate
    elb.can_paginate("describe_target_healthz")
    _settings(elb, [])
    _tail(aws.regional_client("logs", "eu-west-1"), "g")
    aws.items(ecs, "list_service_deployments", "serviceDeployments", cluster=cluster)
    aws.items(aws.client("ecs"), "list_service_deploymentz", "serviceDeployments")
    {}.items()
    ecs.get_waiter("services_stable")
    ecs.get_waiter("services_stablez")
    print(ecs.meta.region_name, ecs.exceptions.ClientException)

def _settings(balancer: Any, groups):
    balancer.describe_target_groups(TargetGroupArns=groups)
    balancer.describe_target_groupz(TargetGroupArns=groups)

def _tail(c, group):
    def inner():
        return c.get_log_eventz(logGroupName=group)
    return c.get_log_events(logGroupName=group), inner

def by_name(sm, logs: dict[str, str]):
    sm.get_secret_value(SecretId="x")
    sm.get_secret_valuez(SecretId="x")
    logs.get("region")
    aws.client("sns").publishh(TopicArn="x")
    aws.client("s3").upload_file("f", "b", "k")
    aws.client("nosuchservice").do_it()

def made(service):
    return aws.client(service).list_things()
"""


def test_scanner_catches_calls_botocore_does_not_have():
    scan = scan_source(SNIPPET, "snippet.py")
    lines = SNIPPET.splitlines()

    def line(text: str) -> int:
        return next(i for i, t in enumerate(lines, 1) if text in t)

    assert sorted(problems(scan)) == sorted(
        [
            f"snippet.py:{line('list_taskz')}: ecs has no operation list_taskz",
            f"snippet.py:{line('stop_service_deploymentz')}: ecs has no operation stop_service_deploymentz",
            f"snippet.py:{line('get_paginator("describe_target_health")')}: elbv2 has no paginator describe_target_health",
            f"snippet.py:{line('describe_target_healthz')}: elbv2 has no paginator describe_target_healthz",
            f"snippet.py:{line('services_stablez')}: ecs has no waiter services_stablez",
            f"snippet.py:{line('describe_target_groupz')}: elbv2 has no operation describe_target_groupz",
            f"snippet.py:{line('get_log_eventz')}: logs has no operation get_log_eventz",
            f"snippet.py:{line('get_secret_valuez')}: secretsmanager has no operation get_secret_valuez",
            f"snippet.py:{line('publishh')}: sns has no operation publishh",
            f"snippet.py:{line('list_service_deploymentz')}: ecs has no operation list_service_deploymentz",
            f"snippet.py:{line('nosuchservice')}: botocore {botocore.__version__} has no service 'nosuchservice'",
        ]
    )
    found = {(c.service, c.kind, c.name) for c in scan.calls}
    assert {
        ("ecs", "operation", "list_tasks"),
        ("ecs", "operation", "describe_tasks"),
        ("elbv2", "paginator", "describe_target_groups"),
        ("elbv2", "operation", "describe_target_groups"),
        ("logs", "operation", "get_log_events"),
        ("ecs", "waiter", "services_stable"),
        ("ecs", "operation", "list_service_deployments"),
        ("secretsmanager", "operation", "get_secret_value"),
        ("s3", "method", "upload_file"),
    } <= found
    assert not any(c.name == "get" for c in scan.calls)  # logs: dict[str, str] is no client
    assert not any(c.name == "paginate" for c in scan.calls)  # a paginator's method, not the client's
    assert [(d[1], d[2]) for d in scan.dynamic] == [("made", "a client made by aws.client(service, ...)")]
