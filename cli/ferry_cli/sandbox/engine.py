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
"""

from __future__ import annotations

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
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Iterator
from unittest import mock

import boto3

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


class Sandbox:
    """One sandboxed Ferry installation. Use as a context manager."""

    def __init__(self, *, root: Path = REPO_ROOT, speed: float = 60.0, account: str = DEFAULT_ACCOUNT,
                 region: str = DEFAULT_REGION, clusters: list[str] | None = None,
                 log_echo: io.TextIOBase | None = None) -> None:
        self.root = root
        self.clock = SimClock(speed=speed)
        self.account = account
        self.region = region
        self.clusters = clusters or ["default"]
        self.template = Template.load(root)
        self.logs = _LogSink(log_echo)
        self.lambda_invocations = 0
        self.handler_seconds: dict[str, list[float]] = {}  # logical function id -> real seconds of each invocation
        self.fault_hooks: list[Callable[[str, dict], None]] = []
        self.simulator: Any = None
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
        for patcher in self._patches():
            self._stack.enter_context(patcher)
        for patcher in self._status_hooks():
            self._stack.enter_context(patcher)
        logging.getLogger("moto").setLevel(logging.CRITICAL)

        from ferry import aws, clock as ferry_clock

        aws.reset()
        ferry_clock.use(self.clock.now)
        self._stack.callback(ferry_clock.use, None)
        self._stack.callback(aws.reset)
        self._deploy_stack()
        self._emitter = threading.Thread(target=self._emit_status_events, name="ferry-sandbox-status-events",
                                         daemon=True)
        self._emitter.start()

    def close(self) -> None:
        self._stop.set()
        if self._driver is not None:
            self._driver.join(timeout=5)
        if self._emitter is not None:
            self._emitter.join(timeout=5)
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
        yield from self._callback_patches()
        yield self._stop_execution_patch()
        yield self._start_time_patch()
        yield self._alarm_events_patch()

    def _alarm_events_patch(self) -> Any:
        """CloudWatch sends 'CloudWatch Alarm State Change' to EventBridge; moto does not: queue them like status events."""
        from moto.cloudwatch.models import Alarm

        original = Alarm.update_state
        sandbox = self

        def update_state(alarm: Any, reason: str, reason_data: str, state_value: str) -> None:
            before = alarm.state_value
            original(alarm, reason, reason_data, state_value)
            if before == state_value:
                return
            sandbox._announce_status()
            now = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            sandbox._status_queue.put({
                "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch", "account": sandbox.account, "region": sandbox.region,
                "time": sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [alarm.alarm_arn],
                "detail": {"alarmName": alarm.name, "state": {"value": state_value, "reason": reason, "timestamp": now},
                           "previousState": {"value": before, "reason": "", "timestamp": now},
                           "configuration": {"description": alarm.description or ""}},
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
        from moto.stepfunctions.responses import StepFunctionResponse

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

        def error_equals_body(decl, env):
            error_name = env.stack[-1]
            error_equals(decl, env)
            if error_name == heartbeat_timeout and timeout in decl.error_names:
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
            except Exception:
                if env.is_running():
                    raise

        yield mock.patch.object(Environment, "set_stop", stop)
        yield mock.patch.object(execute_state.ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout)

    @staticmethod
    def _stop_execution_patch() -> Any:
        """StopExecution drops its error and cause (moto stops with "" and ""): pass them on, as AWS does, to the
        ExecutionAborted history event (and so to the ABORTED status event). Its response also lacks the
        stopDate while the execution winds down: answer with the stop's date, as AWS does."""
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
            sandbox._announce_status()
            try:
                terminated(comm)
            except BaseException:
                sandbox._status_delivered()
                raise
            with sandbox._status_order:
                sandbox._queue_status(execution, execution.status)

        yield mock.patch.object(Execution, "start", start_execution)
        yield mock.patch.object(BaseExecutionWorkerCommunication, "terminated", execution_terminated)

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
                s3.create_bucket(Bucket=self.refs[logical_id])
            elif resource["Type"] == "AWS::DynamoDB::Table":
                ddb.create_table(
                    TableName=self.refs[logical_id], BillingMode="PAY_PER_REQUEST",
                    KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
                )
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
            self._functions[name] = {"logical": logical_id, "path": path, "function": function,
                                     "rules": self.resolver.resolve(fn.rules)}
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
        from ferry.observability import logger

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
        try:
            for hook in self.fault_hooks:
                hook(self._functions[name]["logical"], event)
            module, function = self._module(name)
            began = time.perf_counter()
            try:
                result = getattr(module, function)(event, context)
            finally:
                with self._invoke_lock:
                    self.handler_seconds.setdefault(self._functions[name]["logical"], []).append(time.perf_counter() - began)
            return json.dumps(result, default=str).encode()
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
        """Deliver one event as EventBridge would: to every target whose rule pattern matches."""
        from moto.events.models import EventPattern

        event = {"version": "0", "id": str(uuid.uuid4()), "account": self.account, "region": self.region,
                 "time": self.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [], **event}
        results = []
        for function_name, rule, pattern in self.rules():
            if EventPattern.load(json.dumps(pattern)).matches_event(event):
                response = self.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
                payload = json.loads(response["Payload"].read() or b"null")
                results.append({"rule": rule, "function": function_name, "error": response.get("FunctionError"),
                                "result": payload})
        return results

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
                with self._status_cv:
                    delivered = self._status_cv.wait_for(lambda: self._status_pending == 0,
                                                         timeout=max(0.0, deadline - time.monotonic()))
                if not delivered:
                    raise SandboxError(
                        f"execution status change events still undelivered after {timeout:.0f} real seconds")
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


def _epoch_millis(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # moto's utcnow() is naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


# A valid, empty zip archive: moto needs some code to create a function.
_EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
