"""Where a template went wrong: the one error that lists every call that could not be resolved.

Both formats collect problems instead of stopping at the first one: a
placeholder in JSON/YAML (placeholders.py) or a native function call in
Jsonnet (jsonnet.py) that failed, each with its position as file:line:col,
what was written and the fix. raise_unresolved turns them into one
TemplateUnresolved, so a template with three mistakes is fixed in one go.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.errors import TemplateUnresolved


@dataclass(frozen=True)
class Problem:
    where: str  # "<source>:<line>:<col>" (or just "<source>" when the position is unknown)
    what: str  # the placeholder, e.g. {{ ssm "/prod/x" }} or std.native("ssm")("/prod/x")
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.message}"


def raise_unresolved(source: str, problems: list[Problem]) -> None:
    """Raise TemplateUnresolved listing `problems` in the order given; nothing when there are none."""
    if not problems:
        return
    count = len(problems)
    head = f"{source}: {count} template placeholder{'s' if count != 1 else ''} could not be resolved:"
    raise TemplateUnresolved("\n".join([head, *(str(p) for p in problems)]))


def line_col(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col
