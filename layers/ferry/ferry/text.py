"""Text cut to a length for a message: a message that repeats what it was given stays readable.

Ferry's messages quote what they were given (a manifest's value, an event's
field, a schema error, a template's placeholder) so the reader sees what to
fix; one huge value must not swamp the log line, the notification or the
execution's error, so each place cuts what it repeats to its own limit. The
end shows the text was cut. A whole message that must fit a Step Functions
Cause keeps its first lines and says where the rest is (fit_lines, measured
as JSON text costs it: json_length). Text written by others (a container's
log lines, a value) is shown only through `mask`, which hides what looks like
a credential. Imports only `re` and `hashlib`, which every handler has loaded
already (botocore uses both): a handler pays nothing for it at cold start.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable


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


# ------------------------------------------------------------------ masking
#
# What looks like a credential in text Ferry did not write (a container's log lines, a value it repeats) is
# replaced with MASK before anyone sees it. Written here rather than taken from a scanner such as detect-secrets:
# a scanner reports findings per file (it does not rewrite text), most of its plugins look for vendors' token
# formats Ferry has no reason to single out, and the layer would carry it (and its cold start) into every
# handler; the shapes below are one page of regular expressions, each with a property test
# (tests/unit/test_container_logs.py). Masking recognises shapes, not secrets: a password alone on a line, with
# nothing around it that says what it is, is masked only when it is a value Ferry knows (`known`,
# `fingerprints`). That is why Causes, events, manifest results and notifications carry no log line at all.

MASK = "***"
# A name that says its value is a credential: DB_PASSWORD, PGPASS, MYSQL_PWD, apiKey, X-Auth-Token, client_secret,
# AWS_SECRET_ACCESS_KEY, GCP_CREDENTIALS, Set-Cookie, X-Amz-Signature (any case, any part of the name).
SECRET_WORDS = r"pass|pwd|secret|token|key|credential|auth|cookie|signature|private"
_SECRET_NAME = re.compile(SECRET_WORDS, re.IGNORECASE)
# NAME=value, NAME: value, "NAME": "value", 'NAME': 'value' and \\"NAME\\": \\"value\\" (JSON inside a JSON
# string). A `:` needs a space after it unless the name is quoted, so an ARN (arn:aws:secretsmanager:...) or an IAM
# action (secretsmanager:GetSecretValue) is not taken for a pair. An HTTP header's scheme (Authorization: Bearer
# <token>) is kept, its credential masked.
_NAME = r"[A-Za-z0-9_.-]*(?:%s)[A-Za-z0-9_.-]*" % SECRET_WORDS
_PAIR = re.compile(
    rf"""(?P<name>(?<![A-Za-z0-9_.-]){_NAME})(?P<close>\\?["'])?"""
    r"""(?P<sep>[ \t]*=[ \t]*|[ \t]*:[ \t]+|(?<=["'])[ \t]*:[ \t]*)"""
    r"""(?P<value>\\"(?:[^\\]|\\[^"])*?\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
    r"""|(?:(?:bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256)[ \t]+)?\S+)""",
    re.IGNORECASE,
)
# --db-password value (a command line a container logs): the next word, unless it is another option.
_FLAG = re.compile(rf"(?P<flag>(?<!\S)--?{_NAME})(?P<sep>[ \t]+)(?!-)(?P<value>\S+)", re.IGNORECASE)
_SCHEME = re.compile(r"(?i)^(?:bearer|basic|token|digest|negotiate|ntlm|aws4-hmac-sha256)[ \t]+")
# scheme://user:password@host (a DSN, a URL with credentials): the password goes; a user part alone that is long
# enough to be a token (https://<token>@github.com) goes too.
_DSN = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@?#]*):(?P<password>\S*)@")
_URL_TOKEN = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<token>[A-Za-z0-9._~%+-]{16,})@")
# An HTTP credential wherever it is written: Authorization: Bearer <token> is a pair above; "Bearer <token>" alone.
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer)\s+(?P<token>[A-Za-z0-9._~+/=-]{8,})")
# A JSON Web Token (or JWE): base64url parts joined by dots, the first a JSON object ({" is eyJ).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,4}")
# AWS access key ids (long-term AKIA, temporary ASIA; ABIA and ACCA are the same for other partitions).
_ACCESS_KEY_ID = re.compile(r"\b(?P<prefix>AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")
# An AWS secret access key: 40 characters of base64 standing alone. A git commit (40 hex digits) is not one: a
# secret key has upper and lower case letters (a random one lacks either with a chance of about one in 10^9).
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL)
MIN_KNOWN = 6  # a known value shorter than this is not looked for: "true" or "1" would mask half the text


def looks_secret(name: str) -> bool:
    """True for names that say their value is a credential (DB_PASSWORD, apiKey, MYSQL_PWD, X-Auth-Token)."""
    return bool(_SECRET_NAME.search(name))


def fingerprint(value: str) -> str:
    """What `mask` needs to find `value` without keeping it: its length and a hash. A waiting state's record
    (the lock table) carries these for the task definition's secret-looking environment values, never the values."""
    return f"{len(value)}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _pair(match: re.Match[str]) -> str:
    value = match["value"]
    if value[:2] == '\\"':
        shown = '\\"' + MASK + '\\"'
    elif value[:1] in "\"'":
        shown = value[0] + MASK + value[0]
    else:
        scheme = _SCHEME.match(value)
        shown = (scheme[0] if scheme and scheme.end() < len(value) else "") + MASK
    return f"{match['name']}{match['close'] or ''}{match['sep']}{shown}"


def _secret_key(match: re.Match[str]) -> str:
    found = match[0]
    mixed = any(c.isupper() for c in found) and any(c.islower() for c in found)
    return MASK if mixed else found


def _known_spans(text: str, known: Iterable[str], fingerprints: Iterable[str]) -> list[tuple[int, int]]:
    """Where the `known` values, and the values `fingerprints` name, are in `text`."""
    spans: list[tuple[int, int]] = []
    for value in known:
        if len(value) >= MIN_KNOWN:
            spans += [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)]
    wanted: dict[int, set[str]] = {}
    for item in fingerprints:
        length, _, digest = str(item).partition(":")
        if length.isdigit() and int(length) >= MIN_KNOWN and digest:
            wanted.setdefault(int(length), set()).add(str(item))
    for length, prints in wanted.items():
        spans += [(i, i + length) for i in range(len(text) - length + 1) if fingerprint(text[i : i + length]) in prints]
    return spans


def _masked_spans(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, last = [], 0
    for start, end in merged:
        out += [text[last:start], MASK]
        last = end
    return "".join(out) + text[last:]


def mask(text: str, known: Iterable[str] = (), fingerprints: Iterable[str] = ()) -> str:
    """`text` with every credential it seems to hold replaced with MASK, what says what it was kept: the values in
    `known` and those `fingerprints` name (anywhere); private keys (PEM); the password of scheme://user:password@
    and a token before @; NAME=value pairs whose name looks secret (looks_secret) in the forms a log writes them
    (=, ": ", JSON, escaped JSON, an HTTP Authorization header's credential after its scheme) and options
    (--db-password value);
    Bearer tokens; JSON Web Tokens; AWS access key ids and secret access keys."""
    spans = _known_spans(text, known, fingerprints)
    if spans:
        text = _masked_spans(text, spans)
    text = _PEM.sub(MASK, text)
    text = _DSN.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _URL_TOKEN.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _PAIR.sub(_pair, text)
    text = _FLAG.sub(lambda m: f"{m['flag']}{m['sep']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)
    text = _JWT.sub(MASK, text)
    text = _ACCESS_KEY_ID.sub(lambda m: m["prefix"] + MASK, text)
    return _SECRET_KEY.sub(_secret_key, text)
