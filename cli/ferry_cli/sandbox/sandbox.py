"""The local sandbox: the real state machine, on this machine, with no AWS account.

moto stands in for AWS. Its Step Functions interpreter runs
`statemachine/deploy.asl.json` with the template's DefinitionSubstitutions;
each Lambda task is dispatched to the in-process handler that template.yaml
names; EventBridge events are matched against the rule patterns in
template.yaml and delivered to their targets; a function's EventBridge
Scheduler schedule runs when a caller asks for its next firing
(run_schedule); and the ECS simulator moves services and tasks along on the
simulated clock.

This module is the Sandbox: it sets moto up, deploys the stack from
template.yaml, invokes the handlers, delivers events and reads executions.
What it runs under lives beside it: the simulated clock and every wait on it
(clock), the patches of moto's Step Functions, with the execution status
change events moto never emits (moto_sfn), what goes wrong on AWS (faults),
how events reach their targets (delivery), and the simulated ECS (ecs_model,
on moto through moto_ecs, installed by run.world_session).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import logging
import math
import os
import re
import threading
import time
import traceback
import uuid
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Iterator
from unittest import mock

import boto3
import botocore.loaders
import botocore.session

from .. import resources
from . import SandboxError, aws_rules, moto_sfn
from .clock import SimClock, VEvent, wait_patches
from .scheduler import VThreading
from .delivery import EventDelivery, Outbox
from .faults import Faults, InjectedCrash, LambdaApiError, client_patches, lambda_api_error
from .template import Resolver, Template, physical_resources, substitute_definition

REPO_ROOT = resources.root()  # the checkout, else the wheel's copy
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
ENVIRONMENT = "sandbox"
# How long a run may go on in simulated time before the sandbox gives up on it: a week (deploys wait at most
# hours; a run that goes on longer loops).
MAX_RUN_SECONDS = 7 * 24 * 3600.0
MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


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


class Sandbox:
    """One sandboxed Ferry installation. Use as a context manager."""

    journal: Any = None  # with --state: the state.SandboxState this sandbox's changes are journalled in
    # Called with (execution name, history event type, its details, simulated time) for every event moto writes.
    watch_history: Callable[[str, str, dict[str, Any], float], None] | None = None

    def __init__(
        self,
        *,
        root: Path = REPO_ROOT,
        speed: float | None = None,
        account: str = DEFAULT_ACCOUNT,
        region: str = DEFAULT_REGION,
        clusters: list[str] | None = None,
        log_echo: io.TextIOBase | None = None,
        faults: Faults | None = None,
        delivery: EventDelivery | None = None,
        lambda_seconds: dict[str, float] | None = None,
    ) -> None:
        self.root = root
        # How long each step's function runs, in simulated seconds, by step (functions/<step>/) or "default";
        # without it, handler work takes no simulated time.
        self.lambda_seconds = dict(lambda_seconds or {})
        self.delivery = delivery or EventDelivery()
        self.deliveries = {"invocations": 0, "duplicates": 0, "retries": 0}  # counted by _attempt
        self.dead_letters: list[dict[str, Any]] = []  # {"function", "record"}: retries exhausted
        self.clock = SimClock(speed=speed)  # virtual time; `speed` only paces a run to watch it
        self.running: set[str] = set()  # ARNs of the executions still RUNNING (moto_sfn.status_hooks keeps it)
        # What is still to be delivered: execution status and alarm events, queued in moto's threads, and
        # Lambda's later invocations; with the handler invocations still running.
        self.outbox = Outbox(self.clock)
        self.status_events = self.outbox.status_events  # {"event", "targets", "error"} per delivered status event
        self.account = account
        self.region = region
        self.clusters = clusters or ["default"]
        self.template = Template.load(root)
        self.logs = _LogSink(log_echo)
        self.lambda_invocations = 0
        self.handler_seconds: dict[str, list[float]] = {}  # logical function id -> real seconds of each invocation
        self.fault_hooks: list[Callable[[str, dict], None]] = []
        self.terminal_errors: list[str] = []  # States.Runtime and States.DataLimitExceeded raised (never caught)
        self.faults = faults
        if faults is not None:
            faults.sandbox = self
        self.simulator: Any = None
        self.throttle = aws_rules.Throttle(self.clock.now)  # AWS's request throttling of the handlers' calls
        self._stack = ExitStack()
        self._functions: dict[str, dict[str, Any]] = {}  # physical name -> {logical, module path, env}
        self._modules: dict[str, ModuleType] = {}
        self._invoke_lock = threading.Lock()
        self._driver: Any = None
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
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "MOTO_ACCOUNT_ID": self.account,
            "POWERTOOLS_METRICS_DISABLED": "false",
            # No EC2 instance is ever launched here; moto's 2,600 default AMIs cost seconds on every start and reset.
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        }
        self._stack.enter_context(mock.patch.dict(os.environ, env))  # restores the whole environment on close
        for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            os.environ.pop(var, None)
        self._stack.enter_context(mock_aws(config=MOTO_CONFIG))
        self.enforcement = self._stack.enter_context(aws_rules.enforce())  # AWS's request rules and page sizes
        for patcher in self._patches():
            self._stack.enter_context(patcher)
        for patcher in moto_sfn.status_hooks(self):
            self._stack.enter_context(patcher)
        logging.getLogger("moto").setLevel(logging.CRITICAL)

        from ferry import aws
        from ferry.runtime import clock as ferry_clock

        aws.reset()
        ferry_clock.use(self.clock.now, self.clock.sleep)
        self._stack.callback(ferry_clock.use, None)
        self._stack.enter_context(self.clock.activate())
        self._stack.callback(aws.reset)
        self._deploy_stack()
        self.outbox.start(lambda event: self.deliver(event), self._redeliver)

    def close(self) -> None:
        self._stop_running_executions()
        self.clock.close()  # every fiber (moto's threads, the driver, the outbox's) ends
        if self.simulator is not None:
            self.simulator.uninstall()
        self._stack.close()

    def client(self, service: str):
        """The sandbox's own client of `service`: made once per process and region (faults.client_patches keeps it)."""
        return boto3.client(service, region_name=self.region)

    # ----------------------------------------------------------------- patches
    def _patches(self) -> Iterator[Any]:
        """Every patch of moto and botocore the sandbox runs under (the status events aside: moto_sfn.status_hooks).

        Waits count simulated seconds (clock.wait_patches); the handlers' clients answer to AWS's request
        throttling and to `faults` (faults.client_patches); each moto divergence is a named patch (moto_sfn)."""
        yield from wait_patches(self.clock)
        yield from client_patches(self)
        yield from moto_sfn.patches(self)
        yield mock.patch.object(botocore.session, "create_loader", _shared_loader)
        yield mock.patch.object(botocore.loaders.Loader, "list_available_services", _available_services)
        yield mock.patch.object(botocore.loaders.JSONFileLoader, "_load_file", _load_json_file)
        yield _method_names_once_patch()
        # Verify runs its checks on a thread pool; a pool's workers are no fibers of the scheduler, so in the
        # sandbox its checks run one after the other in the step's own fiber (same checks, same report).
        yield mock.patch("ferry.steps.verify.ThreadPoolExecutor", InlineExecutor)

    # ------------------------------------------------------------ the stack
    def _physical(self) -> None:
        """Decide every resource's physical name and ARN, as CloudFormation would."""
        self.refs, self.attrs, self.pseudo = physical_resources(
            self.template,
            account=self.account,
            region=self.region,
            environment=ENVIRONMENT,
            parameters={"EnvironmentName": ENVIRONMENT, "Clusters": list(self.clusters)},
        )
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
                    TableName=self.refs[logical_id],
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=props["KeySchema"],
                    AttributeDefinitions=props["AttributeDefinitions"],
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
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
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
            self._functions[name] = {
                "logical": logical_id,
                "path": path,
                "function": function,
                "step": Path(fn.code_uri).name,
                "rules": self.resolver.resolve(fn.rules),
                "schedules": self.resolver.resolve(fn.schedules),
                "timeout": float(timeout),
                # Lambda's asynchronous invocation: 2 retries unless EventInvokeConfig says
                # otherwise, then the OnFailure destination (an SQS queue here).
                "retries": int(invoke.get("MaximumRetryAttempts", 2)),
                "onFailure": ((invoke.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
            }
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler=fn.handler,
                Code={"ZipFile": _EMPTY_ZIP},
                Environment={"Variables": env},
            )
        self._stack.enter_context(mock.patch.dict(os.environ, environment))
        self.created_at = self.clock.now()  # when the stack's schedules were created: rates count from here

        logical_id, props, definition_uri = self.template.state_machine()
        substitutions = {k: str(v) for k, v in self.resolver.resolve(props.get("DefinitionSubstitutions", {})).items()}
        self.definition = substitute_definition((self.root / definition_uri).read_text(), substitutions)
        sfn_role = iam.create_role(
            RoleName="ferry-sandbox-states",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "states.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name=self.attrs[(logical_id, "Name")],
            definition=json.dumps(self.definition),
            roleArn=sfn_role,
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
            function_name=name,
            function_version="$LATEST",
            memory_limit_in_mb=256,
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{self.account}:function:{name}",
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{name}",
            log_stream_name="sandbox",
            get_remaining_time_in_millis=lambda: 60_000,
        )
        logical = self._functions[name]["logical"]
        with self.outbox.invoking():
            return self._run_handler(name, logical, event, context, response_headers)

    def _run_handler(self, name: str, logical: str, event: Any, context: Any, response_headers: dict) -> bytes:
        try:
            for hook in self.fault_hooks:
                hook(logical, event)
            fault = self.faults.lambda_fault(logical, event) if self.faults is not None else None
            if fault is not None and fault[0].kind == "unavailable":
                raise lambda_api_error(fault[0].error or "CodeArtifactUserPendingException", name)
            if fault is not None and fault[0].kind == "crash":
                raise InjectedCrash(f"the sandbox crashed this invocation of {logical} (step {fault[1]})")
            module, function = self._module(name)
            began, began_sim = time.perf_counter(), self.clock.now()
            try:
                result = getattr(module, function)(event, context)
            finally:
                with self._invoke_lock:
                    self.handler_seconds.setdefault(logical, []).append(time.perf_counter() - began)
                step = self._functions[name]["step"]
                runs_for = self.lambda_seconds.get(step, self.lambda_seconds.get("default", 0.0))
                if runs_for > 0:  # the world says how long this function runs: its answer comes that much later
                    self.clock.sleep(runs_for)
            if fault is not None:  # a timeout: what the handler did stays done, its answer is lost
                timeout = self._functions[name]["timeout"]
                self.clock.sleep(timeout - (self.clock.now() - began_sim))
                response_headers["x-amz-function-error"] = "Unhandled"
                message = f"RequestId: {context.aws_request_id} Error: Task timed out after {timeout:.2f} seconds"
                # Lambda's own document, not the runtime's, written compact: a Lambda.Unknown Cause seen on AWS ends
                # 'Returned payload: {"errorMessage":"2023-06-12T19:54:02.822Z 0f6d… Task timed out after 3.01
                # seconds"}' (aws-samples/amazon-textract-idp-cdk-constructs issue #80).
                if fault[0].error == "Lambda.Unknown":  # an older runtime: no errorType in the payload
                    return json.dumps({"errorMessage": message}, separators=(",", ":")).encode()
                return json.dumps(
                    {"errorType": "Sandbox.Timedout", "errorMessage": message}, separators=(",", ":")
                ).encode()
            return json.dumps(result, default=str).encode()
        except LambdaApiError:
            raise  # Lambda itself refused the call: the caller gets an API error, not a function error
        except Exception as exc:  # reported the way the Lambda runtime reports an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(lambda_error_document(exc, context.aws_request_id)).encode()

    # -------------------------------------------------------------- events
    def rules(self) -> list[tuple[str, str, dict]]:
        """(function name, rule name, pattern) for every EventBridge rule in the template."""
        return [
            (name, rule, pattern) for name, spec in self._functions.items() for rule, pattern in spec["rules"].items()
        ]

    def deliver(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Deliver one event as EventBridge would: to every target whose rule pattern matches.

        Each target is a Lambda function EventBridge invokes asynchronously, so the results returned are those of
        the first attempts; what happens next is Lambda's (see EventDelivery): a failed attempt is retried on the
        simulated clock, then sent to the function's OnFailure destination, and some deliveries arrive twice.
        """
        from moto.events.models import EventPattern

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "account": self.account,
            "region": self.region,
            "time": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [],
            **event,
        }
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
        self.outbox.later(delay, function_name, rule, event, attempt)

    def _redeliver(self, function_name: str, rule: str, event: dict[str, Any], attempt: int) -> None:
        """A scheduled invocation, now due (run by the outbox)."""
        try:
            self._attempt(function_name, rule, event, attempt)
        except Exception:  # keep delivering; the log says what went wrong
            logging.getLogger(__name__).exception(
                "redelivering %s to %s failed", event.get("detail-type"), function_name
            )

    def dead_letter_queue(self) -> list[dict[str, Any]]:
        """The messages in the stack's SQS queues (read without deleting them): what no retry could deliver."""
        sqs, found = self.client("sqs"), []
        for logical_id in self.template.of_type("AWS::SQS::Queue"):
            url = sqs.get_queue_url(QueueName=self.attrs[(logical_id, "QueueName")])["QueueUrl"]
            seen: set[str] = set()
            while True:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
                    "Messages", []
                )
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
            "version": "1.0",
            "timestamp": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self.region}:{self.account}:function:{function_name}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
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

    # ----------------------------------------------------------- schedules
    def run_schedule(self, logical_id: str, *, after: float = 0.0) -> dict[str, Any]:
        """Run function `logical_id`'s EventBridge Scheduler schedule (its one ScheduleV2 event) at its first firing
        `after` simulated seconds from now or later, as Scheduler would: the clock moves on to that firing (the
        world runs meanwhile), then the function is invoked with the schedule's Input, each of Scheduler's context
        attributes in it replaced by its value (scheduler/latest/UserGuide/managing-schedule-context-attributes.html:
        <aws.scheduler.schedule-arn>, <aws.scheduler.scheduled-time> as 2022-03-22T18:59:43Z,
        <aws.scheduler.execution-id>, <aws.scheduler.attempt-number>). Returns {"schedule", "scheduledTime",
        "error", "result"}: the invocation's FunctionError and payload.

        A rate(N unit) schedule fires every N units from the stack's creation. A schedule never fires unless asked
        here: the sandbox's runs settle when their executions end, and a schedule would never end."""
        name = self.refs[logical_id]
        spec = self._functions.get(name)
        schedules = (spec or {}).get("schedules") or {}
        if len(schedules) != 1:
            raise SandboxError(
                f"template.yaml: {logical_id} has {len(schedules)} ScheduleV2 events; the sandbox runs one"
            )
        ((event_name, schedule),) = schedules.items()
        if "Input" not in schedule:
            # Without an Input, Scheduler sends "a default notification" (API reference, Target.Input) whose shape
            # its documentation does not give: the sandbox would have to invent one.
            raise SandboxError(
                f"template.yaml: {logical_id}'s schedule {event_name} has no Input; the sandbox needs one"
            )
        period = _rate_seconds(schedule["ScheduleExpression"], f"{logical_id}'s schedule {event_name}")
        earliest = self.clock.now() + max(0.0, after)
        due = self.created_at + period * max(1, math.ceil((earliest - self.created_at) / period))
        if due > self.clock.now():
            self.clock.sleep(due - self.clock.now())
        scheduled = self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
        context = {
            "schedule-arn": self.attrs[(f"{logical_id}{event_name}", "Arn")],
            "scheduled-time": scheduled,
            "execution-id": uuid.uuid4().hex[:16],
            "attempt-number": "1",
        }
        payload = re.sub(
            r"<aws\.scheduler\.([a-z-]+)>", lambda m: context.get(m.group(1), m.group(0)), schedule["Input"]
        )
        response = self.client("lambda").invoke(FunctionName=name, Payload=payload.encode())
        return {
            "schedule": context["schedule-arn"],
            "scheduledTime": scheduled,
            "error": response.get("FunctionError"),
            "result": json.loads(response["Payload"].read() or b"null"),
        }

    def start_driver(self) -> None:
        """Move the ECS simulator along and deliver the events it emits, each when it falls due: a fiber that
        sleeps until the simulator's next scheduled change, or until a call changes what it has scheduled."""
        if self._driver is not None or self.simulator is None:
            return
        changed = VEvent(self.clock)
        self.simulator.on_change = changed.set

        def drive() -> None:
            while True:
                try:
                    for event in self.simulator.tick():
                        self.deliver(event)
                except Exception:  # keep driving; a broken tick shows up in the run's outcome
                    logging.getLogger(__name__).exception("simulator tick failed")
                due = self.simulator.next_due()
                changed.clear()
                changed.wait(None if due is None else max(0.0, due - self.clock.now()))

        self._driver = VThreading(self.clock).Thread(target=drive, name="ferry-sandbox-driver", daemon=True)
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
            stateMachineArn=self.state_machine_arn,
            name=name or f"manual-{uuid.uuid4().hex[:12]}",
            input=json.dumps(payload),
        )["executionArn"]

    def wait_for_executions(self, limit: float = MAX_RUN_SECONDS) -> None:
        """Let the world run until no execution is RUNNING, every event has been delivered and no handler runs
        (a stopped execution's may outlive it). The targets of a delivered event may start executions of their
        own: those are waited for too. `limit`: simulated seconds before it gives up."""
        if not self.clock.run_until(self.settled, limit=limit):
            running = [arn.rsplit(":", 1)[-1] for arn in sorted(self.running)]
            raise SandboxError(
                f"after {limit:.0f} simulated seconds, executions still running: {running}"
                if running
                else f"nothing left to run, yet events still undelivered after {limit:.0f} simulated seconds"
            )

    def settle_world(self, limit: float = 3600.0) -> None:
        """After the executions: let ECS finish what it was doing (tasks stopping, old tasks draining, a deployment
        completing), so that what is reported is what stays. Up to `limit` simulated seconds."""
        self.clock.run_until(
            lambda: self.settled() and (self.simulator is None or self.simulator.next_due() is None), limit=limit
        )

    def settled(self) -> bool:
        """No execution RUNNING, no event undelivered, no handler running."""
        return not self.running and self.outbox.idle()

    def run_until(self, predicate: Callable[[], bool], limit: float = MAX_RUN_SECONDS) -> None:
        """Let the world run until `predicate()` holds (checked each time nothing is left to do at the present
        simulated time); SandboxError when it never does."""
        if not self.clock.run_until(predicate, limit=limit):
            raise SandboxError(f"the condition never held ({limit:.0f} simulated seconds, or nothing left to run)")

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
            TableName=self.lock_table,
            Select="COUNT",
            FilterExpression="begins_with(pk, :lock)",
            ExpressionAttributeValues={":lock": {"S": "service#"}},
        )["Count"]


_RATE = re.compile(r"rate\((\d+) (minutes?|hours?|days?)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def lambda_error_document(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The error document the Python runtime returns for an exception its handler raised, as a Lambda task's
    Cause carries it.

    awslambdaric's bootstrap.py (handle_event_request) builds it with make_error(str(value), etype.__name__,
    traceback.format_list(tb_tuples), invoke_id): the keys errorMessage, errorType, requestId and stackTrace, in
    that order, the stackTrace a list of the frames only, '  File "<path>", line <n>, in <name>\\n    <code>\\n'
    each, with no "Traceback" header and no last line repeating the message. Its leading frames of bootstrap.py
    itself are left out; here the sandbox plays the runtime's part, so its own leading frames are. The runtime
    writes the document with simplejson's default separators (", " and ": "), as json.dumps does: localstack's
    tests/aws/services/stepfunctions/v2/error_handling/test_task_lambda.snapshot.json, recorded against AWS, has
    the Cause '{"errorMessage": "Some exception was raised.", "errorType": "Exception", "requestId": "<uuid>",
    "stackTrace": ["  File \\"/var/task/handler.py\\", line 2, in handler\\n    raise Exception(...)\\n"]}'
    (the Lambda developer guide's python-exceptions page shows the same fields). On python3.12 it leaves
    non-ASCII characters unescaped (lambda_runtime_marshaller.Encoder: ensure_ascii=False for
    AWS_Lambda_python3.12 only); the sandbox escapes them, as every other runtime does, which is never shorter.
    """
    # As bootstrap.py's extract_traceback: (filename, lineno, name, line) tuples, so format_list draws no ^^^ under
    # the code (a FrameSummary with columns would, from Python 3.11 on), from the first frame not its own.
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]
    for i, frame in enumerate(frames):
        if frame[0] != __file__:
            frames = frames[i:]
            break
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


def _rate_seconds(expression: str, what: str) -> float:
    """A rate(value unit) expression's period in seconds; the unit is minute(s), hour(s) or day(s) (Scheduler's
    ScheduleExpression, API reference CreateSchedule). cron() and at() are not run by the sandbox."""
    match = _RATE.fullmatch(expression.strip())
    if not match or int(match.group(1)) < 1 or (int(match.group(1)) == 1) != (not match.group(2).endswith("s")):
        raise SandboxError(f"template.yaml: {what}: the sandbox runs rate(N unit) schedules only, got {expression!r}")
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")])


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's location, as S3 wants it: none in us-east-1, the region's LocationConstraint elsewhere
    (S3 API reference, CreateBucket: "If you don't specify a Region, the bucket is created in the US East (N.
    Virginia) Region (us-east-1)"; any other Region's endpoint answers IllegalLocationConstraintException)."""
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


class InlineExecutor:
    """concurrent.futures.ThreadPoolExecutor's interface, running each call at once in the caller's thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> "InlineExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 (a Future carries whatever the call raised)
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        return None


# A valid, empty zip archive: moto needs some code to create a function.
_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18


def _method_names_once_patch() -> Any:
    """Not a difference from AWS but a cost: moto lists its response class's methods (inspect.getmembers) on every
    request to decide whether the action exists, a few percent of a sandbox run. A class's methods do not change
    while a sandbox runs (every patch is in place before its first request), so each class is listed once per
    sandbox, and the answer is the same."""
    from moto.core import responses

    return mock.patch.object(
        responses, "method_names_from_class", functools.lru_cache(maxsize=256)(responses.method_names_from_class)
    )


_list_available_services = botocore.loaders.Loader.list_available_services
_SERVICES: dict[tuple[tuple[str, ...], str], tuple[str, ...]] = {}  # (search paths, model type) -> service names


def _available_services(loader: Any, type_name: str) -> list[str]:
    """Not a difference from AWS but a cost: every botocore loader lists the services it knows (one listdir and a
    stat per service directory, about 400 of them) once per model type, and boto3, moto and the handlers make new
    loaders, so a sandbox process listed them 19 times (half a second). The listing depends only on the search
    paths and the type, and the files do not change while the process runs: it is made once per (search paths,
    type) for the process."""
    key = (tuple(loader.search_paths), type_name)
    if key not in _SERVICES:
        _SERVICES[key] = tuple(_list_available_services(loader, type_name))
    return list(_SERVICES[key])


def _load_json_file(file_loader: Any, full_path: str, open_method: Any) -> Any:
    """Not a difference from AWS but a cost: botocore reads its JSON service models into OrderedDicts (a choice
    of the Python 2 days), which takes twice as long as plain dicts, a second of every sandbox process. Dicts
    keep their order since Python 3.7 and neither botocore nor moto uses what only an OrderedDict has
    (move_to_end, order-sensitive equality), so the sandbox reads them into dicts."""
    if not os.path.isfile(full_path):
        return None
    with open_method(full_path, "rb") as fp:
        return json.loads(fp.read().decode("utf-8"))


@functools.lru_cache(maxsize=4)
def _shared_loader(search_path_string: str | None = None) -> Any:
    """One botocore data loader for every session in the process. boto3 and moto make a new session for each
    sandbox (and moto for each backend's region list), and each new session's loader parses the JSON service
    models again: about a tenth of a sandbox run. Loaded models are only read, and one session already shares
    them between all its clients, so sharing them between sessions changes nothing else."""
    return botocore.loaders.create_loader(search_path_string)
