"""Register: the planned revision, registered once per execution and tagged with it."""

import boto3

from ferry.steps import register

from .conftest import REGISTRY, plan_and_register, revisions

V2 = f"{REGISTRY}/web:v2"


def test_a_retried_register_registers_nothing_new(web):
    _, first = plan_and_register(web, {"app": V2})
    again = register.register_planned("exec-1", "ferry-artefacts")
    assert again.task_definition_arn == first.task_definition_arn and again.reused
    _, other = plan_and_register(web, {"app": V2}, "exec-2")
    assert other.task_definition_arn != first.task_definition_arn
    assert revisions() == 3


def test_the_registered_revision_is_tagged_with_the_execution_and_keeps_the_services_own_tags(web):
    _, registered = plan_and_register(web, {"app": V2})
    tags = boto3.client("ecs").describe_task_definition(taskDefinition=registered.task_definition_arn,
                                                        include=["TAGS"])["tags"]
    assert {"key": register.EXECUTION_TAG, "value": "exec-1"} in tags
    assert {"key": "team", "value": "payments"} in tags
    assert registered.to_state() == {"taskDefinitionArn": registered.task_definition_arn, "revision": "web:2",
                                     "reused": False, "artefact": registered.artefact_key}
