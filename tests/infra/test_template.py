"""Structure of template.yaml: least privilege, storage settings, logging, routing.

These read the SAM template itself (with CloudFormation short tags), evaluate
the intrinsic functions that build IAM resources against a sample deployment
(EnvironmentName=test, Clusters=dev,blue_team) and check what AWS would see.
A function's permissions are those of its role: the statements of its Policies
(SAM policy templates expanded) and of the template's managed policies they
attach. No AWS account and no SAM translator are needed.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ferry_cli.sandbox.template import Resolver, Template, physical_resources

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SUBSTITUTE = ROOT / "scripts" / "asl_substitute.py"


def _load_substitute_module():
    spec = importlib.util.spec_from_file_location("ferry_asl_substitute", SUBSTITUTE)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


asl_substitute = _load_substitute_module()
T = asl_substitute.load_template(TEMPLATE)
RESOURCES: dict[str, dict[str, Any]] = T["Resources"]

# ---------------------------------------------------------------- sample deployment
PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
CLUSTERS = ["dev", "blue_team"]
PARAMS = {"EnvironmentName": "test", "Clusters": CLUSTERS, "LogRetentionDays": 30, "LogLevel": "INFO"}
PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": "ferry-test"}

FUNCTIONS = {
    "RouterFunction": "functions/router/",
    "LockFunction": "functions/lock/",
    "RenderFunction": "functions/render/",
    "VerifyFunction": "functions/verify/",
    "RegisterFunction": "functions/register/",
    "MigrateFunction": "functions/migrate/",
    "TaskStoppedFunction": "functions/task_stopped/",
    "ExecutionEndedFunction": "functions/execution_ended/",
    "RollbackFunction": "functions/rollback/",
    "BakeFunction": "functions/bake/",
    "CanaryFunction": "functions/canary/",
    "UpdateServiceFunction": "functions/update_service/",
    "CheckDeploymentFunction": "functions/check_deployment/",
    "ReaperFunction": "functions/reaper/",
}

# Actions that have no resource types in the Service Authorization Reference,
# so IAM only accepts Resource "*" for them.
STAR_ONLY_ACTIONS = {
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "secretsmanager:ListSecrets",
    "cloudformation:ListExports",
    "ssm:DescribeParameters",
    "elasticloadbalancing:DescribeTargetGroups",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "ecs:DeregisterTaskDefinition",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "ecs:ListServices",  # with ecs:cluster pinning the cluster (test_the_reaper_lists_services_of_the_allowed_clusters_only)
    # Step Functions log delivery (cw-logs.html#cloudwatch-iam-policy)
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

# What each step calls, and nothing else.
EXPECTED_ACTIONS = {
    "RouterFunction": {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "states:StartExecution",
        "states:DescribeExecution",
        "ecr:DescribeImages",
    },
    "LockFunction": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "states:DescribeExecution",
        "s3:GetObject",
        "s3:ListBucket",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    },
    "RenderFunction": {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "ecs:DescribeServices",
        "ecs:DescribeTaskDefinition",
        "ecr:DescribeImages",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "secretsmanager:DescribeSecret",
        "secretsmanager:ListSecrets",
        "cloudformation:DescribeStacks",
        "cloudformation:ListExports",
    },
    "VerifyFunction": {
        "s3:GetObject",
        "s3:PutObject",
        "ecs:DescribeClusters",
        "ecs:DescribeServices",
        "ecr:DescribeImages",
        "ecr:BatchGetImage",
        "iam:GetRole",
        "secretsmanager:DescribeSecret",
        "ssm:DescribeParameters",
        "ssm:GetParameter",
        "logs:DescribeLogGroups",
        "elasticloadbalancing:DescribeTargetGroups",
        "cloudwatch:DescribeAlarms",
    },
    "RegisterFunction": {
        "s3:GetObject",
        "s3:PutObject",
        "ecs:DescribeTaskDefinition",
        "ecs:ListTaskDefinitions",
        "ecs:RegisterTaskDefinition",
        "ecs:TagResource",
        "iam:PassRole",
    },
    "MigrateFunction": {
        "ecs:DescribeServices",
        "ecs:RunTask",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:DescribeTaskDefinition",
        "ecs:TagResource",
        "iam:PassRole",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "logs:GetLogEvents",
        "s3:PutObject",
    },
    "TaskStoppedFunction": {
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "logs:GetLogEvents",
        "s3:PutObject",
    },
    "RollbackFunction": {
        "ecs:UpdateService",
        "ecs:DescribeServices",
        "ecs:ListServiceDeployments",
        "ecs:StopServiceDeployment",
        "ecs:DeregisterTaskDefinition",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "s3:GetObject",
        "s3:ListBucket",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
    },
    "CanaryFunction": {
        "ecs:DescribeServices",
        "ecs:RunTask",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:DescribeTaskDefinition",
        "ecs:TagResource",
        "iam:PassRole",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "logs:GetLogEvents",
        "s3:PutObject",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    },
    "BakeFunction": {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "cloudwatch:DescribeAlarms",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    },
    "ExecutionEndedFunction": {
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "ecs:DescribeServices",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "events:PutEvents",
        "states:GetExecutionHistory",
        "dynamodb:UpdateItem",
        "states:SendTaskFailure",
        "elasticloadbalancing:DescribeTargetHealth",
    },
    "UpdateServiceFunction": {
        "ecs:UpdateService",
        "ecs:DescribeServices",
        "s3:PutObject",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    },
    "CheckDeploymentFunction": {
        "ecs:DescribeServices",
        "ecs:ListServiceDeployments",
        "ecs:DescribeServiceDeployments",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
    },
    "ReaperFunction": {
        "dynamodb:Scan",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "states:DescribeExecution",
        "states:SendTaskFailure",
        "ecs:DescribeServices",
        "ecs:ListServices",
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "events:PutEvents",
    },
}

# ECS actions on services/deployments: only the allowed clusters.
ECS_CLUSTER_SCOPED = {
    "ecs:UpdateService",
    "ecs:DescribeServices",
    "ecs:ListServiceDeployments",
    "ecs:DescribeServiceDeployments",
    "ecs:StopServiceDeployment",
}

SUBSTITUTION_KEYS = {
    "LockFunctionArn",
    "RenderFunctionArn",
    "VerifyFunctionArn",
    "RegisterFunctionArn",
    "MigrateFunctionArn",
    "RollbackFunctionArn",
    "BakeFunctionArn",
    "CanaryFunctionArn",
    "UpdateServiceFunctionArn",
    "CheckDeploymentFunctionArn",
}


# ---------------------------------------------------------------- intrinsic evaluation
REFS, ATTRS, _PSEUDO = physical_resources(
    Template(ROOT, T), account=ACCOUNT, region=REGION, environment="test", parameters=PARAMS
)
evaluate = Resolver(REFS, ATTRS, PSEUDO).resolve  # the sandbox's own resolver, against the sample deployment


def _name_of(logical_id: str) -> str:
    return ATTRS.get((logical_id, "Name")) or ATTRS.get((logical_id, "QueueName")) or REFS[logical_id]


# ---------------------------------------------------------------- policies
def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# The SAM policy templates this template uses, as aws-sam-translator defines them
# (samtranslator/policy_templates_data/policy_templates.json; checked below
# against the installed translator when one can be found).
POLICY_TEMPLATES = {
    "LambdaInvokePolicy": {
        "Statement": [
            {
                "Action": ["lambda:InvokeFunction"],
                "Effect": "Allow",
                "Resource": {
                    "Fn::Sub": [
                        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${functionName}*",
                        {"functionName": {"Ref": "FunctionName"}},
                    ]
                },
            }
        ]
    },
    "StepFunctionsExecutionPolicy": {
        "Statement": [
            {
                "Action": ["states:StartExecution"],
                "Effect": "Allow",
                "Resource": {
                    "Fn::Sub": [
                        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${stateMachineName}",
                        {"stateMachineName": {"Ref": "StateMachineName"}},
                    ]
                },
            }
        ]
    },
}


def expand_policy_template(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """A policy template's statements with its parameters put in, as SAM does."""
    assert name in POLICY_TEMPLATES, f"policy template {name} is not known to this test: add its definition"

    def put(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in params:
                return params[value["Ref"]]
            return {k: put(v) for k, v in value.items()}
        if isinstance(value, list):
            return [put(v) for v in value]
        return value

    return put(POLICY_TEMPLATES[name]["Statement"])


MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::IAM::ManagedPolicy"
}


def attached_managed_policy(policy: dict[str, Any]) -> str:
    """The logical id of the template's managed policy an entry of Policies attaches.

    SAM puts the entry's value, the policy's ARN, in the role's ManagedPolicyArns:
    it is resolved, then matched against the ARNs of the template's managed policies.
    """
    arns = {evaluate({"Ref": k}): k for k in MANAGED_POLICIES}
    arn = evaluate(policy)
    assert arn in arns, f"{policy} in Policies is not a managed policy of this template"
    return arns[arn]


def role_policies(logical_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """What a function's or state machine's role is given, in the order of its Policies: (source, statements).

    The source is the attached managed policy's logical id, the policy template's
    name, or Policies[i] for statements of its own.
    """
    out = []
    for index, policy in enumerate(_as_list(RESOURCES[logical_id]["Properties"].get("Policies", []))):
        assert isinstance(policy, dict), (
            f"{logical_id}: managed policy {policy!r}: use statements, policy templates "
            "or a managed policy of this template (!Ref)"
        )
        if "Statement" in policy:
            out.append((f"Policies[{index}]", _as_list(policy["Statement"])))
        elif set(policy) == {"Ref"}:
            name = attached_managed_policy(policy)
            out.append((name, _as_list(MANAGED_POLICIES[name]["Properties"]["PolicyDocument"]["Statement"])))
        else:
            ((name, params),) = policy.items()
            out.append((name, expand_policy_template(name, params)))
    return out


def statements(logical_id: str) -> list[dict[str, Any]]:
    """Every statement of a function's or state machine's role: its Policies' statements, policy templates
    expanded, and those of the managed policies its Policies attach."""
    return [st for _, found in role_policies(logical_id) for st in found]


def actions_of(statement: dict[str, Any]) -> list[str]:
    return _as_list(statement["Action"])


def resources_of(statement: dict[str, Any]) -> list[str]:
    resolved = evaluate(statement["Resource"])
    flat: list[str] = []
    for item in _as_list(resolved):
        flat.extend(_as_list(item))
    return flat


def granted(logical_id: str) -> dict[str, list[str]]:
    """action -> resources (evaluated) over the Allow statements."""
    out: dict[str, list[str]] = {}
    for st in statements(logical_id):
        assert st.get("Effect") == "Allow"
        for action in actions_of(st):
            out.setdefault(action, []).extend(resources_of(st))
    return out


def all_policy_owners() -> list[str]:
    return [
        k for k, v in RESOURCES.items() if v["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
    ]


def iam_matches(pattern: str, arn: str) -> bool:
    """IAM resource matching: * and ? wildcards, case-sensitive."""
    return fnmatch.fnmatchcase(arn, pattern)


# ---------------------------------------------------------------- functions and roles
def test_the_functions_exist_with_their_code_dirs_and_handlers():
    found = {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
    assert {k: p["CodeUri"] for k, p in found.items()} == FUNCTIONS
    # The handler is set once, in Globals; the sandbox reads it from there too.
    assert T["Globals"]["Function"]["Handler"] == "app.handler"
    for logical_id, function in Template(ROOT, T).functions().items():
        assert function.handler == "app.handler", logical_id
        assert (ROOT / function.code_uri / "app.py").is_file(), f"{logical_id}: {function.code_uri}app.py is missing"


def test_every_function_gets_its_own_generated_role_with_policies():
    for logical_id in FUNCTIONS:
        props = RESOURCES[logical_id]["Properties"]
        assert "Role" not in props, f"{logical_id}: a shared or hand-made Role defeats per-function least privilege"
        assert statements(logical_id), f"{logical_id} has no Policies"
    assert "Role" not in T.get("Globals", {}).get("Function", {})
    assert "Policies" not in T.get("Globals", {}).get("Function", {})


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_each_function_is_granted_exactly_what_its_step_calls(logical_id):
    assert set(granted(logical_id)) == EXPECTED_ACTIONS[logical_id]


def test_managed_policies_are_attached_only_through_the_functions_policies():
    users: dict[str, list[str]] = {name: [] for name in MANAGED_POLICIES}
    for logical_id in all_policy_owners():
        attached = [source for source, _ in role_policies(logical_id) if source in MANAGED_POLICIES]
        assert len(attached) == len(set(attached)), f"{logical_id} attaches a managed policy twice"
        for name in attached:
            users[name].append(logical_id)
    for name, resource in MANAGED_POLICIES.items():
        props = resource["Properties"]
        # Attached anywhere else, its statements would escape the tests above (and scripts/check-iam).
        assert not {"Roles", "Users", "Groups"} & set(props), f"{name}: attach it through a function's Policies"
        assert "Condition" not in resource, name
        # A named IAM resource would need CAPABILITY_NAMED_IAM; samconfig.toml grants CAPABILITY_IAM.
        assert "ManagedPolicyName" not in props, name
        assert props.get("Description"), f"{name}: say what it allows"
        assert props["PolicyDocument"]["Version"] == "2012-10-17", name
        assert users[name], f"{name} is attached to no function: remove it"


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_each_role_stays_within_the_managed_policy_quota(logical_id):
    # IAM attaches at most 10 managed policies to a role (the default quota), and
    # SAM attaches AWSLambdaBasicExecutionRole to each function's role.
    attached = [source for source, _ in role_policies(logical_id) if source in MANAGED_POLICIES]
    assert len(attached) + 1 <= 10, f"{logical_id}: {attached}"


def test_only_the_managed_policies_build_arns_from_the_clusters():
    # Each per-cluster ARN list (and ecs:cluster condition) is written in the
    # managed policy that grants it, not in each function that needs it.
    for logical_id in all_policy_owners():
        for source, found in role_policies(logical_id):
            if source not in MANAGED_POLICIES:
                assert '{"Ref": "Clusters"}' not in json.dumps(found), (
                    f"{logical_id} {source}: grant what the clusters allow through a managed policy"
                )


@pytest.mark.parametrize("logical_id", all_policy_owners())
def test_no_action_is_wildcarded(logical_id):
    for st in statements(logical_id):
        for action in actions_of(st):
            assert "*" not in action and "?" not in action, f"{logical_id}: wildcard action {action}"
        assert "NotAction" not in st and "NotResource" not in st, logical_id


@pytest.mark.parametrize("logical_id", all_policy_owners())
def test_star_resource_only_for_actions_without_resource_level_permissions(logical_id):
    for st in statements(logical_id):
        resources = resources_of(st)
        if "*" in resources:
            assert resources == ["*"], f"{logical_id}: '*' mixed with other resources in {st.get('Sid')}"
            extra = set(actions_of(st)) - STAR_ONLY_ACTIONS
            if extra == {"ecs:ListTasks"}:  # authorised on container instances; ecs:cluster pins the cluster
                assert sorted(evaluate(st["Condition"])["ArnLike"]["ecs:cluster"]) == sorted(
                    f"arn:*:ecs:*:*:cluster/{c}" for c in CLUSTERS
                ), logical_id
                continue
            assert not extra, f"{logical_id}: {sorted(extra)} granted on '*' but support resource-level permissions"
        for resource in resources:
            assert resource == "*" or resource.count(":") >= 5, f"{logical_id}: {resource} is not an ARN"


def test_star_only_actions_really_have_no_resource_types_in_cfn_lint_iam_data():
    """Cross-checks STAR_ONLY_ACTIONS against the IAM data cfn-lint ships (from the policy generator)."""
    cfnlint = pytest.importorskip("cfnlint")
    data = json.loads((Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json").read_text())
    for action in sorted(STAR_ONLY_ACTIONS):
        service, name = action.split(":")
        actions = {k.lower(): v for k, v in data[service]["Actions"].items()}
        assert name.lower() in actions, f"{action} unknown to cfn-lint's IAM data"
        assert not actions[name.lower()].get("Resources"), f"{action} supports resource types: do not grant it on '*'"


def test_each_star_resource_is_explained_by_a_comment_in_the_template():
    lines = TEMPLATE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() != 'Resource: "*"' or "Principal" in lines[index - 1]:
            continue
        # Walk up to the statement's first line, then collect the comments above it.
        indent = len(line) - len(line.lstrip())
        start = index
        while not (
            lines[start].lstrip().startswith("- ") and len(lines[start]) - len(lines[start].lstrip()) == indent - 2
        ):
            start -= 1
        comments = []
        cursor = start - 1
        while cursor >= 0 and (lines[cursor].lstrip().startswith("#") or lines[cursor].strip() == "- Statement:"):
            comments.append(lines[cursor])
            cursor -= 1
        assert any('"*"' in c for c in comments), (
            f'template.yaml:{index + 1}: Resource "*" without a comment saying why'
        )


def test_passrole_only_to_ecs_tasks():
    holders = []
    for logical_id in all_policy_owners():
        for st in statements(logical_id):
            if "iam:PassRole" in actions_of(st):
                holders.append(logical_id)
                assert actions_of(st) == ["iam:PassRole"], "keep PassRole in a statement of its own"
                assert st.get("Condition") == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
                for resource in resources_of(st):
                    assert resource.startswith(f"arn:{PARTITION}:iam::{ACCOUNT}:role/"), resource
    assert sorted(holders) == ["CanaryFunction", "MigrateFunction", "RegisterFunction"]


def test_ecs_service_actions_are_limited_to_the_allowed_clusters():
    for logical_id in FUNCTIONS:
        for st in statements(logical_id):
            scoped = set(actions_of(st)) & ECS_CLUSTER_SCOPED
            if not scoped:
                continue
            resources = resources_of(st)
            assert evaluate(st.get("Condition")) == {"StringEquals": {"aws:RequestedRegion": REGION}}, logical_id
            clusters_seen = set()
            for pattern in resources:
                m = re.fullmatch(r"arn:[^:]+:ecs:[^:]+:[^:]+:(service|service-deployment)/([A-Za-z0-9_-]+)/\*", pattern)
                assert m, f"{logical_id}: {pattern} is not a per-cluster service ARN pattern"
                clusters_seen.add(m.group(2))
            assert clusters_seen == set(CLUSTERS), f"{logical_id}: {sorted(scoped)} on {resources}"
            for cluster in CLUSTERS:
                for kind, tail in (("service", "web"), ("service-deployment", "web/abc123")):
                    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:{kind}/{cluster}/{tail}"
                    if any(p.split(":")[5].startswith(kind + "/") for p in resources):
                        assert any(iam_matches(p, arn) for p in resources), arn
            for outsider in ("prod", "dev2", "blue_team-x", "*"):
                for kind, tail in (("service", "web"), ("service-deployment", "web/abc123")):
                    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:{kind}/{outsider}/{tail}"
                    assert not any(iam_matches(p, arn) for p in resources), f"{logical_id} reaches {arn}"


def test_every_ecs_action_is_either_cluster_scoped_task_definition_scoped_or_star_only():
    for logical_id in FUNCTIONS:
        for st in statements(logical_id):
            for action in actions_of(st):
                if not action.startswith("ecs:"):
                    continue
                if action in ECS_CLUSTER_SCOPED or action in STAR_ONLY_ACTIONS:
                    continue
                if action == "ecs:DescribeClusters":
                    assert actions_of(st) == [action]
                    assert sorted(resources_of(st)) == sorted(f"arn:*:ecs:*:*:cluster/{c}" for c in CLUSTERS)
                    assert evaluate(st.get("Condition")) == {"StringEquals": {"aws:RequestedRegion": REGION}}
                    continue
                cluster_arns = sorted(f"arn:*:ecs:*:*:cluster/{c}" for c in CLUSTERS)
                if action in ("ecs:RunTask", "ecs:ListTasks"):  # pinned to the allowed clusters by ecs:cluster
                    assert actions_of(st) == [action]
                    assert sorted(evaluate(st["Condition"])["ArnLike"]["ecs:cluster"]) == cluster_arns, logical_id
                    expected = (
                        ["*"]
                        if action == "ecs:ListTasks"
                        else [f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task-definition/*"]
                    )
                    assert resources_of(st) == expected
                    continue
                if action in ("ecs:DescribeTasks", "ecs:StopTask"):
                    assert sorted(resources_of(st)) == sorted(f"arn:*:ecs:*:*:task/{c}/*" for c in CLUSTERS), logical_id
                    assert evaluate(st.get("Condition")) == {"StringEquals": {"aws:RequestedRegion": REGION}}
                    continue
                assert action in ("ecs:RegisterTaskDefinition", "ecs:TagResource"), f"{logical_id}: unexpected {action}"
                if action == "ecs:TagResource":
                    creator = st["Condition"]["StringEquals"]["ecs:CreateAction"]
                    kind = {"RegisterTaskDefinition": "task-definition", "RunTask": "task"}[creator]
                    assert resources_of(st) == [f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:{kind}/*"]
                else:
                    assert resources_of(st) == [f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task-definition/*"]


def test_ecs_clusters_parameter_refuses_wildcards_and_arns():
    pattern = T["Parameters"]["Clusters"]["AllowedPattern"]
    assert T["Parameters"]["Clusters"]["Type"] == "CommaDelimitedList"
    for good in ("dev", "blue_team", "prod-eu-1"):
        assert re.fullmatch(pattern, good)
    for bad in ("*", "dev*", "arn:aws:ecs:us-east-1:123456789012:cluster/dev", "a/b", ""):
        assert not re.fullmatch(pattern, bad), bad


def test_s3_access_is_per_bucket_and_prefix():
    config, artefacts = _name_of("ConfigBucket"), _name_of("ArtefactsBucket")
    router, render, update = granted("RouterFunction"), granted("RenderFunction"), granted("UpdateServiceFunction")
    assert sorted(router["s3:GetObject"]) == [f"arn:aws:s3:::{config}/manifests/*", f"arn:aws:s3:::{config}/services/*"]
    assert router["s3:ListBucket"] == [f"arn:aws:s3:::{config}"]
    assert router["s3:PutObject"] == [f"arn:aws:s3:::{config}/manifests/*.result.json"]
    assert render["s3:GetObject"] == [f"arn:aws:s3:::{config}/services/*"]
    assert render["s3:PutObject"] == [f"arn:aws:s3:::{artefacts}/*"]
    assert update["s3:PutObject"] == [f"arn:aws:s3:::{artefacts}/*"]
    # The functions that judge failed migrations and canaries write their log tails, and nothing else.
    for name in ("MigrateFunction", "TaskStoppedFunction", "CanaryFunction"):
        assert granted(name)["s3:PutObject"] == [f"arn:aws:s3:::{artefacts}/executions/*/logs/*"], name
    list_statement = next(st for st in statements("RouterFunction") if "s3:ListBucket" in actions_of(st))
    assert list_statement["Condition"] == {"StringLike": {"s3:prefix": ["services/*", "manifests/*"]}}


def test_secret_values_are_never_readable():
    for logical_id in all_policy_owners():
        for action in granted(logical_id):
            assert action not in ("secretsmanager:GetSecretValue", "kms:Decrypt"), logical_id


def test_only_an_opted_in_stack_lets_verify_read_secret_values():
    policy = RESOURCES["VerifyReadSecretValuesPolicy"]
    assert policy["Condition"] == "VerifyMayReadSecretValues"
    assert T["Conditions"]["VerifyMayReadSecretValues"] == {"Fn::Equals": [{"Ref": "VerifyReadsSecretValues"}, "true"]}
    assert T["Parameters"]["VerifyReadsSecretValues"]["Default"] == "false"
    assert policy["Properties"]["Roles"] == [{"Ref": "VerifyFunctionRole"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    others = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::IAM::Policy"]
    assert sorted(others) == ["ExecutionEndedPublishNotificationsPolicy", "VerifyReadSecretValuesPolicy"]


def test_lock_router_and_state_machine_resources():
    lock = granted("LockFunction")
    sm_name = _name_of("DeployStateMachine")
    for action in EXPECTED_ACTIONS["LockFunction"] - {
        "states:DescribeExecution",
        "s3:GetObject",
        "s3:ListBucket",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    }:
        assert lock[action] == [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{_name_of('LockTable')}"]
    assert lock["states:DescribeExecution"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:*"]
    router = granted("RouterFunction")
    assert router["states:StartExecution"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{sm_name}"]
    assert router["states:DescribeExecution"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:*"]
    assert router["ecr:DescribeImages"] == [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/*"]


def test_state_machine_invokes_exactly_the_step_functions():
    invoke = granted("DeployStateMachine")
    steps = (
        "LockFunction",
        "RenderFunction",
        "VerifyFunction",
        "RegisterFunction",
        "MigrateFunction",
        "RollbackFunction",
        "BakeFunction",
        "CanaryFunction",
        "UpdateServiceFunction",
        "CheckDeploymentFunction",
    )
    # LambdaInvokePolicy grants function:<name>* (the function, its versions and aliases).
    assert sorted(invoke["lambda:InvokeFunction"]) == sorted(
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{_name_of(fn)}*" for fn in steps
    )
    assert set(invoke) - {"lambda:InvokeFunction"} <= STAR_ONLY_ACTIONS
    # ...so no function name may be a prefix of another's, or the state machine
    # could invoke the router.
    names = [_name_of(fn) for fn in FUNCTIONS]
    for pattern in invoke["lambda:InvokeFunction"]:
        reached = [n for n in names if iam_matches(pattern, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{n}")]
        assert len(reached) == 1, f"{pattern} reaches {reached}"


def _installed_policy_templates() -> Path | None:
    import importlib.util as util
    import os

    candidates = []
    spec = util.find_spec("samtranslator")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent)
    sam = os.environ.get("SAM")
    venvs = [ROOT / ".venv-sam"] + ([Path(sam).resolve().parent.parent] if sam else [])
    for venv in venvs:
        candidates.extend(venv.glob("lib/python3*/site-packages/samtranslator"))
    for candidate in candidates:
        path = candidate / "policy_templates_data" / "policy_templates.json"
        if path.is_file():
            return path
    return None


def test_policy_template_definitions_match_the_installed_sam_translator():
    path = _installed_policy_templates()
    if path is None:
        pytest.skip("aws-sam-translator not found (install .venv-sam or set SAM)")
    installed = json.loads(path.read_text())["Templates"]
    for name, definition in POLICY_TEMPLATES.items():
        assert installed[name]["Definition"] == definition, name


def _event_driven_functions() -> list[str]:
    return [
        fn
        for fn in FUNCTIONS
        if any(e["Type"] == "EventBridgeRule" for e in (RESOURCES[fn]["Properties"].get("Events") or {}).values())
    ]


def test_events_a_function_failed_on_go_to_the_dead_letter_queue():
    # EventBridge invokes these asynchronously: once Lambda has taken the event,
    # the rule's retry policy and dead-letter queue no longer apply, and after
    # Lambda's own retries only the function's OnFailure destination keeps it.
    assert sorted(_event_driven_functions()) == [
        "BakeFunction",
        "CheckDeploymentFunction",
        "ExecutionEndedFunction",
        "RouterFunction",
        "TaskStoppedFunction",
    ]
    for logical_id in _event_driven_functions():
        config = RESOURCES[logical_id]["Properties"].get("EventInvokeConfig")
        assert config, f"{logical_id}: events it fails on would be dropped silently"
        assert config["DestinationConfig"]["OnFailure"] == {
            "Type": "SQS",
            "Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]},
        }, logical_id
        assert config["MaximumRetryAttempts"] >= 1, logical_id


# ---------------------------------------------------------------- globals, layer, state machine
def test_globals():
    g = T["Globals"]["Function"]
    assert g["Runtime"] == "python3.12"
    assert g["Architectures"] == ["arm64"]
    assert g["Timeout"] == 60 and g["MemorySize"] == 256
    assert g["Layers"] == [{"Ref": "FerryLayer"}]
    assert g["Tracing"] == "Disabled"
    assert g["Environment"]["Variables"] == {
        "FERRY_ENVIRONMENT": {"Ref": "EnvironmentName"},
        "CONFIG_BUCKET": {"Ref": "ConfigBucket"},
        "ARTEFACTS_BUCKET": {"Ref": "ArtefactsBucket"},
        "LOCK_TABLE": {"Ref": "LockTable"},
        "ALLOWED_CLUSTERS": {"Fn::Join": [",", {"Ref": "Clusters"}]},
        "POWERTOOLS_SERVICE_NAME": "ferry",
        "POWERTOOLS_METRICS_NAMESPACE": "Ferry",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    }
    assert evaluate(g["Environment"]["Variables"]["ALLOWED_CLUSTERS"]) == "dev,blue_team"
    router_env = RESOURCES["RouterFunction"]["Properties"]["Environment"]["Variables"]
    assert router_env == {"STATE_MACHINE_ARN": {"Ref": "DeployStateMachine"}}


def test_layer():
    layer = RESOURCES["FerryLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/ferry/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    # Built by layers/ferry/Makefile, which ships the layer with bytecode (SAM's python3.12 builder ships none)
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    makefile = (ROOT / "layers/ferry/Makefile").read_text()
    assert "\nbuild-FerryLayer:" in makefile
    assert "--require-hashes" in makefile and "--invalidation-mode unchecked-hash" in makefile
    assert (ROOT / "layers/ferry/requirements.txt").is_file()
    assert (ROOT / "layers/ferry/ferry/__init__.py").is_file()


def test_state_machine():
    sm = RESOURCES["DeployStateMachine"]
    assert sm["Type"] == "AWS::Serverless::StateMachine"
    props = sm["Properties"]
    assert props["Type"] == "STANDARD"
    assert props["DefinitionUri"] == "statemachine/deploy.asl.json"
    assert evaluate(props["Name"]) == "ferry-test-deploy"
    subs = props["DefinitionSubstitutions"]
    assert set(subs) == SUBSTITUTION_KEYS
    for key in sorted(SUBSTITUTION_KEYS):
        assert subs[key] == {"Fn::GetAtt": [key.removesuffix("Arn"), "Arn"]}
    logging = props["Logging"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is True
    (destination,) = logging["Destinations"]
    log_group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert _name_of(log_group) == "/aws/vendedlogs/states/ferry-test-deploy"
    assert sum(1 for v in RESOURCES.values() if v["Type"] == "AWS::Serverless::StateMachine") == 1


def _asl_files() -> list[Path]:
    return sorted((ROOT / "statemachine").glob("*.asl.json"))


def test_definition_substitutions_cover_exactly_the_keys_the_asl_uses():
    assert _asl_files(), "no statemachine/*.asl.json"
    used = set()
    for path in _asl_files():
        used |= asl_substitute.keys_used(path.read_text())
    defined = set(RESOURCES["DeployStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert not used - defined, f"the ASL uses undefined keys: {sorted(used - defined)}"
    assert not defined - used, f"DefinitionSubstitutions no ASL file uses: {sorted(defined - used)}"


def test_asl_substitute_leaves_no_placeholder_in_the_real_asl(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SUBSTITUTE), "--template", str(TEMPLATE), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    written = [Path(p) for p in result.stdout.split()]
    assert {p.name for p in written} == {p.name for p in _asl_files()}
    for path in written:
        text = path.read_text()
        assert "${" not in text, path.name
        definition = json.loads(text)
        assert definition["StartAt"] in definition["States"]


def test_asl_substitute_names_an_undefined_key(tmp_path):
    (tmp_path / "statemachine").mkdir()
    (tmp_path / "template.yaml").write_text(TEMPLATE.read_text())
    asl = json.loads((ROOT / "statemachine/deploy.asl.json").read_text())
    asl["Comment"] = "uses ${NoSuchKey}"
    (tmp_path / "statemachine/deploy.asl.json").write_text(json.dumps(asl))
    result = subprocess.run(
        [
            sys.executable,
            str(SUBSTITUTE),
            "--template",
            str(tmp_path / "template.yaml"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "${NoSuchKey}" in result.stderr and "deploy.asl.json" in result.stderr


# ---------------------------------------------------------------- events
# Only the stack's own account: a foreign push or drop must not deploy (tests/statemachine/test_triggers.py).
ECR_PATTERN = {
    "source": ["aws.ecr"],
    "account": [{"Ref": "AWS::AccountId"}],
    "detail-type": ["ECR Image Action"],
    "detail": {"action-type": ["PUSH"], "result": ["SUCCESS"]},
}
S3_PATTERN = {
    "source": ["aws.s3"],
    "account": [{"Ref": "AWS::AccountId"}],
    "detail-type": ["Object Created"],
    "detail": {"bucket": {"name": [{"Ref": "ConfigBucket"}]}, "object": {"key": [{"prefix": "manifests/"}]}},
}


def test_router_rules_have_the_patterns_retry_and_dead_letter_queue():
    events = RESOURCES["RouterFunction"]["Properties"]["Events"]
    assert set(events) == {"EcrPush", "ManifestDropped"}
    assert events["EcrPush"]["Properties"]["Pattern"] == ECR_PATTERN
    assert events["ManifestDropped"]["Properties"]["Pattern"] == S3_PATTERN
    for name, event in events.items():
        assert event["Type"] == "EventBridgeRule", name
        props = event["Properties"]
        assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}, name
    # The only other event targets: task-stopped, execution-ended, bake (alarms), check-deployment (ECS
    # deployments); and the reaper's schedule (test_the_reaper_runs_every_five_minutes_with_scheduler_s_context).
    for logical_id in FUNCTIONS:
        if logical_id not in (
            "RouterFunction",
            "TaskStoppedFunction",
            "ExecutionEndedFunction",
            "BakeFunction",
            "CheckDeploymentFunction",
            "ReaperFunction",
        ):
            assert not RESOURCES[logical_id]["Properties"].get("Events"), logical_id


def test_stopped_ferry_tasks_reach_the_task_stopped_function():
    [(name, event)] = RESOURCES["TaskStoppedFunction"]["Properties"]["Events"].items()
    assert event["Type"] == "EventBridgeRule"
    props = event["Properties"]
    assert props["Pattern"] == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"lastStatus": ["STOPPED"], "startedBy": [{"prefix": "ferry-"}]},
    }
    assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_dead_letter_queue_is_encrypted_and_accepts_only_ferrys_rules():
    queue = RESOURCES["EventsDeadLetterQueue"]["Properties"]
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue
    policy = next(
        v["Properties"]
        for v in RESOURCES.values()
        if v["Type"] == "AWS::SQS::QueuePolicy" and v["Properties"]["Queues"] == [{"Ref": "EventsDeadLetterQueue"}]
    )
    allow = [st for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert len(allow) == 1
    assert allow[0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow[0]["Action"] == "sqs:SendMessage"
    sources = evaluate(allow[0]["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert sorted(s.rsplit("/", 1)[1] for s in sources) == [
        "ferry-test-alarm-fired",
        "ferry-test-deployment-changed",
        "ferry-test-ecr-push",
        "ferry-test-execution-ended",
        "ferry-test-manifest-dropped",
        "ferry-test-task-stopped",
    ]
    # ...which are exactly the rules that dead-letter to it: a rule missing here
    # would have its undeliverable events refused by the queue.
    dead_lettering = [
        evaluate({"Fn::GetAtt": [f"{fn}{name}", "Arn"]})
        for fn in FUNCTIONS
        for name, event in (RESOURCES[fn]["Properties"].get("Events") or {}).items()
        if event["Type"] == "EventBridgeRule"
        and event["Properties"].get("DeadLetterConfig") == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    ]
    assert sorted(sources) == sorted(dead_lettering)


# ---------------------------------------------------------------- storage
def _bucket_policy_statements(bucket: str) -> list[dict[str, Any]]:
    policies = [
        v["Properties"]
        for v in RESOURCES.values()
        if v["Type"] == "AWS::S3::BucketPolicy" and v["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(policies) == 1, f"{bucket} needs exactly one bucket policy"
    return policies[0]["PolicyDocument"]["Statement"]


def test_the_buckets_and_tables_are_the_ones_checked_here():
    # A new bucket or table must be added to the storage tests below.
    assert sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::S3::Bucket") == [
        "ArtefactsBucket",
        "ConfigBucket",
    ]
    assert [k for k, v in RESOURCES.items() if v["Type"] == "AWS::DynamoDB::Table"] == ["LockTable"]


@pytest.mark.parametrize("bucket", ["ConfigBucket", "ArtefactsBucket"])
def test_buckets_are_encrypted_private_owner_enforced_and_tls_only(bucket):
    props = RESOURCES[bucket]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    tls = [
        st
        for st in _bucket_policy_statements(bucket)
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert tls, f"{bucket}: no Deny on aws:SecureTransport=false"
    (st,) = tls
    assert st["Principal"] == "*" and st["Action"] == "s3:*"
    arn = f"arn:aws:s3:::{_name_of(bucket)}"
    assert sorted(evaluate(st["Resource"])) == [arn, arn + "/*"]


def test_config_bucket_is_versioned_and_sends_events_to_eventbridge():
    props = RESOURCES["ConfigBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_artefacts_expire_after_90_days():
    rules = RESOURCES["ArtefactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(
        r["Status"] == "Enabled" and r.get("ExpirationInDays") == 90 and "Prefix" not in r and "Filter" not in r
        for r in rules
    )


def test_lock_table():
    table = RESOURCES["LockTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


# ---------------------------------------------------------------- logs
def test_every_log_group_has_a_retention():
    groups = {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::Logs::LogGroup"}
    assert len(groups) == len(FUNCTIONS) + 1
    for logical_id, props in groups.items():
        assert props.get("RetentionInDays") == {"Ref": "LogRetentionDays"}, logical_id
    assert T["Parameters"]["LogRetentionDays"]["Type"] == "Number"
    assert T["Parameters"]["LogRetentionDays"]["Default"] == 30


@pytest.mark.parametrize("logical_id", list(FUNCTIONS))
def test_each_function_logs_to_its_own_group_named_after_it(logical_id):
    props = RESOURCES[logical_id]["Properties"]
    group = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert _name_of(group) == f"/aws/lambda/{_name_of(logical_id)}"
    others = [
        fn
        for fn in FUNCTIONS
        if fn != logical_id and RESOURCES[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] == group
    ]
    assert not others, f"{logical_id} shares its log group with {others}"


# ---------------------------------------------------------------- outputs and samconfig
def test_outputs():
    outputs = T["Outputs"]
    assert outputs["StateMachineArn"]["Value"] == {"Ref": "DeployStateMachine"}
    assert outputs["ConfigBucketName"]["Value"] == {"Ref": "ConfigBucket"}
    assert outputs["ArtefactsBucketName"]["Value"] == {"Ref": "ArtefactsBucket"}
    assert outputs["LockTableName"]["Value"] == {"Ref": "LockTable"}


def test_samconfig():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    assert config["default"]["build"]["parameters"]["cached"] is True
    assert config["default"]["build"]["parameters"]["parallel"] is True
    assert config["default"]["validate"]["parameters"]["lint"] is True
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["stack_name"] == "ferry-dev"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is True
    assert "EnvironmentName=dev" in deploy["parameter_overrides"] and "Clusters=dev" in deploy["parameter_overrides"]
    assert "EnvironmentName=prod" in config["prod"]["deploy"]["parameters"]["parameter_overrides"]


def test_ended_deploy_executions_reach_the_execution_ended_function():
    [(name, event)] = RESOURCES["ExecutionEndedFunction"]["Properties"]["Events"].items()
    props = event["Properties"]
    assert props["Pattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
            "stateMachineArn": [{"Ref": "DeployStateMachine"}],
        },
    }
    assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    granted_s3 = granted("ExecutionEndedFunction")
    config = _name_of("ConfigBucket")
    assert sorted(granted_s3["s3:PutObject"]) == [f"arn:aws:s3:::{config}/manifests/*.result.json"], name


def test_alarms_entering_alarm_reach_the_bake_function():
    [(name, event)] = RESOURCES["BakeFunction"]["Properties"]["Events"].items()
    assert event["Properties"]["Pattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"state": {"value": ["ALARM"]}},
    }
    assert event["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    assert granted("BakeFunction")["cloudwatch:DescribeAlarms"] == [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"]


# ---------------------------------------------------------------- notifications, metrics, dashboard, alarm
def test_deploy_events_go_to_the_default_bus_only_with_source_ferry():
    from ferry.lifecycle import notify

    [statement] = [st for st in statements("ExecutionEndedFunction") if "events:PutEvents" in actions_of(st)]
    assert actions_of(statement) == ["events:PutEvents"]
    assert resources_of(statement) == [f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"]
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {
            "events:source": [notify.SOURCE],
            "events:detail-type": [notify.STARTED, notify.ENDED],
        }
    }
    history = granted("ExecutionEndedFunction")["states:GetExecutionHistory"]
    assert history == [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{_name_of('DeployStateMachine')}:*"]
    for logical_id in all_policy_owners():  # nobody else puts events or publishes (the reaper: its own event)
        if logical_id not in ("ExecutionEndedFunction", "ReaperFunction"):
            assert not {"events:PutEvents", "sns:Publish"} & set(granted(logical_id)), logical_id
    assert "sns:Publish" not in granted("ReaperFunction")


def test_sns_publish_only_to_the_topics_the_stack_names_and_only_when_it_names_some():
    policy = RESOURCES["ExecutionEndedPublishNotificationsPolicy"]
    assert policy["Condition"] == "MayPublishToTopics"
    assert T["Conditions"]["MayPublishToTopics"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "NotificationTopicArns"}]}, ""]}]
    }
    assert policy["Properties"]["Roles"] == [{"Ref": "ExecutionEndedFunctionRole"}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sns:Publish")
    assert statement["Resource"] == {"Ref": "NotificationTopicArns"}
    parameter = T["Parameters"]["NotificationTopicArns"]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "")
    pattern = parameter["AllowedPattern"]
    for good in ("", "arn:aws:sns:us-east-1:123456789012:deploys", "arn:aws:sns:eu-west-1:123456789012:team-*"):
        assert re.fullmatch(pattern, good), good
    for bad in ("*", "arn:aws:sns:*:*:*", "arn:aws:sqs:us-east-1:123456789012:q", "deploys"):
        assert not re.fullmatch(pattern, bad), bad


def _dashboard() -> dict[str, Any]:
    return json.loads(evaluate(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))


def test_the_failed_rollback_alarm_watches_exactly_what_the_metrics_module_emits():
    from ferry.lifecycle import metrics, notify

    alarm = RESOURCES["FailedRollbackAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (metrics.NAMESPACE, metrics.DEPLOYS)
    dimensions = {d["Name"]: evaluate(d["Value"]) for d in alarm["Dimensions"]}
    assert dimensions == {metrics.ENVIRONMENT: "test", metrics.RESULT: metrics.RESULTS["ROLLBACK_FAILED"]}
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == {"Fn::If": ["AlarmHasTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert T["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert T["Conditions"]["AlarmHasTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    # What the code writes for a failed rollback carries this metric with exactly these dimensions.
    execution = notify.Execution(
        name="web-v2-1",
        arn="arn:aws:states:us-east-1:1:execution:d:web-v2-1",
        status="FAILED",
        request={"service": "web"},
        started_ms=0,
        stopped_ms=1000,
        error="RollbackFailed",
    )
    emitted = [
        (set(names), {n: doc[n] for n in names})
        for doc in metrics.documents(execution, environment="test")
        for directive in doc["_aws"]["CloudWatchMetrics"]
        if directive["Namespace"] == alarm["Namespace"]
        and alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
        for names in directive["Dimensions"]
    ]
    assert (set(dimensions), dimensions) in emitted


def test_the_dashboard_shows_only_metrics_and_dimension_sets_the_code_emits():
    from ferry.lifecycle import metrics, notify

    emitted: set[tuple[str, frozenset[str]]] = set()
    for error, history in (("RollbackFailed", ()), (None, ())):
        execution = notify.Execution(
            name="e",
            arn="arn:aws:states:us-east-1:1:execution:d:e",
            request={"service": "web"},
            status="FAILED" if error else "SUCCEEDED",
            started_ms=0,
            stopped_ms=1,
            error=error,
        )
        for doc in metrics.documents(execution, environment="test"):
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                assert directive["Namespace"] == metrics.NAMESPACE
                emitted |= {
                    (m["Name"], frozenset(names)) for m in directive["Metrics"] for names in directive["Dimensions"]
                }
    # The phase metrics share the Rollbacks document's dimensions.
    phase_sets = {names for name, names in emitted if name == metrics.ROLLBACKS}
    emitted |= {
        (name, names)
        for name in (
            metrics.CANARY_DURATION,
            metrics.ROLLOUT_DURATION,
            metrics.BAKE_DURATION,
            metrics.CANARY_HEALTH_WAIT,
        )
        for names in phase_sets
    }
    widgets = _dashboard()["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    assert {"Deploys by result", "Failures by error", "Duration of succeeded deploys (s)", "Rollbacks"} <= set(titles)
    used, previous = [], None
    for widget in widgets:
        props = widget["properties"]
        if widget["type"] == "alarm":
            assert props["alarms"] == [evaluate({"Fn::GetAtt": ["FailedRollbackAlarm", "Arn"]})]
            continue
        assert props["region"] == REGION
        for row in props["metrics"]:
            if isinstance(row[0], dict):  # SEARCH('{Namespace,dim,...} MetricName="..." environment="..."', ...)
                m = re.fullmatch(
                    r"SEARCH\('\{(\w+),([\w,]+)\} MetricName=\"(\w+)\" environment=\"test\"', 'Sum', \d+\)",
                    row[0]["expression"],
                )
                assert m, row[0]["expression"]
                assert m.group(1) == metrics.NAMESPACE
                used.append((m.group(3), frozenset(m.group(2).split(","))))
                continue
            if row[0] == "...":
                row = previous[:-1] + row[1:] if isinstance(previous[-1], dict) else previous + row[1:]
            previous = row
            namespace, name, *rest = [item for item in row if not isinstance(item, dict)]
            assert namespace == metrics.NAMESPACE
            dims = dict(zip(rest[::2], rest[1::2]))
            assert dims[metrics.ENVIRONMENT] == "test"
            if metrics.RESULT in dims:
                assert dims[metrics.RESULT] in metrics.RESULTS.values()
            used.append((name, frozenset(dims)))
    assert used and not set(used) - emitted, sorted(set(used) - emitted)


def test_the_dashboard_is_named_after_the_environment_and_linked_from_the_outputs():
    assert evaluate(RESOURCES["Dashboard"]["Properties"]["DashboardName"]) == "ferry-test"
    assert "#dashboards:name=" in T["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


# ---------------------------------------------------------------- the reaper
def test_the_reaper_runs_every_five_minutes_with_scheduler_s_context():
    [(name, event)] = RESOURCES["ReaperFunction"]["Properties"]["Events"].items()
    assert event["Type"] == "ScheduleV2"
    props = event["Properties"]
    assert props["ScheduleExpression"] == "rate(5 minutes)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert evaluate(props["Name"]) == "ferry-test-reaper"  # unique per installation: SAM's default name is not
    # The Input names only Scheduler's context attributes (managing-schedule-context-attributes.html).
    assert set(re.findall(r"<(aws\.scheduler\.[a-z-]+)>", props["Input"])) == {
        "aws.scheduler.schedule-arn",
        "aws.scheduler.scheduled-time",
        "aws.scheduler.execution-id",
        "aws.scheduler.attempt-number",
    }
    json.loads(props["Input"])
    # A failed pass is not retried, neither by Scheduler nor by Lambda: the next pass is five minutes later.
    assert props["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert RESOURCES["ReaperFunction"]["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert evaluate(RESOURCES["ReaperFunction"]["Properties"]["Environment"]["Variables"]["STATE_MACHINE_ARN"]) == (
        evaluate({"Ref": "DeployStateMachine"})
    )


def test_the_reaper_puts_only_its_own_event_and_reads_only_this_state_machine_s_executions():
    from ferry.lifecycle import notify, reaper

    [statement] = [st for st in statements("ReaperFunction") if "events:PutEvents" in actions_of(st)]
    assert actions_of(statement) == ["events:PutEvents"]
    assert resources_of(statement) == [f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"]
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"events:source": [notify.SOURCE], "events:detail-type": [reaper.CLEANED_UP]}
    }
    sm_name = _name_of("DeployStateMachine")
    reaper_grants = granted("ReaperFunction")
    assert reaper_grants["states:DescribeExecution"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:*"]
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{_name_of('LockTable')}"
    for action in ("dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert reaper_grants[action] == [table], action
    # Scan only where the journals are looked for: the reaper.
    assert [fn for fn in FUNCTIONS if "dynamodb:Scan" in granted(fn)] == ["ReaperFunction"]


def test_the_reaper_lists_services_of_the_allowed_clusters_only():
    [statement] = [st for st in statements("ReaperFunction") if "ecs:ListServices" in actions_of(st)]
    assert actions_of(statement) == ["ecs:ListServices"] and resources_of(statement) == ["*"]
    assert sorted(evaluate(statement["Condition"])["ArnLike"]["ecs:cluster"]) == sorted(
        f"arn:*:ecs:*:*:cluster/{c}" for c in CLUSTERS
    )
    assert [fn for fn in FUNCTIONS if "ecs:ListServices" in granted(fn)] == ["ReaperFunction"]


def test_the_steps_that_write_the_journal_may_update_the_lock_table():
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{_name_of('LockTable')}"
    for fn in ("CanaryFunction", "MigrateFunction", "UpdateServiceFunction", "LockFunction", "ExecutionEndedFunction"):
        grants = granted(fn)
        assert grants["dynamodb:GetItem"] == [table] and grants["dynamodb:UpdateItem"] == [table], fn


def test_the_reaper_alarm_watches_what_the_reaper_emits_three_passes_in_a_row():
    from ferry.lifecycle import metrics, reaper

    alarm = RESOURCES["ReaperKeepsFindingAlarm"]["Properties"]
    assert evaluate(alarm["AlarmName"]) == "ferry-test-reaper-keeps-finding"
    assert (alarm["Namespace"], alarm["MetricName"]) == (metrics.NAMESPACE, reaper.ORPHANED)
    dimensions = {d["Name"]: evaluate(d["Value"]) for d in alarm["Dimensions"]}
    assert dimensions == {metrics.ENVIRONMENT: "test"}
    # One data point a pass: five-minute periods, as often as the schedule runs; three of three breach.
    schedule = next(iter(RESOURCES["ReaperFunction"]["Properties"]["Events"].values()))["Properties"]
    assert schedule["ScheduleExpression"] == f"rate({alarm['Period'] // 60} minutes)"
    assert (alarm["Statistic"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == ("Sum", 3, 3)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"  # a pass that finds nothing writes nothing
    assert alarm["AlarmActions"] == RESOURCES["FailedRollbackAlarm"]["Properties"]["AlarmActions"]
    document = reaper.metric_document(reaper.Reaped(canary_tasks=1), environment="test")
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
    assert [set(names) for names in directive["Dimensions"]] == [set(dimensions)]
    assert {n: document[n] for n in dimensions} == dimensions


def test_an_event_in_the_dead_letter_queue_raises_an_alarm():
    alarm = RESOURCES["EventsDeadLetterQueueAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
