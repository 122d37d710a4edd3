"""`ferry render`, `ferry diff` and `ferry init` against a sandbox world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferry_cli.main import main

ROOT = Path(__file__).resolve().parents[2]
WORLD = ROOT / "examples/sandbox/world.yaml"
CONFIG_DIR = ROOT / "examples/sandbox/registry/web"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_render_prints_the_revision_a_deploy_would_register(capsys):
    assert main(["render", "--config-dir", str(CONFIG_DIR), "--image", "web:v2", "--world", str(WORLD)]) == 0
    spec = json.loads(capsys.readouterr().out)
    images = {c["name"]: c["image"] for c in spec["containerDefinitions"]}
    assert images["app"].startswith(f"{REGISTRY}/web@sha256:")
    assert images["nginx"] == f"{REGISTRY}/nginx:1.27"
    assert "revision" not in spec and spec["family"] == "web"


def test_diff_prints_a_unified_diff_and_the_summary(capsys):
    assert main(["diff", "--config-dir", str(CONFIG_DIR), "--image", "app=web:v2", "--world", str(WORLD)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- web:1\n+++ web:(new)\n")
    assert f'-      "image": "{REGISTRY}/web:v1",' in out
    assert out.rstrip().splitlines()[-1].startswith("image app web:v1 -> web:v2 (sha256:")
    assert "sandbox-db-password-do-not-print" not in out


def test_init_writes_a_config_and_template_that_render_back_to_the_running_revision(tmp_path, capsys):
    out = tmp_path / "web"
    assert main(["init", "--cluster", "prod", "--service", "web", "--out", str(out), "--world", str(WORLD)]) == 0
    template = json.loads((out / "task-definition.json").read_text())
    assert {c["name"]: c["image"] for c in template["containerDefinitions"]} == {
        "app": "{{ image `app` }}",
        "nginx": "{{ image `nginx` }}",
    }
    assert "taskDefinitionArn" not in template and "revision" not in template
    assert "template: task-definition.json" in (out / "ferry.yaml").read_text()
    capsys.readouterr()
    # The written folder is a working config: the same images give a diff of the images only.
    assert (
        main(["diff", "--config-dir", str(out), "--image", "web:v1", "--image", "nginx:1.27", "--world", str(WORLD)])
        == 0
    )
    summary = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert (
        summary.startswith("image app web:v1 -> web:v1 (sha256:") and "image nginx nginx:1.27 -> nginx:1.27" in summary
    )
    assert "env var" not in summary and "secret" not in summary
    # Refuses to overwrite.
    assert main(["init", "--cluster", "prod", "--service", "web", "--out", str(out), "--world", str(WORLD)]) == 2
    assert "already exist: pass --force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "nginx:latest!"], "give an ECR image URI or <repository>:<tag>"),
        (["--image", "other:v1"], "repository 'other' feeds no container of web"),
        ([], "give at least one --image"),
        (["--image", "web:v2", "--var", "NOVALUE"], "write NAME=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(capsys, argv, message):
    assert main(["render", "--config-dir", str(CONFIG_DIR), "--world", str(WORLD), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_render_failure_exits_1_naming_the_error(capsys):
    assert main(["render", "--config-dir", str(CONFIG_DIR), "--image", "web:v9", "--world", str(WORLD)]) == 1
    assert "ImageNotFound: image web:v9 is not in ECR" in capsys.readouterr().err


def world_copy(tmp_path: Path, **changes) -> Path:
    """The example world in tmp_path, with top-level fields replaced."""
    import shutil

    import yaml

    shutil.copytree(WORLD.parent, tmp_path / "world")
    path = tmp_path / "world" / "world.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def test_verify_lists_every_check_and_exits_1_on_a_failure(tmp_path, capsys):
    assert main(["verify", "--config-dir", str(CONFIG_DIR), "--image", "web:v2", "--world", str(WORLD)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.rstrip().endswith("passed, 0 failed")
    world = world_copy(tmp_path, secrets={"prod/web/db-password": {}})
    assert main(["verify", "--config-dir", str(CONFIG_DIR), "--image", "web:v2", "--world", str(world)]) == 1
    out = capsys.readouterr().out
    [failed] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert "secret-has-value" in failed and "exists but has no value" in failed
    assert out.rstrip().endswith("1 failed")


def test_run_starts_a_one_off_task_prints_its_log_and_exits_with_its_code(tmp_path, capsys):
    world = world_copy(
        tmp_path, migration={"exitCode": 3, "logLines": ["checking schema", "pending migration 2026112201"]}
    )
    code = main(["run", "--config-dir", str(CONFIG_DIR), "--world", str(world), "--", "bin/rails", "db:migrate:status"])
    out = capsys.readouterr().out
    assert code == 3
    assert out.splitlines()[0].startswith("started arn:aws:ecs:us-east-1:123456789012:task/prod/")
    assert "(run (bin/rails db:migrate:status)) on web:1" in out
    assert "checking schema\npending migration 2026112201\n" in out
    assert (
        "MigrationFailed: Migration run (bin/rails db:migrate:status) in container app of web:1 exited with code 3"
        in out
    )


def test_run_needs_a_command_or_a_known_migration(capsys):
    assert main(["run", "--config-dir", str(CONFIG_DIR), "--world", str(WORLD)]) == 2
    assert "give a command after --, or --migration NAME" in capsys.readouterr().err
    assert main(["run", "--config-dir", str(CONFIG_DIR), "--world", str(WORLD), "--migration", "seed"]) == 2
    assert "--migration seed: the config has no migrations" in capsys.readouterr().err


def test_deploy_starts_the_state_machine_and_follows_it_to_the_end(capsys):
    assert main(["deploy", "--service", "web", "--image", "web:v2", "--world", str(WORLD)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(
        "started arn:aws:states:us-east-1:123456789012:execution:ferry-sandbox-deploy:web-manual-"
    )
    assert "Register the new revision" in out and "ExecutionSucceeded" in out
    assert out.rstrip().endswith("SUCCEEDED")


def test_deploy_of_an_unregistered_service_or_a_foreign_image_starts_nothing(capsys):
    assert main(["deploy", "--service", "api", "--image", "web:v2", "--world", str(WORLD)]) == 1
    assert "ServiceNotRegistered: service 'api' has no config in the registry" in capsys.readouterr().err
    assert main(["deploy", "--service", "web", "--image", "nginx:1.27", "--world", str(WORLD)]) == 2
    assert "repository 'nginx' feeds no container of web" in capsys.readouterr().err


def test_deploy_rollback_of_a_service_ferry_never_deployed_says_so(capsys):
    assert main(["deploy", "--service", "web", "--rollback", "--world", str(WORLD)]) == 1
    out = capsys.readouterr().out
    assert "Find the revision to roll back to" in out
    assert "Error: NothingToRollBack" in out and "Ferry has no record of deploying prod/web" in out
    assert main(["deploy", "--service", "web", "--rollback", "--image", "web:v2", "--world", str(WORLD)]) == 2


def test_a_rollback_request_says_what_it_asks_for_in_its_input():
    from types import SimpleNamespace

    from ferry_cli.local import deploy_input

    request = deploy_input(SimpleNamespace(rollback=True, image=None, service="web"), None, "unused")
    assert request == {
        "summary": "roll back web to the revision before Ferry's last deploy (ferry deploy --rollback)",
        "service": "web",
        "action": "rollback",
    }
