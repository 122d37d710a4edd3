"""The short, human summary a finished deploy leaves as its execution output (the console's Output tab)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry.runtime import clock
from ferry.aws.ecs import revision_name


def deployed(state: dict[str, Any], started_at: str | None) -> dict[str, Any]:
    """What ran, what runs now, how, how long it took, and where the artefacts are; never the whole state."""
    render = state.get("render") if isinstance(state.get("render"), dict) else {}
    registered = state.get("register") if isinstance(state.get("register"), dict) else {}
    rollback = state.get("action") == "rollback"
    now_running = registered.get("taskDefinitionArn") or render.get("rollbackTo") or ""
    before = render.get("previousTaskDefinitionArn") or ""
    artefacts = dict(render.get("artefacts") or {})
    for step in ("verify", "register"):
        found = state.get(step) if isinstance(state.get(step), dict) else {}
        if found.get("artefact"):
            artefacts[step] = found["artefact"]
    duration = None
    if started_at:
        duration = round(clock.now() - datetime.fromisoformat(started_at.replace("Z", "+00:00")).timestamp())
    return {
        "result": "ROLLED_BACK_ON_REQUEST" if rollback else "DEPLOYED",
        "service": state.get("service"),
        "ecsService": f"{render.get('cluster', '?')}/{render.get('ecsService', '?')}",
        "summary": render.get("summary") or "",
        "strategy": render.get("strategy"),
        "from": revision_name(before) if before else None,
        "to": revision_name(now_running) if now_running else None,
        "images": render.get("images") or {},
        "durationSeconds": duration,
        "artefacts": artefacts,
    }
