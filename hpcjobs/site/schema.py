"""``hpcjobs site schema``: the JSON Schema of the site config, plugin sections included.

Generated from the pydantic models, then adjusted where a model accepts more than its JSON
form says: a bind may be written as a ``SRC[:DST][:ro|rw]`` string, and environment values
may be YAML numbers or booleans (they become strings).
"""

from __future__ import annotations

import copy
from typing import Any

from hpcjobs.models import ENV_NAME

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BIND_PATTERN = r"^[^:,\n]+(:/[^:,\n]*(:(ro|rw))?)?$"
_BIND_DOCS = {
    "src": "Host path.",
    "dst": "Absolute path in the container (default: src).",
    "mode": "ro (read-only) or rw.",
}


def site_schema(*, with_plugins: bool = True) -> dict[str, Any]:
    """The schema; ``with_plugins=False`` leaves ``plugins`` sections open (the reference uses it,
    so that it does not depend on what is installed)."""
    from hpcjobs.config.loader import site_model_with_plugins
    from hpcjobs.config.site import SiteConfig

    schema = (site_model_with_plugins() if with_plugins else SiteConfig).model_json_schema()
    schema = {"$schema": SCHEMA_DIALECT, **schema}
    schema["title"] = "hpcjobs site config"
    defs: dict[str, Any] = schema.get("$defs", {})
    if "Bind" in defs:
        obj = defs["Bind"]
        for key, text in _BIND_DOCS.items():
            obj.get("properties", {}).get(key, {}).setdefault("description", text)
        defs["Bind"] = {
            "title": obj.get("title", "Bind"),
            "description": obj.get("description", ""),
            "anyOf": [
                {"type": "string", "pattern": BIND_PATTERN, "description": "SRC[:DST][:ro|rw]"},
                {**{k: v for k, v in obj.items() if k not in ("title", "description")}, "required": ["src"]},
            ],
        }
    for name in ("Settings", "Partition", "MpiSettings"):
        env = defs.get(name, {}).get("properties", {}).get("env")
        if env is not None and "additionalProperties" in env:
            env["additionalProperties"] = {"type": ["string", "number", "boolean"]}
            env["propertyNames"] = {"pattern": "^" + ENV_NAME.pattern.removesuffix("\\Z") + "$"}  # ECMA: $ is the end
    return copy.deepcopy(schema)
