"""``hpcjobs images check``: everything about a cache that breaks its promise (trust.py), with the
command that fixes each; ``--fix`` applies the fixes it safely can as the cache's owner or root."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from hpcjobs.images.store import SUBDIRS, ImageStore, Layer
from hpcjobs.images.trust import NotPlain, Problem, Rules, UntrustedCache, q, user_name


@dataclass(frozen=True)
class Finding:
    problem: Problem
    fixed: bool = False

    def line(self) -> str:
        return ("fixed: " if self.fixed else "") + self.problem.line()


def check_cache(store: ImageStore, *, fix: bool = False) -> list[Finding]:
    """Findings for the writable layer and every site layer; an empty list means all is well."""
    out: list[Finding] = []
    for layer in store.site_layers:
        out += _check_layer(store, layer, fix=False)  # read-only: an admin fixes it by hand
    out += _check_layer(store, store.layer, fix=fix)
    return out


def _check_layer(store: ImageStore, layer: Layer, *, fix: bool) -> list[Finding]:
    out: list[Finding] = []
    root = layer.root
    try:
        st = os.stat(root)
    except FileNotFoundError:
        if layer.kind == "site":
            return [Finding(Problem(str(root), "site cache does not exist", "remove it from images.site_caches"))]
        return _missing_root(store, fix)
    out += _ancestors(root, store)
    rules = store.rules_for(layer, st)
    problem = rules.root_problem(st)
    if problem is not None:
        fixed = fix and _fix_root(store, rules, st)
        out.append(Finding(problem, fixed))
        if not fixed:
            return out  # nothing below a refused root is looked at by hpcjobs either
    names = ("sif", "meta", "digests") if layer.kind == "site" else SUBDIRS
    for name in names:
        path = root / name
        try:
            dst = os.lstat(path)
        except FileNotFoundError:
            if layer.kind == "site":
                continue
            fixed = fix and store.uid in (0, rules.owner) and _make_dir(path, rules, name)
            out.append(
                Finding(
                    Problem(str(path), "missing", f"{store.check_command()}  (as {user_name(rules.owner)} or root)"),
                    fixed=fixed,
                )
            )
            continue
        problem = rules.dir_problem(path, dst, name)
        if problem is not None:
            out.append(Finding(problem, fix and _fix_dir(store, rules, path, dst, name)))
    if layer.kind != "site":
        out += _apptainer_dirs(store, rules, fix)
    out += _entries(store, layer, rules, fix)
    out += _memos(store, layer, rules, fix)
    return out


def _missing_root(store: ImageStore, fix: bool) -> list[Finding]:
    root = store.layer.root
    if store.shared:
        owner = user_name(store.owner) if store.owner is not None else "OWNER"
        how = f"install -d -o {owner} -g GROUP -m 3770 {q(root)} && {store.check_command()}  (as root)"
        return [Finding(Problem(str(root), "shared cache does not exist", how))]
    if fix:
        store.ensure()
    return [Finding(Problem(str(root), "does not exist", store.check_command()), fixed=fix)]


def _ancestors(root: Path, store: ImageStore) -> list[Finding]:
    """A directory above the cache that others may write (without the sticky bit) lets them swap
    the whole cache for their own."""
    out: list[Finding] = []
    for parent in Path(os.path.realpath(root)).parents:
        try:
            st = os.stat(parent)
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        trusted = {0, store.uid, *([store.owner] if store.owner is not None else [])}
        if st.st_uid not in trusted or (mode & 0o022 and not mode & stat.S_ISVTX):
            out.append(
                Finding(
                    Problem(
                        str(parent),
                        f"a directory above the cache owned by {user_name(st.st_uid)}, mode {mode:o}: "
                        "its owner or writers can replace the whole cache",
                        f"chown root {q(parent)} && chmod go-w {q(parent)}  (as root)",
                    )
                )
            )
    return out


def _fix_root(store: ImageStore, rules: Rules, st: os.stat_result) -> bool:
    try:
        if store.uid == 0 and st.st_uid != rules.owner:
            os.chown(rules.root, rules.owner, -1)
        elif st.st_uid != store.uid:
            return False
        os.chmod(rules.root, 0o3770 if rules.kind == "shared" else 0o700)
    except OSError:
        return False
    return rules.root_problem(os.stat(rules.root)) is None


def _make_dir(path: Path, rules: Rules, name: str) -> bool:
    try:
        os.mkdir(path, 0o700)
        if rules.kind == "shared":
            os.chown(path, rules.owner, rules.gid)
        os.chmod(path, rules.dir_mode(name))
    except OSError:
        return False
    return True


def _fix_dir(store: ImageStore, rules: Rules, path: Path, st: os.stat_result, name: str) -> bool:
    """Take the directory over for the cache's owner; what was planted inside is judged per entry."""
    if store.uid not in (0, rules.owner):
        return False
    try:
        if stat.S_ISLNK(st.st_mode):
            os.unlink(path)  # a symlink can always be removed by the directory's owner
            if not _make_dir(path, rules, name):
                return False
        elif not stat.S_ISDIR(st.st_mode):
            return False
        else:
            if (st.st_uid, st.st_gid) != (rules.owner, rules.gid):
                if store.uid != 0:
                    return False
                os.chown(path, rules.owner, rules.gid)
            os.chmod(path, rules.dir_mode(name))
    except OSError:
        return False
    return rules.dir_problem(path, os.lstat(path), name) is None


def _apptainer_dirs(store: ImageStore, rules: Rules, fix: bool) -> list[Finding]:
    base = rules.root / "apptainer-cache"
    out: list[Finding] = []
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for n in sorted(names):
        path = base / n
        st = os.lstat(path)
        if not n.isdigit():
            continue
        problem = Rules(rules.kind, rules.root, rules.owner, rules.gid, int(n), rules.file_mode).user_dir_problem(
            path, st
        )
        if problem is None:
            continue
        fixed = False
        if fix and store.uid == 0:
            fixed = _remove(path)
        out.append(Finding(problem, fixed))
    return out


def _entries(store: ImageStore, layer: Layer, rules: Rules, fix: bool) -> list[Finding]:
    out: list[Finding] = []
    for stem in layer.stems():
        key = stem.replace("-", ":", 1)
        try:
            store._entry(layer, stem, key, "listed")
        except UntrustedCache as exc:
            fixed = fix and layer.kind != "site" and _remove(layer.sif(stem)) and _remove(layer.meta(stem))
            out.append(Finding(exc.problem, fixed))
    return out


def _memos(store: ImageStore, layer: Layer, rules: Rules, fix: bool) -> list[Finding]:
    out: list[Finding] = []
    try:
        names = sorted(n for n in os.listdir(layer.root / "digests") if n.endswith(".json") and not n.startswith("."))
    except OSError:
        return out
    for n in names:
        path = layer.root / "digests" / n
        stem, _, platform = n[: -len(".json")].partition(".")
        top = stem.replace("-", ":", 1)
        try:
            store.memo_at(layer, rules, path, top, platform.replace("-", "/"))
        except UntrustedCache as exc:
            fixed = fix and layer.kind != "site" and _remove(path)
            out.append(Finding(exc.problem, fixed))
        except NotPlain:
            continue
    return out


def _remove(path: Path) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
