"""The deploy journal: what an execution took, started or changed, written before or as it happens.

One item per execution in the lock table, `journal#<execution name>`. Whatever cleans up after an execution (its
own failure paths, the execution-ended function, the reaper) reads this, never the service's config as it is now:
a config edited, broken or deleted during a deploy cannot hide what the deploy left running.

An entry is written before the change it names (the lock before it is taken, a canary or migration before its
task is started), so a change is never made without its entry; an entry whose change never happened costs the
clean-up a look that finds nothing. The execution-ended function marks the journal ended (`endedAt`) before it
cleans up; from then on no step may write an entry (the write is conditional on `endedAt` not existing), so a
step still running when its execution was stopped cannot start a task nobody will clean up: it is refused
(`ExecutionEnded`) before it starts one, or it finds the mark after starting one and removes it itself
(`ended`). Once everything the journal names is cleaned up, the journal is closed (`closedAt`); the reaper
looks for journals that are ended but not closed, and for ended executions whose journal was never ended (a lost
end event).

Attributes (docs/architecture.md, "The lock table", lists them for people):
- `execution` (the ARN), `service` (the registry name), `cluster`, `ecsService`, `lockKey` (cluster/service):
  written when the lock is taken (`open`);
- `migrations` (the names of the migrations the execution may start), `taskDefinitionArn` (the revision it
  registered, which finds its canary's stopped tasks), `previous` (the revision and desired count the service
  had before the update): added by the steps that start or change them (`record`);
- `endedAt`, `status`: the execution ended (execution-ended, or the reaper for a lost end event);
- `closedAt`, or `left` (what clean-up could not remove yet, for the reaper and for people);
- `expiresAt`: DynamoDB's TTL, 30 days after the journal was opened: long after any clean-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ferry import aws
from ferry.errors import ExecutionEnded, LockUnavailable
from ferry.runtime import clock

TTL_SECONDS = 30 * 24 * 3600
PREFIX = "journal#"


def _key(execution: str) -> dict[str, Any]:
    return {"pk": {"S": PREFIX + name_of(execution)}}


def name_of(execution: str) -> str:
    """An execution's name, from its name or its ARN (the journal is keyed by name: names are unique per state
    machine, and one lock table serves one state machine)."""
    return execution.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class Journal:
    """One execution's journal, as read."""

    execution: str
    service: str | None = None
    cluster: str | None = None
    ecs_service: str | None = None
    lock_key: str | None = None
    owner: str | None = None  # the execution's ARN, which holds the lock
    migrations: tuple[str, ...] = ()
    task_definition_arn: str | None = None
    previous: dict[str, Any] = field(default_factory=dict)
    ended_at: float | None = None
    status: str | None = None
    closed_at: float | None = None
    left: tuple[str, ...] = ()

    @property
    def opened(self) -> bool:
        """True when the execution took (or was about to take) the lock: there may be something to clean up."""
        return bool(self.lock_key and self.cluster and self.ecs_service)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Journal:
        def s(name: str) -> str | None:
            return item[name]["S"] if name in item and "S" in item[name] else None

        def n(name: str) -> float | None:
            return float(item[name]["N"]) if name in item and "N" in item[name] else None

        return cls(
            execution=item["pk"]["S"][len(PREFIX) :],
            service=s("service"),
            cluster=s("cluster"),
            ecs_service=s("ecsService"),
            lock_key=s("lockKey"),
            owner=s("owner"),
            migrations=tuple(sorted(item.get("migrations", {}).get("SS", []))),
            task_definition_arn=s("taskDefinitionArn"),
            previous=json.loads(s("previous") or "{}"),
            ended_at=n("endedAt"),
            status=s("status"),
            closed_at=n("closedAt"),
            left=tuple(item.get("left", {}).get("SS", [])),
        )


def open(table: str, *, owner: str, service: str, cluster: str, ecs_service: str, migrations: list[str]) -> None:
    """Open the execution's journal before it takes the lock (again on a retried acquire: same values).

    Raises ExecutionEnded when the execution has already ended (the execution-ended function marked it)."""
    attributes = {
        "owner": owner,
        "service": service,
        "cluster": cluster,
        "ecsService": ecs_service,
        "lockKey": f"{cluster}/{ecs_service}",
    }
    # Every name through ExpressionAttributeNames: `owner`, `service` and `cluster` are DynamoDB reserved words.
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values: dict[str, Any] = {f":a{i}": {"S": value} for i, value in enumerate(attributes.values())}
    values.update({":opened": {"N": str(int(clock.now()))}, ":ttl": {"N": str(int(clock.now() + TTL_SECONDS))}})
    names.update({"#opened": "openedAt", "#ttl": "expiresAt"})
    update = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(attributes)))
    update += ", #opened = if_not_exists(#opened, :opened), #ttl = if_not_exists(#ttl, :ttl)"
    if migrations:
        update += " ADD migrations :migrations"
        values[":migrations"] = {"SS": sorted(set(migrations))}
    _update(table, owner, update, values, names)


def record(table: str, execution: str, *, migration: str | None = None, **attributes: Any) -> None:
    """Add to the journal before the change it names: a migration's name, the registered `taskDefinitionArn`,
    the service's `previous` revision and count. Raises ExecutionEnded once the execution has ended."""
    parts, values, names = [], {}, {}
    for i, (name, value) in enumerate(sorted(attributes.items())):
        names[f"#a{i}"] = name
        values[f":a{i}"] = {"S": value if isinstance(value, str) else json.dumps(value, sort_keys=True)}
        parts.append(f"#a{i} = :a{i}")
    update = ("SET " + ", ".join(parts)) if parts else ""
    if migration:
        update += " ADD migrations :migration"
        values[":migration"] = {"SS": [migration]}
    if update:
        _update(table, execution, update.strip(), values, names)


def _update(table: str, execution: str, update: str, values: dict[str, Any], names: dict[str, str]) -> None:
    try:
        aws.client("dynamodb").update_item(
            TableName=table,
            Key=_key(execution),
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(endedAt)",
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            raise ExecutionEnded(
                f"execution {name_of(execution)} has already ended (it was stopped or timed out): nothing more is "
                "started for it"
            ) from exc
        raise LockUnavailable(
            f"could not write the deploy journal of {name_of(execution)} in table {table}: {exc}"
        ) from exc
    except BotoCoreError as exc:  # as LockUnavailable, retried by the states like the lock table's other errors
        raise LockUnavailable(f"could not reach table {table} for the deploy journal: {exc}") from exc


def read(table: str, execution: str) -> Journal | None:
    item = aws.client("dynamodb").get_item(TableName=table, Key=_key(execution), ConsistentRead=True).get("Item")
    return Journal.from_item(item) if item else None


def ended(table: str, execution: str) -> bool:
    """True once the execution-ended function (or the reaper) has marked the execution ended: a step that started
    something after the mark must remove it itself."""
    journal = read(table, execution)
    return journal is not None and journal.ended_at is not None


def end(table: str, execution: str, status: str) -> Journal:
    """Mark the execution ended (no step may add to its journal from now on) and return what it holds. A journal
    that never opened is created with only the mark, so that a step still running cannot start anything."""
    item = aws.client("dynamodb").update_item(
        TableName=table,
        Key=_key(execution),
        UpdateExpression="SET endedAt = if_not_exists(endedAt, :now), #status = :status, "
        "#ttl = if_not_exists(#ttl, :ttl)",
        ExpressionAttributeNames={"#status": "status", "#ttl": "expiresAt"},
        ExpressionAttributeValues={
            ":now": {"N": str(int(clock.now()))},
            ":status": {"S": status},
            ":ttl": {"N": str(int(clock.now() + TTL_SECONDS))},
        },
        ReturnValues="ALL_NEW",
    )["Attributes"]
    return Journal.from_item(item)


def close(table: str, execution: str, left: list[str]) -> None:
    """Record the clean-up's outcome: closed when nothing was left, else what was (the reaper tries again)."""
    ddb = aws.client("dynamodb")
    if left:
        ddb.update_item(
            TableName=table,
            Key=_key(execution),
            UpdateExpression="SET #left = :left REMOVE closedAt",
            ExpressionAttributeNames={"#left": "left"},
            ExpressionAttributeValues={":left": {"SS": sorted(set(left))}},
        )
        return
    ddb.update_item(
        TableName=table,
        Key=_key(execution),
        UpdateExpression="SET closedAt = :now REMOVE #left",
        ExpressionAttributeNames={"#left": "left"},
        ExpressionAttributeValues={":now": {"N": str(int(clock.now()))}},
    )
