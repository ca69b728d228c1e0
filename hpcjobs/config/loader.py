"""Find and load a site config; every error names the file and the key path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError

ENV_VAR = "HPCJOBS_SITE"
USER_PATH = "~/.config/hpcjobs/site.yaml"
SYSTEM_PATH = "/etc/hpcjobs/site.yaml"


@dataclass(frozen=True)
class SiteSource:
    """Where the site config in effect comes from: a published file, or discovery (``discovered``)."""

    path: Path
    how: str  # --site, $HPCJOBS_SITE, USER_PATH, SYSTEM_PATH or "discovered"
    origin: str | None = None  # for a discovered config: "discovered from the cluster NAME, cached in …"
    text: str | None = None  # a discovered config that could not be cached: its text

    @property
    def discovered(self) -> bool:
        return self.how == DISCOVERED

    def describe(self) -> str:
        """The file, or for a discovered config ``discovered from the cluster NAME, cached in FILE``."""
        return self.origin if self.origin else str(self.path)


DISCOVERED = "discovered"


def find_site_file(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """Lookup order: explicit path (--site) > $HPCJOBS_SITE > ~/.config/hpcjobs/site.yaml >
    /etc/hpcjobs/site.yaml. Only published files: :func:`hpcjobs.config.sources.find_site` adds the
    discovered default."""
    found = published_site(explicit, env)
    if found is None:
        raise ConfigError(
            f"no site config: pass --site PATH, set ${ENV_VAR}, or install {USER_PATH} or {SYSTEM_PATH}"
        )
    return found.path


def published_site(explicit: str | os.PathLike[str] | None, env: Mapping[str, str] | None) -> SiteSource | None:
    environ = os.environ if env is None else env
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: site config not found (from --site)")
        return SiteSource(path, "--site")
    if environ.get(ENV_VAR):
        path = Path(environ[ENV_VAR]).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: site config not found (from ${ENV_VAR})")
        return SiteSource(path, f"${ENV_VAR}")
    home = environ.get("HOME")
    user = Path(home) / USER_PATH.removeprefix("~/") if home else Path(USER_PATH).expanduser()
    for candidate, how in ((user, USER_PATH), (Path(SYSTEM_PATH), SYSTEM_PATH)):
        if candidate.is_file():
            return SiteSource(candidate, how)
    return None


def load_site_source(source: SiteSource, env: Mapping[str, str] | None = None) -> SiteConfig:
    """Load and validate ``source``; a validated model cached for the same bytes is reused
    (:mod:`hpcjobs.config.cache`). A discovered config carries its origin (``SiteConfig.origin``)."""
    from hpcjobs.config import cache

    content: bytes | None
    if source.text is not None:
        content = source.text.encode("utf-8")
    else:
        try:
            content = source.path.read_bytes()
        except OSError:
            content = None  # read_text below names the problem
    use_cache = content is not None and cache.enabled(env)
    key = cache.site_key(content) if use_cache and content is not None else ""
    site = cache.load_cached(key, env) if use_cache else None
    if site is None:
        # validate the very bytes the key was made of (the file may change in between)
        if source.text is not None:
            text = source.text
        elif content is not None:
            text = decode_text(source.path, content, "site config")
        else:
            text = read_text(source.path, "site config")
        data = load_yaml_mapping(text, str(source.path))
        site = validate_site(data, str(source.path))
        if use_cache and not data.get("plugins"):
            cache.store(key, site, env)
    if source.origin:
        site = site.with_origin(source.origin)
    return site


def read_text(path: Path, what: str) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is a ConfigError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a {what}") from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): is it a {what}?") from exc


def decode_text(path: Path, data: bytes, what: str) -> str:
    """``data`` (read from ``path``) as text, with :func:`read_text`'s message when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): is it a {what}?") from exc


def load_site_text(text: str, source: str = "<site>") -> SiteConfig:
    data = load_yaml_mapping(text, source)
    return validate_site(data, source)


def validate_site(data: Any, source: str) -> SiteConfig:
    """Validate a site config mapping, ``plugins.<section>`` included, against the installed plugins.

    Plugins are loaded only when the config has a ``plugins`` section. An unknown section is an
    error, as an unknown key is anywhere else: install the plugin wherever the config is used.
    """
    if isinstance(data, dict) and data.get("plugins"):
        validate_model(site_model_with_plugins(), data, source)
    return validate_model(SiteConfig, data, source)


def site_model_with_plugins() -> type[SiteConfig]:
    """SiteConfig with ``plugins`` typed by the sections that installed plugins declare
    (hook ``hpcjobs_site_sections``); used for validation and for the JSON Schema."""
    from pydantic import ConfigDict, Field, create_model

    from hpcjobs.errors import PluginError
    from hpcjobs.plugins import site_sections

    doc = "Settings for plugins, one section per plugin."
    fields: dict[str, Any] = {}
    for section, (plugin, section_model) in sorted(site_sections().items()):
        if not (isinstance(section_model, type) and issubclass(section_model, BaseModel)):
            raise PluginError(
                f"plugin {plugin!r}: site section {section!r} is not a pydantic model: {section_model!r}"
            )
        fields[section] = (section_model | None, Field(None, description=_section_doc(plugin, section_model)))
    sections: type[BaseModel] = create_model(
        "PluginSections", __config__=ConfigDict(extra="forbid", frozen=True), __doc__=doc, **fields
    )
    model: type[SiteConfig] = create_model(
        "SiteConfig",
        __base__=SiteConfig,
        __doc__=SiteConfig.__doc__,
        plugins=(sections, Field(default_factory=sections, description=doc)),
    )
    return model


def _section_doc(plugin: str, model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(f"{doc} (plugin {plugin})".split()) if doc else f"Settings of plugin {plugin}."


def load_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_shown(data)}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' merges; explicit keys may override merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


M = TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data``; on failure raise one ConfigError listing every problem with its key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(model, exc)
        raise ConfigError("; ".join(f"{source}: {p}" for p in problems), problems, source) from None


def describe_errors(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per problem: ``key.path: what was expected``; unknown keys list the valid ones."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            parent = err["loc"][:-1]
            valid = _valid_keys(model, parent)
            if _is_plugin_sections(model, parent):
                have = ", ".join(valid) if valid else "none"
                from hpcjobs.plugins import failure_note

                note = failure_note(loc[-1]) if loc else ""
                lines.append(f"{path}: no installed plugin reads this section (installed sections: {have}){note}")
                continue
            hint = f" (valid keys: {', '.join(valid)})" if valid else ""
            lines.append(f"{path}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: {_expected(err)}")
    return lines


_EXPECTED = {
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


_OPS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _expected(err: Any) -> str:
    """What was expected, in words a YAML author knows, and what was found."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "model_type" and ctx.get("class_name") == "Bind":
        what = "a bind: 'SRC[:DST][:ro|rw]' or a mapping with src, dst, mode"
    elif kind in _EXPECTED:
        what = _EXPECTED[kind]
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = _OPS[kind]
        bound = next(iter(ctx.values()), "?")
        number = "a number" if isinstance(bound, float) else "an integer"
        what = f"{number} {op} {bound:g}" if isinstance(bound, int | float) else f"{number} {op} {bound}"
    elif kind == "literal_error":
        what = str(ctx.get("expected", "?"))
    elif kind == "string_too_short":
        what = "a non-empty string"
    elif kind == "too_short":
        n = ctx.get("min_length", 1)
        what = f"at least {n} entr{'y' if n == 1 else 'ies'}"
        if not ctx.get("actual_length"):
            return f"expected {what}, got none"
    else:  # validators' own messages say what is wrong
        return str(err["msg"]).removeprefix("Value error, ")
    return f"expected {what}, got {_shown(got)}"


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value) if value else "an empty string"
    return repr(value)


def _is_plugin_sections(model: type[BaseModel], parent: tuple[int | str, ...]) -> bool:
    return issubclass(model, SiteConfig) and tuple(parent) == ("plugins",)


def _valid_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Walk the model along ``loc`` to the sub-model whose keys were wrong."""
    from typing import get_origin

    current: Any = model
    skip_item_key = False
    for part in loc:
        if skip_item_key:  # the key of a dict[str, Model] or index of a list[Model]
            skip_item_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        skip_item_key = get_origin(field.annotation) in (dict, list)
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
