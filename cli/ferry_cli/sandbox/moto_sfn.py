"""Where moto's Step Functions differs from AWS: each difference a small, named patch.

moto 5.2.5 executes the ASL with its Step Functions interpreter. Each patch here works around one named moto
behaviour and says what AWS does instead, and where AWS says so; they are covered by
tests/sandbox/test_engine.py, tests/sandbox/test_step_functions_fidelity.py, and, for task timeouts and
task-token callbacks, tests/sandbox/test_engine_callbacks.py (StopExecution's error and cause, and the status
events: tests/sandbox/test_engine_status_events.py and test_stop_timing.py). Two patches reach past Step
Functions to what its executions meet: Lambda's Invoke runs the handler in-process, and CloudWatch alarms
send their state change events.

`patches(sandbox)` yields them all (the waits are clock.wait_patches'); `status_hooks(sandbox)` adds Step
Functions' own "Step Functions Execution Status Change" events (source aws.states), which moto never emits:
RUNNING when an execution starts, then its terminal status, each queued on the sandbox's outbox and delivered
through the template's rules (tests/sandbox/test_engine_status_events.py).

Every function here touches moto's internals; nothing else in the sandbox patches Step Functions.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator
from unittest import mock

from .clock import SimClock

if TYPE_CHECKING:
    from .sandbox import Sandbox


def patches(sandbox: Sandbox) -> Iterator[Any]:
    """Each patch works around one named moto behaviour (the execution status events aside: status_hooks).

    Needs of `sandbox` only its `clock` and `_invoke` up front; the rest (`terminal_errors`, `outbox`,
    `account`, `region`) when a patch first runs."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    # moto's Lambda without Docker only echoes its input: run our handler in-process instead.
    def invoke(_backend, function_name, qualifier, body, headers, response_headers):
        return sandbox._invoke(function_name, body, response_headers)

    yield mock.patch.object(LambdaSimpleBackend, "invoke", invoke)
    yield from _callback_patches(sandbox)
    yield _stop_execution_patch(sandbox.clock)
    yield _start_time_patch(sandbox.clock)
    yield _alarm_events_patch(sandbox)
    yield _payload_quota_patch()
    yield from _lambda_error_patches()
    yield _parse_once_patch()
    yield _validate_once_patch()
    yield _history_watch_patch(sandbox)
    yield _lambda_client_patch()
    yield from _json_path_once_patches()


@functools.lru_cache(maxsize=8)
def _parsed(definition: str) -> tuple[Any, Any]:
    """moto's (program, ANTLR tree) of one ASL definition, parsed and built once per process (see
    _parse_once_patch)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = AmazonStateLanguageParser.__dict__.get("_ferry_unpatched_parse") or AmazonStateLanguageParser.parse
    return original(definition)


def _history_watch_patch(sandbox: Sandbox) -> Any:
    """Not a difference from AWS: a window onto each execution's history as moto writes it, so `ferry sandbox run`
    can show every state as it is entered (sandbox.watch_history: name, event type, details, simulated time)."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    make_environment = ExecutionWorker._get_evaluation_environment

    def environment(worker: Any) -> Any:
        env = make_environment(worker)
        name, add_event = worker._evaluation_details.execution_details.name, env.event_manager.add_event

        def add_and_watch(context: Any, event_type: Any, event_details: Any = None, **kwargs: Any) -> int:
            event_id = add_event(context, event_type, event_details, **kwargs)
            if sandbox.watch_history is not None:
                sandbox.watch_history(
                    name, str(getattr(event_type, "value", event_type)), event_details or {}, sandbox.clock.now()
                )
            return event_id

        env.event_manager.add_event = add_and_watch  # one execution's manager: Map iterations share it
        return env

    return mock.patch.object(ExecutionWorker, "_get_evaluation_environment", environment)


def _lambda_client_patch() -> Any:
    """The Lambda client of moto's Lambda tasks, where two things change:

    - A function error's Cause is the payload as the function wrote it, as on AWS: a Python handler's error
      document keeps the runtime's ", " and ": " in the Cause (sandbox.lambda_error_document), and a Lambda.Unknown
      Cause quotes Lambda's compact one. moto parses the payload and writes it again compact (lambda_eval_utils:
      json.dumps(payload, separators=(",", ":"))), a Cause shorter than AWS's; here the client's Invoke raises
      moto's own LambdaFunctionErrorException, as moto does just after, with the payload's text unchanged.
    - Not a difference from AWS but a cost: moto's Lambda task makes a new boto3 client for every invocation
      (about 8 ms each, most of a step's overhead here). One client per region for the sandbox's life answers the
      same, so the Lambda tasks share it (moto's boto_client_for ignores the state's credentials: every client it
      makes is the same)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original, made = lambda_eval_utils.boto_client_for, {}

    class VerbatimErrors:
        def __init__(self, client: Any) -> None:
            self._client = client

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def invoke(self, **parameters: Any) -> Any:
            response = self._client.invoke(**parameters)
            if response.get("FunctionError"):
                payload = response["Payload"].read().decode("utf-8", "replace")
                raise lambda_eval_utils.LambdaFunctionErrorException(response["FunctionError"], payload)
            return response

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if (region, service) not in made:
            client = original(region, service)
            made[region, service] = VerbatimErrors(client) if service == "lambda" else client
        return made[region, service]

    return mock.patch.object(lambda_eval_utils, "boto_client_for", boto_client_for)


def _json_path_once_patches() -> Iterator[Any]:
    """Not a difference from AWS but a cost: moto's interpreter parses each JSONPath (InputPath, Parameters'
    ".$" values, ResultPath) with jsonpath_ng every time a state runs it, and jsonpath_ng builds a new parser for
    each (a few percent of a sandbox run). A parsed path is only read (find, update on the data given), so each
    path is parsed once per process; a path that does not parse raises as before (lru_cache keeps no exception)."""
    import jsonpath_ng
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    yield mock.patch.object(json_path, "parse", _parsed_once(jsonpath_ng.ext.parse))
    yield mock.patch.object(result_path, "parse", _parsed_once(jsonpath_ng.parse))


@functools.cache
def _parsed_once(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` with its results kept for the process (one cache per parser: ext and plain differ)."""
    return functools.lru_cache(maxsize=1024)(parse)


def _parse_once_patch() -> Any:
    """Not a difference from AWS but a cost: moto parses the whole definition with ANTLR on CreateStateMachine
    and again on every StartExecution (about 0.2 s for Ferry's, a fifth of a sandbox run), then builds its program
    (Preprocessor().visit: a few percent more). Both are pure in the definition, so they are made once per
    definition and process. Executions may share a program: its components keep no evaluation state of their own
    (every state's data lives in the execution's Environment; the workers of Map and Parallel states are made
    anew for each evaluation), which an AST scan of moto 5.2.5's components shows: outside __init__ they assign
    only EvalComponent.heap_key, a name made once and used as a key into each execution's own heap. A definition
    with syntax errors raises as before (lru_cache keeps no exception)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    if "_ferry_unpatched_parse" not in AmazonStateLanguageParser.__dict__:
        AmazonStateLanguageParser._ferry_unpatched_parse = AmazonStateLanguageParser.__dict__["parse"]

    return mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(_parsed))


_VALID_DEFINITIONS: set[str] = set()


def _validate_once_patch() -> Any:
    """Not a difference from AWS but a cost: CreateStateMachine and UpdateStateMachine validate the definition
    by building its whole program, which every sandbox does again for the same definition. A definition that
    validated once validates again (the check depends on nothing else); an invalid one is checked every time."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    validate = StepFunctionsParserBackend._validate_definition

    def validate_once(definition: str) -> None:
        if definition not in _VALID_DEFINITIONS:
            validate(definition)
            _VALID_DEFINITIONS.add(definition)

    return mock.patch.object(StepFunctionsParserBackend, "_validate_definition", staticmethod(validate_once))


# A Cause is at most 32768 characters: `cause` of TaskFailedEventDetails, LambdaFunctionFailedEventDetails and
# ExecutionFailedEventDetails in the Step Functions API reference ("Maximum length of 32768"); botocore's
# stepfunctions model, SensitiveCause: "max": 32768.
CAUSE_MAX_CHARS = 32768


def _lambda_error_patches() -> Iterator[Any]:
    """How Step Functions names a Lambda failure, as on AWS, where moto says "Exception":
    - a function error whose payload has no errorType is `Lambda.Unknown`, its Cause plain text ("The cause
      could not be determined because Lambda did not return an error type. Returned payload: ..."): how a
      timeout or an out-of-memory crash reaches the state on older runtimes (Step Functions developer guide,
      concepts-error-handling.html and bp-lambda-serviceexception.html);
    - an Invoke call Lambda refuses is `Lambda.<error code>` for a Lambda task state too ("Lambda errors are
      reported as Lambda.ErrorName", bp-lambda-serviceexception.html); moto's lambda:invoke does this already;
    - a function error whose Cause would be longer than a Cause may be (CAUSE_MAX_CHARS) fails the execution with
      States.DataLimitExceeded, which no Retry or Catch matches. What AWS does then is not documented (truncating
      the Cause, or failing the state); the sandbox takes the strict side: the failure path's Catch does not run,
      so a step whose error could be that long is found here, not on AWS. moto carries any length. (The payload
      the sandbox's handlers return is ASCII, json.dumps escaping the rest, so its length in characters is the
      same counted in code points, UTF-16 units or bytes.)
    """
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import (
        HistoryEventType,
        LambdaFunctionFailedEventDetails,
        TaskFailedEventDetails,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    def failure(env: Any, error: str, cause: str, lambda_task: bool, error_name: Any = None) -> Any:
        error_name = error_name or CustomErrorName(error)
        if lambda_task:
            return FailureEvent(
                env=env,
                error_name=error_name,
                event_type=HistoryEventType.LambdaFunctionFailed,
                event_details=EventDetails(
                    lambdaFunctionFailedEventDetails=(LambdaFunctionFailedEventDetails(error=error, cause=cause))
                ),
            )
        return FailureEvent(
            env=env,
            error_name=error_name,
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(
                taskFailedEventDetails=TaskFailedEventDetails(
                    error=error, cause=cause, resource="invoke", resourceType="lambda"
                )
            ),
        )

    too_long = StatesErrorNameType.StatesStatesDataLimitExceeded

    def named(original: Callable, lambda_task: bool) -> Callable:
        def from_error(state: Any, env: Any, ex: Exception) -> Any:
            if isinstance(ex, lambda_eval_utils.LambdaFunctionErrorException):
                try:
                    document = json.loads(ex.payload)
                    has_type = isinstance(document, dict) and "errorType" in document
                except (TypeError, ValueError):
                    has_type = False
                cause = (
                    ex.payload
                    if has_type
                    else "The cause could not be determined because Lambda did "
                    f"not return an error type. Returned payload: {ex.payload}"
                )
                if len(cause) > CAUSE_MAX_CHARS:
                    return failure(
                        env,
                        too_long.to_name(),
                        f"The function's error is a Cause of {len(cause)} characters; a Cause holds at most "
                        f"{CAUSE_MAX_CHARS}. AWS does not document what it does with a longer one: the sandbox "
                        "fails the execution.",
                        lambda_task,
                        StatesErrorName(typ=too_long),
                    )
                if not has_type:
                    return failure(env, "Lambda.Unknown", cause, lambda_task)
            if lambda_task and isinstance(ex, ClientError):
                error, cause = StateTaskServiceLambda._error_cause_from_client_error(ex)
                return failure(env, error, cause, lambda_task)
            return original(state, env, ex)

        return from_error

    yield mock.patch.object(StateTaskLambda, "_from_error", named(StateTaskLambda._from_error, True))
    yield mock.patch.object(StateTaskServiceLambda, "_from_error", named(StateTaskServiceLambda._from_error, False))


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
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=error),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            error=error.to_name(),
                            cause=f"The state's input after Parameters is {len(payload)} bytes, over the 262144-byte "
                            "payload size quota.",
                        )
                    ),
                )
            )
        return original(env, parameters, region, state_credentials)

    return mock.patch.object(lambda_eval_utils, "execute_lambda_function_integration", execute)


def _alarm_events_patch(sandbox: Sandbox) -> Any:
    """CloudWatch sends 'CloudWatch Alarm State Change' to EventBridge; moto does not: queue them like status events."""
    from moto.cloudwatch.models import Alarm

    original = Alarm.update_state
    stamps: dict[str, str] = {}  # alarm name -> when it last changed state

    def update_state(alarm: Any, reason: str, reason_data: str, state_value: str) -> None:
        before = {
            "value": alarm.state_value,
            "reason": alarm.state_reason or "",
            "reasonData": alarm.state_reason_data or "{}",
            "timestamp": stamps.get(alarm.name),
        }
        original(alarm, reason, reason_data, state_value)
        if before["value"] == state_value:
            return
        sandbox.outbox.announce()
        now = sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        stamps[alarm.name] = now
        # The detail as CloudWatch publishes it (tests/fixtures/aws/cloudwatch): the reason data of both
        # states, and the alarm's metric in configuration.metrics.
        metric = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm.alarm_arn)),
            "returnData": True,
            "metricStat": {
                "metric": {
                    "name": alarm.metric_name,
                    "namespace": alarm.namespace,
                    "dimensions": {d.name: d.value for d in alarm.dimensions},
                },
                "period": alarm.period,
                "stat": alarm.statistic,
            },
        }
        sandbox.outbox.put(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch",
                "account": sandbox.account,
                "region": sandbox.region,
                "time": sandbox.clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "resources": [alarm.alarm_arn],
                "detail": {
                    "alarmName": alarm.name,
                    "state": {
                        "value": state_value,
                        "reason": reason,
                        "reasonData": reason_data or "{}",
                        "timestamp": now,
                    },
                    "previousState": {**before, "timestamp": before["timestamp"] or now},
                    "configuration": {"description": alarm.description or "", "metrics": [metric]},
                },
            }
        )

    return mock.patch.object(Alarm, "update_state", update_state)


def _start_time_patch(clock: SimClock) -> Any:
    """`$$.Execution.StartTime` on the simulated clock, the clock of every event's `time` in the sandbox.

    Ferry orders deploy requests by their trigger's time, or by StartTime
    for a manual start: both must come from one clock. (The execution's
    startDate in the API stays wall-clock, which the history offsets use.)
    """
    from moto.stepfunctions.parser.backend import execution_worker

    original = execution_worker.ExecutionData

    def execution_data(**fields: Any) -> Any:
        started = fields.get("StartTime")
        now = clock.now_datetime()
        fields["StartTime"] = now if isinstance(started, datetime) else now.isoformat()
        return original(**fields)

    return mock.patch.object(execution_worker, "ExecutionData", execution_data)


def _callback_patches(sandbox: Sandbox) -> Iterator[Any]:
    """Task timeouts and task-token callbacks (`.waitForTaskToken`, SendTask*), as on AWS (their waits count
    simulated seconds: clock.wait_patches)."""
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
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError
    from moto.stepfunctions.responses import StepFunctionResponse

    heartbeat_timeout = StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout)
    timeout = StatesErrorName(typ=StatesErrorNameType.StatesTimeout)

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
        if (
            task.resource.condition == ResourceCondition.WaitForTaskToken
            and env.states.context_object.context_object_data.get("State", {}).get("RetryCount")
        ):
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
    terminal = {
        StatesErrorName(typ=StatesErrorNameType.StatesRuntime).error_name,
        StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded).error_name,
    }

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
        response.stepfunction_backend.send_task_failure(param("taskToken"), error=param("error"), cause=param("cause"))
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
        cause = (
            f"The JSONPath '{missing.json_path}' specified for the field '{env.next_field_name}' could not "
            f"be found in the input '{to_json_str(missing.data)}'"
        )
        return FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=StatesErrorNameType.StatesRuntime.to_name(), cause=cause
                    )
                ),
            )
        )

    # A Map iteration or Parallel branch that fails with a States.* error (States.HeartbeatTimeout after its
    # retries, States.Runtime, ...) passes that error to the Map or Parallel state on AWS; moto wraps it in a
    # custom error name, which refuses the States. prefix and turns every such failure into States.Runtime.
    def error_name_of(error_name: str | None = None) -> Any:
        if isinstance(error_name, str) and error_name.startswith("States."):
            return StatesErrorName(typ=StatesErrorNameType.from_name(error_name))
        return CustomErrorName(error_name=error_name)

    yield mock.patch.object(iteration_worker, "CustomErrorName", error_name_of)
    yield mock.patch.object(branches_decl, "CustomErrorName", error_name_of)
    # Likewise a Fail state whose ErrorPath names a States.* error (a caught States.Timeout passed on to it).
    yield mock.patch.object(state_fail, "CustomErrorName", error_name_of)
    yield mock.patch.object(Environment, "set_stop", stop)
    yield mock.patch.object(execute_state.ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout)


def _stop_execution_patch(clock: SimClock) -> Any:
    """StopExecution drops its error and cause (moto stops with "" and ""): pass them on, as AWS does, to the
    ExecutionAborted history event (and so to the ABORTED status event). Its response also lacks the
    stopDate while the execution winds down: answer with the stop's date, as AWS does. (That the execution
    is ABORTED at once is status_hooks' part.)"""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def stop_execution(response):
        param = response._get_param
        execution = response.stepfunction_backend.describe_execution(param("executionArn"))
        stop_date = clock.now_datetime()
        execution.stop(stop_date=stop_date, error=param("error"), cause=param("cause"))
        return ActionResult({"stopDate": execution.stop_date or stop_date})

    return mock.patch.object(StepFunctionResponse, "stop_execution", stop_execution)


# ------------------------------------------------------------------ execution status change events
def status_hooks(sandbox: Sandbox) -> Iterator[Any]:
    """Execution status change events, which moto never emits: queued as executions start and end."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    outbox = sandbox.outbox
    aborted: dict[str, Any] = {}  # execution ARN -> when StopExecution stopped it

    # RUNNING: announced before moto sets the status (so wait_for_executions cannot miss it), queued once set,
    # under the order lock, which the terminal status below waits for.
    start = Execution.start

    def start_execution(execution):
        if not _emits_status(execution):
            return start(execution)
        with outbox.order:
            outbox.announce()
            try:
                start(execution)
            except BaseException:
                outbox.delivered()
                raise
            sandbox.running.add(execution.exec_arn)
            _queue_status(sandbox, execution, "RUNNING")

    # The terminal status: moto sets it before the output, error and cause, so queue it only once
    # terminated() has recorded them all; announced before, so no wait sees the status before its event.
    terminated = BaseExecutionWorkerCommunication.terminated

    def execution_terminated(comm):
        execution = comm.execution
        if not _emits_status(execution):
            return terminated(comm)
        stopped_at = aborted.get(execution.exec_arn)
        if stopped_at is not None:  # ABORTED was announced when it was stopped (stop_execution, below)
            terminated(comm)
            execution.stop_date = stopped_at
            return None
        outbox.announce()
        try:
            terminated(comm)
        except BaseException:
            outbox.delivered()
            raise
        finally:
            sandbox.running.discard(execution.exec_arn)
        with outbox.order:
            _queue_status(sandbox, execution, execution.status)

    # A stop: moto keeps the execution RUNNING, and sends nothing, until a Lambda the execution had invoked
    # returns; on AWS the execution is ABORTED at once (DescribeExecution says so, with the stop's date) and its
    # status event goes out then, while that Lambda may still be running and finish later: "invoked Lambda
    # functions continue to run" (Step Functions developer guide, state-parallel.html), and Lambda has no way
    # to stop an invocation. The late Lambda's answer is dropped (terminated, above, sends nothing more).
    stop = Execution.stop

    def stop_execution(execution, stop_date, error, cause):
        running = execution.exec_status == ExecutionStatus.RUNNING
        stop(execution, stop_date=stop_date, error=error, cause=cause)
        if running and _emits_status(execution):
            execution.exec_status, execution.stop_date = ExecutionStatus.ABORTED, stop_date
            with outbox.order:
                aborted[execution.exec_arn] = stop_date
                sandbox.running.discard(execution.exec_arn)
                outbox.announce()
                _queue_status(sandbox, execution, "ABORTED")

    yield mock.patch.object(Execution, "start", start_execution)
    yield mock.patch.object(BaseExecutionWorkerCommunication, "terminated", execution_terminated)
    yield mock.patch.object(Execution, "stop", stop_execution)


def _emits_status(execution: Any) -> bool:
    """Standard workflows send status change events; Express workflows do not."""
    sm_type = getattr(execution, "sm_type", "STANDARD")
    return str(getattr(sm_type, "value", sm_type)) != "EXPRESS"


def _queue_status(sandbox: Sandbox, execution: Any, status: str) -> None:
    """Queue the event of a change announced on the outbox (never raises: runs in moto's threads)."""
    try:
        sandbox.outbox.put(status_event(execution, status, sandbox.account, sandbox.region, sandbox.clock))
    except Exception:
        logging.getLogger(__name__).exception(
            "could not build the %s status event of %s", status, getattr(execution, "exec_arn", "an execution")
        )
        sandbox.outbox.delivered()


def status_event(execution: Any, status: str, account: str, region: str, clock: SimClock) -> dict[str, Any]:
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
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account,
        "time": clock.now_datetime().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
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
            "redriveStatusReason": (
                f"Execution is {status} and is redrivable"
                if status in ("FAILED", "TIMED_OUT", "ABORTED")
                else f"Execution is {status} and cannot be redriven"
            ),
            "error": error,
            "cause": cause,
        },
    }


def _epoch_millis(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # moto's utcnow() is naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
