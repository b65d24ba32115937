"""render.yaml against Render's documented Blueprint fields, the README and the settings.

Render publishes the Blueprint schema (render.com/schema/render.yaml.json, also on
SchemaStore); the rules below are the parts of it this Blueprint uses, plus what makes
it work for Carmenta: every setting present, secrets prompted, migrations before serving.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from carmenta.api.routes import build_api
from carmenta.cli import COMMANDS
from carmenta.settings import PROJECT_ROOT, Settings

BLUEPRINT = PROJECT_ROOT / "render.yaml"

ROOT_FIELDS = {"services", "databases", "envVarGroups", "previews", "projects", "ungrouped"}
SERVICE_TYPES = {"web", "worker", "pserv", "cron", "keyvalue", "redis"}
RUNTIMES = {"docker", "image", "python", "node", "ruby", "go", "rust", "elixir", "static"}
SERVICE_FIELDS = {
    "type", "name", "runtime", "plan", "region", "repo", "branch", "rootDir",
    "buildCommand", "startCommand", "preDeployCommand", "dockerfilePath", "dockerContext",
    "dockerCommand", "registryCredential", "image", "healthCheckPath", "numInstances",
    "scaling", "maxShutdownDelaySeconds", "autoDeploy", "autoDeployTrigger", "buildFilter",
    "domains", "disk", "envVars", "previews", "schedule", "ipAllowList", "maxmemoryPolicy",
    "pullRequestPreviewsEnabled", "initialDeployHook",
}  # fmt: skip
DATABASE_FIELDS = {
    "name", "databaseName", "user", "plan", "region", "postgresMajorVersion", "ipAllowList",
    "readReplicas", "highAvailability", "diskSizeGB", "previewPlan", "previewDiskSizeGB",
}  # fmt: skip
DATABASE_PROPERTIES = {"connectionString", "host", "port", "user", "password", "database"}
# One source per entry (Blueprint spec, "Setting environment variables").
VALUE_SOURCES = ("value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup")
# An environment group holds plain values only: no references to other resources.
GROUP_SOURCES = ("value", "generateValue", "sync")


@pytest.fixture(scope="module")
def blueprint() -> dict:
    return yaml.safe_load(BLUEPRINT.read_text())


def _service(blueprint: dict, service_type: str) -> dict:
    [service] = [s for s in blueprint["services"] if s["type"] == service_type]
    return service


def _group_keys(blueprint: dict) -> set[str]:
    return {entry["key"] for group in blueprint["envVarGroups"] for entry in group["envVars"]}


def _source_of(entry: dict) -> str:
    sources = [name for name in VALUE_SOURCES if name in entry]
    assert len(sources) == 1, f"{entry} must have exactly one value source"
    return sources[0]


def _readme_variables() -> set[str]:
    """Every variable named in the README's Configuration section."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PORT|HOST)`", section))
    return names


def test_the_blueprint_uses_only_documented_fields(blueprint):
    assert set(blueprint) <= ROOT_FIELDS
    for service in blueprint["services"]:
        assert set(service) <= SERVICE_FIELDS, set(service) - SERVICE_FIELDS
        assert service["type"] in SERVICE_TYPES
        assert service["runtime"] in RUNTIMES
        assert re.fullmatch(r"[a-z0-9-]+", service["name"])
        assert isinstance(service.get("numInstances", 1), int)
    for database in blueprint["databases"]:
        assert set(database) <= DATABASE_FIELDS
        assert isinstance(database["postgresMajorVersion"], str)  # "17", not 17
    names = [s["name"] for s in blueprint["services"]] + [d["name"] for d in blueprint["databases"]]
    assert len(names) == len(set(names)), "resource names must be unique"


def test_every_environment_entry_has_one_source_and_references_exist(blueprint):
    groups = {group["name"] for group in blueprint["envVarGroups"]}
    databases = {database["name"] for database in blueprint["databases"]}
    for group in blueprint["envVarGroups"]:
        keys = [entry["key"] for entry in group["envVars"]]
        assert len(keys) == len(set(keys)), "a key appears twice in the group"
        for entry in group["envVars"]:
            assert _source_of(entry) in GROUP_SOURCES, entry
            if "value" in entry:
                assert isinstance(entry["value"], str), f"{entry['key']}: quote the value"
            if "sync" in entry:
                assert entry["sync"] is False
            if "generateValue" in entry:
                assert entry["generateValue"] is True
    for service in blueprint["services"]:
        for entry in service["envVars"]:
            source = _source_of(entry)
            if source == "fromGroup":
                assert set(entry) == {"fromGroup"}
                assert entry["fromGroup"] in groups
            elif source == "fromDatabase":
                assert entry["fromDatabase"]["name"] in databases
                assert entry["fromDatabase"]["property"] in DATABASE_PROPERTIES
            elif source == "value":
                assert isinstance(entry["value"], str)


def test_both_services_take_the_group_and_the_database(blueprint):
    group = blueprint["envVarGroups"][0]["name"]
    for service in blueprint["services"]:
        sources = {entry.get("fromGroup") for entry in service["envVars"]}
        assert group in sources, f"{service['name']} does not use the environment group"
        [database_url] = [e for e in service["envVars"] if e.get("key") == "DATABASE_URL"]
        assert database_url["fromDatabase"]["property"] == "connectionString"
        assert service["runtime"] == "docker"
        assert (PROJECT_ROOT / service["dockerfilePath"]).is_file()


def test_the_web_service_checks_health_keeps_its_disk_and_migrates_before_serving(blueprint):
    web = _service(blueprint, "web")
    assert web["healthCheckPath"] == "/health"
    assert "/health" in {route.path for route in build_api().routes}
    # Render mounts a disk only on a single instance; DATA_DIR must be that mount.
    assert web["disk"]["mountPath"].startswith("/")
    assert isinstance(web["disk"]["sizeGB"], int) and web["disk"]["sizeGB"] >= 1
    assert web.get("numInstances", 1) == 1
    data_dir = {e["key"]: e.get("value") for e in web["envVars"] if "key" in e}["DATA_DIR"]
    assert data_dir == web["disk"]["mountPath"]
    assert web["preDeployCommand"] == "python -m carmenta migrate"
    assert web["dockerCommand"] == "python -m carmenta run"
    job_worker = {e["key"]: e.get("value") for e in web["envVars"] if "key" in e}["JOB_WORKER"]
    assert job_worker == "external"


def test_the_worker_service_runs_the_job_worker(blueprint):
    worker = _service(blueprint, "worker")
    assert worker["dockerCommand"] == "python -m carmenta worker"
    assert "disk" not in worker


def test_commands_in_the_blueprint_are_commands_of_the_cli(blueprint):
    for service in blueprint["services"]:
        for field in ("preDeployCommand", "dockerCommand"):
            if field in service:
                words = shlex.split(service[field])
                assert words[:3] == ["python", "-m", "carmenta"]
                assert words[3] in COMMANDS


def test_every_variable_the_readme_lists_and_every_setting_is_in_the_blueprint(blueprint):
    listed = _group_keys(blueprint)
    for service in blueprint["services"]:
        listed |= {entry["key"] for entry in service["envVars"] if "key" in entry}
    readme = _readme_variables()
    assert {"DATABASE_URL", "ENCRYPTION_KEYS", "LOG_FORMAT", "METRICS_TOKEN"} <= readme
    assert readme - listed == set()
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - listed == set()


def test_secrets_are_prompted_or_generated_never_written_in_the_file(blueprint):
    secret = re.compile(r"SECRET|_KEY$|_KEYS$|_TOKEN$|PASSWORD")
    for group in blueprint["envVarGroups"]:
        for entry in group["envVars"]:
            if secret.search(entry["key"]):
                assert "value" not in entry, f"{entry['key']} must not be committed"


def test_the_group_values_are_a_valid_production_configuration(blueprint, monkeypatch):
    """The group's values parse, and production asks only for what Render prompts."""
    web = _service(blueprint, "web")
    values = {}
    for entry in blueprint["envVarGroups"][0]["envVars"] + web["envVars"]:
        if "value" in entry:
            values[entry["key"]] = entry["value"]
    values["DATABASE_URL"] = "postgresql://carmenta:pw@db.internal:5432/carmenta"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.is_production and settings.log_format.value == "json"
    assert str(settings.data_dir) == web["disk"]["mountPath"]
    prompted = {e["key"] for e in blueprint["envVarGroups"][0]["envVars"] if "sync" in e}
    problems = " ".join(settings.production_problems())
    for variable in re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", problems):
        assert variable in prompted, f"production needs {variable}, which nobody is asked for"


def test_the_dockerfile_and_blueprint_agree_on_the_data_directory(blueprint):
    dockerfile = Path(PROJECT_ROOT / "Dockerfile").read_text()
    mount = _service(blueprint, "web")["disk"]["mountPath"]
    assert f"DATA_DIR={mount}" in dockerfile
