"""Causes that fit: a handler's error message, cut to a size Step Functions carries, the whole of it kept.

A Lambda step that raises ends its Task state with the runtime's error document as Cause, JSON text: the Python
runtime (awslambdaric's bootstrap.py, make_error) writes `errorMessage` str(exception), `errorType` its class's
__name__ (what Retry and Catch match) and `stackTrace` the frames. The state's Catch puts {Error, Cause} under
$.failure, and "Release the deploy lock after the failure" passes the whole state on. Two limits apply, and
neither leaves the execution on its failure path when it is passed:

- a Cause is at most 32768 characters (the `cause` of ExecutionFailedEventDetails, TaskFailedEventDetails and
  LambdaFunctionFailedEventDetails in the Step Functions API reference; botocore's stepfunctions model,
  SensitiveCause: "max": 32768);
- a state's input or output is at most 256 KiB (262144 bytes of UTF-8: the Step Functions quotas page, "Maximum
  input or output size for a task, state, or execution"). Past it the state fails with States.DataLimitExceeded,
  "a terminal error which cannot be caught by the States.ALL error type" (the developer guide's "Handling errors"):
  no Catch runs, so no lock is released by the state machine and no "Deploy failed" says what went wrong.

A template with 500 unresolved placeholders makes a 133 KB message: four times what a Cause may hold, and with the
error document's stackTrace enough to bring Render's output under the Catch close to 256 KiB. Every step's problem
lists are one problem a line (templating's placeholders, the config's and manifest's schema errors, Verify's
references, a template's missing containers), built where each is found; rather than bound each of them, and every
AWS or ECS text a step repeats, this guard sits where they all pass: the handler, the one place that knows the
execution, the function and whether its role may write to the artefacts bucket. A message whose JSON text is longer
than MESSAGE_LIMIT keeps its first lines (the count and the first problems), a count of the lines left out, and
where the whole message is: an object in the artefacts bucket (executions/<execution>/errors/<function>/<request
id>.txt), or this function's log when it has no execution or may not write there. Messages name things and paths,
never a secret's value, and the whole is written unchanged."""

from __future__ import annotations

import functools
from typing import Any, Callable

from ferry import text
from ferry.runtime.observability import logger

# The message's JSON text (text.json_length), well under a Cause's 32768 characters: the error document also
# carries the stack trace, and the Rolled back and Rollback failed Causes quote the failure's Cause after a
# sentence of their own.
MESSAGE_LIMIT = 4096

Handler = Callable[[Any, Any], Any]


def guard(artefacts_bucket: str | None) -> Callable[[Handler], Handler]:
    """The decorator every handler is wrapped in, inside the Logger's (which clears the last invocation's keys, so
    the execution read is the one this invocation bound): an exception whose message is too long for a Cause is
    raised with the message cut (see fit). `artefacts_bucket`: where the whole message is written, or None for a
    function whose role may not write to the artefacts bucket."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def guarded(event: Any, context: Any) -> Any:
            try:
                return handler(event, context)
            except Exception as exc:
                fitted = fit(exc, artefacts_bucket, context)
                if fitted is exc:
                    raise
                raise fitted from None

        return guarded

    return decorate


def fit(exc: Exception, artefacts_bucket: str | None, context: Any) -> Exception:
    """`exc` itself when its message fits; else the exception to raise in its place, of the same class name (the
    state machine's Retry and Catch match that) with the message cut to MESSAGE_LIMIT."""
    message = str(exc)
    if text.json_length(message) <= MESSAGE_LIMIT:
        return exc
    short = text.fit_lines(message, MESSAGE_LIMIT, keep(message, artefacts_bucket, context))
    exc.args = (short,)
    if str(exc) == short:
        return exc
    # An exception that renders its message itself (a KeyError quotes it): one of the same name that does not.
    return type(type(exc).__name__, (Exception,), {"__module__": type(exc).__module__})(short)


def keep(message: str, artefacts_bucket: str | None, context: Any) -> str:
    """Write the whole `message` where it can be read later; returns where, as the cut message says it."""
    function = getattr(context, "function_name", None) or "ferry"
    request = getattr(context, "aws_request_id", None) or "unknown"
    execution = logger.get_correlation_id()  # bound by the handler (observability.bind) once it read its input
    if artefacts_bucket and execution:
        from ferry.aws import artefacts

        try:
            key = artefacts.put_text(artefacts_bucket, execution, f"errors/{function}/{request}.txt", message)
        except Exception as exc:  # the message still goes out, cut, with the whole of it in the log
            logger.warning("the error's whole message could not be written to the artefacts bucket", exc_info=exc)
        else:
            logger.warning(
                "the error's message is too long for a Cause: cut, the whole of it in the artefacts bucket",
                extra={"artefact": f"s3://{artefacts_bucket}/{key}", "characters": len(message)},
            )
            return f"s3://{artefacts_bucket}/{key}"
    logger.error(message, extra={"characters": len(message)})
    return f"the log of Lambda function {function}, request {request}"
