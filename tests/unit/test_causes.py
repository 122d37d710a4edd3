"""Causes that fit: ferry.text.json_length and fit_lines, and the handlers' guard (ferry.runtime.causes)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest

from ferry import text
from ferry.errors import TemplateUnresolved, VerifyFailed
from ferry.runtime import causes
from ferry.runtime.observability import bind, logger

WHOLE = "s3://ferry-artefacts/executions/exec-1/errors/render/request-1.txt"
CONTEXT = SimpleNamespace(
    function_name="ferry-prod-render",
    function_version="$LATEST",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ferry-prod-render",
    aws_request_id="request-1",
)


@pytest.mark.parametrize(
    "value", ["", "plain ascii", 'a "quoted" \\ back\nslash\t\r\b\f', "\x00\x1f\x7f", "é–…中", "😀 emoji", "\u2028"]
)
def test_json_length_is_what_json_dumps_writes(value):
    assert text.json_length(value) == len(json.dumps(value)) - 2


def problems(count: int, width: int = 40) -> str:
    return "\n".join([f"{count} problems:", *(f"p{i:03d} " + "x" * (width - 5) for i in range(count))])


def test_a_message_exactly_at_the_limit_is_kept_whole():
    message = problems(30)
    assert text.fit_lines(message, text.json_length(message), WHOLE) == message


def test_one_over_the_limit_keeps_the_first_lines_the_count_left_out_and_where_the_whole_is():
    message = problems(30)
    limit = text.json_length(message) - 1
    cut = text.fit_lines(message, limit, WHOLE)
    assert text.json_length(cut) <= limit
    lines = cut.split("\n")
    assert lines[0] == "30 problems:"
    assert lines[1].startswith("p000 ")
    kept = len(lines) - 2  # the count line and the note
    assert lines[-1] == f"… {30 - kept} more lines not shown; the whole message: {WHOLE}"
    assert lines[1:-1] == message.split("\n")[1 : 1 + kept]


def test_one_line_left_out_is_said_in_the_singular():
    message = "head\n" + "y" * 300
    cut = text.fit_lines(
        message,
        text.json_length("head") + 2 + text.json_length(f"… 1 more line not shown; the whole message: {WHOLE}"),
        WHOLE,
    )
    assert cut == f"head\n… 1 more line not shown; the whole message: {WHOLE}"


def test_a_single_line_too_long_is_cut_and_says_where_the_whole_is():
    message = "z" * 10_000
    cut = text.fit_lines(message, 4096, WHOLE)
    first, note = cut.split("\n")
    assert first.startswith("zzz") and first.endswith("…")
    assert note == f"the whole message: {WHOLE}"
    assert text.json_length(cut) <= 4096 and text.json_length(cut) >= 4096 - 6


@pytest.mark.parametrize("character", ["é", "中", "😀", '"', "\n"])
def test_unicode_and_escapes_count_as_json_writes_them(character):
    message = "\n".join(["head", *(character * 50 for _ in range(200))])
    cut = text.fit_lines(message, 4096, WHOLE)
    assert len(json.dumps(cut)) - 2 <= 4096
    assert cut.startswith("head\n")
    # never half a character: a surrogate pair stays whole, and the text stays valid UTF-8
    cut.encode("utf-8")
    single = text.fit_lines(character * 5000, 4096, WHOLE)
    assert len(json.dumps(single)) - 2 <= 4096
    single.encode("utf-8")


def guarded(bucket, exc: Exception, execution: str | None = "exec-1"):
    @logger.inject_lambda_context(clear_state=True)
    @causes.guard(bucket)
    def handler(event, context):
        if execution:
            bind(execution, "web")
        raise exc

    return lambda: handler({}, CONTEXT)


def long_message(count: int = 500) -> str:
    return "\n".join(
        [f"task-definition.json: {count} template placeholders could not be resolved:"]
        + [
            f'task-definition.json:1:{i}: {{{{ must_env "MISSING_{i:03d}" }}}}: value MISSING_{i:03d} is not set'
            for i in range(count)
        ]
    )


def test_a_short_message_goes_out_untouched(aws):
    with pytest.raises(TemplateUnresolved) as raised:
        guarded("ferry-artefacts", TemplateUnresolved("one problem"))()
    assert str(raised.value) == "one problem"


def test_a_long_message_is_cut_and_written_whole_to_the_artefacts_bucket(aws):
    boto3.client("s3").create_bucket(Bucket="ferry-artefacts")
    message = long_message()
    original = TemplateUnresolved(message)
    with pytest.raises(TemplateUnresolved) as raised:
        guarded("ferry-artefacts", original)()
    assert (
        raised.value is original
    )  # the same exception: its class, the Error the state machine matches, and its traceback
    cut = str(raised.value)
    key = "executions/exec-1/errors/ferry-prod-render/request-1.txt"
    assert text.json_length(cut) <= causes.MESSAGE_LIMIT
    assert cut.startswith("task-definition.json: 500 template placeholders could not be resolved:\n")
    assert 'must_env "MISSING_000"' in cut and 'must_env "MISSING_499"' not in cut
    assert cut.endswith(f"more lines not shown; the whole message: s3://ferry-artefacts/{key}")
    stored = boto3.client("s3").get_object(Bucket="ferry-artefacts", Key=key)["Body"].read().decode()
    assert stored == message


def test_without_a_bucket_the_whole_message_is_logged(aws, logs):
    message = long_message()
    with pytest.raises(VerifyFailed) as raised:
        guarded(None, VerifyFailed(message))()
    cut = str(raised.value)
    assert text.json_length(cut) <= causes.MESSAGE_LIMIT
    assert cut.endswith("the whole message: the log of Lambda function ferry-prod-render, request request-1")
    assert any(line["message"] == message and line["level"] == "ERROR" for line in logs())


def test_without_an_execution_nothing_is_written_and_the_whole_message_is_logged(aws, logs):
    boto3.client("s3").create_bucket(Bucket="ferry-artefacts")
    with pytest.raises(TemplateUnresolved) as raised:
        guarded("ferry-artefacts", TemplateUnresolved(long_message()), execution=None)()
    assert "the log of Lambda function ferry-prod-render" in str(raised.value)
    assert boto3.client("s3").list_objects_v2(Bucket="ferry-artefacts").get("KeyCount") == 0
    assert any(line["level"] == "ERROR" for line in logs())


def test_a_failed_write_still_cuts_the_message_and_logs_it_whole(aws, logs):
    message = long_message()  # no bucket was created: the write fails
    with pytest.raises(TemplateUnresolved) as raised:
        guarded("ferry-artefacts", TemplateUnresolved(message))()
    assert text.json_length(str(raised.value)) <= causes.MESSAGE_LIMIT
    assert "the log of Lambda function ferry-prod-render" in str(raised.value)
    assert any(line["message"] == message for line in logs())


def test_an_exception_that_quotes_its_message_is_replaced_by_one_of_the_same_name(aws):
    with pytest.raises(Exception) as raised:
        guarded(None, KeyError(long_message()))()
    assert type(raised.value).__name__ == "KeyError"  # the errorType the Lambda runtime reports
    assert text.json_length(str(raised.value)) <= causes.MESSAGE_LIMIT


def test_a_cause_of_the_limit_fits_step_functions_with_room_to_spare():
    # The Cause is the runtime's error document: the message (escaped) beside the type and the stack trace.
    document = json.dumps({"errorType": "TemplateUnresolved", "errorMessage": "x" * causes.MESSAGE_LIMIT})
    assert len(document) <= 32768 // 4


def test_every_handler_is_guarded_and_writes_the_whole_message_only_where_its_role_may():
    from tests.infra.test_template import FUNCTIONS, ROOT, _name_of, granted, iam_matches

    error_object = f"arn:aws:s3:::{_name_of('ArtefactsBucket')}/executions/exec-1/errors/f/request-1.txt"
    for logical_id, folder in FUNCTIONS.items():
        source = (ROOT / folder / "app.py").read_text()
        may_write = any(iam_matches(arn, error_object) for arn in granted(logical_id).get("s3:PutObject", []))
        guard = "@causes.guard(SETTINGS.artefacts_bucket)" if may_write else "@causes.guard(None)"
        assert f"@logger.inject_lambda_context(clear_state=True)\n{guard}" in source, (logical_id, guard)
