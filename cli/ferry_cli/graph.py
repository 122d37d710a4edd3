"""One execution as a Mermaid flowchart: every state of the definition, every way out of it, and the path taken.

States keep the shapes of their type (Choice a rhombus, Succeed a stadium, Fail a hexagon, Map and
Parallel a subroutine box with their states in a subgraph beside them). The states the execution
entered get class `visited`, the ones whose last attempt ended in an error `failed`, the ones a
running execution is in `current`; the edges it took are drawn thick with `linkStyle`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.text import shorten

from . import history

LABEL_WIDTH = 48
CLASS_STYLES = {
    "visited": "fill:#d3f9d8,stroke:#2b8a3e,color:#000",
    "failed": "fill:#ffe3e3,stroke:#c92a2a,stroke-width:3px,color:#000",
    "current": "fill:#fff3bf,stroke:#e67700,stroke-width:3px,color:#000",
}
TAKEN_STYLE = "stroke:#2b8a3e,stroke-width:3px"
START = "start"

_SHAPES = {
    "Task": ("[", "]"),
    "Choice": ("{", "}"),
    "Wait": ("[/", "/]"),
    "Pass": ("(", ")"),
    "Succeed": ("([", "])"),
    "Fail": ("{{", "}}"),
    "Map": ("[[", "]]"),
    "Parallel": ("[[", "]]"),
}
# Characters Mermaid would read as syntax, HTML or Markdown inside a quoted label, as its entity codes.
_ENTITIES = {
    '"': "#quot;",
    "#": "#35;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
    "*": "#42;",
    "|": "#124;",
    "\\": "#92;",
}
_COMPARISONS = {
    "Equals": "=",
    "GreaterThan": ">",
    "GreaterThanEquals": ">=",
    "LessThan": "<",
    "LessThanEquals": "<=",
    "Matches": "~",
}


def label(text: str, width: int | None = None) -> str:
    """`text` as a quoted Mermaid string: one line, Mermaid's syntax characters as entity codes."""
    text = " ".join(str(text).split())
    if width:
        text = shorten(text, width)
    return '"' + "".join(_ENTITIES.get(c, c) for c in text) + '"'


@dataclass
class _Node:
    name: str
    id: str
    type: str
    state: dict[str, Any]
    branches: list[tuple[str, str, dict[str, Any]]]  # (subgraph id, title, states) of a Map or Parallel


@dataclass
class _Edge:
    source: str  # state name, or "" for the start
    target: str
    kind: str  # start, branch, next, choice, default, catch
    text: str = ""


class _Ids:
    """Mermaid node ids from state names: readable, unique, and never a keyword or an edge marker."""

    def __init__(self) -> None:
        self.used: set[str] = {START}

    def make(self, name: str) -> str:
        stem = "s_" + (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "state")
        found, n = stem, 1
        while found in self.used:
            n += 1
            found = f"{stem}__{n}"
        self.used.add(found)
        return found


def _collect(states: dict[str, Any], ids: _Ids, nodes: dict[str, _Node]) -> list[str]:
    """Every state in definition order, states of Map iterators and Parallel branches after their owner."""
    order = []
    for name, state in states.items():
        node = _Node(name, ids.make(name), state.get("Type", "Task"), state, [])
        nodes[name] = node
        order.append(name)
        if node.type == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            node.branches.append((f"{node.id}__items", f"{name}: each item", processor))
        elif node.type == "Parallel":
            for i, branch in enumerate(state.get("Branches", []), 1):
                node.branches.append((f"{node.id}__branch{i}", f"{name}: branch {i}", branch))
        for _, _, branch in node.branches:
            order.extend(_collect(branch.get("States", {}), ids, nodes))
    return order


def _operand(path: str) -> str:
    return path[2:] if path.startswith("$.") else path


def condition(rule: dict[str, Any]) -> str:
    """A Choice rule, short: `render.strategy = canary`, `action present and action = rollback`."""
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"]).strip("{% }")
    if "And" in rule:
        return " and ".join(condition(r) for r in rule["And"])
    if "Or" in rule:
        return "(" + " or ".join(condition(r) for r in rule["Or"]) + ")"
    if "Not" in rule:
        return f"not ({condition(rule['Not'])})"
    variable = _operand(rule.get("Variable", ""))
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        if key.startswith("Is"):
            kind = key[2:].lower()
            if kind == "present":
                return f"{variable} present" if value else f"no {variable}"
            return f"{variable} is {'' if value else 'not '}{kind}"
        for suffix, sign in _COMPARISONS.items():
            for kind in ("String", "Numeric", "Boolean", "Timestamp"):
                if key == f"{kind}{suffix}":
                    shown = json.dumps(value) if isinstance(value, bool) else value
                    return f"{variable} {sign} {shown}"
                if key == f"{kind}{suffix}Path":
                    return f"{variable} {sign} {_operand(str(value))}"
    return variable or "rule"


def _edges(nodes: dict[str, _Node], order: list[str], start_at: str) -> list[_Edge]:
    edges = [_Edge("", start_at, "start")]
    for name in order:
        node = nodes[name]
        state = node.state
        for _, _, branch in node.branches:
            if branch.get("StartAt") in nodes:
                edges.append(_Edge(name, branch["StartAt"], "branch"))
        if "Next" in state:
            edges.append(_Edge(name, state["Next"], "next"))
        grouped: dict[str, list[str]] = {}
        for rule in state.get("Choices", []):
            grouped.setdefault(rule.get("Next", ""), []).append(condition(rule))
        edges += [_Edge(name, target, "choice", " or ".join(texts)) for target, texts in grouped.items()]
        if "Default" in state:
            edges.append(_Edge(name, state["Default"], "default", "otherwise"))
        caught: dict[str, list[str]] = {}
        for catcher in state.get("Catch", []):
            caught.setdefault(catcher.get("Next", ""), []).extend(catcher.get("ErrorEquals", []))
        edges += [_Edge(name, target, "catch", ", ".join(errors)) for target, errors in caught.items()]
    return [e for e in edges if e.target in nodes]


def _taken(edges: list[_Edge], transitions: list[tuple[str, str, str]]) -> set[int]:
    """Indexes of the edges the transitions went along (a caught error along a Catch edge when there is one)."""
    taken = set()
    for source, target, how in transitions:
        candidates = [i for i, e in enumerate(edges) if e.source == source and e.target == target]
        if how == "caught":
            preferred = [i for i in candidates if edges[i].kind == "catch"]
        else:
            preferred = [i for i in candidates if edges[i].kind != "catch"]
        taken.update(preferred[:1] or candidates[:1])
    return taken


def mermaid(definition: dict[str, Any], events: list[dict[str, Any]] | None = None, *, title: str | None = None) -> str:
    """The definition as a Mermaid `flowchart TD`; with `events` (GetExecutionHistory), the path they took."""
    ids, nodes = _Ids(), {}
    order = _collect(definition.get("States", {}), ids, nodes)
    lines = ["---", f"title: {json.dumps(title)}", "---"] if title else []
    lines += ["flowchart TD", f'    {START}(("start"))']

    def declare(names: list[str], indent: str) -> None:
        for name in names:
            node = nodes[name]
            opening, closing = _SHAPES.get(node.type, _SHAPES["Task"])
            lines.append(f"{indent}{node.id}{opening}{label(name)}{closing}")
            for sub_id, sub_title, branch in node.branches:
                lines.append(f"{indent}subgraph {sub_id} [{label(sub_title)}]")
                declare(list(branch.get("States", {})), indent + "    ")
                lines.append(f"{indent}end")

    declare(list(definition.get("States", {})), "    ")
    edges = _edges(nodes, order, definition.get("StartAt", ""))
    for edge in edges:
        source = nodes[edge.source].id if edge.source else START
        arrow = "-.->" if edge.kind in ("catch", "branch") else "-->"
        text = f"|{label(edge.text, LABEL_WIDTH)}|" if edge.text else ""
        lines.append(f"    {source} {arrow}{text} {nodes[edge.target].id}")

    run = history.trace(events or [])
    lines += [f"    classDef {name} {style}" for name, style in CLASS_STYLES.items()]
    for name, states in (("visited", run.visited), ("failed", run.failed), ("current", set(run.current))):
        members = [nodes[s].id for s in order if s in states]
        if members:
            lines.append(f"    class {','.join(members)} {name}")
    taken = _taken(edges, run.transitions)
    if taken:
        lines.append(f"    linkStyle {','.join(str(i) for i in sorted(taken))} {TAKEN_STYLE}")
    return "\n".join(lines) + "\n"


def write(path: Path, graphs: list[tuple[str, str]]) -> list[Path]:
    """Write (execution name, Mermaid text) pairs; returns the files written.

    A path ending in .md gets one Markdown file: a heading and a ```mermaid block per execution. Any
    other path gets the bare Mermaid text (for mmdc or mermaid.live): as it is for one execution, and
    one file per execution, `<stem>-<execution name><suffix>` beside it, for several.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".md":
        blocks = [f"## {name}\n\n```mermaid\n{text}```\n" for name, text in graphs]
        path.write_text("\n".join(blocks) if blocks else "No execution was started.\n")
        return [path]
    if len(graphs) == 1:
        path.write_text(graphs[0][1])
        return [path]
    written = []
    for name, text in graphs:
        target = path.with_name(f"{path.stem}-{name}{path.suffix}")
        target.write_text(text)
        written.append(target)
    return written
