"""What each step receives and returns: small typed models, read from the state and written to it in one place.

A step's input is its Task state's Parameters (statemachine/build.py); its output is what the state stores at
its ResultPath, which later states read by path (`$.render.cluster`). Each model is a frozen dataclass whose
fields carry their JSON key (as the state machine spells it), whether the key must be there, and the JSON types
it may hold. `from_state` reads and checks an input, raising InputInvalid that names the field and what to pass;
`to_state` writes an output. tests/statemachine/test_step_contracts.py checks every Parameters key, and every
path the state machine reads from a step's output, against these models, so a key renamed on one side fails a
test instead of a deploy (on AWS a path that does not resolve fails the execution past every Catch).

Written here rather than with a validation library: the models must import in microseconds (every handler
loads them at cold start) and say in the error which state to fix; dataclasses and a page of code do both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from ferry.errors import InputInvalid

M = TypeVar("M", bound="Model")
JSON_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
    type(None): "null",
}


def key(
    name: str,
    *,
    kinds: tuple[type, ...] = (str,),
    required: bool = True,
    default: Any = None,
    nested: type[Model] | None = None,
    doc: str = "",
) -> Any:
    """A model field stored under JSON key `name`. `kinds`: the JSON types it may hold; `nested`: a Model its
    value is read as (an object); an optional field takes `default` (or a fresh copy of it, for a dict or list)."""
    meta = {"key": name, "kinds": (dict,) if nested else kinds, "required": required, "nested": nested, "doc": doc}
    if required:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Model:
    """Base of every step's input and output model (a frozen dataclass of `key` fields)."""

    @classmethod
    def keys(cls) -> dict[str, dataclasses.Field]:
        """JSON key -> field, in declaration order."""
        return {f.metadata["key"]: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_state(cls: type[M], data: Any, where: str = "") -> M:
        """Read `data` (the step's input, or a part of it); InputInvalid names the first field that is wrong."""
        where = where or cls.__name__
        if not isinstance(data, Mapping):
            raise InputInvalid(f"{where} must be a JSON object, got {JSON_NAMES.get(type(data), type(data).__name__)}")
        values = {}
        for name, f in cls.keys().items():
            meta = f.metadata
            if name not in data or data[name] is None:
                if meta["required"]:
                    raise InputInvalid(f"{where}: `{name}` is missing: the state must pass it ({meta['doc'] or name})")
                continue
            value = data[name]
            kinds = meta["kinds"]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                wanted = " or ".join(dict.fromkeys(JSON_NAMES.get(k, k.__name__) for k in kinds))
                raise InputInvalid(
                    f"{where}: `{name}` must be {wanted}, got "
                    f"{JSON_NAMES.get(type(value), type(value).__name__)}: fix the state's Parameters"
                )
            if meta["nested"] is not None:
                value = meta["nested"].from_state(value, f"{where}.{name}")
            values[f.name] = value
        return cls(**values)

    def to_state(self) -> dict[str, Any]:
        """The JSON the state stores: every field under its key, null included, so that every path a later state
        reads resolves."""
        out: dict[str, Any] = {}
        for name, f in type(self).keys().items():
            value = getattr(self, f.name)
            out[name] = value.to_state() if isinstance(value, Model) else value
        return out


# ------------------------------------------------------------------ shared parts of the steps' contracts
# Models are declared @dataclass(frozen=True, kw_only=True), so a step's input can extend a shared one.


@dataclasses.dataclass(frozen=True, kw_only=True)
class EcsStepInput(Model):
    """What every step that acts on the ECS service is told (statemachine/build.py ECS_SERVICE)."""

    execution: str = key("execution", doc="the execution's name, $$.Execution.Name: what the step tags and logs")
    service: str | None = key("service", required=False, doc="the service's name in the config registry")
    cluster: str = key("cluster", doc="the ECS cluster, $.render.cluster")
    ecs_service: str = key("ecsService", doc="the ECS service, $.render.ecsService")

    @property
    def where(self) -> str:
        """cluster/ECS service, as log lines and messages name it."""
        return f"{self.cluster}/{self.ecs_service}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progress(Model):
    """Where a wait for ECS stands, and when its state should look for itself if no event comes (its heartbeat)."""

    state: str = key("state", doc="IN_PROGRESS until the wait's own check says otherwise")
    check_in_seconds: int = key("checkInSeconds", kinds=(int,), doc="the waiting state's HeartbeatSecondsPath")


def read_action(
    event: Any, contracts: Mapping[str, tuple[type[Model], Any]], input_of: Mapping[str, str], step: str
) -> Any:
    """The typed input of a step with several actions (the lock, the canary, the rollback): the model its
    `action` names in `contracts`, read as the input of the state `input_of` names, so an error says which
    state's Parameters to fix."""
    if not isinstance(event, Mapping):
        raise InputInvalid(
            f"{step}'s input must be a JSON object, got {JSON_NAMES.get(type(event), type(event).__name__)}"
        )
    action = event.get("action")
    if action not in contracts:
        names = list(contracts)
        raise InputInvalid(f"`action` must be {', '.join(names[:-1])} or {names[-1]}, got {action!r}")
    return contracts[action][0].from_state(event, input_of[action])


@dataclasses.dataclass(frozen=True)
class Migration(Model):
    """One migration as the Map state runs it: an item of $.render.migrations, written by Render
    (ferry.steps.render.migration_steps) and read by the migration step (ferry.steps.migrate), one model for
    both. Positional too (`ferry run` builds one from the config, or from its command line)."""

    name: str = key("name", doc="the migration's name in the config, e.g. migrate")
    container: str = key("container", doc="the container of the new revision whose command is replaced")
    command: list[str] = key("command", kinds=(list,), doc="the command it runs, a list of strings")
    environment: dict[str, str] = key(
        "environment", kinds=(dict,), required=False, default={}, doc="variables added to the container's environment"
    )
    timeout: int = key(
        "timeoutSeconds",
        kinds=(int,),
        required=False,
        default=900,
        doc="how long it may run before Ferry stops it (MigrationTimedOut)",
    )
    heartbeat_seconds: int | None = key(
        "heartbeatSeconds",
        kinds=(int,),
        required=False,
        doc="the state's HeartbeatSecondsPath: when its retry looks at the task",
    )

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(part, str) for part in self.command):
            raise InputInvalid(
                f"migration {self.name!r}: `command` must be a non-empty list of strings, as the "
                "config's migrations[].command is: pass an item of $.render.migrations"
            )

    def label(self) -> str:
        shown = " ".join(self.command)
        return f"{self.name} ({shown[:120]}{'…' if len(shown) > 120 else ''})"

    def to_context(self) -> dict[str, Any]:
        """What the waiter keeps of it for the task's stop event (read back by `finish`)."""
        return {
            "name": self.name,
            "container": self.container,
            "command": list(self.command),
            "environment": dict(self.environment),
            "timeout": self.timeout,
        }

    @classmethod
    def from_context(cls, data: dict[str, Any]) -> "Migration":
        return cls(
            data["name"],
            data["container"],
            list(data["command"]),
            dict(data.get("environment") or {}),
            int(data.get("timeout", 900)),
        )
