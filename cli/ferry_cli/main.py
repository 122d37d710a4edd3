"""Entry point of the `ferry` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
GRAPH_HELP = (
    "write each execution as a Mermaid flowchart (every state, the path taken highlighted): "
    "FILE.md gets one Markdown file with a heading and a ```mermaid block per execution; "
    "any other name (e.g. run.mmd) gets bare Mermaid, one file per execution "
    "(FILE-<execution name>.mmd) when there are several"
)


def _speed(text: str) -> float:
    """--speed: a positive number of simulated seconds per real second."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed takes a positive number of simulated seconds per real second, got {text!r}"
        ) from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"--speed takes a positive number of simulated seconds per real second "
            f"(leave it out to run as fast as it goes), got {text!r}"
        )
    return value


STATE_HELP = (
    "with --world: keep the sandbox in DIR between commands (created if missing): each command given the same "
    "DIR first replays what the earlier ones did, so you can deploy, look, roll back and push again"
)


class _Append(argparse.Action):
    """Keep --event and --manifest in the order given on the command line."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "deliveries", None) or []
        items.append((self.dest, Path(values)))
        namespace.deliveries = items


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description="Ferry: safe ECS deploys on Step Functions.")
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="run Ferry locally against a simulated AWS account")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    run = sandbox_commands.add_parser(
        "run", help="build a world, deliver events through the template's EventBridge rules, run every execution"
    )
    run.add_argument("--world", required=True, type=Path, help="world file (YAML), see README 'Sandbox worlds'")
    run.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)
    run.add_argument(
        "--event",
        dest="event",
        action=_Append,
        metavar="EVENT.json",
        help="an EventBridge event to deliver (repeatable; delivered in order)",
    )
    run.add_argument(
        "--manifest",
        dest="manifest",
        action=_Append,
        metavar="MANIFEST.json",
        help="a release manifest to drop into the config bucket (repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    run.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="N",
        help="watch the run at N simulated seconds per real second (default: as fast as it goes; "
        "the simulated times reported are the same either way)",
    )
    run.add_argument("--logs", action="store_true", help="echo the handlers' log lines to stderr")
    run.add_argument(
        "--history",
        action="store_true",
        help="print each execution's whole event history, as the console lists it, before the summary",
    )
    run.add_argument("--graph", type=Path, metavar="FILE", help=GRAPH_HELP)
    imported = sandbox_commands.add_parser(
        "import",
        help="write a world that reproduces services of your AWS account (reads it, changes nothing)",
        description="Read the services of a cluster, read-only (Describe, List and Get calls that return no secret "
        "value), and write a world that reproduces them in the sandbox, their task definitions beside it "
        "and a default service config per service in the registry directory. What the world cannot hold "
        "is listed on stderr as 'not imported: ...'.",
    )
    imported.add_argument("--cluster", required=True, help="the ECS cluster's name")
    imported.add_argument(
        "--service",
        dest="services",
        action="append",
        required=True,
        metavar="SERVICE",
        help="an ECS service of the cluster (repeatable)",
    )
    imported.add_argument("--region", help="the AWS region (default: your AWS CLI configuration's)")
    imported.add_argument(
        "--out",
        type=Path,
        metavar="WORLD.yaml",
        help="write the world here (default: stdout); task definitions are written beside it",
    )
    imported.add_argument(
        "--registry",
        type=Path,
        metavar="DIR",
        help="directory for the service configs (default: registry/ beside the world)",
    )
    imported.add_argument("--force", action="store_true", help="overwrite existing files")
    _local_commands(commands)
    _observe_commands(commands)
    return parser


def _observe_commands(commands) -> None:
    status = commands.add_parser(
        "status",
        help="a service's latest deploys, and the progress of a running one",
        description="The service's latest executions of Ferry's state machine, newest first; for a running one, "
        "the states entered so far and the one it is in now. In a sandbox world (--world) the "
        "--event/--manifest deliveries run first: to their end, or live with --follow.",
    )
    status.add_argument("service", metavar="SERVICE", help="the service's name in the config registry")
    status.add_argument("--limit", type=int, default=3, help="how many executions to show (default 3)")
    status.add_argument(
        "--follow",
        action="store_true",
        help="follow the newest running execution until it ends; exit 0 only if it (with none "
        "running: the newest) succeeded",
    )
    status.add_argument(
        "--interval", type=float, help="seconds between polls with --follow (default 5; 0.1 in the sandbox)"
    )
    history = commands.add_parser(
        "history",
        help="an execution's history as the console lists it, or the latest executions",
        description="With EXECUTION, its history (every event, as the Step Functions console lists it), its "
        "error and summary; without, the state machine's latest executions. In a sandbox world "
        "(--world) the --event/--manifest deliveries run to their end first.",
    )
    history.add_argument(
        "execution", nargs="?", metavar="EXECUTION", help="an execution's name or ARN, or the start of its name"
    )
    history.add_argument("--limit", type=int, default=20, help="how many executions to list (default 20)")
    history.add_argument("--graph", type=Path, metavar="FILE", help=GRAPH_HELP)
    for cmd in (status, history):
        cmd.add_argument("--json", action="store_true", help="print JSON instead of tables")
        cmd.add_argument("--environment", help="Ferry installation name (default $FERRY_ENVIRONMENT or dev)")
        cmd.add_argument("--stack", help="Ferry's CloudFormation stack (default ferry-<environment>)")
        cmd.add_argument("--world", type=Path, help="read a sandbox world's executions instead of the AWS account's")
        cmd.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)
        cmd.add_argument(
            "--event",
            dest="event",
            action=_Append,
            metavar="EVENT.json",
            help="with --world: an EventBridge event to deliver first (repeatable; in order)",
        )
        cmd.add_argument(
            "--manifest",
            dest="manifest",
            action=_Append,
            metavar="MANIFEST.json",
            help="with --world: a release manifest to drop into the config bucket first (repeatable)",
        )
        cmd.add_argument(
            "--speed",
            type=_speed,
            default=None,
            metavar="N",
            help="with --world: watch at N simulated seconds per real second (default: as fast as it goes)",
        )
    history.set_defaults(follow=False, interval=None)


def _local_commands(commands) -> None:
    world_help = "run against this sandbox world instead of the AWS account of the environment"
    for name, help_text in (
        ("render", "print the task definition a deploy would register (changes nothing)"),
        ("diff", "print what a deploy would change, as a unified diff (changes nothing)"),
        ("verify", "check every reference of the revision a deploy would register (changes nothing)"),
    ):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument(
            "--config-dir", required=True, type=Path, help="a service's config folder (ferry.yaml + templates)"
        )
        cmd.add_argument(
            "--image",
            action="append",
            default=[],
            metavar="[CONTAINER=]IMAGE",
            help="image to deploy: an ECR URI or <repository>:<tag> (repeatable)",
        )
        cmd.add_argument(
            "--var", action="append", default=[], metavar="NAME=VALUE", help="a template value (repeatable)"
        )
        cmd.add_argument("--commit", help="commit id for {{ commit }}")
        cmd.add_argument("--environment", help="environment name for templates (default $FERRY_ENVIRONMENT or dev)")
        cmd.add_argument("--world", type=Path, help=world_help)
        cmd.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)
    init = commands.add_parser("init", help="write a config and task definition template from a running service")
    init.add_argument("--cluster", required=True)
    init.add_argument("--service", required=True)
    init.add_argument(
        "--out", required=True, type=Path, help="folder to write ferry.yaml and task-definition.json into"
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument("--world", type=Path, help=world_help)
    init.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)
    run = commands.add_parser(
        "run",
        help="run a one-off task of the service's revision and stream its log",
        usage="ferry run --config-dir DIR [--migration NAME | [--container C] -- COMMAND...]",
    )
    run.add_argument("--config-dir", required=True, type=Path, help="a service's config folder")
    run.add_argument("--migration", help="run this migration from the config, as a deploy would")
    run.add_argument("--container", help="container whose command is replaced (default: the first configured one)")
    run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment (repeatable)")
    run.add_argument("--task-definition", help="revision ARN or family:revision (default: the one the service runs)")
    run.add_argument("--timeout", type=int, default=900, help="seconds before the task is stopped (default 900)")
    run.add_argument("--environment", help="environment name for Jsonnet configs")
    run.add_argument("--world", type=Path, help=world_help)
    run.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)
    run.add_argument("command_args", nargs="*", metavar="COMMAND", help="the command, after --")
    deploy = commands.add_parser(
        "deploy", help="start a deploy of a registered service (the console's Start execution)"
    )
    deploy.add_argument("--service", required=True, help="the service's name in the config registry")
    deploy.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="[CONTAINER=]IMAGE",
        help="image to deploy: an ECR URI or <repository>:<tag> (repeatable)",
    )
    deploy.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="a template value (repeatable)"
    )
    deploy.add_argument("--commit", help="commit id for {{ commit }}")
    deploy.add_argument("--environment", help="Ferry installation name (default $FERRY_ENVIRONMENT or dev)")
    deploy.add_argument("--stack", help="Ferry's CloudFormation stack (default ferry-<environment>)")
    deploy.add_argument(
        "--rollback",
        action="store_true",
        help="go back to the revision Ferry's last deploy of the service replaced (no --image)",
    )
    deploy.add_argument(
        "--wait", action="store_true", help="follow the execution until it ends (always in the sandbox)"
    )
    deploy.add_argument("--world", type=Path, help=world_help)
    deploy.add_argument("--state", type=Path, metavar="DIR", help=STATE_HELP)


def _local(args: argparse.Namespace) -> int:
    from ferry.errors import FerryError

    from . import local
    from .sandbox.world import WorldError

    command = {
        "render": local.cmd_render,
        "diff": local.cmd_diff,
        "init": local.cmd_init,
        "verify": local.cmd_verify,
        "run": local.cmd_run,
        "deploy": local.cmd_deploy,
    }[args.command]
    try:
        result = command(args)
        if isinstance(result, int):  # ferry run: the task's exit code
            return result
        text, status = result if isinstance(result, tuple) else (result, 0)
        print(text)
        return status
    except (local.CommandError, WorldError) as exc:
        print(f"ferry {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FerryError as exc:
        print(f"ferry {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _sandbox_run(args: argparse.Namespace) -> int:
    from .history import progress_printer, table
    from .sandbox.run import load_delivery, run
    from .sandbox import SandboxError
    from .sandbox.world import WorldError

    deliveries_args = getattr(args, "deliveries", None) or []
    if not deliveries_args:
        print("ferry sandbox run: give at least one --event or --manifest", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        deliveries = [load_delivery(kind, path) for kind, path in deliveries_args]
        summary = run(
            args.world,
            deliveries,
            speed=args.speed,
            state=args.state,
            log_echo=sys.stderr if args.logs else None,
            graphs=bool(args.graph),
            watch=None if args.json else progress_printer(sys.stdout),
        )
    except WorldError as exc:
        print(f"ferry sandbox run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SandboxError as exc:
        print(f"ferry sandbox run: {exc}", file=sys.stderr)
        return 1
    histories = summary.pop("histories")
    summary.pop("logLines")
    summary.pop("delivered")
    summary.pop("outputs")
    if args.graph:
        from .graph import write

        graphs = summary.pop("graphs")
        for written in write(args.graph, list(graphs.items())):
            print(f"wrote {written}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for execution in summary["executions"]:
            print(f"\n== {execution['name']}  ({execution['service']})  {execution['status']}")
            if args.history:
                print(table(histories[execution["name"]]))
            if execution.get("supersededBy"):
                print(f"\nSuperseded: {execution['supersededBy']}")
            if execution["error"]:
                print(f"\nError: {execution['error']}\nCause: {execution['cause']}")
            if isinstance(execution.get("output"), dict) and execution["output"].get("result") is not None:
                out = execution["output"]
                print(
                    f"\nOutput: {out.get('result')} {out.get('ecsService')} {out.get('from')} -> {out.get('to')} "
                    f"({out.get('strategy')}, {out.get('durationSeconds')} s): {out.get('summary')}"
                )
        if not summary["executions"]:
            print("No execution was started.")
        print("\n== Summary")
        for key, svc in summary["services"].items():
            images = ", ".join(f"{c}={i.rsplit('/', 1)[-1]}" for c, i in sorted(svc["images"].items()))
            print(f"{key}: {svc['taskDefinition']}  running {svc['runningCount']}/{svc['desiredCount']}  {images}")
        statuses = ", ".join(f"{e['name']} {e['status']}" for e in summary["executions"]) or "none"
        print(f"executions: {statuses}")
        print(
            f"canary tasks left: {summary['canaryTasks']}, locks held: {summary['locksHeld']}, "
            f"state transitions: {summary['transitions']}, Lambda invocations: {summary['lambdaInvocations']}"
        )
    failed = [e for e in summary["executions"] if e["status"] != "SUCCEEDED"]
    return 1 if failed else 0


def _sandbox_import(args: argparse.Namespace) -> int:
    import os
    import re

    from .sandbox.importer import ImportFailed, import_world, world_yaml

    def refuse(message: str) -> int:
        print(f"ferry sandbox import: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    cluster = args.cluster.rsplit("/", 1)[-1] if args.cluster.startswith("arn:") else args.cluster
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", cluster):
        return refuse(f"--cluster {args.cluster!r}: give an ECS cluster's name (letters, digits, - and _) or ARN")
    services = [s.rsplit("/", 1)[-1] if s.startswith("arn:") else s for s in args.services]
    for given, name in zip(args.services, services):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name):
            return refuse(f"--service {given!r}: give an ECS service's name (letters, digits, - and _) or ARN")
    twice = sorted({s for s in services if services.count(s) > 1})
    if twice:
        return refuse(f"--service {twice[0]} is given twice: name each service once")
    if args.region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", args.region):
        return refuse(f"--region {args.region!r}: give a region name such as eu-west-1")
    if args.out is not None and args.out.is_dir():
        return refuse(f"--out {args.out}: is a directory; give the world file's path, e.g. {args.out / 'world.yaml'}")
    base = args.out.parent if args.out is not None else Path(".")
    registry = args.registry if args.registry is not None else base / "registry"
    if registry.exists() and not registry.is_dir():
        return refuse(f"--registry {registry}: is a file; give a directory for the service configs")
    relative = Path(os.path.relpath(registry, base)).as_posix()
    planned = [base / f"{s}-task-def.json" for s in services] + [registry / s / "ferry.yaml" for s in services]
    planned += [args.out] if args.out is not None else []
    existing = [str(p) for p in planned if p.exists()]
    if existing and not args.force:
        return refuse(f"{', '.join(existing)} already exist: pass --force to overwrite")

    import boto3

    session = boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return refuse("no AWS region: pass --region, or set AWS_DEFAULT_REGION (or a profile's region)")
    notes: list[str] = []
    try:
        world, files = import_world(session, cluster, services, registry=relative, not_imported=notes)
    except ImportFailed as exc:
        print(f"ferry sandbox import: {exc}", file=sys.stderr)
        return exc.status
    text = world_yaml(world, source=f"{cluster}/{', '.join(services)} in {world['account']} ({world['region']})")
    writes = [(base / relative_path, content) for relative_path, content in files.items()]
    writes += [(args.out, text)] if args.out is not None else []
    for path, content in writes:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        except OSError as exc:
            print(f"ferry sandbox import: cannot write {path}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {path}", file=sys.stderr)
    if args.out is None:
        print(text, end="")
        print("the world's files are in this directory: save the world beside them", file=sys.stderr)
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def _observe(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from . import status
    from .local import CommandError
    from .sandbox.world import WorldError

    failures: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
    if args.world is not None:
        from .sandbox import SandboxError

        failures += (SandboxError,)
    command = status.cmd_status if args.command == "status" else status.cmd_history
    try:
        return command(args)
    except (CommandError, WorldError) as exc:
        print(f"ferry {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except failures as exc:
        print(f"ferry {args.command}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    from .terminal import inert_output

    with inert_output():  # Causes, log lines and values from AWS are printed inert (ferry_cli.terminal)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "world", None) is not None:
        from .sandbox import collect_less

        collect_less()
    if getattr(args, "state", None) is not None and getattr(args, "world", None) is None:
        print(f"ferry {args.command}: --state keeps a sandbox between commands: give --world too", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command == "sandbox" and args.sandbox_command == "run":
        return _sandbox_run(args)
    if args.command == "sandbox" and args.sandbox_command == "import":
        return _sandbox_import(args)
    if args.command in ("status", "history"):
        return _observe(args)
    if args.command in ("render", "diff", "init", "verify", "run", "deploy"):
        return _local(args)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
