"""Render in the real state machine: templates, Jsonnet, and every render failure leaving the service untouched."""

from __future__ import annotations

import json

from .conftest import failed_at, push_event

RENDER = "Render the new task definition and diff it"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\nstrategy: {type: rolling}\n"


def template_of(scenario, **replacements: str) -> str:
    """The example's running task definition turned into a template."""
    text = (scenario.dir / "web-task-def.json").read_text().replace(f"{REGISTRY}/web:v1", "{{ image `app` }}")
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


SECRET_FROM_TEMPLATE = {
    '"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/db-password"': '"{{ secret_arn `prod/web/db-password` }}"',
    '{"name": "PORT", "value": "8080"}': '{"name": "PORT", "value": "8080"}, '
    '{"name": "FEATURE", "value": "{{ ssm `/prod/web/feature` }}"}, '
    '{"name": "RELEASE", "value": "{{ must_env `RELEASE` }}-{{ tag `app` }}"}',
}


def test_a_template_deploy_resolves_secret_arns_and_ssm_values(scenario):
    scenario.config("web", template_of(scenario, **SECRET_FROM_TEMPLATE), "task-definition.json")
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\nvalues: {RELEASE: r42}\n")
    summary = scenario.run(push_event("web", "v2"))
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    web = summary["services"]["prod/web"]
    assert web["taskDefinition"] == "web:2" and web["images"]["app"].startswith(f"{REGISTRY}/web@sha256:")
    rendered = [
        r for r in summary["histories"][execution["name"]] if r["type"] == "TaskStateExited" and r["state"] == RENDER
    ]
    assert rendered
    assert "+2 env vars (app)" in json.dumps(summary["histories"][execution["name"]])
    assert all("sandbox-db-password-do-not-print" not in line for line in summary["logLines"])


def test_a_jsonnet_config_deploys(scenario):
    scenario.config("web", "{ cluster: 'prod', service: 'web' }", "base.libsonnet")
    scenario.config(
        "web",
        "(import 'base.libsonnet') + { containers: { app: { repository: 'web' } },"
        " triggers: [{ repository: 'web', tags: ['v*'] }] }",
        "ferry.jsonnet",
    )
    summary = scenario.run(push_event("web", "v2"))
    assert [e["status"] for e in summary["executions"]] == ["SUCCEEDED"]
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2"


def test_an_unresolved_placeholder_fails_render_naming_file_position_and_fix(scenario):
    scenario.config("web", template_of(scenario, **SECRET_FROM_TEMPLATE), "task-definition.json")
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\n")  # no RELEASE value
    execution = failed_at(scenario.run(push_event("web", "v2")), RENDER)
    assert execution["error"] == "TemplateUnresolved"
    assert "services/web/task-definition.json:" in execution["cause"]
    assert "must_env" in execution["cause"] and "RELEASE" in execution["cause"]


def test_a_missing_secret_in_a_template_fails_render(scenario):
    scenario.world["secrets"] = {}
    scenario.config("web", template_of(scenario, **SECRET_FROM_TEMPLATE), "task-definition.json")
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\nvalues: {RELEASE: r42}\n")
    execution = failed_at(scenario.run(push_event("web", "v2")), RENDER)
    assert execution["error"] == "TemplateUnresolved"
    assert "prod/web/db-password" in execution["cause"] and "aws secretsmanager create-secret" in execution["cause"]


def test_a_template_with_a_wrong_field_fails_render_before_registration(scenario):
    scenario.config(
        "web", template_of(scenario, **{'"cpu": "512",': '"cpu": "512", "cpuUnits": 512,'}), "task-definition.json"
    )
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\n")
    execution = failed_at(scenario.run(push_event("web", "v2")), RENDER)
    assert execution["error"] == "TaskDefinitionInvalid"
    assert 'Unknown parameter in input: "cpuUnits"' in execution["cause"]


def test_a_config_whose_template_file_is_missing_fails_render(scenario):
    scenario.config("web", WEB + "taskDefinition: {template: task-definition.json}\n")
    execution = failed_at(scenario.run(push_event("web", "v2")), RENDER)
    assert execution["error"] == "ConfigInvalid"
    assert "services/web/task-definition.json does not exist" in execution["cause"]
