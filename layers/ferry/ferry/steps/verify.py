"""Verify: check everything a new task definition revision refers to, before ECS is touched.

Every reference is checked and every problem reported at once (never fail-fast):
a deploy that stops on the first missing thing makes people fix problems one
run at a time. The worst story this prevents is a secret that exists with no
value: ECS accepts the revision, then every task dies at start, in a loop.

Checks run concurrently; throttling is absorbed by the clients' adaptive retries
(`ferry.aws`). An unexpected AWS error in one check becomes that check's failure
(with the AWS error code), so one broken check never hides the others.

Secret values: only `read_secret_values=True` reads one (to see a JSON key
exists). The value is never logged, returned, stored or put in a message.

The step (`run`) checks the revision Render planned (the document whose hash Render
passed on in $.render.planSha256, nothing else), keeps the full report in the
artefacts bucket, and fails with VerifyFailed listing every problem; its output
($.verify) is the counts and the first failures.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.aws import artefacts, images
from ferry.aws.ecs import revision_name
from ferry.contract import EcsStepInput, Model, key
from ferry.errors import VerifyFailed
from ferry.runtime import causes
from ferry.text import json_length

log = logging.getLogger(__name__)
REPORT_ARTEFACT = "verify-report.json"


@dataclass(frozen=True, kw_only=True)
class Input(EcsStepInput):
    """The input of "Verify secrets, images and roles"."""

    alarms: list = key(
        "alarms",
        kinds=(list,),
        required=False,
        default=[],
        doc="$.render.alarms: the health gates' alarms, which must exist",
    )
    target_groups: list = key(
        "targetGroups",
        kinds=(list,),
        required=False,
        default=[],
        doc="$.render.targetGroups: the health gates' target groups, which must exist",
    )
    read_secret_values: bool = key(
        "readSecretValues",
        kinds=(bool,),
        required=False,
        default=False,
        doc="$.render.readSecretValues: whether a secret's value may be read to find its JSON keys",
    )
    plan_sha256: str = key(
        "planSha256",
        doc="$.render.planSha256: the sha256 of the plan Render stored; Verify checks only that document",
    )


@dataclass(frozen=True, kw_only=True)
class Output(Model):
    """What Verify found ($.verify): small enough for the state; the full report is the artefact."""

    passed: int = key("passed", kinds=(int,), doc="how many checks passed")
    failed: int = key("failed", kinds=(int,), doc="how many failed (0: a failure raises VerifyFailed instead)")
    failures: list = key("failures", kinds=(list,), doc="the first failures, one line each")
    artefact: str = key("artefact", doc="the full report, in the artefacts bucket")


# action -> (input, output): what "Verify secrets, images and roles" passes and stores at $.verify.
CONTRACTS = {None: (Input, Output)}

ECS_TASKS = "ecs-tasks.amazonaws.com"
STATE_MAX_LINES = 20
STATE_MAX_BYTES = 8 * 1024
# The Cause's JSON text (ferry.text.json_length, as the handlers' guard measures a message), under the guard's
# causes.MESSAGE_LIMIT: Verify's own cut, whose last line names the verify report, applies before the guard's.
CAUSE_MAX_JSON = causes.MESSAGE_LIMIT - 512
LINE_MAX_CHARS = 1000
ALARM_BATCH = 100
INDEX_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
ARCHITECTURES = {"X86_64": "amd64", "ARM64": "arm64"}
SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[^:]+):(?P<account>\d{12}):secret:(?P<name>[^:]+)(?::(?P<rest>.*))?$"
)
SSM_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:(?P<region>[^:]+):(?P<account>\d{12}):parameter(?P<path>/.+)$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role(?P<path>/(?:.*/)?)(?P<name>[^/]+)$")
S3_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)/(?P<key>.+)$")
TG_ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:(?P<region>[^:]+):\d{12}:targetgroup/(?P<name>[^/]+)/")
RANDOM_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
SHORT_SERVICE_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[^:]+:\d{12}:service/[^/]+$")


@dataclass(frozen=True)
class Check:
    name: str  # stable id, e.g. "secret-has-value"
    resource: str  # e.g. "secret prod/web/db-password"; names, never values
    ok: bool
    message: str  # one line: what was confirmed, or what is wrong and the fix

    def __post_init__(self) -> None:
        one_line = " ".join(str(self.message).split())
        if len(one_line) > LINE_MAX_CHARS:
            one_line = one_line[: LINE_MAX_CHARS - 1] + "…"
        object.__setattr__(self, "message", one_line)

    @property
    def line(self) -> str:
        """'<resource>: <message>', without saying the resource twice when the message starts with it."""
        return self.message if self.message.startswith(self.resource) else f"{self.resource}: {self.message}"


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    task_definition: str = ""  # "web:13", or "web (new revision)" before registration

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> list[Check]:
        return [c for c in self.checks if c.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_document(self) -> dict[str, Any]:
        """The full report (for the artefacts bucket): every check, passed or not."""
        return {
            "taskDefinition": self.task_definition,
            "ok": self.ok,
            "passed": len(self.passed),
            "failed": len(self.failed),
            "checks": [asdict(c) for c in self.checks],
        }

    def to_state(self) -> dict[str, Any]:
        """Small enough for the execution's state: counts and the first failures."""
        lines = [c.line for c in self.failed]
        fitted = _fit(
            lines, max_lines=STATE_MAX_LINES, fits=lambda kept: len(json.dumps(kept).encode()) <= STATE_MAX_BYTES
        )
        return {"passed": len(self.passed), "failed": len(self.failed), "failures": fitted}

    def cause(self, report: str = "") -> str:
        """The Fail state's Cause: every problem, one per line, as many as fit CAUSE_MAX_JSON, then how many more
        there are and where the whole report is (`report`, its s3:// address)."""
        subject = self.task_definition or "the new revision"
        failed = self.failed
        if not failed:
            return f"Verify passed all {len(self.checks)} checks for {subject}"
        noun = "problem" if len(failed) == 1 else "problems"
        header = f"Verify found {len(failed)} {noun} in {subject} (nothing was changed):"
        lines = [f"- {c.line}" for c in failed]
        where = f"see the verify report: {report}" if report else "see the verify report"
        cost = {line: json_length(line) + 2 for line in lines}  # each line after the header costs its "\n" too

        def fits(kept: list[str]) -> bool:  # counted line by line: json_length of the whole, for every try, is slow
            used = json_length(header) + sum(cost[k] if k in cost else json_length(k) + 2 for k in kept)
            return used <= CAUSE_MAX_JSON

        fitted = _fit(lines, max_lines=len(lines), fits=fits, more=lambda n: f"- … and {n} more ({where})")
        return "\n".join([header, *fitted])


def _fit(
    lines: list[str],
    *,
    max_lines: int,
    fits: Callable[[list[str]], bool],
    more: Callable[[int], str] = lambda n: f"… and {n} more (see the verify report)",
) -> list[str]:
    """As many whole lines as fit, then one line saying how many were left out."""
    for keep in range(min(len(lines), max_lines), -1, -1):
        left = len(lines) - keep
        if left and keep == max_lines:
            continue  # the "and N more" line needs a slot of its own
        kept = lines[:keep] + ([more(left)] if left else [])
        if fits(kept):
            return kept
    return [more(len(lines))]


# --------------------------------------------------------------------------- clients


class _Aws:
    """Clients for this run: Ferry's cached ones in the home region, new ones for other regions.

    Clients are made under a lock: creating boto3 clients on the default session
    from several threads at once is not safe.
    """

    def __init__(self, region: str | None) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[str, str], Any] = {}
        self._account: str | None = None
        self._account_lock = threading.Lock()
        with self._lock:
            self.region = region or aws.client("sts").meta.region_name

    def client(self, service: str, region: str | None = None):
        wanted = region or self.region
        with self._lock:
            base = aws.client(service)
            if wanted == base.meta.region_name:
                return base
            if (service, wanted) not in self._made:
                self._made[(service, wanted)] = boto3.client(service, region_name=wanted, config=aws.RETRY_CONFIG)
            return self._made[(service, wanted)]

    def account(self) -> str:
        """The account Ferry runs in (asked once per run)."""
        sts = self.client("sts")
        with self._account_lock:
            if self._account is None:
                self._account = sts.get_caller_identity()["Account"]
        return self._account


def _guard(name: str, resource: str, run: Callable[[], Iterable[Check]]) -> list[Check]:
    """Run one check; an error becomes that check's failure instead of stopping the others."""
    try:
        return list(run())
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        detail = (error.get("Message") or "").strip()
        return [
            Check(
                name,
                resource,
                False,
                f"{resource}: could not check ({code} from {exc.operation_name}{': ' + detail if detail else ''}): "
                "fix Ferry's access to it, or the reference, and deploy again",
            )
        ]
    except BotoCoreError as exc:
        return [
            Check(name, resource, False, f"{resource}: could not check ({type(exc).__name__}: {exc}): deploy again")
        ]
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        # Only the type: the text of an arbitrary exception could carry data read from AWS.
        log.exception("verify check %s crashed", name)
        return [
            Check(
                name,
                resource,
                False,
                f"{resource}: could not check ({type(exc).__name__} in Ferry): deploy again, "
                "and report it if it repeats",
            )
        ]


def _used_by(containers: Iterable[str]) -> str:
    names = list(dict.fromkeys(containers))
    return f" (used by {', '.join(names)})" if names else ""


def _region_flag(region: str, home: str) -> str:
    return "" if region == home else f" --region {region}"


# --------------------------------------------------------------------------- cluster and service


def _cluster_and_service(cx: _Aws, cluster: str, service: str, create_service: bool) -> tuple[list[Check], dict | None]:
    ecs = cx.client("ecs")
    checks: list[Check] = []
    resource = f"cluster {cluster}"
    found = ecs.describe_clusters(clusters=[cluster]).get("clusters", [])
    status = found[0].get("status") if found else None
    if status == "ACTIVE":
        checks.append(Check("cluster-active", resource, True, f"cluster {cluster} exists and is ACTIVE"))
    elif status is None:
        checks.append(
            Check(
                "cluster-active",
                resource,
                False,
                f"cluster {cluster} does not exist in {cx.region}: create it, or fix `cluster` in the service config",
            )
        )
        return checks, None
    else:
        checks.append(
            Check(
                "cluster-active",
                resource,
                False,
                f"cluster {cluster} is {status}, not ACTIVE: use an ACTIVE cluster, or fix `cluster` in the service config",
            )
        )
        return checks, None
    if create_service:
        return checks, None
    resource = f"service {service}"
    services = ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
    current = next((s for s in services if s.get("status") == "ACTIVE"), None)
    if current is not None:
        checks.append(
            Check("service-active", resource, True, f"service {service} exists and is ACTIVE in cluster {cluster}")
        )
        checks.append(_service_arn_check(service, cluster, current.get("serviceArn") or ""))
    elif services:
        checks.append(
            Check(
                "service-active",
                resource,
                False,
                f"service {service} in cluster {cluster} is {services[0].get('status')} (being deleted): "
                "create it again, or fix `service` in the config",
            )
        )
    else:
        checks.append(
            Check(
                "service-active",
                resource,
                False,
                f"service {service} does not exist in cluster {cluster}: create it first, or fix `service` in the config",
            )
        )
    return checks, current


# The ECS developer guide's page on moving a service from the short ARN format to the long one, in place.
SERVICE_ARN_MIGRATION = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-arn-migration.html"


def _service_arn_check(service: str, cluster: str, arn: str) -> Check:
    """A service created before ECS's long ARN format keeps arn:aws:ecs:<region>:<account>:service/<name>: Ferry's IAM
    grants name services by cluster (…:service/<cluster>/*), and its deployment events cannot be told apart by cluster."""
    resource = f"service {service}"
    if SHORT_SERVICE_ARN.match(arn):
        return Check(
            "service-arn-format",
            resource,
            False,
            f"service {service} has a short ARN ({arn}) without its cluster, which Ferry cannot deploy: its IAM "
            f"grants and the ECS deployment events it waits for need the long format (…:service/{cluster}/{service}). "
            "Opt the account in with `aws ecs put-account-setting-default --name serviceLongArnFormat --value "
            "enabled` (and `aws ecs put-account-setting` for any role that set it), then migrate the service to the "
            f"long ARN in place ({SERVICE_ARN_MIGRATION}) or recreate it, and deploy again",
        )
    return Check("service-arn-format", resource, True, f"service {service} has the long ARN format ({arn})")


# --------------------------------------------------------------------------- images


def _platform(task_definition: dict) -> tuple[str, str]:
    runtime = task_definition.get("runtimePlatform") or {}
    cpu = runtime.get("cpuArchitecture") or "X86_64"
    family = runtime.get("operatingSystemFamily") or "LINUX"
    return ("linux" if family == "LINUX" else "windows"), ARCHITECTURES.get(cpu, cpu.lower())


def _image_checks(cx: _Aws, uri: str, containers: list[str], platform: tuple[str, str]) -> list[Check]:
    ref = images.parse(uri)
    if ref is None:
        return [
            Check(
                "image-exists",
                f"image {uri}",
                True,
                f"image {uri}{_used_by(containers)} is not in this account's ECR, not checked",
            )
        ]
    resource = f"image {ref.short()}"
    ecr = cx.client("ecr", ref.region)
    image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag or "latest"}
    wanted = ref.digest or f"tag {ref.tag or 'latest'}"
    try:
        detail = ecr.describe_images(registryId=ref.registry, repositoryName=ref.repository, imageIds=[image_id])[
            "imageDetails"
        ][0]
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ImageNotFoundException":
            return [
                Check(
                    "image-exists",
                    resource,
                    False,
                    f"{resource}{_used_by(containers)} is not in ECR repository {ref.repository} ({ref.registry}, {ref.region}) "
                    f"at {wanted}: push it, or fix the image in the task definition",
                )
            ]
        if code == "RepositoryNotFoundException":
            return [
                Check(
                    "image-exists",
                    resource,
                    False,
                    f"{resource}{_used_by(containers)}: ECR repository {ref.repository} does not exist in {ref.registry} "
                    f"({ref.region}): create it and push the image, or fix the image in the task definition",
                )
            ]
        raise
    checks = [
        Check(
            "image-exists",
            resource,
            True,
            f"{resource}{_used_by(containers)} is in ECR at {detail['imageDigest'][:19]}…"
            + ("" if ref.digest else " (not pinned by digest)"),
        )
    ]
    media = detail.get("imageManifestMediaType")
    if media and media not in INDEX_MEDIA_TYPES:
        # A single-platform image: ECR's API does not say its architecture without
        # fetching the config blob, so only multi-arch indexes are checked.
        return checks
    got = ecr.batch_get_image(
        registryId=ref.registry,
        repositoryName=ref.repository,
        imageIds=[{"imageDigest": detail["imageDigest"]}],
        acceptedMediaTypes=[*INDEX_MEDIA_TYPES, *MANIFEST_MEDIA_TYPES],
    )
    manifest = json.loads(got["images"][0]["imageManifest"]) if got.get("images") else {}
    if "manifests" not in manifest:
        return checks
    offered = [(m.get("platform") or {}) for m in manifest["manifests"]]
    offered = [
        (p.get("os"), p.get("architecture"))
        for p in offered
        if p.get("os") and p.get("architecture") not in (None, "unknown")
    ]
    os_name, arch = platform
    have = ", ".join(dict.fromkeys(f"{o}/{a}" for o, a in offered)) or "none"
    if (os_name, arch) in offered:
        checks.append(
            Check("image-platform", resource, True, f"{resource} is multi-arch and includes {os_name}/{arch}")
        )
    else:
        checks.append(
            Check(
                "image-platform",
                resource,
                False,
                f"{resource}{_used_by(containers)} is multi-arch without {os_name}/{arch} (it has {have}), which the task's "
                f"runtimePlatform needs: build and push {os_name}/{arch} too (docker buildx --platform {os_name}/{arch}), "
                "or change runtimePlatform",
            )
        )
    return checks


# --------------------------------------------------------------------------- roles


def _role_checks(cx: _Aws, value: str, labels: list[str]) -> list[Check]:
    # Ferry's own policy allows iam:PassRole only with iam:PassedToService
    # ecs-tasks.amazonaws.com, for roles of its own account. Simulating that
    # policy (iam:SimulatePrincipalPolicy) is not worth it: it needs extra
    # permissions, is slow, and ignores SCPs and boundaries anyway; the account
    # check below catches the one mistake the policy can never allow.
    match = ROLE_ARN.match(value)
    name = match["name"] if match else value.rsplit("/", 1)[-1]
    label = " and ".join(labels)
    resource = f"{label} {name}"
    account = cx.account()
    field = " and ".join(f"{'executionRoleArn' if lab == 'execution role' else 'taskRoleArn'}" for lab in labels)
    checks: list[Check] = []
    if match and match["account"] != account:
        return [
            Check(
                "role-passable",
                resource,
                False,
                f"{resource} is in account {match['account']}, but Ferry deploys from account {account}: ECS cannot be handed "
                f"a role of another account (iam:PassRole only covers this account's roles); create the role in {account} "
                f"and fix {field}",
            )
        ]
    checks.append(
        Check(
            "role-passable", resource, True, f"{resource} is in this account ({account}), so Ferry can pass it to ECS"
        )
    )
    iam = cx.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if aws.error_code(exc) != "NoSuchEntity":
            raise
        checks.append(
            Check(
                "role-exists",
                resource,
                False,
                f"{resource} does not exist in account {account}: create it (trusting {ECS_TASKS}), or fix {field}",
            )
        )
        return checks
    if match and role.get("Arn") and role["Arn"] != value:
        checks.append(
            Check(
                "role-exists",
                resource,
                False,
                f"{resource} exists, but its ARN is {role['Arn']}, not {value} (another path?): fix {field}",
            )
        )
        return checks
    checks.append(Check("role-exists", resource, True, f"{resource} exists"))
    if _trusts_ecs_tasks(role.get("AssumeRolePolicyDocument")):
        checks.append(Check("role-trusts-ecs-tasks", resource, True, f"{resource} trusts {ECS_TASKS} to assume it"))
    else:
        checks.append(
            Check(
                "role-trusts-ecs-tasks",
                resource,
                False,
                f"{resource} does not trust {ECS_TASKS}, so tasks cannot use it: add a trust statement allowing "
                f'Principal {{"Service": "{ECS_TASKS}"}} sts:AssumeRole '
                f"(`aws iam update-assume-role-policy --role-name {name} --policy-document file://trust.json`)",
            )
        )
    return checks


def _trusts_ecs_tasks(document: Any) -> bool:
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = (document or {}).get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]

    def listed(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = listed(statement.get("Action"))
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = statement.get("Principal") or {}
        services = listed(principal.get("Service")) if isinstance(principal, dict) else []
        if ECS_TASKS in services:
            return True
    return False


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class _SecretRef:
    json_key: str = ""
    stage: str = ""
    version_id: str = ""


def _parse_secret_arn(value: str) -> tuple[str, str, str, _SecretRef] | None:
    """'arn:...:secret:name-AbCdEf:key:stage:id' -> (region, base ARN, display name, reference)."""
    match = SECRET_ARN.match(value)
    if not match:
        return None
    parts = (match["rest"] or "").split(":")
    parts += [""] * (3 - len(parts))
    base = value[: len(value) - len(match["rest"]) - 1] if match["rest"] is not None else value
    display = RANDOM_SUFFIX.sub("", match["name"])
    return match["region"], base, display, _SecretRef(parts[0], parts[1], parts[2])


def _secrets_manager_checks(
    cx: _Aws, region: str, secret_id: str, display: str, refs: dict[_SecretRef, list[str]], read_values: bool
) -> list[Check]:
    sm = cx.client("secretsmanager", region)
    resource = f"secret {display}"
    containers = [c for cs in refs.values() for c in cs]
    used = _used_by(containers)
    flag = _region_flag(region, cx.region)
    try:
        description = sm.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
        hint = " (a secret created again gets a new ARN)" if secret_id.startswith("arn:") else ""
        return [
            Check(
                "secret-exists",
                resource,
                False,
                f"{resource}{used} does not exist in {region}{hint}: create it with `aws secretsmanager create-secret "
                f"--name {display} --secret-string ...{flag}`, or fix valueFrom",
            )
        ]
    name = description.get("Name") or display
    checks = [Check("secret-exists", resource, True, f"{resource}{used} exists")]
    if description.get("DeletedDate"):
        when = description["DeletedDate"]
        when = when.date().isoformat() if hasattr(when, "date") else str(when)
        checks.append(
            Check(
                "secret-not-deleted",
                resource,
                False,
                f"{resource}{used} is scheduled for deletion on {when}: restore it with "
                f"`aws secretsmanager restore-secret --secret-id {name}{flag}`, or stop using it",
            )
        )
        return checks
    checks.append(Check("secret-not-deleted", resource, True, f"{resource} is not scheduled for deletion"))
    versions: dict[str, list[str]] = description.get("VersionIdsToStages") or {}
    # One value check per version asked for (stage and/or version id), naming every container that asks.
    wanted: dict[tuple[str, str], dict[str, list[str]]] = {}
    for ref, ref_containers in refs.items():
        entry = wanted.setdefault((ref.stage, ref.version_id), {"containers": [], "keys": []})
        entry["containers"] += ref_containers
        if ref.json_key:
            entry["keys"].append(ref.json_key)
    for (stage, version_id), entry in wanted.items():
        keys = list(dict.fromkeys(entry["keys"]))
        pinned = " ".join(
            filter(None, [f"version {version_id}" if version_id else "", f"stage {stage}" if stage else ""])
        )
        target = f"{resource} ({pinned})" if pinned else resource
        if version_id:
            present = version_id in versions and (not stage or stage in versions[version_id])
        else:
            present = any((stage or "AWSCURRENT") in stages for stages in versions.values())
        users = _used_by(entry["containers"])
        if not present:
            checks.append(
                Check(
                    "secret-has-value",
                    target,
                    False,
                    f"{target}{users} has no {pinned}: point valueFrom at a version that exists, or drop the version part"
                    if pinned
                    else f"{resource}{users} exists but has no value: put one with `aws secretsmanager put-secret-value "
                    f"--secret-id {name} --secret-string ...{flag}`",
                )
            )
            continue
        checks.append(
            Check("secret-has-value", target, True, f"{target}{users} has a value ({pinned or 'AWSCURRENT'})")
        )
        if keys and read_values:
            checks.extend(_json_key_checks(sm, secret_id, target, name, stage, version_id, keys))
        for json_key in keys if not read_values else []:
            checks.append(
                Check(
                    "secret-json-key",
                    f"{target} json key {json_key}",
                    True,
                    f"{target} json key {json_key} not checked (reading secret values is off)",
                )
            )
    return checks


def _json_key_checks(
    sm, secret_id: str, resource: str, name: str, stage: str, version_id: str, keys: list[str]
) -> list[Check]:
    """Read the value, look for the keys, and let go of it. Nothing of the value leaves this function."""
    request = {
        "SecretId": secret_id,
        **({"VersionStage": stage} if stage else {}),
        **({"VersionId": version_id} if version_id else {}),
    }

    def each(ok: bool, message: Callable[[str], str]) -> list[Check]:
        return [Check("secret-json-key", f"{resource} json key {k}", ok, message(k)) for k in keys]

    try:
        text = sm.get_secret_value(**request).get("SecretString")
    except ClientError as exc:
        code = aws.error_code(exc) or "error"
        return each(
            False,
            lambda k: (
                f"{resource}: could not read it to find json key {k} ({code}): "
                "allow Ferry secretsmanager:GetSecretValue on it, or turn reading secret values off"
            ),
        )
    if text is None:
        return each(
            False,
            lambda k: (
                f"{resource} has a binary value, so ECS cannot read json key {k}: store the value as a JSON "
                "SecretString, or drop the json key from valueFrom"
            ),
        )
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    finally:
        text = None
    if not isinstance(parsed, dict):
        return each(
            False,
            lambda k: (
                f"{resource}'s value is not a JSON object, so ECS cannot read json key {k}: put a JSON object "
                f"with `aws secretsmanager put-secret-value --secret-id {name} --secret-string ...`, "
                "or drop the json key from valueFrom"
            ),
        )
    present = {k: k in parsed for k in keys}
    parsed = None
    return [
        Check(
            "secret-json-key",
            f"{resource} json key {k}",
            ok,
            f"{resource} has json key {k}"
            if ok
            else f"{resource}'s JSON value has no key {k}: add it with `aws secretsmanager put-secret-value --secret-id {name} "
            "--secret-string ...` (the whole JSON object), or fix the key in valueFrom",
        )
        for k, ok in present.items()
    ]


def _ssm_names(arn_path: str) -> list[str]:
    """'/db' in an ARN is the parameter 'db' or '/db'; '/a/b' is only '/a/b'."""
    return [arn_path] if "/" in arn_path[1:] else [arn_path[1:], arn_path]


def _parameter_checks(cx: _Aws, value: str, containers: list[str]) -> list[Check]:
    match = SSM_ARN.match(value)
    region = match["region"] if match else cx.region
    ssm = cx.client("ssm", region)
    display = match["path"] if match and "/" in match["path"][1:] else (match["path"][1:] if match else value)
    resource = f"parameter {display}"
    used = _used_by(containers)
    flag = _region_flag(region, cx.region)
    if match and match["account"] != cx.account():
        # A parameter shared from another account is found only by its ARN.
        try:
            ssm.get_parameter(Name=value, WithDecryption=False)  # the (encrypted) value is dropped unread
            return [Check("parameter-exists", resource, True, f"{resource}{used} exists (account {match['account']})")]
        except ClientError as exc:
            if aws.error_code(exc) != "ParameterNotFound":
                raise
            return [
                Check(
                    "parameter-exists",
                    resource,
                    False,
                    f"{resource}{used} does not exist in account {match['account']} ({region}), or is not shared with "
                    f"this account: create or share it, or fix valueFrom",
                )
            ]
    names = _ssm_names(match["path"]) if match else [value]
    # DescribeParameters filters after it reads a page: an empty page can still have a NextToken.
    found = aws.items(
        ssm,
        "describe_parameters",
        "Parameters",
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": names}],
    )
    if found:
        return [Check("parameter-exists", resource, True, f"{resource}{used} exists in SSM Parameter Store")]
    if not match and not value.startswith("/"):
        # ECS reads a valueFrom that is not an ARN from SSM Parameter Store, never
        # from Secrets Manager: a secret named here would fail every task start.
        sm = cx.client("secretsmanager")
        try:
            secret = sm.describe_secret(SecretId=value)
        except ClientError as exc:
            if aws.error_code(exc) != "ResourceNotFoundException":
                raise
        else:
            return [
                Check(
                    "secret-reference",
                    f"secret {value}",
                    False,
                    f"valueFrom {value}{used} is a Secrets Manager secret's name, but ECS reads a valueFrom that is not an "
                    f"ARN from SSM Parameter Store, where it does not exist: set valueFrom to the secret's ARN {secret['ARN']}",
                )
            ]
    return [
        Check(
            "parameter-exists",
            resource,
            False,
            f"{resource}{used} does not exist in SSM Parameter Store ({region}): create it with `aws ssm put-parameter "
            f"--name {display} --type SecureString --value ...{flag}`, or fix valueFrom",
        )
    ]


# --------------------------------------------------------------------------- logs, env files, target groups, alarms


def _log_group_checks(cx: _Aws, region: str, group: str, containers: list[str], create: bool) -> list[Check]:
    resource = f"log group {group}" + ("" if region == cx.region else f" ({region})")
    used = _used_by(containers)
    if create:
        return [
            Check(
                "log-group-exists",
                resource,
                True,
                f"{resource}{used} is created by ECS when a task starts (awslogs-create-group is true; the execution role "
                "needs logs:CreateLogGroup)",
            )
        ]
    logs = cx.client("logs", region)
    if any(
        g.get("logGroupName") == group
        for g in aws.items(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=group)
    ):  # every page
        return [Check("log-group-exists", resource, True, f"{resource}{used} exists in {region}")]
    return [
        Check(
            "log-group-exists",
            resource,
            False,
            f"{resource}{used} does not exist in {region}, so tasks cannot start: create it with `aws logs create-log-group "
            f'--log-group-name {group} --region {region}`, or set the awslogs-create-group option to "true"',
        )
    ]


def _env_file_checks(cx: _Aws, value: str, containers: list[str]) -> list[Check]:
    match = S3_ARN.match(value)
    used = _used_by(containers)
    if not match:
        return [
            Check(
                "env-file-exists",
                f"environment file {value}",
                False,
                f"environment file {value}{used} is not an S3 object ARN (arn:aws:s3:::bucket/key): fix environmentFiles",
            )
        ]
    url = f"s3://{match['bucket']}/{match['key']}"
    resource = f"environment file {url}"
    try:
        cx.client("s3").head_object(Bucket=match["bucket"], Key=match["key"])
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            return [
                Check(
                    "env-file-exists",
                    resource,
                    False,
                    f"{resource}{used} does not exist: upload it with `aws s3 cp <file>.env {url}`, or fix environmentFiles",
                )
            ]
        if code == "NoSuchBucket":
            return [
                Check(
                    "env-file-exists",
                    resource,
                    False,
                    f"{resource}{used}: bucket {match['bucket']} does not exist: create it and upload the file, "
                    "or fix environmentFiles",
                )
            ]
        raise
    return [Check("env-file-exists", resource, True, f"{resource}{used} exists")]


def _target_group_checks(cx: _Aws, ref: str, origin: str) -> list[Check]:
    match = TG_ARN.match(ref)
    name = match["name"] if match else ref
    region = match["region"] if match else cx.region
    resource = f"target group {name}"
    elbv2 = cx.client("elbv2", region)
    try:
        elbv2.describe_target_groups(**({"TargetGroupArns": [ref]} if ref.startswith("arn:") else {"Names": [ref]}))
    except ClientError as exc:
        if aws.error_code(exc) not in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
            raise
        fix = (
            "recreate it, or change the service's load balancers"
            if origin == "service"
            else "create it, or fix the target groups in the service config"
        )
        return [
            Check(
                "target-group-exists",
                resource,
                False,
                f"{resource} (from the {origin}) does not exist in {region}: {fix}",
            )
        ]
    return [Check("target-group-exists", resource, True, f"{resource} (from the {origin}) exists")]


def _load_balancer_container_checks(service: str, entries: list[dict], containers: dict[str, dict]) -> list[Check]:
    checks: list[Check] = []
    for entry in entries:
        name, port = entry.get("containerName"), entry.get("containerPort")
        target = entry.get("targetGroupArn") or entry.get("loadBalancerName") or "?"
        tg = TG_ARN.match(target)
        target_name = (
            f"target group {tg['name']}"
            if tg
            else (f"load balancer {target}" if not target.startswith("arn:") else target)
        )
        resource = f"container {name} port {port}"
        if name not in containers:
            checks.append(
                Check(
                    "load-balancer-container",
                    resource,
                    False,
                    f"service {service} sends {target_name} traffic to container {name}, which the new revision "
                    f"does not have: keep a container named {name}, or change the service's load balancers",
                )
            )
            continue
        mapped = [
            m.get("containerPort")
            for m in containers[name].get("portMappings") or []
            if m.get("containerPort") is not None
        ]
        if port in mapped:
            checks.append(
                Check(
                    "load-balancer-container",
                    resource,
                    True,
                    f"container {name} maps containerPort {port}, where service {service} sends {target_name} traffic",
                )
            )
        else:
            have = ", ".join(str(p) for p in mapped) or "none"
            checks.append(
                Check(
                    "load-balancer-container",
                    resource,
                    False,
                    f"service {service} sends {target_name} traffic to {name}:{port}, but container {name} has no "
                    f"portMapping with containerPort {port} in the new revision (it has {have}): add one, "
                    "or change the service's load balancers",
                )
            )
    return checks


def _host_port_checks(containers: dict[str, dict]) -> list[Check]:
    checks: list[Check] = []
    for name, container in containers.items():
        mappings = [m for m in container.get("portMappings") or [] if m.get("containerPort") is not None]
        if not mappings:
            continue
        bad = [m for m in mappings if m.get("hostPort") is not None and m["hostPort"] != m["containerPort"]]
        resource = f"container {name}"
        if not bad:
            checks.append(
                Check(
                    "awsvpc-host-port",
                    resource,
                    True,
                    f"container {name}'s hostPorts match its containerPorts (awsvpc)",
                )
            )
            continue
        pairs = ", ".join(f"containerPort {m['containerPort']} to hostPort {m['hostPort']}" for m in bad)
        checks.append(
            Check(
                "awsvpc-host-port",
                resource,
                False,
                f"container {name} maps {pairs}, but networkMode awsvpc needs hostPort equal to containerPort: "
                "set hostPort to the containerPort, or leave it out",
            )
        )
    return checks


def _alarm_checks(cx: _Aws, names: list[str]) -> list[Check]:
    cloudwatch = cx.client("cloudwatch")
    found: set[str] = set()
    for batch in aws.batches(names, ALARM_BATCH):  # at most 100 names a call, 50 alarms a page
        found.update(
            a["AlarmName"]
            for a in aws.items(
                cloudwatch,
                "describe_alarms",
                ("MetricAlarms", "CompositeAlarms"),
                AlarmNames=batch,
                AlarmTypes=["CompositeAlarm", "MetricAlarm"],
            )
        )
    return [
        Check("alarm-exists", f"alarm {n}", True, f"alarm {n} exists")
        if n in found
        else Check(
            "alarm-exists",
            f"alarm {n}",
            False,
            f"alarm {n} does not exist in CloudWatch ({cx.region}): create it, or remove it from the service config's alarms",
        )
        for n in names
    ]


# --------------------------------------------------------------------------- the step


def _label(task_definition: dict) -> str:
    family = task_definition.get("family") or "?"
    if task_definition.get("taskDefinitionArn"):
        return revision_name(task_definition["taskDefinitionArn"])
    if task_definition.get("revision"):
        return f"{family}:{task_definition['revision']}"
    return f"{family} (new revision)"


def _references(task_definition: dict, home: str) -> dict[str, Any]:
    """Everything the revision refers to, deduplicated, with the containers that use each."""
    refs: dict[str, Any] = {
        "images": {},
        "secrets": {},
        "parameters": {},
        "log_groups": {},
        "env_files": {},
        "needs_execution_role": {},
        "invalid": [],
    }

    def need(reason: str, container: str) -> None:
        refs["needs_execution_role"].setdefault(reason, []).append(container)

    def secret(value: str, container: str, credentials: bool = False) -> None:
        if not value.strip():
            refs["invalid"].append(
                Check(
                    "secret-reference",
                    f"container {container}",
                    False,
                    f"container {container} has a secret with an empty valueFrom: set it to a Secrets "
                    "Manager secret's ARN or an SSM parameter's name or ARN",
                )
            )
            return
        parsed = _parse_secret_arn(value)
        if parsed is None and credentials and not value.startswith("arn:"):
            # repositoryCredentials may name a Secrets Manager secret of the task's region.
            parsed = home, value, value, _SecretRef()
        if parsed is None:
            refs["parameters"].setdefault(value, []).append(container)
            return
        region, base, display, ref = parsed
        entry = refs["secrets"].setdefault((region, base), {"display": display, "refs": {}})
        entry["refs"].setdefault(ref, []).append(container)

    for container in task_definition.get("containerDefinitions") or []:
        name = container.get("name") or "?"
        image = container.get("image") or ""
        refs["images"].setdefault(image, []).append(name)
        if images.parse(image):
            need("pull ECR images", name)
        for item in container.get("secrets") or []:
            secret(item.get("valueFrom") or "", name)
            need("read secrets", name)
        credentials = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
        if credentials:
            secret(credentials, name, credentials=True)
            need("read repository credentials", name)
        logging_config = container.get("logConfiguration") or {}
        for item in logging_config.get("secretOptions") or []:
            secret(item.get("valueFrom") or "", name)
            need("read secrets", name)
        if logging_config.get("logDriver") == "awslogs":
            need("send awslogs", name)
            options = logging_config.get("options") or {}
            group = options.get("awslogs-group") or ""
            region = options.get("awslogs-region") or home
            entry = refs["log_groups"].setdefault((region, group), {"containers": [], "create": True})
            entry["containers"].append(name)
            entry["create"] = entry["create"] and str(options.get("awslogs-create-group", "")).lower() == "true"
        for item in container.get("environmentFiles") or []:
            if item.get("type", "s3") == "s3":
                refs["env_files"].setdefault(item.get("value") or "", []).append(name)
                need("read S3 environment files", name)
    return refs


def verify(
    task_definition: dict,
    *,
    cluster: str,
    service: str,
    alarms: Sequence[str] = (),
    target_groups: Sequence[str] = (),
    create_service: bool = False,
    read_secret_values: bool = False,
    region: str | None = None,
    max_workers: int = 8,
) -> Report:
    """Check every reference of the new revision; report all problems, change nothing."""
    cx = _Aws(region)
    label = _label(task_definition)
    containers = {c.get("name"): c for c in task_definition.get("containerDefinitions") or []}
    refs = _references(task_definition, cx.region)
    slots: list[Future | list[Check]] = []

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="ferry-verify") as pool:

        def submit(name: str, resource: str, run: Callable[[], Iterable[Check]]) -> Future:
            future = pool.submit(_guard, name, resource, run)
            slots.append(future)
            return future

        service_holder: dict[str, Any] = {}

        def cluster_and_service() -> list[Check]:
            checks, current = _cluster_and_service(cx, cluster, service, create_service)
            service_holder["service"] = current
            return checks

        service_future = submit("cluster-active", f"cluster {cluster}", cluster_and_service)

        reasons = refs["needs_execution_role"]
        execution_role = task_definition.get("executionRoleArn")
        if reasons:
            users = sorted({c for cs in reasons.values() for c in cs})
            why = ", ".join(reasons)
            resource = f"task definition {task_definition.get('family') or '?'}"
            slots.append(
                [
                    Check("execution-role-required", resource, True, f"executionRoleArn is set (ECS needs it to {why})")
                    if execution_role
                    else Check(
                        "execution-role-required",
                        resource,
                        False,
                        f"the task definition has no executionRoleArn, but ECS needs one to {why} for containers "
                        f"{', '.join(users)}: set executionRoleArn to a role that trusts {ECS_TASKS} and has the "
                        "AmazonECSTaskExecutionRolePolicy policy",
                    )
                ]
            )

        roles: dict[str, list[str]] = {}
        if execution_role:
            roles.setdefault(execution_role, []).append("execution role")
        if task_definition.get("taskRoleArn"):
            roles.setdefault(task_definition["taskRoleArn"], []).append("task role")
        for value, labels in roles.items():
            submit(
                "role-exists",
                f"{' and '.join(labels)} {value.rsplit('/', 1)[-1]}",
                lambda value=value, labels=labels: _role_checks(cx, value, labels),
            )

        platform = _platform(task_definition)
        for uri, users in refs["images"].items():
            submit("image-exists", f"image {uri}", lambda uri=uri, users=users: _image_checks(cx, uri, users, platform))
        for (secret_region, base), entry in refs["secrets"].items():
            submit(
                "secret-exists",
                f"secret {entry['display']}",
                lambda r=secret_region, b=base, e=entry: _secrets_manager_checks(
                    cx, r, b, e["display"], e["refs"], read_secret_values
                ),
            )
        slots.append(refs["invalid"])
        for value, users in refs["parameters"].items():
            submit(
                "parameter-exists",
                f"parameter {value}",
                lambda value=value, users=users: _parameter_checks(cx, value, users),
            )
        for (log_region, group), entry in refs["log_groups"].items():
            if not group:
                slots.append(
                    [
                        Check(
                            "log-group-exists",
                            "log group (none)",
                            False,
                            f"awslogs of {', '.join(entry['containers'])} has no awslogs-group option: set one",
                        )
                    ]
                )
                continue
            submit(
                "log-group-exists",
                f"log group {group}",
                lambda r=log_region, g=group, e=entry: _log_group_checks(cx, r, g, e["containers"], e["create"]),
            )
        for value, users in refs["env_files"].items():
            submit(
                "env-file-exists",
                f"environment file {value}",
                lambda value=value, users=users: _env_file_checks(cx, value, users),
            )
        alarm_names = list(dict.fromkeys(a for a in alarms if a))
        if alarm_names:
            submit("alarm-exists", "alarms", lambda: _alarm_checks(cx, alarm_names))

        if task_definition.get("networkMode") == "awsvpc":
            slots.append(_host_port_checks(containers))

        # Target groups need the service's load balancers, so they start once it is described.
        service_future.result()
        current = service_holder.get("service") or {}
        entries = [
            e for e in current.get("loadBalancers") or [] if e.get("targetGroupArn") or e.get("loadBalancerName")
        ]
        wanted_groups: dict[str, str] = {}
        for entry in entries:
            if entry.get("targetGroupArn"):
                wanted_groups.setdefault(entry["targetGroupArn"], "service")
        service_names = {TG_ARN.match(a)["name"] for a in wanted_groups if TG_ARN.match(a)}
        for ref in target_groups:
            if ref and ref not in wanted_groups and ref not in service_names:
                wanted_groups[ref] = "service config"
        for ref, origin in wanted_groups.items():
            submit(
                "target-group-exists",
                f"target group {ref}",
                lambda ref=ref, origin=origin: _target_group_checks(cx, ref, origin),
            )
        slots.append(_load_balancer_container_checks(service, entries, containers))

        checks = [c for slot in slots for c in (slot.result() if isinstance(slot, Future) else slot)]

    report = Report(checks, label)
    for check in report.checks:
        log.debug("verify %s %s: %s", check.name, "ok" if check.ok else "FAILED", check.resource)
    log.info("verify %s: %d checks, %d failed", label, len(report.checks), len(report.failed))
    return report


def run(request: Input, artefacts_bucket: str) -> Output:
    """The step: verify the revision Render planned; keep the full report; any problem fails it (VerifyFailed)."""
    spec = artefacts.get_plan(
        artefacts_bucket,
        request.execution,
        request.plan_sha256,
        changed="after Render stored it",
        nothing="nothing was verified or registered",
    )
    report = verify(
        spec,
        cluster=request.cluster,
        service=request.ecs_service,
        alarms=request.alarms,
        target_groups=request.target_groups,
        read_secret_values=request.read_secret_values,
    )
    stored = artefacts.put_json(artefacts_bucket, request.execution, REPORT_ARTEFACT, report.to_document())
    if report.failed:
        raise VerifyFailed(report.cause(f"s3://{artefacts_bucket}/{stored}"))
    return Output(**report.to_state(), artefact=stored)  # passed, failed and failures: the report's state
