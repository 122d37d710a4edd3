"""Text cut to a length for a message: a message that repeats what it was given stays readable.

Ferry's messages quote what they were given (a manifest's value, an event's
field, a schema error, a template's placeholder) so the reader sees what to
fix; one huge value must not swamp the log line, the notification or the
execution's error, so each place cuts what it repeats to its own limit. The
end shows the text was cut. Imports nothing: a handler pays nothing for it at
cold start.
"""

from __future__ import annotations


def shorten(text: str, limit: int, ellipsis: str = "…") -> str:
    """`text` as it is when it has at most `limit` characters, else its start and `ellipsis`, `limit` characters in all.

    Pass repr(value) to quote a value as Python shows it; "..." as `ellipsis`
    where the text must stay ASCII.
    """
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis
