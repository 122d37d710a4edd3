import copy
import random

from ferry.taskdef import diff
from ferry.taskdef.diff import Diff

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
D1 = "sha256:" + "ab12cd34" * 8
D2 = "sha256:" + "ef56ab78" * 8
ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition"


def described(**changes):
    """A DescribeTaskDefinition `taskDefinition`, with the read-only fields and defaults ECS adds."""
    td = {
        "taskDefinitionArn": f"{ARN}/web:1",
        "family": "web",
        "revision": 1,
        "status": "ACTIVE",
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "compatibilities": ["EC2", "FARGATE"],
        "requiresAttributes": [{"name": "ecs.capability.secrets.asm.environment-variables"}],
        "registeredAt": "2024-05-01T10:00:00+00:00",
        "registeredBy": "arn:aws:iam::123456789012:role/ferry",
        "volumes": [],
        "placementConstraints": [],
        "containerDefinitions": [
            {
                "name": "app",
                "image": f"{REGISTRY}/web:v1@{D1}",
                "cpu": 0,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu"}],
                "secrets": [
                    {
                        "name": "DB_PASSWORD",
                        "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/db",
                    }
                ],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": [],
            },
            {
                "name": "nginx",
                "image": "public.ecr.aws/nginx/nginx:1.27",
                "cpu": 0,
                "essential": True,
                "portMappings": [],
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
            },
        ],
    }
    td.update(changes)
    return td


def registration(**changes):
    """The RegisterTaskDefinition input for the same revision: no read-only fields, no ECS defaults."""
    td = {
        "family": "web",
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {"name": "nginx", "image": "public.ecr.aws/nginx/nginx:1.27"},
            {
                "name": "app",
                "image": f"{REGISTRY}/web:v1@{D1}",
                "portMappings": [{"containerPort": 8080}],
                "environment": [{"name": "REGION", "value": "eu"}, {"name": "LOG_LEVEL", "value": "info"}],
                "secrets": [
                    {
                        "name": "DB_PASSWORD",
                        "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/db",
                    }
                ],
            },
        ],
    }
    td.update(changes)
    return td


def app(td):
    return next(c for c in td["containerDefinitions"] if c["name"] == "app")


def td_diff(current, new):
    return diff.task_definition_diff(current, new, current_label="web:1", new_label="web:2 (new)")


def test_no_changes_is_empty_text_and_says_so():
    result = td_diff(described(), registration())
    assert result == Diff(text="", summary="no changes", changes=[])


def test_ordering_noise_and_ecs_defaults_produce_no_diff():
    new = registration()
    app(new)["environment"].reverse()
    new["containerDefinitions"].reverse()
    shuffled = copy.deepcopy(new)
    random.Random(7).shuffle(app(shuffled)["environment"])
    current = described()
    app(current)["environment"].append({"name": "A_FIRST", "value": "1"})
    app(current)["environment"].reverse()
    app(shuffled)["environment"].insert(0, {"name": "A_FIRST", "value": "1"})
    assert td_diff(current, shuffled).text == ""
    assert td_diff(current, shuffled).summary == "no changes"
    # Key order inside objects is noise too.
    reordered = {k: shuffled[k] for k in reversed(list(shuffled))}
    assert td_diff(current, reordered).changes == []


def test_image_swap_only():
    new = registration()
    app(new)["image"] = f"{REGISTRY}/web:v2@{D2}"
    result = td_diff(described(), new)
    assert result.changes == ["image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…)"]
    assert result.summary == "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…)"
    assert result.text == (
        "--- web:1\n"
        "+++ web:2 (new)\n"
        "@@ -11,7 +11,7 @@\n"
        '           "value": "eu"\n'
        "         }\n"
        "       ],\n"
        f'-      "image": "{REGISTRY}/web:v1@{D1}",\n'
        f'+      "image": "{REGISTRY}/web:v2@{D2}",\n'
        '       "name": "app",\n'
        '       "portMappings": [\n'
        "         {\n"
    )


def test_image_labels_fall_back_to_the_raw_uri_outside_ecr():
    new = registration()
    next(c for c in new["containerDefinitions"] if c["name"] == "nginx")["image"] = "public.ecr.aws/nginx/nginx:1.28"
    app(new)["image"] = f"{REGISTRY}/web@{D2}"
    assert td_diff(described(), new).changes == [
        "image app web:v1 (sha256:ab12cd34…) -> web@sha256:ef56ab78…",
        "image nginx public.ecr.aws/nginx/nginx:1.27 -> public.ecr.aws/nginx/nginx:1.28",
    ]


def test_image_labels_from_the_caller_name_digest_pinned_uris_by_their_tag():
    new = registration()
    app(new)["image"] = f"{REGISTRY}/web@{D2}"
    result = diff.task_definition_diff(
        described(),
        new,
        current_label="web:1",
        new_label="web:(new)",
        image_labels={f"{REGISTRY}/web@{D2}": f"web:v2 ({D2[:15]}…)"},
    )
    assert result.summary == "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…)"


def test_env_var_added():
    new = registration()
    app(new)["environment"].append({"name": "FEATURE_X", "value": "on"})
    result = td_diff(described(), new)
    assert result.summary == "+1 env var (app)"
    assert result.text.count("\n+") == 5 and '+          "name": "FEATURE_X",\n' in result.text
    assert '+          "value": "on"\n' in result.text


def test_env_var_removed_and_changed_across_containers():
    current = described()
    nginx = next(c for c in current["containerDefinitions"] if c["name"] == "nginx")
    nginx["environment"] = [{"name": "WORKERS", "value": "2"}]
    new = registration()
    app(new)["environment"] = [{"name": "LOG_LEVEL", "value": "debug"}]
    new_nginx = next(c for c in new["containerDefinitions"] if c["name"] == "nginx")
    new_nginx["environment"] = [
        {"name": "WORKERS", "value": "4"},
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    result = td_diff(current, new)
    assert result.changes == ["+2 env vars (nginx)", "-1 env var (app)", "~2 env vars (app, nginx)"]
    assert result.summary == "+2 env vars (nginx), -1 env var (app), ~2 env vars (app, nginx)"
    assert (
        '           "name": "LOG_LEVEL",\n-          "value": "info"\n-        },\n-        {\n'
        '-          "name": "REGION",\n-          "value": "eu"\n+          "value": "debug"\n'
    ) in result.text
    assert '-          "value": "2"\n+          "value": "4"\n' in result.text


def test_secret_added_shows_its_reference_only():
    new = registration()
    app(new)["secrets"].append(
        {"name": "API_TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/web/token"}
    )
    result = td_diff(described(), new)
    assert result.summary == "+secret API_TOKEN (app)"
    assert '+          "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/web/token"\n' in result.text


def test_secret_removed_and_repointed():
    new = registration()
    app(new)["secrets"] = [
        {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/db2"}
    ]
    app(new)["secrets"].append({"name": "OTHER", "valueFrom": "x"})
    current = described()
    app(current)["secrets"].append({"name": "OLD_KEY", "valueFrom": "y"})
    assert td_diff(current, new).changes == [
        "+secret OTHER (app)",
        "-secret OLD_KEY (app)",
        "~secret DB_PASSWORD (app)",
    ]


def test_secret_looking_env_values_are_masked_everywhere():
    current = described()
    app(current)["environment"] += [
        {"name": "db_password", "value": "hunter2-old"},
        {"name": "Stripe-Api-Key", "value": "sk_live_unchanged"},
    ]
    new = registration()
    app(new)["environment"] += [
        {"name": "db_password", "value": "hunter2-new"},
        {"name": "Stripe-Api-Key", "value": "sk_live_unchanged"},
        {"name": "GITHUB_TOKEN", "value": "ghp_added"},
    ]
    result = td_diff(current, new)
    for value in ("hunter2-old", "hunter2-new", "sk_live_unchanged", "ghp_added"):
        assert value not in result.text and value not in result.summary and all(value not in c for c in result.changes)
    assert result.summary == "+1 env var (app), ~1 env var (app)"
    assert '-          "value": "***"\n+          "value": "*** (changed)"\n' in result.text
    assert '+          "name": "GITHUB_TOKEN",\n+          "value": "***"\n' in result.text
    # The caller's documents are left as they were.
    assert app(new)["environment"][-1] == {"name": "GITHUB_TOKEN", "value": "ghp_added"}


def test_looks_secret():
    assert [
        n
        for n in (
            "DB_PASSWORD",
            "apiKey",
            "api-key",
            "PRIVATE_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "GCP_CREDENTIALS",
            "SLACK_TOKEN",
            "LOG_LEVEL",
            "PUBLIC_URL",
            "KEY_ID",
        )
        if diff.looks_secret(n)
    ] == ["DB_PASSWORD", "apiKey", "api-key", "PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY", "GCP_CREDENTIALS", "SLACK_TOKEN"]


def test_cpu_and_memory():
    new = registration(cpu="512", memory="1024")
    app(new)["memory"] = 900
    result = td_diff(described(), new)
    assert result.summary == "cpu 256 -> 512, memory 512 -> 1024, memory app unset -> 900"
    assert '-  "cpu": "256",\n+  "cpu": "512",\n' in result.text


def test_container_added_and_removed():
    new = registration()
    new["containerDefinitions"] = [c for c in new["containerDefinitions"] if c["name"] != "nginx"]
    new["containerDefinitions"].append(
        {
            "name": "xray",
            "image": "public.ecr.aws/xray/aws-xray-daemon:3",
            "portMappings": [{"containerPort": 2000, "protocol": "udp"}],
        }
    )
    result = td_diff(described(), new)
    assert result.summary == "+container xray, -container nginx"
    assert '+      "name": "xray",\n' in result.text and '-      "name": "nginx"\n' in result.text


def test_ports_and_other_fields():
    new = registration(taskRoleArn="arn:aws:iam::123456789012:role/web-task-2")
    app(new)["portMappings"] = [{"containerPort": 8080, "name": "http", "appProtocol": "http"}, {"containerPort": 9090}]
    app(new)["healthCheck"] = {"command": ["CMD-SHELL", "curl -f localhost:8080/health"]}
    assert td_diff(described(), new).changes == [
        "+port 9090/tcp (app)",
        "~port 8080/tcp (app)",
        "taskRoleArn changed",
        "healthCheck changed (app)",
    ]


def test_many_items_keep_six_and_count_the_rest():
    new = registration(cpu="512", memory="1024", taskRoleArn="r2", executionRoleArn="e2")
    app(new)["image"] = f"{REGISTRY}/web:v2@{D2}"
    app(new)["environment"].append({"name": "X", "value": "1"})
    app(new)["secrets"].append({"name": "S", "valueFrom": "s"})
    new["containerDefinitions"].append({"name": "xray", "image": "xray"})
    result = td_diff(described(), new)
    assert result.changes == [
        "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…)",
        "+1 env var (app)",
        "+secret S (app)",
        "cpu 256 -> 512",
        "memory 512 -> 1024",
        "+container xray",
        "executionRoleArn changed",
        "taskRoleArn changed",
    ]
    assert result.summary == (
        "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…), +1 env var (app), +secret S (app), "
        "cpu 256 -> 512, memory 512 -> 1024, +container xray, +2 more"
    )


def test_summary_stays_under_300_chars():
    long = [f"image c{i} {'r' * 80}:v1 -> {'r' * 80}:v2" for i in range(4)]
    summary = diff.summarise(long)
    assert len(summary) <= 300 and summary == f"{long[0]}, +3 more"
    one = diff.summarise(["x" * 500, "y"])
    assert len(one) == 300 and one.endswith("…, +1 more")


def test_service_desired_count_and_task_definition():
    current = {
        "serviceName": "web",
        "taskDefinition": f"{ARN}/web:1",
        "desiredCount": 2,
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-b", "subnet-a"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "DISABLED",
            }
        },
    }
    planned = {
        "taskDefinition": f"{ARN}/web:2",
        "desiredCount": 3,
        "forceNewDeployment": True,
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-1"]}
        },
    }
    result = diff.service_diff(current, planned)
    assert result.changes == ["task definition web:1 -> web:2", "desired count 2 -> 3"]
    assert result.summary == "task definition web:1 -> web:2, desired count 2 -> 3"
    assert result.text == (
        "--- service web (current)\n"
        "+++ service web (planned)\n"
        "@@ -1,5 +1,5 @@\n"
        " {\n"
        '-  "desiredCount": 2,\n'
        '+  "desiredCount": 3,\n'
        '   "networkConfiguration": {\n'
        '     "awsvpcConfiguration": {\n'
        '       "securityGroups": [\n'
        "@@ -11,5 +11,5 @@\n"
        "       ]\n"
        "     }\n"
        "   },\n"
        '-  "taskDefinition": "web:1"\n'
        '+  "taskDefinition": "web:2"\n'
        " }\n"
    )
    # launchType is not in planned: not compared.
    assert diff.service_diff(current, {"desiredCount": 2}) == Diff("", "no changes", [])


def test_service_structured_and_scalar_fields():
    current = {
        "serviceName": "web",
        "enableExecuteCommand": False,
        "loadBalancers": [{"targetGroupArn": "tg-1", "containerName": "app", "containerPort": 8080}],
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}],
    }
    planned = {
        "enableExecuteCommand": True,
        "platformVersion": "1.4.0",
        "loadBalancers": [{"targetGroupArn": "tg-2", "containerName": "app", "containerPort": 8080}],
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}],
    }
    assert diff.service_diff(current, planned).changes == [
        "loadBalancers changed",
        "platformVersion unset -> 1.4.0",
        "enableExecuteCommand false -> true",
    ]


def test_combine():
    new = registration()
    app(new)["image"] = f"{REGISTRY}/web:v2@{D2}"
    task = td_diff(described(), new)
    service = diff.service_diff(
        {"serviceName": "web", "taskDefinition": f"{ARN}/web:1", "desiredCount": 2},
        {"taskDefinition": f"{ARN}/web:2", "desiredCount": 2},
    )
    nothing = td_diff(described(), registration())
    combined = diff.combine(task, nothing, service)
    assert combined.text == task.text + service.text
    assert combined.changes == [
        "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…)",
        "task definition web:1 -> web:2",
    ]
    assert (
        combined.summary
        == "image app web:v1 (sha256:ab12cd34…) -> web:v2 (sha256:ef56ab78…), task definition web:1 -> web:2"
    )
    assert diff.combine(nothing, nothing) == Diff("", "no changes", [])
    assert diff.combine() == Diff("", "no changes", [])


def test_huge_diffs_are_truncated(monkeypatch):
    new = registration()
    app(new)["environment"] += [{"name": f"VAR_{i:05d}", "value": "v" * 100} for i in range(2000)]
    result = td_diff(described(), new)
    assert result.summary == "+2000 env vars (app)"
    assert 200 * 1024 - 300 < len(result.text.encode()) <= 200 * 1024
    with monkeypatch.context() as m:
        m.setattr(diff, "MAX_TEXT_BYTES", 10 * 1024 * 1024)
        full = td_diff(described(), new).text.splitlines()
    lines = result.text.splitlines()
    kept = len(lines) - 1
    assert len(full) == 8009 and lines[:kept] == full[:kept]
    assert lines[-1] == f"… (truncated, {len(full) - kept} more lines)"
    combined = diff.combine(result, result)
    assert len(combined.text.encode()) <= 200 * 1024
    assert combined.text.count("… (truncated, ") == 1 and combined.text.endswith(" more lines)\n")


def test_a_described_revision_against_its_own_registration_input_is_no_change(ecs_world):
    """Round trip through (moto's) ECS: what DescribeTaskDefinition adds is all noise."""
    import boto3

    current = boto3.client("ecs").describe_task_definition(taskDefinition="web:1")["taskDefinition"]
    spec = copy.deepcopy({k: v for k, v in current.items() if k not in diff.READ_ONLY_FIELDS})
    assert td_diff(current, spec) == Diff("", "no changes", [])
    spec["containerDefinitions"][0]["environment"] = [{"name": "X", "value": "1"}]
    assert td_diff(current, spec).summary == "+1 env var (app)"
