"""Find and load a site config; every error names the file and the key path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hpcjobs.config.site import SiteConfig
from hpcjobs.errors import ConfigError

ENV_VAR = "HPCJOBS_SITE"
USER_PATH = "~/.config/hpcjobs/site.yaml"
SYSTEM_PATH = "/etc/hpcjobs/site.yaml"


def find_site_file(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Lookup order: explicit path (--site) > $HPCJOBS_SITE > ~/.config/hpcjobs/site.yaml > /etc/hpcjobs/site.yaml."""
    environ = os.environ if env is None else env
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: site config not found (from --site)")
        return path
    if environ.get(ENV_VAR):
        path = Path(environ[ENV_VAR]).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: site config not found (from ${ENV_VAR})")
        return path
    for candidate in (Path(USER_PATH).expanduser(), Path(SYSTEM_PATH)):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no site config: pass --site PATH, set ${ENV_VAR}, or install {USER_PATH} or {SYSTEM_PATH}"
    )


def load_site(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> SiteConfig:
    path = find_site_file(explicit, env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read site config: {exc.strerror}") from exc
    return load_site_text(text, str(path))


def load_site_text(text: str, source: str = "<site>") -> SiteConfig:
    data = load_yaml_mapping(text, source)
    return validate_model(SiteConfig, data, source)


def load_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


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
            valid = _valid_keys(model, err["loc"][:-1])
            hint = f" (valid keys: {', '.join(valid)})" if valid else ""
            lines.append(f"{path}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) or err["type"].startswith("value_error") else f" (got {got!r})"
            lines.append(f"{path}: {msg}{shown}")
    return lines


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
