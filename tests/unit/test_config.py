import boto3
import pytest

from ferry import config
from ferry.errors import ClusterNotAllowed, ConfigInvalid, ServiceNotRegistered

from .conftest import put_config

GOOD = """
cluster: prod
service: web
containers:
  app: {repository: web}
  worker: {repository: web}
triggers:
  - repository: web
    tags: ["main-*"]
"""


def test_a_valid_config_gets_defaults_and_maps_repositories(ecs_world):
    put_config("web", GOOD)
    cfg = config.load("ferry-config", "web")
    assert (cfg.cluster, cfg.service, cfg.key) == ("prod", "web", "prod/web")
    assert cfg.containers_fed_by("web") == ["app", "worker"]
    assert cfg.strategy == "canary" and cfg.deployment_timeout == 1800
    assert cfg.deploys_push("web", "main-123")
    assert not cfg.deploys_push("web", "pr-7")
    assert not cfg.deploys_push("other", "main-1")


def test_without_triggers_every_tag_of_every_container_repository_deploys(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    assert config.load("ferry-config", "web").deploys_push("web", "anything")


def test_json_configs_are_read_too(ecs_world):
    put_config(
        "api", '{"cluster": "prod", "service": "api", "containers": {"app": {"repository": "api"}}}', "ferry.json"
    )
    assert config.load("ferry-config", "api").service == "api"


def test_every_schema_violation_is_listed_with_its_path(ecs_world):
    put_config("web", "cluster: prod\ncontainers: {app: {repo: web}}\nstrategy: {type: sideways}\nextra: 1\n")
    with pytest.raises(ConfigInvalid) as err:
        config.load("ferry-config", "web")
    message = str(err.value)
    assert "s3://ferry-config/services/web/ferry.yaml" in message
    assert "$: 'service' is a required property: add it" in message
    assert "$.containers.app: 'repository' is a required property" in message
    assert "$.strategy.type: 'sideways' is not one of ['canary', 'rolling', 'native']" in message
    assert "Additional properties are not allowed ('extra' was unexpected)" in message


def test_a_trigger_for_a_repository_that_feeds_no_container_is_refused(ecs_world):
    put_config(
        "web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\ntriggers: [{repository: api}]\n"
    )
    with pytest.raises(ConfigInvalid, match=r"\$.triggers\[0\].repository: 'api' feeds no container"):
        config.load("ferry-config", "web")


def test_broken_yaml_names_the_file(ecs_world):
    put_config("web", "cluster: [prod\n")
    with pytest.raises(ConfigInvalid, match="services/web/ferry.yaml is not valid YAML"):
        config.load("ferry-config", "web")


@pytest.mark.parametrize("name", ["", "../web", "a/b", ".hidden"])
def test_names_that_are_not_registry_folders_are_refused(ecs_world, name):
    with pytest.raises(ServiceNotRegistered):
        config.load("ferry-config", name)


def test_an_unregistered_service_says_where_the_config_goes(ecs_world):
    with pytest.raises(ServiceNotRegistered, match="add services/api/ferry.yaml to s3://ferry-config"):
        config.load("ferry-config", "api")


def test_load_all_reports_broken_configs_and_keeps_the_good_ones(ecs_world):
    put_config("web", GOOD)
    put_config("bad", "cluster: prod\n")
    configs, broken = config.load_all("ferry-config")
    assert [c.name for c in configs] == ["web"]
    assert len(broken) == 1 and "services/bad/ferry.yaml" in broken[0]


def test_clusters_outside_the_installation_are_refused(ecs_world):
    put_config("web", GOOD)
    cfg = config.load("ferry-config", "web")
    config.check_cluster(cfg, ("prod",))
    with pytest.raises(ClusterNotAllowed, match="add it to the stack's Clusters parameter"):
        config.check_cluster(cfg, ("staging",))


def test_every_setting_gets_its_schema_default_at_any_depth(ecs_world):
    put_config(
        "web",
        GOOD
        + "strategy: {canary: {count: 2}}\nmigrations: [{name: migrate, container: app, command: [rails, db:migrate]}]\n",
    )
    cfg = config.load("ferry-config", "web")
    assert cfg.raw["strategy"] == {
        "type": "canary",
        "canary": {"count": 2, "healthyForSeconds": 60, "unhealthyThreshold": 3},
    }
    assert cfg.timeouts == {"canary": 600, "deployment": 1800, "rollback": 1800}
    assert cfg.raw["healthGates"] == {"bakeSeconds": 0}
    assert cfg.raw["notifications"]["events"] == ["started", "succeeded", "failed", "rolledBack"]
    assert cfg.raw["rollback"] == {"keepFailedRevisions": 0} and cfg.read_secret_values is False
    [migration] = cfg.migrations
    assert (migration.name, migration.container, migration.command, migration.timeout) == (
        "migrate",
        "app",
        ("rails", "db:migrate"),
        900,
    )
    assert cfg.template is None and cfg.values == {}


def test_every_strategy_is_accepted_and_canary_is_the_default(ecs_world):
    put_config("web", GOOD)
    assert config.load("ferry-config", "web").strategy == "canary"
    for strategy in ("canary", "rolling", "native"):
        put_config("web", GOOD + f"strategy: {{type: {strategy}}}\n")
        assert config.load("ferry-config", "web").strategy == strategy


def test_migration_names_must_be_unique(ecs_world):
    put_config(
        "web", GOOD + "migrations: [{name: m, container: app, command: [a]}, {name: m, container: app, command: [b]}]\n"
    )
    with pytest.raises(ConfigInvalid, match=r"\$.migrations\[1\].name: 'm' is used twice"):
        config.load("ferry-config", "web")


def test_a_template_source_names_a_file_beside_the_config(ecs_world):
    put_config("web", GOOD + "taskDefinition: {template: task-definition.json}\nvalues: {LOG_LEVEL: info}\n")
    put_config("web", '{"family": "web"}', "task-definition.json")
    cfg = config.load("ferry-config", "web")
    assert cfg.template == "task-definition.json" and cfg.values == {"LOG_LEVEL": "info"}
    assert cfg.read_file("task-definition.json") == (
        '{"family": "web"}',
        "s3://ferry-config/services/web/task-definition.json",
    )
    with pytest.raises(ConfigInvalid, match="services/web/other.json does not exist"):
        cfg.read_file("other.json")


@pytest.mark.parametrize("template", ["../etc/passwd.json", "a/b.json", "task.txt"])
def test_template_names_cannot_leave_the_config_folder(ecs_world, template):
    put_config("web", GOOD + f"taskDefinition: {{template: '{template}'}}\n")
    with pytest.raises(ConfigInvalid, match=r"\$.taskDefinition"):
        config.load("ferry-config", "web")


def test_a_jsonnet_config_with_an_import_and_native_functions(ecs_world):
    put_config("web", "{ cluster: 'prod', service: 'web' }", "base.libsonnet")
    put_config(
        "web",
        """
local base = import 'base.libsonnet';
base + {
  containers: { app: { repository: 'web' } },
  values: { ENV: std.native('environment')() },
}
""",
        "ferry.jsonnet",
    )
    cfg = config.load("ferry-config", "web", environment="prod")
    assert (cfg.cluster, cfg.service, cfg.values) == ("prod", "web", {"ENV": "prod"})
    assert config.registered_names("ferry-config") == ["web"]


def test_a_local_folder_loads_like_the_registry(tmp_path):
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "ferry.yaml").write_text(GOOD)
    cfg = config.load_local(folder)
    assert cfg.name == "web" and cfg.containers == {"app": "web", "worker": "web"}
    with pytest.raises(ServiceNotRegistered, match="point --config-dir at a service's config folder"):
        config.load_local(tmp_path)


def test_an_empty_trigger_list_means_no_push_deploys_the_service(ecs_world):
    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\ntriggers: []\n")
    assert not config.load("ferry-config", "web").deploys_push("web", "v2")


@pytest.mark.parametrize("code, status", [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)])
def test_a_config_s3_cannot_read_now_is_an_error_to_retry_not_a_broken_config(ecs_world, monkeypatch, code, status):
    """The router must not skip a config as broken (and drop the push) because S3 did not answer: the error goes
    up, so Lambda redelivers the push event; an object S3 refuses for good is still a broken config."""
    from botocore.exceptions import ClientError

    put_config("web", "cluster: prod\nservice: web\ncontainers: {app: {repository: web}}\n")
    s3 = boto3.client("s3")

    def unavailable(**kwargs):
        raise ClientError(
            {"Error": {"Code": code, "Message": "try again"}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "GetObject",
        )

    monkeypatch.setattr(s3, "get_object", unavailable)
    monkeypatch.setattr("ferry.aws.client", lambda service: s3 if service == "s3" else boto3.client(service))
    with pytest.raises(ClientError, match=code):
        config.load_all("ferry-config")
    with pytest.raises(ClientError, match=code):
        config.load("ferry-config", "web")
