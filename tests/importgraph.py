"""The import graph of the hpcjobs package, read with ``ast`` (nothing is imported).

Every import counts: module level, inside functions (lazy) and under ``TYPE_CHECKING``, because a
lazy or type-only cycle is still two modules that cannot be understood, tested or moved apart.
``python -m tests.importgraph`` prints the cycles and the layering violations; the unit test
``tests/unit/test_import_graph.py`` fails on them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "hpcjobs"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# (importer prefix, forbidden import prefixes, why); prefixes match whole dotted components
LAYERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("hpcjobs.images", ("hpcjobs.render", "hpcjobs.plan", "hpcjobs.schedulers", "hpcjobs.cli", "hpcjobs.cli_images",
                        "hpcjobs.cli_site", "hpcjobs.api"),
     "the image cache is a library: it returns plans and never renders, submits or talks to the CLI"),
    ("hpcjobs.plugin_api", ("hpcjobs",),
     "the plugin contract pulls in no more of the core than hpcjobs.errors, hpcjobs.models, hpcjobs.defaults"),
    ("hpcjobs.render", ("hpcjobs.plugins", "hpcjobs.runtimes", "hpcjobs.launchers", "hpcjobs.schedulers"),
     "render serializes a plan; it knows no plugin"),
    ("hpcjobs.resolve", ("hpcjobs.render", "hpcjobs.plan", "hpcjobs.images", "hpcjobs.schedulers"),
     "resolve is the pure first step"),
)
ALLOWED = {
    ("hpcjobs.plugin_api", "hpcjobs.errors"), ("hpcjobs.plugin_api", "hpcjobs.models"),
    ("hpcjobs.plugin_api", "hpcjobs.defaults"),
    # the contract's rarely used classes, created on first use (CLI start-up), are part of it
    ("hpcjobs.plugin_api", "hpcjobs.plugin_api_parts"),
    # `python -m hpcjobs.images` is a CLI entry point that lives in the package by name only
    ("hpcjobs.images.__main__", "hpcjobs.cli"), ("hpcjobs.images.__main__", "hpcjobs.cli_images"),
}  # fmt: skip


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _imports(tree: ast.AST, name: str, path: Path) -> Iterator[tuple[str, int]]:
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno  # graph() trims it to the module


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module → {imported hpcjobs module: first line}."""
    mods = modules(root)
    known = set(mods)
    out: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, name, path):
            while target and target not in known:  # `import hpcjobs.x.y` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name and target.split(".")[0] == PACKAGE and target != PACKAGE:
                edges.setdefault(target, line)
        out[name] = edges
    return out


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(g: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for importer, edges in sorted(g.items()):
        for target, line in sorted(edges.items()):
            if (importer, target) in ALLOWED:
                continue
            for prefix, forbidden, why in LAYERS:
                if _under(importer, prefix) and any(_under(target, f) for f in forbidden):
                    out.append(f"{importer} (line {line}) imports {target}: {why}")
    return out


def main() -> int:
    g = graph()
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(g)] + violations(g)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
