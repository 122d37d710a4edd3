"""The wheel, installed as pip or pipx installs it (`pip install 'ferry[sandbox]'`), runs the sandbox with no
repository beside it: it carries template.yaml, the state machine and the handlers (ferry_cli/bundle/, byte for
byte the repository's), and `ferry sandbox run` deploys the demo from a directory outside the repository.

Nothing is downloaded: the wheel is built with the dev venv's setuptools (no build isolation, no index), and the
fresh venv it goes into reaches the dev venv's packages (boto3, moto, ...) through a .pth file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from ferry_cli.sandbox.template import Template

ROOT = Path(__file__).resolve().parents[2]
# What a build never reads: git's store, the venvs, caches and earlier build output (.gitignore's entries).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".aws-sam",
    "build",
    "dist",
    "out",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".hypothesis",
)
BUNDLE = "ferry_cli/bundle/"


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=100)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the working tree (a build writes build/ and *.egg-info beside its source,
    and others may be building in the repository at the same time)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCE)  # cli/ferry_cli/bundle/ holds symlinks
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        tmp / "dist",
        source,
        cwd=tmp,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    shutil.rmtree(source)  # the installed package must not lean on it
    (found,) = (tmp / "dist").glob("ferry-*.whl")
    return found


def _stack_files() -> list[str]:
    """template.yaml and every file it names that the sandbox loads: each handler and the state machine."""
    template = Template.load(ROOT)
    files = ["template.yaml", template.state_machine()[2]]
    for fn in template.functions().values():
        module = fn.handler.rpartition(".")[0]
        files.append(f"{fn.code_uri.rstrip('/')}/{module}.py")
    return files


def test_the_wheel_carries_the_template_the_state_machine_and_every_handler_byte_for_byte(wheel):
    with zipfile.ZipFile(wheel) as whl:
        bundled = {
            name[len(BUNDLE) :]: whl.read(name)
            for name in whl.namelist()
            if name.startswith(BUNDLE) and not name.endswith("/")
        }
    stack = _stack_files()
    assert "statemachine/deploy.asl.json" in stack and "functions/router/app.py" in stack
    missing = sorted(set(stack) - set(bundled))
    assert not missing, f"the wheel lacks {missing}"
    different = sorted(p for p, data in bundled.items() if data != (ROOT / p).read_bytes())
    assert not different, f"the wheel's copies differ from the repository's: {different}"


def test_an_installed_ferry_deploys_the_demo_from_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    # The dependencies (boto3, moto, ...) from the dev venv, after the venv's own packages. A path in a .pth file
    # is only appended to sys.path: the dev venv's own .pth files, its editable install of this repository among
    # them, are not run.
    (site / "dev-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--no-compile",
        wheel,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    where = _run(
        python,
        "-c",
        "import ferry, ferry_cli.resources as r; print(ferry.__file__); print(r.root())",
        cwd=tmp_path,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    library, root = (Path(line) for line in where.stdout.split())
    assert library.is_relative_to(site) and root == site / "ferry_cli" / "bundle", where.stdout

    world = tmp_path / "world"
    shutil.copytree(ROOT / "examples" / "sandbox", world)  # world.yaml with its task definition and registry
    event = tmp_path / "push.json"
    shutil.copy(ROOT / "events" / "ecr-push-web-v2.json", event)
    run = _run(
        venv / "bin" / "ferry",
        "sandbox",
        "run",
        "--world",
        world / "world.yaml",
        "--event",
        event,
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads(run.stdout)
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED"]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"
    assert summary["services"]["prod/web"]["runningCount"] == 2
    assert summary["locksHeld"] == 0
