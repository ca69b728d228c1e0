"""``hpcjobs site schema`` and the published site configs.

No JSON-Schema library is a dependency, so a small validator for the subset pydantic emits
(type, properties, required, additionalProperties, $ref, anyOf, enum, minimum, exclusiveMinimum,
minLength, minProperties, pattern, items, propertyNames) checks every file in site-configs/
against the schema, and the bad-config corpus shows that the schema rejects what the models reject
(where a JSON Schema can say so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import Field

from hpcjobs.cli_site import site
from hpcjobs.config import SiteConfig, load_site
from hpcjobs.config.loader import load_site_text
from hpcjobs.errors import ConfigError
from hpcjobs.models import StrictModel
from hpcjobs.plugins import hookimpl, plugin_manager
from hpcjobs.site.schema import site_schema

REPO = Path(__file__).resolve().parents[2]
SITE_CONFIGS = sorted((REPO / "site-configs").glob("*.yaml"))
BAD = Path(__file__).parent / "bad_configs"


def schema_errors(
    instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = ""
) -> Iterator[str]:
    """Yield 'path: problem' for each place ``instance`` breaks ``schema`` (the pydantic subset)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        yield from schema_errors(instance, root["$defs"][name], root, path)
        return
    if "anyOf" in schema:
        if not any(not list(schema_errors(instance, alt, root, path)) for alt in schema["anyOf"]):
            yield f"{path}: matches no alternative"
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if not any(checks[k](instance) for k in kinds):
            yield f"{path}: not {kinds}"
            return
    if "enum" in schema and instance not in schema["enum"]:
        yield f"{path}: not one of {schema['enum']}"
    if "minimum" in schema and instance < schema["minimum"]:
        yield f"{path}: below minimum"
    if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
        yield f"{path}: not above exclusiveMinimum"
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            yield f"{path}: too short"
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            yield f"{path}: does not match {schema['pattern']}"
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            yield from schema_errors(item, schema["items"], root, f"{path}.{i}")
    if isinstance(instance, dict):
        if len(instance) < schema.get("minProperties", 0):
            yield f"{path}: too few properties"
        for key in schema.get("required", []):
            if key not in instance:
                yield f"{path}.{key}: required"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            where = f"{path}.{key}" if path else str(key)
            if "propertyNames" in schema:
                yield from schema_errors(key, schema["propertyNames"], root, where)
            if key in props:
                yield from schema_errors(value, props[key], root, where)
            elif extra is False:
                yield f"{where}: unknown key"
            elif isinstance(extra, dict):
                yield from schema_errors(value, extra, root, where)


@pytest.fixture
def accounting_plugin() -> Iterator[type[StrictModel]]:
    class Accounting(StrictModel):
        """Where the accounting plugin reports usage."""

        endpoint: str = Field(description="URL of the accounting service.")
        retries: int = Field(3, ge=0)

    class Plugin:
        @hookimpl
        def hpcjobs_site_sections(self) -> dict[str, type[StrictModel]]:
            return {"accounting": Accounting}

    pm = plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="test-accounting")
    try:
        yield Accounting
    finally:
        pm.unregister(plugin)


def test_schema_top_level_matches_the_model() -> None:
    schema = site_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == set(SiteConfig.model_fields)
    assert set(schema["required"]) == {k for k, f in SiteConfig.model_fields.items() if f.is_required()}
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if "properties" in definition:
            assert definition["additionalProperties"] is False, name


@pytest.mark.parametrize("path", SITE_CONFIGS, ids=[p.stem for p in SITE_CONFIGS])
def test_site_configs_validate_against_schema_and_models(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert list(schema_errors(data, site_schema())) == []
    cfg = load_site(path)  # the models: the authority
    assert cfg.default_partition in cfg.partitions


def test_expected_site_configs_exist() -> None:
    assert {p.stem for p in SITE_CONFIGS} >= {"dev-cluster", "generic-cpu-gpu", "a100-pmix"}


# bad configs that a JSON Schema can reject too (cross-key rules and YAML errors it cannot see)
SCHEMA_CAN_SEE = [
    "unknown_top_key", "unknown_partition_key", "unknown_limits_key", "unknown_gpu_key", "unknown_runtime_key",
    "unknown_mpi_key", "unknown_images_key", "unknown_policy_key", "unknown_bind_key", "partitions_is_a_list",
    "limit_not_a_number", "binds_not_a_list", "env_not_a_mapping", "cleanenv_not_a_bool", "negative_limits",
    "bind_relative_destination", "bad_gpu_flag", "bad_gpu_request", "bad_mpi_default", "bad_convert_on",
    "missing_required", "no_partitions", "partition_is_null", "bad_env_name",
]  # fmt: skip


@pytest.mark.parametrize("name", SCHEMA_CAN_SEE)
def test_schema_rejects_bad_configs(name: str) -> None:
    data = yaml.safe_load((BAD / f"{name}.yaml").read_text())
    assert list(schema_errors(data, site_schema())), name


def test_bind_string_and_object_forms_are_in_the_schema() -> None:
    schema = site_schema()
    settings = schema["$defs"]["Settings"]
    bind = {"binds": ["/tmp", "/a:/b", "/a:/b:ro", {"src": "/x", "dst": "/y", "mode": "ro"}, {"src": "/z"}]}
    assert list(schema_errors(bind, settings, schema)) == []
    for bad in ({"dst": "/y"}, "/a:b", "/a:ro", "/a,b", "/a:/b:rx"):
        assert list(schema_errors({"binds": [bad]}, settings, schema)), bad
    # the models agree on each of these
    from hpcjobs.models import Bind

    for text in ("/a:b", "/a:ro", "/a,b", "/a:/b:rx"):
        with pytest.raises(ValueError):
            Bind.model_validate(text)


def test_plugin_sections_in_schema_and_validation(accounting_plugin: type[StrictModel]) -> None:
    schema = site_schema()
    plugins = schema["$defs"][schema["properties"]["plugins"]["$ref"].rsplit("/", 1)[-1]]
    assert set(plugins["properties"]) == {"accounting"}
    assert plugins["additionalProperties"] is False
    base = "name: t\ndefault_partition: cpu\npartitions: {cpu: {}}\n"
    good = base + "plugins:\n  accounting: {endpoint: 'https://acct.example.org'}\n"
    assert list(schema_errors(yaml.safe_load(good), schema)) == []
    cfg = load_site_text(good, "s.yaml")
    settings = cfg.plugin_settings("accounting", accounting_plugin)
    assert settings.endpoint == "https://acct.example.org" and settings.retries == 3  # type: ignore[attr-defined]

    bad = base + "plugins:\n  accounting: {endpoint: e, retries: -1, extra: 1}\n  other: {}\n"
    with pytest.raises(ConfigError) as info:
        load_site_text(bad, "s.yaml")
    assert info.value.problems == [
        "plugins.accounting.retries: expected an integer >= 0, got -1",
        "plugins.accounting.extra: unknown key (valid keys: endpoint, retries)",
        "plugins.other: no installed plugin reads this section (installed sections: accounting)",
    ]
    assert list(schema_errors(yaml.safe_load(bad), schema))


def test_schema_command_prints_json(accounting_plugin: type[StrictModel]) -> None:
    result = CliRunner().invoke(site, ["schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(json.dumps(site_schema()))
    assert "accounting" in json.dumps(printed["$defs"])


def test_a_broken_plugin_section_is_one_line() -> None:
    class Broken:
        @hookimpl
        def hpcjobs_site_sections(self) -> dict[str, object]:
            return {"broken": "not a model"}

    pm = plugin_manager()
    plugin = Broken()
    pm.register(plugin, name="test-broken")
    try:
        result = CliRunner().invoke(site, ["schema"])
    finally:
        pm.unregister(plugin)
    assert result.exit_code == 2
    assert result.stderr == (
        "hpcjobs: error: plugin 'test-broken': site section 'broken' is not a pydantic model: 'not a model'\n"
    )
