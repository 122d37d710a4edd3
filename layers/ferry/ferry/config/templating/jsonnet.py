"""Jsonnet templates, evaluated by go-jsonnet with Ferry's template functions as native functions.

A `.jsonnet`/`.libsonnet` template calls the same functions as a placeholder
does, as native functions: `std.native("ssm")("/prod/web/url")`; a function
with an optional argument has a second native that takes it (env_default,
secret_arn_key), as a native function's arity is fixed. `std.extVar`
gives "environment", "service" and "execution". `import` reads only the
files beside the config (the `imports` given), by a relative name that stays
in the config's folder.

As for placeholders, every failing call is reported at once, each at its
file:line:col, so one evaluation is not always enough: a failing native
returns a stand-in value so the evaluation goes on to the next one; an
unknown std.native(...) gets a stand-in native (else calling its null stops
the evaluation at the first one), and an import that uses one means another
pass with that stand-in in place; and a failing call written with computed
arguments is found by one more pass that makes just that call fail, to read
its position from Jsonnet's stack trace. JsonnetRun holds what those passes
share. go-jsonnet (the reference implementation, with arm64 wheels) is
imported on first use: only Jsonnet templates pay for it at cold start. Its
errors are rewritten in the form Ferry reports ("STATIC ERROR: file:line:col:
..." or "RUNTIME ERROR: ...").
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from ferry.config.templating.functions import FUNCTIONS, Context, Lookups, Unresolved, unknown_function
from ferry.config.templating.problems import Problem, line_col, raise_unresolved
from ferry.errors import ConfigInvalid

# Jsonnet native functions have a fixed number of parameters, so a function
# with an optional argument gets a second native taking it.
JSONNET_FULL_NAMES = {"env": "env_default", "secret_arn": "secret_arn_key"}

EXT_VARS = ("environment", "service", "execution")
_NATIVE_CALL = re.compile(r"""std\.native\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")
# A Jsonnet stack frame: "\tfile:3:5-20\t..." or "\tfile:(3:5)-(4:2)\t...".
_FRAME = re.compile(r"^\s*(?P<file>[^\t\n]+?):(?:\((?P<l2>\d+):(?P<c2>\d+)\)|(?P<l1>\d+):(?P<c1>\d+))", re.M)
# go-jsonnet's static error: "file:3:5-20 Message" or "file:(3:5)-(4:2) Message", then the source line(s).
_GO_STATIC = re.compile(
    r"^(?P<file>[^\t\n]+?):(?:\((?P<l2>\d+):(?P<c2>\d+)\)-\(\d+:\d+\)|(?P<l1>\d+):(?P<c1>\d+)(?:-\d+)?) "
    r"(?P<msg>[^\n]*)"
)
# What go-jsonnet says for any exception from a native callback (the binding drops the exception's text).
_GO_NATIVE_FAILED = "failed to execute native callback"
_SENTINEL = "<unresolved>"
_JSONNET_NAMES = set(FUNCTIONS) | set(JSONNET_FULL_NAMES.values())


class _Marker(Exception):
    """Raised by a native callback in the pass that locates one failing call."""


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


def _go_static_error(line: str, files: set[str]) -> str | None:
    """go-jsonnet's "file:3:5-20 Expected ..." as "file:3:5: expected ..." (as the C++ Jsonnet wrote it), for a known file."""
    match = _GO_STATIC.match(line)
    if not match or match["file"] not in files:
        return None
    return f"{match['file']}:{match['l1'] or match['l2']}:{match['c1'] or match['c2']}: {_lower_first(match['msg'])}"


def _normalize_error(error: str, source: str, files: set[str], stand_ins: set[str]) -> str:
    """go-jsonnet's error text in the form Ferry reports: "STATIC ERROR: file:line:col: ..." or "RUNTIME ERROR: ...",
    without the frames of the stand-ins for refused imports."""
    lines = [
        line
        for line in error.strip().split("\n")
        if not any(line.lstrip().startswith(stand_in + ":") for stand_in in stand_ins)
    ]
    first = lines[0] if lines else ""
    if first.startswith("RUNTIME ERROR: "):
        rest = first.removeprefix("RUNTIME ERROR: ")
        static = _go_static_error(rest, files - {source})  # an imported file that does not parse
        if static:
            first = "RUNTIME ERROR: " + static
        elif rest.lower().startswith("undefined external variable"):
            first = "RUNTIME ERROR: " + _lower_first(rest)
        elif rest.startswith(_GO_NATIVE_FAILED):
            first = "RUNTIME ERROR: std.native functions take strings, numbers, booleans or null, not arrays or objects"
    else:
        static = _go_static_error(first, {source})
        if static:
            first = "STATIC ERROR: " + static
    return "\n".join([first, *lines[1:]])


_IMPORT_EXPR = re.compile(r"""\b(?P<kind>importstr|importbin|import)\s*(?:"(?P<d>[^"\\]*)"|'(?P<s>[^'\\]*)')""")


def _import_position(files: Mapping[str, str], directory: str, rel: str, kinds: tuple[str, ...]) -> str | None:
    """Where a file in `directory` writes `importstr "rel"` (or another of `kinds`): "file:line:col"."""
    for path, content in files.items():
        if posixpath.dirname(path) != directory.rstrip("/"):
            continue
        for match in _IMPORT_EXPR.finditer(content):
            if match["kind"] in kinds and (match["d"] if match["d"] is not None else match["s"]) == rel:
                line, col = line_col(content, match.start())
                return f"{path}:{line}:{col}"
    return None


def _first_frame(message: str) -> str | None:
    for match in _FRAME.finditer(message.split("\n", 1)[1] if "\n" in message else ""):
        line = match["l1"] or match["l2"]
        col = match["c1"] or match["c2"]
        return f"{match['file']}:{line}:{col}"
    return None


def _jsonnet_call_text(name: str, args: tuple) -> str:
    return f'std.native("{name}")({", ".join(_jsonnet_value(a) for a in args)})'


def _call_arity(text: str, i: int) -> int | None:
    """How many arguments the call starting at text[i] (after optional spaces, a "(") passes; None if unclear."""
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    if i >= len(text) or text[i] != "(":
        return None
    depth, commas, last, j = 0, 0, "(", i
    while j < len(text):
        c = text[j]
        if c in "\"'":
            j += 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return 0 if last == "(" else commas + (0 if last == "," else 1)
        elif c == "," and depth == 1:
            commas += 1
        if c not in " \t\r\n":
            last = c
        j += 1
    return None


def _unknown_natives(text: str, source: str) -> dict[str, tuple[int | None, Problem]]:
    """Every std.native("name") with a name Ferry does not have: its call's arity and a problem to report."""
    found: dict[str, tuple[int | None, Problem]] = {}
    for match in _NATIVE_CALL.finditer(text):
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name in _JSONNET_NAMES or name in found:
            continue
        line, col = line_col(text, match.start())
        message = _unknown_native(name)
        found[name] = (
            _call_arity(text, match.end()),
            Problem(f"{source}:{line}:{col}", f'std.native("{name}")', message),
        )
    return found


_STRING = r""""(?:[^"\\\n])*"|'(?:[^'\\\n])*'"""
_LITERAL_CALL = re.compile(
    r"""std\.native\(\s*(?:"(\w+)"|'(\w+)')\s*\)\s*\(\s*((?:%s)(?:\s*,\s*(?:%s))*)?\s*,?\s*\)""" % (_STRING, _STRING)
)


def _literal_calls(text: str, source: str) -> dict[tuple[str, tuple], list[str]]:
    """Where each `std.native("fn")("literal", ...)` call is, keyed like the failures (for every occurrence's position)."""
    found: dict[tuple[str, tuple], list[str]] = {}
    for match in _LITERAL_CALL.finditer(text):
        name = match.group(1) or match.group(2)
        args = tuple(lit[1:-1] for lit in re.findall(_STRING, match.group(3) or ""))
        line, col = line_col(text, match.start())
        found.setdefault((name, args), []).append(f"{source}:{line}:{col}")
    return found


def _unknown_native(name: str) -> str:
    return unknown_function(name) + f" (and, in Jsonnet, {', '.join(sorted(JSONNET_FULL_NAMES.values()))})"


def _jsonnet_value(value: Any) -> str:
    """An argument as Jsonnet source shows it (Jsonnet hands numbers over as floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _position_key(problem: Problem, source: str) -> tuple:
    match = re.match(r"^(.*):(\d+):(\d+)$", problem.where)
    if not match:
        return (problem.where != source, problem.where, 0, 0)
    return (match[1] != source, match[1], int(match[2]), int(match[3]))


Call = tuple[str, tuple]  # a native function call: the native's name and its arguments, as Jsonnet gave them


class JsonnetRun:
    """The evaluation of one Jsonnet template, in as many passes as it takes, and what the passes learn.

    go-jsonnet calls back into Python for every native function call (_call)
    and every import (_import); those callbacks record here instead of
    raising, so that after a pass the run knows every call that failed and
    why (`failures`), every std.native name Ferry does not have (`unknown`)
    and every refused import the pass read (`refused`). document() runs the
    passes and returns the document, or raises with every problem found.
    """

    def __init__(self, text: str, source: str, ctx: Context, imports: Mapping[str, str] | None = None):
        self.text = text
        self.source = source
        self.lookups = Lookups(ctx)
        self.imports = dict(imports or {})
        self.base = posixpath.dirname(source)
        self.ext_vars = {"environment": ctx.environment, "service": ctx.service, "execution": ctx.execution}
        # Every path a file can be known by, with its text: the config and the imports beside it.
        self.files = {
            source: text,
            **{
                (posixpath.join(self.base, key) if self.base else key): content for key, content in self.imports.items()
            },
        }
        # What go-jsonnet is given as native_callbacks: name -> (parameter names, callback).
        self.natives: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {}
        self.failures: dict[Call, str] = {}  # every call that failed in the last pass -> why
        self.unknown: dict[str, tuple[int | None, Problem]] = {}  # std.native names Ferry has not: call arity, problem
        self.positions: dict[Call, list[str]] = {}  # a call written with literal arguments -> every place it is
        self.locating: Call | None = None  # the failing call this pass stops at, to learn its position
        self.located = False  # whether this pass did stop there
        self.unexpected: list[BaseException] = []  # AWS unreachable, throttled...: raised as itself once Jsonnet stops
        # A refused import. go-jsonnet's Python binding cannot take an error from the import callback (it reads the
        # message past its end: garbled text, or a UnicodeDecodeError in place of the whole error), so the callback
        # never raises: a refused file stands in as `error "couldn't open import ..."`, which fails at the import
        # like Jsonnet's own error for it. An importstr/importbin of it would read that text as the file's content
        # instead, so the evaluation fails all the same whenever a refused file is read.
        self.refusals: dict[tuple[str, str], tuple[str, str]] = {}  # (directory, rel) -> (stand-in name, message)
        self.refused: list[tuple[str, str]] = []  # the ones read by this pass
        for fn in FUNCTIONS.values():
            self._add_native(fn.name, fn.name, len(fn.params))
            if fn.optional:
                full = JSONNET_FULL_NAMES[fn.name]
                self._add_native(full, fn.name, len(fn.params) + len(fn.optional))
        self._learn(text, source)

    def document(self) -> Any:
        """The evaluated document; TemplateUnresolved for failing calls, ConfigInvalid when Jsonnet fails otherwise."""
        output, error = self._evaluate_with_every_native()
        problems = self._problems()
        if problems:
            raise_unresolved(self.source, sorted(problems, key=lambda p: _position_key(p, self.source)))
        if error is not None:
            first = error.splitlines()[0] if error else error
            position = _first_frame(error)
            if first.startswith("RUNTIME ERROR: undefined external variable"):
                message = (
                    first.removeprefix("RUNTIME ERROR: ")
                    + f': the ext vars are {", ".join(EXT_VARS)}; use std.native("env")(NAME) for values'
                )
                raise_unresolved(self.source, [Problem(position or self.source, "std.extVar", message)])
            raise ConfigInvalid(f"{self.source}: Jsonnet evaluation failed: {error.strip()}")
        try:
            return json.loads(output)
        except json.JSONDecodeError as exc:  # pragma: no cover - Jsonnet always outputs JSON
            raise ConfigInvalid(f"{self.source}: Jsonnet output is not JSON: {exc}") from None

    def _evaluate_with_every_native(self) -> tuple[str, str | None]:
        """Passes until no import brings an unknown std.native without its stand-in: the output, or the error."""
        error: str | None = None
        output = ""
        for _ in range(1 + len(self.imports)):
            known_natives = len(self.natives)
            self.failures.clear()
            error = None
            try:
                output = self._evaluate()
            except RuntimeError as exc:
                error = str(exc)
            if len(self.natives) == known_natives:
                break  # else an import used an unknown function: evaluate again with its stand-in
        return output, error

    def _problems(self) -> list[Problem]:
        """Every unknown native that was not called (a call is reported as a failure) and every failing call, placed."""
        called = {name for name, _ in self.failures}
        problems = [problem for name, (_, problem) in self.unknown.items() if name not in called]
        for call, message in list(self.failures.items()):
            if call in self.positions:  # a call written with literal arguments: every place it is written
                problems.extend(Problem(where, _jsonnet_call_text(*call), message) for where in self.positions[call])
            else:
                problems.append(Problem(self._locate(call), _jsonnet_call_text(*call), message))
        return problems

    def _locate(self, call: Call) -> str:
        """Where Jsonnet says `call` is: one more pass, failing at it, for the position in its stack trace."""
        self.locating = call
        where = self.source
        try:
            self._evaluate()
        except RuntimeError as exc:
            if self.located:
                where = _first_frame(str(exc)) or self.source
        self.locating = None
        self.located = False
        return where

    def _evaluate(self) -> str:
        """One pass: Jsonnet's output, or a RuntimeError with its error in the form Ferry reports."""
        import _gojsonnet as _jsonnet  # go-jsonnet: the reference implementation, with arm64 wheels

        self.refused.clear()
        self.located = False
        output: str | None = None
        try:
            output = _jsonnet.evaluate_snippet(
                self.source,
                self.text,
                ext_vars=self.ext_vars,
                native_callbacks=self.natives,
                import_callback=self._import,
            )
        except RuntimeError as exc:
            if self.unexpected:
                raise self.unexpected[0] from None
            error = str(exc)
            stand_ins = {stand_in for stand_in, _ in self.refusals.values()}
            if self.located or not self.refused or any(stand_in in error for stand_in in stand_ins):
                raise RuntimeError(_normalize_error(error, self.source, set(self.files), stand_ins)) from None
        if self.refused:  # a refused file read by importstr/importbin (or failing later than another error)
            directory, rel = self.refused[0]
            where = _import_position(self.files, directory, rel, ("importstr", "importbin")) or _import_position(
                self.files, directory, rel, ("import",)
            )
            raise RuntimeError(
                f"RUNTIME ERROR: {self.refusals[(directory, rel)][1]}" + (f"\n\t{where}\t" if where else "")
            )
        assert output is not None  # else the evaluation's error was raised above
        return output

    def _add_native(self, name: str, impl_name: str, arity: int) -> None:
        """Native `name`, taking `arity` arguments, calls Ferry's function `impl_name` (or stands in for an unknown one)."""
        params = tuple(f"arg{i}" for i in range(arity))
        self.natives[name] = (params, functools.partial(self._call, name, impl_name))

    def _call(self, name: str, impl_name: str, *args: Any) -> Any:
        """A native function call from Jsonnet: its value, or a stand-in value and the failure recorded."""
        call = (name, args)
        try:
            if impl_name not in FUNCTIONS:
                raise Unresolved(_unknown_native(impl_name))
            return self.lookups.call(impl_name, tuple(args))
        except Unresolved as exc:
            if self.locating == call:
                self.located = True  # go-jsonnet reports "failed to execute native callback", without the text
                raise _Marker(str(exc)) from None
            self.failures.setdefault(call, str(exc))
            return _SENTINEL
        except Exception as exc:  # AWS unreachable, throttled...: raised as itself once Jsonnet stops
            self.unexpected.append(exc)
            raise

    def _learn(self, content: str, found_as: str) -> None:
        """What a file's text tells before it is evaluated: where its literal calls are, and its unknown natives."""
        for call, where in _literal_calls(content, found_as).items():
            known = self.positions.setdefault(call, [])
            known.extend(w for w in where if w not in known)
        # An unknown std.native(...) is null, and calling null would stop the evaluation
        # at the first one; a stand-in that records the failure lets the others be found.
        for name, (arity, problem) in _unknown_natives(content, found_as).items():
            if name not in self.unknown:
                self.unknown[name] = (arity, problem)
                if arity is not None:
                    self._add_native(name, name, arity)

    def _resolve(self, directory: str, rel: str) -> tuple[str, str | None]:
        """The imports key `rel` names from `directory` (as go-jsonnet gives it, "services/web/"), or why it is refused."""
        base, imports = self.base, self.imports
        here = directory[len(base) :].lstrip("/") if base and directory.startswith(base) else directory.lstrip("/")
        if rel.startswith("/") or "\\" in rel:
            return (
                rel,
                f"refused: only files beside the config can be imported, by a relative name ({_available(imports)})",
            )
        key = posixpath.normpath(posixpath.join(here, rel))
        if key == ".." or key.startswith("../") or rel.split("/").count(".."):
            return key, f"refused: imports cannot leave the config's folder ({_available(imports)})"
        if key not in imports:
            return key, f"no such file beside the config ({_available(imports)})"
        return key, None

    def _import(self, directory: str, rel: str) -> tuple[str, bytes]:
        """go-jsonnet's import callback: the file's name and content, or a refused file's stand-in (see __init__)."""
        key, reason = self._resolve(directory, rel)
        if reason is not None:
            stand_in, message = self.refusals.setdefault(
                (directory, rel),
                (f"<refused import {len(self.refusals) + 1}>", f"couldn't open import {json.dumps(rel)}: {reason}"),
            )
            self.refused.append((directory, rel))
            return stand_in, f"error {json.dumps(message)}\n".encode()
        found = posixpath.join(self.base, key) if self.base else key
        content = self.imports[key]
        self._learn(content, found)
        return found, content.encode()


def render_jsonnet(text: str, source: str, ctx: Context, imports: Mapping[str, str] | None = None) -> Any:
    """Evaluate a Jsonnet template with Ferry's functions as native functions and return the document.

    `imports` maps file names beside the config (e.g. "common.libsonnet") to
    their text; `import "common.libsonnet"` resolves only from it, and an
    absolute path or one leaving the config's folder is refused. Ext vars:
    environment, service, execution. Raises TemplateUnresolved listing every
    failing function call (with Jsonnet's file position), ConfigInvalid when
    the Jsonnet does not evaluate.
    """
    return JsonnetRun(text, source, ctx, imports).document()


def _available(imports: Mapping[str, str]) -> str:
    return f"available: {', '.join(sorted(imports))}" if imports else "no files are available to import"
