"""Every page of what AWS answers a page at a time (moto answers these in one page, so the pages are stubbed)."""

from __future__ import annotations

from datetime import datetime, timezone

from botocore.stub import Stubber

from ferry import aws as ferry_aws
from ferry.steps import bake, verify
from ferry.aws import container_logs


def alarm(name: str, state: str = "OK") -> dict:
    return {"AlarmName": name, "StateValue": state, "StateReason": f"{name} is {state}"}


def test_the_bake_reads_every_page_of_every_batch_of_alarms(aws):
    """DescribeAlarms takes at most 100 names and answers 50 alarms a page by default."""
    names = [f"alarm-{i:03}" for i in range(120)]
    cloudwatch = ferry_aws.client("cloudwatch")
    with Stubber(cloudwatch) as stub:
        types = ["MetricAlarm", "CompositeAlarm"]
        stub.add_response(
            "describe_alarms",
            {"MetricAlarms": [alarm(n) for n in names[:50]], "NextToken": "p2"},
            {"AlarmNames": names[:100], "AlarmTypes": types},
        )
        stub.add_response(
            "describe_alarms",
            {"MetricAlarms": [alarm(n, "ALARM" if n == "alarm-077" else "OK") for n in names[50:100]]},
            {"AlarmNames": names[:100], "AlarmTypes": types, "NextToken": "p2"},
        )
        stub.add_response(
            "describe_alarms",
            {"MetricAlarms": [alarm(n) for n in names[100:]], "CompositeAlarms": [alarm("alarm-110", "ALARM")]},
            {"AlarmNames": names[100:], "AlarmTypes": types},
        )
        assert bake._firing(names) == [("alarm-077", "alarm-077 is ALARM"), ("alarm-110", "alarm-110 is ALARM")]
        stub.assert_no_pending_responses()


def test_a_migrations_log_tail_follows_the_backward_token_past_empty_pages(aws):
    """GetLogEvents "can return empty results while there are more log events available through the token"."""
    logs = ferry_aws.client("logs")
    at = int(datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp() * 1000)
    request = {
        "logGroupName": "/ecs/web",
        "logStreamName": "web/app/0123",
        "limit": container_logs.LOG_LINES,
        "startFromHead": False,
    }
    with Stubber(logs) as stub:
        stub.add_response(
            "get_log_events", {"events": [], "nextBackwardToken": "b/1", "nextForwardToken": "f/0"}, request
        )
        stub.add_response(
            "get_log_events",
            {
                "events": [{"timestamp": at, "message": "== migrated"}],
                "nextBackwardToken": "b/2",
                "nextForwardToken": "f/0",
            },
            {**request, "nextToken": "b/1"},
        )
        stub.add_response(
            "get_log_events",
            {
                "events": [{"timestamp": at - 1, "message": "== migrating"}],
                "nextBackwardToken": "b/3",
                "nextForwardToken": "f/0",
            },
            {**request, "limit": container_logs.LOG_LINES - 1, "nextToken": "b/2"},
        )
        stub.add_response(
            "get_log_events",
            {"events": [], "nextBackwardToken": "b/3", "nextForwardToken": "f/0"},
            {**request, "limit": container_logs.LOG_LINES - 2, "nextToken": "b/3"},
        )
        lines, where = container_logs.tail(
            {"group": "/ecs/web", "region": "", "prefix": "web"},
            "app",
            "arn:aws:ecs:us-east-1:123456789012:task/prod/0123",
        )
        stub.assert_no_pending_responses()
    assert (lines, where) == (["== migrating", "== migrated"], "/ecs/web web/app/0123")


def test_a_parameter_on_a_later_page_of_describe_parameters_exists(aws):
    """DescribeParameters filters after it reads a page: a page may be empty and still have a NextToken."""
    ssm = ferry_aws.client("ssm")
    request = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": ["/prod/web/api-key"]}]}
    with Stubber(ssm) as stub:
        stub.add_response("describe_parameters", {"Parameters": [], "NextToken": "t1"}, request)
        stub.add_response("describe_parameters", {"Parameters": [], "NextToken": "t2"}, {**request, "NextToken": "t1"})
        stub.add_response(
            "describe_parameters", {"Parameters": [{"Name": "/prod/web/api-key"}]}, {**request, "NextToken": "t2"}
        )
        [check] = verify._parameter_checks(verify._Aws("us-east-1"), "/prod/web/api-key", ["app"])
        stub.assert_no_pending_responses()
    assert check.ok, check.message


def test_a_log_group_is_looked_for_on_every_page(aws):
    logs = ferry_aws.client("logs")
    request = {"logGroupNamePrefix": "/ecs/web"}
    with Stubber(logs) as stub:
        for page in range(30):
            response = {"logGroups": [{"logGroupName": f"/ecs/web-{page}-{i}"} for i in range(50)]}
            if page == 29:
                response["logGroups"].append({"logGroupName": "/ecs/web"})
            else:
                response["nextToken"] = f"t{page + 1}"
            stub.add_response(
                "describe_log_groups", response, {**request, **({"nextToken": f"t{page}"} if page else {})}
            )
        [check] = verify._log_group_checks(verify._Aws("us-east-1"), "us-east-1", "/ecs/web", ["app"], False)
        stub.assert_no_pending_responses()
    assert check.ok, check.message
