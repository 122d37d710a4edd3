"""What the `ferry` command prints is inert: text that came from AWS cannot drive the terminal.

A Cause, a container's log line, a stopped reason or a config's value is written by whoever controls that
container, config or request, and `ferry history`, `status`, `run` and `sandbox run` print them to an operator's
terminal. An escape sequence there can rewrite what was printed before it (a cursor move, a cleared line), set the
window title or the clipboard (OSC 52), or hide a line. So every character the command writes passes `inert`, at
the one place where it leaves: main() wraps stdout and stderr (InertStream) for the command's run. Only newline
and tab of the control characters stay; Ferry's own output uses no colour or cursor control.
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

# ECMA-48 sequences, 7-bit (ESC ...) and 8-bit (C1): CSI (ESC [ ... final byte), OSC, DCS, SOS, PM and APC
# strings (up to BEL or ST, or the end of the line: once its introducer is gone the rest is plain text), and ESC
# with intermediate bytes and a final byte.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])(?:[^\x07\x1b\x9c\n]|\x1b(?!\\))*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# What is left of the controls: C0 but tab and newline, DEL, C1; and the bidirectional overrides and isolates, which
# reorder what a line shows (U+202A-U+202E, U+2066-U+2069) without being controls in Unicode's sense.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """`text` without terminal control: escape sequences removed whole, other control characters dropped; newline
    and tab kept."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


class InertStream:
    """A text stream that writes `inert` text to the stream it wraps; everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(inert(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def inert_output() -> Iterator[None]:
    """sys.stdout and sys.stderr write inert text until the block ends (as they were, if they already do)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = saved[0] if isinstance(saved[0], InertStream) else InertStream(saved[0])  # type: ignore[assignment]
    sys.stderr = saved[1] if isinstance(saved[1], InertStream) else InertStream(saved[1])  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
