"""Verify in the real state machine: one world per broken reference, the service untouched each time."""

from __future__ import annotations


from .conftest import failed_at, push_event

VERIFY = "Verify secrets, images and roles"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"


def run_verify_failure(scenario) -> str:
    execution = failed_at(scenario.run(push_event("web", "v2")), VERIFY)
    assert execution["error"] == "VerifyFailed"
    assert "(nothing was changed)" in execution["cause"]
    return execution["cause"]


def test_a_secret_with_no_value_fails_verify_with_the_fix(scenario):
    scenario.world["secrets"] = {"prod/web/db-password": {}}
    cause = run_verify_failure(scenario)
    assert "secret prod/web/db-password" in cause and "exists but has no value" in cause
    assert "aws secretsmanager put-secret-value --secret-id prod/web/db-password" in cause


def test_a_missing_secret(scenario):
    scenario.world["secrets"] = {}
    cause = run_verify_failure(scenario)
    assert "secret prod/web/db-password" in cause and "does not exist" in cause
    assert "aws secretsmanager create-secret --name prod/web/db-password" in cause


def test_a_missing_ssm_parameter(scenario):
    scenario.world["parameters"] = {}
    cause = run_verify_failure(scenario)
    assert "parameter /prod/web/feature" in cause and "does not exist in SSM Parameter Store" in cause


def test_an_image_tag_that_was_never_pushed(scenario):
    template = (scenario.dir / "web-task-def.json").read_text()
    template = template.replace(f"{REGISTRY}/web:v1", "{{ image `app` }}").replace("nginx:1.27", "nginx:1.29")
    scenario.config("web", template, "task-definition.json")
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\n")
    cause = run_verify_failure(scenario)
    assert "nginx:1.29" in cause and "push it" in cause


def test_a_missing_role(scenario):
    scenario.world["roles"] = ["ecsTaskExecutionRole"]
    cause = run_verify_failure(scenario)
    assert "web-task-role does not exist" in cause


def test_a_role_ecs_tasks_cannot_assume(scenario):
    scenario.world["roles"] = ["ecsTaskExecutionRole", {"name": "web-task-role", "trustedBy": "lambda.amazonaws.com"}]
    cause = run_verify_failure(scenario)
    assert "web-task-role" in cause and "does not trust ecs-tasks.amazonaws.com" in cause


def test_a_missing_log_group(scenario):
    scenario.world["logGroups"] = []
    cause = run_verify_failure(scenario)
    assert "log group /ecs/web" in cause and "aws logs create-log-group" in cause


def test_a_missing_target_group_named_as_a_health_gate(scenario):
    scenario.config("web", WEB + "healthGates: {targetGroups: [web-canary-tg]}\n")
    cause = run_verify_failure(scenario)
    assert "target group web-canary-tg" in cause and "does not exist" in cause


def test_a_load_balancer_port_the_new_revision_does_not_expose(scenario):
    scenario.world["services"][0]["targetGroup"] = {"name": "web-tg", "container": "nginx", "port": 8081}
    cause = run_verify_failure(scenario)
    assert "container nginx has no portMapping with containerPort 8081" in cause


def test_several_problems_are_reported_together(scenario):
    scenario.world["secrets"] = {"prod/web/db-password": {}}
    scenario.world["parameters"] = {}
    scenario.world["logGroups"] = []
    scenario.world["roles"] = ["ecsTaskExecutionRole"]
    scenario.config("web", WEB + "healthGates: {alarms: [web-latency]}\n")
    cause = run_verify_failure(scenario)
    assert cause.startswith("Verify found 5 problems in")
    for expected in (
        "exists but has no value",
        "parameter /prod/web/feature",
        "log group /ecs/web",
        "web-task-role does not exist",
        "alarm web-latency does not exist",
    ):
        assert expected in cause, expected


def test_a_passing_verify_reports_its_counts_and_never_a_secret_value(scenario):
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED"
    verified = [
        r for r in summary["histories"][execution["name"]] if r["type"] == "TaskStateExited" and r["state"] == VERIFY
    ]
    assert verified, "the Verify state should have exited"
    assert all("sandbox-db-password-do-not-print" not in line for line in summary["logLines"])


def test_a_service_with_a_short_arn_fails_verify_with_the_migration_to_the_long_format(scenario):
    """A service created before the long ARN format (arn:aws:ecs:<region>:<account>:service/<name>)."""
    scenario.world["services"][0]["arnFormat"] = "short"
    cause = run_verify_failure(scenario)
    assert "service web has a short ARN (arn:aws:ecs:us-east-1:123456789012:service/web)" in cause
    assert "serviceLongArnFormat" in cause
    assert "service-arn-migration.html" in cause


def test_many_problems_end_the_cause_with_verify_s_own_count_and_the_report_not_the_guard_s_pointer(scenario):
    """20 missing alarms of long names: about 10 KB of problems, over the 4096 characters of JSON the handlers'
    guard lets through (ferry.runtime.causes). Verify cuts first: the lines that fit, how many more, and the verify
    report, which holds every check (not the guard's copy of the message under errors/)."""
    alarms = [f"web-{i:02d}-" + "p99-latency-over-its-threshold-" * 6 for i in range(20)]
    scenario.config("web", WEB + f"healthGates: {{alarms: [{', '.join(alarms)}]}}\n")
    cause = run_verify_failure(scenario)
    lines = cause.split("\n")
    assert lines[0].startswith("Verify found 20 problems in")
    assert f"alarm {alarms[0]} does not exist" in lines[1]
    shown = len(lines) - 2
    assert 0 < shown < 20, cause
    assert lines[-1].startswith(f"- … and {20 - shown} more (see the verify report: s3://")
    assert lines[-1].endswith("/verify-report.json)")
    assert "/errors/" not in cause and "the whole message" not in cause
