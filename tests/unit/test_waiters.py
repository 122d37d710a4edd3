"""A state's failure sent back with its task token (ferry.aws.waiters.complete): a cause too long for
SendTaskFailure keeps its first whole lines, says how many were left out, and its whole is in the log."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ferry import aws as ferry_aws
from ferry import text
from ferry.aws import waiters
from ferry.runtime.observability import logger

CONTEXT = SimpleNamespace(
    function_name="ferry-prod-task-stopped",
    function_version="$LATEST",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ferry-prod-task-stopped",
    aws_request_id="request-7",
)
WHERE = "the log of Lambda function ferry-prod-task-stopped, request request-7"


@pytest.fixture
def sent(aws, monkeypatch):
    """The SendTaskFailure calls made through Ferry's client (which obeys AWS's rules: aws_rules refuses a cause
    over 32768 characters, as AWS does)."""
    calls: list[dict] = []
    client = ferry_aws.client("stepfunctions")
    send = client.send_task_failure
    monkeypatch.setattr(client, "send_task_failure", lambda **kw: calls.append(kw) or send(**kw))
    return calls


def complete_in_a_handler(cause: str) -> bool:
    @logger.inject_lambda_context(clear_state=True)
    def handler(event, context):
        return waiters.complete("token-1", error="MigrationFailed", cause=cause)

    return handler({}, CONTEXT)


def output(lines: int) -> str:
    return "\n".join(
        ["migration db exited with code 1; its last output:", *(f"line {i:05d} " + "o" * 80 for i in range(lines))]
    )


def test_a_cause_that_fits_is_sent_as_it_is(sent):
    cause = output(10)
    assert complete_in_a_handler(cause)
    assert sent[0]["cause"] == cause


def test_a_cause_of_exactly_32768_characters_is_sent_whole(sent):
    cause = "x" * 32768
    assert complete_in_a_handler(cause)
    assert sent[0]["cause"] == cause


def test_a_longer_cause_keeps_its_first_whole_lines_the_count_left_out_and_where_the_whole_is(sent, logs):
    cause = output(1000)  # about 91 KB
    assert complete_in_a_handler(cause)  # sent: AWS would have refused the whole with ValidationException
    cut = sent[0]["cause"]
    assert len(cut) <= waiters.CAUSE_MAX_CHARS and text.json_length(cut) <= waiters.CAUSE_MAX_CHARS
    lines = cut.split("\n")
    assert lines[0] == "migration db exited with code 1; its last output:"
    assert lines[1:-1] == cause.split("\n")[1 : len(lines) - 1]  # whole lines, in order, none cut
    left = 1001 - (len(lines) - 1)
    assert left > 0 and lines[-1] == f"… {left} more lines not shown; the whole message: {WHERE}"
    assert any(line["message"] == cause and line["level"] == "ERROR" for line in logs())
