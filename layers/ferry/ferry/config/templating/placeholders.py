"""`{{ fn "arg" }}` placeholders in JSON and YAML templates: found, resolved and put in safely.

A template beside a service's `ferry.yaml` is JSON or YAML text with
ecspresso-style placeholders::

    "image": "{{ image "app" }}",
    "valueFrom": "{{ secret_arn "prod/web/db" "password" }}"

(arguments quoted with "double", 'single' or `backtick` quotes; a function
with no arguments is written `{{ environment }}`). The text is scanned, not
parsed, for placeholders, so they may sit anywhere a value can.

Every placeholder is resolved before anything fails, so one error lists every
placeholder that could not be, syntax errors included: where it is
(file:line:col), what is wrong and how to fix it. Values are inserted so they
cannot change the document's structure: inside a JSON string they are
escaped; a bare JSON placeholder becomes a number, `true`, `false` or `null`
when the value is one and a string otherwise; in YAML the value replaces the
placeholder inside the scalar it was written in (a bare, unquoted YAML scalar
is then read as YAML would read it, so quote the placeholder to keep "1.10"
or "yes" a string). A document that does not parse once its placeholders are
filled in is reported at the template's line and column, not the filled-in
text's.
"""

from __future__ import annotations

import json
import re
import secrets as _random
from dataclasses import dataclass
from typing import Any

from ferry.config.templating.functions import Context, Lookups, Unresolved
from ferry.config.templating.problems import Problem, line_col, raise_unresolved
from ferry.errors import ConfigInvalid
from ferry.text import shorten

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTES = {'"': '"', "'": "'", "`": "`"}
_DQ_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "/": "/", "'": "'"}


@dataclass(frozen=True)
class Placeholder:
    start: int
    end: int
    name: str
    args: tuple[str, ...]

    def display(self) -> str:
        return "{{ " + " ".join([self.name, *(json.dumps(a) for a in self.args)]) + " }}"


class _SyntaxProblem(Exception):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset


def _read_string(text: str, i: int) -> tuple[str, int]:
    """The quoted argument starting at text[i]; returns it and the offset after the closing quote."""
    quote = text[i]
    j = i + 1
    out: list[str] = []
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if quote != "`" and c == "\n":
            break
        if quote != "`" and c == "\\":
            if j + 1 >= len(text):
                break
            nxt = text[j + 1]
            if quote == '"' and nxt in _DQ_ESCAPES:
                out.append(_DQ_ESCAPES[nxt])
            elif quote == "'" and nxt in {"'", "\\"}:
                out.append(nxt)
            else:
                raise _SyntaxProblem(j, f"unknown escape \\{nxt} in a {quote}-quoted argument")
            j += 2
            continue
        out.append(c)
        j += 1
    raise _SyntaxProblem(
        i, f"unterminated {quote}-quoted argument (close it with {quote} before }}}} and the end of the line)"
    )


def _parse_placeholder(text: str, start: int) -> Placeholder:
    i = start + 2
    n = len(text)

    def skip_space(k: int) -> int:
        while k < n and text[k] in " \t\r\n":
            k += 1
        return k

    i = skip_space(i)
    match = _NAME.match(text, i)
    if not match:
        if text.startswith("}}", i):
            raise _SyntaxProblem(start, 'empty placeholder: write a function name, e.g. {{ env "NAME" }}')
        if i >= n:
            raise _SyntaxProblem(start, "unterminated {{: no closing }}")
        raise _SyntaxProblem(i, f"expected a function name after {{{{, found {text[i]!r}")
    name = match.group()
    i = match.end()
    args: list[str] = []
    starts: list[int] = []
    try:
        while True:
            i = skip_space(i)
            if i >= n:
                raise _SyntaxProblem(start, "unterminated {{: no closing }}")
            if text.startswith("}}", i):
                return Placeholder(start, i + 2, name, tuple(args))
            if text[i] in _QUOTES:
                if i == match.end() or (args and text[i - 1] not in " \t\r\n"):
                    raise _SyntaxProblem(i, "arguments must be separated by spaces")
                starts.append(i)
                value, i = _read_string(text, i)
                args.append(value)
                continue
            if text.startswith("{{", i):
                raise _SyntaxProblem(start, "unterminated {{: a new {{ starts before this one is closed with }}")
            bare = re.match(r"[^\s}]+", text[i:])
            word = bare.group() if bare else text[i]
            raise _SyntaxProblem(i, f"argument {word} must be quoted: \"{word}\" (or '{word}' or `{word}`)")
    except _SyntaxProblem:
        # `{{ env "X }}` ... `"`: the quote most likely swallowed the }}, so point at it.
        for arg, at in zip(args, starts):
            if "}}" in arg:
                quote = text[at]
                raise _SyntaxProblem(
                    at, f"unterminated {quote}-quoted argument (close it with {quote} before }}}})"
                ) from None
        raise


def scan(text: str) -> tuple[list[Placeholder], list[tuple[int, str, str]]]:
    """Every placeholder in `text`, and every syntax error as (offset, snippet, message)."""
    found: list[Placeholder] = []
    errors: list[tuple[int, str, str]] = []
    i = 0
    while True:
        start = text.find("{{", i)
        if start < 0:
            return found, errors
        try:
            placeholder = _parse_placeholder(text, start)
        except _SyntaxProblem as exc:
            line_end = text.find("\n", start)
            line_end = line_end if line_end >= 0 else len(text)
            close = text.find("}}", start, line_end)
            snippet = text[start : close + 2 if close >= 0 else line_end].strip()
            errors.append((exc.offset, shorten(snippet, 60, "..."), str(exc)))
            i = start + 2
            continue
        found.append(placeholder)
        i = placeholder.end


def _resolve_all(text: str, source: str, lookups: Lookups) -> tuple[list[Placeholder], list[str]]:
    placeholders, syntax_errors = scan(text)
    problems: list[tuple[int, Problem]] = []
    for offset, snippet, message in syntax_errors:
        line, col = line_col(text, offset)
        problems.append((offset, Problem(f"{source}:{line}:{col}", snippet, message)))
    values: list[str] = []
    for p in placeholders:
        try:
            values.append(lookups.call(p.name, p.args))
        except Unresolved as exc:
            line, col = line_col(text, p.start)
            problems.append((p.start, Problem(f"{source}:{line}:{col}", p.display(), str(exc))))
            values.append("")
    raise_unresolved(source, [p for _, p in sorted(problems, key=lambda item: item[0])])
    return placeholders, values


class _OffsetMap:
    """Maps an offset in the substituted text back to the template, for error positions."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int, int]] = []  # out_start, out_end, orig_start, orig_end

    def add(self, out_start: int, out_end: int, orig_start: int, orig_end: int) -> None:
        self.spans.append((out_start, out_end, orig_start, orig_end))

    def original(self, out: int) -> int:
        delta = 0
        for out_start, out_end, orig_start, orig_end in self.spans:
            if out < out_start:
                break
            if out < out_end:
                return orig_start
            delta = orig_end - out_end
        return out + delta


_JSON_LITERAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def _substitute_json(
    text: str, placeholders: list[Placeholder], values: list[str], source: str
) -> tuple[str, _OffsetMap]:
    out: list[str] = []
    mapping = _OffsetMap()
    length = 0
    in_string = escaped = False
    pos = 0
    for p, value in zip(placeholders, values, strict=True):
        segment = text[pos : p.start]
        for c in segment:
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
        if escaped:
            line, col = line_col(text, p.start)
            raise_unresolved(
                source,
                [
                    Problem(
                        f"{source}:{line}:{col}",
                        p.display(),
                        "a placeholder cannot follow a backslash inside a JSON string: remove the backslash",
                    )
                ],
            )
        if in_string:
            rendered = json.dumps(value)[1:-1]
        elif _JSON_LITERAL.fullmatch(value):
            rendered = value
        else:
            rendered = json.dumps(value)
        out.append(segment)
        length += len(segment)
        out.append(rendered)
        mapping.add(length, length + len(rendered), p.start, p.end)
        length += len(rendered)
        pos = p.end
    out.append(text[pos:])
    return "".join(out), mapping


def _parse_json(text: str, source: str, template: str, mapping: _OffsetMap) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line, col = line_col(template, mapping.original(exc.pos))
        raise ConfigInvalid(
            f"{source}:{line}:{col}: not valid JSON after its placeholders were filled in: {exc.msg}"
        ) from None


_STR_TAG = "tag:yaml.org,2002:str"
_EXPLICIT_TAG = re.compile(r"^(?:&\S+\s+)?!")


def _fill_yaml(text: str, placeholders: list[Placeholder], values: list[str], source: str) -> Any:
    """Parse the template with every placeholder as a unique token, then put the values into the scalars."""
    import yaml  # imported here: only YAML templates pay for it at cold start

    nonce = _random.token_hex(6)
    tokens: dict[str, str] = {}
    mapping = _OffsetMap()
    out: list[str] = []
    pos = length = 0
    for index, (p, value) in enumerate(zip(placeholders, values, strict=True)):
        token = f"ferry{nonce}t{index}x"
        tokens[token] = value
        segment = text[pos : p.start]
        out.append(segment)
        length += len(segment)
        out.append(token)
        mapping.add(length, length + len(token), p.start, p.end)
        length += len(token)
        pos = p.end
    out.append(text[pos:])
    tokenized = "".join(out)
    token_re = re.compile(f"ferry{nonce}t\\d+x")

    def where(mark) -> str:
        line, col = line_col(text, mapping.original(getattr(mark, "index", 0) or 0))
        return f"{source}:{line}:{col}"

    loader = yaml.SafeLoader(tokenized)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            seen: set[int] = set()
            stack = [root]
            while stack:
                node = stack.pop()
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if isinstance(node, yaml.ScalarNode):
                    if not token_re.search(node.value):
                        continue
                    whole = token_re.fullmatch(node.value) is not None
                    node.value = token_re.sub(lambda m: tokens[m.group()], node.value)
                    raw = tokenized[node.start_mark.index : node.end_mark.index]
                    if whole and node.style is None and node.tag == _STR_TAG and not _EXPLICIT_TAG.match(raw):
                        node.tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
                elif isinstance(node, yaml.SequenceNode):
                    stack.extend(node.value)
                elif isinstance(node, yaml.MappingNode):
                    for key, value in node.value:
                        stack.extend((key, value))
            return loader.construct_document(root)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(x for x in (exc.context, exc.problem) if x)
            raise ConfigInvalid(
                f"{where(mark)}: not valid YAML after its placeholders were filled in: {problem}"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigInvalid(f"{source}: not valid YAML after its placeholders were filled in: {exc}") from None
    finally:
        loader.dispose()


def render_json(text: str, source: str, ctx: Context) -> Any:
    """The JSON template with its placeholders filled in, parsed (see render_text)."""
    placeholders, values = _resolve_all(text, source, Lookups(ctx))
    substituted, mapping = _substitute_json(text, placeholders, values, source)
    return _parse_json(substituted, source, text, mapping)


def render_yaml(text: str, source: str, ctx: Context) -> Any:
    """The YAML template with its placeholders filled in, parsed (see render_text)."""
    placeholders, values = _resolve_all(text, source, Lookups(ctx))
    return _fill_yaml(text, placeholders, values, source)
