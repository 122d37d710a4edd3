"""Shared fixtures: AWS is always moto; no test can reach a real account."""

from __future__ import annotations

import os

import pytest

os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
})
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def aws():
    """An empty moto account in us-east-1, with Ferry's client cache reset around it."""
    from moto import mock_aws

    from ferry import aws as ferry_aws

    ferry_aws.reset()
    with mock_aws():
        yield
    ferry_aws.reset()
