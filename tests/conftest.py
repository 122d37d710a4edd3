"""Shared fixtures: AWS is always moto; no test can reach a real account."""

from __future__ import annotations

import gc
import os

import pytest

# A sandbox builds tens of thousands of short-lived objects (moto's models, botocore's requests): with Python's
# default first-generation threshold (2,000) the collector runs thousands of times a test for little garbage.
# 50,000 makes a sandbox run about a fifth faster (bench: the demo deploy in a loop); the suite's memory stays
# well within the machine's.
gc.set_threshold(50_000, 50, 1_000)

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
