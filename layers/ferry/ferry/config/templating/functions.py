"""The template functions: what `{{ ssm "/prod/web/url" }}` and `std.native("ssm")("/prod/web/url")` call.

One registry, FUNCTIONS, serves both template formats: each Function says its
parameters (required, then optional), its one-line doc (docs/service-config.md
lists them) and its implementation, which takes the render's Lookups and the
arguments as strings. A call that cannot be resolved raises Unresolved with a
message that says what is wrong and how to fix it; the caller collects those
so one error can list every failing call.

No function ever reads a secret's value: `ssm` refuses SecureString
parameters and `ssm_arn`/`secret_arn` give ARNs for the task definition's
`secrets`, which ECS resolves when it starts the task. AWS lookups are cached
for one render (failures included), so a value used twice costs one call.
Throttling and AWS's own failures are raised as they are, for the step's
retry; anything else AWS says becomes an Unresolved naming the permission or
the resource to fix.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from ferry import aws
from ferry.aws import images

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
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "ServiceUnavailable",
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
        raise Unresolved(
            "no commit: the deploy was started by an ECR push; put `commit` in the manifest or avoid {{ commit }}"
        )
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
                raise Unresolved(
                    f"{name!r} is not a valid SSM parameter name: {exc.response['Error'].get('Message', '')}"
                ) from None
            raise _aws_failure(
                f"SSM parameter {name}",
                exc,
                f"ssm:GetParameter on parameter{name if name.startswith('/') else '/' + name}",
            ) from None

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
    raise Unresolved(
        f"CloudFormation stack {stack} has no output {key}{state}: {have}; add it to the stack's Outputs or fix the key"
    )


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


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function(
            "env",
            ("NAME",),
            ("default",),
            "A named value (config `values:`, manifest `values`, --var, or FERRY_ENVIRONMENT/"
            'FERRY_SERVICE/FERRY_EXECUTION); the default, or "", when it is not set. Jsonnet: env(NAME), env_default(NAME, default).',
            _env,
        ),
        Function("must_env", ("NAME",), (), "Like env, but a value that is not set is an error.", _must_env),
        Function("environment", (), (), "The Ferry environment (FERRY_ENVIRONMENT), e.g. prod.", _environment),
        Function("service", (), (), "The service's name in the registry.", _service),
        Function("execution", (), (), 'The Step Functions execution name ("" when rendered on a laptop).', _execution),
        Function(
            "commit", (), (), "The commit from the manifest; an error for a deploy started by an ECR push.", _commit
        ),
        Function(
            "image",
            ("container",),
            (),
            "The container's new image pinned by digest: <registry>/<repository>@sha256:….",
            _image,
        ),
        Function("tag", ("container",), (), "The tag the container's new image was deployed by.", _tag),
        Function("digest", ("container",), (), "The digest (sha256:…) of the container's new image.", _digest),
        Function(
            "ssm",
            ("name",),
            (),
            "The value of an SSM String or StringList parameter; a SecureString is refused (use ssm_arn "
            "under `secrets`).",
            _ssm,
        ),
        Function(
            "ssm_arn",
            ("name",),
            (),
            "The ARN of an SSM parameter, for `secrets[].valueFrom` (its value is never read).",
            _ssm_arn,
        ),
        Function("cfn_output", ("stack", "OutputKey"), (), "An output of a CloudFormation stack.", _cfn_output),
        Function("cfn_export", ("ExportName",), (), "The value of a CloudFormation export.", _cfn_export),
        Function(
            "secret_arn",
            ("name",),
            ("json-key",),
            "The full ARN of a Secrets Manager secret (with its random suffix); with a "
            "JSON key, <arn>:<key>:: for `secrets[].valueFrom`. Never reads the value. Jsonnet: secret_arn(name), "
            "secret_arn_key(name, key).",
            _secret_arn,
        ),
    ]
}
