"""The reaper in the sandbox, run as its schedule runs it (Sandbox.run_schedule): what a lost end event leaves
behind is removed by its next pass.

Case 8 of the reliability issue: a stopped execution whose status event never reaches the execution-ended
function left its canary serving, in the production target group, even after the next deploy.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ferry.lifecycle import journal, reaper
from ferry_cli.sandbox.run import world_session

from .conftest import push_event

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CHECK = "Check the canary"
# A canary healthy for 3000 s: the deploy is still checking it when it is stopped.
LONG_CANARY = (
    "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n"
    "strategy: {type: canary, canary: {count: 1, healthyForSeconds: 3000, unhealthyThreshold: 3}}\n"
)


def reaper_pass(sandbox) -> dict[str, Any]:
    """The reaper's first pass that sees what ended now: its schedule's first firing once GRACE_SECONDS have
    passed (an execution that ended more recently is the execution-ended function's). Its result, checked."""
    ran = sandbox.run_schedule("ReaperFunction", after=reaper.GRACE_SECONDS)
    assert ran["error"] is None, ran
    return ran["result"]


def lose_end_events(function: str, event: dict) -> None:
    """The execution-ended function fails on every end event (its retries too: dead-lettered), as if never sent."""
    if function == "ExecutionEndedFunction" and (event.get("detail") or {}).get("status") not in (None, "RUNNING"):
        raise RuntimeError("event lost")


def _targets(sandbox) -> dict[str, str]:
    """web-tg's targets: address -> state."""
    elb = sandbox.client("elbv2")
    [group] = elb.describe_target_groups(Names=["web-tg"])["TargetGroups"]
    return {
        d["Target"]["Id"]: d["TargetHealth"]["State"]
        for d in elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
    }


def _canary_addresses(sandbox, name: str) -> set[str]:
    from ferry.aws import canary_tasks
    from ferry.aws.ecs import task_ip

    ecs = sandbox.client("ecs")
    arns = ecs.list_tasks(cluster="prod", startedBy=canary_tasks.started_by(name))["taskArns"]
    return {task_ip(t) for t in ecs.describe_tasks(cluster="prod", tasks=arns)["tasks"]} if arns else set()


@pytest.mark.parametrize("kept", ["journal", "no journal"])
def test_a_canary_stranded_by_a_lost_end_event_is_removed_by_the_reaper_s_next_pass(scenario, kept):
    """With the journal the lock step opened, or without one (an older Ferry kept none): the canary's service is
    then found among the cluster's services, by the target groups that hold its address."""
    scenario.config("web", LONG_CANARY)
    scenario.world["ecr"]["web"] = ["v1", "v2", "v3"]
    path = scenario.dir / "world.yaml"
    path.write_text(yaml.safe_dump(scenario.world))
    with world_session(path, fault_hooks=[lose_end_events]) as (sandbox, _world):
        name = "lost-end"
        arn = sandbox.start_execution({"service": "web", "images": {"app": f"{REGISTRY}/web:v2"}}, name=name)
        sandbox.run_until(lambda: sandbox.simulator.canary_tasks() > 0 and CHECK in str(sandbox.history(arn)))
        sandbox.clock.sleep(120)  # serving: healthy in web-tg
        sandbox.client("stepfunctions").stop_execution(executionArn=arn, cause="operator stopped it")
        sandbox.wait_for_executions()  # the end event's three attempts fail: dead-lettered
        sandbox.settle_world()
        [lost] = [d for d in sandbox.dead_letters if d["function"].endswith("-execution-ended")]
        assert lost["record"]["requestPayload"]["detail"]["status"] == "ABORTED"

        # Nothing else removes it: the canary serves, its address is in the production target group, the lock held.
        addresses = _canary_addresses(sandbox, name)
        assert sandbox.simulator.canary_tasks() == 1 and len(addresses) == 1
        assert _targets(sandbox)[next(iter(addresses))] == "healthy"
        assert sandbox.locks_held() == 1
        if kept == "no journal":
            sandbox.client("dynamodb").delete_item(
                TableName=sandbox.lock_table, Key={"pk": {"S": journal.PREFIX + name}}
            )

        found = reaper_pass(sandbox)
        assert (found["canaryTasksStopped"], found["locksReleased"], found["left"]) == (1, 1, [])
        if kept == "journal":  # the journal names the canary: the clean-up takes it out and stops it
            assert (found["lostEndEvents"], found["journalsClosed"]) == (1, 1), found
        else:  # found by its tags, taken out of the target group that holds its address
            assert (found["lostEndEvents"], found["journalsClosed"], found["targetsDeregistered"]) == (0, 0, 1), found
        assert found["orphaned"] == found["reaped"] >= 3
        sandbox.run_until(lambda: sandbox.simulator.canary_tasks() == 0, limit=120)  # stopping takes a moment
        assert not addresses & {ip for ip, state in _targets(sandbox).items() if state != "draining"}
        assert sandbox.locks_held() == 0
        assert reaper.scan_lock_table(sandbox.lock_table)[0] == []
        [document] = [line for line in sandbox.logs.lines if f'"{reaper.ORPHANED}"' in line]
        assert f'"{reaper.REAPED}":[{float(found["reaped"])}]' in document

        # The next pass finds nothing, and the next deploy (events delivered again, a canary of 60 s) goes through.
        assert reaper_pass(sandbox)["orphaned"] == 0
        sandbox.fault_hooks.remove(lose_end_events)
        sandbox.client("s3").put_object(
            Bucket=sandbox.config_bucket,
            Key="services/web/ferry.yaml",
            Body=LONG_CANARY.replace("healthyForSeconds: 3000", "healthyForSeconds: 60").encode(),
        )
        sandbox.deliver(push_event("web", "v3", "push-v3"))
        sandbox.wait_for_executions()
        sandbox.settle_world()
        newest = sandbox.executions()[-1]
        assert newest["name"].startswith("web-v3-") and newest["status"] == "SUCCEEDED", sandbox.client(
            "stepfunctions"
        ).describe_execution(executionArn=newest["executionArn"])
        web = sandbox.simulator.services()["prod/web"]
        assert (web["taskDefinition"], web["runningCount"]) == ("web:3", 2)
        assert sandbox.simulator.canary_tasks() == 0 and sandbox.locks_held() == 0
        assert not addresses & set(_targets(sandbox))
