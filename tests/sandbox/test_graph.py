"""graph.mermaid on a small handmade definition and history, and on the deploy state machine's definition."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ferry_cli import graph, history

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = json.loads((ROOT / "statemachine" / "deploy.asl.json").read_text())

_SHAPES = {
    ('(("', '"))'): "circle",
    ('(["', '"])'): "stadium",
    ('[["', '"]]'): "subroutine",
    ('[/"', '"/]'): "parallelogram",
    ('{{"', '"}}'): "hexagon",
    ('["', '"]'): "rect",
    ('{"', '"}'): "rhombus",
    ('("', '")'): "rounded",
}
_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_OPEN = "|".join(re.escape(o) for o, _ in _SHAPES)
_CLOSE = "|".join(re.escape(c) for _, c in _SHAPES)
NODE = re.compile(rf'^(?P<id>{_ID})(?P<open>{_OPEN})(?P<label>[^"]*)(?P<close>{_CLOSE})$')
EDGE = re.compile(rf'^(?P<source>{_ID}) (?P<arrow>-->|-\.->)(?:\|"(?P<label>[^"]*)"\|)? (?P<target>{_ID})$')
SUBGRAPH = re.compile(rf'^subgraph (?P<id>{_ID}) \["(?P<label>[^"]*)"\]$')
CLASS = re.compile(rf"^class (?P<ids>{_ID}(?:,{_ID})*) (?P<name>{_ID})$")
CLASS_DEF = re.compile(rf"^classDef (?P<name>{_ID}) \S+$")
LINK_STYLE = re.compile(r"^linkStyle (?P<indexes>\d+(?:,\d+)*) \S+$")


def unescape(text: str) -> str:
    """Mermaid's entity codes (#quot;, #35;) back to characters."""
    return html.unescape(re.sub(r"#(\w+);", lambda m: f"&#{m[1]};" if m[1].isdigit() else f"&{m[1]};", text))


def balanced(line: str) -> bool:
    """Brackets balance once the quoted labels are taken out (a raw quote in a label breaks this too)."""
    if line.count('"') % 2:
        return False
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for c in re.sub(r'"[^"]*"', "", line):
        if c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack


def parse(text: str) -> dict[str, Any]:
    """The flowchart `graph.mermaid` writes, read back line by line; any other line fails the test."""
    lines = text.splitlines()
    title = None
    if lines[0] == "---":
        end = lines.index("---", 1)
        title = json.loads(lines[1].removeprefix("title: "))
        lines = lines[end + 1 :]
    assert lines[0] == "flowchart TD"
    found: dict[str, Any] = {
        "title": title,
        "nodes": {},
        "edges": [],
        "subgraphs": {},
        "classes": {},
        "class_defs": set(),
        "taken": set(),
        "parents": {},
    }
    open_subgraphs: list[str] = []
    for raw in lines[1:]:
        line = raw.strip()
        assert balanced(line), raw
        if m := NODE.match(line):
            assert m["id"] not in found["nodes"], f"{m['id']} declared twice"
            found["nodes"][m["id"]] = (_SHAPES[(m["open"], m["close"])], unescape(m["label"]))
            found["parents"][m["id"]] = open_subgraphs[-1] if open_subgraphs else None
        elif m := EDGE.match(line):
            found["edges"].append((m["source"], m["arrow"], unescape(m["label"] or ""), m["target"]))
        elif m := SUBGRAPH.match(line):
            found["subgraphs"][m["id"]] = unescape(m["label"])
            open_subgraphs.append(m["id"])
        elif line == "end":
            open_subgraphs.pop()
        elif m := CLASS.match(line):
            found["classes"].setdefault(m["name"], set()).update(m["ids"].split(","))
        elif m := CLASS_DEF.match(line):
            found["class_defs"].add(m["name"])
        elif m := LINK_STYLE.match(line):
            found["taken"].update(int(i) for i in m["indexes"].split(","))
        else:
            raise AssertionError(f"not a line graph.mermaid writes: {raw!r}")
    assert not open_subgraphs
    ids = set(found["nodes"]) | set(found["subgraphs"])
    assert len(ids) == len(found["nodes"]) + len(found["subgraphs"])
    for source, _, _, target in found["edges"]:
        assert source in found["nodes"] and target in found["nodes"]
    for members in found["classes"].values():
        assert members <= set(found["nodes"])
    assert set(found["classes"]) <= found["class_defs"]
    assert all(i < len(found["edges"]) for i in found["taken"])
    return found


def state_names(states: dict[str, Any]) -> list[str]:
    names = []
    for name, state in states.items():
        names.append(name)
        for branch in [state.get("ItemProcessor") or state.get("Iterator") or {}, *state.get("Branches", [])]:
            names += state_names(branch.get("States", {}))
    return names


def names_by_id(parsed: dict[str, Any]) -> dict[str, str]:
    return {node_id: label for node_id, (_, label) in parsed["nodes"].items() if node_id != "start"}


def classed(parsed: dict[str, Any], name: str) -> set[str]:
    labels = names_by_id(parsed)
    return {labels[i] for i in parsed["classes"].get(name, set())}


def taken_edges(parsed: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    labels = {**names_by_id(parsed), "start": "start"}
    return {
        (labels[s], arrow, text, labels[t])
        for i, (s, arrow, text, t) in enumerate(parsed["edges"])
        if i in parsed["taken"]
    }


# ---------------------------------------------------------------- a handmade state machine

CHECK = 'Check the "request"'
WORK = "Work: step (1), <main> & #1 | [x]"
EACH = "For each item"
HANDLE = "Handle `one` item*"
PAUSE = "Pause {a while}"
BOTH = "Both at once"
LEFT = "Left: (a)"
RIGHT = "Right; end"
DONE = "Done"
CLEAN = "Clean up, then stop"
BROKE = "Failed: it broke"
REFUSED = "end"

ASL = {
    "StartAt": CHECK,
    "States": {
        CHECK: {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.kind", "StringEquals": "deploy", "Next": WORK},
                {
                    "And": [
                        {"Variable": "$.kind", "IsPresent": True},
                        {"Variable": "$.count", "NumericGreaterThan": 2},
                    ],
                    "Next": WORK,
                },
            ],
            "Default": REFUSED,
        },
        WORK: {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Next": EACH,
            "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"]}],
            "Catch": [
                {"ErrorEquals": ["Boom", "States.Timeout"], "Next": CLEAN},
                {"ErrorEquals": ["States.ALL"], "Next": CLEAN},
            ],
        },
        EACH: {
            "Type": "Map",
            "Next": BOTH,
            "ItemProcessor": {
                "StartAt": HANDLE,
                "States": {HANDLE: {"Type": "Pass", "Next": PAUSE}, PAUSE: {"Type": "Wait", "Seconds": 1, "End": True}},
            },
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": CLEAN}],
        },
        BOTH: {
            "Type": "Parallel",
            "Next": DONE,
            "Branches": [
                {"StartAt": LEFT, "States": {LEFT: {"Type": "Pass", "End": True}}},
                {"StartAt": RIGHT, "States": {RIGHT: {"Type": "Pass", "End": True}}},
            ],
        },
        DONE: {"Type": "Succeed"},
        CLEAN: {"Type": "Pass", "Next": BROKE},
        BROKE: {"Type": "Fail", "Error": "Broken"},
        REFUSED: {"Type": "Fail", "Error": "Refused"},
    },
}


def events(*steps: tuple) -> list[dict[str, Any]]:
    """GetExecutionHistory events from (type, state name or None, details), each following the one before."""
    out = []
    for i, (kind, name, *extra) in enumerate(steps, 1):
        if kind.endswith("StateEntered"):
            key = "stateEnteredEventDetails"
        elif kind.endswith("StateExited"):
            key = "stateExitedEventDetails"
        else:
            key = kind[0].lower() + kind[1:] + "EventDetails"
        details = {**({"name": name} if name else {}), **(extra[0] if extra else {})}
        out.append({"id": i, "previousEventId": i - 1, "type": kind, key: details, "timestamp": None})
    return out


START = [
    ("ExecutionStarted", None, {"input": "{}"}),
    ("ChoiceStateEntered", CHECK),
    ("ChoiceStateExited", CHECK),
    ("TaskStateEntered", WORK),
    ("TaskScheduled", None),
    ("TaskStarted", None),
]
SUCCEEDED = events(
    *START,
    ("TaskFailed", None, {"error": "Lambda.TooManyRequestsException"}),
    ("TaskScheduled", None),
    ("TaskStarted", None),
    ("TaskSucceeded", None, {"output": "{}"}),
    ("TaskStateExited", WORK),
    ("MapStateEntered", EACH),
    ("MapStateStarted", None),
    ("MapIterationStarted", EACH, {"index": 0}),
    ("PassStateEntered", HANDLE),
    ("PassStateExited", HANDLE),
    ("WaitStateEntered", PAUSE),
    ("WaitStateExited", PAUSE),
    ("MapIterationSucceeded", EACH, {"index": 0}),
    ("MapStateSucceeded", None),
    ("MapStateExited", EACH),
    ("ParallelStateEntered", BOTH),
    ("ParallelStateStarted", None),
    ("PassStateEntered", LEFT),
    ("PassStateExited", LEFT),
    ("ParallelStateSucceeded", None),
    ("ParallelStateExited", BOTH),
    ("SucceedStateEntered", DONE),
    ("SucceedStateExited", DONE),
    ("ExecutionSucceeded", None),
)
CAUGHT = events(
    *START,
    ("TaskFailed", None, {"error": "Boom", "cause": "it went boom"}),
    ("TaskStateExited", WORK),
    ("PassStateEntered", CLEAN),
    ("PassStateExited", CLEAN),
    ("FailStateEntered", BROKE),
    ("ExecutionFailed", None, {"error": "Broken"}),
)
RUNNING = events(
    *START,
    ("TaskSucceeded", None, {"output": "{}"}),
    ("TaskStateExited", WORK),
    ("MapStateEntered", EACH),
    ("MapStateStarted", None),
    ("MapIterationStarted", EACH, {"index": 0}),
    ("PassStateEntered", HANDLE),
    ("PassStateExited", HANDLE),
    ("WaitStateEntered", PAUSE),
)


def test_every_state_of_the_deploy_state_machine_is_one_node_with_its_name_and_shape():
    text = graph.mermaid(DEPLOY)
    parsed = parse(text)
    names = state_names(DEPLOY["States"])
    labels = list(names_by_id(parsed).values())
    assert sorted(labels) == sorted(names) and len(labels) == len(set(labels))
    shapes = {label: shape for shape, label in parsed["nodes"].values()}
    types = {}

    def collect(states):
        for name, state in states.items():
            types[name] = state["Type"]
            for branch in [state.get("ItemProcessor") or state.get("Iterator") or {}, *state.get("Branches", [])]:
                collect(branch.get("States", {}))

    collect(DEPLOY["States"])
    expected = {
        "Succeed": "stadium",
        "Fail": "hexagon",
        "Choice": "rhombus",
        "Task": "rect",
        "Map": "subroutine",
        "Wait": "parallelogram",
        "Pass": "rounded",
    }
    assert {name: shapes[name] for name in names} == {name: expected[types[name]] for name in names}
    assert parsed["nodes"]["start"] == ("circle", "start")
    maps = [name for name, kind in types.items() if kind == "Map"]
    assert maps and all(f"{name}: each item" in parsed["subgraphs"].values() for name in maps)
    # Without a history nothing is highlighted.
    assert not parsed["classes"] and not parsed["taken"]


def test_awkward_names_get_safe_ids_and_quoted_escaped_labels():
    text = graph.mermaid(ASL, title='run "1": FAILED')
    parsed = parse(text)
    assert parsed["title"] == 'run "1": FAILED'
    assert sorted(names_by_id(parsed).values()) == sorted(state_names(ASL["States"]))
    assert all(re.fullmatch(r"s_[a-z0-9_]+", i) for i in names_by_id(parsed))
    assert "end" not in parsed["nodes"]
    for raw in ('"request"', "<main>", "& #1", "| [x]", "`one`", "item*"):
        assert raw not in text  # each went in as an entity code
    assert "#quot;request#quot;" in text and "#lt;main#gt; #amp; #35;1 #124;" in text


def test_edges_for_next_choices_default_catch_and_branches():
    parsed = parse(graph.mermaid(ASL))
    labels = {**names_by_id(parsed), "start": "start"}
    edges = [(labels[s], arrow, text, labels[t]) for s, arrow, text, t in parsed["edges"]]
    assert edges[0] == ("start", "-->", "", CHECK)
    # The two rules into WORK are one edge, both conditions in its label.
    assert (CHECK, "-->", "kind = deploy or kind present and count > 2", WORK) in edges
    assert (CHECK, "-->", "otherwise", REFUSED) in edges
    # Catchers into one state are one dotted edge naming every error.
    assert (WORK, "-.->", "Boom, States.Timeout, States.ALL", CLEAN) in edges
    assert (WORK, "-->", "", EACH) in edges
    assert (EACH, "-.->", "", HANDLE) in edges and (HANDLE, "-->", "", PAUSE) in edges
    assert (BOTH, "-.->", "", LEFT) in edges and (BOTH, "-.->", "", RIGHT) in edges
    assert len(edges) == len(set(edges)) == 13
    ids = {label: i for i, label in names_by_id(parsed).items()}
    assert parsed["parents"][ids[HANDLE]] == parsed["parents"][ids[PAUSE]]
    assert parsed["subgraphs"][parsed["parents"][ids[HANDLE]]] == f"{EACH}: each item"
    assert parsed["subgraphs"][parsed["parents"][ids[RIGHT]]] == f"{BOTH}: branch 2"
    assert parsed["parents"][ids[EACH]] is None


def test_a_successful_run_highlights_the_states_entered_and_the_edges_taken():
    parsed = parse(graph.mermaid(ASL, SUCCEEDED))
    assert classed(parsed, "visited") == {CHECK, WORK, EACH, HANDLE, PAUSE, BOTH, LEFT, DONE}
    assert classed(parsed, "failed") == set()  # the retried error was no failure
    assert classed(parsed, "current") == set()
    assert taken_edges(parsed) == {
        ("start", "-->", "", CHECK),
        (CHECK, "-->", "kind = deploy or kind present and count > 2", WORK),
        (WORK, "-->", "", EACH),
        (EACH, "-.->", "", HANDLE),
        (HANDLE, "-->", "", PAUSE),
        (EACH, "-->", "", BOTH),
        (BOTH, "-.->", "", LEFT),
        (BOTH, "-->", "", DONE),
    }


def test_a_caught_failure_marks_the_failed_state_and_takes_the_catch_edge():
    parsed = parse(graph.mermaid(ASL, CAUGHT))
    assert classed(parsed, "visited") == {CHECK, WORK, CLEAN, BROKE}
    assert classed(parsed, "failed") == {WORK, BROKE}
    assert (WORK, "-.->", "Boom, States.Timeout, States.ALL", CLEAN) in taken_edges(parsed)
    assert (WORK, "-->", "", EACH) not in taken_edges(parsed)


def test_a_running_execution_marks_the_states_it_is_in():
    parsed = parse(graph.mermaid(ASL, RUNNING))
    assert classed(parsed, "current") == {EACH, PAUSE}
    assert classed(parsed, "visited") == {CHECK, WORK, EACH, HANDLE, PAUSE}
    run = history.trace(RUNNING)
    assert run.current == [EACH, PAUSE] and run.ended is None


def test_a_failure_inside_a_map_fails_the_inner_state_and_the_map():
    run = history.trace(
        events(
            *START,
            ("TaskSucceeded", None),
            ("TaskStateExited", WORK),
            ("MapStateEntered", EACH),
            ("MapStateStarted", None),
            ("MapIterationStarted", EACH, {"index": 0}),
            ("PassStateEntered", HANDLE),
            ("PassStateExited", HANDLE),
            ("WaitStateEntered", PAUSE),
            ("ExecutionAborted", None),
        )
    )
    assert run.failed == {PAUSE} and run.ended == "ExecutionAborted" and run.current == []
    caught = events(
        *START,
        ("TaskSucceeded", None),
        ("TaskStateExited", WORK),
        ("MapStateEntered", EACH),
        ("MapStateStarted", None),
        ("MapIterationStarted", EACH, {"index": 0}),
        ("TaskStateEntered", HANDLE),
        ("TaskFailed", None, {"error": "Boom"}),
        ("MapIterationFailed", EACH, {"index": 0}),
        ("MapStateFailed", None),
        ("MapStateExited", EACH),
        ("PassStateEntered", CLEAN),
    )
    caught[-5]["previousEventId"] = caught[-6]["id"]  # the iteration's failure follows the task's, as on AWS
    run = history.trace(caught)
    assert run.failed == {HANDLE, EACH}
    assert (EACH, CLEAN, "caught") in run.transitions


@pytest.mark.parametrize(
    "rule, text",
    [
        ({"Variable": "$.render.strategy", "StringEquals": "canary"}, "render.strategy = canary"),
        ({"Variable": "$.render.hasMigrations", "BooleanEquals": True}, "render.hasMigrations = true"),
        ({"Variable": "$.report.cause", "IsPresent": False}, "no report.cause"),
        ({"Variable": "$.n", "NumericLessThanEqualsPath": "$.max"}, "n <= max"),
        ({"Not": {"Variable": "$.kind", "IsString": True}}, "not (kind is string)"),
        (
            {"Or": [{"Variable": "$.a", "StringMatches": "web-*"}, {"Variable": "$.b", "IsNull": False}]},
            "(a ~ web-* or b is not null)",
        ),
    ],
)
def test_choice_rules_are_labelled_compactly(rule, text):
    assert graph.condition(rule) == text


def test_write_markdown_for_several_executions_or_one_mermaid_file_each(tmp_path):
    graphs = [("web-v2-1", graph.mermaid(ASL, SUCCEEDED)), ("web-v3-2", graph.mermaid(ASL, CAUGHT))]
    [md] = graph.write(tmp_path / "runs.md", graphs)
    text = md.read_text()
    assert text.count("```mermaid\n") == 2 and text.count("\n```\n") == 2
    assert "## web-v2-1" in text and "## web-v3-2" in text
    blocks = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert [parse(b)["classes"].get("failed", set()) == set() for b in blocks] == [True, False]
    assert graph.write(tmp_path / "one.mmd", graphs[:1]) == [tmp_path / "one.mmd"]
    assert (tmp_path / "one.mmd").read_text() == graphs[0][1]
    written = graph.write(tmp_path / "out" / "run.mmd", graphs)
    assert written == [tmp_path / "out" / "run-web-v2-1.mmd", tmp_path / "out" / "run-web-v3-2.mmd"]
    assert [p.read_text() for p in written] == [g for _, g in graphs]
