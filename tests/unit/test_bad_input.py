"""Bad input: service configs and release manifests, valid ones generated from their schemas and mutated.

Whatever is written, Ferry either accepts it (and then it passes the schema
and the library's own checks) or refuses it with its own error, naming the
field (a JSON path) and the fix. Nothing raises anything else, and a refused
manifest starts no execution.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import time
import tracemalloc
from typing import Any

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry import aws as ferry_aws
from ferry import config
from ferry.triggers import manifest, router
from ferry.config import validation
from ferry.errors import ConfigInvalid, ServiceNotRegistered

from .conftest import ACCOUNT, push

BUCKET = "ferry-config"
ALLOWED = ("prod",)
FAST = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONFIG_SCHEMA = validation.schema(config.SCHEMA)
MANIFEST_SCHEMA = validation.schema(manifest.SCHEMA)

WEB = "cluster: prod\nservice: web\ncontainers: {app: {repository: web}, nginx: {repository: nginx}}\n"
API = "cluster: prod\nservice: api\ncontainers: {app: {repository: api}}\n"


# ------------------------------------------------------------------ documents from a schema


def _shorter(pattern: str) -> str:
    """The pattern with its repetitions capped ({1,255} -> {1,12}): a subset of its matches, much faster to draw."""
    return re.sub(r"\{(\d+),(\d+)\}", lambda m: f"{{{m[1]},{min(int(m[2]), max(int(m[1]), 12))}}}", pattern)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid against `schema`, for the keywords Ferry's schemas use (hypothesis-jsonschema does not run
    on this hypothesis). Arrays and objects are kept small; strings follow their pattern and lengths."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
        if "pattern" in schema:
            pattern = re.compile(_shorter(schema["pattern"]), re.ASCII)  # JSON Schema's \d is [0-9]
            return st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= high)
        return st.text(min_size=low, max_size=min(high, 40))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(
            from_schema(schema.get("items", {})),
            min_size=low,
            max_size=max(low, min(schema.get("maxItems", 2), 2)),
            unique_by=(lambda v: json.dumps(v, sort_keys=True)) if schema.get("uniqueItems") else None,
        )
    if kind == "object":
        properties = schema.get("properties", {})
        required = {k: from_schema(properties[k]) for k in schema.get("required", [])}
        optional = {k: from_schema(v) for k, v in properties.items() if k not in required}
        fixed = st.fixed_dictionaries(required, optional=optional)
        extra = schema.get("additionalProperties")
        if not isinstance(extra, dict):
            return fixed
        names = schema.get("propertyNames", {"type": "string"})
        low = schema.get("minProperties", 0)
        more = st.dictionaries(
            from_schema({"type": "string", **names}),
            from_schema(extra),
            min_size=low,
            max_size=max(low, min(schema.get("maxProperties", 2), 2)),
        )
        return st.tuples(fixed, more).map(lambda pair: {**pair[1], **pair[0]})
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))


NASTY = [
    "",
    " ",
    "x" * 100_000,
    "../../etc/passwd",
    "..",
    "/etc/passwd",
    "a/b",
    "prod\n",
    "\x00",
    "é🚀\u202eabc",
    "${ANY}",
    '{{ env "X" }}',
    "true",
    "1e400",
    "NaN",
    -1,
    0,
    2**64,
    1.5,
    True,
    False,
    None,
    [],
    {},
    [[[[[[[["deep"]]]]]]]],
    {"a": {"b": {"c": {"d": {}}}}},
    ["web:v2"] * 30,
]


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for i in range(levels):
        value = [value] if i % 2 else {"x": value}
    return value


def _slots(document: Any, at: tuple = ()) -> list[tuple]:
    """Every path into a document (the document itself included)."""
    found = [at]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(_slots(value, at + (key,)))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            found.extend(_slots(value, at + (i,)))
    return found


@st.composite
def mutated(draw, valid: st.SearchStrategy[Any]) -> Any:
    """A valid document, then one to three changes: a value replaced (wrong type, huge, deep, unicode, traversal),
    a key removed or added."""
    document = json.loads(json.dumps(draw(valid)))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(document)
        at = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if not at:
            if action == "replace":
                document = draw(st.sampled_from(NASTY[:6] + [[document], None, 7]))
            continue
        parent = document
        for step in at[:-1]:
            parent = parent[step]
        if action == "replace":
            parent[at[-1]] = draw(
                st.one_of(
                    st.sampled_from(NASTY), st.builds(deep, st.integers(60, 200)), st.text(max_size=30), st.integers()
                )
            )
        elif action == "remove":
            del parent[at[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "../../etc/passwd", "é", "x" * 300, "", "$schema"]))] = draw(
                st.sampled_from(NASTY)
            )
        else:
            parent.append(draw(st.sampled_from(NASTY)))
    return document


def _assert_clear(message: str, source: str) -> None:
    """A refusal names the file, then where (a JSON path, or a line for a file that does not parse), and is short."""
    assert source in message
    assert "$" in message or "line" in message or "position" in message, message
    assert all(len(line) < 1200 for line in message.splitlines()), max(message.splitlines(), key=len)[:300]


# ------------------------------------------------------------------ service configs

CONFIGS = from_schema(CONFIG_SCHEMA)
NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def _dump(document: Any, source: str) -> str:
    if source.endswith(".yaml"):
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    return json.dumps(document, ensure_ascii=False)


def _parse_or_refuse(document: Any, source: str) -> config.ServiceConfig | None:
    text = _dump(document, source)
    try:
        cfg = config.parse("web", text, source)
    except ConfigInvalid as exc:
        _assert_clear(str(exc), source)
        return None
    # Accepted: the schema and the library's checks hold for what the deploy will read.
    assert validation.problems(cfg.raw, config.SCHEMA) == []
    assert json.loads(json.dumps(cfg.raw)) == cfg.raw
    assert NAME.fullmatch(cfg.cluster) and NAME.fullmatch(cfg.service)
    assert all(NAME.fullmatch(c) for c in cfg.containers)
    assert cfg.strategy in config.AVAILABLE_STRATEGIES
    assert cfg.template is None or ("/" not in cfg.template and not cfg.template.startswith("."))
    assert (cfg.cluster, cfg.service) == (document["cluster"], document["service"])
    return cfg


@FAST
@given(document=CONFIGS, source=st.sampled_from(["ferry.yaml", "ferry.json", "ferry.jsonnet"]))
def test_configs_generated_from_the_schema_are_accepted_or_refused_by_the_librarys_checks(document, source):
    cfg = _parse_or_refuse(document, source)
    if cfg is None:
        return
    assert cfg.containers == {c: spec["repository"] for c, spec in document["containers"].items()}


@FAST
@given(document=mutated(CONFIGS), source=st.sampled_from(["ferry.yaml", "ferry.json", "ferry.jsonnet"]))
def test_mutated_configs_are_accepted_valid_or_refused_with_a_path(document, source):
    if not isinstance(document, dict) or "cluster" not in document or "service" not in document:
        with pytest.raises(ConfigInvalid) as err:
            config.parse("web", _dump(document, source), source)
        _assert_clear(str(err.value), source)
        return
    _parse_or_refuse(document, source)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
    source=st.sampled_from(["ferry.yaml", "ferry.json"]),
)
def test_any_text_is_a_config_or_a_clear_refusal(text, source):
    try:
        config.parse("web", text, source)
    except ConfigInvalid as exc:
        _assert_clear(str(exc), source)


GOOD = "cluster: prod\nservice: web\ncontainers:\n  app: {repository: web}\n"


@st.composite
def hostile_configs(draw) -> tuple[str, str, str]:
    """(text, source, words of the refusal): a generated config with one thing Ferry must refuse."""
    document = draw(CONFIGS)
    kind = draw(st.sampled_from(["duplicate", "laughs", "itself", "deep", "key", "newline", "nan"]))
    source = (
        "ferry.yaml" if kind in ("laughs", "itself", "key") else draw(st.sampled_from(["ferry.yaml", "ferry.json"]))
    )
    if kind == "duplicate":
        key = draw(st.sampled_from(sorted(document)))
        if source == "ferry.json":
            text = json.dumps(document)[:-1] + f", {json.dumps(key)}: {json.dumps(document[key])}}}"
        else:
            text = _dump(document, source) + _dump({key: document[key]}, source)
        return text, source, f"key {key!r} is written twice"
    if kind == "laughs":
        levels = draw(st.integers(7, 9))
        at = draw(st.sampled_from(["cluster", "values", "triggers", "migrations"]))
        document.pop(at, None)
        return (
            _laughs(levels, at).replace("cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n", "")
            + _dump({k: v for k, v in document.items()}, source),
            source,
            "holds more than 100000 values",
        )
    if kind == "itself":
        return _dump(document, source) + "x-self: &self [[*self]]\n", source, "alias *self is inside the value &self"
    if kind == "deep":
        depth = draw(st.integers(validation.MAX_DEPTH + 1, 20_000))
        return _deep_text(document, depth, source), source, f"nested more than {validation.MAX_DEPTH} levels"
    if kind == "key":
        key = draw(st.sampled_from([1, 1.5, True, None, datetime.date(2024, 1, 1)]))
        where = draw(st.sampled_from(["values", "containers"]))
        document[where] = {key: {"repository": "web"} if where == "containers" else "a"}
        return yaml.safe_dump(document), source, "not text"
    if kind == "newline":
        name = draw(st.sampled_from(["cluster", "service"]))
        document[name] += "\n"
        return _dump(document, source), source, "does not match"
    document["timeouts"] = {"deployment": float(draw(st.sampled_from(["nan", "inf", "-inf"])))}
    return _dump(document, source), source, "$.timeouts.deployment"


def _deep_text(document: dict, depth: int, source: str) -> str:
    """`document` with `values` nested `depth` levels, written without recursing (yaml.safe_dump would)."""
    body = {k: v for k, v in document.items() if k != "values"}
    nested = "[" * depth + "]" * depth
    if source == "ferry.json":
        return json.dumps(body)[:-1] + (", " if body else "") + f'"values": {nested}}}'
    return _dump(body, source) + f"values: {nested}\n"


@FAST
@given(case=hostile_configs())
def test_hostile_configs_are_refused_with_a_path_never_crash_and_stay_small(case):
    text, source, words = case
    laughs = "holds more than" in words
    if laughs:
        tracemalloc.start()
    try:
        with pytest.raises(ConfigInvalid) as err:
            config.parse("web", text, source)
        if laughs:
            assert tracemalloc.get_traced_memory()[1] < 64 * 2**20
    finally:
        tracemalloc.stop()
    assert words in str(err.value)
    _assert_clear(str(err.value), source)


@pytest.mark.parametrize(
    "text, path, words",
    [
        (GOOD + "cluster: staging\n", "$", "key 'cluster' is written twice (lines 1 and 5)"),
        (
            "cluster: prod\nservice: web\ncontainers:\n  app: {repository: web}\n  app: {repository: api}\n",
            "$.containers",
            "key 'app' is written twice",
        ),
        (GOOD + "values: {A: '1', B: '2', A: '3'}\n", "$.values", "key 'A' is written twice"),
        (
            GOOD + "values: {1: a, true: b}\n",
            "$.values",
            "key 'true' is written twice",
        ),  # YAML's 1 and true are one key
    ],
)
def test_a_key_written_twice_in_yaml_is_refused_not_last_wins(text, path, words):
    with pytest.raises(ConfigInvalid) as err:
        config.parse("web", text, "ferry.yaml")
    assert f"ferry.yaml: {path}: {words}" in str(err.value)
    assert "keep one" in str(err.value)


def test_a_key_written_twice_in_json_is_refused_not_last_wins():
    text = '{"cluster": "prod", "service": "web", "containers": {"app": {"repository": "web", "repository": "api"}}}'
    with pytest.raises(ConfigInvalid) as err:
        config.parse("web", text, "ferry.json")
    assert "$.containers.app: key 'repository' is written twice: keep one" in str(err.value)


def test_a_yaml_merge_key_may_still_be_overridden():
    text = "cluster: prod\nservice: web\ncontainers:\n  app: &app {repository: web}\n  worker:\n    <<: *app\n    repository: api\n"
    assert config.parse("web", text, "ferry.yaml").containers == {"app": "web", "worker": "api"}


def _laughs(levels: int, at: str) -> str:
    text = "lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels):
        text += f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]\n"
    return text + f"cluster: prod\nservice: web\ncontainers: {{app: {{repository: web}}}}\n{at}: *lol{levels - 1}\n"


@pytest.mark.parametrize("at", ["cluster", "values", "triggers"])
def test_a_billion_laughs_yaml_is_refused_without_expanding_it(at):
    text = _laughs(9, at)  # 9**9 (387 million) strings once expanded, in under 1 KiB
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigInvalid) as err:
            config.parse("web", text, "ferry.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 20 * 2**20
    assert "holds more than 100000 values once its aliases (*name) are expanded" in str(err.value)
    assert "ferry.yaml: $.lol5:" in str(err.value)


@pytest.mark.parametrize(
    "text, words",
    [
        ("&a [*a]", "$[0]: alias *a is inside the value &a it repeats"),
        (GOOD + "values: &v {A: *v}\n", "$.values.A: alias *v is inside the value &v it repeats"),
        (GOOD + "strategy: &s {<<: *s}\n", "alias *s is inside the value &s it repeats"),
    ],
)
def test_a_yaml_value_that_contains_itself_is_refused(text, words):
    with pytest.raises(ConfigInvalid, match=re.escape(words)):
        config.parse("web", text, "ferry.yaml")


@pytest.mark.parametrize(
    "source, text",
    [
        ("ferry.yaml", "[" * 10_000 + "]" * 10_000),
        ("ferry.yaml", GOOD + "values: " + "{a: " * 5_000 + "b" + "}" * 5_000 + "\n"),
        ("ferry.yaml", "- " * 3_000 + "x\n"),
        ("ferry.json", "[" * 100_000 + "]" * 100_000),
        ("ferry.json", '{"cluster": ' + "[" * 900 + "]" * 900 + "}"),  # under json's own limit, over Ferry's
        ("ferry.json", '{"values": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}"),
    ],
)
def test_deeply_nested_configs_are_refused_before_the_stack_runs_out(source, text):
    with pytest.raises(ConfigInvalid) as err:
        config.parse("web", text, source)
    assert f"nested more than {validation.MAX_DEPTH} levels deep" in str(err.value)
    assert "flatten it" in str(err.value)
    _assert_clear(str(err.value), source)


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD + "values: {2024-01-01: a}\n", "$.values: key datetime.date(2024, 1, 1) is a date, not text: quote it"),
        (GOOD + "values: {1.5: a}\n", "$.values: key 1.5 is a number, not text"),
        (
            "cluster: prod\nservice: web\ncontainers: {7: {repository: web}}\n",
            "$.containers: key 7 is a number, not text: quote it",
        ),
        (GOOD + "values: {A: 2024-01-01}\n", "$.values.A: a date is not a value Ferry reads: write it as text"),
        (GOOD + "values: {A: !!binary aGVsbG8=}\n", "$.values.A: binary data is not a value"),
        (GOOD + "timeouts: {deployment: .nan}\n", "$.timeouts.deployment: nan is not a number JSON has"),
    ],
)
def test_yaml_values_json_does_not_have_are_refused_with_their_path(text, words):
    with pytest.raises(ConfigInvalid) as err:
        config.parse("web", text, "ferry.yaml")
    assert words in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        GOOD.replace("service: web", 'service: "web\\n"'),
        GOOD.replace("cluster: prod", 'cluster: "prod\\n"'),
        GOOD.replace("{repository: web}", '{repository: "web\\n"}'),
        GOOD + 'taskDefinition: {template: "task.json\\n"}\n',
        GOOD + "taskDefinition: {template: ../../etc/passwd}\n",
        GOOD + "taskDefinition: {template: ../../etc/passwd.json}\n",
        GOOD + 'migrations: [{name: "m\\n", container: app, command: [x]}]\n',
        GOOD + "notifications: {snsTopicArn: 'arn:aws:sns:us-east-1:௧௨௩௪௫௬௭௮௯௧௨௩:deploys'}\n",  # Tamil digits
    ],
)
def test_names_with_a_trailing_newline_or_a_path_are_refused(text):
    """JSON Schema's `$` is the end of the text and its `\\d` is [0-9]; Python's `$` also matches before a final
    newline, and its `\\d` any Unicode digit."""
    with pytest.raises(ConfigInvalid, match=r"does not match|is not valid under any"):
        config.parse("web", text, "ferry.yaml")


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "web/../api", "/etc", ".ferry", ""])
def test_service_names_that_leave_the_registry_are_not_services(aws, name):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    with pytest.raises(ServiceNotRegistered):
        config.load(BUCKET, name)


def test_local_folders_never_read_outside_themselves(tmp_path):
    (tmp_path / "secret.json").write_text("{}")
    folder = tmp_path / "web"
    folder.mkdir()
    local = config.LocalFolder(folder)
    assert [local.read(n) for n in ("../secret.json", "/etc/passwd", "..", ".")] == [None] * 4


def test_a_10_mb_config_is_refused_before_it_is_read(aws, monkeypatch):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    body = (GOOD + "# " + "x" * 10 * 2**20 + "\n").encode()
    boto3.client("s3").put_object(Bucket=BUCKET, Key="services/web/ferry.yaml", Body=body)
    monkeypatch.setattr(yaml, "load", lambda *a, **kw: pytest.fail("a config over the limit was parsed"))
    with pytest.raises(ConfigInvalid) as err:
        config.load(BUCKET, "web")
    message = str(err.value)
    assert f"services/web/ferry.yaml is {len(body)} bytes, more than the 262144 bytes (256 KiB)" in message
    assert "split it up" in message


def test_a_10_mb_local_config_or_text_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    (tmp_path / "ferry.json").write_text('{"cluster": "' + "x" * 10 * 2**20 + '"}')
    monkeypatch.setattr(json, "loads", lambda *a, **kw: pytest.fail("a config over the limit was parsed"))
    with pytest.raises(ConfigInvalid, match=r"ferry.json is \d+ bytes, more than the 262144 bytes"):
        config.load_local(tmp_path)
    with pytest.raises(ConfigInvalid, match="ferry.yaml is more than the 262144 bytes"):
        config.parse("web", "é" * (config.MAX_CONFIG_BYTES // 2 + 1), "ferry.yaml")  # few characters, many bytes


@pytest.mark.parametrize(
    "body, words",
    [
        (GOOD.encode("utf-16"), "is not UTF-8 text (byte 0 is b'\\xff'): save it as UTF-8"),
        (GOOD.encode() + b"values: {A: \xe9}\n", f"is not UTF-8 text (byte {len(GOOD) + 12} is b'\\xe9')"),
    ],
)
def test_a_config_that_is_not_utf8_is_refused_naming_the_file(aws, body, words):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="services/web/ferry.yaml", Body=body)
    with pytest.raises(ConfigInvalid) as err:
        config.load(BUCKET, "web")
    assert "s3://ferry-config/services/web/ferry.yaml " + words in str(err.value)


def test_one_unreadable_config_does_not_hide_the_others(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="services/web/ferry.yaml", Body=GOOD.encode())
    s3.put_object(Bucket=BUCKET, Key="services/bad/ferry.yaml", Body=b"\xff\xfe" + _laughs(9, "cluster").encode())
    s3.put_object(Bucket=BUCKET, Key="services/twice/ferry.yaml", Body=(GOOD + GOOD).encode())
    configs, broken = config.load_all(BUCKET)
    assert [c.name for c in configs] == ["web"]
    assert len(broken) == 2


def test_a_utf8_bom_and_unicode_values_are_read():
    cfg = config.parse("web", "\ufeff" + GOOD + "values: {GREETING: 'héllo 🚀 \u202e'}\n", "ferry.yaml")
    assert cfg.values == {"GREETING": "héllo 🚀 \u202e"}


def test_an_empty_config_says_what_to_write():
    with pytest.raises(ConfigInvalid, match=r"ferry.yaml: \$: the file is empty: write the service's cluster"):
        config.parse("web", "# nothing yet\n", "ferry.yaml")


def test_messages_never_repeat_a_huge_value_or_key():
    huge = "x" * 60_000
    text = json.dumps(
        {
            "cluster": huge,
            "service": "web",
            "containers": {"app": {"repository": "web"}},
            "values": {huge: 1},
            huge: huge,
        }
    )
    with pytest.raises(ConfigInvalid) as err:
        config.parse("web", text, "ferry.json")
    message = str(err.value)
    assert len(message) < 3000 and "x" * 300 not in message
    assert "$.cluster: 'xxxx" in message


# ------------------------------------------------------------------ manifests, through the router


@pytest.fixture
def release_world(aws):
    """The config bucket with web (app, nginx) and api, their images in ECR, and a state machine to count starts."""
    s3 = ferry_aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    ecr = ferry_aws.client("ecr")
    for repo, tags in (("web", ("v1", "v2")), ("nginx", ("1.27",)), ("api", ("v3",))):
        ecr.create_repository(repositoryName=repo)
        for tag in tags:
            push(repo, tag)
    for name, text in (("web", WEB), ("api", API), ("legacy", API.replace("prod", "legacy"))):
        s3.put_object(Bucket=BUCKET, Key=f"services/{name}/ferry.yaml", Body=text.encode())
    sfn = ferry_aws.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="deploy",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    return {"arn": arn, "ids": itertools.count()}


def executions(world) -> int:
    pages = ferry_aws.client("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=world["arn"])
    return sum(len(page["executions"]) for page in pages)


def drop_and_route(world, body: bytes, key: str = "manifests/release.json") -> dict[str, Any]:
    """Write the manifest and run the router's manifest path on its 'Object Created' event."""
    ferry_aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    event = {
        "id": f"event-{next(world['ids'])}",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "account": ACCOUNT,
        "region": "us-east-1",
        "time": "2026-11-22T10:00:00Z",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}},
    }
    assert router.manifest_key(event, BUCKET) == key
    return router.start_manifest(
        event, key, config_bucket=BUCKET, state_machine_arn=world["arn"], allowed_clusters=ALLOWED, environment="prod"
    )


def assert_refused_and_nothing_started(world, outcome: dict[str, Any], before: int) -> None:
    assert outcome["started"] == [] and outcome["refused"]
    assert executions(world) == before
    for problem in outcome["refused"]:
        assert problem.startswith("$"), problem
        assert len(problem) < 3000, problem[:300]
    result = json.loads(ferry_aws.client("s3").get_object(Bucket=BUCKET, Key=outcome["result"])["Body"].read())
    assert result["status"] == "REFUSED" and result["deployments"] == []


def assert_routed(world, document: Any, body: bytes) -> None:
    before = executions(world)
    outcome = drop_and_route(world, body)
    if outcome["refused"]:
        assert_refused_and_nothing_started(world, outcome, before)
        return
    # Accepted: it is valid, and each deployment started once with a pinned image of its config's repository.
    assert manifest.schema_problems(document) == []
    assert executions(world) == before + len(document["deployments"])
    for started in outcome["started"]:
        assert started["duplicate"] is False


SERVICES = st.sampled_from(["web", "web", "api", "legacy", "checkout", "../../etc/passwd", "web\n"])
CONTAINERS = st.sampled_from(["app", "app", "nginx", "worker", "../x"])
IMAGES = st.sampled_from(
    [
        "web:v2",
        "web:v1",
        "nginx:1.27",
        "api:v3",
        "web:v9",
        "web",
        "web:v2\n",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v2",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v 2",
        "docker.io/library/web:v2",
        "../../etc/passwd",
    ]
)
RELEASES = st.builds(
    lambda deployments, extra: {"version": 1, "deployments": deployments, **extra},
    st.lists(
        st.fixed_dictionaries(
            {"service": SERVICES, "images": st.dictionaries(CONTAINERS, IMAGES, min_size=1, max_size=2)},
            optional={
                "migrate": st.booleans(),
                "values": from_schema(MANIFEST_SCHEMA["properties"]["deployments"]["items"]["properties"]["values"]),
            },
        ),
        min_size=1,
        max_size=3,
    ),
    st.fixed_dictionaries(
        {}, optional={"reason": st.text(max_size=50), "commit": from_schema(MANIFEST_SCHEMA["properties"]["commit"])}
    ),
)
DEPLOYABLE = st.builds(
    lambda deployments, extra: {"version": 1, "deployments": deployments, **extra},
    st.lists(
        st.sampled_from(
            [
                {"service": "web", "images": {"app": "web:v2"}},
                {
                    "service": "web",
                    "images": {"app": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v1", "nginx": "nginx:1.27"},
                    "migrate": False,
                    "values": {"RELEASE": "7"},
                },
                {"service": "api", "images": {"app": "api:v3"}},
            ]
        ),
        min_size=1,
        max_size=2,
        unique_by=lambda d: d["service"],
    ),
    st.fixed_dictionaries(
        {}, optional={"reason": st.text(max_size=50), "commit": from_schema(MANIFEST_SCHEMA["properties"]["commit"])}
    ),
)
MANIFESTS = st.one_of(from_schema(MANIFEST_SCHEMA), RELEASES, DEPLOYABLE)


@FAST
@given(document=MANIFESTS)
def test_manifests_generated_from_the_schema_deploy_all_or_start_nothing(release_world, document):
    assert_routed(release_world, document, json.dumps(document).encode())


@FAST
@given(document=mutated(st.one_of(RELEASES, DEPLOYABLE)))
def test_mutated_manifests_are_refused_with_a_path_and_start_nothing(release_world, document):
    assert_routed(release_world, document, json.dumps(document).encode())


@st.composite
def broken_bytes(draw) -> bytes:
    text = json.dumps(draw(st.one_of(RELEASES, DEPLOYABLE)))
    change = draw(st.sampled_from(["cut", "insert", "latin1", "bom", "nan", "duplicate", "deep", "garbage"]))
    if change == "cut":
        return text[: draw(st.integers(0, len(text) - 1))].encode()
    if change == "insert":
        at = draw(st.integers(0, len(text)))
        return (
            text[:at] + draw(st.sampled_from([",", "}", "]", '"', ":", "\\", "\x00", "[" * 2000])) + text[at:]
        ).encode()
    if change == "latin1":
        return text.replace('"version"', '"versión"').encode("latin-1")
    if change == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if change == "nan":
        return text.replace('"version": 1', '"version": NaN').encode()
    if change == "duplicate":
        return text.replace('"deployments": [{', '"deployments": [{"service": "web", ', 1).encode()
    if change == "deep":
        levels = draw(st.integers(validation.MAX_DEPTH, 50_000))
        return text.replace('"version": 1', '"version": ' + "[" * levels + "1" + "]" * levels).encode()
    return draw(st.binary(max_size=100))


@FAST
@given(body=broken_bytes())
def test_broken_manifest_bytes_are_refused_or_valid_and_never_crash_the_router(release_world, body):
    def strict(pairs):
        assert len({k for k, _ in pairs}) == len(pairs), "a key written twice"
        return dict(pairs)

    try:
        document = json.loads(body.decode("utf-8-sig"), object_pairs_hook=strict)
    except (ValueError, RecursionError, AssertionError):  # not JSON, too deep for json, or a key twice: refused
        document = None
    before = executions(release_world)
    outcome = drop_and_route(release_world, body)
    if document is None or not outcome["started"]:
        assert_refused_and_nothing_started(release_world, outcome, before)
    else:
        assert manifest.schema_problems(document) == []
        assert executions(release_world) == before + len(document["deployments"])


def _refused(world, body: bytes) -> dict[str, str]:
    before = executions(world)
    outcome = drop_and_route(world, body)
    assert_refused_and_nothing_started(world, outcome, before)
    return dict(p.split(": ", 1) for p in outcome["refused"])


@pytest.mark.parametrize(
    "body, path, words",
    [
        (
            b'{"version": 1, "version": 1, "deployments": [{"service": "web", "images": {"app": "web:v2"}}]}',
            "$",
            "key 'version' is written twice: keep one",
        ),
        (
            b'{"version": 1, "deployments": [{"service": "web", "service": "api", "images": {"app": "web:v2"}}]}',
            "$.deployments[0]",
            "key 'service' is written twice",
        ),
        (
            b'{"version": 1, "deployments": [{"service": "web", "images": {"app": "web:v1", "app": "web:v2"}}]}',
            "$.deployments[0].images",
            "key 'app' is written twice",
        ),
    ],
)
def test_a_key_written_twice_in_a_manifest_is_refused_not_last_wins(release_world, body, path, words):
    assert words in _refused(release_world, body)[path]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": 1, "deployments": ' + b"[" * 900 + b"]" * 900 + b"}",
        b'{"version": 1, "reason": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}",
    ],
)
def test_a_deeply_nested_manifest_is_refused_and_starts_nothing(release_world, body):
    problems = _refused(release_world, body)
    assert any(f"nested more than {validation.MAX_DEPTH} levels deep" in m for m in problems.values())


@pytest.mark.parametrize(
    "service, path",
    [
        ("../../etc/passwd", "$.deployments[0].service"),
        ("web\n", "$.deployments[0].service"),
        ("web/../api", "$.deployments[0].service"),
    ],
)
def test_service_names_with_a_path_are_refused_by_the_manifest_schema(release_world, service, path):
    body = json.dumps({"version": 1, "deployments": [{"service": service, "images": {"app": "web:v2"}}]}).encode()
    assert "does not match" in _refused(release_world, body)[path]


@pytest.mark.parametrize(
    "image",
    [
        "web:v2\n",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v2\n",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:v 2",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/web:../../v2",
    ],
)
def test_image_references_with_a_newline_or_a_bad_tag_are_refused(release_world, image):
    body = json.dumps({"version": 1, "deployments": [{"service": "web", "images": {"app": image}}]}).encode()
    assert "is not" in _refused(release_world, body)["$.deployments[0].images.app"]


def test_a_10_mb_manifest_is_refused_without_being_read(release_world, monkeypatch):
    body = json.dumps(
        {"version": 1, "deployments": [{"service": "web", "images": {"app": "web:v2"}}], "reason": "x" * 10 * 2**20}
    ).encode()
    monkeypatch.setattr(manifest, "_decode", lambda body: pytest.fail("a manifest over the limit was parsed"))
    problems = _refused(release_world, body)
    assert f"the manifest is {len(body)} bytes, more than the 262144 bytes (256 KiB)" in problems["$"]


def test_a_valid_manifest_still_starts_one_execution_per_service(release_world):
    body = json.dumps(
        {
            "version": 1,
            "deployments": [
                {"service": "web", "images": {"app": "web:v2"}},
                {"service": "api", "images": {"app": "api:v3"}},
            ],
        }
    ).encode()
    outcome = drop_and_route(release_world, body)
    assert outcome["refused"] == [] and len(outcome["started"]) == 2 and executions(release_world) == 2


@pytest.mark.parametrize(
    "key, expected",
    [
        ("manifests/release\n.json", False),
        ("manifests/../../etc/passwd.json", False),
        ("manifests/%2e%2e.json", False),
        ("manifests/release-7.json", True),
    ],
)
def test_manifest_keys_with_a_newline_or_a_path_are_not_manifests(key, expected):
    assert manifest.is_manifest_key(key) is expected
