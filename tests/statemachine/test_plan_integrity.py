"""Plan integrity (issue 19), on the real state machine: what is deployed is the plan Verify checked, and a
hand-written request time cannot freeze a service.

- Register reuses a revision tagged with the execution only when it is the plan and Ferry's role registered it:
  a revision planted with the execution's tag while the deploy runs is never deployed.
- The plan replaced in the artefacts bucket after Verify is refused by Register (its hash is not the one Render
  passed on in the state) before anything is registered or changed.
- A `trigger.requestedAt` later than the execution's start is refused before the lock is taken, so a later
  legitimate deploy is not superseded by it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Any, Iterator

import boto3
import pytest
import yaml

from ferry.aws import artefacts
from ferry_cli.sandbox.run import summarise, world_session

from .conftest import failed_at, push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
V1 = f"{REGISTRY}/web@sha256:" + hashlib.sha256(b"web:v1").hexdigest()
V2 = f"{REGISTRY}/web@sha256:" + hashlib.sha256(b"web:v2").hexdigest()
INTRUDER_ROLE = "arn:aws:iam::123456789012:role/intruder-admin"
EXECUTION_TAG = "ferry:execution"


@contextmanager
def session(scenario, hooks: list) -> Iterator[Any]:
    """The scenario's world in a sandbox that stays open, with `hooks` run before every handler invocation."""
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path, fault_hooks=hooks) as (sandbox, _world):
        yield sandbox


def finish(sandbox) -> dict[str, Any]:
    """Run everything started to its end; the run's summary (executions, services, outputs)."""
    sandbox.wait_for_executions()
    sandbox.settle_world()
    return summarise(sandbox, [])


def the_plan(sandbox, execution: str) -> dict[str, Any]:
    body = sandbox.client("s3").get_object(
        Bucket=sandbox.artefacts_bucket, Key=artefacts.key(execution, artefacts.PLAN_ARTEFACT)
    )["Body"]
    return json.loads(body.read())


def family(sandbox) -> list[str]:
    arns = sandbox.client("ecs").list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
    return sorted(arn.rsplit("/", 1)[-1] for arn in arns)


def intruder(sandbox, service: str):
    """A client of another principal of the account (a role of its own, assumed), as registeredBy names it."""
    role = sandbox.client("iam").create_role(RoleName="intruder", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    found = sandbox.client("sts").assume_role(RoleArn=role, RoleSessionName="plant")["Credentials"]
    return boto3.client(
        service,
        region_name=sandbox.region,
        aws_access_key_id=found["AccessKeyId"],
        aws_secret_access_key=found["SecretAccessKey"],
        aws_session_token=found["SessionToken"],
    )


# ------------------------------------------------------------------ a revision planted with the execution's tag
PLANTS = {
    # Someone who may register and tag revisions of the family: their own image and task role.
    "another image and role": ("its content is not the plan Verify checked", False),
    # The plan's very content, registered by another principal: the tag and the content are not enough.
    "the plan's content, by another principal": ("it was registered by arn:aws:sts::123456789012:assumed-role/", True),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_revision_planted_with_the_executions_tag_is_not_deployed(scenario, plant):
    """While the deploy runs (here, as Register is invoked), a revision of the family is registered and tagged
    ferry:execution=<the execution's name>. Register reuses no such revision: it names the planted one in its
    output and registers the plan, which is what goes out."""
    planted: dict[str, str] = {}
    holder: dict[str, Any] = {}

    def plant_before_register(function: str, event: dict) -> None:
        if function != "RegisterFunction" or planted:
            return
        sandbox, execution = holder["sandbox"], event["execution"]
        spec = {k: v for k, v in the_plan(sandbox, execution).items() if k != "tags"}
        _, by_another = PLANTS[plant]
        if not by_another:
            spec["containerDefinitions"] = [
                {**c, "image": V1} if c["name"] == "app" else c for c in spec["containerDefinitions"]
            ]
            spec["taskRoleArn"] = INTRUDER_ROLE
        ecs = intruder(sandbox, "ecs") if by_another else sandbox.client("ecs")
        registered = ecs.register_task_definition(**spec, tags=[{"key": EXECUTION_TAG, "value": execution}])
        planted["revision"] = registered["taskDefinition"]["taskDefinitionArn"].rsplit("/", 1)[-1]

    with session(scenario, [plant_before_register]) as sandbox:
        holder["sandbox"] = sandbox
        sandbox.deliver(push_event("web", "v2"))
        summary = finish(sandbox)
        deployed = sandbox.client("ecs").describe_task_definition(
            taskDefinition=summary["services"]["prod/web"]["taskDefinition"]
        )["taskDefinition"]

    assert planted == {"revision": "web:2"}, "nothing was planted: the test proves nothing"
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED" and execution["states"][-1] == "Deployed", execution
    web = summary["services"]["prod/web"]
    assert web["taskDefinition"] == "web:3" and web["images"]["app"] == V2
    assert deployed.get("taskRoleArn") != INTRUDER_ROLE
    register = summary["outputs"][execution["name"]]["Register the new revision"]
    assert register["revision"] == "web:3" and register["reused"] is False
    why, _ = PLANTS[plant]
    [ignored] = register["ignoredRevisions"]
    assert ignored.startswith(f"web:2: tagged {EXECUTION_TAG}={execution['name']}, but {why}"), ignored
    assert ignored.endswith("; not deployed")


def test_a_register_retried_after_it_registered_reuses_its_own_revision_not_a_newer_planted_one(scenario):
    """The legitimate reuse still works beside a plant: Register's first invocation registers web:2 and its
    answer is lost (the function times out); before the retry, a revision with the execution's tag and another
    image is planted (web:3, the family's newest). The retry skips it and reuses its own (tag, content and
    registeredBy all agree): one revision registered, the plan deployed."""
    from ferry_cli.sandbox.faults import Faults, LambdaFault

    planted: dict[str, str] = {}
    holder: dict[str, Any] = {}
    invocations: list[str] = []

    def plant_before_the_retry(function: str, event: dict) -> None:
        if function != "RegisterFunction":
            return
        invocations.append(event["execution"])
        if len(invocations) != 2:
            return
        sandbox, execution = holder["sandbox"], event["execution"]
        spec = {k: v for k, v in the_plan(sandbox, execution).items() if k != "tags"}
        spec["containerDefinitions"] = [
            {**c, "image": V1} if c["name"] == "app" else c for c in spec["containerDefinitions"]
        ]
        registered = sandbox.client("ecs").register_task_definition(
            **spec, tags=[{"key": EXECUTION_TAG, "value": execution}]
        )
        planted["revision"] = registered["taskDefinition"]["taskDefinitionArn"].rsplit("/", 1)[-1]

    faults = Faults(
        lambdas=[LambdaFault("timeout", step=lambda f, e: "register" if f == "RegisterFunction" else None, times=1)]
    )
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path, faults=faults, fault_hooks=[plant_before_the_retry]) as (sandbox, _world):
        holder["sandbox"] = sandbox
        sandbox.deliver(push_event("web", "v2"))
        summary = finish(sandbox)
        revisions = family(sandbox)

    assert len(invocations) == 2 and planted == {"revision": "web:3"}, (invocations, planted)
    [execution] = summary["executions"]
    assert execution["status"] == "SUCCEEDED", execution
    register = summary["outputs"][execution["name"]]["Register the new revision"]
    assert (register["revision"], register["reused"]) == ("web:2", True)
    assert register["ignoredRevisions"] == [
        f"web:3: tagged {EXECUTION_TAG}={execution['name']}, but its content is not the plan Verify checked; "
        "not deployed"
    ]
    assert revisions == ["web:1", "web:2", "web:3"]
    web = summary["services"]["prod/web"]
    assert web["taskDefinition"] == "web:2" and web["images"]["app"] == V2


# ------------------------------------------------------------------ the plan replaced after Verify
def test_a_plan_replaced_in_the_bucket_after_verify_is_refused_before_anything_is_registered(scenario):
    """Someone who may write to the artefacts bucket replaces the verified plan with their own image and role
    while the deploy goes from Verify to Register: Register refuses it (naming the object, both hashes and
    why), nothing is registered, the service is unchanged and the lock released."""
    swapped: dict[str, str] = {}
    holder: dict[str, Any] = {}

    def swap_before_register(function: str, event: dict) -> None:
        if function != "RegisterFunction" or swapped:
            return
        sandbox, execution = holder["sandbox"], event["execution"]
        spec = the_plan(sandbox, execution)
        spec["containerDefinitions"] = [
            {**c, "image": V1} if c["name"] == "app" else c for c in spec["containerDefinitions"]
        ]
        spec["taskRoleArn"] = INTRUDER_ROLE
        body = json.dumps(spec).encode()
        object_key = artefacts.key(execution, artefacts.PLAN_ARTEFACT)
        sandbox.client("s3").put_object(Bucket=sandbox.artefacts_bucket, Key=object_key, Body=body)
        swapped.update(key=object_key, sha256=hashlib.sha256(body).hexdigest(), expected=event.get("planSha256", ""))

    with session(scenario, [swap_before_register]) as sandbox:
        holder["sandbox"] = sandbox
        sandbox.deliver(push_event("web", "v2"))
        summary = finish(sandbox)
        revisions = family(sandbox)
        bucket = sandbox.artefacts_bucket

    assert swapped, "the plan was never swapped: the test proves nothing"
    execution = failed_at(summary, "Register the new revision")
    assert execution["error"] == "TaskDefinitionInvalid"
    assert (
        f"s3://{bucket}/{swapped['key']} has sha256 {swapped['sha256']}, but Render stored the plan with sha256 "
        f"{swapped['expected']}: the plan was changed after it was verified; nothing was registered."
    ) in execution["cause"]
    assert revisions == ["web:1"]


# ------------------------------------------------------------------ a request time in the future
def test_a_request_time_in_the_future_is_refused_and_does_not_supersede_a_later_deploy(scenario):
    """An execution started by hand with `trigger.requestedAt` a year ahead: before, it deployed and every later
    deploy of the service stepped aside ("Superseded", reported as a success) for a year. Now it is refused
    before the lock is taken, and the next push deploys."""
    with session(scenario, []) as sandbox:
        future = sandbox.clock.now() + 365 * 24 * 3600
        forged = sandbox.start_execution(
            {"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}, "trigger": {"requestedAt": future}},
            name="forged",
        )
        sandbox.wait_for_executions()
        sandbox.clock.sleep(60)
        sandbox.deliver(push_event("web", "v2", "event-2"))
        summary = finish(sandbox)
        started = sandbox.client("stepfunctions").describe_execution(executionArn=forged)["startDate"]

    by_name = {e["name"]: e for e in summary["executions"]}
    refused = by_name.pop("forged")
    assert refused["status"] == "FAILED" and refused["error"] == "InputInvalid", refused
    assert refused["states"] == [
        "Check the request",
        "Take the deploy lock for this service",
        "Release the deploy lock after the failure",
        "Deploy failed",
    ], refused["states"]
    assert "the input's `trigger.requestedAt`" in refused["cause"]
    assert f"is later than the execution's start ({started.strftime('%Y-%m-%dT%H:%M:%S')}" in refused["cause"]
    [pushed] = by_name.values()
    assert pushed["status"] == "SUCCEEDED" and pushed["states"][-1] == "Deployed", pushed
    assert pushed["supersededBy"] is None
    assert summary["services"]["prod/web"]["taskDefinition"] == "web:2" and summary["locksHeld"] == 0


def test_the_artefacts_bucket_keeps_every_version_of_a_plan():
    """A plan replaced in the bucket is refused by its hash; the version it replaced stays (90 days after it
    stopped being current) for whoever looks into who replaced it."""
    from ferry_cli.sandbox.sandbox import REPO_ROOT
    from ferry_cli.sandbox.template import Template

    bucket = Template.load(REPO_ROOT).resources["ArtefactsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["ExpirationInDays"], rule["NoncurrentVersionExpiration"]) == (90, {"NoncurrentDays": 90})
