"""The documentation against the code: docs/errors.md, README.md and the examples.

- docs/errors.md has a section for every Error an execution can end with (the
  Fail states' Error, and every error a Task can raise that a Catch routes to a
  Fail state, ErrorPath included), for every class in errors.py, and for no
  other name; the states it names exist.
- README.md names only paths that exist, `make` targets the Makefile has,
  Errors that exist and states the state machine has.
- examples/service/ is a valid config whose template renders into a valid
  RegisterTaskDefinition input; examples/github-actions/ writes a manifest that
  validates, and tags images so that the config's trigger matches (or not).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ferry import config, taskdef
from ferry.aws import images
from ferry.triggers import manifest
from ferry.steps import render
from ferry.config import templating, validation

from ..asl_errors import LAMBDA_ERRORS, LAMBDA_SERVICE_ERRORS, STATES_ERRORS

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "deploy.asl.json").read_text())
ERRORS_PY = ROOT / "layers" / "ferry" / "ferry" / "errors.py"
LIBRARY = ROOT / "layers" / "ferry" / "ferry"
ERRORS_MD = (ROOT / "docs" / "errors.md").read_text()
README = (ROOT / "README.md").read_text()
SERVICE = ROOT / "examples" / "service"
WORKFLOW = ROOT / "examples" / "github-actions" / "deploy.yml"

# ---------------------------------------------------------------- what the code can end with

CONFIG_ERRORS = {"ServiceNotRegistered", "ConfigInvalid", "TemplateUnresolved"}  # config.load (Jsonnet: templating)

# Every state whose Catch writes the error into $.failure (what `Deploy failed`'s ErrorPath
# reads, and what RolledBack's Cause starts with) or $.rollbackFailure (RollbackFailed's
# Cause), and the errors its step can raise, read from the handlers and the library.
# Names of Step Functions and Lambda themselves are listed where the state can produce them
# (a Retry that runs out, a TimeoutSeconds). A new catching state must be added here and
# documented in docs/errors.md.
RAISES: dict[str, set[str]] = {
    # $.failure -> Deploy failed (ErrorPath)
    "Take the deploy lock for this service": CONFIG_ERRORS
    | {
        "ClusterNotAllowed",
        "ServiceLocked",
        "LockUnavailable",
        "InputInvalid",
        "LockReleased",
        "States.HeartbeatTimeout",
        "States.Timeout",
    },
    "Find the revision to roll back to": CONFIG_ERRORS | {"ClusterNotAllowed", "NothingToRollBack"},
    "Render the new task definition and diff it": CONFIG_ERRORS
    | {"ClusterNotAllowed", "InputInvalid", "ImageNotFound", "ServiceNotFound", "TaskDefinitionInvalid"},
    "Verify secrets, images and roles": {"VerifyFailed", "InputInvalid"},
    "Register the new revision": {"TaskDefinitionInvalid"},
    "Run the migrations in order": {
        "MigrationFailed",
        "MigrationNotStarted",
        "MigrationTimedOut",
        "ServiceNotFound",
        "States.HeartbeatTimeout",
        "States.Timeout",
    },
    "Start the canary tasks": {"CanaryCrashed", "ServiceNotFound"},
    "Check the canary": {"CanaryCrashed", "CanaryUnhealthy", "PhaseTimedOut", "ServiceNotFound"},
    # $.failure -> Deployed, but the lock was not released (ErrorPath)
    "Release the deploy lock": {"LockUnavailable", "Sandbox.Timedout", "Lambda.Unknown"},
    # $.failure -> the rollback -> Rolled back (the Cause starts with it)
    "Update the service to the new revision": {"DeploymentFailed", "ServiceNotFound"},
    "Wait for ECS to finish the deployment": {
        "DeploymentFailed",
        "PhaseTimedOut",
        "ServiceNotFound",
        "States.Timeout",
        "States.HeartbeatTimeout",
    },
    "Bake while watching the alarms": {"AlarmTriggered"},
    "Check the alarms as the bake ends": {"AlarmTriggered"},
    # $.rollbackFailure -> Rollback failed (the Cause has it)
    "Roll back to the previous revision": {"DeploymentFailed", "ServiceNotFound"},
    "Wait for ECS to finish the rollback": {
        "DeploymentFailed",
        "PhaseTimedOut",
        "ServiceNotFound",
        "States.Timeout",
        "States.HeartbeatTimeout",
    },
    "Deregister the failed revision": CONFIG_ERRORS,
}
# CamelCase names docs/errors.md may put in backticks that are not Errors of Ferry's: AWS's
# error codes and stop codes, API and ASL names.
NOT_ERRORS = {
    "AccessDeniedException",
    "ThrottlingException",
    "CannotPullContainerError",
    "TaskFailedToStart",
    "ErrorPath",
    "ExecutionFailed",
    "RegisterTaskDefinition",
    "RunTask",
    "TimeoutSeconds",
    "UserInitiated",
    "ServiceSchedulerInitiated",
    "SpotInterruption",
    "TerminationNotice",
    "InfrastructureHealth",
    "EssentialContainerExited",
}


def all_states(states: dict[str, Any], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every state by name, those inside Map and Parallel states too."""
    into = {} if into is None else into
    for name, state in states.items():
        into[name] = state
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                all_states(state[key]["States"], into)
        for branch in state.get("Branches", []):
            all_states(branch["States"], into)
    return into


STATES = all_states(ASL["States"])
TOP = ASL["States"]


def nested(name: str) -> set[str]:
    """The state and the states inside it (a Map's iterator)."""
    state = TOP.get(name, STATES.get(name, {}))
    inner = state.get("Iterator") or state.get("ItemProcessor")
    return {name} | (set(all_states(inner["States"])) if inner else set())


def ferry_error_classes() -> set[str]:
    tree = ast.parse(ERRORS_PY.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)} - {"FerryError"}


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def literal_error_names() -> set[str]:
    """Error names the code writes as strings: `error="X"` (a task token failed with it),
    `error, what = "X", ...` and {"error": "X"}."""
    found: set[str] = set()
    files = list(LIBRARY.glob("*.py")) + list((ROOT / "functions").glob("*/app.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "error" and _str(node.value):
                found.add(_str(node.value))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "error" and _str(node.value):
                        found.add(_str(node.value))
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for t, v in zip(target.elts, node.value.elts):
                            if isinstance(t, ast.Name) and t.id == "error" and _str(v):
                                found.add(_str(v))
            elif isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if k is not None and _str(k) == "error" and _str(v):
                        found.add(_str(v))
    return found


def catching_states() -> dict[str, str]:
    """State -> the ResultPath its Catch writes the error to, for $.failure and $.rollbackFailure."""
    found = {}
    for name, state in STATES.items():
        for catch in state.get("Catch", []):
            if catch.get("ResultPath") in ("$.failure", "$.rollbackFailure"):
                found[name] = catch["ResultPath"]
    return found


def _successors(state: dict[str, Any]) -> list[str]:
    nxt = [state[k] for k in ("Next", "Default") if k in state]
    nxt += [choice["Next"] for choice in state.get("Choices", [])]
    # A Catch that writes $.failure replaces the error: its errors are that state's own.
    nxt += [c["Next"] for c in state.get("Catch", []) if c.get("ResultPath") != "$.failure"]
    return nxt


def error_path_sources() -> dict[str, set[str]]:
    """State -> the Fail states with ErrorPath $.failure.Error its $.failure Catch leads to."""
    found: dict[str, set[str]] = {}
    for name, state in TOP.items():
        for catch in state.get("Catch", []):
            if catch.get("ResultPath") != "$.failure":
                continue
            seen, stack = set(), [catch["Next"]]
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                target = TOP[current]
                if target["Type"] == "Fail":
                    if target.get("ErrorPath") == "$.failure.Error":
                        found.setdefault(name, set()).add(current)
                    continue
                stack.extend(_successors(target))
    return found


FAIL_ERRORS = {s["Error"] for s in STATES.values() if s["Type"] == "Fail" and "Error" in s}
FERRY_ERRORS = ferry_error_classes()
LITERAL_ERRORS = literal_error_names()
REQUIRED = FERRY_ERRORS | LITERAL_ERRORS | FAIL_ERRORS | set().union(*RAISES.values()) | LAMBDA_SERVICE_ERRORS

# ---------------------------------------------------------------- docs/errors.md, parsed

_TICKED = re.compile(r"`([^`]+)`")


def sections(text: str) -> dict[str, str]:
    """### heading -> its text, for the headings that name Errors (in backticks)."""
    found = {}
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # a "# comment" in a code block is no heading
    parts = re.split(r"^(#{1,3} .*)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2]):
        if heading.startswith("### "):
            for name in _TICKED.findall(heading):
                found[name] = body
    return found


SECTIONS = sections(ERRORS_MD)


def raised_by(body: str) -> list[str]:
    match = re.search(r"\*\*Raised by:\*\*(.*?)(?:\n\n|\Z)", body, flags=re.S)
    return _TICKED.findall(match.group(1)) if match else []


def index_rows() -> list[list[str]]:
    block = ERRORS_MD.split("## Index", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


# ---------------------------------------------------------------- the Errors


def test_every_catching_state_is_accounted_for():
    assert set(catching_states()) == set(RAISES), (
        "a state catches errors into $.failure or $.rollbackFailure: list what it can raise in RAISES "
        "and document each Error in docs/errors.md"
    )


def test_the_error_path_fail_states_are_fed_by_known_states():
    sources = error_path_sources()
    assert sources, "no Fail state takes its Error from $.failure.Error any more: update this test"
    assert set(sources) <= set(RAISES)
    assert set().union(*sources.values()) == {
        name for name, s in TOP.items() if s["Type"] == "Fail" and s.get("ErrorPath") == "$.failure.Error"
    }


def test_every_name_in_the_table_exists():
    for state, names in RAISES.items():
        for name in names:
            assert name in FERRY_ERRORS or name in LITERAL_ERRORS or name in STATES_ERRORS or name in LAMBDA_ERRORS, (
                f"{state}: {name} is no error the code or Step Functions raises"
            )


def test_retries_and_timeouts_that_run_out_are_in_the_table():
    for state, names in RAISES.items():
        for inner in nested(state):
            spec = STATES[inner]
            caught_elsewhere = {
                e
                for c in spec.get("Catch", [])
                if c.get("ResultPath") not in ("$.failure", "$.rollbackFailure")
                for e in c["ErrorEquals"]
            }
            for retry in spec.get("Retry", []):
                if retry.get("MaxAttempts", 3) == 0:  # a retrier that never retries (Ferry's verdicts are final)
                    continue
                for name in retry["ErrorEquals"]:
                    if name in LAMBDA_SERVICE_ERRORS or name == "States.ALL" or name in caught_elsewhere:
                        continue
                    assert name in names, f"{inner} retries {name}, which ends the state when its retries run out"
            if ("TimeoutSeconds" in spec or "TimeoutSecondsPath" in spec) and "States.Timeout" not in caught_elsewhere:
                assert "States.Timeout" in names, f"{inner} has a timeout"


def _handler_sources() -> dict[str, str]:
    """Function logical id (from DefinitionSubstitutions' names) -> the text of its handler and the library."""
    library = "\n".join(p.read_text() for p in LIBRARY.glob("*.py"))
    out = {}
    for folder in (ROOT / "functions").iterdir():
        app = folder / "app.py"
        if app.exists():
            logical = "".join(part.capitalize() for part in folder.name.split("_")) + "FunctionArn"
            out[logical] = app.read_text() + "\n" + library
    return out


def test_every_ferry_error_in_the_table_is_raised_where_the_state_runs():
    sources = _handler_sources()
    for state, names in RAISES.items():
        text = ""
        for inner in nested(state):
            spec = STATES[inner]
            ref = spec.get("Resource", "") + json.dumps(spec.get("Parameters", {}))
            text += "".join(src for key, src in sources.items() if "${" + key + "}" in ref)
        assert text, f"{state}: no Lambda function found"
        for name in names & (FERRY_ERRORS | LITERAL_ERRORS):
            assert re.search(rf"\b{name}\b", text), f"{state}: nothing in its function or the library names {name}"


def test_every_error_has_a_section_in_docs_errors_md():
    missing = sorted(REQUIRED - set(SECTIONS))
    assert not missing, f"docs/errors.md has no ### section for {missing}"


def test_docs_errors_md_names_no_error_that_does_not_exist():
    assert set(SECTIONS) <= REQUIRED, sorted(set(SECTIONS) - REQUIRED)
    for row in index_rows():
        for name in _TICKED.findall(row[0]):
            assert name in REQUIRED, f"index row {row[0]}"
    for name in re.findall(r"`([A-Z][a-z]+(?:[A-Z][a-z]*)+)`", ERRORS_MD):
        assert name in REQUIRED or name in NOT_ERRORS, f"`{name}` is no Error of Ferry's (a typo?)"
    for name in re.findall(r"\bStates\.[A-Za-z.]+[A-Za-z]", ERRORS_MD):
        assert name in STATES_ERRORS, name
    for name in re.findall(r"\bLambda\.[A-Za-z]+", ERRORS_MD):
        assert name in LAMBDA_ERRORS, name


def test_docs_errors_md_names_states_that_exist_and_the_states_that_raise_each_error():
    for name, body in SECTIONS.items():
        for state in raised_by(body):
            assert state in STATES, f"{name}: 'Raised by' names {state!r}, which the state machine does not have"
    for row in index_rows():
        for state in _TICKED.findall(row[2]):
            assert state in STATES, f"index row {row[0]}: {state!r} is no state"
    for name in FAIL_ERRORS:
        fails = {n for n, s in STATES.items() if s["Type"] == "Fail" and s.get("Error") == name}
        assert fails & set(raised_by(SECTIONS[name])), f"{name}: name its Fail state under 'Raised by'"
    deploy_failed = set(error_path_sources())
    for state in deploy_failed:
        for name in RAISES[state] - LAMBDA_SERVICE_ERRORS:
            named = set(raised_by(SECTIONS[name]))
            assert named & nested(state), f"{name}: 'Raised by' should name {state!r} (or the state inside it)"
    for name, body in SECTIONS.items():
        assert re.search(r"\*\*Raised by:\*\* *\S", body), f"{name}: the section says nothing under **Raised by:**"
        assert "**When:**" in body and "**Fix:**" in body, f"{name}: say when it happens and what to do"


def test_docs_errors_md_is_linked_from_the_readme():
    assert "](docs/errors.md)" in README


# ---------------------------------------------------------------- README.md


def _top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir() if not p.name.startswith(".") and not p.name.endswith(".egg-info")}


def readme_paths() -> set[str]:
    """Every token of README.md that looks like a path in this repository."""
    top = _top_level()
    found = set()
    for token in re.findall(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*", README):
        token = token.rstrip(".")
        first = token.split("/", 1)[0]
        if first in top and ("/" in token or (ROOT / first).is_file()):
            found.add(token)
    return found


def test_every_repository_path_in_the_readme_exists():
    paths = readme_paths()
    assert {"template.yaml", "statemachine/deploy.asl.json", "docs/errors.md"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", text, flags=re.M))
    targets = set()
    for line in text.splitlines():
        match = re.match(r"^([^\s#=:.][^:=]*|\$\([A-Z_]+\)[^:=]*|\.[A-Za-z][^:=]*):(?!=)", line)
        if match:
            for target in match.group(1).split():
                targets.add(re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), target))
    return targets


def _code(text: str) -> str:
    """The fenced code blocks and inline code spans of a Markdown text."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", outside))


def test_every_make_target_the_readme_names_exists():
    named = set(re.findall(r"(?:^|[\s;&|(])make\s+([A-Za-z0-9_./-]+)", _code(README), flags=re.M))
    assert {"demo", "test"} <= named
    missing = sorted(named - makefile_targets())
    assert not missing, f"README.md runs make targets the Makefile lacks: {missing}"


def readme_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_the_readme_names_only_errors_that_exist():
    for name in _TICKED.findall(readme_section("Errors")):
        if re.fullmatch(r"[A-Z][A-Za-z]+|States\.\w+|Lambda\.\w+", name):
            assert name in REQUIRED, name


def test_the_readme_names_only_states_that_exist():
    text = readme_section("Reading an execution in the console")
    named = [
        n for n in _TICKED.findall(text) if re.fullmatch(r"[A-Z][^{}<>/]* [^{}<>/]*", n) and not n.startswith("ALARM")
    ]
    assert len(named) >= 8
    missing = sorted(n for n in named if n not in STATES)
    assert not missing, f"README.md names states the state machine does not have: {missing}"


# ---------------------------------------------------------------- examples/service

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def example_config() -> config.ServiceConfig:
    return config.load_local(SERVICE, environment="prod")


def test_the_example_config_is_valid_and_uses_the_canary_with_health_gates_and_a_migration():
    raw = yaml.safe_load((SERVICE / "ferry.yaml").read_text())
    jsonschema.validate(raw, validation.schema(config.SCHEMA))
    cfg = example_config()  # the schema, and the checks beyond it
    assert cfg.strategy == "canary" and cfg.raw["strategy"]["canary"]["count"] >= 1
    assert cfg.alarms and cfg.raw["healthGates"]["bakeSeconds"] > 0
    assert cfg.migrations and cfg.template == "task-definition.json"


def test_the_example_template_uses_only_functions_that_exist():
    text = (SERVICE / "task-definition.json").read_text()
    placeholders, syntax_errors = templating.scan(text)
    assert not syntax_errors
    used = {p.name for p in placeholders}
    assert {"image", "secret_arn", "ssm", "ssm_arn", "must_env", "env"} <= used
    for p in placeholders:
        fn = templating.FUNCTIONS.get(p.name)
        assert fn is not None, f"{p.display()}: no such function"
        assert fn.params_ok(len(p.args)), f"{p.display()}: {fn.name} takes {fn.arity_text()}"


class _FakeAws:
    """The lookups the example's placeholders make, answered as AWS would."""

    class _Client:
        def __init__(self, service: str):
            self.service = service

        def get_parameter(self, Name: str, WithDecryption: bool = False) -> dict:
            kind = "SecureString" if "stripe" in Name else "String"
            return {
                "Parameter": {
                    "Name": Name,
                    "Type": kind,
                    "Value": "https://checkout.internal" if kind == "String" else "x",
                    "ARN": f"arn:aws:ssm:us-east-1:123456789012:parameter{Name}",
                }
            }

        def describe_secret(self, SecretId: str) -> dict:
            return {"ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{SecretId}-AbCdEf", "Name": SecretId}

        def describe_stacks(self, StackName: str) -> dict:
            return {
                "Stacks": [
                    {
                        "StackName": StackName,
                        "StackStatus": "UPDATE_COMPLETE",
                        "Outputs": [
                            {
                                "OutputKey": "OrdersQueueUrl",
                                "OutputValue": "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
                            }
                        ],
                    }
                ]
            }

    def __call__(self, service: str):
        return self._Client(service)


def test_the_example_template_renders_into_a_valid_task_definition(monkeypatch):
    from ferry import aws

    monkeypatch.setattr(aws, "client", _FakeAws())
    cfg = example_config()
    text, source = cfg.read_file(cfg.template)
    pinned = {
        "app": images.ImageRef("123456789012", "us-east-1", "shop", "sha-9f1c2ab", "sha256:" + "a" * 64),
        "nginx": images.ImageRef("123456789012", "us-east-1", "shop-nginx", "release-9f1c2ab", "sha256:" + "b" * 64),
    }
    ctx = templating.Context(
        environment="prod", service="shop", execution="shop-sha-9f1c2ab-0123456789ab", images=pinned, values=cfg.values
    )
    spec = templating.render_text(text, source, ctx)
    taskdef.check(spec, source)
    render.check_template_result(cfg, spec, pinned, source)
    app = next(c for c in spec["containerDefinitions"] if c["name"] == "app")
    assert app["image"] == f"{REGISTRY}/shop@sha256:{'a' * 64}"
    assert all(s["valueFrom"].startswith("arn:aws:") for s in app["secrets"])
    assert "{{" not in json.dumps(spec)


# ---------------------------------------------------------------- examples/github-actions


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


SAMPLE = {
    "github.sha": "9f1c2ab4d5e6f708192a3b4c5d6e7f8091a2b3c4",
    "inputs.reason": 'release 2026-11-22: "faster" checkout',
    "github.run_id": "7301122334",
    "github.run_attempt": "1",
}


def _expand(value: str) -> str:
    def one(match: re.Match) -> str:
        expression = match.group(1).strip()
        assert expression in SAMPLE, f"add a sample value for ${{{{ {expression} }}}}"
        return SAMPLE[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(value))


def _step(job: str, name_or_id: str) -> dict[str, Any]:
    steps = workflow()["jobs"][job]["steps"]
    return next(s for s in steps if s.get("id") == name_or_id or s.get("name", "").startswith(name_or_id))


def test_the_workflow_gets_oidc_credentials_and_logs_in_to_ecr():
    flow = workflow()
    assert flow["permissions"]["id-token"] == "write"
    for job in ("push-app", "release"):
        uses = {s.get("uses", "").split("@")[0]: s for s in flow["jobs"][job]["steps"]}
        assert "role-to-assume" in uses["aws-actions/configure-aws-credentials"]["with"]
        assert "aws-actions/amazon-ecr-login" in uses


def test_a_main_build_is_tagged_so_the_example_trigger_deploys_it_and_a_release_build_is_not():
    cfg = example_config()
    push_tag = _expand(_step("push-app", "Build and push")["env"]["TAG"])
    release_tag = _expand(_step("release", "Build and push")["env"]["TAG"])
    assert push_tag == f"sha-{SAMPLE['github.sha']}"
    assert cfg.deploys_push("shop", push_tag)
    assert not any(cfg.deploys_push(repo, release_tag) for repo in set(cfg.containers.values()))


def test_the_manifest_the_release_job_writes_validates(tmp_path):
    step = _step("release", "manifest")
    env = {
        **os.environ,
        **{k: _expand(v) for k, v in step["env"].items()},
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, check=True, capture_output=True)
    document = json.loads((tmp_path / "manifest.json").read_text())
    jsonschema.validate(document, validation.schema(manifest.SCHEMA))
    assert manifest.schema_problems(document) == []
    name = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())["name"]
    assert manifest.is_manifest_key(f"manifests/{name}.json")
    cfg = example_config()
    [deployment] = document["deployments"]
    assert set(deployment["images"]) == set(cfg.containers)
    for container, image in deployment["images"].items():
        assert image.split(":")[0] == cfg.containers[container]  # the repository feeding the container
    drop = _step("release", "Drop it")["run"]
    assert "manifests/$NAME.json" in drop and "aws s3 cp manifest.json" in drop
    assert "manifests/$NAME.result.json" in _step("release", "Wait for the result")["run"]


def test_the_github_role_policy_is_valid_and_only_touches_manifests():
    policy = json.loads((WORKFLOW.parent / "iam-policy.json").read_text())
    trust = json.loads((WORKFLOW.parent / "iam-trust-policy.json").read_text())
    assert trust["Statement"][0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    allowed = {}
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            assert "*" not in action
            if statement["Effect"] == "Allow":
                allowed.setdefault(action, []).extend(resources)
    assert {"ecr:GetAuthorizationToken", "ecr:PutImage", "s3:PutObject", "s3:GetObject"} <= set(allowed)
    for action in ("s3:PutObject", "s3:GetObject"):
        assert all(re.fullmatch(r"arn:aws:s3:::[^/]+/manifests/[^/]+", r) for r in allowed[action]), action
    pushed = {r.rsplit("/", 1)[-1] for r in allowed["ecr:PutImage"]}
    assert pushed == set(example_config().containers.values())
    assert fnmatch.fnmatchcase(
        "manifests/shop-1.result.json", allowed["s3:GetObject"][0].split(":::", 1)[1].split("/", 1)[1]
    )
