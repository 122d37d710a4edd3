"""Errors the state machine matches by name.

Each class name is exactly what the ASL's Retry and Catch blocks (and the Fail
states' Error) use, so renaming one is a change to the state machine too.
Messages are written for the person reading the Step Functions console: what
happened, the evidence, and what to do.
"""

from __future__ import annotations

import json


class FerryError(Exception):
    """Base class: a failure Ferry understands and can explain."""


class ConfigInvalid(FerryError):
    """A service config or manifest breaks its schema or cannot be read."""


class ServiceNotRegistered(FerryError):
    """The service named in the input has no config in the registry."""


class ClusterNotAllowed(FerryError):
    """The config names a cluster outside the ones this installation may touch."""


class ServiceLocked(FerryError):
    """Another execution holds this service's deploy lock (retried by the ASL)."""


class LockUnavailable(FerryError):
    """The lock table could not be reached; the deploy must not go on without a lock."""


class ImageNotFound(FerryError):
    """An image named by the trigger is not in ECR."""


class TaskDefinitionInvalid(FerryError):
    """The rendered task definition is not something ECS would accept."""


class ServiceNotFound(FerryError):
    """The ECS service in the config does not exist (or is not ACTIVE)."""


class DeploymentFailed(FerryError):
    """ECS reported the service deployment FAILED, or rolled it back by itself."""


class PhaseTimedOut(FerryError):
    """A deploy phase took longer than its configured timeout."""


class InputInvalid(FerryError):
    """The execution input is not what the state machine expects."""


class ExecutionEnded(FerryError):
    """The execution was stopped or timed out while a step ran: the step starts nothing more (its journal is
    marked ended: ferry.lifecycle.journal), and removes what it had just started."""


class CleanupIncomplete(FerryError):
    """Something the execution started is still running or registered after its removal was asked for (a
    throttled StopTask or DeregisterTargets, a task still stopping): the clean-up states retry it with back-off
    for up to an hour, then end in a Fail state naming what was left."""


class TemplateUnresolved(FerryError):
    """A template placeholder could not be resolved: unknown function, missing value, parameter, stack output or secret."""


class VerifyFailed(FerryError):
    """Verify found references in the new revision that would break the service; nothing was changed."""


class MigrationFailed(FerryError):
    """A migration task ran and failed: non-zero exit, or stopped before it finished by anyone but itself (a person,
    ECS's scheduler, a Spot interruption, ...), even when its container then exited 0."""


class MigrationTimedOut(FerryError):
    """A migration task ran longer than its timeoutSeconds; Ferry stopped it."""


class MigrationNotStarted(FerryError):
    """ECS could not place or start a migration task (capacity, image pull, ...)."""


class Superseded(FerryError):
    """A newer deploy of the same service is queued or has gone out; this one steps aside (not a failure)."""


class NothingToRollBack(FerryError):
    """A rollback was asked for a service Ferry has no deploy record of."""


class CanaryCrashed(FerryError):
    """A canary task stopped (exit code, stopped reason and log lines in the message), or could not be placed."""


class CanaryUnhealthy(FerryError):
    """The canary failed its health checks too many times in a row (target health reason codes in the message)."""


class AlarmTriggered(FerryError):
    """An alarm of the health gates was in ALARM during the bake (its name and reason in the message)."""


# Names the state machine matches or ends with that no handler raises. They are classes so that every Error name
# in statemachine/deploy.asl.json is one here (tests/statemachine/test_asl_source.py).


class LockReleased(FerryError):
    """Not raised: the Error with which a lock holder's release fails a waiting deploy's task token (waking it);
    the waiting state retries it at once and takes the lock."""


class RolledBack(FerryError):
    """Not raised: the Error of the `Rolled back` Fail state. The new revision failed (the Cause starts with its
    error) and the service is back on the revision it ran before."""


class RollbackFailed(FerryError):
    """Not raised: the Error of the `Rollback failed` Fail states. The new revision failed and so did the
    rollback; a person must act (the Cause says what runs now and how to put it back)."""


# Ferry's verdicts, never retried: a step that raises one has decided, and running it again would decide the same.
# Every Lambda step's Retry lists them, in this order, with MaxAttempts 0 before its retrier of anything else
# (statemachine/build.py derives that list from this one). Not verdicts, so retried like any other error:
# ServiceLocked and LockUnavailable (the lock table may answer the next time), and the three names above.
VERDICTS: tuple[type[FerryError], ...] = (
    InputInvalid,
    ServiceNotRegistered,
    ConfigInvalid,
    ClusterNotAllowed,
    TemplateUnresolved,
    ImageNotFound,
    ServiceNotFound,
    TaskDefinitionInvalid,
    VerifyFailed,
    NothingToRollBack,
    Superseded,
    MigrationFailed,
    MigrationNotStarted,
    MigrationTimedOut,
    CanaryCrashed,
    CanaryUnhealthy,
    PhaseTimedOut,
    DeploymentFailed,
    AlarmTriggered,
)


def cause_text(cause: str | None) -> str | None:
    """The text to read of a Step Functions Cause.

    A step whose Lambda function raised an unhandled exception has as Cause the Lambda runtime's error document, a
    JSON string `{"errorMessage", "errorType", "requestId", "stackTrace"}`: its `errorMessage` is what to read. Any
    other Cause (Ferry's own, plain text) is the text as it is. The execution-ended function (the manifest result,
    the deploy events) and Rollback read Causes through this.
    """
    if not cause:
        return cause
    try:
        document = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(document, dict) and isinstance(document.get("errorMessage"), str):
        return document["errorMessage"]
    return cause
