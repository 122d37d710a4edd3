"""Benchmark: cold-start import time of every Lambda handler, against a boto3 baseline (not a test).

    .venv/bin/python bench/cold_start.py [--runs 7] [--target 1.3] [--bytecode cached|lambda]
        [--clock cpu|wall] [--explain 3] [--function NAME] [--root CHECKOUT] [--json] [--check]

For every AWS::Serverless::Function in template.yaml (read the way the sandbox
reads it), a fresh Python process imports the function's handler module the way
the Lambda runtime does at cold start: sys.path is the function's CodeUri, then
the layers' ContentUri (sam build puts them under python/, which is on the
runtime's path; with --bytecode lambda, the layer as built: below), then this
venv's site-packages (standing in for the runtime's own packages, and for the
layer's dependencies when the layer is not built); the environment is the
template's (Globals merged with the function's, resolved against dummy
resource names) plus what Lambda sets (region, dummy credentials, function
name, memory size, no ~/.aws files). Whatever the module does at import --
clients created at module level, Logger or Tracer objects, SETTINGS =
settings.load() -- is in the figure.

The baseline is the smallest useful Lambda: `import boto3` plus one
`boto3.client(...)` (--baseline-client, default ecs, what an ECS deployer
creates), in an identical fresh process. Each figure is the best of --runs processes, timed inside the process
around the import only (interpreter start-up is the same for both and is left
out), in CPU time by default (--clock): on an idle machine that is the wall time
of the import, and it stays put when other processes compete for the CPU. Runs
are interleaved so whatever load there is hits both sides alike.

--bytecode cached (the default): every module imports from bytecode cached in a
private directory (-X pycache_prefix), warmed by one discarded run, so nothing
is written into the repository.

--bytecode lambda: what Lambda imports. A layer built by its Makefile
(BuildMethod makefile: layers/ferry/Makefile) is built first, into a temporary
folder laid out as sam build leaves it (python/...): this venv's installs of
the layer's pinned requirements (the same versions: checked; copied, as the
arm64 wheels' .so files would not load here), then the Makefile's own
layer-without-install target, which copies the ferry package and compiles
everything with --invalidation-mode unchecked-hash, as build-FerryLayer does.
That folder replaces the layer's ContentUri on sys.path, so ferry, boto3,
botocore and the rest import from the layer's own .pyc, as they do from /opt.
The processes run with -B (PYTHONDONTWRITEBYTECODE, which -I would ignore as a
variable) and no pycache_prefix: nothing is written at run time, /var/task and
/opt being read-only, and a run that wrote into the built layer is an error.
What SAM ships as source compiles at every import: the function's folder (SAM's
python builder copies it without bytecode), and the modules of any layer built
with BuildMethod python3.12 (its ContentUri and requirements, unpacked without
compiling). The baseline's boto3 is the runtime's and keeps its bytecode (this
venv's __pycache__). Each process reports the modules it compiled from source
during the import (the "compiled" column).

For the worst functions (every one over the target, at least --explain of
them), --importtime-runs more processes run with `python -X importtime` (the
fastest run counts) and report the modules with the largest cumulative
import time -- the function's own modules and where they enter another package,
with the chain of imports that pulled it in, which is the line to make lazy --
exclusive time per top-level package (and the part beyond what the baseline
imports), and any boto3 client created or botocore data loaded during the import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))  # the sandbox's template reader, also without the editable install

from ferry_cli.sandbox.template import Resolver, Template, physical_resources  # noqa: E402

TARGET = 1.3
ACCOUNT = "123456789012"
REGION = "us-east-1"
ENVIRONMENT = "bench"
# Stdlib modules the Lambda runtime's bootstrap has already imported when it
# imports the handler (an approximation): not charged to either side.
RUNTIME_PRELOAD = ("json", "logging", "traceback", "warnings", "importlib", "http.client", "decimal")
MARKER = "@@cold-start@@"
BEGIN = "@@cold-start-begin@@"

# Runs in the fresh process: argv[1] is the JSON spec built by Probe.spec().
CHILD = r'''
import importlib.machinery, json, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["front"]
sys.path.extend(spec["back"])
for name in spec["preload"]:
    __import__(name)
clients, models = [], []

def _caller():
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if "/botocore/" not in name and "/boto3/" not in name:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"

def _patch_loaders(module):
    load_service_model, load_data = module.Loader.load_service_model, module.Loader.load_data
    def service_model(self, service_name, type_name, api_version=None):
        models.append(f"{service_name}/{type_name}")
        return load_service_model(self, service_name, type_name, api_version)
    def data(self, name):
        models.append(name)
        return load_data(self, name)
    module.Loader.load_service_model, module.Loader.load_data = service_model, data

def _patch_session(module):
    create_client = module.Session.create_client
    def create(self, service_name, *args, **kwargs):
        clients.append({"service": service_name, "at": _caller()})
        return create_client(self, service_name, *args, **kwargs)
    module.Session.create_client = create

class _Watch:
    """Wraps botocore.loaders and botocore.session as they are first imported."""
    patches = {"botocore.loaders": _patch_loaders, "botocore.session": _patch_session}
    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None:
            return None
        found = importlib.machinery.PathFinder.find_spec(name, path)
        if found is not None and found.loader is not None:
            run = found.loader.exec_module
            def exec_module(module, run=run, patch=patch):
                run(module)
                patch(module)
            found.loader.exec_module = exec_module
        return found

class _FromSource(importlib.machinery.SourceFileLoader):
    def path_stats(self, path):
        raise OSError("no bytecode: compiled from source and not written, as on Lambda")

compiled = []
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code

def _counting_source_to_code(self, data, path, *args, **kwargs):
    compiled.append(self.name)
    return _source_to_code(self, data, path, *args, **kwargs)

class _NoBytecode:
    """Modules of these top-level packages compile from source, as from a SAM-built function or layer."""
    names = frozenset(spec["compile"])
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in self.names:
            return None
        found = importlib.machinery.PathFinder.find_spec(name, path, target)
        if found is not None and type(found.loader) is importlib.machinery.SourceFileLoader:
            found.loader = _FromSource(found.loader.name, found.loader.path)
        return found

if spec["compile"]:
    sys.meta_path.insert(0, _NoBytecode())
if spec["watch"]:
    sys.meta_path.insert(0, _Watch())
code = compile(spec["code"], "<cold start>", "exec")
importlib.machinery.SourceFileLoader.source_to_code = _counting_source_to_code
before = set(sys.modules)
sys.stderr.write(spec["begin"] + "\n")
sys.stderr.flush()
started, cpu_started = time.perf_counter(), time.process_time()
exec(code, {"__name__": "__cold_start__"})
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
new = set(sys.modules) - before
packages = sorted({m.split(".")[0] for m in new})
sys.stdout.write(spec["marker"] + json.dumps({
    "seconds": elapsed, "cpuSeconds": cpu, "modules": len(new), "clients": clients, "models": sorted(set(models)),
    "packages": packages, "compiled": compiled,
    "origins": {p: getattr(sys.modules.get(p), "__file__", None) for p in packages},
    "dontWriteBytecode": sys.dont_write_bytecode, "pycachePrefix": sys.pycache_prefix,
}) + "\n")
'''


@dataclass
class Probe:
    """One thing to import in a fresh process: a handler, or the baseline."""

    name: str
    code: str
    cwd: Path
    env: dict[str, str]
    front: list[str] = field(default_factory=list)  # sys.path entries before the runtime's own: CodeUri, ContentUris
    root_module: str = ""  # the module the import tree hangs from
    handler: str = ""
    shipped: list[str] = field(default_factory=list)  # top-level modules SAM ships as source (function, python layers)
    built_layers: list[str] = field(default_factory=list)  # ContentUris of layers built by their Makefile
    layer_modules: list[str] = field(default_factory=list)  # top-level modules those layers provide, with bytecode
    built: dict[str, str] = field(default_factory=dict)  # --bytecode lambda: ContentUri -> the built layer's python/
    samples: list[float] = field(default_factory=list)  # the chosen clock (--clock)
    wall_samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    compiled: list[str] = field(default_factory=list)  # modules compiled from source during the last import
    error: str | None = None
    bytecode: str = "cached"  # --bytecode

    def path_front(self) -> list[str]:
        if self.bytecode != "lambda":
            return self.front
        missing = [p for p in self.built_layers if p not in self.built]
        if missing:
            raise RuntimeError(f"{self.name}: --bytecode lambda needs the built layer of {missing} (build_layers)")
        return [self.built.get(p, p) for p in self.front]

    def spec(self, watch: bool) -> dict[str, Any]:
        paths = sysconfig.get_paths()
        back = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
        return {
            "front": self.path_front(),
            "back": back,
            "preload": list(RUNTIME_PRELOAD),
            "watch": watch,
            "code": self.code,
            "marker": MARKER,
            "begin": BEGIN,
            "compile": self.shipped if self.bytecode == "lambda" else [],
        }

    @property
    def best(self) -> float | None:
        return min(self.samples) if self.samples else None


def runtime_env(
    function_name: str, handler: str, memory: int, task_root: Path, *, tracing: bool, log_format: str | None
) -> dict[str, str]:
    """What the Lambda service puts in a python3.12 function's environment (credentials are dummies)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "ASIABENCHDUMMYKEY000",
        "AWS_SECRET_ACCESS_KEY": "bench-dummy-secret",
        "AWS_SESSION_TOKEN": "bench-dummy-token",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": handler,
        # No shared config or credentials files and no instance metadata, as on Lambda.
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if tracing:
        env.update(
            {
                "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
                "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
                "_AWS_XRAY_DAEMON_PORT": "2000",
            }
        )
    if log_format:
        env["AWS_LAMBDA_LOG_FORMAT"] = log_format
    return env


def _dummy(value: Any, name: str) -> str:
    if isinstance(value, list):
        return ",".join(_dummy(v, name) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return f"dummy-{name.lower()}"  # an intrinsic the sandbox's resolver does not handle (If, ...)


def top_level_modules(folder: Path) -> set[str]:
    """Top-level module names a sys.path folder provides."""
    names = set()
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.suffix == ".py":
            names.add(entry.stem)
        elif (entry / "__init__.py").exists():
            names.add(entry.name)
    return names


def requirements_of(requirements: Path) -> list[Requirement]:
    """The requirements a requirements file lists (none when there is no file)."""
    from packaging.requirements import Requirement

    if not requirements.is_file():
        return []
    # pip-compile --generate-hashes writes `name==1.0 \` and its `--hash=...` options on continuation lines
    lines = requirements.read_text().replace("\\\n", " ").splitlines()
    return [
        Requirement(line.split("#", 1)[0].split(" --", 1)[0].strip())
        for line in lines
        if line.split("#", 1)[0].strip() and not line.lstrip().startswith("-")
    ]


def requirement_modules(requirements: Path) -> set[str]:
    """Top-level modules of a requirements file's distributions and their dependencies, as installed here."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [requirement.name for requirement in requirements_of(requirements)]
    seen: set[str] = set()
    names: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for file in dist.files or []:
            first = file.parts[0]
            if first.endswith((".dist-info", ".data")) or first in ("__pycache__", "..") or "/" in first:
                continue
            if len(file.parts) > 1 or file.suffix in (".py", ".so", ".pyd"):
                names.add(first.split(".")[0] if len(file.parts) == 1 else first)
    return names


def handler_probes(root: Path = ROOT, only: list[str] | None = None) -> list[Probe]:
    """One probe per function of the template, in template order."""
    template = Template.load(root)
    refs, attrs, pseudo = physical_resources(
        template,
        account=ACCOUNT,
        region=REGION,
        environment=ENVIRONMENT,
        parameters={"EnvironmentName": ENVIRONMENT, "Clusters": [ENVIRONMENT]},
    )
    resolver = Resolver(refs, attrs, pseudo)
    globals_fn = template.body.get("Globals", {}).get("Function", {})
    layers = template.of_type("AWS::Serverless::LayerVersion")
    probes = []
    for logical_id, function in template.functions().items():
        if only and not any(o.lower() in (logical_id.lower(), Path(function.code_uri).name.lower()) for o in only):
            continue
        props = template.resources[logical_id].get("Properties", {})
        env: dict[str, str] = {}
        for name, value in function.environment.items():
            try:
                env[name] = _dummy(resolver.resolve(value), name)
            except KeyError:
                env[name] = _dummy(None, name)
        front = [str((root / function.code_uri).resolve())]
        shipped = top_level_modules(Path(front[0])) | requirement_modules(Path(front[0]) / "requirements.txt")
        built_layers, layer_modules = [], set()
        for layer in [*globals_fn.get("Layers", []), *props.get("Layers", [])]:
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            if ref in layers:  # a layer of this template; others (ARNs) cannot be put on the path
                content = (root / layers[ref]["Properties"]["ContentUri"]).resolve()
                front.append(str(content))
                modules = top_level_modules(content) | requirement_modules(content / "requirements.txt")
                if (layers[ref].get("Metadata") or {}).get("BuildMethod") == "makefile":
                    built_layers.append(str(content))  # its Makefile ships bytecode (build_layers)
                    layer_modules |= modules
                else:  # SAM's python builder: source only
                    shipped |= modules
        module, _, attribute = function.handler.rpartition(".")
        module = module.replace("/", ".")
        tracing = (props.get("Tracing") or globals_fn.get("Tracing")) == "Active"
        logging_config = {**globals_fn.get("LoggingConfig", {}), **props.get("LoggingConfig", {})}
        memory = int(props.get("MemorySize") or globals_fn.get("MemorySize") or 128)
        task_root = Path(front[0])
        lambda_env = runtime_env(
            str(refs.get(logical_id, logical_id)),
            function.handler,
            memory,
            task_root,
            tracing=tracing,
            log_format=logging_config.get("LogFormat"),
        )
        probes.append(
            Probe(
                name=logical_id,
                handler=function.handler,
                root_module=module,
                cwd=task_root,
                front=front,
                shipped=sorted(shipped),
                built_layers=built_layers,
                layer_modules=sorted(layer_modules),
                env={**lambda_env, **env},
                # An import statement, not importlib.import_module: -X importtime only sees the former.
                code=f"import {module} as _handler_module\nhandler = _handler_module.{attribute}\n",
            )
        )
    return probes


def baseline_probe(client: str) -> Probe:
    env = runtime_env("ferry-bench-baseline", "app.handler", 256, ROOT, tracing=False, log_format=None)
    return Probe(
        name=f"baseline (import boto3; boto3.client({client!r}))",
        root_module="boto3",
        cwd=ROOT,
        env=env,
        code=f"import boto3\nclient = boto3.client({client!r})\n",
    )


def copy_pinned_requirements(requirements: Path, target: Path) -> list[str]:
    """Copies this venv's installs of a requirements file's pins into target, as pip --target lays them out.

    Every requirement must be pinned (==) and installed here at that version:
    the layer's Makefile installs exactly these. Bytecode and files outside
    site-packages (console scripts) are left behind, as the Makefile leaves
    them. Returns the distributions copied, as name==version.
    """
    from importlib import metadata

    copied = []
    for requirement in requirements_of(requirements):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(pins) != 1:
            raise RuntimeError(f"{requirements}: {requirement} is not pinned to one version")
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(
                f"{requirement.name} is not installed in {sys.prefix}: the layer pins it "
                f"({requirements}); reinstall the venv (make)"
            ) from None
        if dist.version != pins[0]:
            raise RuntimeError(
                f"{requirement.name} {dist.version} is installed in {sys.prefix}, the layer pins "
                f"{pins[0]} ({requirements}); reinstall the venv (make)"
            )
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix in (".pyc", ".pyo"):
                continue
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dist.locate_file(file), destination)
        copied.append(f"{requirement.name}=={dist.version}")
    return copied


def build_layer(content: Path, artifacts: Path) -> Path:
    """A layer built with bytecode by its Makefile, laid out as sam build leaves it; returns its python/ folder.

    The requirements are this venv's copies of the same pins (copy_pinned_requirements)
    instead of the Lambda platform's wheels; the rest is the Makefile's own
    layer-without-install target: the package copied, everything compiled
    (unchecked-hash .pyc), as build-<LayerId> does.
    """
    python = artifacts / "python"
    python.mkdir(parents=True)
    copy_pinned_requirements(content / "requirements.txt", python)
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-f",
            str(content / "Makefile"),
            "layer-without-install",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"building the layer of {content} failed (make layer-without-install, exit "
            f"{done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return python


def build_layers(probes: list[Probe], out: Path) -> dict[str, str]:
    """--bytecode lambda: builds each layer the probes use that its Makefile builds, once; ContentUri -> python/."""
    built: dict[str, str] = {}
    for probe in probes:
        for content in probe.built_layers:
            if content not in built:
                built[content] = str(build_layer(Path(content), out / f"layer-{len(built) + 1}"))
        probe.built = {content: built[content] for content in probe.built_layers}
    return built


def files_under(folders: list[str]) -> set[str]:
    return {os.path.join(d, f) for folder in folders for d, _, names in os.walk(folder) for f in names}


def run_probe(probe: Probe, pycache: Path, *, importtime: bool = False) -> tuple[dict[str, Any], str]:
    """(what the child reported, its stderr); raises RuntimeError when the import fails."""
    command = [sys.executable, "-I", "-S"]
    if probe.bytecode == "lambda":
        # The .pyc that ship (the built layers', the runtime's), nothing written: -B, i.e. PYTHONDONTWRITEBYTECODE
        # (-I ignores PYTHON* variables). No pycache_prefix: it would hide the layer's __pycache__.
        command += ["-B"]
    else:
        command += ["-X", f"pycache_prefix={pycache}"]
    if importtime:
        command += ["-X", "importtime"]
    command += ["-c", CHILD, json.dumps(probe.spec(watch=importtime))]
    done = subprocess.run(command, cwd=probe.cwd, env=probe.env, capture_output=True, text=True, timeout=300)
    report = next((line[len(MARKER) :] for line in done.stdout.splitlines() if line.startswith(MARKER)), None)
    if done.returncode != 0 or report is None:
        tail = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))[-2000:]
        raise RuntimeError(f"{probe.name}: the import failed (exit {done.returncode}):\n{tail}")
    return json.loads(report), done.stderr


# ---------------------------------------------------------------- -X importtime


@dataclass
class Node:
    name: str
    self_us: int
    cumulative_us: int
    depth: int
    parent: "Node | None" = None

    @property
    def package(self) -> str:
        return self.name.split(".")[0]

    def chain(self) -> list[str]:
        out, node = [], self.parent
        while node is not None:
            out.append(node.name)
            node = node.parent
        return out


def parse_importtime(stderr: str) -> list[Node]:
    """The imports after the BEGIN marker, as a tree (each node's parent is the module that imported it).

    `-X importtime` prints a module once its own imports are done (post-order),
    indented two spaces per level; a module imported earlier by someone else
    does not appear again, so each cost is charged to its first importer.
    """
    lines = stderr.splitlines()
    if BEGIN in lines:
        lines = lines[lines.index(BEGIN) + 1 :]
    nodes: list[Node] = []
    pending: list[Node] = []
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cumulative, name = line[len("import time:") :].split("|", 2)
            self_value, cumulative_value = int(self_us), int(cumulative)
        except ValueError:
            continue
        text = name[1:]  # one space follows the bar, then two per level
        node = Node(text.strip(), self_value, cumulative_value, (len(text) - len(text.lstrip(" "))) // 2)
        while pending and pending[-1].depth > node.depth:
            pending.pop().parent = node
        pending.append(node)
        nodes.append(node)
    return nodes


def first_party(front: list[str]) -> set[str]:
    """Top-level module names the function's own paths provide (the handler module, ferry)."""
    return set().union(*(top_level_modules(Path(folder)) for folder in front))


def top_modules(nodes: list[Node], root_module: str, own: set[str]) -> list[Node]:
    """The function's own modules, and what they import directly from elsewhere, heaviest first.

    A module imported by a third-party package is part of that package's cost,
    so it is not listed: the line to change is where our code enters the package.
    """

    def mine(node: Node | None) -> bool:
        return node is not None and node.package in own

    picked = [
        n
        for n in nodes
        if n.name != root_module and (mine(n) or n.parent is None or mine(n.parent) or n.parent.name == root_module)
    ]
    return sorted(picked, key=lambda n: n.cumulative_us, reverse=True)


def by_package(nodes: list[Node]) -> list[tuple[str, int]]:
    """Exclusive (self) import time per top-level package, heaviest first."""
    totals: dict[str, int] = {}
    for node in nodes:
        totals[node.package] = totals.get(node.package, 0) + node.self_us
    return sorted(totals.items(), key=lambda kv: kv[1], reverse=True)


def fastest(trees: list[list[Node]], root_module: str) -> list[Node]:
    """The run whose import of the root module took least (its figures add up, unlike per-module minimums)."""

    def total(nodes: list[Node]) -> int:
        root = next((n for n in reversed(nodes) if n.name == root_module and n.parent is None), None)
        return root.cumulative_us if root else sum(n.self_us for n in nodes)

    return min(trees, key=total)


def explain(
    probe: Probe, pycache: Path, top: int, baseline_packages: set[str] = frozenset(), runs: int = 3
) -> dict[str, Any]:
    done = [run_probe(probe, pycache, importtime=True) for _ in range(max(1, runs))]
    report = done[0][0]
    nodes = fastest([parse_importtime(stderr) for _, stderr in done], probe.root_module)
    root = next((n for n in reversed(nodes) if n.name == probe.root_module and n.parent is None), None)
    own = first_party(probe.front)
    packages = by_package(nodes)

    def where(at: str) -> str:
        path, _, line = at.rpartition(":")
        try:
            return f"{Path(path).resolve().relative_to(ROOT)}:{line}"
        except ValueError:
            return at

    return {
        "importtimeTotalSeconds": (root.cumulative_us if root else sum(n.self_us for n in nodes)) / 1e6,
        "topModules": [
            {
                "module": n.name,
                "cumulativeSeconds": n.cumulative_us / 1e6,
                "selfSeconds": n.self_us / 1e6,
                "importedBy": n.chain(),
                "inBaseline": n.package in baseline_packages,
            }
            for n in top_modules(nodes, probe.root_module, own)[:top]
        ],
        "packages": [
            {"package": p, "selfSeconds": us / 1e6, "inBaseline": p in baseline_packages} for p, us in packages
        ],
        "beyondBaselineSeconds": sum(us for p, us in packages if p not in baseline_packages) / 1e6,
        "clientsCreated": [{"service": c["service"], "at": where(c["at"])} for c in report["clients"]],
        "botocoreDataLoaded": report["models"],
        "modulesImported": report["modules"],
        "packagesImported": report["packages"],
    }


# ---------------------------------------------------------------- main


def measure(probes: list[Probe], baseline: Probe, runs: int, pycache: Path, progress: bool, clock: str = "cpu") -> None:
    everything = [baseline, *probes]
    for probe in everything:  # warm-up: compiles into the private pycache, fills the OS cache
        try:
            run_probe(probe, pycache)
        except RuntimeError as exc:
            probe.error = str(exc)
    for i in range(runs):
        if progress:
            print(f"run {i + 1}/{runs}...", file=sys.stderr, flush=True)
        for probe in everything:  # interleaved: load on the machine hits every probe alike
            if probe.error is None:
                report = run_probe(probe, pycache)[0]
                probe.compiled = report["compiled"]
                probe.wall_samples.append(report["seconds"])
                probe.cpu_samples.append(report["cpuSeconds"])
                probe.samples.append(report["cpuSeconds" if clock == "cpu" else "seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per function; the best counts (default 7)")
    parser.add_argument("--target", type=float, default=TARGET, help=f"highest acceptable ratio (default {TARGET})")
    parser.add_argument(
        "--baseline-client", default="ecs", help="the service of the baseline's one client (default ecs)"
    )
    parser.add_argument(
        "--explain",
        type=int,
        default=3,
        help="explain at least this many of the worst functions; all over the target are (default 3)",
    )
    parser.add_argument("--top", type=int, default=12, help="modules listed per explained function (default 12)")
    parser.add_argument(
        "--importtime-runs",
        type=int,
        default=3,
        help="-X importtime processes per explained function; the fastest counts (default 3)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: the importing process's CPU time (default; on an idle machine it is the import's "
        "wall time, and it is not inflated when other processes compete for the CPU). "
        "wall: elapsed time",
    )
    parser.add_argument(
        "--bytecode",
        choices=("cached", "lambda"),
        default="cached",
        help="cached: every module imports from cached bytecode (default). lambda: as on Lambda, "
        "where /var/task and /opt are read-only: layers built by their Makefile are built "
        "first (with their unchecked-hash .pyc) and imported from; what SAM ships as source "
        "(the function's folder, python3.12-built layers) compiles at every import; nothing "
        "is written (-B); the baseline (the runtime's boto3) keeps its bytecode",
    )
    parser.add_argument(
        "--function",
        action="append",
        metavar="NAME",
        help="only this function (logical id or CodeUri folder name); repeatable",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose template.yaml, functions and layers to measure, e.g. a worktree "
        "with a proposed change (default: this one)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if a function is over the target")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    root = args.root.resolve()
    probes = handler_probes(root, only=args.function)
    if not probes:
        parser.error("no function of template.yaml matches --function")
    baseline = baseline_probe(args.baseline_client)
    for probe in [baseline, *probes]:
        probe.bytecode = args.bytecode
    pycache = Path(tempfile.mkdtemp(prefix="ferry-cold-start-"))
    built: dict[str, str] = {}
    try:
        if args.bytecode == "lambda":
            if not args.json:
                print("building the layers with bytecode...", file=sys.stderr, flush=True)
            try:
                built = build_layers(probes, pycache / "layers")
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 2
            layer_files = files_under(list(built.values()))
        measure(probes, baseline, args.runs, pycache, progress=not args.json, clock=args.clock)
        if baseline.error:
            print(baseline.error, file=sys.stderr)
            return 2
        base = baseline.best
        assert base is not None
        ranked = sorted((p for p in probes if p.best is not None), key=lambda p: p.best, reverse=True)
        over = [p for p in ranked if p.best / base > args.target]
        explained = ranked[: max(args.explain, len(over))]
        baseline_explained = explain(baseline, pycache, args.top, runs=args.importtime_runs)
        in_baseline = set(baseline_explained["packagesImported"])
        explanations = {p.name: explain(p, pycache, args.top, in_baseline, args.importtime_runs) for p in explained}
        if built and files_under(list(built.values())) != layer_files:
            written = sorted(files_under(list(built.values())) - layer_files)
            print(f"the runs wrote into the built layer (read-only on Lambda): {written[:5]}", file=sys.stderr)
            return 2
    finally:
        shutil.rmtree(pycache, ignore_errors=True)

    rows = []
    for p in probes:
        ratio = p.best / base if p.best is not None else None
        rows.append(
            {
                "function": p.name,
                "handler": p.handler,
                "codeUri": os.path.relpath(p.front[0], root),
                "seconds": p.best,
                "baselineSeconds": base,
                "ratio": ratio,
                "overTarget": ratio is not None and ratio > args.target,
                "secondsToCut": max(0.0, p.best - args.target * base) if p.best is not None else None,
                "wallSamples": p.wall_samples,
                "cpuSamples": p.cpu_samples,
                "error": p.error,
                "compiledAtImport": p.compiled,
                "layersWithBytecode": [os.path.relpath(c, root) for c in p.built],
                "explain": explanations.get(p.name),
            }
        )
    if args.json:
        json.dump(
            {
                "target": args.target,
                "runs": args.runs,
                "bytecode": args.bytecode,
                "clock": args.clock,
                "python": sys.version.split()[0],
                "baseline": {
                    "code": baseline.code,
                    "seconds": base,
                    "wallSamples": baseline.wall_samples,
                    "cpuSamples": baseline.cpu_samples,
                    "compiledAtImport": baseline.compiled,
                    "explain": baseline_explained,
                },
                "functions": rows,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print_report(rows, baseline, base, baseline_explained, explanations, args)
    return 1 if args.check and (over or any(p.error for p in probes)) else 0


def print_report(rows, baseline, base, baseline_explained, explanations, args) -> None:
    print(
        f"\nbaseline: {baseline.name}: {base:.3f} s (best of {args.runs}); target ratio {args.target:g}"
        f" = {args.target * base:.3f} s; clock: {args.clock}; bytecode: {args.bytecode}"
    )
    with_bytecode = sorted({layer for r in rows for layer in r["layersWithBytecode"]})
    if with_bytecode:
        print(f"layers built with bytecode (their Makefile) and imported from: {', '.join(with_bytecode)}")
    print(f"compiled: modules compiled from source during the import (the baseline: {len(baseline.compiled)})")
    print(f"{'function':<26}  {'handler s':>9}  {'baseline s':>10}  {'ratio':>6}  {'to cut s':>8}  {'compiled':>8}  ")
    for r in sorted(rows, key=lambda r: -(r["ratio"] or 1e9)):
        if r["error"]:
            print(f"{r['function']:<26}  {'ERROR':>9}")
            continue
        flag = f"OVER {args.target:g}" if r["overTarget"] else ""
        print(
            f"{r['function']:<26}  {r['seconds']:>9.3f}  {r['baselineSeconds']:>10.3f}  {r['ratio']:>6.2f}"
            f"  {r['secondsToCut']:>8.3f}  {len(r['compiledAtImport']):>8}  {flag}"
        )
    for r in rows:
        if r["error"]:
            print(f"\n{r['error']}")

    def show(title: str, e: dict[str, Any]) -> None:
        print(
            f"\n== {title}: {e['importtimeTotalSeconds']:.3f} s under -X importtime "
            f"(fastest of {args.importtime_runs}, wall time of imports only), {e['modulesImported']} modules"
        )
        print(f"   {'cumulative s':>12}  {'self s':>7}  module  <- imported by   (* = the baseline imports it too)")
        for m in e["topModules"]:
            chain = " <- ".join(m["importedBy"])
            star = "*" if m["inBaseline"] else ""
            print(
                f"   {m['cumulativeSeconds']:>12.3f}  {m['selfSeconds']:>7.3f}  {m['module']}{star}"
                + (f"  <- {chain}" if chain else "")
            )
        shown = [p for p in e["packages"] if p["selfSeconds"] >= 0.0005]  # not the failed optional imports
        beyond = [p for p in shown if not p["inBaseline"]][: args.top]
        if title != "baseline":
            print(
                f"   beyond the baseline: {e['beyondBaselineSeconds']:.3f} s exclusive: "
                + ", ".join(f"{p['package']} {p['selfSeconds']:.3f}" for p in beyond)
            )
        print(
            "   exclusive time by package: "
            + ", ".join(f"{p['package']} {p['selfSeconds']:.3f}" for p in shown[: args.top])
        )
        clients = ", ".join(f"{c['service']} at {c['at']}" for c in e["clientsCreated"]) or "none"
        print(f"   boto3 clients created at import: {clients}")
        print(f"   botocore data loaded at import: {', '.join(e['botocoreDataLoaded']) or 'none'}")

    show("baseline", baseline_explained)
    for name, e in explanations.items():
        show(name, e)


if __name__ == "__main__":
    sys.exit(main())
