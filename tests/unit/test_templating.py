"""Templates: placeholders and Jsonnet natives resolved against moto, errors listed all at once."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from ferry import aws as ferry_aws
from ferry.config import templating
from ferry.errors import ConfigInvalid, TemplateUnresolved
from ferry.aws.images import ImageRef
from ferry.config.templating import Context, render_jsonnet, render_text

from .conftest import ACCOUNT, REGISTRY, digest

DIGEST = digest("web:v1")
WORKER_DIGEST = digest("worker")
CTX = Context(
    environment="prod",
    service="web",
    execution="exec-1",
    images={
        "app": ImageRef(ACCOUNT, "us-east-1", "web", "v1", DIGEST),
        "worker": ImageRef(ACCOUNT, "us-east-1", "worker", None, WORKER_DIGEST),
    },
    values={"LOG_LEVEL": "debug", "REPLICAS": "3"},
    commit="0123abc",
)
STACK_TEMPLATE = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "VpcId": {"Value": "vpc-0abc"},
        "TopicArn": {"Value": {"Ref": "Topic"}, "Export": {"Name": "net-topic-arn"}},
    },
}


@pytest.fixture(scope="module")
def _moto_world():
    """One moto account for the whole module (built once: moto's first calls are slow); tests must not change it."""
    from moto import mock_aws

    ferry_aws.reset()
    with mock_aws():
        yield _build_world()
    ferry_aws.reset()


@pytest.fixture
def world(_moto_world):
    return _moto_world


def _build_world() -> dict[str, str]:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/prod/web/url", Value="https://example.com/a?b=c", Type="String")
    ssm.put_parameter(Name="/prod/web/hosts", Value="a.example.com,b.example.com", Type="StringList")
    ssm.put_parameter(Name="/prod/web/db-password", Value="hunter2", Type="SecureString")
    ssm.put_parameter(Name="/prod/web/quote", Value='say "hi" \\ bye\nnext', Type="String")
    boto3.client("cloudformation").create_stack(StackName="net", TemplateBody=json.dumps(STACK_TEMPLATE))
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="prod/web/db", SecretString='{"password": "hunter2"}')["ARN"]
    sm.create_secret(Name="prod/web/old", SecretString="x")
    sm.delete_secret(SecretId="prod/web/old")
    return {"secret_arn": arn, "topic_arn": boto3.client("cloudformation").list_exports()["Exports"][0]["Value"]}


@pytest.fixture
def calls(world, monkeypatch):
    """Counts the AWS API calls templating makes, by wrapping the cached clients' methods."""
    counted: dict[str, list] = {}

    def wrap(service: str, method: str) -> None:
        client = ferry_aws.client(service)
        original = getattr(client, method)

        def wrapper(*args, **kwargs):
            counted.setdefault(method, []).append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(client, method, wrapper)

    def fail(*args, **kwargs):
        raise AssertionError("GetSecretValue must never be called")

    wrap("ssm", "get_parameter")
    wrap("cloudformation", "describe_stacks")
    wrap("cloudformation", "list_exports")
    wrap("secretsmanager", "describe_secret")
    monkeypatch.setattr(ferry_aws.client("secretsmanager"), "get_secret_value", fail)
    return counted


def unresolved(text: str, source: str = "td.json", ctx: Context = CTX) -> list[str]:
    with pytest.raises(TemplateUnresolved) as info:
        render_text(text, source, ctx)
    return str(info.value).splitlines()


# --- happy paths -------------------------------------------------------------


def test_context_functions_in_json():
    text = """{
      "image": "{{ image "app" }}", "tag": "{{ tag 'app' }}", "digest": "{{ digest `app` }}",
      "workerImage": "{{ image "worker" }}",
      "level": "{{ env "LOG_LEVEL" }}", "fallback": "{{ env "NOPE" "info" }}", "empty": "{{ env "NOPE" }}",
      "present": "{{ env "LOG_LEVEL" "ignored" }}", "must": "{{ must_env "LOG_LEVEL" }}",
      "builtins": "{{ env "FERRY_ENVIRONMENT" }}/{{ env "FERRY_SERVICE" }}/{{ env "FERRY_EXECUTION" }}",
      "who": "{{environment}}-{{ service }}-{{ execution }}", "commit": "{{ commit }}",
      "replicas": {{ env "REPLICAS" }}
    }"""
    assert render_text(text, "td.json", CTX) == {
        "image": f"{REGISTRY}/web@{DIGEST}",
        "tag": "v1",
        "digest": DIGEST,
        "workerImage": f"{REGISTRY}/worker@{WORKER_DIGEST}",
        "level": "debug",
        "fallback": "info",
        "empty": "",
        "present": "debug",
        "must": "debug",
        "builtins": "prod/web/exec-1",
        "who": "prod-web-exec-1",
        "commit": "0123abc",
        "replicas": 3,
    }


def test_laptop_context_defaults():
    ctx = Context(environment="dev", service="web")
    assert render_text('{"e": "{{ execution }}", "v": "{{ env "X" "d" }}"}', "t.json", ctx) == {"e": "", "v": "d"}


def test_ssm_values_and_arns(world):
    text = """
url: {{ ssm "/prod/web/url" }}
hosts: "{{ ssm '/prod/web/hosts' }}"
arn: {{ ssm_arn "/prod/web/url" }}
secretArn: {{ ssm_arn "/prod/web/db-password" }}
"""
    assert render_text(text, "td.yaml", CTX) == {
        "url": "https://example.com/a?b=c",
        "hosts": "a.example.com,b.example.com",
        "arn": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/prod/web/url",
        "secretArn": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/prod/web/db-password",
    }


def test_cloudformation_output_and_export(world):
    text = '{"vpc": "{{ cfn_output "net" "VpcId" }}", "topic": "{{ cfn_output "net" "TopicArn" }}", "export": "{{ cfn_export "net-topic-arn" }}"}'
    assert render_text(text, "td.json", CTX) == {
        "vpc": "vpc-0abc",
        "topic": world["topic_arn"],
        "export": world["topic_arn"],
    }
    assert world["topic_arn"].startswith("arn:aws:sns:us-east-1:")


def test_cfn_export_follows_pagination(world, monkeypatch):
    client = ferry_aws.client("cloudformation")
    pages = [{"Exports": [{"Name": "a", "Value": "1"}], "NextToken": "t"}, {"Exports": [{"Name": "b", "Value": "2"}]}]
    seen = []

    def list_exports(**kwargs):
        seen.append(kwargs)
        return pages[len(seen) - 1]

    monkeypatch.setattr(client, "list_exports", list_exports)
    assert render_text('{"a": "{{ cfn_export "a" }}", "b": "{{ cfn_export "b" }}"}', "t.json", CTX) == {
        "a": "1",
        "b": "2",
    }
    assert seen == [{}, {"NextToken": "t"}]


def test_secret_arn_is_the_full_arn_and_never_reads_the_value(world, calls):
    text = '{"plain": "{{ secret_arn "prod/web/db" }}", "key": "{{ secret_arn "prod/web/db" "password" }}"}'
    rendered = render_text(text, "td.json", CTX)
    arn = world["secret_arn"]
    assert (
        arn.startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/web/db-")
        and len(arn.rsplit("-", 1)[1]) == 6
    )
    assert rendered == {"plain": arn, "key": f"{arn}:password::"}
    assert "hunter2" not in json.dumps(rendered)
    assert len(calls["describe_secret"]) == 1


def test_yaml_template_keeps_yaml_types():
    text = """\
family: {{ service }}
cpu: {{ env "REPLICAS" }}
quoted: "{{ env "REPLICAS" }}"
single: '{{ env "REPLICAS" }}'
forced: !!str {{ env "REPLICAS" }}
mixed: v{{ env "REPLICAS" }}
block: |
  level={{ env "LOG_LEVEL" }}
{{ env "LOG_LEVEL" }}: key
anchor: &a {{ env "REPLICAS" }}
alias: *a
list: [{{ env "REPLICAS" }}, "{{ environment }}"]
"""
    assert render_text(text, "td.yml", CTX) == {
        "family": "web",
        "cpu": 3,
        "quoted": "3",
        "single": "3",
        "forced": "3",
        "mixed": "v3",
        "block": "level=debug\n",
        "debug": "key",
        "anchor": 3,
        "alias": 3,
        "list": [3, "prod"],
    }


def test_empty_yaml_is_none():
    assert render_text("# nothing\n", "td.yaml", CTX) is None


# --- escaping ----------------------------------------------------------------

NASTY = 'a"b\\c\nd\', "privileged": true, "x": "{{ env "Y" }}'


def test_json_values_cannot_break_out_of_their_string():
    ctx = Context("prod", "web", values={"NASTY": NASTY, "NUM": "12", "WORD": "hello"})
    text = '{"inside": "pre-{{ env "NASTY" }}-post", "bare": {{ env "NASTY" }}, "num": {{ env "NUM" }}, "word": {{ env "WORD" }}}'
    assert render_text(text, "td.json", ctx) == {
        "inside": f"pre-{NASTY}-post",
        "bare": NASTY,
        "num": 12,
        "word": "hello",
    }


def test_yaml_values_cannot_change_the_structure():
    ctx = Context("prod", "web", values={"NASTY": NASTY + "\nprivileged: true\n- x"})
    text = 'plain: {{ env "NASTY" }}\ndouble: "{{ env "NASTY" }}"\nsingle: \'{{ env "NASTY" }}\'\n'
    value = NASTY + "\nprivileged: true\n- x"
    assert render_text(text, "td.yaml", ctx) == {"plain": value, "double": value, "single": value}


def test_ssm_value_with_quotes_is_escaped(world):
    assert render_text('{"v": "{{ ssm "/prod/web/quote" }}"}', "t.json", CTX) == {"v": 'say "hi" \\ bye\nnext'}


def test_placeholder_arguments_may_use_escapes_and_any_quote():
    ctx = Context("prod", "web", values={'we"ird': "1", "back`tick": "2", "it's": "3"})
    text = (
        r'{"a": "{{ env "we\"ird" }}", "b": "{{ env "back`tick" }}", "c": "{{ env `it'
        + "'"
        + r's` }}", "d": "{{ env '
        + "'it\\'s'"
        + ' }}"}'
    )
    assert render_text(text, "t.json", ctx) == {"a": "1", "b": "2", "c": "3", "d": "3"}


# --- errors, each with its position -----------------------------------------

ERRORS = [
    (
        '{{ ssm "/prod/missing" }}',
        "SSM parameter /prod/missing does not exist in us-east-1: create it with aws ssm put-parameter --name /prod/missing --type String --value ...",
    ),
    (
        '{{ ssm "/prod/web/db-password" }}',
        'SSM parameter /prod/web/db-password is a SecureString: reference it under `secrets` with {{ ssm_arn "/prod/web/db-password" }} '
        "so its value never lands in the task definition",
    ),
    ('{{ ssm_arn "/prod/missing" }}', "SSM parameter /prod/missing does not exist in us-east-1"),
    (
        '{{ cfn_output "nope" "VpcId" }}',
        "CloudFormation stack nope does not exist in us-east-1: deploy it first, or fix the stack name",
    ),
    (
        '{{ cfn_output "net" "Subnet" }}',
        "CloudFormation stack net has no output Subnet: its outputs are TopicArn, VpcId; add it to the stack's Outputs or fix the key",
    ),
    (
        '{{ cfn_export "net-topic" }}',
        "no CloudFormation export named net-topic in us-east-1 (similar: net-topic-arn): export it from a stack",
    ),
    (
        '{{ secret_arn "prod/web/nope" }}',
        "Secrets Manager secret prod/web/nope does not exist in us-east-1: create it with aws secretsmanager create-secret --name prod/web/nope",
    ),
    ('{{ secret_arn "prod/web/db" "a:b" }}', "'a:b' is not a JSON key ECS can select"),
    (
        '{{ sssm "/x" }}',
        "unknown function 'sssm': did you mean ssm? the functions are cfn_export, cfn_output, commit, digest, env,",
    ),
    ('{{ image "db" }}', "no image for container db: this deploy has images for app, worker; name one of those"),
    (
        '{{ tag "worker" }}',
        'the image for container worker was given by digest and has no tag: use {{ digest "worker" }}',
    ),
    (
        '{{ must_env "LOG_LEVL" }}',
        "value LOG_LEVL is not set (did you mean LOG_LEVEL?): define it under `values:` in ferry.yaml, in the manifest's `values`, "
        "or with --var LOG_LEVL=...; the values set are LOG_LEVEL, REPLICAS",
    ),
    ("{{ env }}", 'env takes 1 to 2 arguments, got 0: write it as {{ env "NAME" ["default"] }}'),
    ('{{ service "x" }}', "service takes no arguments, got 1"),
]


@pytest.mark.parametrize("placeholder,message", ERRORS, ids=[e[0].split()[1] + str(i) for i, e in enumerate(ERRORS)])
def test_each_error_names_placeholder_position_and_fix(world, placeholder, message):
    text = '{\n  "a": 1,\n  "x": "pre ' + placeholder + '"\n}'
    lines = unresolved(text)
    assert lines[0] == "td.json: 1 template placeholder could not be resolved:"
    shown = templating.scan(placeholder)[0][0].display()
    assert lines[1].startswith(f"td.json:3:13: {shown}: {message}")
    assert len(lines) == 2


def test_commit_missing_after_an_ecr_push():
    ctx = Context("prod", "web", commit=None)
    assert unresolved("image: x\ncommit: {{ commit }}\n", "td.yaml", ctx)[1] == (
        "td.yaml:2:9: {{ commit }}: no commit: the deploy was started by an ECR push; "
        "put `commit` in the manifest or avoid {{ commit }}"
    )


def test_no_images_at_all():
    ctx = Context("prod", "web")
    assert (
        unresolved('{"i": "{{ image "app" }}"}', ctx=ctx)[1]
        == 'td.json:1:8: {{ image "app" }}: no image for container app: this deploy pins no images'
    )


SYNTAX = [
    ('{"a": "{{ env "X" ', 1, 8, "unterminated {{: no closing }}"),
    ('{"a": "{{ env "X }}"}', 1, 15, 'unterminated "-quoted argument'),
    ('{"a": "{{ env X }}"}', 1, 15, 'argument X must be quoted: "X"'),
    ('{"a": "{{ }}"}', 1, 8, "empty placeholder"),
    ('{"a": "{{ "X" }}"}', 1, 11, "expected a function name after {{, found '\"'"),
    ('{"a": "{{ env "X""Y" }}"}', 1, 18, "arguments must be separated by spaces"),
    ('{"a": "{{ env "\\q" }}"}', 1, 16, "unknown escape \\q"),
    ('{"a": "{{ env "X" {{ env "Y" }}"}', 1, 8, "a new {{ starts before this one is closed"),
]


@pytest.mark.parametrize("text,line,col,message", SYNTAX)
def test_syntax_errors_have_positions(text, line, col, message):
    lines = unresolved(text)
    assert lines[1].startswith(f"td.json:{line}:{col}: ")
    assert message in lines[1]


def test_every_failure_is_reported_at_once_in_order(world):
    text = """{
  "containerDefinitions": [{
    "image": "{{ image "api" }}",
    "environment": [
      {"name": "A", "value": "{{ ssm "/prod/a" }}"},
      {"name": "B", "value": "{{ ssm "/prod/a" }}"},
      {"name": "C", "value": "{{ env "LOG_LEVEL" }}"},
      {"name": "D", "value": "{{ must_env "D" }}{{ nope }}"}
    ],
    "secrets": [{"name": "S", "valueFrom": "{{ secret_arn "prod/x" "k" }}"}],
    "broken": "{{ env 'x }}"
  }]
}"""
    assert unresolved(text, "services/web/td.json") == [
        "services/web/td.json: 7 template placeholders could not be resolved:",
        'services/web/td.json:3:15: {{ image "api" }}: no image for container api (did you mean app?): this deploy has images for app, worker; '
        "name one of those, or add the container under `containers` in ferry.yaml",
        'services/web/td.json:5:31: {{ ssm "/prod/a" }}: SSM parameter /prod/a does not exist in us-east-1: '
        "create it with aws ssm put-parameter --name /prod/a --type String --value ...",
        'services/web/td.json:6:31: {{ ssm "/prod/a" }}: SSM parameter /prod/a does not exist in us-east-1: '
        "create it with aws ssm put-parameter --name /prod/a --type String --value ...",
        'services/web/td.json:8:31: {{ must_env "D" }}: value D is not set: define it under `values:` in ferry.yaml, '
        "in the manifest's `values`, or with --var D=...; the values set are LOG_LEVEL, REPLICAS",
        "services/web/td.json:8:49: {{ nope }}: unknown function 'nope': the functions are cfn_export, cfn_output, commit, "
        "digest, env, environment, execution, image, must_env, secret_arn, service, ssm, ssm_arn, tag",
        'services/web/td.json:10:45: {{ secret_arn "prod/x" "k" }}: Secrets Manager secret prod/x does not exist in us-east-1: '
        "create it with aws secretsmanager create-secret --name prod/x --secret-string ...",
        "services/web/td.json:11:23: {{ env 'x }}: unterminated '-quoted argument (close it with ' before }} and the end of the line)",
    ]


def test_invalid_json_after_substitution_names_the_line():
    text = '{\n  "a": "{{ environment }}",\n  "b": "{{ service }}" "c": 1\n}'
    with pytest.raises(
        ConfigInvalid,
        match=r"^td.json:3:24: not valid JSON after its placeholders were filled in: Expecting ',' delimiter",
    ):
        render_text(text, "td.json", CTX)


def test_invalid_yaml_after_substitution_names_the_line():
    text = 'a: {{ environment }}\nb: [1, {{ service }}\nc: {{ env "REPLICAS" }}: x\n'
    with pytest.raises(ConfigInvalid, match=r"^td.yaml:3:\d+: not valid YAML after its placeholders were filled in"):
        render_text(text, "td.yaml", CTX)


def test_json_placeholder_after_a_backslash_is_refused():
    lines = unresolved('{"a": "x\\{{ environment }}"}')
    assert (
        lines[1]
        == "td.json:1:10: {{ environment }}: a placeholder cannot follow a backslash inside a JSON string: remove the backslash"
    )


def test_unknown_extension():
    with pytest.raises(ConfigInvalid, match=r"td.txt: cannot tell the template's format"):
        render_text("{}", "td.txt", CTX)


def test_access_denied_says_which_permission(world, monkeypatch):
    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameter")

    monkeypatch.setattr(ferry_aws.client("ssm"), "get_parameter", denied)
    assert unresolved('{"a": "{{ ssm "/prod/a" }}"}')[1] == (
        'td.json:1:8: {{ ssm "/prod/a" }}: SSM parameter /prod/a: access denied (no): grant ssm:GetParameter on '
        "parameter/prod/a to the role that renders templates"
    )


def test_throttling_is_raised_as_itself_so_the_step_retries(world, monkeypatch):
    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "DescribeSecret")

    monkeypatch.setattr(ferry_aws.client("secretsmanager"), "describe_secret", throttled)
    with pytest.raises(ClientError, match="slow down"):
        render_text('{"a": "{{ secret_arn "x" }}"}', "t.json", CTX)
    with pytest.raises(ClientError, match="slow down"):
        render_jsonnet('{a: std.native("secret_arn")("x")}', "t.jsonnet", CTX)


def test_secret_scheduled_for_deletion(world):
    assert unresolved('{"a": "{{ secret_arn "prod/web/old" }}"}')[1] == (
        'td.json:1:8: {{ secret_arn "prod/web/old" }}: Secrets Manager secret prod/web/old is scheduled for deletion: '
        "restore it with aws secretsmanager restore-secret --secret-id prod/web/old"
    )


# --- caching -------------------------------------------------------------------


def test_lookups_are_cached_within_one_render(world, calls):
    text = """{
      "a": "{{ ssm "/prod/web/url" }}", "b": "{{ ssm "/prod/web/url" }}", "c": "{{ ssm_arn "/prod/web/url" }}",
      "d": "{{ cfn_output "net" "VpcId" }}", "e": "{{ cfn_output "net" "TopicArn" }}",
      "f": "{{ cfn_export "net-topic-arn" }}", "g": "{{ cfn_export "net-topic-arn" }}",
      "h": "{{ secret_arn "prod/web/db" }}", "i": "{{ secret_arn "prod/web/db" "password" }}"
    }"""
    render_text(text, "td.json", CTX)
    assert {k: len(v) for k, v in calls.items()} == {
        "get_parameter": 1,
        "describe_stacks": 1,
        "list_exports": 1,
        "describe_secret": 1,
    }
    assert calls["get_parameter"] == [{"Name": "/prod/web/url", "WithDecryption": False}]
    render_text(text, "td.json", CTX)  # a new render asks again
    assert len(calls["get_parameter"]) == 2


def test_failures_are_cached_too(world, calls):
    lines = unresolved('{"a": "{{ ssm "/x" }}", "b": "{{ ssm_arn "/x" }}", "c": "{{ ssm "/x" }}"}')
    assert len(lines) == 4
    assert len(calls["get_parameter"]) == 1


def test_securestring_is_read_without_decryption(world, calls):
    unresolved('{"a": "{{ ssm "/prod/web/db-password" }}"}')
    assert calls["get_parameter"] == [{"Name": "/prod/web/db-password", "WithDecryption": False}]


# --- Jsonnet -------------------------------------------------------------------


def test_jsonnet_natives_and_ext_vars(world):
    text = """
local ssm = std.native("ssm");
{
  family: std.extVar("service") + "-" + std.extVar("environment"),
  execution: std.extVar("execution"),
  image: std.native("image")("app"),
  tag: std.native("tag")("app"),
  url: ssm("/prod/web/url"),
  arn: std.native("ssm_arn")("/prod/web/db-password"),
  vpc: std.native("cfn_output")("net", "VpcId"),
  topic: std.native("cfn_export")("net-topic-arn"),
  secret: std.native("secret_arn")("prod/web/db"),
  secretKey: std.native("secret_arn_key")("prod/web/db", "password"),
  level: std.native("env")("LOG_LEVEL"),
  missing: std.native("env")("NOPE"),
  fallback: std.native("env_default")("NOPE", "info"),
  commit: std.native("commit")(),
  replicas: std.parseInt(std.native("must_env")("REPLICAS")),
}
"""
    arn = world["secret_arn"]
    assert render_jsonnet(text, "td.jsonnet", CTX) == {
        "family": "web-prod",
        "execution": "exec-1",
        "image": f"{REGISTRY}/web@{DIGEST}",
        "tag": "v1",
        "url": "https://example.com/a?b=c",
        "arn": f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/prod/web/db-password",
        "vpc": "vpc-0abc",
        "topic": world["topic_arn"],
        "secret": arn,
        "secretKey": f"{arn}:password::",
        "level": "debug",
        "missing": "",
        "fallback": "info",
        "commit": "0123abc",
        "replicas": 3,
    }


def test_render_text_hands_jsonnet_over():
    assert render_text('{ s: std.native("service")() }', "td.jsonnet", CTX) == {"s": "web"}


def test_jsonnet_imports_resolve_from_the_mapping_only():
    imports = {
        "common.libsonnet": 'local lib = import "lib/env.libsonnet"; { env: lib.env, cpu: 256 }',
        "lib/env.libsonnet": '{ env: [{ name: "LEVEL", value: std.native("env")("LOG_LEVEL") }] }',
        "lib/data.json": '{"k": 1}',
    }
    text = 'local common = import "common.libsonnet"; common + { data: import "./lib/data.json" }'
    assert render_jsonnet(text, "services/web/td.jsonnet", CTX, imports) == {
        "env": [{"name": "LEVEL", "value": "debug"}],
        "cpu": 256,
        "data": {"k": 1},
    }


@pytest.mark.parametrize(
    "target,reason",
    [
        ("../other/secrets.libsonnet", "refused: imports cannot leave the config's folder (available: a.libsonnet)"),
        ("lib/../a.libsonnet", "refused: imports cannot leave the config's folder"),
        ("/etc/passwd", "refused: only files beside the config can be imported, by a relative name"),
        ("b.libsonnet", "no such file beside the config (available: a.libsonnet)"),
    ],
)
def test_jsonnet_imports_outside_the_mapping_are_refused(target, reason):
    text = '{\n  x: import "' + target + '",\n}'
    with pytest.raises(ConfigInvalid) as info:
        render_jsonnet(text, "td.jsonnet", CTX, {"a.libsonnet": "{}"})
    message = str(info.value)
    assert message.startswith(
        f'td.jsonnet: Jsonnet evaluation failed: RUNTIME ERROR: couldn\'t open import "{target}": {reason}'
    )
    assert "td.jsonnet:2:6" in message


def test_jsonnet_failures_are_all_reported_with_positions(world):
    imports = {"lib.libsonnet": '{\n  db: std.native("ssm")("/prod/db-url"),\n}\n'}
    text = """local lib = import "lib.libsonnet";
{
  a: std.native("must_env")("X"),
  b: std.native("nope")("y", 2),
  c: std.native("ssm")("/prod/web/db-password"),
  d: lib.db,
  e: std.native("image")("db"),
  f: std.native("cfn_output")("net", "Nope"),
}
"""
    with pytest.raises(TemplateUnresolved) as info:
        render_jsonnet(text, "td.jsonnet", CTX, imports)
    assert str(info.value).splitlines() == [
        "td.jsonnet: 6 template placeholders could not be resolved:",
        'td.jsonnet:3:6: std.native("must_env")("X"): value X is not set: define it under `values:` in ferry.yaml, '
        "in the manifest's `values`, or with --var X=...; the values set are LOG_LEVEL, REPLICAS",
        'td.jsonnet:4:6: std.native("nope")("y", 2): unknown function \'nope\': the functions are cfn_export, cfn_output, '
        "commit, digest, env, environment, execution, image, must_env, secret_arn, service, ssm, ssm_arn, tag "
        "(and, in Jsonnet, env_default, secret_arn_key)",
        'td.jsonnet:5:6: std.native("ssm")("/prod/web/db-password"): SSM parameter /prod/web/db-password is a SecureString: '
        'reference it under `secrets` with {{ ssm_arn "/prod/web/db-password" }} so its value never lands in the task definition',
        'td.jsonnet:7:6: std.native("image")("db"): no image for container db: this deploy has images for app, worker; '
        "name one of those, or add the container under `containers` in ferry.yaml",
        'td.jsonnet:8:6: std.native("cfn_output")("net", "Nope"): CloudFormation stack net has no output Nope: '
        "its outputs are TopicArn, VpcId; add it to the stack's Outputs or fix the key",
        'lib.libsonnet:2:7: std.native("ssm")("/prod/db-url"): SSM parameter /prod/db-url does not exist in us-east-1: '
        "create it with aws ssm put-parameter --name /prod/db-url --type String --value ...",
    ]


def test_jsonnet_unknown_native_inside_an_import():
    imports = {"lib.libsonnet": '{\n  x: std.native("sm")("/a"),\n}'}
    text = '(import "lib.libsonnet") + {\n  y: std.native("must_env")("NOPE"),\n}'
    lines = str(pytest.raises(TemplateUnresolved, render_jsonnet, text, "td.jsonnet", CTX, imports).value).splitlines()
    assert lines[1].startswith('td.jsonnet:2:6: std.native("must_env")("NOPE"): value NOPE is not set')
    assert lines[2].startswith('lib.libsonnet:2:6: std.native("sm")("/a"): unknown function \'sm\': did you mean ssm?')
    assert len(lines) == 3


def test_jsonnet_native_arguments_must_be_strings():
    with pytest.raises(
        TemplateUnresolved, match=r'td.jsonnet:1:6: std.native\("env"\)\(3\): env: arguments must be strings, got 3'
    ):
        render_jsonnet('{ a: std.native("env")(3) }', "td.jsonnet", CTX)


def test_jsonnet_unknown_ext_var():
    with pytest.raises(TemplateUnresolved) as info:
        render_jsonnet('{\n  a: std.extVar("region"),\n}', "td.jsonnet", CTX)
    assert str(info.value).splitlines()[1] == (
        "td.jsonnet:2:6: std.extVar: undefined external variable: region: the ext vars are environment, service, execution; "
        'use std.native("env")(NAME) for values'
    )


def test_jsonnet_syntax_error_is_config_invalid():
    with pytest.raises(
        ConfigInvalid, match=r"td.jsonnet: Jsonnet evaluation failed: STATIC ERROR: td.jsonnet:2:8: expected a comma"
    ):
        render_jsonnet("{\n  a: 1 b: 2\n}", "td.jsonnet", CTX)


def test_jsonnet_lookups_are_cached(world, calls):
    text = """local ssm = std.native("ssm");
{ a: ssm("/prod/web/url"), b: std.native("ssm_arn")("/prod/web/url"),
  c: ssm("/" + "nope"), d: ssm("/" + "nope") }"""
    with pytest.raises(TemplateUnresolved) as info:
        render_jsonnet(text, "td.jsonnet", CTX)
    # a call Jsonnet builds is located by evaluating again; its lookup is not repeated
    assert str(info.value).splitlines()[1:] == [
        'td.jsonnet:3:6: std.native("ssm")("/nope"): SSM parameter /nope does not exist in us-east-1: '
        "create it with aws ssm put-parameter --name /nope --type String --value ...",
    ]
    assert sorted(c["Name"] for c in calls["get_parameter"]) == ["/nope", "/prod/web/url"]


def test_jsonnet_every_place_a_literal_failing_call_is_written(world):
    text = """{
  a: std.native("cfn_export")("gone"),
  b: [std.native( "cfn_export" )( "gone", )],
}"""
    lines = str(pytest.raises(TemplateUnresolved, render_jsonnet, text, "td.jsonnet", CTX).value).splitlines()
    assert [line.split(": ", 2)[:2] for line in lines[1:]] == [
        ["td.jsonnet:2:6", 'std.native("cfn_export")("gone")'],
        ["td.jsonnet:3:7", 'std.native("cfn_export")("gone")'],
    ]
    assert lines[1].endswith(
        "no CloudFormation export named gone in us-east-1: export it from a stack "
        "(Outputs: <Key>: Export: Name: gone), or fix the name"
    )


# --- the function table ----------------------------------------------------------


def test_every_function_is_documented():
    assert set(templating.FUNCTIONS) == {
        "env",
        "must_env",
        "environment",
        "service",
        "execution",
        "commit",
        "image",
        "tag",
        "digest",
        "ssm",
        "ssm_arn",
        "cfn_output",
        "cfn_export",
        "secret_arn",
    }
    for name, fn in templating.FUNCTIONS.items():
        assert fn.name == name and fn.doc.strip() and fn.usage.startswith("{{ " + name)
    assert templating.FUNCTIONS["secret_arn"].usage == '{{ secret_arn "name" ["json-key"] }}'
