"""Render: the new task definition revision, planned and diffed (Register registers it, after Verify).

Two sources: `taskDefinition: current` takes the revision the service runs
now and swaps in the new images; `{template: <file>}` renders a template
beside the config (placeholders resolved by `templating`). Either way images
are pinned by digest, so a tag moved after the push cannot change what runs,
and the result is checked against ECS's input shape before anything is
registered.

The step's output ($.render, `Output`) is what every later state reads about the deploy: the ECS service, the
strategy and its settings from the config, and the plan's previous revision, images, summary and content hash
(`planSha256`: Verify and Register act only on the document with that hash). "Find the
revision to roll back to" (ferry.steps.lock.RollbackTarget) writes $.render too, with the same keys for what
both provide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ferry.aws import artefacts, images
from ferry import aws, taskdef
from ferry.contract import Migration, Model, key

if TYPE_CHECKING:  # imported on first use: configs, templates and diffs are heavy to import
    from ferry.config import ServiceConfig
    from ferry.runtime.settings import Settings
    from ferry.taskdef.diff import Diff
from ferry.aws.ecs import describe_service, revision_name
from ferry.errors import ConfigInvalid, ImageNotFound, InputInvalid, TaskDefinitionInvalid


@dataclass(frozen=True, kw_only=True)
class Input(Model):
    """The input of "Render the new task definition and diff it"."""

    execution: str = key("execution", doc="the execution's name, $$.Execution.Name: what the artefacts are kept under")
    service: str = key("service", doc="the service's name in the config registry, $.service: whose config is read")
    images: dict = key("images", kinds=(dict,), doc="container -> ECR image URI, $.images")
    request: dict = key(
        "request",
        kinds=(dict,),
        required=False,
        default={},
        doc="the execution's input, $: its optional values, commit and migrate",
    )

    @property
    def migrate(self) -> bool:
        """False when the request skips the migrations for this release ("migrate": false)."""
        return self.request.get("migrate", True) is not False


@dataclass(frozen=True, kw_only=True)
class Timeouts(Model):
    """The config's per-phase limits in seconds ($.render.timeouts.<phase>)."""

    canary: int = key("canary", kinds=(int,), doc="the canary's start and health")
    deployment: int = key("deployment", kinds=(int,), doc="the main rollout")
    rollback: int = key("rollback", kinds=(int,), doc="a rollback deployment")


@dataclass(frozen=True, kw_only=True)
class Artefacts(Model):
    """Where the plan is kept in the artefacts bucket ($.render.artefacts)."""

    task_definition_input: str = key("taskDefinitionInput", doc="the RegisterTaskDefinition input Register reads")
    diff: str = key("diff", doc="the diff against what runs, as text")


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """What the deploy does ($.render): read by every later state."""

    cluster: str = key("cluster", doc="the ECS cluster")
    ecs_service: str = key("ecsService", doc="the ECS service")
    request_action: str = key("requestAction", doc="deploy (a rollback request's target says rollback)")
    strategy: str = key("strategy", doc="canary, rolling or native")
    canary: dict = key("canary", kinds=(dict,), doc="the config's strategy.canary settings ({} when none)")
    timeouts: Timeouts = key("timeouts", nested=Timeouts, doc="the config's per-phase limits")
    alarms: list = key("alarms", kinds=(list,), doc="the health gates' CloudWatch alarms: Verify and the bake")
    bake_seconds: int = key("bakeSeconds", kinds=(int,), doc="how long the bake watches the alarms (0: no bake)")
    target_groups: list = key("targetGroups", kinds=(list,), doc="the health gates' target groups")
    read_secret_values: bool = key(
        "readSecretValues", kinds=(bool,), doc="whether Verify may read a secret's value to find its JSON keys"
    )
    migrations: list = key("migrations", kinds=(list,), doc="the migrations to run, in order, each a Migration")
    has_migrations: bool = key(
        "hasMigrations",
        kinds=(bool,),
        doc='false when the config has none, or the request skips them ("migrate": false)',
    )
    family: str = key("family", doc="the new revision's family")
    previous_task_definition_arn: str = key(
        "previousTaskDefinitionArn", doc="the revision running now: what a rollback goes back to"
    )
    previous_revision: str = key("previousRevision", doc="the same, as family:revision")
    desired_count: int = key("desiredCount", kinds=(int,), doc="the service's task count now: a rollback restores it")
    keep_failed_revisions: int = key(
        "keepFailedRevisions",
        kinds=(int,),
        doc="the config's rollback.keepFailedRevisions, read now: a rollback never reads the config again",
    )
    images: dict = key("images", kinds=(dict,), doc="container -> image pinned by digest, for the containers deployed")
    summary: str = key("summary", doc="the diff in one line: what the console and the notifications show")
    artefacts: Artefacts = key("artefacts", nested=Artefacts, doc="where the plan and the diff are kept")
    plan_sha256: str = key(
        "planSha256",
        doc="the sha256 of the plan's bytes as stored: Verify checks, and Register registers, only that document",
    )

    @property
    def where(self) -> str:
        """cluster/ECS service, as log lines and messages name it."""
        return f"{self.cluster}/{self.ecs_service}"


# action -> (input, output): what "Render the new task definition and diff it" passes and stores at $.render.
CONTRACTS = {None: (Input, Output)}


@dataclass(frozen=True)
class Plan:
    """Everything a deploy will register and change, computed without changing anything."""

    config: ServiceConfig
    service: dict[str, Any]
    current: dict[str, Any]  # the running revision (DescribeTaskDefinition)
    current_tags: list[dict[str, str]]
    spec: dict[str, Any]  # the new revision's RegisterTaskDefinition input
    pinned: dict[str, images.ImageRef]  # containers whose image this deploy sets
    diff: Diff
    source: str  # where the spec came from, for messages

    @property
    def current_arn(self) -> str:
        return self.current["taskDefinitionArn"]


PLAN_ARTEFACT = artefacts.PLAN_ARTEFACT
DIFF_ARTEFACT = "diff.txt"


def pin(uri: str) -> images.ImageRef:
    ref = images.parse(uri)
    if ref is None:
        raise InputInvalid(
            f"image {uri!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>)"
        )
    return images.resolve(ref.registry, ref.region, ref.repository, tag=ref.tag, digest=ref.digest)


def check_images_match_config(config: ServiceConfig, pinned: Mapping[str, images.ImageRef]) -> None:
    """Only the containers the config names may change, and only to images of their own repository."""
    for name, ref in sorted(pinned.items()):
        if name not in config.containers:
            raise InputInvalid(
                f"container {name!r} is not one Ferry deploys for service {config.name} "
                f"(its config names {sorted(config.containers)}): add it under `containers` to deploy it"
            )
        expected = config.containers[name]
        if ref.repository != expected:
            raise InputInvalid(
                f"container {name} is fed by ECR repository {expected!r}, not {ref.repository!r}: "
                "deploy an image of that repository, or change `containers` in the config"
            )


# The Migrate state's fallback check when a task's stop event is missed; shorter for short timeouts.
MIGRATION_HEARTBEAT_SECONDS = 300


def migration_steps(config: ServiceConfig) -> list[dict[str, Any]]:
    """The config's migrations as the Map state runs them, in order."""
    return [
        Migration(
            name=m.name,
            container=m.container,
            command=list(m.command),
            environment=dict(m.environment),
            timeout=m.timeout,
            heartbeat_seconds=min(MIGRATION_HEARTBEAT_SECONDS, m.timeout),
        ).to_state()
        for m in config.migrations
    ]


def request_values(request: Mapping[str, Any]) -> dict[str, str]:
    """Optional `values` of the execution input (a manifest's or an operator's) for templates."""
    values = request.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise InputInvalid('the input\'s `values` must map names to strings, e.g. {"values": {"RELEASE": "2026-11"}}')
    return values


def request_commit(request: Mapping[str, Any]) -> str | None:
    commit = request.get("commit")
    if commit is not None and not (isinstance(commit, str) and 0 < len(commit) <= 128):
        raise InputInvalid("the input's `commit` must be a string of at most 128 characters (a commit id)")
    return commit


def _running_images(config: ServiceConfig, current: dict[str, Any]) -> dict[str, images.ImageRef]:
    """The configured containers' images as they run now, by digest (for templates that deploy only some)."""
    found = {}
    for container in current.get("containerDefinitions", []):
        ref = images.parse(container.get("image", ""))
        if container["name"] not in config.containers or ref is None:
            continue
        try:
            found[container["name"]] = (
                ref if ref.digest else images.resolve(ref.registry, ref.region, ref.repository, tag=ref.tag)
            )
        except ImageNotFound:
            continue  # only a template that asks for this container's image needs it; it then says so
    return found


def swap_images(current: dict[str, Any], new_images: Mapping[str, images.ImageRef]) -> dict[str, Any]:
    """The RegisterTaskDefinition input: the running revision with images swapped in."""
    spec = taskdef.registration_input(current)
    by_name = {c["name"]: c for c in spec["containerDefinitions"]}
    unknown = sorted(set(new_images) - set(by_name))
    if unknown:
        raise TaskDefinitionInvalid(
            f"containers {unknown} are not in task definition {current['family']}:{current['revision']} "
            f"(it has {sorted(by_name)}): fix `containers` in the service config"
        )
    for name, ref in new_images.items():
        by_name[name]["image"] = ref.pinned
    return spec


def check_template_result(
    config: ServiceConfig, spec: dict[str, Any], pinned: Mapping[str, images.ImageRef], source: str
) -> None:
    """A template must place every configured container and use the deployed images for them."""
    by_name = {c.get("name"): c for c in spec.get("containerDefinitions", []) if isinstance(c, dict)}
    problems = []
    for name in sorted(config.containers):
        if name not in by_name:
            problems.append(
                f"container {name!r} from the config's `containers` is not in the template: add it, or remove it from `containers`"
            )
    for name, ref in sorted(pinned.items()):
        image = by_name.get(name, {}).get("image")
        if name in by_name and image != ref.pinned:
            problems.append(
                f'container {name}\'s image is {image!r}, not the deployed {ref.short()}: write "image": "{{{{ image `{name}` }}}}"'
            )
    for migration in config.migrations:
        if migration.container not in by_name:
            problems.append(
                f"migration {migration.name!r} runs in container {migration.container!r}, which is not in the template"
            )
    if problems:
        raise TaskDefinitionInvalid(f"{source} (nothing was registered):\n" + "\n".join(f"  - {p}" for p in problems))


def plan(
    config: ServiceConfig,
    new_images: Mapping[str, str],
    *,
    execution: str = "",
    environment: str = "",
    values: Mapping[str, str] | None = None,
    commit: str | None = None,
) -> Plan:
    """The new revision and its diff against what runs; reads AWS, changes nothing."""
    from ferry.taskdef import diff
    from ferry.config import templating
    from ferry.config import jsonnet_imports

    if not new_images:
        raise InputInvalid('the input names no images: give {"images": {"<container>": "<image uri>"}}')
    service = describe_service(config.cluster, config.service)
    described = aws.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"], include=["TAGS"])
    current = described["taskDefinition"]
    pinned = {name: pin(uri) for name, uri in new_images.items()}
    check_images_match_config(config, pinned)
    context = templating.Context(
        environment=environment,
        service=config.name,
        execution=execution,
        images={**_running_images(config, current), **pinned} if config.template else pinned,
        values={**config.values, **(values or {})},
        commit=commit,
    )
    if config.template:
        text, source = config.read_file(config.template)
        if config.template.endswith(".jsonnet"):
            spec = templating.render_jsonnet(text, source, context, jsonnet_imports(config.folder))
        else:
            spec = templating.render_text(text, source, context)
        taskdef.check(spec, source)
        check_template_result(config, spec, pinned, source)
    else:
        source = f"task definition {revision_name(current['taskDefinitionArn'])} with the new images"
        spec = swap_images(current, pinned)
        taskdef.check(spec, source)
    new_label = f"{spec.get('family')}:(new)"
    changes = diff.combine(
        diff.task_definition_diff(
            current,
            spec,
            current_label=revision_name(current["taskDefinitionArn"]),
            new_label=new_label,
            image_labels={ref.pinned: ref.short() for ref in context.images.values()},
        ),
        diff.service_diff(service, {"taskDefinition": new_label, "desiredCount": service["desiredCount"]}),
    )
    return Plan(config, service, current, described.get("tags", []), spec, pinned, changes, source)


def run(request: Input, settings: Settings) -> Output:
    """The step: read the service's config, plan the new revision, keep the plan and the diff."""
    from ferry import config

    cfg = config.load(settings.config_bucket, request.service, settings.environment)
    config.check_cluster(cfg, settings.allowed_clusters)
    locked = (request.request.get("lock") or {}).get("key")
    if isinstance(locked, str) and locked != cfg.key:
        # The lock (and the deploy journal) are for the service the config named when the deploy began.
        raise ConfigInvalid(
            f"services/{request.service}: the config now names {cfg.key}, but this deploy took the lock of {locked} "
            "when it began: the config changed during the deploy. Nothing was changed; deploy again to deploy "
            f"{cfg.key}"
        )
    planned = plan(
        cfg,
        request.images,
        execution=request.execution,
        environment=settings.environment,
        values=request_values(request.request),
        commit=request_commit(request.request),
    )
    return store(planned, request.execution, settings.artefacts_bucket, migrate=request.migrate)


def store(planned: Plan, execution: str, artefacts_bucket: str, *, migrate: bool = True) -> Output:
    """Store the planned revision and the diff; return the step's output, the small state the execution carries.
    `migrate=False`: the request skips the migrations for this release."""
    cfg = planned.config
    spec = {**planned.spec, "tags": taskdef.user_tags(planned.spec.get("tags") or planned.current_tags)}
    # The plan's hash travels in the state, which only Step Functions writes: Verify and Register refuse any other
    # document found under the plan's key (ferry.aws.artefacts.get_plan).
    plan_key, plan_sha256 = artefacts.put_plan(artefacts_bucket, execution, spec)
    stored = Artefacts(
        task_definition_input=plan_key,
        diff=artefacts.put_text(artefacts_bucket, execution, DIFF_ARTEFACT, planned.diff.text or "no changes\n"),
    )
    timeouts = cfg.timeouts
    return Output(
        cluster=cfg.cluster,
        ecs_service=cfg.service,
        request_action="deploy",
        strategy=cfg.strategy,
        canary=cfg.raw["strategy"].get("canary") or {},
        timeouts=Timeouts(canary=timeouts["canary"], deployment=timeouts["deployment"], rollback=timeouts["rollback"]),
        alarms=list(cfg.alarms),
        bake_seconds=cfg.raw["healthGates"]["bakeSeconds"],
        target_groups=list(cfg.target_groups),
        read_secret_values=cfg.read_secret_values,
        migrations=migration_steps(cfg),
        has_migrations=bool(cfg.migrations) and migrate,
        family=spec["family"],
        previous_task_definition_arn=planned.current_arn,
        previous_revision=revision_name(planned.current_arn),
        desired_count=planned.service["desiredCount"],
        keep_failed_revisions=cfg.raw["rollback"]["keepFailedRevisions"],
        images={name: ref.pinned for name, ref in planned.pinned.items()},
        summary=planned.diff.summary,
        artefacts=stored,
        plan_sha256=plan_sha256,
    )
