"""`ferry render`, `ferry diff` and `ferry init`: the library's own code, run from a laptop.

Each command runs against a sandbox world (`--world`, nothing leaves the
machine) or against the AWS account of the usual environment (profile,
region and credentials as for the AWS CLI). Nothing here changes ECS.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws, config, taskdef
from ferry.aws import images
from ferry.aws import container_logs
from ferry.steps import migrate, render
from ferry.triggers import requests
from ferry.aws.ecs import describe_service

DEFAULT_ENVIRONMENT = "dev"


class CommandError(Exception):
    """Bad input to a command: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    account: str
    region: str

    def image_uri(self, text: str) -> str:
        """A full ECR URI, or `repository:tag` / `repository@sha256:…` in this account's registry."""
        if images.parse(text):
            return text
        if re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[\w.-]+|@sha256:[0-9a-f]{64})", text):
            return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{text}"
        raise CommandError(f"--image {text!r}: give an ECR image URI or <repository>:<tag>")


@contextmanager
def target(world: Path | None, state: Path | None = None) -> Iterator[Target]:
    if world is not None:
        from .sandbox.run import world_session

        with world_session(world, state=state) as (_sandbox, built):
            yield Target(built.account, built.region)
        return
    import boto3

    session = boto3.session.Session()
    if not session.region_name:
        raise CommandError(
            "no AWS region: set AWS_DEFAULT_REGION (or a profile's region), or use --world for the sandbox"
        )
    aws.reset()
    try:
        account = aws.client("sts").get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as exc:
        raise CommandError(
            f"cannot reach your AWS account ({exc}): set credentials as for the AWS CLI, or use --world"
        ) from exc
    yield Target(account, session.region_name)


def parse_images(cfg: config.ServiceConfig, given: list[str], where: Target) -> dict[str, str]:
    """`--image app=<uri>` or `--image <uri>` (every container its repository feeds)."""
    result: dict[str, str] = {}
    for item in given:
        container, _, text = item.rpartition("=") if "=" in item else ("", "", item)
        uri = where.image_uri(text)
        if container:
            result[container] = uri
            continue
        ref = images.parse(uri)
        fed = cfg.containers_fed_by(ref.repository) if ref else []
        if not fed:
            raise CommandError(
                f"--image {item}: repository {ref.repository if ref else text!r} feeds no container of "
                f"{cfg.name} (containers: {cfg.containers}); write --image <container>=<uri>"
            )
        result.update({c: uri for c in fed})
    if not result:
        raise CommandError("give at least one --image (<container>=<uri>, or <repository>:<tag>)")
    return result


def parse_values(given: list[str]) -> dict[str, str]:
    values = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--var {item!r}: write NAME=VALUE")
        values[name] = value
    return values


def _environment(args) -> str:
    return args.environment or os.environ.get("FERRY_ENVIRONMENT") or DEFAULT_ENVIRONMENT


def _plan_in(args, where: Target) -> render.Plan:
    environment = _environment(args)
    cfg = config.load_local(args.config_dir, environment)
    return render.plan(
        cfg,
        parse_images(cfg, args.image, where),
        environment=environment,
        values=parse_values(args.var),
        commit=args.commit,
    )


def plan(args) -> render.Plan:
    with target(args.world, args.state) as where:
        return _plan_in(args, where)


def cmd_render(args) -> str:
    return json.dumps(plan(args).spec, indent=2, sort_keys=True)


def cmd_diff(args) -> str:
    planned = plan(args)
    return (planned.diff.text or "") + f"\n{planned.diff.summary}"


# ---------------------------------------------------------------- ferry init


def _secret_placeholder(value_from: str) -> str:
    """A Secrets Manager ARN as {{ secret_arn }}, so the random suffix is looked up, not copied."""
    match = re.fullmatch(
        r"arn:aws[a-z-]*:secretsmanager:[^:]+:\d{12}:secret:(?P<name>.+)-[A-Za-z0-9]{6}(?::(?P<key>[^:]*)::?.*)?",
        value_from,
    )
    if not match:
        return value_from
    key = match["key"]
    return f"{{{{ secret_arn `{match['name']}` `{key}` }}}}" if key else f"{{{{ secret_arn `{match['name']}` }}}}"


def init_files(cluster: str, service: str, where: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ferry.yaml content, task-definition.json template) for a running service."""
    running = describe_service(cluster, service)
    described = aws.client("ecs").describe_task_definition(taskDefinition=running["taskDefinition"], include=["TAGS"])
    spec = taskdef.registration_input(described["taskDefinition"])
    containers = {}
    for container in spec["containerDefinitions"]:
        ref = images.parse(container.get("image", ""))
        if ref and ref.registry == where.account and ref.region == where.region:
            containers[container["name"]] = {"repository": ref.repository}
            container["image"] = f"{{{{ image `{container['name']}` }}}}"
        for secret in container.get("secrets", []):
            secret["valueFrom"] = _secret_placeholder(secret["valueFrom"])
    if not containers:
        raise CommandError(
            f"service {cluster}/{service} runs no image from this account's ECR ({where.account}, "
            f"{where.region}): Ferry deploys images pushed to ECR"
        )
    tags = [t for t in described.get("tags", []) if not t["key"].startswith(("aws:", "ferry:"))]
    if tags:
        spec["tags"] = tags
    cfg = {
        "cluster": cluster,
        "service": service,
        "containers": containers,
        "triggers": [{"repository": r, "tags": ["*"]} for r in sorted({c["repository"] for c in containers.values()})],
        "taskDefinition": {"template": "task-definition.json"},
        "strategy": {"type": "rolling"},
        "timeouts": {"deployment": 1800},
    }
    return cfg, spec


def cmd_init(args) -> str:
    out: Path = args.out
    files = {out / "ferry.yaml", out / "task-definition.json"}
    existing = sorted(str(f) for f in files if f.exists())
    if existing and not args.force:
        raise CommandError(f"{', '.join(existing)} already exist: pass --force to overwrite")
    with target(args.world, args.state) as where:
        cfg, spec = init_files(args.cluster, args.service, where)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Ferry config for {args.cluster}/{args.service}, written by `ferry init`.\n"
        f"# Upload this folder to s3://<config bucket>/services/{out.name}/ ; every field: docs/service-config.md\n"
    )
    (out / "ferry.yaml").write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    (out / "task-definition.json").write_text(json.dumps(spec, indent=2) + "\n")
    return f"wrote {out / 'ferry.yaml'} and {out / 'task-definition.json'}"


# ---------------------------------------------------------------- ferry verify


def cmd_verify(args) -> tuple[str, int]:
    from ferry.steps import verify

    with target(args.world, args.state) as where:
        planned = _plan_in(args, where)
        cfg = planned.config
        report = verify.verify(
            planned.spec,
            cluster=cfg.cluster,
            service=cfg.service,
            alarms=cfg.alarms,
            target_groups=cfg.target_groups,
            read_secret_values=cfg.read_secret_values,
        )
    lines = [f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<24} {c.line}" for c in report.checks]
    lines.append(f"\n{len(report.passed)} passed, {len(report.failed)} failed")
    return "\n".join(lines), (1 if report.failed else 0)


# ---------------------------------------------------------------- ferry run


def _task_definition_for(cfg: config.ServiceConfig, given: str | None) -> str:
    if given:
        return given
    return describe_service(cfg.cluster, cfg.service)["taskDefinition"]


def _one_off(cfg: config.ServiceConfig, args) -> migrate.Migration:
    if args.migration:
        found = next((m for m in cfg.migrations if m.name == args.migration), None)
        if found is None:
            raise CommandError(
                f"--migration {args.migration}: the config has {[m.name for m in cfg.migrations] or 'no migrations'}"
            )
        return migrate.Migration(found.name, found.container, list(found.command), found.environment, found.timeout)
    if not args.command_args:
        raise CommandError("give a command after --, or --migration NAME")
    container = args.container or next(iter(sorted(cfg.containers)))
    return migrate.Migration("run", container, list(args.command_args), parse_values(args.env), args.timeout)


def cmd_run(args, out=None) -> int:
    """Start a one-off task of the service's revision, print its log as it arrives, exit with its exit code."""
    import sys
    import uuid

    from ferry.runtime import clock

    out = out or sys.stdout
    with target(args.world, args.state):
        cfg = config.load_local(args.config_dir, _environment(args))
        step = _one_off(cfg, args)
        td_arn = _task_definition_for(cfg, args.task_definition)
        run_id = f"ferry-run-{uuid.uuid4().hex[:12]}"
        task = migrate.run_task(cfg.cluster, cfg.service, td_arn, step, run_id, migrate.started_by(run_id, step.name))
        arn = task["taskArn"]
        print(f"started {arn} ({step.label()}) on {td_arn.rsplit('/', 1)[-1]}", file=out, flush=True)
        logs = container_logs.config(td_arn, step.container)
        ecs, started, printed = aws.client("ecs"), clock.now(), 0
        poll = 5.0 if args.world else 3.0  # seconds between looks (in a sandbox, simulated: the world runs meanwhile)
        while True:
            task = ecs.describe_tasks(cluster=cfg.cluster, tasks=[arn])["tasks"][0]
            lines, _ = container_logs.tail(logs, step.container, arn, limit=10000)
            for line in lines[printed:]:
                print(line, file=out, flush=True)
            printed = max(printed, len(lines))
            if task.get("lastStatus") == "STOPPED":
                break
            if clock.now() - started > step.timeout:
                ecs.stop_task(cluster=cfg.cluster, task=arn, reason=f"ferry run: longer than {step.timeout} s")
                print(f"timed out after {step.timeout} s: stopping {arn}", file=out, flush=True)
                return 124
            clock.sleep(poll)
        result = migrate.outcome(task, step, logs, {"revision": td_arn.rsplit("/", 1)[-1]})
        if result.error is None:
            print("exited 0", file=out)
            return 0
        print(f"{result.error}: {result.cause.splitlines()[0]}", file=out)
        container = next((c for c in task.get("containers", []) if c.get("name") == step.container), {})
        return container.get("exitCode") or 1


# ---------------------------------------------------------------- ferry deploy


@dataclass(frozen=True)
class Installation:
    state_machine_arn: str
    config_bucket: str


def _installation(args, sandbox=None) -> Installation:
    if sandbox is not None:
        return Installation(sandbox.state_machine_arn, sandbox.config_bucket)
    stack = args.stack or f"ferry-{_environment(args)}"
    try:
        found = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise CommandError(f"cannot read stack {stack} ({exc}): pass --stack with Ferry's stack name") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    if "StateMachineArn" not in outputs:
        raise CommandError(f"stack {stack} has no StateMachineArn output: is it a Ferry stack?")
    return Installation(outputs["StateMachineArn"], outputs["ConfigBucketName"])


def deploy_input(args, where: Target, bucket: str) -> dict[str, Any]:
    if args.rollback:
        if args.image:
            raise CommandError("--rollback goes back to the revision Ferry's last deploy replaced: give no --image")
        return {
            "summary": f"roll back {args.service} to the revision before Ferry's last deploy (ferry deploy --rollback)",
            "service": args.service,
            "action": "rollback",
        }
    cfg = config.load(bucket, args.service, _environment(args))
    images = parse_images(cfg, args.image, where)
    request: dict[str, Any] = {
        "summary": requests.request_summary(args.service, images, "ferry deploy"),
        "service": args.service,
        "images": images,
    }
    if args.var:
        request["values"] = parse_values(args.var)
    if args.commit:
        request["commit"] = args.commit
    return request


def _follow(execution_arn: str, poll: float, out, to_offset) -> tuple[str, list[dict[str, Any]]]:
    from ferry.runtime import clock

    from . import history

    sfn = aws.client("stepfunctions")
    shown = 0
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        rows = history.rows(events, to_offset)
        if len(rows) > shown:
            lines = history.table(rows).splitlines()
            print("\n".join(lines if not shown else lines[shown + 1 :]), file=out, flush=True)
            shown = len(rows)
        if status != "RUNNING":
            return status, events
        clock.sleep(poll)  # in a sandbox, simulated seconds: the world runs meanwhile


def cmd_deploy(args, out=None) -> int:
    """Start the deploy state machine as the console's "Start execution" would, and follow it with --wait."""
    import sys
    import uuid

    from . import history

    out = out or sys.stdout
    with ExitStack() as stack:
        sandbox = None
        if args.world is not None:
            from .sandbox.run import world_session

            sandbox, built = stack.enter_context(world_session(args.world, state=args.state))
            where = Target(built.account, built.region)
        else:
            where = stack.enter_context(target(None))
        installation = _installation(args, sandbox)
        request = deploy_input(args, where, installation.config_bucket)
        name = f"{args.service}-manual-{uuid.uuid4().hex[:12]}"[-80:]
        arn = aws.client("stepfunctions").start_execution(
            stateMachineArn=installation.state_machine_arn, name=name, input=json.dumps(request)
        )["executionArn"]
        if sandbox is not None and sandbox.journal is not None:
            sandbox.journal.record_start("deploy", name, request)
        print(f"started {arn}", file=out, flush=True)
        if not (args.wait or sandbox):
            return 0
        start = aws.client("stepfunctions").describe_execution(executionArn=arn)["startDate"]
        status, events = _follow(arn, 5.0, out, lambda ts: (ts - start).total_seconds())
        error, cause = history.outcome(events)
        print(f"\n{status}" + (f"\nError: {error}\nCause: {cause}" if error else ""), file=out)
        return 0 if status == "SUCCEEDED" else 1
