"""A sandbox that lasts between commands (`--state DIR`): kept as the world it started from and a journal of every
change made to it since, replayed in order on virtual time.

moto keeps its accounts in memory, and its objects (executions running in threads, the ECS simulator's tasks) cannot
be written to disk and read back. But a sandbox on virtual time is deterministic: the same world and the same
deliveries give the same executions, revisions and services (tests/statemachine/test_virtual_time.py). So the
state is the journal: each command that changes the sandbox (`ferry sandbox run`'s deliveries, `ferry deploy`'s
start of an execution) appends what it did, and every command given `--state DIR` first rebuilds the world and
replays the journal, each command's actions as that command ran them, before it does its own work.

DIR/state.json holds the journal; DIR/deliveries/<n>/ keeps a copy of each delivered file (a manifest's key
is its file name). A world whose content changed since the state began is refused: the replay would no longer
reproduce what the earlier commands saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .world import World, WorldError

if TYPE_CHECKING:
    from .run import Delivery
    from .sandbox import Sandbox

VERSION = 1
POLL_SECONDS = 5.0  # as `ferry deploy` follows an execution it started (local._follow), in simulated seconds


def fingerprint(world: World) -> str:
    """What the replay depends on in the world: its content, its task definitions and its registry's files."""
    digest = hashlib.sha256()
    digest.update(json.dumps(world.data, sort_keys=True, default=str).encode())
    digest.update(json.dumps(world.task_definitions, sort_keys=True, default=str).encode())
    registry = world.data.get("registry")
    if registry:
        root = world.path.parent / registry
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


class SandboxState:
    def __init__(self, directory: Path, world: World) -> None:
        self.directory = directory
        self.file = directory / "state.json"
        self.world_fingerprint = fingerprint(world)
        self.journal: list[dict[str, Any]] = []
        if self.file.exists():
            self._load(world)

    def _load(self, world: World) -> None:
        try:
            found = json.loads(self.file.read_text())
        except (OSError, ValueError) as exc:
            raise WorldError(
                f"{self.file}: not a sandbox state ({exc}): remove it or use another --state directory"
            ) from exc
        if not isinstance(found, dict) or found.get("version") != VERSION or not isinstance(found.get("journal"), list):
            raise WorldError(
                f"{self.file}: not a sandbox state of this version of ferry: remove it or use another --state directory"
            )
        if found.get("world") != self.world_fingerprint:
            raise WorldError(
                f"--state {self.directory}: {world.path} (or a file it names) changed since this sandbox began, so "
                f"replaying its {len(found['journal'])} earlier command(s) would not give what they saw: use a new "
                "--state directory (or delete this one) to start again from the changed world"
            )
        self.journal = found["journal"]

    # ------------------------------------------------------------------ replay
    def replay(self, sandbox: Sandbox, world: World) -> None:
        """Run every journalled command's actions again, in order, as the command ran them."""
        from .run import deliver_all, load_delivery

        sfn = sandbox.client("stepfunctions")
        for command in self.journal:
            # A command journalled either its deliveries (delivered as deliver_all did) or one execution it started.
            deliveries = [
                load_delivery(a["kind"], self.directory / a["file"])
                for a in command["actions"]
                if a["kind"] in ("event", "manifest")
            ]
            deliver_all(sandbox, world, deliveries)
            for action in (a for a in command["actions"] if a["kind"] == "start"):
                arn = sfn.start_execution(
                    stateMachineArn=sandbox.state_machine_arn, name=action["name"], input=json.dumps(action["input"])
                )["executionArn"]
                while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
                    sandbox.clock.sleep(POLL_SECONDS)
            if command.get("settle", True):
                sandbox.wait_for_executions()
                sandbox.settle_world()

    # ------------------------------------------------------------------ record
    def record_deliveries(self, command: str, deliveries: list[Delivery]) -> None:
        actions = []
        for delivery in deliveries:
            folder = Path("deliveries") / str(self._next_delivery())
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(delivery.path, self.directory / folder / delivery.path.name)
            actions.append({"kind": delivery.kind, "file": str(folder / delivery.path.name)})
        self._append({"command": command, "actions": actions})

    def record_start(self, command: str, name: str, request: dict[str, Any]) -> None:
        self._append(
            {"command": command, "actions": [{"kind": "start", "name": name, "input": request}], "settle": False}
        )

    def _next_delivery(self) -> int:
        folder = self.directory / "deliveries"
        return len(list(folder.iterdir())) if folder.exists() else 0

    def _append(self, command: dict[str, Any]) -> None:
        self.journal.append(command)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.file.with_suffix(".json.partial")
        partial.write_text(
            json.dumps({"version": VERSION, "world": self.world_fingerprint, "journal": self.journal}, indent=1)
        )
        os.replace(partial, self.file)  # a command stopped half-way leaves the earlier state whole
