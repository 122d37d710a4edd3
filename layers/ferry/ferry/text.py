"""Text cut to a length for a message: a message that repeats what it was given stays readable.

Ferry's messages quote what they were given (a manifest's value, an event's
field, a schema error, a template's placeholder) so the reader sees what to
fix; one huge value must not swamp the log line, the notification or the
execution's error, so each place cuts what it repeats to its own limit. The
end shows the text was cut. A whole message that must fit a Step Functions
Cause keeps its first lines and says where the rest is (fit_lines, measured
as JSON text costs it: json_length). Imports nothing: a handler pays nothing
for it at cold start.
"""

from __future__ import annotations


def shorten(text: str, limit: int, ellipsis: str = "…") -> str:
    """`text` as it is when it has at most `limit` characters, else its start and `ellipsis`, `limit` characters in all.

    Pass repr(value) to quote a value as Python shows it; "..." as `ellipsis`
    where the text must stay ASCII.
    """
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis


def json_length(text: str) -> int:
    """How many characters `text` takes inside a JSON string as json.dumps writes it (ASCII only): 1 for printable
    ASCII, 2 for a quote, a backslash, a newline and the other short escapes, 6 for any other character (\\uXXXX) and
    12 for one outside the Basic Multilingual Plane (two escaped surrogates). An error message reaches Step Functions
    inside the Lambda runtime's error document, JSON text: this is what it costs there at most."""
    length = 0
    for c in text:
        if " " <= c <= "~":
            length += 2 if c in '"\\' else 1
        elif c in "\n\r\t\b\f":
            length += 2
        else:
            length += 12 if ord(c) > 0xFFFF else 6
    return length


def _fitting_prefix(text: str, budget: int) -> str:
    """The longest start of `text` whose json_length is at most `budget`."""
    used = 0
    for i, c in enumerate(text):
        used += json_length(c)
        if used > budget:
            return text[:i]
    return text


def fit_lines(text: str, limit: int, whole: str, ellipsis: str = "…") -> str:
    """`text` as it is when its json_length is at most `limit`, else its first lines that fit and a last line saying
    how many lines were left out and where `whole` text is: at most `limit` in json_length in all.

    A problem list (a template's unresolved placeholders, a schema's errors) has one problem a line under a line
    that counts them, so what is kept is the count and the first problems. When not even the first line fits, its
    start is kept, cut with `ellipsis`.
    """
    if json_length(text) <= limit:
        return text
    lines = text.split("\n")

    def note(left: int) -> str:
        shown = f"{ellipsis} {left} more line{'' if left == 1 else 's'} not shown; " if left else ""
        return f"{shown}the whole message: {whole}"

    kept: list[str] = []
    used = 0
    for line in lines:
        cost = json_length(line) + (2 if kept else 0)  # each line after the first costs its escaped newline
        if used + cost + 2 + json_length(note(len(lines) - len(kept) - 1)) > limit:
            break
        kept.append(line)
        used += cost
    if not kept:  # the first line alone is too long: its start, cut
        tail = note(len(lines) - 1)
        budget = limit - 2 - json_length(tail) - json_length(ellipsis)
        if budget < 0:
            return _fitting_prefix(tail, limit)
        kept = [_fitting_prefix(lines[0], budget) + ellipsis]
        return "\n".join([*kept, tail])
    return "\n".join([*kept, note(len(lines) - len(kept))])
