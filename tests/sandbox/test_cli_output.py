"""What `ferry` prints from AWS is inert: a Cause's or a log line's terminal escapes never reach the terminal.

A canary's stopped reason (it goes into the Cause) and a migration's log lines carry an OSC title change, a screen
clear, a colour, an 8-bit CSI and a right-to-left override; `ferry sandbox run`, `ferry history` and `ferry run`
print the text around them and none of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ferry_cli.main import main
from ferry_cli.terminal import InertStream, inert

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sandbox"
EVENT = ROOT / "events" / "ecr-push-web-v2.json"
CONFIG_DIR = EXAMPLE / "registry" / "web"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m\x9b1;1H\u202e\x1b]52;c;ZXZpbA==\x1b\\"
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
REASON = f"Essential container in task exited {ESCAPES}after boot"


def world(tmp_path: Path, **changes) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "world")
    path = tmp_path / "world" / "world.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))
    return path


def crashing(tmp_path: Path) -> Path:
    """web deploys through a canary, and web:v2's canary stops with escapes in its stopped reason and its log."""
    lines = [f"boot {ESCAPES}failed", "\x1b[1mbold\x1b[0m line"]
    path = world(tmp_path, behaviour={"web:v2": {"exitCode": 1, "stoppedReason": REASON, "logLines": lines}})
    config = path.parent / "registry" / "web" / "ferry.yaml"
    config.write_text(config.read_text().replace("strategy: {type: rolling}", "strategy: {type: canary}"))
    return path


def assert_inert(text: str) -> None:
    assert not [c for c in CONTROLS if c in text], repr(text)


@pytest.mark.parametrize(
    "text, shown",
    [
        ("a\x1b[31mred\x1b[0m b", "ared b"),
        ("x\x1b]0;title\x07y", "xy"),
        ("x\x1b]52;c;ZXZpbA==\x1b\\y", "xy"),
        ("tab\tand newline\nstay; cr\r bell\x07 del\x7f go", "tab\tand newline\nstay; cr bell del go"),
        ("8-bit \x9b2J csi", "8-bit  csi"),
        ("\x1b]8;;http://evil\n next line", "\n next line"),  # an unterminated OSC ends at the line's end
        ("right \u202eto left \u2066isolate\u2069", "right to left isolate"),
        ("Ferry's own: … → ✓ é", "Ferry's own: … → ✓ é"),
    ],
)
def test_inert_removes_every_terminal_control_but_newline_and_tab(text, shown):
    assert inert(text) == shown


def test_an_inert_stream_writes_inert_text_and_is_otherwise_the_stream(capsys):
    import sys

    stream = InertStream(sys.stdout)
    print(f"cause {ESCAPES}end", file=stream, flush=True)
    assert capsys.readouterr().out == "cause end\n"
    assert stream.encoding == sys.stdout.encoding


def test_sandbox_run_prints_a_cause_with_escapes_inert(tmp_path, capsys):
    assert main(["sandbox", "run", "--world", str(crashing(tmp_path)), "--event", str(EVENT), "--logs"]) == 1
    captured = capsys.readouterr()
    assert "Error: CanaryCrashed" in captured.out
    assert "Essential container in task exited after boot" in captured.out
    assert_inert(captured.out)
    assert_inert(captured.err)


def test_history_prints_a_cause_with_escapes_inert(tmp_path, capsys):
    assert main(["history", "web-v2", "--world", str(crashing(tmp_path)), "--event", str(EVENT)]) == 0
    out = capsys.readouterr().out
    assert "\nError: CanaryCrashed\nCause: a canary task of web:2 stopped:" in out
    assert "Essential container in task exited after boot" in out
    assert_inert(out)
    # The JSON view escapes control characters itself: the text is all there, nothing acts on the terminal.
    again = crashing(tmp_path / "again")
    assert main(["history", "web-v2", "--json", "--world", str(again), "--event", str(EVENT)]) == 0
    out = capsys.readouterr().out
    assert_inert(out)
    assert REASON in json.loads(out)["execution"]["cause"]


def test_status_prints_a_cause_with_escapes_inert(tmp_path, capsys):
    assert main(["status", "web", "--world", str(crashing(tmp_path)), "--event", str(EVENT)]) == 0
    out = capsys.readouterr().out
    assert "CanaryCrashed: a canary task of web:2 stopped" in out
    assert_inert(out)


def test_run_prints_a_log_line_with_escapes_inert(tmp_path, capsys):
    lines = [f"checking {ESCAPES}schema", "\x1b[32mpending\x1b[0m migration 2026112201"]
    path = world(tmp_path, migration={"exitCode": 3, "logLines": lines})
    assert main(["run", "--config-dir", str(CONFIG_DIR), "--world", str(path), "--", "bin/rails", "db:migrate"]) == 3
    out = capsys.readouterr().out
    assert "checking schema\npending migration 2026112201\n" in out
    assert_inert(out)
