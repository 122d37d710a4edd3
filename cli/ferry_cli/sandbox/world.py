"""World files: what exists in the simulated account before events arrive.

A world is validated against schemas/sandbox-world.schema.json and then built
into moto through the ordinary AWS APIs, the way an account would look: ECR
images, roles, a VPC, clusters, services running their current revision,
target groups, secrets (under the ARN AWS gave them, when the world says),
parameters (SecureString too), S3 objects, CloudFormation stacks with their
outputs and exports, log groups, alarms and the config registry.

The values of secrets, parameters and S3 objects are never repeated in an
error: the schema is checked on a copy without them (`_redacted`).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

from ferry.taskdef import READ_ONLY_FIELDS
from ferry.config.validation import require_valid

from .sandbox import Sandbox, bucket_location

SCHEMA = "sandbox-world.schema.json"
# A secret's ARN as Secrets Manager makes it: "Secrets Manager automatically adds a hyphen and six random characters
# after the secret name at the end of the ARN" (Secrets Manager API reference, CreateSecret, Name; the same text is
# the pinned botocore model's documentation of CreateSecretRequest.Name).
SECRET_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):secretsmanager:(?P<region>[^:]+):(?P<account>\d{12}):secret:"
    r"(?P<name>.+)-(?P<suffix>[A-Za-z0-9]{6})$"
)
# "You can declare a maximum of 200 outputs in a template" (CloudFormation user guide, "CloudFormation template
# Outputs syntax").
MAX_STACK_OUTPUTS = 200


class _Hidden:
    """Stands in for a value the world must never print (a secret's, a parameter's, an S3 object's) when that
    value is not even a string: the schema's message then says what was expected without quoting it."""

    def __repr__(self) -> str:
        return "(a value not shown)"


_HIDDEN = _Hidden()


class WorldError(Exception):
    """A world file (or a file it names) is unreadable or invalid."""


def derived_digest(repository: str, tag: str) -> str:
    """The digest the sandbox gives repository:tag when the world does not name one."""
    return "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()


def read_structured(path: Path, what: str) -> Any:
    """Parse a JSON or YAML file, with an error that names the file and the position."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorldError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise WorldError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise WorldError(f"{path}: {where}not valid YAML: {getattr(exc, 'problem', exc)}") from exc


@dataclass
class World:
    path: Path
    data: dict[str, Any]
    task_definitions: dict[str, dict[str, Any]] = field(default_factory=dict)  # service key -> spec

    @property
    def account(self) -> str:
        return self.data.get("account", "123456789012")

    @property
    def region(self) -> str:
        return self.data.get("region", "us-east-1")

    @property
    def clusters(self) -> list[str]:
        """The stack's Clusters parameter, the clusters Ferry is installed for: `ferryClusters`, else the clusters
        of `services`."""
        return list(self.data.get("ferryClusters") or sorted({s["cluster"] for s in self.data["services"]}))

    @property
    def account_clusters(self) -> list[str]:
        """The ECS clusters the world creates: those of `services` and those `clusters` lists. A cluster named only in
        `ferryClusters` is not created (a Clusters parameter may name a cluster that does not exist)."""
        return sorted({s["cluster"] for s in self.data["services"]} | set(self.data.get("clusters") or []))

    def registry_uri(self, repository: str) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{repository}"

    def images(self) -> dict[str, dict[str, str]]:
        """repository -> tag -> digest."""
        out: dict[str, dict[str, str]] = {}
        for repo, tags in (self.data.get("ecr") or {}).items():
            out[repo] = dict(tags) if isinstance(tags, dict) else {t: derived_digest(repo, t) for t in tags}
        return out

    @classmethod
    def load(cls, path: Path) -> "World":
        data = read_structured(path, "world file")
        if not isinstance(data, dict):
            raise WorldError(f"{path}: $: expected a mapping with at least `services`, got {type(data).__name__}")
        # The schema's messages quote the value they refuse (`'…' is too long`, `… is not of type 'string'`), so the
        # schema is checked on a copy in which no secret, parameter or S3 object value is left.
        require_valid(_redacted(data), SCHEMA, str(path), WorldError)
        world = cls(path, data)
        world._check_references()
        world._check_account_resources()
        return world

    def _check_account_resources(self) -> None:
        """What the schema cannot say about secrets and stacks."""
        for name, spec in (self.data.get("secrets") or {}).items():
            match = SECRET_ARN.match(spec["arn"]) if spec.get("arn") else None  # the schema checked its form
            if match and match["name"] != name:
                raise WorldError(
                    f"{self.path}: $.secrets.{name}.arn: the ARN names secret {match['name']!r}, not "
                    f"{name!r}: the key is the secret's name, the ARN its name plus -<6 random characters>"
                )
            if match and match["account"] != self.account:
                raise WorldError(
                    f"{self.path}: $.secrets.{name}.arn: the ARN is in account {match['account']}, but the "
                    f"world's account is {self.account}: the sandbox has one account"
                )
        exported: dict[str, str] = {}
        for stack, spec in (self.data.get("stacks") or {}).items():
            count = len(self._stack_outputs(spec))
            if count > MAX_STACK_OUTPUTS:
                raise WorldError(
                    f"{self.path}: $.stacks.{stack}: {count} outputs and exports; a CloudFormation template "
                    f"declares at most {MAX_STACK_OUTPUTS} outputs"
                )
            for export in spec.get("exports") or {}:
                if export in exported:
                    # Export names are unique in an account's region (CloudFormation user guide, "Get exported outputs
                    # from a deployed CloudFormation stack"); moto refuses a second one too, less readably
                    raise WorldError(
                        f"{self.path}: $.stacks.{stack}.exports.{export}: stack {exported[export]} "
                        "already exports this name; export names are unique in a region"
                    )
                exported[export] = stack

    def _check_references(self) -> None:
        images = self.images()
        seen = set()
        groups: dict[str, str] = {}  # target group name -> the service that has it
        for i, svc in enumerate(self.data["services"]):
            key = f"{svc['cluster']}/{svc['name']}"
            if key in seen:
                raise WorldError(f"{self.path}: $.services[{i}]: service {key} is listed twice")
            seen.add(key)
            if svc.get("targetGroup") and svc.get("targetGroups"):
                raise WorldError(f"{self.path}: $.services[{i}]: give targetGroup or targetGroups, not both")
            named = svc.get("targetGroups") or ([svc["targetGroup"]] if svc.get("targetGroup") else [])
            for j, tg in enumerate(named):
                name = tg if isinstance(tg, str) else tg["name"]
                where = f"targetGroups[{j}]" if svc.get("targetGroups") else "targetGroup"
                if name in groups:  # a name is unique in a region (ELB's CreateTargetGroup, Name)
                    raise WorldError(
                        f"{self.path}: $.services[{i}].{where}: target group {name} is already "
                        f"{'one of this service' if groups[name] == key else f'service {groups[name]}'}'s; "
                        "a target group name is unique in the region"
                    )
                groups[name] = key
            bases = [j for j, item in enumerate(svc.get("capacityProviderStrategy") or []) if "base" in item]
            if len(bases) > 1:  # "Only one capacity provider in a capacity provider strategy can have a base"
                raise WorldError(
                    f"{self.path}: $.services[{i}].capacityProviderStrategy[{bases[1]}].base: only one capacity "
                    "provider of a strategy can have a base (ECS CreateService): remove the others"
                )
            scaling = svc.get("autoScaling")
            # MinCapacity is "the minimum value that you plan to scale in to", MaxCapacity "the maximum value that you
            # plan to scale out to" (botocore application-autoscaling model, RegisterScalableTarget): a minimum above
            # the maximum is no range; the world refuses it rather than leave it to moto, which accepts it.
            if scaling and scaling["minCapacity"] > scaling["maxCapacity"]:
                raise WorldError(
                    f"{self.path}: $.services[{i}].autoScaling.minCapacity: {scaling['minCapacity']} is above "
                    f"maxCapacity {scaling['maxCapacity']}: the minimum cannot be greater than the maximum"
                )
            for container, ref in svc["running"].items():
                repo, tag = ref.rsplit(":", 1)
                if tag not in images.get(repo, {}):
                    raise WorldError(
                        f"{self.path}: $.services[{i}].running.{container}: {ref} is not pushed; "
                        f"add it under ecr.{repo}"
                    )
            td_path = self.path.parent / svc["taskDefinition"]
            spec = read_structured(td_path, "task definition")
            if isinstance(spec, dict) and "taskDefinition" in spec:
                spec = spec["taskDefinition"]  # the output of `aws ecs describe-task-definition`
            if not isinstance(spec, dict) or not spec.get("family") or not spec.get("containerDefinitions"):
                raise WorldError(f"{td_path}: $: a task definition needs `family` and `containerDefinitions`")
            names = {c.get("name") for c in spec["containerDefinitions"]}
            missing = sorted(set(svc["running"]) - names)
            if missing:
                raise WorldError(
                    f"{self.path}: $.services[{i}].running: containers {missing} are not in {td_path.name} "
                    f"(it has {sorted(n for n in names if n)})"
                )
            self.task_definitions[key] = {k: v for k, v in spec.items() if k not in READ_ONLY_FIELDS}

    # ------------------------------------------------------------------ build
    def simulator_options(self) -> dict[str, Any]:
        return {
            "behaviour": self.data.get("behaviour") or {},
            "migration": self.data.get("migration"),
            "defaults": self.data.get("timing"),
        }

    def build(self, sandbox: Sandbox) -> None:
        self._build_ecr(sandbox)
        self._build_account_resources(sandbox)
        self._build_s3(sandbox)
        self._build_stacks(sandbox)
        network = self._build_network(sandbox)
        for i, svc in enumerate(self.data["services"]):
            self._build_service(sandbox, i, svc, network)
        self._upload_registry(sandbox)

    def _build_ecr(self, sandbox: Sandbox) -> None:
        ecr = sandbox.client("ecr")
        for repo, tags in self.images().items():
            ecr.create_repository(repositoryName=repo)
            for tag, digest in tags.items():
                push_image(sandbox, repo, tag, digest)

    def _build_account_resources(self, sandbox: Sandbox) -> None:
        iam, logs = sandbox.client("iam"), sandbox.client("logs")
        for role in self.data.get("roles") or []:
            name, principal = (
                (role, "ecs-tasks.amazonaws.com") if isinstance(role, str) else (role["name"], role["trustedBy"])
            )
            trust = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": principal}, "Action": "sts:AssumeRole"}],
            }
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        for group in self.data.get("logGroups") or []:
            logs.create_log_group(logGroupName=group)
        for name, spec in (self.data.get("secrets") or {}).items():
            self._create_secret(sandbox, name, spec)
        ssm = sandbox.client("ssm")
        for name, spec in (self.data.get("parameters") or {}).items():
            spec = {"value": spec} if isinstance(spec, str) else spec
            # A SecureString is encrypted with "the default key associated with your Amazon Web Services account" when
            # no KeyId is given (SSM API reference, PutParameter, KeyId; the pinned botocore model). moto stores it as "kms:alias/aws/ssm:<value>", which is what
            # GetParameter without decryption answers: unlike AWS's ciphertext, the plaintext is in it, so a handler
            # that printed an undecrypted value would show it here. Stricter than AWS, and kept that way.
            ssm.put_parameter(Name=name, Value=spec["value"], Type=spec.get("type", "String"))
        cw = sandbox.client("cloudwatch")
        for name, state in (self.data.get("alarms") or {}).items():
            cw.put_metric_alarm(
                AlarmName=name,
                MetricName=name,
                Namespace="Sandbox",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )
            cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason="sandbox world")

    def _create_secret(self, sandbox: Sandbox, name: str, spec: dict[str, Any]) -> None:
        """CreateSecret, under the ARN the world gives (`arn`) when it gives one.

        AWS makes a secret's ARN from its name, a hyphen and six random characters (SECRET_ARN), so a task definition
        copied from AWS names secrets by ARNs that moto, which draws its own six characters, would never make. The one
        place moto lets a caller choose them is its id manager (moto.utilities.id_generator.moto_id_manager): the
        suffix registered for this account, region and secret name is what SecretsManagerSecretIdentifier.generate
        returns instead of a random one, for this call only."""
        match = SECRET_ARN.match(spec["arn"]) if spec.get("arn") else None
        region = match["region"] if match else self.region
        sm = (
            sandbox.client("secretsmanager")
            if region == self.region
            else boto3.client("secretsmanager", region_name=region)
        )
        request: dict[str, Any] = {"Name": name}
        if "value" in spec:
            request["SecretString"] = spec["value"]
        if match is None:
            sm.create_secret(**request)
            return
        from moto.secretsmanager.utils import SecretsManagerSecretIdentifier
        from moto.utilities.id_generator import moto_id_manager

        identifier = SecretsManagerSecretIdentifier(self.account, region, name)
        moto_id_manager.set_custom_id(identifier, match["suffix"])
        try:
            made = sm.create_secret(**request)["ARN"]
        finally:
            moto_id_manager.unset_custom_id(identifier)
        if made != spec["arn"]:  # e.g. a partition that is not the region's (arn:aws-cn: for us-east-1)
            raise WorldError(
                f"{self.path}: $.secrets.{name}.arn: {spec['arn']} is not an ARN Secrets Manager gives a "
                f"secret in {region} (it gives {made}): fix the partition or the region"
            )

    def _build_s3(self, sandbox: Sandbox) -> None:
        """Buckets in the world's region, and their objects (environment files, for instance)."""
        s3 = sandbox.client("s3")
        own = {sandbox.config_bucket, sandbox.artefacts_bucket}
        for bucket, objects in (self.data.get("s3") or {}).items():
            if bucket in own:
                raise WorldError(
                    f"{self.path}: $.s3.{bucket}: that is the Ferry stack's own bucket; put service "
                    "configs under `registry`, and name another bucket here"
                )
            s3.create_bucket(Bucket=bucket, **bucket_location(self.region))
            for key, body in objects.items():
                s3.put_object(Bucket=bucket, Key=key, Body=body.encode())

    @staticmethod
    def _stack_outputs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """A stack's template Outputs: each output, and each export on the output of the same value (else on an
        output of its own, keyed by the export name's letters and digits: an OutputKey is alphanumeric)."""
        outputs = {key: {"Value": value} for key, value in (spec.get("outputs") or {}).items()}
        for export, value in (spec.get("exports") or {}).items():
            holder = next((o for o in outputs.values() if o["Value"] == value and "Export" not in o), None)
            if holder is None:
                key = base = re.sub(r"[^A-Za-z0-9]", "", export) or "Export"
                n = 1
                while key in outputs:
                    n += 1
                    key = f"{base}{n}"
                holder = outputs[key] = {"Value": value}
            holder["Export"] = {"Name": export}
        return outputs

    def _build_stacks(self, sandbox: Sandbox) -> None:
        """Stacks made by moto's CloudFormation from a template that only carries the outputs (and exports), so that
        DescribeStacks and ListExports answer as for a stack that exists.

        A template needs at least one resource; AWS::CloudFormation::WaitConditionHandle is the one that creates
        nothing. moto parses it as a resource it does not implement, and warns (silenced here): nothing is lost,
        since the handle has nothing to create. moto names an output's ExportName by matching exports on value
        (moto.cloudformation.models, Stack.stack_outputs), so two outputs of one value both show the export's name in
        DescribeStacks; ListExports, which cfn_export reads, is right."""
        cfn = sandbox.client("cloudformation")
        for stack, spec in (self.data.get("stacks") or {}).items():
            template = {
                "AWSTemplateFormatVersion": "2010-09-09",
                "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": self._stack_outputs(spec),
            }
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*WaitConditionHandle.*")
                cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))

    def _build_network(self, sandbox: Sandbox) -> dict[str, Any]:
        ec2 = sandbox.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        # The region's own zones: not every region has an "a" and a "b" (ap-northeast-1 has a, c and d).
        zones = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])[:2]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
            for i, z in enumerate(zones)
        ]
        group = ec2.create_security_group(GroupName="ferry-sandbox-tasks", Description="sandbox tasks", VpcId=vpc)[
            "GroupId"
        ]
        ecs = sandbox.client("ecs")
        for cluster in self.account_clusters:
            ecs.create_cluster(clusterName=cluster)
        return {"vpc": vpc, "subnets": subnets, "securityGroups": [group]}

    def _build_service(self, sandbox: Sandbox, index: int, svc: dict[str, Any], network: dict[str, Any]) -> None:
        key = f"{svc['cluster']}/{svc['name']}"
        spec = json.loads(json.dumps(self.task_definitions[key]))
        for container in spec["containerDefinitions"]:
            if container["name"] in svc["running"]:
                repo, tag = svc["running"][container["name"]].rsplit(":", 1)  # checked pushed on load
                container["image"] = f"{self.registry_uri(repo)}:{tag}"
        ecs = sandbox.client("ecs")
        task_definition = ecs.register_task_definition(**spec)["taskDefinition"]
        awsvpc = spec.get("networkMode") == "awsvpc"
        fargate = "FARGATE" in (spec.get("requiresCompatibilities") or [])
        params: dict[str, Any] = {
            "cluster": svc["cluster"],
            "serviceName": svc["name"],
            "taskDefinition": task_definition["taskDefinitionArn"],
            "desiredCount": svc.get("desiredCount", 1),
            "deploymentConfiguration": {
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
                "deploymentCircuitBreaker": {"enable": False, "rollback": False},
                **(svc.get("deploymentConfiguration") or {}),
            },
        }
        strategy = svc.get("capacityProviderStrategy")
        if strategy:  # "If a capacityProviderStrategy is specified, the launchType parameter must be omitted."
            self._associate_capacity_providers(sandbox, svc["cluster"], [item["capacityProvider"] for item in strategy])
            params["capacityProviderStrategy"] = strategy
        elif fargate:
            params["launchType"] = "FARGATE"
        if awsvpc:
            params["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": network["subnets"],
                    "securityGroups": network["securityGroups"],
                    "assignPublicIp": "DISABLED",
                }
            }
        if svc.get("targetGroup") or svc.get("targetGroups"):
            params["loadBalancers"] = self._target_groups(sandbox, index, svc, spec, network, awsvpc)
        if svc.get("arnFormat") == "short":
            # A service created before the account opted in to the long ARN format keeps the short one (ECS
            # developer guide, service-arn-migration.html): create it with the setting off, then turn it back on.
            ecs.put_account_setting(name="serviceLongArnFormat", value="disabled")
            try:
                ecs.create_service(**params)
            finally:
                ecs.put_account_setting(name="serviceLongArnFormat", value="enabled")
        else:
            ecs.create_service(**params)
        if svc.get("autoScaling"):
            self._build_auto_scaling(sandbox, svc)

    def _associate_capacity_providers(self, sandbox: Sandbox, cluster: str, providers: list[str]) -> None:
        """A strategy may only name providers associated with the cluster (PutClusterCapacityProviders): the world
        associates them, as the account that runs the service has; FARGATE and FARGATE_SPOT are AWS's own."""
        ecs = sandbox.client("ecs")
        [found] = ecs.describe_clusters(clusters=[cluster])["clusters"]
        associated = list(found.get("capacityProviders") or [])
        wanted = associated + [p for p in providers if p not in associated]
        if wanted != associated:
            ecs.put_cluster_capacity_providers(
                cluster=cluster,
                capacityProviders=wanted,
                defaultCapacityProviderStrategy=found.get("defaultCapacityProviderStrategy") or [],
            )

    def _build_auto_scaling(self, sandbox: Sandbox, svc: dict[str, Any]) -> None:
        """The service's scalable target and target tracking policies, as Application Auto Scaling holds them."""
        scaling, aas = svc["autoScaling"], sandbox.client("application-autoscaling")
        target = {
            "ServiceNamespace": "ecs",
            "ResourceId": f"service/{svc['cluster']}/{svc['name']}",
            "ScalableDimension": "ecs:service:DesiredCount",
        }
        aas.register_scalable_target(**target, MinCapacity=scaling["minCapacity"], MaxCapacity=scaling["maxCapacity"])
        for policy in scaling.get("policies") or []:
            aas.put_scaling_policy(
                **target,
                PolicyName=policy["name"],
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": float(policy["targetValue"]),
                    "PredefinedMetricSpecification": {"PredefinedMetricType": policy["metric"]},
                },
            )

    def _target_groups(
        self,
        sandbox: Sandbox,
        index: int,
        svc: dict[str, Any],
        spec: dict[str, Any],
        network: dict[str, Any],
        awsvpc: bool,
    ) -> list[dict[str, Any]]:
        """The service's loadBalancers: a target group for each of `targetGroup` or `targetGroups`, behind the world's
        load balancer of its kind (see _listen)."""
        if svc.get("targetGroups"):
            groups = [(f"targetGroups[{i}]", dict(tg)) for i, tg in enumerate(svc["targetGroups"])]
        else:
            tg = svc["targetGroup"]
            groups = [("targetGroup", {"name": tg} if isinstance(tg, str) else dict(tg))]
        return [
            self._target_group(sandbox, f"$.services[{index}].{where}", tg, spec, network, awsvpc)
            for where, tg in groups
        ]

    def _target_group(
        self,
        sandbox: Sandbox,
        where: str,
        tg: dict[str, Any],
        spec: dict[str, Any],
        network: dict[str, Any],
        awsvpc: bool,
    ) -> dict[str, Any]:
        containers = spec["containerDefinitions"]
        if "container" in tg:
            container = next((c for c in containers if c["name"] == tg["container"]), None)
            if container is None:
                raise WorldError(f"{self.path}: {where}.container: no container {tg['container']!r}")
        else:
            container = next((c for c in containers if c.get("portMappings")), None)
            if container is None:
                raise WorldError(f"{self.path}: {where}: no container has a port mapping; name the container and port")
        port = tg.get("port") or next((m["containerPort"] for m in container.get("portMappings", [])), None)
        if port is None:
            raise WorldError(f"{self.path}: {where}.port: container {container['name']} has no port")
        protocol = tg.get("protocol", "HTTP")
        # 10 s x 3 checks: the simulator's healthyAfterSeconds (30 s) before a new target is healthy. An HTTP(S)
        # group checks a path; a Network Load Balancer's group (TCP, UDP, TCP_UDP) checks a TCP connection ("The
        # GENEVE, TLS, UDP, TCP_UDP, QUIC, and TCP_QUIC protocols are not supported for health checks": ELB API
        # reference, CreateTargetGroup, HealthCheckProtocol).
        check = {"HealthCheckPath": "/"} if protocol in ("HTTP", "HTTPS") else {"HealthCheckProtocol": "TCP"}
        elb = sandbox.client("elbv2")
        arn = elb.create_target_group(
            Name=tg["name"],
            Protocol=protocol,
            Port=port,
            VpcId=network["vpc"],
            TargetType="ip" if awsvpc else "instance",
            HealthCheckIntervalSeconds=10,
            HealthyThresholdCount=3,
            UnhealthyThresholdCount=2,
            **check,
        )["TargetGroups"][0]["TargetGroupArn"]
        self._listen(sandbox, network, protocol, arn)
        return {"targetGroupArn": arn, "containerName": container["name"], "containerPort": port}

    def _listen(self, sandbox: Sandbox, network: dict[str, Any], protocol: str, target_group: str) -> None:
        """Put the target group behind the world's load balancer of its kind, on a listener of its own.

        On AWS a target group no load balancer uses receives no traffic and its targets are `unused`
        ("Target.NotInUse - The target group is not used by any load balancer": ELB API reference,
        TargetHealth.Reason, as in the pinned botocore model). moto does not model that (nor does the ECS
        simulator: tests attach services to bare target groups), but the world is built as an account would have
        it: one Application Load Balancer for HTTP and HTTPS groups, one Network Load Balancer for TCP, UDP and
        TCP_UDP groups, made when the first group of their kind is. An ALB's HTTPS listener needs a certificate
        the world does not have, so an HTTPS group is behind an HTTP listener (an ALB's listener and its target
        group each have their own protocol)."""
        elb = sandbox.client("elbv2")
        kind = "application" if protocol in ("HTTP", "HTTPS") else "network"
        balancers = network.setdefault("balancers", {})
        if kind not in balancers:
            extra = {"SecurityGroups": network["securityGroups"]} if kind == "application" else {}
            balancers[kind] = {
                "arn": elb.create_load_balancer(
                    Name=f"ferry-sandbox-{'alb' if kind == 'application' else 'nlb'}",
                    Subnets=network["subnets"],
                    Scheme="internal",
                    Type=kind,
                    **extra,
                )["LoadBalancers"][0]["LoadBalancerArn"],
                "listeners": 0,
            }
        balancer = balancers[kind]
        listener = "HTTP" if kind == "application" else protocol
        elb.create_listener(
            LoadBalancerArn=balancer["arn"],
            Protocol=listener,
            Port=10000 + balancer["listeners"],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
        )
        balancer["listeners"] += 1

    def default_configs(self) -> dict[str, dict[str, Any]]:
        """A config per service when the world has no registry: `current`, every tag deploys."""
        names = [s["name"] for s in self.data["services"]]
        configs = {}
        for svc in self.data["services"]:
            name = svc["name"] if names.count(svc["name"]) == 1 else f"{svc['cluster']}-{svc['name']}"
            configs[name] = {
                "cluster": svc["cluster"],
                "service": svc["name"],
                "containers": {c: {"repository": ref.rsplit(":", 1)[0]} for c, ref in sorted(svc["running"].items())},
            }
        return configs

    def _upload_registry(self, sandbox: Sandbox) -> None:
        s3 = sandbox.client("s3")
        registry = self.data.get("registry")
        if not registry:
            for name, config in self.default_configs().items():
                s3.put_object(
                    Bucket=sandbox.config_bucket,
                    Key=f"services/{name}/ferry.yaml",
                    Body=yaml.safe_dump(config, sort_keys=False).encode(),
                )
            return
        directory = self.path.parent / registry
        if not directory.is_dir():
            raise WorldError(f"{self.path}: $.registry: {directory} is not a directory")
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            key = "services/" + file.relative_to(directory).as_posix()
            s3.put_object(Bucket=sandbox.config_bucket, Key=key, Body=file.read_bytes())


def _redacted(data: dict[str, Any]) -> dict[str, Any]:
    """The world with every secret, parameter and S3 object value replaced: a string by as many asterisks (so its
    length is still checked), anything else by a stand-in that says nothing of it."""

    def hide(value: Any) -> Any:
        return "*" * len(value) if isinstance(value, str) else _HIDDEN

    def hide_value(spec: Any) -> Any:
        if not isinstance(spec, dict):
            return _HIDDEN
        return {k: hide(v) if k == "value" else v for k, v in spec.items()}

    hiders = {
        "secrets": lambda found: {name: hide_value(spec) for name, spec in found.items()},
        "parameters": lambda found: {
            name: hide_value(spec) if isinstance(spec, dict) else hide(spec) for name, spec in found.items()
        },
        "s3": lambda found: {
            bucket: {key: hide(body) for key, body in objects.items()} if isinstance(objects, dict) else _HIDDEN
            for bucket, objects in found.items()
        },
    }
    out = dict(data)
    for key, hider in hiders.items():
        if key in data:  # not a mapping at all (a list of values, say): none of it is shown
            out[key] = hider(data[key]) if isinstance(data[key], dict) else _HIDDEN
    return out


def push_image(sandbox: Sandbox, repository: str, tag: str, digest: str) -> None:
    """Put an image into moto's ECR under the given digest (what a `docker push` leaves behind)."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": digest, "mediaType": "application/vnd.docker.container.image.v1+json", "size": 1},
            "layers": [],
        }
    )
    sandbox.client("ecr").put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag, imageDigest=digest)
