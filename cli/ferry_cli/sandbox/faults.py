"""What goes wrong on AWS, injected into a sandbox run (tests/statemachine/test_faults.py).

`Faults` holds the faults of one run, deterministic for a seed: `ApiFault` answers the handlers' calls to an
AWS service with errors (throttling, 5xx, no answer at all), `LambdaFault` makes handler invocations crash,
time out or be refused by Lambda, and `Faults.interrupt_task` stops a task the way ECS itself does.

The handlers' clients meet AWS's own request throttling (aws_rules.Throttle) and the injected API errors in one
place: `client_patches` gives every client made with ferry.aws.RETRY_CONFIG a first `before-send` hook that
answers a refused attempt with the error response AWS would send, in the service's wire protocol, so botocore
retries it (on the simulated clock: clock.wait_patches) as it would on AWS.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator
from unittest import mock

from . import SandboxError

if TYPE_CHECKING:
    from .sandbox import Sandbox

FAULT_HEADER = "x-ferry-sandbox-fault"  # marks a request the fault hook answered, so moto does not also run it
# HTTP status of the error codes an ApiFault may answer with (any other code: 500).
ERROR_STATUS = {
    "ThrottlingException": 400,
    "Throttling": 400,
    "ThrottledException": 400,
    "RequestLimitExceeded": 400,
    "ProvisionedThroughputExceededException": 400,
    "RequestThrottled": 400,
    "TooManyRequestsException": 429,
    "SlowDown": 503,
    "InternalServerError": 500,
    "InternalFailure": 500,
    "ServerException": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
}
THROTTLING = {
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
}
# No answer at all: botocore raises these, as when the request never reached AWS.
NETWORK_ERRORS = ("ConnectTimeout", "EndpointConnectionError")


class InjectedCrash(Exception):
    """What a handler raises when a LambdaFault crashes it: the state sees the Error `InjectedCrash`."""


@dataclass(frozen=True)
class ApiFault:
    """Answer a fraction of the handlers' calls to one AWS service with an error, as AWS does when it throttles.

    `service` is the boto3 name (ecs, elbv2, ecr, dynamodb, s3, ...). `rate` is the fraction of attempts
    (botocore's own retries included) that fail. Each failed attempt gets one of `errors`: an error code
    (status from ERROR_STATUS, e.g. ThrottlingException 400, ServiceUnavailable 503), a (code, status) pair,
    or one of NETWORK_ERRORS (ConnectTimeout, EndpointConnectionError: botocore raises it, AWS never saw the
    request). `operations` limits it to those operations (PutItem, RunTask, ...), `body_contains` to requests
    whose body contains that text (a table's item key, a resource's name); `limit` ends it after that many
    failed attempts (an outage of a given length). Only the handlers' clients (made with
    ferry.aws.RETRY_CONFIG) are affected, never the sandbox's or the test's own.
    """

    service: str
    rate: float = 1.0
    errors: tuple[Any, ...] = ("ThrottlingException",)
    operations: tuple[str, ...] = ()
    body_contains: str = ""
    limit: int | None = None


def state_step(function: str, event: Any) -> str | None:
    """The step an invocation belongs to: `Function:action` (or `Function`) for an invocation by the state machine,
    None for an event EventBridge delivered (router, ECS and alarm events, status changes)."""
    if not isinstance(event, dict) or "detail-type" in event:
        return None
    action = event.get("action")
    return f"{function}:{action}" if isinstance(action, str) else function


# Lambda's Invoke errors a LambdaFault of kind "unavailable" may answer with, and their HTTP status (botocore's
# Lambda model, Invoke errors: CodeArtifactUserPendingException 409 "its code artifact user is still being
# provisioned", ResourceNotReadyException 502 "The function is inactive", TooManyRequestsException 429,
# ServiceException 500). Step Functions reports each to the state as Lambda.<code>.
LAMBDA_API_ERRORS = {
    "CodeArtifactUserPendingException": 409,
    "ResourceNotReadyException": 502,
    "TooManyRequestsException": 429,
    "ServiceException": 500,
}


@dataclass(frozen=True)
class LambdaFault:
    """Make handler invocations fail the way Lambda reports it.

    kind "crash": the handler raises InjectedCrash before it does anything (Error `InjectedCrash`).
    kind "timeout": the handler runs (what it did stays done), then the function's Timeout from template.yaml
    runs out before it returns. `error` says how Step Functions reports it: "Sandbox.Timedout" (the default:
    newer runtimes put that errorType in the payload) or "Lambda.Unknown" (the payload has no errorType, and the
    Cause is plain text), as the Step Functions developer guide says either can happen
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
    kind "unavailable": Lambda refuses the Invoke call itself (a function idle for weeks, or still being
    provisioned): `error` is one of LAMBDA_API_ERRORS (default CodeArtifactUserPendingException); the
    handler never runs and the state sees Lambda.<error>.
    `step` maps (logical function id, event) to a step key, or None for invocations left alone (default:
    state_step, every invocation by the state machine). `times` is how many invocations of each step fail
    (None: all of them).
    """

    kind: str = "crash"
    step: Callable[[str, Any], str | None] | None = None
    times: int | None = 1
    error: str | None = None


class Faults:
    """What goes wrong during one sandbox run, deterministic for a seed; pass it as `faults=` to world_session or run.

    Whether an ApiFault fails an attempt is a function of (seed, service, operation, how many attempts of that
    operation came before): the n-th attempt of an operation fails, or not, alike on every run with the same
    seed. `report()` (the run summary's `faults`) counts the handlers' calls (botocore's invocation ids) and
    attempts to the faulted services, the errors injected, the most attempts one call took, and the calls that
    gave up (their last attempt failed, so the handler saw the error).
    """

    def __init__(
        self,
        api: tuple[ApiFault, ...] | list[ApiFault] = (),
        lambdas: tuple[LambdaFault, ...] | list[LambdaFault] = (),
        *,
        seed: int = 0,
    ) -> None:
        for fault in lambdas:
            if fault.kind not in ("crash", "timeout", "unavailable"):
                raise SandboxError(f"LambdaFault kind must be crash, timeout or unavailable, got {fault.kind!r}")
            if fault.kind == "timeout" and fault.error not in (None, "Sandbox.Timedout", "Lambda.Unknown"):
                raise SandboxError(f"a timeout is reported as Sandbox.Timedout or Lambda.Unknown, not {fault.error!r}")
            if fault.kind == "unavailable" and fault.error not in (None, *LAMBDA_API_ERRORS):
                raise SandboxError(
                    f"an unavailable function answers one of {sorted(LAMBDA_API_ERRORS)}, not {fault.error!r}"
                )
        self.api, self.lambdas, self.seed = tuple(api), tuple(lambdas), seed
        self.sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self._sent: Counter[tuple[str, str]] = Counter()  # (service, operation) -> attempts the handlers sent
        self._injected: Counter[tuple[str, str]] = Counter()  # (service, operation) -> attempts answered with an error
        self._by_rule: Counter[int] = Counter()  # ApiFault index -> attempts it failed
        self._calls: dict[str, dict[str, Any]] = {}  # botocore invocation id -> its attempts
        self._stepped: Counter[tuple[int, str]] = Counter()  # (lambda fault, step) -> invocations faulted
        self.lambda_faults: list[dict[str, str]] = []  # {"function", "step", "kind"} per faulted invocation
        self.interrupted: list[dict[str, str]] = []  # tasks stopped by interrupt_task

    def _draw(self, *key: Any) -> float:
        digest = hashlib.sha256("|".join(str(k) for k in (self.seed, *key)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def api_error(self, service: str, operation: str, headers: Any, body: Any = b"") -> tuple[str, int] | None:
        """Count one attempt the handlers sent; the (code, status) to answer it with, or None to let it through."""
        if not any(rule.service == service for rule in self.api):
            return None
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")

        def header(name: str) -> str:
            value = headers.get(name) or ""
            return value.decode() if isinstance(value, bytes) else str(value)

        call_id = header("amz-sdk-invocation-id") or str(uuid.uuid4())  # botocore's id of the call, across its attempts
        retry_info = dict(part.strip().split("=", 1) for part in header("amz-sdk-request").split(";") if "=" in part)
        attempt = int(retry_info.get("attempt", 1))
        with self._lock:
            n = self._sent[(service, operation)]
            self._sent[(service, operation)] += 1
            error = None
            for i, rule in enumerate(self.api):
                if (
                    rule.service != service
                    or (rule.operations and operation not in rule.operations)
                    or rule.body_contains not in text
                    or (rule.limit is not None and self._by_rule[i] >= rule.limit)
                ):
                    continue
                if self._draw(service, operation, n, i) < rule.rate:
                    choice = rule.errors[int(self._draw(service, operation, n, i, "error") * len(rule.errors))]
                    code, status = (
                        choice
                        if isinstance(choice, tuple)
                        else (choice, 0 if choice in NETWORK_ERRORS else ERROR_STATUS.get(choice, 500))
                    )
                    error = (str(code), int(status))
                    self._by_rule[i] += 1
                    break
            call = self._calls.setdefault(call_id, {"service": service, "operation": operation, "attempts": 0})
            if attempt >= call["attempts"]:
                call["attempts"], call["failed"] = attempt, error is not None
            if error is not None:
                self._injected[(service, operation)] += 1
        return error

    def lambda_fault(self, function: str, event: Any) -> tuple[LambdaFault, str] | None:
        """The fault (and step) this invocation suffers, if any; each counts against its `times`."""
        for i, fault in enumerate(self.lambdas):
            step = (fault.step or state_step)(function, event)
            if step is None:
                continue
            with self._lock:
                if fault.times is not None and self._stepped[(i, step)] >= fault.times:
                    continue
                self._stepped[(i, step)] += 1
                self.lambda_faults.append({"function": function, "step": step, "kind": fault.kind})
            return fault, step
        return None

    def interrupt_task(
        self, task_arn: str, stop_code: str = "SpotInterruption", reason: str = "Your Spot Task was interrupted."
    ) -> None:
        """Stop a task the way ECS itself does (a Spot interruption; TerminationNotice for a host retirement),
        not through StopTask: the task drains, stops and gets the stop code and reason."""
        simulator = self.sandbox.simulator if self.sandbox is not None else None
        if simulator is None:
            raise SandboxError("interrupt_task needs a running sandbox with the ECS simulator")
        if not simulator.interrupt_task(task_arn, stop_code, reason):
            raise SandboxError(f"interrupt_task: no simulated task {task_arn}")
        with self._lock:
            self.interrupted.append({"taskArn": task_arn, "stopCode": stop_code, "reason": reason})

    def report(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self._calls.values())
            services: dict[str, dict[str, int]] = {}
            for (service, _op), sent in self._sent.items():
                entry = services.setdefault(
                    service, {"calls": 0, "attempts": 0, "injected": 0, "maxAttempts": 0, "gaveUp": 0}
                )
                entry["attempts"] += sent
                entry["injected"] += self._injected[(service, _op)]
            for call in calls:
                entry = services[call["service"]]
                entry["calls"] += 1
                entry["maxAttempts"] = max(entry["maxAttempts"], call["attempts"])
                entry["gaveUp"] += bool(call.get("failed"))
            return {
                "calls": len(calls),
                "attempts": sum(self._sent.values()),
                "injected": sum(self._injected.values()),
                "maxAttemptsPerCall": max((c["attempts"] for c in calls), default=0),
                "gaveUp": sum(1 for c in calls if c.get("failed")),  # last attempt failed: the handler saw the error
                "services": services,
                "lambda": list(self.lambda_faults),
                "interrupted": list(self.interrupted),
            }


# ------------------------------------------------------------------ how an error reaches the caller
# moto-coupled: an injected answer is a moto response object, and moto's own stub is told to let it be.
class LambdaApiError(Exception):
    """Marks an Invoke refused by Lambda (see lambda_api_error)."""


def lambda_api_error(code: str, function: str) -> Exception:
    """Lambda's answer to an Invoke it refuses, as moto's Lambda would send it (a JSON error with its status)."""
    from moto.awslambda.exceptions import LambdaClientError

    messages = {
        "CodeArtifactUserPendingException": "The Lambda function couldn't be invoked because its code artifact user "
        "is still being provisioned. Wait for the function's State to become "
        "Active and try the request again.",
        "ResourceNotReadyException": "The function is inactive and its VPC connection is no longer available. Wait "
        "for the VPC connection to reestablish and try again.",
        "TooManyRequestsException": "Rate Exceeded.",
        "ServiceException": "The Lambda service encountered an internal error.",
    }
    error = type("RefusedInvoke", (LambdaClientError, LambdaApiError), {"code": LAMBDA_API_ERRORS[code]})(
        code, f"{messages[code]} (fault injected by the sandbox into {function})"
    )
    return error


def error_response(
    protocol: str, service: str, operation: str, error: tuple[str, int], url: str, message: str | None = None
) -> Any:
    """An AWS error response in the service's wire protocol (`message`: AWS's own words; else a fault's)."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    code, status = error
    if protocol == "query" and code == "ThrottlingException":
        code = "Throttling"  # what the Query services (ELB, IAM, STS) call it
    what = "Rate exceeded" if code in THROTTLING else "Service unavailable, try again"
    message = message or f"{what} (fault injected by the sandbox into {service} {operation})"
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "json":
        headers["Content-Type"] = "application/x-amz-json-1.1"
        body = json.dumps({"__type": code, "message": message})
    elif protocol == "rest-json":
        headers.update({"Content-Type": "application/json", "x-amzn-ErrorType": code})
        body = json.dumps({"message": message})
    elif protocol == "query":
        headers["Content-Type"] = "text/xml"
        body = (
            f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    elif protocol == "rest-xml":
        headers["Content-Type"] = "application/xml"
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    else:
        raise SandboxError(f"ApiFault: {service} speaks {protocol}, which the sandbox cannot fake errors in")
    return AWSResponse(url, status, headers, MockRawResponse(body))


def client_patches(sandbox: Sandbox) -> Iterator[Any]:
    """The handlers' clients answer to AWS's request throttling and to `sandbox.faults`.

    Every client made with ferry.aws.RETRY_CONFIG (the handlers' clients) gets a first `before-send` hook that
    answers the attempts throttling refuses or Faults fails; moto's own before-send stub lets those requests go,
    so they never run. The sandbox's own clients and the tests' are never affected.
    """
    import boto3.session
    from moto.core.botocore_stubber import BotocoreStubber

    from ferry import aws

    create = boto3.session.Session.client

    def client(session: Any, *args: Any, **kwargs: Any) -> Any:
        key = _pool_key(session, args, kwargs)
        if key in _POOL:
            return _POOL[key]
        made = create(session, *args, **kwargs)
        if kwargs.get("config") is aws.RETRY_CONFIG:
            model = made.meta.service_model
            made.meta.events.register_first(
                "before-send", functools.partial(_answer, sandbox, model.service_name, model.protocol)
            )
        if key is not None and made.meta.region_name == key[1]:
            _POOL[key] = made
        return made

    stub = BotocoreStubber.__call__

    def stubbed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if FAULT_HEADER in request.headers:  # answered with an injected error: it never reached AWS
            return None
        return stub(stubber, event_name, request, **kwargs)

    yield mock.patch.object(boto3.session.Session, "client", client)
    yield mock.patch.object(BotocoreStubber, "__call__", stubbed)


# The sandbox's own clients and the tests' (asked for by service and region alone, with no config), kept for every
# sandbox in the process by (service, region). botocore takes about 8 ms to make a client and each sandbox made
# some twenty of these. Such a client keeps nothing of the sandbox it was made in: its only hook reports to the
# enforcement running now (aws_rules), its credentials are the sandbox's fixed test keys, its default retry mode
# keeps no state between calls, and moto answers it from whatever account is mocked now. The handlers' clients
# (ferry.aws.RETRY_CONFIG) are never kept: adaptive retries carry a rate limiter and a retry quota, which must
# start afresh in every sandbox.
_POOL: dict[tuple[str, str], Any] = {}


def _pool_key(session: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    names = dict(zip(("service_name", "region_name"), args), **kwargs)
    if len(args) > 2 or set(names) - {"service_name", "region_name"} or "service_name" not in names:
        return None
    region = names.get("region_name") or session.region_name or os.environ.get("AWS_DEFAULT_REGION")
    return (names["service_name"], region) if region else None


def _answer(sandbox: Sandbox, service: str, protocol: str, request: Any, event_name: str, **_: Any) -> Any:
    """before-send of a handler's client: None to let the request through, or the error response: AWS's
    request throttling (aws_rules.RATES, on the simulated clock) first, then the injected faults."""
    operation = event_name.rsplit(".", 1)[-1]
    if not sandbox.throttle.take(service, operation):
        request.headers[FAULT_HEADER] = "ThrottlingException"
        return error_response(
            protocol, service, operation, ("ThrottlingException", 400), request.url, message="Rate exceeded"
        )
    if sandbox.faults is None:
        return None
    error = sandbox.faults.api_error(service, operation, request.headers, request.body)
    if error is None:
        return None
    if error[0] in NETWORK_ERRORS:  # raised here, the request goes no further: botocore retries it
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

        raise (ConnectTimeoutError if error[0] == "ConnectTimeout" else EndpointConnectionError)(
            endpoint_url=request.url
        )
    request.headers[FAULT_HEADER] = error[0]
    return error_response(protocol, service, operation, error, request.url)
