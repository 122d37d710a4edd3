"""Shared fixtures: AWS is always moto; no test can reach a real account."""

from __future__ import annotations

import os

import pytest

from ferry_cli.sandbox import collect_less

collect_less()  # the suite runs hundreds of sandboxes

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def aws():
    """An empty moto account in us-east-1, with Ferry's client cache reset around it, as strict as AWS:
    requests break the rules AWS documents are refused and List calls answer a page at a time
    (ferry_cli.sandbox.aws_rules)."""
    from moto import mock_aws

    from ferry import aws as ferry_aws
    from ferry_cli.sandbox import aws_rules

    ferry_aws.reset()
    with mock_aws(), aws_rules.enforce():
        yield
    ferry_aws.reset()
