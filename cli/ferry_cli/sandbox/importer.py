"""`ferry sandbox import`: a sandbox world read from a real AWS account, so Ferry can be tried on your own service.

`import_world` reads one cluster's services and what their running revision refers to, and returns the world
(what `World.load` reads) and the files beside it: each service's task definition JSON and a default service
config per service under the registry directory.

It only reads. Every client it is given is wrapped in `ReadOnly`, which lets through the Describe/Get/Head
calls named in ALLOWED and nothing else, so no call can change the account: secrets are described
(DescribeSecret), never read (GetSecretValue is not allowed); SSM parameters are read without decryption, and
only when DescribeParameters says they are not SecureString; an environment file in S3 is only checked to
exist (HeadObject). No secret value, SecureString value or environment file content is ever written: a secret
that has a value gets a placeholder, one that has none stays without one ({}), so Verify in the sandbox sees
what it would see on AWS.

What the world schema cannot express is left out and listed in `not_imported`, one line each, for the user to
read ("not imported: ..."). So is a reference to something the account does not have, which the world leaves
out too. The schema is read at run time (`_Supports`): keys that exist in it (a secret's `arn`, parameters as
{value, type}, S3 objects) are used, and several target groups per service are written as `targetGroups` only
if the schema takes them, else noted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import yaml
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from ferry import aws, taskdef
from ferry.aws import images
from ferry.config.validation import problems, schema
from ferry.steps.verify import ECS_TASKS, ROLE_ARN, S3_ARN, SECRET_ARN, SSM_ARN, TG_ARN

WORLD_SCHEMA = "sandbox-world.schema.json"
CONFIG_SCHEMA = "service-config.schema.json"
# Written where a secret or SecureString parameter has a value: never the value itself.
PLACEHOLDER = "ferry-sandbox-placeholder (the real value stays in AWS)"
ENV_FILE_PLACEHOLDER = "# ferry-sandbox-placeholder: the real file stays in S3 (it is never read)\n"
MAX_TAGS = 100  # the newest tags of each repository, besides the running ones (a world pushes each tag)
MAX_DESIRED = 1000  # the world schema's most tasks per service
MAX_CONFIG_ALARMS = 20  # service-config.schema.json healthGates.alarms maxItems
# A role ECS tasks cannot assume and no AWS service may assume either (only accounts or users): the world
# needs a service principal, and this one is not ECS's either.
NOT_ECS_TASKS = "ec2.amazonaws.com"
# What a world's service has unless it says otherwise (world.py), and ECS's default strategy: left out of the world.
DEFAULT_DEPLOYMENT = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "strategy": "ROLLING",
}
NATIVE_STRATEGIES = {"BLUE_GREEN", "LINEAR", "CANARY"}

# The only calls the importer may make, per service: none of them changes anything, none returns a secret value.
ALLOWED: dict[str, frozenset[str]] = {
    "ecs": frozenset({"describe_clusters", "describe_services", "describe_task_definition"}),
    "ecr": frozenset({"describe_images"}),
    "elbv2": frozenset({"describe_target_groups"}),
    "iam": frozenset({"get_role"}),
    "logs": frozenset({"describe_log_groups"}),
    "secretsmanager": frozenset({"describe_secret"}),
    "ssm": frozenset({"describe_parameters", "get_parameters"}),
    "cloudwatch": frozenset({"describe_alarms"}),
    "s3": frozenset({"head_object"}),  # an environment file exists; its content (often secrets) is never read
    "application-autoscaling": frozenset({"describe_scalable_targets", "describe_scaling_policies"}),
}
FARGATE_PROVIDERS = {"FARGATE", "FARGATE_SPOT"}
PREDEFINED_METRICS = {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}


class ImportFailed(Exception):
    """The account could not be read as asked. `status` 2: the cluster or a service named does not exist (bad
    input); 1: AWS refused or failed a call the import needs."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class ReadOnlyViolation(AssertionError):
    """The importer asked for a call outside ALLOWED (a bug: it must never happen)."""


class ClientSource(Protocol):
    """Anything that makes boto3 clients by service name: a boto3 Session, the sandbox."""

    def client(self, service_name: str, /) -> Any: ...


Clients = Union[ClientSource, Mapping[str, Any]]


class ReadOnly:
    """A boto3 client that only makes the calls in ALLOWED[service], and SSM calls without decryption."""

    def __init__(self, service: str, client: Any) -> None:
        self._service, self._client = service, client
        self._allowed = ALLOWED.get(service, frozenset())

    @property
    def meta(self) -> Any:
        return self._client.meta

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def _check(self, operation: str, params: Mapping[str, Any] | None = None) -> None:
        if operation not in self._allowed:
            raise ReadOnlyViolation(f"{self._service}.{operation} is not a read-only call the import may make")
        if params and params.get("WithDecryption"):
            raise ReadOnlyViolation(f"{self._service}.{operation} with WithDecryption: the import never decrypts")

    def can_paginate(self, operation: str) -> bool:
        self._check(operation)
        return self._client.can_paginate(operation)

    def get_paginator(self, operation: str) -> Any:
        self._check(operation)
        return self._client.get_paginator(operation)

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        self._check(operation)
        call = getattr(self._client, operation)

        def checked(**params: Any) -> Any:
            self._check(operation, params)
            return call(**params)

        return checked


def _refusal(exc: Exception) -> str:
    """'DescribeServices failed (AccessDeniedException: ...)' from a botocore error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = error.get("Message", "").strip() or "no message"
        return f"{exc.operation_name} failed ({error.get('Code', 'error')}: {message})"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Supports:
    """Which world keys the schema has now (another engineer is adding some while this one is used)."""

    secret_arn: bool = False
    typed_parameters: bool = False
    s3: bool = False

    @classmethod
    def now(cls) -> "_Supports":
        body = schema(WORLD_SCHEMA)
        props = body.get("properties", {})
        secret = (props.get("secrets", {}).get("additionalProperties") or {}).get("properties") or {}
        parameter = json.dumps(props.get("parameters", {}).get("additionalProperties") or {})
        return cls(secret_arn="arn" in secret, typed_parameters="SecureString" in parameter, s3="s3" in props)


@dataclass
class _Account:
    """What the import has found so far, across services."""

    account: str = ""
    region: str = ""
    tags: dict[str, dict[str, str] | None] = field(
        default_factory=dict
    )  # repository -> tag -> digest (None: unreadable)
    pushed_at: dict[str, dict[str, float]] = field(default_factory=dict)  # repository -> tag -> push time
    untagged: dict[str, set[str]] = field(default_factory=dict)  # repository -> digests without a tag
    running_tags: dict[str, set[str]] = field(default_factory=dict)  # repository -> tags some service runs
    roles: dict[str, Any] = field(default_factory=dict)  # name -> world entry
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    log_groups: list[str] = field(default_factory=list)
    s3: dict[str, dict[str, str]] = field(default_factory=dict)  # bucket -> key -> placeholder
    alarms: dict[str, str] = field(default_factory=dict)
    refused_ecr: list[str] = field(default_factory=list)  # ECR reads AWS refused
    secret_names: dict[str, str] = field(default_factory=dict)  # ARN or name as referenced -> name
    seen: set[tuple[str, str]] = field(default_factory=set)  # (kind, reference) looked at once


class _Importer:
    def __init__(self, clients: Clients, notes: list[str]) -> None:
        self._source = clients
        self._clients: dict[str, ReadOnly] = {}
        self.notes = notes
        self.found = _Account()
        self.supports = _Supports.now()

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> ReadOnly:
        if service not in self._clients:
            source = self._source
            made = source[service] if isinstance(source, Mapping) else source.client(service)
            self._clients[service] = ReadOnly(service, made)
        return self._clients[service]

    def note(self, text: str) -> None:
        line = f"not imported: {text}"
        if line not in self.notes:
            self.notes.append(line)

    def refused(self, exc: Exception, what: str) -> None:
        """A read that is not essential failed: say what is missing and go on."""
        self.note(f"{what}: {_refusal(exc)}; add it to the world by hand, or allow the read and import again")

    # ------------------------------------------------------------------ the cluster and its services
    def services(self, cluster: str, names: Sequence[str]) -> list[dict[str, Any]]:
        ecs = self.client("ecs")
        self.found.region = ecs.meta.region_name or ""
        region = self.found.region
        try:
            clusters = ecs.describe_clusters(clusters=[cluster])
        except ClientError as exc:
            raise ImportFailed(
                f"cannot read cluster {cluster} in {region}: {_refusal(exc)}: the import needs "
                "ecs:DescribeClusters, ecs:DescribeServices and ecs:DescribeTaskDefinition"
            ) from exc
        if not any(c.get("status") == "ACTIVE" for c in clusters.get("clusters") or []):
            raise ImportFailed(
                f"--cluster {cluster}: no active ECS cluster {cluster} in {region}: check the name "
                "(`aws ecs list-clusters`), or pass --region",
                2,
            )
        found: dict[str, dict[str, Any]] = {}
        for batch in aws.batches(list(names), 10):  # DescribeServices takes at most 10
            try:
                described = ecs.describe_services(cluster=cluster, services=batch)
            except ClientError as exc:
                raise ImportFailed(
                    f"cannot read the services of cluster {cluster} in {region}: {_refusal(exc)}: "
                    "the import needs ecs:DescribeServices"
                ) from exc
            for svc in described.get("services") or []:
                if svc.get("status") == "ACTIVE":
                    found[svc["serviceName"]] = svc
                    found[svc["serviceArn"]] = svc
        missing = [n for n in names if n not in found]
        if missing:
            raise ImportFailed(
                f"--service {missing[0]}: no active service {missing[0]} in cluster {cluster} ({region}): "
                f"check the name (`aws ecs list-services --cluster {cluster}`)",
                2,
            )
        ordered = list({found[n]["serviceArn"]: found[n] for n in names}.values())
        arn = ordered[0]["serviceArn"]
        self.found.account = arn.split(":")[4]
        return ordered

    def service(self, cluster: str, svc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(the world's service entry, its task definition file, its default service config)."""
        name = svc["serviceName"]
        ecs = self.client("ecs")
        try:
            described = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        except ClientError as exc:
            raise ImportFailed(
                f"cannot read the task definition of service {name} ({svc['taskDefinition']}): "
                f"{_refusal(exc)}: the import needs ecs:DescribeTaskDefinition"
            ) from exc
        spec = taskdef.registration_input(described)
        revision = svc["taskDefinition"].rsplit("/", 1)[-1]
        running = self.images(name, spec)
        if not running and self.found.refused_ecr:
            raise ImportFailed(
                f"cannot read the images of service {name}: {self.found.refused_ecr[0]}: the import "
                "needs ecr:DescribeImages on the repositories its images come from"
            )
        if not running:
            raise ImportFailed(
                f"--service {name}: its revision {revision} runs no image from this account's ECR "
                f"({self.found.account}, {self.found.region}): Ferry deploys images pushed to ECR, and a "
                "world's service runs at least one",
                2,
            )
        self.roles(name, spec)
        self.references(name, spec)
        entry: dict[str, Any] = {"cluster": cluster, "name": name}
        desired = int(svc.get("desiredCount") or 0)
        if desired > MAX_DESIRED:
            self.note(
                f"desired count {desired} of service {name}: a world holds at most {MAX_DESIRED} tasks per "
                f"service, so it runs {MAX_DESIRED}"
            )
            desired = MAX_DESIRED
        entry["desiredCount"] = desired
        entry["running"] = dict(sorted(running.items()))
        entry["taskDefinition"] = f"{name}-task-def.json"
        if svc["serviceArn"].split(":", 5)[-1].count("/") == 1:
            entry["arnFormat"] = "short"
        deployment = self.deployment_configuration(name, svc)
        if deployment:
            entry["deploymentConfiguration"] = deployment
        groups = self.target_groups(name, svc)
        if len(groups) > 1:
            # `targetGroups` is being added to the schema; its shape is assumed to be a list of targetGroup's
            # objects, and checked: if the schema says otherwise, the first is kept and the others are noted.
            several = {**entry, "targetGroups": groups}
            if problems({"services": [several]}, WORLD_SCHEMA):
                for group in groups[1:]:
                    self.note(
                        f"target group {group['name']} of {name}: a world holds one target group per service "
                        f"(it holds {groups[0]['name']})"
                    )
                groups = groups[:1]
            else:
                entry = several
        if len(groups) == 1:
            entry["targetGroup"] = groups[0]
        strategy = svc.get("capacityProviderStrategy") or []
        if strategy and all(item.get("capacityProvider") in FARGATE_PROVIDERS for item in strategy):
            entry["capacityProviderStrategy"] = [
                {k: item[k] for k in ("capacityProvider", "weight", "base") if k in item} for item in strategy
            ]
        scaling = self.auto_scaling(cluster, name)
        if scaling:
            entry["autoScaling"] = scaling
        self.service_settings(name, svc, spec)
        config = self.config(cluster, name, running, svc)
        return entry, spec, config

    # ------------------------------------------------------------------ images
    def repository_tags(self, repository: str) -> dict[str, str] | None:
        found = self.found
        if repository in found.tags:
            return found.tags[repository]
        tags: dict[str, str] = {}
        pushed: dict[str, float] = {}
        untagged: set[str] = set()
        try:
            details = aws.items(
                self.client("ecr"),
                "describe_images",
                "imageDetails",
                registryId=found.account,
                repositoryName=repository,
            )
        except ClientError as exc:
            if aws.error_code(exc) == "RepositoryNotFoundException":
                self.note(
                    f"ECR repository {repository}: it does not exist in {found.account} ({found.region}) any more"
                )
            else:
                self.refused(exc, f"the tags of ECR repository {repository}")
                found.refused_ecr.append(_refusal(exc))
            found.tags[repository] = None
            return None
        for detail in details:
            digest = detail.get("imageDigest") or ""
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                continue
            when = detail.get("imagePushedAt")
            stamp = when.timestamp() if hasattr(when, "timestamp") else 0.0
            if not detail.get("imageTags"):
                untagged.add(digest)
            for tag in detail.get("imageTags") or []:
                tags[tag] = digest
                pushed[tag] = stamp
        found.tags[repository], found.pushed_at[repository], found.untagged[repository] = tags, pushed, untagged
        return tags

    def images(self, service: str, spec: dict[str, Any]) -> dict[str, str]:
        """container -> repository:tag of each container running an image of this account's ECR."""
        running: dict[str, str] = {}
        account, region = self.found.account, self.found.region
        for container in spec.get("containerDefinitions") or []:
            name, uri = container.get("name") or "?", container.get("image") or ""
            ref = images.parse(uri)
            if ref is None:
                continue  # not an ECR image: the task definition keeps it as it is, as on AWS
            if (ref.registry, ref.region) != (account, region):
                self.note(
                    f"image {uri} of container {name} ({service}): it is in the ECR of {ref.registry} "
                    f"({ref.region}), and a world has one account and region; the task definition keeps it, "
                    "so Verify will look for it there"
                )
                continue
            tags = self.repository_tags(ref.repository)
            if tags is None:
                continue
            tag = ref.tag
            if ref.digest:
                named = sorted(t for t, d in tags.items() if d == ref.digest)
                if tag and tags.get(tag) == ref.digest:
                    pass
                elif named:
                    if tag:
                        self.note(
                            f"tag {ref.repository}:{tag} of container {name} ({service}) as it ran: the tag "
                            f"has moved; the world runs the digest it ran under its tag {_pick(named)}"
                        )
                    tag = _pick(named)
                elif ref.digest in self.found.untagged.get(ref.repository, set()):
                    tag = "sha256-" + ref.digest.split(":", 1)[1][:12]
                    tags[tag] = ref.digest
                    self.found.pushed_at[ref.repository][tag] = 0.0
                    self.note(
                        f"a tag for {ref.repository}@{ref.digest[:19]}… of container {name} ({service}): it has "
                        f"none in ECR, and a world's service runs a tag; the world calls it {tag}"
                    )
                else:
                    self.note(
                        f"image {ref.repository}@{ref.digest[:19]}… of container {name} ({service}): it is not "
                        "in ECR any more; the task definition keeps it, so Verify will say so"
                    )
                    continue
            else:
                tag = tag or "latest"
                if tag not in tags:
                    self.note(
                        f"image {ref.repository}:{tag} of container {name} ({service}): it is not in ECR any "
                        "more; the task definition keeps it, so Verify will say so"
                    )
                    continue
            running[name] = f"{ref.repository}:{tag}"
            self.found.running_tags.setdefault(ref.repository, set()).add(tag)
        return running

    def ecr(self) -> dict[str, dict[str, str]]:
        """Each repository a running image comes from: its running tags and the newest MAX_TAGS others."""
        out: dict[str, dict[str, str]] = {}
        for repository, running in sorted(self.found.running_tags.items()):
            tags = self.found.tags[repository] or {}
            pushed = self.found.pushed_at.get(repository, {})
            newest = sorted((t for t in tags if t not in running), key=lambda t: (-pushed.get(t, 0.0), t))
            kept = set(running) | set(newest[:MAX_TAGS])
            if len(newest) > MAX_TAGS:
                self.note(
                    f"{len(newest) - MAX_TAGS} older tags of ECR repository {repository}: a world pushes each "
                    f"tag it lists, so it keeps the running ones and the newest {MAX_TAGS}"
                )
            out[repository] = {t: tags[t] for t in sorted(kept)}
        return out

    # ------------------------------------------------------------------ roles
    def roles(self, service: str, spec: dict[str, Any]) -> None:
        for field_name in ("executionRoleArn", "taskRoleArn"):
            value = spec.get(field_name)
            if not value:
                continue
            match = ROLE_ARN.match(value)
            name = match["name"] if match else value
            if match and match["account"] != self.found.account:
                self.note(
                    f"role {value} ({field_name} of {service}): it is in account {match['account']}, and a world "
                    "has one account; Verify will refuse it as AWS would"
                )
                continue
            if match and match["path"] != "/":
                spec[field_name] = value.replace(f":role{match['path']}", ":role/", 1)
                self.note(
                    f"the path {match['path']} of role {name} ({field_name} of {service}): a world creates roles "
                    f"at /, so its task definition names {spec[field_name]}"
                )
            if ("role", name) in self.found.seen:
                continue
            self.found.seen.add(("role", name))
            try:
                role = self.client("iam").get_role(RoleName=name)["Role"]
            except ClientError as exc:
                if aws.error_code(exc) == "NoSuchEntity":
                    self.note(
                        f"role {name} ({field_name} of {service}): it does not exist in the account, so it is "
                        "not in the world either; Verify will say so"
                    )
                else:
                    self.refused(exc, f"role {name} ({field_name} of {service})")
                continue
            principals = _service_principals(role.get("AssumeRolePolicyDocument"))
            if ECS_TASKS in principals:
                self.found.roles[name] = name
                continue
            other = next((p for p in principals if re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com", p)), None)
            if other is None:
                other = NOT_ECS_TASKS
                self.note(
                    f"the trust of role {name}: no AWS service may assume it, and a world names one; it trusts "
                    f"{other}, so ECS tasks still cannot assume it"
                )
            self.found.roles[name] = {"name": name, "trustedBy": other}

    # ------------------------------------------------------------------ secrets, parameters, log groups
    def references(self, service: str, spec: dict[str, Any]) -> None:
        for container in spec.get("containerDefinitions") or []:
            name = container.get("name") or "?"
            where = f"container {name} ({service})"
            for item in container.get("secrets") or []:
                self.secret_or_parameter(item.get("valueFrom") or "", where)
            logging_config = container.get("logConfiguration") or {}
            for item in logging_config.get("secretOptions") or []:
                self.secret_or_parameter(item.get("valueFrom") or "", where)
            credentials = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
            if credentials:
                self.secret(credentials, where)
            if logging_config.get("logDriver") == "awslogs":
                options = logging_config.get("options") or {}
                self.log_group(
                    options.get("awslogs-group") or "",
                    options.get("awslogs-region") or self.found.region,
                    str(options.get("awslogs-create-group", "")).lower() == "true",
                    where,
                )
            for item in container.get("environmentFiles") or []:
                self.environment_file(item.get("value") or "", where)

    def environment_file(self, value: str, where: str) -> None:
        if ("s3", value) in self.found.seen:
            return
        self.found.seen.add(("s3", value))
        match = S3_ARN.match(value)
        if not self.supports.s3:
            self.note(
                f"environment file {value} of {where}: a world holds no S3 objects yet; Verify will look for it "
                "and not find it"
            )
            return
        if match is None:
            self.note(f"environment file {value} of {where}: not an S3 object ARN; Verify will say so")
            return
        bucket, key = match["bucket"], match["key"]
        try:
            self.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                self.note(
                    f"environment file s3://{bucket}/{key} of {where}: it does not exist, so it is not in the "
                    "world either; Verify will say so"
                )
            else:
                self.refused(exc, f"environment file s3://{bucket}/{key} of {where}")
            return
        self.found.s3.setdefault(bucket, {})[key] = ENV_FILE_PLACEHOLDER
        self.note(
            f"the content of environment file s3://{bucket}/{key} of {where}: it may hold secrets, so it is "
            "never read; the world's file is a comment, and the variables it sets are not set in the sandbox"
        )

    def secret_or_parameter(self, value: str, where: str) -> None:
        if SECRET_ARN.match(value):
            self.secret(value, where)
        elif value:
            self.parameter(value, where)

    def secret(self, value: str, where: str) -> None:
        match = SECRET_ARN.match(value)
        rest = match["rest"] if match else None
        base = value[: len(value) - len(rest) - 1] if match and rest is not None else value
        json_key, stage, version = ((rest or "").split(":") + ["", "", ""])[:3]
        if match and (match["account"], match["region"]) != (self.found.account, self.found.region):
            self.note(
                f"secret {value} of {where}: it is in {match['account']} ({match['region']}), and a world has "
                "one account and region"
            )
            return
        if stage or version:
            self.note(
                f"the version ({stage or version}) of secret {base} that {where} names: a world's secrets have "
                "one version, the current one"
            )
        if ("secret", base) in self.found.seen:
            self._add_key(base, json_key)
            return
        self.found.seen.add(("secret", base))
        try:
            described = self.client("secretsmanager").describe_secret(SecretId=base)
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                self.note(
                    f"secret {base} of {where}: it does not exist in the account, so it is not in the world "
                    "either; Verify will say so"
                )
            else:
                self.refused(exc, f"secret {base} of {where}")
            return
        name = described["Name"]
        if described.get("DeletedDate"):
            self.note(
                f"secret {name} of {where}: it is scheduled for deletion, which a world cannot say; it is left "
                "out, so Verify fails on it as it would on AWS"
            )
            return
        has_value = any("AWSCURRENT" in stages for stages in (described.get("VersionIdsToStages") or {}).values())
        entry: dict[str, Any] = {}
        if has_value:
            entry["value"] = PLACEHOLDER  # it has a value in AWS; the world's is a placeholder, never the real one
        full = match is not None and base == described.get("ARN")
        if full and self.supports.secret_arn:
            entry["arn"] = described["ARN"]
        elif full:
            self.note(
                f"the ARN of secret {name} ({described['ARN']}): a world cannot name a secret's ARN yet, so the "
                "sandbox gives it another random suffix and Verify will not find it by this ARN"
            )
        self.found.secrets[name] = entry
        self.found.secret_names[base] = name
        self._add_key(base, json_key)

    def _add_key(self, base: str, json_key: str) -> None:
        """A secret read by JSON key gets a JSON placeholder with that key (so reading secret values finds it)."""
        name = self.found.secret_names.get(base)
        entry = self.found.secrets.get(name) if name else None
        if not json_key or not entry or "value" not in entry:
            return
        keys = json.loads(entry["value"]) if entry["value"].startswith("{") else {}
        keys[json_key] = PLACEHOLDER
        entry["value"] = json.dumps(keys, sort_keys=True)

    def parameter(self, value: str, where: str) -> None:
        match = SSM_ARN.match(value)
        if match and (match["account"], match["region"]) != (self.found.account, self.found.region):
            self.note(
                f"parameter {value} of {where}: it is in {match['account']} ({match['region']}), and a world "
                "has one account and region"
            )
            return
        if ("parameter", value) in self.found.seen:
            return
        self.found.seen.add(("parameter", value))
        path = match["path"] if match else value
        names = ([path] if "/" in path[1:] else [path[1:], path]) if match else [value]
        ssm = self.client("ssm")
        try:
            found = aws.items(
                ssm,
                "describe_parameters",
                "Parameters",
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": names}],
            )
        except ClientError as exc:
            self.refused(exc, f"parameter {value} of {where}")
            return
        if not found:
            self.note(
                f"parameter {value} of {where}: it does not exist in SSM Parameter Store, so it is not in the "
                "world either; Verify will say so"
            )
            return
        described = found[0]
        name, kind = described["Name"], described.get("Type", "String")
        if kind == "SecureString":
            self.secure_string(name)  # its value is never read, not even encrypted
            return
        try:
            got = ssm.get_parameters(Names=[name], WithDecryption=False)
        except ClientError as exc:
            self.refused(exc, f"the value of parameter {name}")
            return
        for item in got.get("Parameters") or []:
            if item.get("Type") == "SecureString":  # made a SecureString since described: still never written
                self.secure_string(name)
                continue
            self.found.parameters[name] = item.get("Value", "")
            if item.get("Type") == "StringList" and self.supports.typed_parameters:
                self.found.parameters[name] = {"value": item.get("Value", ""), "type": "StringList"}
            elif item.get("Type") == "StringList":
                self.note(
                    f"the type of parameter {name}: it is a StringList, and the world makes it a String "
                    "with the same value"
                )

    def secure_string(self, name: str) -> None:
        """A SecureString parameter: in the world with a placeholder, never its value."""
        if self.supports.typed_parameters:
            self.found.parameters[name] = {"value": PLACEHOLDER, "type": "SecureString"}
            return
        self.found.parameters[name] = PLACEHOLDER
        self.note(
            f"the type of parameter {name}: it is a SecureString, and a world's parameters are Strings yet; "
            "it is a String whose value is a placeholder, never the real one"
        )

    def log_group(self, group: str, region: str, create: bool, where: str) -> None:
        if not group or ("log", group) in self.found.seen:
            return
        self.found.seen.add(("log", group))
        if region != self.found.region:
            self.note(f"log group {group} ({region}) of {where}: a world has one region")
            return
        try:
            groups = aws.items(self.client("logs"), "describe_log_groups", "logGroups", logGroupNamePrefix=group)
        except ClientError as exc:
            self.refused(exc, f"log group {group} of {where}")
            return
        if any(g.get("logGroupName") == group for g in groups):
            self.found.log_groups.append(group)
        elif not create:
            self.note(
                f"log group {group} of {where}: it does not exist in the account, so it is not in the world "
                "either; Verify will say so"
            )

    # ------------------------------------------------------------------ the service's settings
    def deployment_configuration(self, service: str, svc: dict[str, Any]) -> dict[str, Any]:
        config = dict(svc.get("deploymentConfiguration") or {})
        if config.pop("lifecycleHooks", None):
            self.note(f"the deployment lifecycle hooks of {service}: they call Lambda functions a world does not have")
        alarms = config.get("alarms") or {}
        if alarms and not alarms.get("alarmNames"):
            config.pop("alarms")
        return {k: v for k, v in config.items() if DEFAULT_DEPLOYMENT.get(k) != v}

    def target_groups(self, service: str, svc: dict[str, Any]) -> list[dict[str, Any]]:
        entries = svc.get("loadBalancers") or []
        for entry in entries:
            if entry.get("loadBalancerName") and not entry.get("targetGroupArn"):
                self.note(
                    f"Classic Load Balancer {entry['loadBalancerName']} of {service}: a world has target groups only"
                )
        arns = [e for e in entries if e.get("targetGroupArn")]
        if not arns:
            return []
        described: dict[str, dict[str, Any]] = {}
        try:
            for batch in aws.batches([e["targetGroupArn"] for e in arns], 20):
                for group in (
                    self.client("elbv2").describe_target_groups(TargetGroupArns=batch).get("TargetGroups") or []
                ):
                    described[group["TargetGroupArn"]] = group
        except ClientError as exc:
            if aws.error_code(exc) not in ("TargetGroupNotFound", "TargetGroupNotFoundException"):
                self.refused(exc, f"the target groups of {service}")
                return []
        groups = []
        for entry in arns:
            arn = entry["targetGroupArn"]
            match = TG_ARN.match(arn)
            name = match["name"] if match else arn.rsplit("/", 2)[-2]
            if arn not in described:
                self.note(
                    f"target group {name} of {service}: it does not exist any more; Verify will say so on AWS, "
                    "but the world cannot keep a service pointing at a missing target group"
                )
                continue
            groups.append(
                {
                    "name": name,
                    "container": entry["containerName"],
                    "port": entry["containerPort"],
                    "described": described[arn],
                }
            )
        for group in groups:
            described_group = group.pop("described")
            self.note(
                f"the load balancer, listeners and health check of target group {group['name']} "
                f"({described_group.get('Protocol', '?')}, path {described_group.get('HealthCheckPath') or '-'}, "
                f"every {described_group.get('HealthCheckIntervalSeconds', '?')} s, healthy after "
                f"{described_group.get('HealthyThresholdCount', '?')} checks): the sandbox's target group is "
                "HTTP, and its targets turn healthy after the world's healthyAfterSeconds"
            )
        return groups

    def auto_scaling(self, cluster: str, service: str) -> dict[str, Any] | None:
        """The service's Application Auto Scaling target on its desired count, with its target tracking policies
        on ECS's predefined CPU and memory metrics (others are noted)."""
        target = {
            "ServiceNamespace": "ecs",
            "ResourceIds": [f"service/{cluster}/{service}"],
            "ScalableDimension": "ecs:service:DesiredCount",
        }
        aas = self.client("application-autoscaling")
        try:
            [found] = aas.describe_scalable_targets(**target).get("ScalableTargets") or [None]
            if found is None:
                return None
            policies = (
                aas.describe_scaling_policies(
                    ServiceNamespace="ecs",
                    ResourceId=f"service/{cluster}/{service}",
                    ScalableDimension="ecs:service:DesiredCount",
                ).get("ScalingPolicies")
                or []
            )
        except ClientError as exc:
            self.refused(exc, f"the autoscaling of {service}")
            return None
        scaling: dict[str, Any] = {"minCapacity": found["MinCapacity"], "maxCapacity": found["MaxCapacity"]}
        kept = []
        for policy in policies:
            tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
            metric = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
            if policy.get("PolicyType") == "TargetTrackingScaling" and metric in PREDEFINED_METRICS:
                kept.append({"name": policy["PolicyName"], "metric": metric, "targetValue": tracking["TargetValue"]})
            else:
                self.note(
                    f"scaling policy {policy.get('PolicyName')} of {service} ({policy.get('PolicyType')}"
                    f"{', ' + metric if metric else ''}): a world holds target tracking on CPU or memory only"
                )
        if kept:
            scaling["policies"] = kept
        return scaling

    def service_settings(self, service: str, svc: dict[str, Any], spec: dict[str, Any]) -> None:
        strategy = svc.get("capacityProviderStrategy") or []
        checks = [
            (
                "capacity provider strategy (EC2 capacity providers)",
                any(item.get("capacityProvider") not in FARGATE_PROVIDERS for item in strategy),
            ),
            ("placement constraints", bool(svc.get("placementConstraints"))),
            ("placement strategy", bool(svc.get("placementStrategy"))),
            ("service discovery registries", bool(svc.get("serviceRegistries"))),
            (
                "Service Connect",
                bool(
                    any(
                        (d.get("serviceConnectConfiguration") or {}).get("enabled")
                        for d in svc.get("deployments") or []
                    )
                ),
            ),
            ("ECS Exec", bool(svc.get("enableExecuteCommand"))),
            ("health check grace period", bool(svc.get("healthCheckGracePeriodSeconds"))),
            ("platform version", svc.get("platformVersion") not in (None, "LATEST")),
        ]
        settings = [label for label, present in checks if present]
        if settings:
            self.note(
                f"{', '.join(settings)} of service {service}: a world has no place for these settings (a "
                "deploy in the sandbox does not need them)"
            )
        if (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration"):
            self.note(
                f"the subnets and security groups of {service}: the sandbox gives every awsvpc service its own "
                "VPC's subnets"
            )
        if svc.get("schedulingStrategy") == "DAEMON":
            self.note(f"the DAEMON scheduling of {service}: a world's services are REPLICA services")
        controller = (svc.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            self.note(
                f"the {controller} deployment controller of {service}: a world's services use ECS's own, and "
                "Ferry does not drive the others"
            )
        launch = svc.get("launchType")
        if launch and launch != "FARGATE" and "FARGATE" not in (spec.get("requiresCompatibilities") or []):
            self.note(f"the {launch} capacity of {service}: the sandbox simulates where tasks run")
        others = [d for d in svc.get("deployments") or [] if d.get("status") != "PRIMARY"]
        if others:
            self.note(
                f"the deployment in progress of {service} (from {others[0].get('taskDefinition', '?').rsplit('/', 1)[-1]}): "
                f"the world runs the revision it is moving to, {svc['taskDefinition'].rsplit('/', 1)[-1]}"
            )

    def alarms(self, cluster: str, services: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Alarms of each service: in its deployment configuration, on its metrics or its target groups' or named
        after it. The world gets each alarm's state; the service's config watches them."""
        wanted: dict[str, set[str]] = {}
        target_groups: dict[str, str] = {}
        for svc in services:
            name = svc["serviceName"]
            named = ((svc.get("deploymentConfiguration") or {}).get("alarms") or {}).get("alarmNames") or []
            wanted[name] = set(named)
            for entry in svc.get("loadBalancers") or []:
                arn = entry.get("targetGroupArn") or ""
                if ":targetgroup/" in arn:
                    target_groups["targetgroup/" + arn.split(":targetgroup/", 1)[1]] = name
        try:
            alarms = aws.items(
                self.client("cloudwatch"),
                "describe_alarms",
                ("MetricAlarms", "CompositeAlarms"),
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
            )
        except ClientError as exc:
            self.refused(exc, "the CloudWatch alarms")
            return {name: [] for name in wanted}
        by_service: dict[str, list[str]] = {name: [] for name in wanted}
        for alarm in alarms:
            alarm_name = alarm["AlarmName"]
            if alarm_name.startswith("TargetTracking-"):
                # Application Auto Scaling's own alarms for a target tracking policy: they fire whenever the
                # service should scale, which is no reason to stop a deploy, and the world's autoScaling makes
                # them again ("Do not edit or delete these alarms": Application Auto Scaling user guide,
                # target tracking scaling policies).
                continue
            dims = _dimensions(alarm)
            for svc in services:
                name = svc["serviceName"]
                on_service = dims.get("ServiceName") == name and dims.get("ClusterName", cluster) == cluster
                on_group = target_groups.get(dims.get("TargetGroup", "")) == name
                named = any(
                    re.match(rf"{re.escape(prefix)}($|[-_ ./:])", alarm_name)
                    for prefix in (name, f"{cluster}-{name}", f"{cluster}/{name}")
                )
                if alarm_name in wanted[name] or on_service or on_group or named:
                    by_service[name].append(alarm_name)
                    self.found.alarms[alarm_name] = alarm.get("StateValue", "INSUFFICIENT_DATA")
        for name, named in wanted.items():
            for missing in sorted(named - set(by_service[name])):
                self.note(f"alarm {missing} of {name}'s deployment configuration: it does not exist in CloudWatch")
        return {name: sorted(set(found)) for name, found in by_service.items()}

    def config(self, cluster: str, service: str, running: dict[str, str], svc: dict[str, Any]) -> dict[str, Any]:
        """A default service config: the running revision with the new images (`current`), any tag deploys."""
        containers = {c: {"repository": ref.rsplit(":", 1)[0]} for c, ref in sorted(running.items())}
        native = ((svc.get("deploymentConfiguration") or {}).get("strategy") or "ROLLING") in NATIVE_STRATEGIES
        return {
            "cluster": cluster,
            "service": service,
            "containers": containers,
            "triggers": [
                {"repository": r, "tags": ["*"]} for r in sorted({c["repository"] for c in containers.values()})
            ],
            "taskDefinition": "current",
            "strategy": {"type": "native" if native else "rolling"},
            "timeouts": {"deployment": 1800},
        }


def _pick(tags: list[str]) -> str:
    """The tag that names an image best: not `latest` when it has another."""
    return next((t for t in tags if t != "latest"), tags[0])


def _service_principals(document: Any) -> list[str]:
    """The AWS services an IAM trust policy lets assume the role."""
    if isinstance(document, str):
        import urllib.parse

        document = json.loads(urllib.parse.unquote(document))
    statements = (document or {}).get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    out: list[str] = []
    for statement in statements:
        actions = statement.get("Action")
        actions = [actions] if isinstance(actions, str) else list(actions or [])
        if statement.get("Effect") != "Allow" or not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = statement.get("Principal") or {}
        services = principal.get("Service") if isinstance(principal, dict) else None
        out += [services] if isinstance(services, str) else list(services or [])
    return out


def _dimensions(alarm: dict[str, Any]) -> dict[str, str]:
    """An alarm's metric dimensions (a metric math alarm's, of every metric it reads)."""
    dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions") or []}
    for query in alarm.get("Metrics") or []:
        metric = (query.get("MetricStat") or {}).get("Metric") or {}
        dims.update({d["Name"]: d["Value"] for d in metric.get("Dimensions") or []})
    return dims


def import_world(
    clients: Clients,
    cluster: str,
    services: Sequence[str],
    *,
    registry: str = "registry",
    not_imported: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read `services` of `cluster` from the account `clients` reach; return (world, files).

    `clients`: a boto3 Session (or anything with `.client(name)`, such as the Sandbox), or a mapping of service
    name to client; the region is the ECS client's. `files` maps a path relative to the world file to its text:
    `<service>-task-def.json` per service and `<registry>/<service>/ferry.yaml`. What the world cannot hold is
    appended to `not_imported`, one line each. Raises ImportFailed when the cluster or a service is missing
    (status 2) or AWS refuses a call the import needs (status 1)."""
    notes = not_imported if not_imported is not None else []
    importer = _Importer(clients, notes)
    try:
        described = importer.services(cluster, services)
        entries, files, configs = [], {}, {}
        for svc in described:
            entry, spec, config = importer.service(cluster, svc)
            entries.append(entry)
            files[entry["taskDefinition"]] = json.dumps(spec, indent=2) + "\n"
            configs[svc["serviceName"]] = config
        alarms = importer.alarms(cluster, described)
    except (NoCredentialsError, NoRegionError) as exc:
        raise ImportFailed(
            f"cannot reach your AWS account ({exc}): set credentials and a region as for the AWS CLI, or pass --region",
            2,
        ) from exc
    except BotoCoreError as exc:
        raise ImportFailed(f"cannot reach AWS: {exc}") from exc
    found = importer.found
    world: dict[str, Any] = {
        "account": found.account,
        "region": found.region,
        "ecr": importer.ecr(),
        "services": entries,
    }
    if found.secrets:
        world["secrets"] = dict(sorted(found.secrets.items()))
    if found.parameters:
        world["parameters"] = dict(sorted(found.parameters.items()))
    if found.roles:
        world["roles"] = [found.roles[n] for n in sorted(found.roles)]
    if found.log_groups:
        world["logGroups"] = sorted(found.log_groups)
    if found.s3:
        world["s3"] = {bucket: dict(sorted(objects.items())) for bucket, objects in sorted(found.s3.items())}
    if found.alarms:
        world["alarms"] = dict(sorted(found.alarms.items()))
    world["registry"] = registry
    for name, config in configs.items():
        watched = alarms.get(name) or []
        if watched:
            if len(watched) > MAX_CONFIG_ALARMS:
                notes.append(
                    f"not imported: {len(watched) - MAX_CONFIG_ALARMS} of the alarms of {name} in its "
                    f"config: a config watches at most {MAX_CONFIG_ALARMS}"
                )
            config["healthGates"] = {"alarms": watched[:MAX_CONFIG_ALARMS]}
        header = (
            f"# Ferry config for {cluster}/{name}, written by `ferry sandbox import` (every field: "
            "docs/service-config.md).\n# Any tag pushed to its repositories deploys the running revision with "
            "the new image;\n# healthGates.alarms are the alarms found for the service: keep the ones that "
            "should stop a deploy.\n"
        )
        files[f"{registry.rstrip('/')}/{name}/ferry.yaml"] = header + yaml.safe_dump(config, sort_keys=False)
    for what, document, schema_name in [
        ("world", world, WORLD_SCHEMA),
        *((f"config of {n}", c, CONFIG_SCHEMA) for n, c in configs.items()),
    ]:
        broken = problems(document, schema_name)
        if broken:  # a name AWS allows and the schema does not
            raise ImportFailed(
                f"the imported {what} breaks {schema_name} ({broken[0]}): AWS allows a name the "
                "world does not; please report it"
            )
    return world, files


def world_yaml(world: dict[str, Any], *, source: str = "") -> str:
    """The world as YAML, with a header saying where it came from."""
    head = (
        f"# A sandbox world imported by `ferry sandbox import`{' from ' + source if source else ''}.\n"
        "# Secrets and SecureString parameters hold placeholders, never their values.\n"
    )
    return head + yaml.safe_dump(world, sort_keys=False, width=120)
