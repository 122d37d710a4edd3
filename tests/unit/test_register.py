"""Register: the planned revision, registered once per execution and tagged with it."""

import boto3
import pytest

from ferry.errors import InputInvalid
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
    tags = boto3.client("ecs").describe_task_definition(
        taskDefinition=registered.task_definition_arn, include=["TAGS"]
    )["tags"]
    assert {"key": register.EXECUTION_TAG, "value": "exec-1"} in tags
    assert {"key": "team", "value": "payments"} in tags
    assert registered.to_state() == {
        "taskDefinitionArn": registered.task_definition_arn,
        "revision": "web:2",
        "reused": False,
        "artefact": registered.artefact_key,
    }


def test_the_step_registers_the_executions_plan_and_its_output_reads_back(web):
    state, _ = plan_and_register(web, {"app": V2}, "exec-2")
    registered = register.run(register.Input.from_state({"execution": "exec-2", "service": "web"}), "ferry-artefacts")
    assert registered.reused and registered.revision == "web:2"  # plan_and_register registered it first
    assert register.Output.from_state(registered.to_state()) == registered


def test_a_bad_input_is_refused_naming_the_field():
    with pytest.raises(InputInvalid, match=r"Register's input: `execution` is missing: the state must pass it"):
        register.Input.from_state({"service": "web"}, "Register's input")
    with pytest.raises(InputInvalid, match=r"Register's input: `service` must be a string, got a number"):
        register.Input.from_state({"execution": "exec-1", "service": 7}, "Register's input")
