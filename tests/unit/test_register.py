"""Register: the planned revision, registered once per execution and tagged with it; only the plan Verify
checked (its hash is in the state), and a revision is reused only when it is that plan, registered by Ferry."""

import json

import boto3
import pytest

from ferry.aws import artefacts
from ferry.errors import InputInvalid, TaskDefinitionInvalid
from ferry.steps import register, render

from .conftest import ACCOUNT, REGISTRY, digest, plan_and_register, revisions

V2 = f"{REGISTRY}/web:v2"
PLAN_KEY = artefacts.key("exec-1", artefacts.PLAN_ARTEFACT)


def rendered(cfg, execution="exec-1") -> dict:
    """Render's state ($.render) for a deploy of web:v2: the plan is stored, nothing registered."""
    planned = render.plan(cfg, {"app": V2}, execution=execution, environment="prod")
    return render.store(planned, execution, "ferry-artefacts").to_state()


def step(state: dict, execution: str = "exec-1") -> register.Output:
    """The step, as the state machine invokes it after Verify."""
    return register.run(
        register.Input.from_state(
            {"execution": execution, "service": "web", "planSha256": state["planSha256"]}, "Register's input"
        ),
        "ferry-artefacts",
    )


def plan_document(execution: str = "exec-1") -> dict:
    return artefacts.get_json("ferry-artefacts", execution, artefacts.PLAN_ARTEFACT)


def image_of(arn: str) -> str:
    td = boto3.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return {c["name"]: c["image"] for c in td["containerDefinitions"]}["app"]


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
        "ignoredRevisions": [],
    }


def test_the_step_registers_the_executions_plan_and_its_output_reads_back(web):
    state, _ = plan_and_register(web, {"app": V2}, "exec-2")
    registered = step(state, "exec-2")
    assert registered.reused and registered.revision == "web:2"  # plan_and_register registered it first
    assert register.Output.from_state(registered.to_state()) == registered


# ---------------------------------------------------------------- plan integrity (issue 19)


def test_a_plan_replaced_after_verify_is_refused_and_nothing_is_registered(web):
    """Someone who may write to the artefacts bucket swaps the verified plan for one with their own image and
    role: Register refuses it, naming the object and both hashes, before anything is registered."""
    state = rendered(web)
    swapped = plan_document()
    swapped["containerDefinitions"][0]["image"] = f"{REGISTRY}/web:evil"
    swapped["taskRoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/admin"
    body = json.dumps(swapped).encode()
    boto3.client("s3").put_object(Bucket="ferry-artefacts", Key=PLAN_KEY, Body=body)

    with pytest.raises(TaskDefinitionInvalid) as refused:
        step(state)

    message = str(refused.value)
    assert message.startswith(f"s3://ferry-artefacts/{PLAN_KEY}")
    assert f"has sha256 {artefacts.sha256(body)}, but Render stored the plan with sha256 {state['planSha256']}" in (
        message
    )
    assert "the plan was changed after it was verified; nothing was registered" in message
    assert revisions() == 1


def test_a_plan_deleted_after_verify_is_refused_too(web):
    state = rendered(web)
    boto3.client("s3").delete_object(Bucket="ferry-artefacts", Key=PLAN_KEY)
    with pytest.raises(TaskDefinitionInvalid, match="is gone;.*the plan was changed after it was verified; nothing"):
        step(state)
    assert revisions() == 1


def test_the_plan_verify_checked_is_registered(web):
    registered = step(rendered(web))
    assert (registered.revision, registered.reused, registered.ignored) == ("web:2", False, [])
    assert image_of(registered.task_definition_arn) == f"{REGISTRY}/web@{digest('web:v2')}"
    assert step(rendered(web, "exec-1"), "exec-1").reused  # a retry (the plan stored again, byte for byte)


def test_a_planted_revision_tagged_with_the_execution_is_not_deployed(web):
    """Anyone who may register and tag revisions of the family plants one tagged with the execution's name while
    the deploy waits for its lock: Register does not reuse it (its content is not the plan), names it in its
    output and registers the plan."""
    state = rendered(web)
    planted = {k: v for k, v in plan_document().items() if k != "tags"}
    planted["containerDefinitions"][0]["image"] = f"{REGISTRY}/web:evil"
    arn = boto3.client("ecs").register_task_definition(
        **planted, tags=[{"key": register.EXECUTION_TAG, "value": "exec-1"}]
    )["taskDefinition"]["taskDefinitionArn"]

    registered = step(state)

    assert registered.task_definition_arn != arn and not registered.reused
    assert image_of(registered.task_definition_arn) == f"{REGISTRY}/web@{digest('web:v2')}"
    assert registered.ignored == [
        "web:2: tagged ferry:execution=exec-1, but its content is not the plan Verify checked; not deployed"
    ]


def intruder_ecs():
    """An ECS client of another principal (a role of the account's, assumed): what registeredBy then names."""
    iam, sts = boto3.client("iam"), boto3.client("sts")
    role = iam.create_role(RoleName="intruder", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    found = sts.assume_role(RoleArn=role, RoleSessionName="plant")["Credentials"]
    return boto3.client(
        "ecs",
        aws_access_key_id=found["AccessKeyId"],
        aws_secret_access_key=found["SecretAccessKey"],
        aws_session_token=found["SessionToken"],
    )


def test_a_revision_with_the_plans_content_not_registered_by_ferry_is_not_reused(web):
    """The tag and the content are not enough: ECS's registeredBy must name Register's own role."""
    state = rendered(web)
    planted = {k: v for k, v in plan_document().items() if k != "tags"}
    arn = intruder_ecs().register_task_definition(**planted, tags=[{"key": register.EXECUTION_TAG, "value": "exec-1"}])[
        "taskDefinition"
    ]["taskDefinitionArn"]
    by = boto3.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]["registeredBy"]
    assert by.startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/intruder/")

    registered = step(state)

    assert registered.task_definition_arn != arn and not registered.reused and registered.revision == "web:3"
    assert registered.ignored == [
        f"web:2: tagged ferry:execution=exec-1, but it was registered by {by}, not by Ferry's register function "
        f"({register.own_principal()}); not deployed"
    ]
    assert step(state).task_definition_arn == registered.task_definition_arn  # its own is reused on a retry


def test_a_principal_is_its_role_whatever_the_session():
    role = f"arn:aws:iam::{ACCOUNT}:role/ferry-prod-RegisterFunctionRole-1A2B"
    assert register.principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/ferry-prod-RegisterFunctionRole-1A2B/fn") == role
    assert register.principal(f"arn:aws:iam::{ACCOUNT}:role/service-role/ferry-prod-RegisterFunctionRole-1A2B") == role
    assert register.principal(f"arn:aws:iam::{ACCOUNT}:user/alice") == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert register.principal(None) is None and register.principal("") is None


def test_a_bad_input_is_refused_naming_the_field():
    with pytest.raises(InputInvalid, match=r"Register's input: `execution` is missing: the state must pass it"):
        register.Input.from_state({"service": "web"}, "Register's input")
    with pytest.raises(InputInvalid, match=r"Register's input: `service` must be a string, got a number"):
        register.Input.from_state({"execution": "exec-1", "service": 7, "planSha256": "0" * 64}, "Register's input")
    with pytest.raises(InputInvalid, match=r"Register's input: `planSha256` is missing: the state must pass it"):
        register.Input.from_state({"execution": "exec-1", "service": "web"}, "Register's input")
