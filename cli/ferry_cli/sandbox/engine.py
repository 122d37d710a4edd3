"""The local sandbox: the real state machine, on this machine, with no AWS account.

moto stands in for AWS. Its Step Functions interpreter runs
`statemachine/deploy.asl.json` with the template's DefinitionSubstitutions;
each Lambda task is dispatched to the in-process handler that template.yaml
names; EventBridge events are matched against the rule patterns in
template.yaml and delivered to their targets; and the ECS simulator moves
services and tasks along on the simulated clock.

Step Functions' own "Step Functions Execution Status Change" events (source
aws.states), which moto never emits, are emitted here as AWS sends them to
EventBridge: RUNNING when an execution starts, then its terminal status, each
delivered through `deliver`, so the template's rule patterns decide who gets
them (`status_events` records each; tests/sandbox/test_engine_status_events.py).

Each moto divergence worked around here is a small, named patch (see
`_patches`), covered by tests/sandbox/test_engine.py and, for task timeouts and
task-token callbacks, tests/sandbox/test_engine_callbacks.py (StopExecution's
error and cause: tests/sandbox/test_engine_status_events.py).

`Faults` injects what goes wrong on AWS (tests/statemachine/test_faults.py):
AWS API errors answered to the handlers' clients (throttling, 5xx), handler
crashes and Lambda timeouts, and tasks ECS itself stops. botocore's retry
back-off and adaptive rate limiting wait on the simulated clock.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import importlib.util
import io
import json
import logging
import os
import queue
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Iterator
from unittest import mock

import boto3

from . import aws_rules
from .clock import SimClock
from .template import Resolver, Template, physical_resources, substitute_definition

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
ENVIRONMENT = "sandbox"
MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


class SandboxError(Exception):
    """The sandbox could not be set up or run as asked."""


class _LogSink(io.TextIOBase):
    """Collects the handlers' structured log lines (and optionally echoes them)."""

    def __init__(self, echo: io.TextIOBase | None = None) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._echo = echo

    def write(self, text: str) -> int:
        with self._lock:
            for line in text.splitlines():
                if line.strip():
                    self.lines.append(line)
                    if self._echo is not None:
                        self._echo.write(line + "\n")
        return len(text)


class _ScaledTime:
    """Stands in for the `time` module where the interpreter sleeps between retries."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        time.sleep(self._clock.real_seconds(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _ScaledEvent(threading.Event):
    """A threading.Event whose wait(timeout) counts simulated seconds."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            timeout = min(self._clock.real_seconds(timeout), threading.TIMEOUT_MAX)
        return super().wait(timeout)


class _ScaledThreading:
    """Stands in for the `threading` module where the interpreter waits out a state's TimeoutSeconds."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def Event(self) -> _ScaledEvent:  # noqa: N802 (the name threading uses)
        return _ScaledEvent(self._clock)

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


class _ScaledCondition(threading.Condition):
    """A threading.Condition whose wait(timeout) counts simulated seconds."""

    def __init__(self, clock: SimClock, lock: Any = None) -> None:
        super().__init__(lock)
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            timeout = min(self._clock.real_seconds(timeout), threading.TIMEOUT_MAX)
        return super().wait(timeout)


class _BotocoreThreading(_ScaledThreading):
    """Stands in for the `threading` module of botocore's token bucket (adaptive mode waits for capacity)."""

    def Condition(self, lock: Any = None) -> _ScaledCondition:  # noqa: N802 (the name threading uses)
        return _ScaledCondition(self._clock, lock)


class _BotocoreClock:
    """botocore.retries.bucket.Clock on the simulated clock: adaptive mode measures send rates and waits in it.

    Subclassed per sandbox with `clock` set (botocore creates it with no arguments)."""

    clock: SimClock

    def sleep(self, amount: float) -> None:
        time.sleep(self.clock.real_seconds(amount))

    def current_time(self) -> float:
        return self.clock.now()


# ------------------------------------------------------------------ faults
FAULT_HEADER = "x-ferry-sandbox-fault"  # marks a request the fault hook answered, so moto does not also run it
# HTTP status of the error codes an ApiFault may answer with (any other code: 500).
ERROR_STATUS = {
    "ThrottlingException": 400, "Throttling": 400, "ThrottledException": 400, "RequestLimitExceeded": 400,
    "ProvisionedThroughputExceededException": 400, "RequestThrottled": 400, "TooManyRequestsException": 429,
    "SlowDown": 503, "InternalServerError": 500, "InternalFailure": 500, "ServerException": 500,
    "ServiceUnavailable": 503, "ServiceUnavailableException": 503,
}
THROTTLING = {"ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded",
              "ProvisionedThroughputExceededException", "RequestThrottled", "TooManyRequestsException", "SlowDown"}
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
LAMBDA_API_ERRORS = {"CodeArtifactUserPendingException": 409, "ResourceNotReadyException": 502,
                     "TooManyRequestsException": 429, "ServiceException": 500}


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

    def __init__(self, api: tuple[ApiFault, ...] | list[ApiFault] = (),
                 lambdas: tuple[LambdaFault, ...] | list[LambdaFault] = (), *, seed: int = 0) -> None:
        for fault in lambdas:
            if fault.kind not in ("crash", "timeout", "unavailable"):
                raise SandboxError(f"LambdaFault kind must be crash, timeout or unavailable, got {fault.kind!r}")
            if fault.kind == "timeout" and fault.error not in (None, "Sandbox.Timedout", "Lambda.Unknown"):
                raise SandboxError(f"a timeout is reported as Sandbox.Timedout or Lambda.Unknown, not {fault.error!r}")
            if fault.kind == "unavailable" and fault.error not in (None, *LAMBDA_API_ERRORS):
                raise SandboxError(f"an unavailable function answers one of {sorted(LAMBDA_API_ERRORS)}, "
                                   f"not {fault.error!r}")
        self.api, self.lambdas, self.seed = tuple(api), tuple(lambdas), seed
        self.sandbox: "Sandbox | None" = None
        self._lock = threading.Lock()
        self._sent: Counter[tuple[str, str]] = Counter()      # (service, operation) -> attempts the handlers sent
        self._injected: Counter[tuple[str, str]] = Counter()  # (service, operation) -> attempts answered with an error
        self._by_rule: Counter[int] = Counter()               # ApiFault index -> attempts it failed
        self._calls: dict[str, dict[str, Any]] = {}           # botocore invocation id -> its attempts
        self._stepped: Counter[tuple[int, str]] = Counter()   # (lambda fault, step) -> invocations faulted
        self.lambda_faults: list[dict[str, str]] = []         # {"function", "step", "kind"} per faulted invocation
        self.interrupted: list[dict[str, str]] = []           # tasks stopped by interrupt_task

    def _draw(self, *key: Any) -> float:
        digest = hashlib.sha256("|".join(str(k) for k in (self.seed, *key)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64

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
                if (rule.service != service or (rule.operations and operation not in rule.operations)
                        or rule.body_contains not in text
                        or (rule.limit is not None and self._by_rule[i] >= rule.limit)):
                    continue
                if self._draw(service, operation, n, i) < rule.rate:
                    choice = rule.errors[int(self._draw(service, operation, n, i, "error") * len(rule.errors))]
                    code, status = choice if isinstance(choice, tuple) else (
                        choice, 0 if choice in NETWORK_ERRORS else ERROR_STATUS.get(choice, 500))
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

    def interrupt_task(self, task_arn: str, stop_code: str = "SpotInterruption",
                       reason: str = "Your Spot Task was interrupted.") -> None:
        """Stop a task the way ECS itself does (a Spot interruption; TerminationNotice for a host retirement),
        not through StopTask: the task drains, stops and gets the stop code and reason."""
        simulator = self.sandbox.simulator if self.sandbox is not None else None
        if simulator is None:
            raise SandboxError("interrupt_task needs a running sandbox with the ECS simulator")
        with simulator._step():
            task = simulator._tasks.get(task_arn)
            if task is None:
                raise SandboxError(f"interrupt_task: no simulated task {task_arn}")
            simulator._begin_stop(task, stop_code, reason)
            if task.service is not None:
                simulator._reconcile(task.service)  # ECS replaces a service's task
        with self._lock:
            self.interrupted.append({"taskArn": task_arn, "stopCode": stop_code, "reason": reason})

    def report(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self._calls.values())
            services: dict[str, dict[str, int]] = {}
            for (service, _op), sent in self._sent.items():
                entry = services.setdefault(service, {"calls": 0, "attempts": 0, "injected": 0, "maxAttempts": 0,
                                                      "gaveUp": 0})
                entry["attempts"] += sent
                entry["injected"] += self._injected[(service, _op)]
            for call in calls:
                entry = services[call["service"]]
                entry["calls"] += 1
                entry["maxAttempts"] = max(entry["maxAttempts"], call["attempts"])
                entry["gaveUp"] += bool(call.get("failed"))
            return {
                "calls": len(calls), "attempts": sum(self._sent.values()), "injected": sum(self._injected.values()),
                "maxAttemptsPerCall": max((c["attempts"] for c in calls), default=0),
                "gaveUp": sum(1 for c in calls if c.get("failed")),  # last attempt failed: the handler saw the error
                "services": services,
                "lambda": list(self.lambda_faults),
                "interrupted": list(self.interrupted),
            }


class LambdaApiError(Exception):
    """Marks an Invoke refused by Lambda (see _lambda_api_error)."""


def _lambda_api_error(code: str, function: str) -> Exception:
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
        code, f"{messages[code]} (fault injected by the sandbox into {function})")
    return error


def _error_response(protocol: str, service: str, operation: str, error: tuple[str, int], url: str,
                    message: str | None = None) -> Any:
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
        body = (f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    elif protocol == "rest-xml":
        headers["Content-Type"] = "application/xml"
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    else:
        raise SandboxError(f"ApiFault: {service} speaks {protocol}, which the sandbox cannot fake errors in")
    return AWSResponse(url, status, headers, MockRawResponse(body))


@dataclass(frozen=True)
class EventDelivery:
    """How events reach their Lambda targets, as AWS delivers them.

    EventBridge invokes a Lambda target asynchronously. "If the function returns an error, by default Lambda
    attempts to run it two more times, with a one-minute wait between the first two attempts, and two minutes
    between the second and third attempts" (Lambda developer guide, invocation-async-error-handling.html); the
    template's EventInvokeConfig sets how many, and where the event goes after the last (its OnFailure
    destination). Delivery is at least once ("it's possible for it to receive the same event from Lambda multiple
    times", same page): `duplicates` is the fraction of deliveries that also arrive a second time,
    `duplicate_after` simulated seconds later, chosen by a hash of (seed, event id, function), so the same run
    duplicates the same deliveries.
    """

    duplicates: float = 0.0
    seed: int = 0
    retry_after: tuple[float, ...] = (60.0, 120.0)
    duplicate_after: float = 1.0

    def duplicated(self, event_id: str, function: str) -> bool:
        if self.duplicates <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}|{event_id}|{function}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.duplicates


class Sandbox:
    """One sandboxed Ferry installation. Use as a context manager."""

    def __init__(self, *, root: Path = REPO_ROOT, speed: float = 60.0, account: str = DEFAULT_ACCOUNT,
                 region: str = DEFAULT_REGION, clusters: list[str] | None = None,
                 log_echo: io.TextIOBase | None = None, faults: Faults | None = None,
                 delivery: EventDelivery | None = None) -> None:
        self.root = root
        self.delivery = delivery or EventDelivery()
        self.deliveries = {"invocations": 0, "duplicates": 0, "retries": 0}  # counted by _attempt
        self.dead_letters: list[dict[str, Any]] = []  # {"function", "record"}: retries exhausted
        self._redeliveries: list[tuple] = []  # heap of (due, seq, function, rule, event, attempt)
        self._redelivery_lock = threading.Lock()
        self._redelivery_seq = 0
        self._redeliverer: threading.Thread | None = None
        self.clock = SimClock(speed=speed)
        self.account = account
        self.region = region
        self.clusters = clusters or ["default"]
        self.template = Template.load(root)
        self.logs = _LogSink(log_echo)
        self.lambda_invocations = 0
        self.handler_seconds: dict[str, list[float]] = {}  # logical function id -> real seconds of each invocation
        self.fault_hooks: list[Callable[[str, dict], None]] = []
        self._alarm_stamps: dict[str, str] = {}  # alarm name -> when it last changed state
        self._aborted: dict[str, datetime] = {}  # execution ARN -> when StopExecution stopped it
        self._in_flight = 0  # handler invocations running now (a stopped execution's may outlive it)
        self.terminal_errors: list[str] = []  # States.Runtime and States.DataLimitExceeded raised (never caught)
        self.faults = faults
        if faults is not None:
            faults.sandbox = self
        self.simulator: Any = None
        self.throttle = aws_rules.Throttle(self.clock.now)  # AWS's request throttling of the handlers' calls
        self._stack = ExitStack()
        self._functions: dict[str, dict[str, Any]] = {}   # physical name -> {logical, module path, env}
        self._modules: dict[str, ModuleType] = {}
        self._invoke_lock = threading.Lock()
        self._stop = threading.Event()
        self._driver: threading.Thread | None = None
        # Execution status change events: queued in moto's threads, delivered in order by one emitter thread.
        self.status_events: list[dict[str, Any]] = []  # {"event", "targets", "error"} per delivered event
        self._status_queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._status_order = threading.Lock()    # an execution's RUNNING is queued before its terminal status
        self._status_cv = threading.Condition()  # guards _status_pending
        self._status_pending = 0                 # changes announced (or about to be) and not yet delivered
        self._emitter: threading.Thread | None = None
        self.refs: dict[str, Any] = {}
        self.attrs: dict[tuple[str, str], str] = {}

    # ----------------------------------------------------------------- set-up
    def __enter__(self) -> "Sandbox":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        from moto import mock_aws

        env = {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
            "MOTO_ACCOUNT_ID": self.account, "POWERTOOLS_METRICS_DISABLED": "false",
        }
        self._stack.enter_context(mock.patch.dict(os.environ, env))  # restores the whole environment on close
        for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            os.environ.pop(var, None)
        self._stack.enter_context(mock_aws(config=MOTO_CONFIG))
        self.enforcement = self._stack.enter_context(aws_rules.enforce())  # AWS's request rules and page sizes
        for patcher in self._patches():
            self._stack.enter_context(patcher)
        for patcher in self._status_hooks():
            self._stack.enter_context(patcher)
        logging.getLogger("moto").setLevel(logging.CRITICAL)

        from ferry import aws
        from ferry.runtime import clock as ferry_clock

        aws.reset()
        ferry_clock.use(self.clock.now)
        self._stack.callback(ferry_clock.use, None)
        self._stack.callback(aws.reset)
        self._deploy_stack()
        self._emitter = threading.Thread(target=self._emit_status_events, name="ferry-sandbox-status-events",
                                         daemon=True)
        self._emitter.start()
        self._redeliverer = threading.Thread(target=self._redeliver, name="ferry-sandbox-redeliveries", daemon=True)
        self._redeliverer.start()

    def close(self) -> None:
        self._stop.set()
        if self._driver is not None:
            self._driver.join(timeout=5)
        if self._emitter is not None:
            self._emitter.join(timeout=5)
        if self._redeliverer is not None:
            self._redeliverer.join(timeout=5)
        if self.simulator is not None:
            self.simulator.uninstall()
        self._stop_running_executions()
        self._stack.close()

    def client(self, service: str):
        return boto3.client(service, region_name=self.region)

    # ----------------------------------------------------------------- patches
    def _patches(self) -> Iterator[Any]:
        """Each patch works around one named moto behaviour; see the module docstring."""
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

        sandbox = self

        # moto's Lambda without Docker only echoes its input: run our handler in-process instead.
        def invoke(_backend, function_name, qualifier, body, headers, response_headers):
            return sandbox._invoke(function_name, body, response_headers)

        # Wait states sleep in real time: wait on the simulated clock, still interruptible by StopExecution.
        def wait_interval(_self, env, wait_seconds):
            if wait_seconds > 0:
                env.program_state_event.wait(sandbox.clock.real_seconds(wait_seconds))

        yield mock.patch.object(LambdaSimpleBackend, "invoke", invoke)
        yield mock.patch.object(wait_function.WaitFunction, "_wait_interval", wait_interval)
        # Retry back-off sleeps in real time too.
        yield mock.patch.object(retrier_decl, "time", _ScaledTime(self.clock))
        yield from self._botocore_patches()
        yield from self._callback_patches()
        yield self._stop_execution_patch()
        yield self._start_time_patch()
        yield self._alarm_events_patch()
        yield self._payload_quota_patch()
        yield from self._lambda_error_patches()

    def _botocore_patches(self) -> Iterator[Any]:
        """botocore's retries wait on the simulated clock, and the handlers' clients answer to `Faults`.

        In standard and adaptive mode botocore sleeps between attempts (botocore.endpoint) and, once
        throttled, adaptive mode waits for its token bucket: on AWS that time passes inside the Lambda
        function, on the clock the handlers read, so here it passes on the simulated clock. Every client
        made with ferry.aws.RETRY_CONFIG (the handlers' clients) gets a first `before-send` hook that answers
        the attempts Faults fails; moto's own before-send stub lets those requests go, so they never run.
        """
        import boto3.session
        from botocore import endpoint
        from botocore.retries import bucket
        from moto.core.botocore_stubber import BotocoreStubber

        from ferry import aws

        sandbox = self
        yield mock.patch.object(endpoint, "time", _ScaledTime(self.clock))
        yield mock.patch.object(bucket, "Clock", type("SimulatedClock", (_BotocoreClock,), {"clock": self.clock}))
        yield mock.patch.object(bucket, "threading", _BotocoreThreading(self.clock))

        create = boto3.session.Session.client

        def client(session: Any, *args: Any, **kwargs: Any) -> Any:
            made = create(session, *args, **kwargs)
            if kwargs.get("config") is aws.RETRY_CONFIG:
                model = made.meta.service_model
                made.meta.events.register_first(
                    "before-send", functools.partial(sandbox._api_fault, model.service_name, model.protocol))
            return made

        stub = BotocoreStubber.__call__

        def stubbed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            if FAULT_HEADER in request.headers:  # answered with an injected error: it never reached AWS
                return None
            return stub(stubber, event_name, request, **kwargs)

        yield mock.patch.object(boto3.session.Session, "client", client)
        yield mock.patch.object(BotocoreStubber, "__call__", stubbed)

    def _api_fault(self, service: str, protocol: str, request: Any, event_name: str, **_: Any) -> Any:
        """before-send of a handler's client: None to let the request through, or the error response: AWS's
        request throttling (aws_rules.RATES, on the simulated clock) first, then the injected faults."""
        operation = event_name.rsplit(".", 1)[-1]
        if not self.throttle.take(service, operation):
            request.headers[FAULT_HEADER] = "ThrottlingException"
            return _error_response(protocol, service, operation, ("ThrottlingException", 400), request.url,
                                   message="Rate exceeded")
        if self.faults is None:
            return None
        error = self.faults.api_error(service, operation, request.headers, request.body)
        if error is None:
            return None
        if error[0] in NETWORK_ERRORS:  # raised here, the request goes no further: botocore retries it
            from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

            raise (ConnectTimeoutError if error[0] == "ConnectTimeout" else EndpointConnectionError)(
                endpoint_url=request.url)
        request.headers[FAULT_HEADER] = error[0]
        return _error_response(protocol, service, operation, error, request.url)

    @staticmethod
    def _lambda_error_patches() -> Iterator[Any]:
        """How Step Functions names a Lambda failure, as on AWS, where moto says "Exception":
        - a function error whose payload has no errorType is `Lambda.Unknown`, its Cause plain text ("The cause
          could not be determined because Lambda did not return an error type. Returned payload: ..."): how a
          timeout or an out-of-memory crash reaches the state on older runtimes (Step Functions developer guide,
          concepts-error-handling.html and bp-lambda-serviceexception.html);
        - an Invoke call Lambda refuses is `Lambda.<error code>` for a Lambda task state too ("Lambda errors are
          reported as Lambda.ErrorName", bp-lambda-serviceexception.html); moto's lambda:invoke does this already.
        """
        from botocore.exceptions import ClientError
        from moto.stepfunctions.parser.api import (
            HistoryEventType,
            LambdaFunctionFailedEventDetails,
            TaskFailedEventDetails,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
            StateTaskServiceLambda,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

        def failure(env: Any, error: str, cause: str, lambda_task: bool) -> Any:
            if lambda_task:
                return FailureEvent(env=env, error_name=CustomErrorName(error),
                                    event_type=HistoryEventType.LambdaFunctionFailed,
                                    event_details=EventDetails(lambdaFunctionFailedEventDetails=(
                                        LambdaFunctionFailedEventDetails(error=error, cause=cause))))
            return FailureEvent(env=env, error_name=CustomErrorName(error), event_type=HistoryEventType.TaskFailed,
                                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                                    error=error, cause=cause, resource="invoke", resourceType="lambda")))

        def named(original: Callable, lambda_task: bool) -> Callable:
            def from_error(state: Any, env: Any, ex: Exception) -> Any:
                if isinstance(ex, lambda_eval_utils.LambdaFunctionErrorException):
                    try:
                        has_type = "errorType" in json.loads(ex.payload)
                    except (TypeError, ValueError):
                        has_type = False
                    if not has_type:
                        return failure(env, "Lambda.Unknown", "The cause could not be determined because Lambda did "
                                       f"not return an error type. Returned payload: {ex.payload}", lambda_task)
                if lambda_task and isinstance(ex, ClientError):
                    error, cause = StateTaskServiceLambda._error_cause_from_client_error(ex)
                    return failure(env, error, cause, lambda_task)
                return original(state, env, ex)
            return from_error

        yield mock.patch.object(StateTaskLambda, "_from_error", named(StateTaskLambda._from_error, True))
        yield mock.patch.object(StateTaskServiceLambda, "_from_error", named(StateTaskServiceLambda._from_error, False))

    @staticmethod
    def _payload_quota_patch() -> Any:
        """A Lambda task's input over 256 KiB after Parameters fails with States.DataLimitExceeded, as on AWS
        ("After Parameters processing, the input of a state is larger than the payload size quota":
        https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html); moto checks only
        results and state outputs."""
        from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
            FailureEvent,
            FailureEventException,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.parser.quotas import is_within_size_quota

        original = lambda_eval_utils.execute_lambda_function_integration

        def execute(env: Any, parameters: dict, region: str, state_credentials: Any) -> None:
            payload = parameters.get("Payload")
            if isinstance(payload, bytes) and not is_within_size_quota(payload.decode("utf-8", "replace")):
                error = StatesErrorNameType.StatesStatesDataLimitExceeded
                raise FailureEventException(failure_event=FailureEvent(
                    env=env, error_name=StatesErrorName(typ=error), event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                        error=error.to_name(),
                        cause=f"The state's input after Parameters is {len(payload)} bytes, over the 262144-byte "
                              "payload size quota."))))
            return original(env, parameters, region, state_credentials)

        return mock.patch.object(lambda_eval_utils, "execute_lambda_function_integration", execute)

    def _alarm_events_patch(self) -> Any:
        """CloudWatch sends 'CloudWatch Alarm State Change' to EventBridge; moto does not: queue them like status events."""
        from moto.cloudwatch.models import Alarm

        original = Alarm.update_state
        sandbox = self

        def update_state(alarm: Any, reason: str, reason_data: str, state_value: str) -> None:
            before = {"value": alarm.state_value, "reason": alarm.state_reason or "",
                      "reasonData": alarm.state_reason_data or "{}",
                      "timestamp": sandbox._alarm_stamps.get(alarm.name)}
            original(alarm, reason, reason_data, state_value)
            if before["value"] == state_value:
                return
            sandbox._announce_status()
            now = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
            sandbox._alarm_stamps[alarm.name] = now
            # The detail as CloudWatch publishes it (tests/fixtures/aws/cloudwatch): the reason data of both
            # states, and the alarm's metric in configuration.metrics.
            metric = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn)), "returnData": True,
                      "metricStat": {"metric": {"name": alarm.metric_name, "namespace": alarm.namespace,
                                                "dimensions": {d.name: d.value for d in alarm.dimensions}},
                                     "period": alarm.period, "stat": alarm.statistic}}
            sandbox._status_queue.put({
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch", "account": sandbox.account, "region": sandbox.region,
                "time": sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [alarm.alarm_arn],
                "detail": {"alarmName": alarm.name,
                           "state": {"value": state_value, "reason": reason, "reasonData": reason_data or "{}",
                                     "timestamp": now},
                           "previousState": {**before, "timestamp": before["timestamp"] or now},
                           "configuration": {"description": alarm.description or "", "metrics": [metric]}},
            })

        return mock.patch.object(Alarm, "update_state", update_state)

    def _start_time_patch(self) -> Any:
        """`$$.Execution.StartTime` on the simulated clock, the clock of every event's `time` in the sandbox.

        Ferry orders deploy requests by their trigger's time, or by StartTime
        for a manual start: both must come from one clock. (The execution's
        startDate in the API stays wall-clock, which the history offsets use.)
        """
        from moto.stepfunctions.parser.backend import execution_worker

        original = execution_worker.ExecutionData
        clock = self.clock

        def execution_data(**fields: Any) -> Any:
            started = fields.get("StartTime")
            now = clock.now_datetime()
            fields["StartTime"] = now if isinstance(started, datetime) else now.isoformat()
            return original(**fields)

        return mock.patch.object(execution_worker, "ExecutionData", execution_data)

    def _callback_patches(self) -> Iterator[Any]:
        """Task timeouts and task-token callbacks (`.waitForTaskToken`, SendTask*), as on AWS."""
        from moto.core.responses import EmptyResult
        from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.component.state.exec import execute_state
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
            StateTaskServiceCallback,
        )
        from moto.stepfunctions.parser.asl.eval.callback import callback
        from moto.stepfunctions.parser.asl.eval.environment import Environment
        from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
            FailureEvent,
            FailureEventException,
        )
        from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
        from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
        from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
        from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError
        from moto.stepfunctions.responses import StepFunctionResponse

        sandbox = self
        scaled = _ScaledThreading(self.clock)
        heartbeat_timeout = StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout)
        timeout = StatesErrorName(typ=StatesErrorNameType.StatesTimeout)

        # TimeoutSeconds (every Task, Map and Parallel state) and HeartbeatSeconds wait in real time.
        yield mock.patch.object(execute_state, "threading", scaled)
        yield mock.patch.object(callback, "Event", scaled.Event)

        # A callback sent while the Lambda still runs (before the heartbeat wait starts) is lost, and the
        # task times out; count it.
        setup_heartbeat = callback.CallbackEndpoint.setup_heartbeat_endpoint

        def setup_heartbeat_endpoint(endpoint, heartbeat_seconds):
            heartbeat = setup_heartbeat(endpoint, heartbeat_seconds)
            if endpoint.get_outcome() is not None:
                heartbeat.notify()
            return heartbeat

        yield mock.patch.object(callback.CallbackEndpoint, "setup_heartbeat_endpoint", setup_heartbeat_endpoint)

        # A Retry reuses the first attempt's task token (and its spent callback): give each attempt a new one.
        execution = StateTaskServiceCallback._eval_execution

        def eval_execution(task, env):
            if (task.resource.condition == ResourceCondition.WaitForTaskToken
                    and env.states.context_object.context_object_data.get("State", {}).get("RetryCount")):
                env.callback_pool_manager.add(env.states.context_object.update_task_token())
            execution(task, env)

        yield mock.patch.object(StateTaskServiceCallback, "_eval_execution", eval_execution)

        # A missed heartbeat fails with States.Timeout: name it States.HeartbeatTimeout, which States.Timeout
        # still matches in Retry and Catch.
        from_error = StateTaskServiceCallback._from_error

        def task_from_error(task, env, ex):
            failure = from_error(task, env, ex)
            if isinstance(ex, callback.HeartbeatTimeoutError):
                failure.error_name = heartbeat_timeout
                failure.event_details["taskTimedOutEventDetails"]["error"] = heartbeat_timeout.error_name
            return failure

        error_equals = ErrorEqualsDecl._eval_body
        # Terminal errors: "A retry or catch on States.ALL won't catch States.Runtime errors"; States.DataLimitExceeded
        # is "A terminal error which cannot be caught by the States.ALL error type" (Step Functions developer guide,
        # https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). moto routes both to a
        # States.ALL Catch: here no Retry or Catch matches them, so the execution fails at once, as on AWS.
        terminal = {StatesErrorName(typ=StatesErrorNameType.StatesRuntime).error_name,
                    StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded).error_name}

        def error_equals_body(decl, env):
            error_name = env.stack[-1]
            error_equals(decl, env)
            if getattr(error_name, "error_name", None) in terminal:
                env.stack[-1] = False
                sandbox.terminal_errors.append(error_name.error_name)
            elif error_name == heartbeat_timeout and timeout in decl.error_names:
                env.stack[-1] = True

        yield mock.patch.object(StateTaskServiceCallback, "_from_error", task_from_error)
        yield mock.patch.object(ErrorEqualsDecl, "_eval_body", error_equals_body)

        # SendTaskFailure drops its cause.
        def send_task_failure(response):
            param = response._get_param
            response.stepfunction_backend.send_task_failure(
                param("taskToken"), error=param("error"), cause=param("cause"))
            return EmptyResult()

        yield mock.patch.object(StepFunctionResponse, "send_task_failure", send_task_failure)

        # StopExecution does not wake a task waiting for its callback (the execution stays RUNNING until the task
        # times out, then records the timeout and runs Retry and Catch, which can turn ABORTED into FAILED):
        # wake it, and end the state quietly, as AWS does.
        set_stop = Environment.set_stop

        def stop(env, stop_date, cause, error):
            set_stop(env, stop_date, cause, error)
            for endpoint in list(env.callback_pool_manager._pool.values()):
                endpoint.interrupt_all()

        evaluate = execute_state.ExecutionState._evaluate_with_timeout

        def evaluate_with_timeout(state, env):
            try:
                evaluate(state, env)
            except NoSuchJsonPathError as missing:
                # A Task's Parameters path that does not resolve is States.Runtime on AWS; moto's Lambda tasks
                # report it as a catchable "Exception".
                if env.is_running():
                    raise runtime_error(env, missing) from None
            except Exception:
                if env.is_running():
                    raise

        def runtime_error(env, missing):
            cause = (f"The JSONPath '{missing.json_path}' specified for the field '{env.next_field_name}' could not "
                     f"be found in the input '{to_json_str(missing.data)}'")
            return FailureEventException(failure_event=FailureEvent(
                env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                    error=StatesErrorNameType.StatesRuntime.to_name(), cause=cause))))

        # A Map iteration or Parallel branch that fails with a States.* error (States.HeartbeatTimeout after its
        # retries, States.Runtime, ...) passes that error to the Map or Parallel state on AWS; moto wraps it in a
        # custom error name, which refuses the States. prefix and turns every such failure into States.Runtime.
        def error_name_of(error_name: str | None = None) -> Any:
            if isinstance(error_name, str) and error_name.startswith("States."):
                return StatesErrorName(typ=StatesErrorNameType.from_name(error_name))
            return CustomErrorName(error_name=error_name)

        yield mock.patch.object(iteration_worker, "CustomErrorName", error_name_of)
        yield mock.patch.object(branches_decl, "CustomErrorName", error_name_of)
        yield mock.patch.object(Environment, "set_stop", stop)
        yield mock.patch.object(execute_state.ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout)

    @staticmethod
    def _stop_execution_patch() -> Any:
        """StopExecution drops its error and cause (moto stops with "" and ""): pass them on, as AWS does, to the
        ExecutionAborted history event (and so to the ABORTED status event). Its response also lacks the
        stopDate while the execution winds down: answer with the stop's date, as AWS does. (That the execution
        is ABORTED at once is _status_hooks' part.)"""
        from moto.core.responses import ActionResult
        from moto.core.utils import utcnow
        from moto.stepfunctions.responses import StepFunctionResponse

        def stop_execution(response):
            param = response._get_param
            execution = response.stepfunction_backend.describe_execution(param("executionArn"))
            stop_date = utcnow()
            execution.stop(stop_date=stop_date, error=param("error"), cause=param("cause"))
            return ActionResult({"stopDate": execution.stop_date or stop_date})

        return mock.patch.object(StepFunctionResponse, "stop_execution", stop_execution)

    def _status_hooks(self) -> Iterator[Any]:
        """Execution status change events, which moto never emits: queued as executions start and end."""
        from moto.stepfunctions.parser.api import ExecutionStatus
        from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

        sandbox = self

        # RUNNING: announced before moto sets the status (so wait_for_executions cannot miss it), queued once set,
        # under the order lock, which the terminal status below waits for.
        start = Execution.start

        def start_execution(execution):
            if not sandbox._emits_status(execution):
                return start(execution)
            with sandbox._status_order:
                sandbox._announce_status()
                try:
                    start(execution)
                except BaseException:
                    sandbox._status_delivered()
                    raise
                sandbox._queue_status(execution, "RUNNING")

        # The terminal status: moto sets it before the output, error and cause, so queue it only once
        # terminated() has recorded them all; announced before, so no wait sees the status before its event.
        terminated = BaseExecutionWorkerCommunication.terminated

        def execution_terminated(comm):
            execution = comm.execution
            if not sandbox._emits_status(execution):
                return terminated(comm)
            stopped_at = sandbox._aborted.get(execution.exec_arn)
            if stopped_at is not None:  # ABORTED was announced when it was stopped (_stop_execution_patch)
                terminated(comm)
                execution.stop_date = stopped_at
                return None
            sandbox._announce_status()
            try:
                terminated(comm)
            except BaseException:
                sandbox._status_delivered()
                raise
            with sandbox._status_order:
                sandbox._queue_status(execution, execution.status)

        # A stop: moto keeps the execution RUNNING, and sends nothing, until a Lambda the execution had invoked
        # returns; on AWS the execution is ABORTED at once (DescribeExecution says so, with the stop's date) and its
        # status event goes out then, while that Lambda may still be running and finish later: "invoked Lambda
        # functions continue to run" (Step Functions developer guide, state-parallel.html), and Lambda has no way
        # to stop an invocation. The late Lambda's answer is dropped (terminated, above, sends nothing more).
        stop = Execution.stop

        def stop_execution(execution, stop_date, error, cause):
            running = execution.exec_status == ExecutionStatus.RUNNING
            stop(execution, stop_date=stop_date, error=error, cause=cause)
            if running and sandbox._emits_status(execution):
                execution.exec_status, execution.stop_date = ExecutionStatus.ABORTED, stop_date
                with sandbox._status_order:
                    sandbox._aborted[execution.exec_arn] = stop_date
                    sandbox._announce_status()
                    sandbox._queue_status(execution, "ABORTED")

        yield mock.patch.object(Execution, "start", start_execution)
        yield mock.patch.object(BaseExecutionWorkerCommunication, "terminated", execution_terminated)
        yield mock.patch.object(Execution, "stop", stop_execution)

    # ------------------------------------------------------- status events
    @staticmethod
    def _emits_status(execution: Any) -> bool:
        """Standard workflows send status change events; Express workflows do not."""
        sm_type = getattr(execution, "sm_type", "STANDARD")
        return str(getattr(sm_type, "value", sm_type)) != "EXPRESS"

    def _announce_status(self) -> None:
        with self._status_cv:
            self._status_pending += 1

    def _status_delivered(self) -> None:
        with self._status_cv:
            self._status_pending -= 1
            self._status_cv.notify_all()

    def _queue_status(self, execution: Any, status: str) -> None:
        """Queue the event of a change announced with _announce_status (never raises: runs in moto's threads)."""
        try:
            self._status_queue.put(self._status_event(execution, status))
        except Exception:
            logging.getLogger(__name__).exception("could not build the %s status event of %s", status,
                                                  getattr(execution, "exec_arn", "an execution"))
            self._status_delivered()

    def _status_event(self, execution: Any, status: str) -> dict[str, Any]:
        """The event Step Functions sends EventBridge: its detail is what DescribeExecution says at that moment."""
        from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
        from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

        state_machine = execution.state_machine
        error = cause = None
        if status == "FAILED":
            error, cause = execution.error, execution.cause
        elif status == "ABORTED":
            env = execution.exec_worker.env if execution.exec_worker is not None else None
            stopped = env.program_state() if env is not None else None
            if isinstance(stopped, ProgramStopped):
                error, cause = stopped.error, stopped.cause
        succeeded = status == "SUCCEEDED"
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states", "account": self.account,
            "time": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"), "region": self.region,
            "resources": [execution.exec_arn],
            "detail": {
                "executionArn": execution.exec_arn,
                "stateMachineArn": getattr(state_machine, "source_arn", None) or state_machine.arn,
                "name": execution.name,
                "status": status,
                "startDate": _epoch_millis(execution.start_date),
                "stopDate": None if status == "RUNNING" else _epoch_millis(execution.stop_date),
                "input": to_json_str(execution.input_data, separators=(",", ":")),
                "inputDetails": {"included": True},
                "output": to_json_str(execution.output, separators=(",", ":")) if succeeded else None,
                "outputDetails": {"included": True} if succeeded else None,
                # Today's detail (tests/fixtures/aws/states/*-redrive-fields.json): no versions or aliases here,
                # never redriven; a FAILED, TIMED_OUT or ABORTED execution may be redriven.
                "stateMachineVersionArn": None,
                "stateMachineAliasArn": None,
                "redriveCount": 0,
                "redriveDate": None,
                "redriveStatus": "REDRIVABLE" if status in ("FAILED", "TIMED_OUT", "ABORTED") else "NOT_REDRIVABLE",
                "redriveStatusReason": (f"Execution is {status} and is redrivable"
                                        if status in ("FAILED", "TIMED_OUT", "ABORTED")
                                        else f"Execution is {status} and cannot be redriven"),
                "error": error,
                "cause": cause,
            },
        }

    def _emit_status_events(self) -> None:
        """Deliver the queued status change events, in order, until the sandbox closes."""
        while not self._stop.is_set():
            try:
                event = self._status_queue.get(timeout=0.02)
            except queue.Empty:
                continue
            record: dict[str, Any] = {"event": event, "targets": [], "error": None}
            try:
                record["targets"] = self.deliver(event)
            except Exception as exc:  # keep emitting; the record and the log say what went wrong
                record["error"] = f"{type(exc).__name__}: {exc}"
                logging.getLogger(__name__).exception(
                    "delivering the %s event of %s failed", event["detail-type"], event["resources"][0])
            finally:
                with self._status_cv:
                    if event["source"] == "aws.states":
                        self.status_events.append(record)
                self._status_delivered()

    # ------------------------------------------------------------ the stack
    def _physical(self) -> None:
        """Decide every resource's physical name and ARN, as CloudFormation would."""
        self.refs, self.attrs, self.pseudo = physical_resources(
            self.template, account=self.account, region=self.region, environment=ENVIRONMENT,
            parameters={"EnvironmentName": ENVIRONMENT, "Clusters": list(self.clusters)})
        self.resolver = Resolver(self.refs, self.attrs, self.pseudo)

    def _deploy_stack(self) -> None:
        self._physical()
        resources = self.template.resources
        s3, ddb = self.client("s3"), self.client("dynamodb")
        for logical_id, resource in resources.items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::S3::Bucket":
                s3.create_bucket(Bucket=self.refs[logical_id], **bucket_location(self.region))
            elif resource["Type"] == "AWS::DynamoDB::Table":
                ddb.create_table(
                    TableName=self.refs[logical_id], BillingMode="PAY_PER_REQUEST",
                    KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
                )
        sqs = self.client("sqs")
        for logical_id in self.template.of_type("AWS::SQS::Queue"):
            sqs.create_queue(QueueName=self.attrs[(logical_id, "QueueName")])
        self.artefacts_bucket = self.refs.get("ArtefactsBucket")
        self.config_bucket = self.refs.get("ConfigBucket")
        self.lock_table = self.refs.get("LockTable")

        iam = self.client("iam")
        role = iam.create_role(
            RoleName="ferry-sandbox-lambda",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )["Role"]["Arn"]
        lam = self.client("lambda")
        environment: dict[str, str] = {}
        for logical_id, fn in self.template.functions().items():
            env = {k: str(v) for k, v in self.resolver.resolve(fn.environment).items()}
            for key, value in env.items():
                if environment.get(key, value) != value:
                    raise SandboxError(
                        f"template.yaml: functions disagree on environment variable {key}; the sandbox runs all "
                        "handlers in one process, so a variable must mean the same for every function"
                    )
                environment[key] = value
            name = self.refs[logical_id]
            module_file, _, function = fn.handler.rpartition(".")
            path = self.root / fn.code_uri / f"{module_file}.py"
            if not path.exists():
                raise SandboxError(f"template.yaml: {logical_id} handler {fn.handler} not found at {path}")
            props = self.template.resources[logical_id].get("Properties", {})
            timeout = props.get("Timeout", self.template.body.get("Globals", {}).get("Function", {}).get("Timeout", 3))
            invoke = self.resolver.resolve(fn.invoke_config)
            self._functions[name] = {"logical": logical_id, "path": path, "function": function,
                                     "rules": self.resolver.resolve(fn.rules), "timeout": float(timeout),
                                     # Lambda's asynchronous invocation: 2 retries unless EventInvokeConfig says
                                     # otherwise, then the OnFailure destination (an SQS queue here).
                                     "retries": int(invoke.get("MaximumRetryAttempts", 2)),
                                     "onFailure": ((invoke.get("DestinationConfig") or {}).get("OnFailure") or {})
                                     .get("Destination")}
            lam.create_function(
                FunctionName=name, Runtime="python3.12", Role=role, Handler=fn.handler,
                Code={"ZipFile": _EMPTY_ZIP}, Environment={"Variables": env},
            )
        self._stack.enter_context(mock.patch.dict(os.environ, environment))

        logical_id, props, definition_uri = self.template.state_machine()
        substitutions = {k: str(v) for k, v in self.resolver.resolve(props.get("DefinitionSubstitutions", {})).items()}
        self.definition = substitute_definition((self.root / definition_uri).read_text(), substitutions)
        sfn_role = iam.create_role(
            RoleName="ferry-sandbox-states",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )["Role"]["Arn"]
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name=self.attrs[(logical_id, "Name")], definition=json.dumps(self.definition), roleArn=sfn_role,
            type="STANDARD",
        )["stateMachineArn"]

    # ------------------------------------------------------------- lambdas
    def _module(self, name: str) -> tuple[ModuleType, str]:
        spec = self._functions[name]
        with self._invoke_lock:
            module = self._modules.get(name)
            if module is None:
                module_name = f"ferry_sandbox_fn_{spec['logical']}"
                loader = importlib.util.spec_from_file_location(module_name, spec["path"])
                module = importlib.util.module_from_spec(loader)
                loader.loader.exec_module(module)
                self._modules[name] = module
                self._capture_logs()
        return module, spec["function"]

    def _capture_logs(self) -> None:
        from ferry.runtime.observability import logger

        for handler in logger._logger.handlers:  # the Powertools Logger's own stream handler
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(self.logs)

    def _invoke(self, function_name: str, body: Any, response_headers: dict) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        if name not in self._functions:
            raise SandboxError(f"no sandbox handler for Lambda function {function_name}")
        event = json.loads(body) if body else {}
        with self._invoke_lock:
            self.lambda_invocations += 1
        context = SimpleNamespace(
            function_name=name, function_version="$LATEST", memory_limit_in_mb=256,
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{self.account}:function:{name}",
            aws_request_id=str(uuid.uuid4()), log_group_name=f"/aws/lambda/{name}", log_stream_name="sandbox",
            get_remaining_time_in_millis=lambda: 60_000,
        )
        logical = self._functions[name]["logical"]
        with self._status_cv:
            self._in_flight += 1
        try:
            return self._run_handler(name, logical, event, context, response_headers)
        finally:
            with self._status_cv:
                self._in_flight -= 1
                self._status_cv.notify_all()

    def _run_handler(self, name: str, logical: str, event: Any, context: Any, response_headers: dict) -> bytes:
        try:
            for hook in self.fault_hooks:
                hook(logical, event)
            fault = self.faults.lambda_fault(logical, event) if self.faults is not None else None
            if fault is not None and fault[0].kind == "unavailable":
                raise _lambda_api_error(fault[0].error or "CodeArtifactUserPendingException", name)
            if fault is not None and fault[0].kind == "crash":
                raise InjectedCrash(f"the sandbox crashed this invocation of {logical} (step {fault[1]})")
            module, function = self._module(name)
            began, began_sim = time.perf_counter(), self.clock.now()
            try:
                result = getattr(module, function)(event, context)
            finally:
                with self._invoke_lock:
                    self.handler_seconds.setdefault(logical, []).append(time.perf_counter() - began)
            if fault is not None:  # a timeout: what the handler did stays done, its answer is lost
                timeout = self._functions[name]["timeout"]
                self.clock.sleep(timeout - (self.clock.now() - began_sim))
                response_headers["x-amz-function-error"] = "Unhandled"
                message = f"RequestId: {context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
                if fault[0].error == "Lambda.Unknown":  # an older runtime: no errorType in the payload
                    return json.dumps({"errorMessage": message}).encode()
                return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode()
            return json.dumps(result, default=str).encode()
        except LambdaApiError:
            raise  # Lambda itself refused the call: the caller gets an API error, not a function error
        except Exception as exc:  # reported the way the Lambda runtime reports an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({
                "errorType": type(exc).__name__, "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-3:],
            }).encode()

    # -------------------------------------------------------------- events
    def rules(self) -> list[tuple[str, str, dict]]:
        """(function name, rule name, pattern) for every EventBridge rule in the template."""
        return [(name, rule, pattern) for name, spec in self._functions.items() for rule, pattern in spec["rules"].items()]

    def deliver(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Deliver one event as EventBridge would: to every target whose rule pattern matches.

        Each target is a Lambda function EventBridge invokes asynchronously, so the results returned are those of
        the first attempts; what happens next is Lambda's (see EventDelivery): a failed attempt is retried on the
        simulated clock, then sent to the function's OnFailure destination, and some deliveries arrive twice.
        """
        from moto.events.models import EventPattern

        event = {"version": "0", "id": str(uuid.uuid4()), "account": self.account, "region": self.region,
                 "time": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [], **event}
        results = []
        for function_name, rule, pattern in self.rules():
            if EventPattern.load(json.dumps(pattern)).matches_event(event):
                result = self._attempt(function_name, rule, event, 1)
                results.append(result)
                if self.delivery.duplicated(event["id"], function_name):
                    self._later(self.delivery.duplicate_after, function_name, rule, event, 0)
        return results

    def _attempt(self, function_name: str, rule: str, event: dict[str, Any], attempt: int) -> dict[str, Any]:
        """One invocation of a target; a failure is retried later, or sent to the OnFailure destination.
        `attempt` 0 is a duplicate delivery (an invocation of its own, retried like any other)."""
        response = self.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        error = response.get("FunctionError")
        spec = self._functions[function_name]
        with self._invoke_lock:
            self.deliveries["invocations"] += 1
            self.deliveries["duplicates"] += attempt == 0
            self.deliveries["retries"] += attempt > 1
        if error:
            tries = max(attempt, 1)
            if tries <= spec["retries"] and tries - 1 < len(self.delivery.retry_after):
                self._later(self.delivery.retry_after[tries - 1], function_name, rule, event, tries + 1)
            else:
                self._dead_letter(function_name, event, payload, tries)
        return {"rule": rule, "function": function_name, "error": error, "result": payload, "attempt": attempt}

    def _later(self, delay: float, function_name: str, rule: str, event: dict[str, Any], attempt: int) -> None:
        """Schedule an invocation `delay` simulated seconds from now; pending until it has run."""
        self._announce_status()
        with self._redelivery_lock:
            self._redelivery_seq += 1
            heapq.heappush(self._redeliveries, (self.clock.now() + delay, self._redelivery_seq, function_name, rule,
                                                event, attempt))

    def _redeliver(self) -> None:
        """Run the scheduled invocations as they fall due, until the sandbox closes."""
        while not self._stop.wait(0.01):
            with self._redelivery_lock:
                due = self._redeliveries[0] if self._redeliveries and self._redeliveries[0][0] <= self.clock.now() \
                    else None
                if due is not None:
                    heapq.heappop(self._redeliveries)
            if due is None:
                continue
            _, _, function_name, rule, event, attempt = due
            try:
                self._attempt(function_name, rule, event, attempt)
            except Exception:  # keep delivering; the log says what went wrong
                logging.getLogger(__name__).exception("redelivering %s to %s failed", event.get("detail-type"),
                                                      function_name)
            finally:
                self._status_delivered()

    def dead_letter_queue(self) -> list[dict[str, Any]]:
        """The messages in the stack's SQS queues (read without deleting them): what no retry could deliver."""
        sqs, found = self.client("sqs"), []
        for logical_id in self.template.of_type("AWS::SQS::Queue"):
            url = sqs.get_queue_url(QueueName=self.attrs[(logical_id, "QueueName")])["QueueUrl"]
            seen: set[str] = set()
            while True:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
                                               ).get("Messages", [])
                fresh = [m for m in messages if m["MessageId"] not in seen]
                if not fresh:
                    break
                seen.update(m["MessageId"] for m in fresh)
                found += [json.loads(m["Body"]) for m in fresh]
        return found

    def _dead_letter(self, function_name: str, event: dict[str, Any], payload: Any, attempts: int) -> None:
        """Retries exhausted: the invocation record goes to the function's OnFailure destination, as Lambda sends
        it (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
        spec = self._functions[function_name]
        record = {
            "version": "1.0", "timestamp": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "requestContext": {"requestId": str(uuid.uuid4()),
                               "functionArn": f"arn:aws:lambda:{self.region}:{self.account}:function:{function_name}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": attempts},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": payload,
        }
        with self._invoke_lock:
            self.dead_letters.append({"function": function_name, "record": record})
        destination = spec.get("onFailure")
        if isinstance(destination, str) and destination.startswith("arn:aws:sqs:"):
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    def start_driver(self, interval: float = 0.02) -> None:
        """Move the ECS simulator along and deliver the events it emits."""
        if self._driver is not None or self.simulator is None:
            return

        def drive() -> None:
            while not self._stop.wait(interval):
                try:
                    for event in self.simulator.tick():
                        self.deliver(event)
                except Exception:  # keep driving; a broken tick shows up in the run's outcome
                    logging.getLogger(__name__).exception("simulator tick failed")

        self._driver = threading.Thread(target=drive, name="ferry-sandbox-driver", daemon=True)
        self._driver.start()

    # ---------------------------------------------------------- executions
    def executions(self) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        found = []
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
            found.extend(page["executions"])
        return sorted(found, key=lambda e: e["startDate"])

    def start_execution(self, payload: dict[str, Any], name: str | None = None) -> str:
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn, name=name or f"manual-{uuid.uuid4().hex[:12]}",
            input=json.dumps(payload),
        )["executionArn"]

    def wait_for_executions(self, timeout: float = 300.0) -> None:
        """Block (real seconds) until no execution is RUNNING and every status change event has been delivered.

        The targets of a delivered event may start executions of their own: those are waited for too.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not any(e["status"] == "RUNNING" for e in self.executions()):
                with self._status_cv:  # every event delivered, and no handler still running (a stopped one's)
                    delivered = self._status_cv.wait_for(lambda: self._status_pending == 0 and self._in_flight == 0,
                                                         timeout=max(0.0, deadline - time.monotonic()))
                if not delivered:
                    raise SandboxError(
                        f"events still undelivered or handlers still running after {timeout:.0f} real seconds")
                if not any(e["status"] == "RUNNING" for e in self.executions()):
                    return
            if time.monotonic() > deadline:
                running = [e["name"] for e in self.executions() if e["status"] == "RUNNING"]
                raise SandboxError(f"executions still running after {timeout:.0f} real seconds: {running}")
            time.sleep(0.05)

    def _stop_running_executions(self) -> None:
        try:
            sfn = self.client("stepfunctions")
            for execution in self.executions():
                if execution["status"] == "RUNNING":
                    sfn.stop_execution(executionArn=execution["executionArn"], error="SandboxClosed")
        except Exception:  # the sandbox is going away; nothing left to protect
            pass

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            events.extend(page["events"])
        return events

    def locks_held(self) -> int:
        if not self.lock_table:
            return 0
        # Deploy locks only: the table also holds queue, deployed and waiter items.
        return self.client("dynamodb").scan(
            TableName=self.lock_table, Select="COUNT", FilterExpression="begins_with(pk, :lock)",
            ExpressionAttributeValues={":lock": {"S": "service#"}})["Count"]


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's location, as S3 wants it: none in us-east-1, the region's LocationConstraint elsewhere
    (S3 API reference, CreateBucket: "If you don't specify a Region, the bucket is created in the US East (N.
    Virginia) Region (us-east-1)"; any other Region's endpoint answers IllegalLocationConstraintException)."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _epoch_millis(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # moto's utcnow() is naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


# A valid, empty zip archive: moto needs some code to create a function.
_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
