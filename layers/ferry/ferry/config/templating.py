"""Templates: task definitions and service configs with placeholders filled in.

A template lives in the config bucket beside a service's `ferry.yaml`. It is
JSON or YAML text with ecspresso-style placeholders::

    "image": "{{ image "app" }}",
    "valueFrom": "{{ secret_arn "prod/web/db" "password" }}"

(arguments quoted with "double", 'single' or `backtick` quotes; a function
with no arguments is written `{{ environment }}`), or Jsonnet
(`.jsonnet`/`.libsonnet`) where the same functions are native functions,
`std.native("ssm")("/prod/web/url")`, and `std.extVar("environment")`,
`"service"` and `"execution"` are set.

Every placeholder is resolved before anything fails, so one error lists every
placeholder that could not be: where it is, what is wrong and how to fix it.
Values are inserted so they cannot change the document's structure: inside a
JSON string they are escaped; a bare JSON placeholder becomes a number,
`true`, `false` or `null` when the value is one and a string otherwise; in
YAML the value replaces the placeholder inside the scalar it was written in
(a bare, unquoted YAML scalar is then read as YAML would read it, so quote
the placeholder to keep "1.10" or "yes" a string).

No function ever reads a secret's value: `ssm` refuses SecureString
parameters and `ssm_arn`/`secret_arn` give ARNs for the task definition's
`secrets`, which ECS resolves when it starts the task. AWS lookups are cached
for one render.
"""

from __future__ import annotations

import difflib
import json
import posixpath
import re
import secrets as _random
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from ferry import aws
from ferry.aws import images
from ferry.errors import ConfigInvalid, TemplateUnresolved

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Context:
    """What a template can see besides AWS: the deploy it is rendered for."""

    environment: str
    service: str
    execution: str = ""
    images: Mapping[str, images.ImageRef] = field(default_factory=lambda: _EMPTY)
    values: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    commit: str | None = None

    def builtins(self) -> dict[str, str]:
        return {"FERRY_ENVIRONMENT": self.environment, "FERRY_SERVICE": self.service, "FERRY_EXECUTION": self.execution}


class Unresolved(Exception):
    """One function call that could not be resolved; the message says why and how to fix it."""


# ---------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------


class Lookups:
    """The state of one render: the context and a cache of every AWS answer (failures included)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._cache: dict[tuple, tuple[bool, Any]] = {}

    def cached(self, key: tuple, fetch: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = (True, fetch())
            except Unresolved as exc:
                self._cache[key] = (False, exc)
        ok, value = self._cache[key]
        if ok:
            return value
        raise Unresolved(str(value))

    def call(self, name: str, args: tuple[str, ...]) -> str:
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise Unresolved(unknown_function(name))
        if not fn.params_ok(len(args)):
            raise Unresolved(f"{name} takes {fn.arity_text()}, got {len(args)}: write it as {fn.usage}")
        for arg in args:
            if not isinstance(arg, str):
                shown = str(int(arg)) if isinstance(arg, float) and arg.is_integer() else json.dumps(arg)
                raise Unresolved(f"{name}: arguments must be strings, got {shown}: write it as {fn.usage}")
        return fn.impl(self, *args)


def unknown_function(name: str) -> str:
    close = difflib.get_close_matches(name, FUNCTIONS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown function {name!r}: {hint}the functions are {', '.join(sorted(FUNCTIONS))}"


def _region(client) -> str:
    return getattr(getattr(client, "meta", None), "region_name", None) or "the current region"


_TRANSIENT = {
    "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalFailure", "InternalServerError", "InternalServiceError", "ServiceUnavailable",
}


def _aws_failure(what: str, exc: ClientError, permission: str) -> Exception:
    """What to raise for an AWS error: throttling and 5xx as they are (the step is retried), else Unresolved."""
    code = aws.error_code(exc) or type(exc).__name__
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _TRANSIENT or status >= 500:
        return exc
    message = (getattr(exc, "response", None) or {}).get("Error", {}).get("Message", str(exc))
    if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"} or "not authorized" in message:
        return Unresolved(f"{what}: access denied ({message}): grant {permission} to the role that renders templates")
    return Unresolved(f"{what}: {code}: {message}")


def _env(lookups: Lookups, name: str, default: str | None = None) -> str:
    builtins = lookups.ctx.builtins()
    if name in builtins:
        return builtins[name]
    if name in lookups.ctx.values:
        return str(lookups.ctx.values[name])
    return "" if default is None else default


def _must_env(lookups: Lookups, name: str) -> str:
    builtins = lookups.ctx.builtins()
    if name in builtins:
        return builtins[name]
    if name in lookups.ctx.values:
        return str(lookups.ctx.values[name])
    known = sorted(lookups.ctx.values)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    have = f"the values set are {', '.join(known)}" if known else "no values are set"
    raise Unresolved(
        f"value {name} is not set{hint}: define it under `values:` in ferry.yaml, in the manifest's `values`, "
        f"or with --var {name}=...; {have}"
    )


def _environment(lookups: Lookups) -> str:
    return lookups.ctx.environment


def _service(lookups: Lookups) -> str:
    return lookups.ctx.service


def _execution(lookups: Lookups) -> str:
    return lookups.ctx.execution


def _commit(lookups: Lookups) -> str:
    if lookups.ctx.commit is None:
        raise Unresolved("no commit: the deploy was started by an ECR push; put `commit` in the manifest or avoid {{ commit }}")
    return lookups.ctx.commit


def _image_ref(lookups: Lookups, container: str) -> images.ImageRef:
    ref = lookups.ctx.images.get(container)
    if ref is None:
        have = sorted(lookups.ctx.images)
        if not have:
            raise Unresolved(f"no image for container {container}: this deploy pins no images")
        close = difflib.get_close_matches(container, have, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise Unresolved(
            f"no image for container {container}{hint}: this deploy has images for {', '.join(have)}; "
            "name one of those, or add the container under `containers` in ferry.yaml"
        )
    return ref


def _image(lookups: Lookups, container: str) -> str:
    ref = _image_ref(lookups, container)
    if not ref.digest:
        raise Unresolved(f"the image for container {container} ({ref.base}) has no digest, so it cannot be pinned")
    return ref.pinned


def _tag(lookups: Lookups, container: str) -> str:
    ref = _image_ref(lookups, container)
    if not ref.tag:
        raise Unresolved(
            f"the image for container {container} was given by digest and has no tag: "
            f'use {{{{ digest "{container}" }}}} or {{{{ image "{container}" }}}}'
        )
    return ref.tag


def _digest(lookups: Lookups, container: str) -> str:
    ref = _image_ref(lookups, container)
    if not ref.digest:
        raise Unresolved(f"the image for container {container} ({ref.base}) has no digest")
    return ref.digest


def _parameter(lookups: Lookups, name: str) -> dict[str, Any]:
    """GetParameter without decryption: a SecureString's value never leaves SSM as plaintext."""

    def fetch() -> dict[str, Any]:
        ssm = aws.client("ssm")
        try:
            return ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in {"ParameterNotFound", "ParameterVersionNotFound"}:
                raise Unresolved(
                    f"SSM parameter {name} does not exist in {_region(ssm)}: create it with "
                    f"aws ssm put-parameter --name {shlex.quote(name)} --type String --value ..."
                ) from None
            if code == "ValidationException":
                raise Unresolved(f"{name!r} is not a valid SSM parameter name: {exc.response['Error'].get('Message', '')}") from None
            raise _aws_failure(f"SSM parameter {name}", exc, f"ssm:GetParameter on parameter{name if name.startswith('/') else '/' + name}") from None

    return lookups.cached(("ssm:GetParameter", name), fetch)


def _ssm(lookups: Lookups, name: str) -> str:
    parameter = _parameter(lookups, name)
    if parameter.get("Type") == "SecureString":
        raise Unresolved(
            f'SSM parameter {name} is a SecureString: reference it under `secrets` with {{{{ ssm_arn "{name}" }}}} '
            "so its value never lands in the task definition"
        )
    return parameter["Value"]


def _ssm_arn(lookups: Lookups, name: str) -> str:
    return _parameter(lookups, name)["ARN"]


def _stack(lookups: Lookups, stack: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        cfn = aws.client("cloudformation")
        try:
            return cfn.describe_stacks(StackName=stack)["Stacks"][0]
        except ClientError as exc:
            if aws.error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                raise Unresolved(
                    f"CloudFormation stack {stack} does not exist in {_region(cfn)}: deploy it first, or fix the stack name"
                ) from None
            raise _aws_failure(f"CloudFormation stack {stack}", exc, "cloudformation:DescribeStacks") from None

    return lookups.cached(("cloudformation:DescribeStacks", stack), fetch)


def _cfn_output(lookups: Lookups, stack: str, key: str) -> str:
    found = _stack(lookups, stack)
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in found.get("Outputs", [])}
    if key in outputs:
        return outputs[key]
    status = found.get("StackStatus", "")
    unhealthy = status and (not status.endswith("_COMPLETE") or "ROLLBACK" in status)
    state = f" (its status is {status})" if unhealthy else ""
    have = f"its outputs are {', '.join(sorted(outputs))}" if outputs else "it has no outputs"
    raise Unresolved(f"CloudFormation stack {stack} has no output {key}{state}: {have}; add it to the stack's Outputs or fix the key")


def _exports(lookups: Lookups) -> dict[str, str]:
    def fetch() -> dict[str, str]:
        cfn = aws.client("cloudformation")
        found: dict[str, str] = {}
        try:
            for page in cfn.get_paginator("list_exports").paginate():
                found.update({e["Name"]: e["Value"] for e in page.get("Exports", [])})
        except ClientError as exc:
            raise _aws_failure("CloudFormation exports", exc, "cloudformation:ListExports") from None
        return found

    return lookups.cached(("cloudformation:ListExports",), fetch)


def _cfn_export(lookups: Lookups, name: str) -> str:
    exports = _exports(lookups)
    if name in exports:
        return exports[name]
    close = difflib.get_close_matches(name, exports, n=3)
    hint = f" (similar: {', '.join(close)})" if close else ""
    region = _region(aws.client("cloudformation"))
    raise Unresolved(
        f"no CloudFormation export named {name} in {region}{hint}: export it from a stack "
        f"(Outputs: <Key>: Export: Name: {name}), or fix the name"
    )


def _secret(lookups: Lookups, name: str) -> dict[str, Any]:
    """DescribeSecret only: the ARN with its random suffix, never the value."""

    def fetch() -> dict[str, Any]:
        sm = aws.client("secretsmanager")
        try:
            return sm.describe_secret(SecretId=name)
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise Unresolved(
                    f"Secrets Manager secret {name} does not exist in {_region(sm)}: create it with "
                    f"aws secretsmanager create-secret --name {shlex.quote(name)} --secret-string ..."
                ) from None
            raise _aws_failure(f"Secrets Manager secret {name}", exc, "secretsmanager:DescribeSecret") from None

    return lookups.cached(("secretsmanager:DescribeSecret", name), fetch)


def _secret_arn(lookups: Lookups, name: str, key: str | None = None) -> str:
    found = _secret(lookups, name)
    if found.get("DeletedDate"):
        raise Unresolved(
            f"Secrets Manager secret {name} is scheduled for deletion: restore it with "
            f"aws secretsmanager restore-secret --secret-id {shlex.quote(name)}"
        )
    arn = found["ARN"]
    if key is None:
        return arn
    if not key or ":" in key:
        raise Unresolved(f"{key!r} is not a JSON key ECS can select (it must be non-empty, without ':')")
    return f"{arn}:{key}::"


@dataclass(frozen=True)
class Function:
    """A template function: `params` are required, `optional` may follow."""

    name: str
    params: tuple[str, ...]
    optional: tuple[str, ...]
    doc: str
    impl: Callable[..., str]

    @property
    def usage(self) -> str:
        args = [f'"{p}"' for p in self.params] + [f'["{p}"]' for p in self.optional]
        return "{{ " + " ".join([self.name, *args]) + " }}"

    def params_ok(self, count: int) -> bool:
        return len(self.params) <= count <= len(self.params) + len(self.optional)

    def arity_text(self) -> str:
        low, high = len(self.params), len(self.params) + len(self.optional)
        if low == high:
            return f"{low} argument{'s' if low != 1 else ''}" if low else "no arguments"
        return f"{low} to {high} arguments"


FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    Function("env", ("NAME",), ("default",), "A named value (config `values:`, manifest `values`, --var, or FERRY_ENVIRONMENT/"
        "FERRY_SERVICE/FERRY_EXECUTION); the default, or \"\", when it is not set. Jsonnet: env(NAME), env_default(NAME, default).", _env),
    Function("must_env", ("NAME",), (), "Like env, but a value that is not set is an error.", _must_env),
    Function("environment", (), (), "The Ferry environment (FERRY_ENVIRONMENT), e.g. prod.", _environment),
    Function("service", (), (), "The service's name in the registry.", _service),
    Function("execution", (), (), "The Step Functions execution name (\"\" when rendered on a laptop).", _execution),
    Function("commit", (), (), "The commit from the manifest; an error for a deploy started by an ECR push.", _commit),
    Function("image", ("container",), (), "The container's new image pinned by digest: <registry>/<repository>@sha256:….", _image),
    Function("tag", ("container",), (), "The tag the container's new image was deployed by.", _tag),
    Function("digest", ("container",), (), "The digest (sha256:…) of the container's new image.", _digest),
    Function("ssm", ("name",), (), "The value of an SSM String or StringList parameter; a SecureString is refused (use ssm_arn "
        "under `secrets`).", _ssm),
    Function("ssm_arn", ("name",), (), "The ARN of an SSM parameter, for `secrets[].valueFrom` (its value is never read).", _ssm_arn),
    Function("cfn_output", ("stack", "OutputKey"), (), "An output of a CloudFormation stack.", _cfn_output),
    Function("cfn_export", ("ExportName",), (), "The value of a CloudFormation export.", _cfn_export),
    Function("secret_arn", ("name",), ("json-key",), "The full ARN of a Secrets Manager secret (with its random suffix); with a "
        "JSON key, <arn>:<key>:: for `secrets[].valueFrom`. Never reads the value. Jsonnet: secret_arn(name), "
        "secret_arn_key(name, key).", _secret_arn),
]}

# Jsonnet native functions have a fixed number of parameters, so a function
# with an optional argument gets a second native taking it.
JSONNET_FULL_NAMES = {"env": "env_default", "secret_arn": "secret_arn_key"}


# ---------------------------------------------------------------------------
# Error collection
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    where: str      # "<source>:<line>:<col>" (or just "<source>" when the position is unknown)
    what: str       # the placeholder, e.g. {{ ssm "/prod/x" }} or std.native("ssm")("/prod/x")
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.message}"


def _raise_unresolved(source: str, problems: list[Problem]) -> None:
    if not problems:
        return
    count = len(problems)
    head = f"{source}: {count} template placeholder{'s' if count != 1 else ''} could not be resolved:"
    raise TemplateUnresolved("\n".join([head, *(str(p) for p in problems)]))


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


# ---------------------------------------------------------------------------
# {{ placeholders }} in JSON and YAML
# ---------------------------------------------------------------------------

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
    raise _SyntaxProblem(i, f"unterminated {quote}-quoted argument (close it with {quote} before }}}} and the end of the line)")


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
            raise _SyntaxProblem(start, "empty placeholder: write a function name, e.g. {{ env \"NAME\" }}")
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
                raise _SyntaxProblem(at, f"unterminated {quote}-quoted argument (close it with {quote} before }}}})") from None
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
            snippet = text[start:close + 2 if close >= 0 else line_end].strip()
            if len(snippet) > 60:
                snippet = snippet[:57] + "..."
            errors.append((exc.offset, snippet, str(exc)))
            i = start + 2
            continue
        found.append(placeholder)
        i = placeholder.end


def _resolve_all(text: str, source: str, lookups: Lookups) -> tuple[list[Placeholder], list[str]]:
    placeholders, syntax_errors = scan(text)
    problems: list[tuple[int, Problem]] = []
    for offset, snippet, message in syntax_errors:
        line, col = _line_col(text, offset)
        problems.append((offset, Problem(f"{source}:{line}:{col}", snippet, message)))
    values: list[str] = []
    for p in placeholders:
        try:
            values.append(lookups.call(p.name, p.args))
        except Unresolved as exc:
            line, col = _line_col(text, p.start)
            problems.append((p.start, Problem(f"{source}:{line}:{col}", p.display(), str(exc))))
            values.append("")
    _raise_unresolved(source, [p for _, p in sorted(problems, key=lambda item: item[0])])
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


def _substitute_json(text: str, placeholders: list[Placeholder], values: list[str], source: str) -> tuple[str, _OffsetMap]:
    out: list[str] = []
    mapping = _OffsetMap()
    length = 0
    in_string = escaped = False
    pos = 0
    for p, value in zip(placeholders, values, strict=True):
        segment = text[pos:p.start]
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
            line, col = _line_col(text, p.start)
            _raise_unresolved(source, [Problem(f"{source}:{line}:{col}", p.display(),
                                               "a placeholder cannot follow a backslash inside a JSON string: remove the backslash")])
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
        line, col = _line_col(template, mapping.original(exc.pos))
        raise ConfigInvalid(f"{source}:{line}:{col}: not valid JSON after its placeholders were filled in: {exc.msg}") from None


_STR_TAG = "tag:yaml.org,2002:str"
_EXPLICIT_TAG = re.compile(r"^(?:&\S+\s+)?!")


def _render_yaml(text: str, placeholders: list[Placeholder], values: list[str], source: str) -> Any:
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
        segment = text[pos:p.start]
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
        line, col = _line_col(text, mapping.original(getattr(mark, "index", 0) or 0))
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
                    raw = tokenized[node.start_mark.index:node.end_mark.index]
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
            raise ConfigInvalid(f"{where(mark)}: not valid YAML after its placeholders were filled in: {problem}") from None
        except yaml.YAMLError as exc:
            raise ConfigInvalid(f"{source}: not valid YAML after its placeholders were filled in: {exc}") from None
    finally:
        loader.dispose()


def _kind(source: str) -> str:
    lower = source.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith((".jsonnet", ".libsonnet")):
        return "jsonnet"
    raise ConfigInvalid(f"{source}: cannot tell the template's format: name it .json, .yaml, .yml, .jsonnet or .libsonnet")


def render_text(text: str, source: str, ctx: Context) -> Any:
    """Resolve the placeholders in a JSON/YAML template and return the parsed document.

    The format comes from `source`'s extension (.json, .yaml/.yml; .jsonnet/
    .libsonnet go to render_jsonnet, without imports). Raises
    TemplateUnresolved listing every placeholder that could not be resolved,
    and ConfigInvalid when the result is not valid JSON/YAML.
    """
    kind = _kind(source)
    if kind == "jsonnet":
        return render_jsonnet(text, source, ctx)
    lookups = Lookups(ctx)
    placeholders, values = _resolve_all(text, source, lookups)
    if kind == "json":
        substituted, mapping = _substitute_json(text, placeholders, values, source)
        return _parse_json(substituted, source, text, mapping)
    return _render_yaml(text, placeholders, values, source)


# ---------------------------------------------------------------------------
# Jsonnet
# ---------------------------------------------------------------------------

EXT_VARS = ("environment", "service", "execution")
_NATIVE_CALL = re.compile(r"""std\.native\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")
# A Jsonnet stack frame: "\tfile:3:5-20\t..." or "\tfile:(3:5)-(4:2)\t...".
_FRAME = re.compile(r"^\s*(?P<file>[^\t\n]+?):(?:\((?P<l2>\d+):(?P<c2>\d+)\)|(?P<l1>\d+):(?P<c1>\d+))", re.M)
# go-jsonnet's static error: "file:3:5-20 Message" or "file:(3:5)-(4:2) Message", then the source line(s).
_GO_STATIC = re.compile(r"^(?P<file>[^\t\n]+?):(?:\((?P<l2>\d+):(?P<c2>\d+)\)-\(\d+:\d+\)|(?P<l1>\d+):(?P<c1>\d+)(?:-\d+)?) "
                        r"(?P<msg>[^\n]*)")
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
    lines = [line for line in error.strip().split("\n")
             if not any(line.lstrip().startswith(stand_in + ":") for stand_in in stand_ins)]
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
                line, col = _line_col(content, match.start())
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
        line, col = _line_col(text, match.start())
        message = _unknown_native(name)
        found[name] = (_call_arity(text, match.end()), Problem(f"{source}:{line}:{col}", f'std.native("{name}")', message))
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
        line, col = _line_col(text, match.start())
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


def render_jsonnet(text: str, source: str, ctx: Context, imports: Mapping[str, str] | None = None) -> Any:
    """Evaluate a Jsonnet template with Ferry's functions as native functions and return the document.

    `imports` maps file names beside the config (e.g. "common.libsonnet") to
    their text; `import "common.libsonnet"` resolves only from it, and an
    absolute path or one leaving the config's folder is refused. Ext vars:
    environment, service, execution. Raises TemplateUnresolved listing every
    failing function call (with Jsonnet's file position), ConfigInvalid when
    the Jsonnet does not evaluate.
    """
    import _gojsonnet as _jsonnet  # go-jsonnet: the reference implementation, with arm64 wheels

    lookups = Lookups(ctx)
    imports = dict(imports or {})
    base = posixpath.dirname(source)
    failures: dict[tuple[str, tuple], str] = {}
    locating: list[tuple[str, tuple] | None] = [None]
    located = [False]
    unexpected: list[BaseException] = []

    def native(name: str, impl_name: str, arity: int):
        def callback(*args):
            key = (name, args)
            try:
                if impl_name not in FUNCTIONS:
                    raise Unresolved(_unknown_native(impl_name))
                return lookups.call(impl_name, tuple(args))
            except Unresolved as exc:
                if locating[0] == key:
                    located[0] = True  # go-jsonnet reports "failed to execute native callback", without the text
                    raise _Marker(str(exc)) from None
                failures.setdefault(key, str(exc))
                return _SENTINEL
            except Exception as exc:  # AWS unreachable, throttled...: raised as itself once Jsonnet stops
                unexpected.append(exc)
                raise
        params = tuple(f"arg{i}" for i in range(arity))
        return params, callback

    callbacks = {}
    for fn in FUNCTIONS.values():
        callbacks[fn.name] = native(fn.name, fn.name, len(fn.params))
        if fn.optional:
            full = JSONNET_FULL_NAMES[fn.name]
            callbacks[full] = native(full, fn.name, len(fn.params) + len(fn.optional))

    unknown: dict[str, tuple[int | None, Problem]] = {}

    positions: dict[tuple[str, tuple], list[str]] = {}

    def learn(content: str, found_as: str) -> None:
        for key, where in _literal_calls(content, found_as).items():
            known = positions.setdefault(key, [])
            known.extend(w for w in where if w not in known)
        # An unknown std.native(...) is null, and calling null would stop the evaluation
        # at the first one; a stand-in that records the failure lets the others be found.
        for name, (arity, problem) in _unknown_natives(content, found_as).items():
            if name not in unknown:
                unknown[name] = (arity, problem)
                if arity is not None:
                    callbacks[name] = native(name, name, arity)

    learn(text, source)

    # Every path a file can be known by, with its text: the config and the imports beside it.
    files = {source: text, **{(posixpath.join(base, key) if base else key): content for key, content in imports.items()}}
    # A refused import. go-jsonnet's Python binding cannot take an error from the import callback (it reads the
    # message past its end: garbled text, or a UnicodeDecodeError in place of the whole error), so the callback
    # never raises: a refused file stands in as `error "couldn't open import ..."`, which fails at the import
    # like Jsonnet's own error for it. An importstr/importbin of it would read that text as the file's content
    # instead, so the evaluation fails all the same whenever a refused file is read.
    refusals: dict[tuple[str, str], tuple[str, str]] = {}  # (directory, rel) -> (stand-in name, message)
    refused: list[tuple[str, str]] = []  # the ones read by this evaluation

    def resolve(directory: str, rel: str) -> tuple[str, str | None]:
        """The imports key `rel` names from `directory` (as go-jsonnet gives it, "services/web/"), or why it is refused."""
        here = directory[len(base):].lstrip("/") if base and directory.startswith(base) else directory.lstrip("/")
        if rel.startswith("/") or "\\" in rel:
            return rel, f"refused: only files beside the config can be imported, by a relative name ({_available(imports)})"
        key = posixpath.normpath(posixpath.join(here, rel))
        if key == ".." or key.startswith("../") or rel.split("/").count(".."):
            return key, f"refused: imports cannot leave the config's folder ({_available(imports)})"
        if key not in imports:
            return key, f"no such file beside the config ({_available(imports)})"
        return key, None

    def import_callback(directory: str, rel: str):
        key, reason = resolve(directory, rel)
        if reason is not None:
            stand_in, message = refusals.setdefault(
                (directory, rel), (f"<refused import {len(refusals) + 1}>", f"couldn't open import {json.dumps(rel)}: {reason}"))
            refused.append((directory, rel))
            return stand_in, f"error {json.dumps(message)}\n".encode()
        found = posixpath.join(base, key) if base else key
        content = imports[key]
        learn(content, found)
        return found, content.encode()

    ext_vars = {"environment": ctx.environment, "service": ctx.service, "execution": ctx.execution}

    def evaluate() -> str:
        refused.clear()
        located[0] = False
        output: str | None = None
        try:
            output = _jsonnet.evaluate_snippet(source, text, ext_vars=ext_vars, native_callbacks=callbacks,
                                               import_callback=import_callback)
        except RuntimeError as exc:
            if unexpected:
                raise unexpected[0] from None
            error = str(exc)
            stand_ins = {stand_in for stand_in, _ in refusals.values()}
            if located[0] or not refused or any(stand_in in error for stand_in in stand_ins):
                raise RuntimeError(_normalize_error(error, source, set(files), stand_ins)) from None
        if refused:  # a refused file read by importstr/importbin (or failing later than another error)
            directory, rel = refused[0]
            where = _import_position(files, directory, rel, ("importstr", "importbin")) \
                or _import_position(files, directory, rel, ("import",))
            raise RuntimeError(f"RUNTIME ERROR: {refusals[(directory, rel)][1]}" + (f"\n\t{where}\t" if where else ""))
        assert output is not None  # else the evaluation's error was raised above
        return output

    error: str | None = None
    output = ""
    for _ in range(1 + len(imports)):
        known_natives = len(callbacks)
        failures.clear()
        error = None
        try:
            output = evaluate()
        except RuntimeError as exc:
            error = str(exc)
        if len(callbacks) == known_natives:
            break  # else an import used an unknown function: evaluate again with its stand-in

    called = {name for name, _ in failures}
    problems = [problem for name, (_, problem) in unknown.items() if name not in called]
    for key, message in list(failures.items()):
        if key in positions:  # a call written with literal arguments: every place it is written
            problems.extend(Problem(where, _jsonnet_call_text(*key), message) for where in positions[key])
            continue
        locating[0] = key  # else evaluate again, failing at this call, for Jsonnet's position of it
        where = source
        try:
            evaluate()
        except RuntimeError as exc:
            if located[0]:
                where = _first_frame(str(exc)) or source
        locating[0] = None
        located[0] = False
        problems.append(Problem(where, _jsonnet_call_text(*key), message))
    if problems:
        _raise_unresolved(source, sorted(problems, key=lambda p: _position_key(p, source)))
    if error is not None:
        first = error.splitlines()[0] if error else error
        position = _first_frame(error)
        if first.startswith("RUNTIME ERROR: undefined external variable"):
            _raise_unresolved(source, [Problem(position or source, "std.extVar", first.removeprefix("RUNTIME ERROR: ")
                                               + f": the ext vars are {', '.join(EXT_VARS)}; use std.native(\"env\")(NAME) for values")])
        raise ConfigInvalid(f"{source}: Jsonnet evaluation failed: {error.strip()}")
    try:
        return json.loads(output)
    except json.JSONDecodeError as exc:  # pragma: no cover - Jsonnet always outputs JSON
        raise ConfigInvalid(f"{source}: Jsonnet output is not JSON: {exc}") from None


def _available(imports: Mapping[str, str]) -> str:
    return f"available: {', '.join(sorted(imports))}" if imports else "no files are available to import"
