"""A failed task's log tail: masked (ferry.text.mask), written to the artefacts bucket, named by the Cause.

The property tests plant a seeded secret in each form a log writes credentials in and check it never survives
masking. Every secret has a digit and the text around it has none, so the secret is in the output only when it
was not masked (MASK itself has no digit).
"""

from __future__ import annotations

import base64
import json
import string
from datetime import datetime, timezone

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry import aws as ferry_aws
from ferry.aws import container_logs
from ferry.text import MASK, fingerprint, looks_secret, mask

FAST = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a secret may hold: anything printable but whitespace, quotes, backslashes and the mask's own `*`.
SECRET_CHARS = string.ascii_letters + string.digits + "!#$%&()+,-./:;<=>?@[]^_{|}~"
WORDS = ["PASS", "password", "Passwd", "PWD", "SECRET", "client_secret", "Token", "KEY", "apiKey", "credential", "Auth"]


def _mixed_case(draw, text: str) -> str:
    return "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in text)


@st.composite
def secrets(draw, chars: str = SECRET_CHARS, min_size: int = 8) -> str:
    """A secret with at least one digit (the text around it has none)."""
    before = draw(st.text(chars, max_size=20))
    after = draw(st.text(chars, max_size=20))
    secret = before + draw(st.sampled_from(string.digits)) + after
    return secret + "7" * max(0, min_size - len(secret))


@st.composite
def secret_names(draw) -> str:
    """A variable name that says its value is a credential: DB_PASSWORD, x_api_Key_id, mysql_pwd."""
    prefix = draw(st.from_regex(r"[A-Za-z_]{0,6}", fullmatch=True))
    suffix = draw(st.from_regex(r"[A-Za-z_]{0,6}", fullmatch=True))
    return prefix + _mixed_case(draw, draw(st.sampled_from(WORDS))) + suffix


def _no_digits(text: str) -> None:
    assert not any(c.isdigit() for c in text), text


@FAST
@given(
    secret=secrets(),
    user=st.from_regex(r"[a-z_]{0,8}", fullmatch=True),
    scheme=st.sampled_from(["postgres", "postgresql", "mysql", "redis", "rediss", "mongodb+srv", "amqp", "https"]),
)
def test_a_password_in_a_dsn_never_survives(secret, user, scheme):
    for line in (
        f"DATABASE_URL={scheme}://{user}:{secret}@db.internal/shop",
        f"connecting to {scheme}://{user}:{secret}@db.internal/shop?sslmode=require",
        f'{{"url": "{scheme}://{user}:{secret}@db.internal"}}',
    ):
        masked = mask(line)
        assert secret not in masked, (line, masked)
    assert mask(f"{scheme}://{user}:{secret}@db.internal/shop") == f"{scheme}://{user}:{MASK}@db.internal/shop"


@FAST
@given(name=secret_names(), secret=secrets())
def test_a_secret_named_variable_never_survives_in_any_form(name, secret):
    forms = [
        f"{name}={secret}",
        f"export {name} = {secret}",
        f"{name}: {secret}",
        f"{name}:\t{secret} and more",
        f"{{{json.dumps(name)}: {json.dumps(secret)}, {json.dumps('user')}: {json.dumps('app')}}}",
        f"{{'{name}': '{secret}'}}",
        json.dumps(json.dumps({name: secret, "user": "app"})),  # JSON logged inside a JSON string
        f"settings {name}={secret}&page=two",
    ]
    if not secret.startswith("-"):
        forms.append(f"exec app --{name.lower().strip('_') or 'pass'} {secret} --verbose")
    for line in forms:
        masked = mask(line)
        assert secret not in masked, (line, masked)
        assert MASK in masked


@FAST
@given(
    token=secrets(string.ascii_letters + string.digits + "-._~+/", min_size=8),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Digest"]),
)
def test_an_authorization_header_never_survives(token, scheme):
    for line in (
        f"Authorization: {scheme} {token}",
        f"curl -H 'authorization: {scheme} {token}' https://api.internal/v",
        f'{{"Authorization": "{scheme} {token}"}}',
        f"proxy-authorization: {scheme} {token}",
        f"retrying with Bearer {token}",
    ):
        masked = mask(line)
        assert token not in masked, (line, masked)
    assert mask(f"Authorization: {scheme} {token}") == f"Authorization: {scheme} {MASK}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@FAST
@given(
    claims=st.dictionaries(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.text(SECRET_CHARS, max_size=12), max_size=4
    ),
    signature=st.binary(min_size=16, max_size=64),
)
def test_a_json_web_token_never_survives(claims, signature):
    parts = [_b64url(b'{"alg":"HS256","typ":"JWT"}'), _b64url(json.dumps(claims).encode()), _b64url(signature)]
    jwt = ".".join(parts)
    for line in (f"token {jwt}", f"session={jwt}; Path=/", f'{{"id_token": "{jwt}"}}', jwt):
        masked = mask(line)
        assert jwt not in masked, masked
        assert all(part not in masked for part in parts if len(part) >= 8), masked


@FAST
@given(
    prefix=st.sampled_from(["AKIA", "ASIA"]),
    key_id=st.from_regex(r"[A-Z0-9]{16}", fullmatch=True),
    secret_key=st.from_regex(r"[A-Za-z0-9/+]{40}", fullmatch=True).filter(
        lambda k: any(c.isupper() for c in k) and any(c.islower() for c in k)
    ),
)
def test_aws_keys_never_survive(prefix, key_id, secret_key):
    for line in (
        f"using {prefix}{key_id}",
        f"aws_access_key_id={prefix}{key_id}",
        f"aws_secret_access_key = {secret_key}",
        f'{{"SecretAccessKey": "{secret_key}"}}',
        secret_key,  # alone on a line
        f"credentials: {prefix}{key_id} {secret_key}",
    ):
        masked = mask(line)
        assert key_id not in masked and secret_key not in masked, (line, masked)


@FAST
@given(
    secret=st.text(SECRET_CHARS + " '\"\\", min_size=6, max_size=30).filter(lambda s: s.strip() == s and "*" not in s),
    before=st.text(string.ascii_letters + " :=,", max_size=20),
    after=st.text(string.ascii_letters + " :=,", max_size=20),
)
def test_a_known_value_never_survives_anywhere(secret, before, after):
    line = f"{before}{secret}{after} then {secret}"
    for masked in (mask(line, known=[secret]), mask(line, fingerprints=[fingerprint(secret)])):
        assert secret not in masked, (line, masked)


def test_a_private_key_is_masked_whole():
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabcdEFGH1234\n-----END RSA PRIVATE KEY-----"
    assert mask(f"loaded key:\n{key}\ndone") == f"loaded key:\n{MASK}\ndone"


@pytest.mark.parametrize(
    "line",
    [
        'PG::DuplicateTable: ERROR: relation "index_orders_on_user_id" already exists',
        "boot: missing REDIS_URL",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/web/db-AbCdEf",
        "User is not authorized to perform: secretsmanager:GetSecretValue on resource: prod/web/db",
        "deployed commit 0123456789abcdef0123456789abcdef01234567",
        "image web@sha256:1f0c2a9e4b5d6c7e8f90123456789abcdef0123456789abcdef0123456789abcd",
        "s3://ferry-artefacts/executions/web-v2-3f9c/logs/9247d91f9d224731.txt",
        "GET /health 200 3ms",
        "== 20261122 AddIndexToOrders: migrating",
        "ssh://git@github.com/acme/web.git",
    ],
)
def test_what_is_not_a_credential_is_left_as_it_is(line):
    assert mask(line) == line


def test_secret_names():
    names = ["DB_PASSWORD", "PGPASS", "MYSQL_PWD", "apiKey", "X-Auth-Token", "client_secret", "GCP_CREDENTIALS"]
    assert all(looks_secret(n) for n in names)
    assert not any(looks_secret(n) for n in ["RAILS_ENV", "PORT", "LOG_LEVEL", "PUBLIC_URL", "FEATURE_FLAG"])


# ------------------------------------------------------------------ the tail, kept

TASK = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef"
BARE = "Zq8-plain-token-value"  # an environment value of API_TOKEN, logged bare
LINES = [
    "booting",
    "DATABASE_URL=postgres://app:pg-Secret-1@db.internal/shop",
    "DB_PASS=hunter22",
    "Authorization: Bearer tok-4242-abcd",
    f"token is {BARE}",
    "-----BEGIN PRIVATE KEY-----",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "-----END PRIVATE KEY-----",
    "boot: missing REDIS_URL",
]
SECRETS = ["pg-Secret-1", "hunter22", "tok-4242-abcd", BARE, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]


@pytest.fixture
def logged(aws):
    """Task definition web with container app (awslogs, API_TOKEN in its environment), its task's log stream."""
    boto3.client("ecs").register_task_definition(
        family="web",
        containerDefinitions=[
            {
                "name": "app",
                "image": "web:v2",
                "memory": 128,
                "environment": [{"name": "API_TOKEN", "value": BARE}, {"name": "RAILS_ENV", "value": "production"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/web",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "web",
                    },
                },
            }
        ],
    )
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/ecs/web")
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="web/app/0123456789abcdef")
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(
        logGroupName="/ecs/web",
        logStreamName="web/app/0123456789abcdef",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(LINES)],
    )
    boto3.client("s3").create_bucket(Bucket="ferry-artefacts")
    return container_logs.config("web:1", "app")


def test_the_config_names_secret_values_by_fingerprint_only(logged):
    assert logged["group"] == "/ecs/web" and logged["mask"] == [fingerprint(BARE)]
    assert BARE not in json.dumps(logged) and "production" not in json.dumps(logged)


def test_the_tail_is_kept_masked_in_the_artefacts_bucket_and_the_sentence_names_it(logged):
    kept = container_logs.keep(logged, "app", TASK, "web-v2-abc", bucket="ferry-artefacts")
    key = "executions/web-v2-abc/logs/0123456789abcdef.txt"
    assert kept.artefact == f"s3://ferry-artefacts/{key}"
    # The private key's three lines are masked as one: the tail has 7 lines.
    assert kept.sentence == (
        f"Its last 7 log lines, masked: s3://ferry-artefacts/{key} "
        "(from CloudWatch Logs /ecs/web web/app/0123456789abcdef)."
    )
    body = ferry_aws.client("s3").get_object(Bucket="ferry-artefacts", Key=key)["Body"].read().decode()
    assert body.splitlines()[:2] == [
        f"# the last 7 log lines of container app of task {TASK}, masked",
        "# from CloudWatch Logs /ecs/web web/app/0123456789abcdef",
    ]
    assert body.splitlines()[2:] == [
        "booting",
        "DATABASE_URL=postgres://app:***@db.internal/shop",
        "DB_PASS=***",
        "Authorization: Bearer ***",
        "token is ***",
        "***",
        "boot: missing REDIS_URL",
    ]
    assert "boot: missing REDIS_URL" in body and "DB_PASS=***" in body and f"token is {MASK}" in body
    assert "postgres://app:***@db.internal/shop" in body and "Authorization: Bearer ***" in body
    assert not [s for s in SECRETS if s in body]
    assert not [line for line in LINES if line in kept.sentence]


def test_without_an_execution_nothing_is_written_and_the_log_stream_is_named(logged):
    kept = container_logs.keep(logged, "app", TASK, None, bucket="ferry-artefacts")
    assert kept.artefact is None
    assert kept.sentence == "Its last 7 log lines are in CloudWatch Logs /ecs/web web/app/0123456789abcdef."
    assert ferry_aws.client("s3").list_objects_v2(Bucket="ferry-artefacts").get("KeyCount") == 0


def test_a_tail_that_cannot_be_written_is_named_where_it_is(logged):
    kept = container_logs.keep(logged, "app", TASK, "web-v2-abc", bucket="no-such-bucket")
    assert kept.artefact is None and kept.not_copied == "NoSuchBucket"
    assert kept.sentence.endswith("web/app/0123456789abcdef (not copied to the artefacts bucket: NoSuchBucket).")


def test_a_container_without_logs_says_so(aws):
    kept = container_logs.keep(None, "app", TASK, "web-v2-abc", bucket="ferry-artefacts")
    assert kept.sentence == "No log lines: the container does not log to CloudWatch (awslogs)."


# ------------------------------------------------------------------ values a validation error would quote


def test_a_jsonnet_configs_schema_errors_name_the_path_not_a_parameters_value(aws):
    from ferry import config
    from ferry.errors import ConfigInvalid

    value = "s3cr3t value from ssm"
    boto3.client("ssm").put_parameter(Name="/prod/web/service", Value=value, Type="String")
    text = "{ cluster: 'prod', service: std.native('ssm')('/prod/web/service'), containers: { app: {} } }"
    with pytest.raises(ConfigInvalid) as refused:
        config.parse("web", text, "services/web/ferry.jsonnet")
    assert "$.service: the value (a string, not shown) does not match" in str(refused.value)
    assert value not in str(refused.value)
    # A YAML config's values are the writer's own: its errors still quote them, to say what to fix.
    with pytest.raises(ConfigInvalid, match=r"\$\.service: 'not a name!' does not match"):
        config.parse("web", "cluster: prod\nservice: 'not a name!'\ncontainers: {app: {}}\n", "ferry.yaml")


def test_the_register_shape_check_names_the_parameter_and_its_type_never_its_value():
    from ferry import taskdef

    spec = {
        "family": "web",
        "containerDefinitions": [
            {"name": "app", "image": "web:v2", "cpu": "cpu-s3cr3t-4711", "memory": -5, "environment": [{"value": 7}]}
        ],
    }
    found = taskdef.problems(spec)
    assert "Invalid type for parameter containerDefinitions[0].cpu: str, valid types: <class 'int'>" in found
    assert (
        "Invalid type for parameter containerDefinitions[0].environment[0].value: int, valid types: <class 'str'>"
        in (found)
    )
    assert "cpu-s3cr3t-4711" not in json.dumps(found)
