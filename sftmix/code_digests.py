"""Digests of the code that makes a stage's records, for its settings (`sftmix.build.stage_settings`):
editing a converter, a rule or a generator makes the records it made stale, as a manifest edit does.

A module's digest is that of its syntax tree without comments, formatting or docstrings (editing
those changes no record), written out without the fields a node leaves empty (those a newer Python
adds do not change it). The modules of its own package that it imports are digested too, and
theirs in turn: a converter's `sftmix/sources/common.py`, a rule's `filters/words.py`, a generator's
`generators/base.py`. A module of another package is not followed (a converter's `sftmix.record`):
the stage names the modules of the record path it shares with every source itself
(`sftmix.build.RECORD_PATH`). Data files (prompt templates) are digested byte for byte.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import sftmix

ROOT = Path(sftmix.__file__).resolve().parent.parent  # holds the packages sftmix, filters, generators


def code_digests(modules: Iterable[str], data_files: Iterable[Path] = (), root: Path | None = None) -> dict[str, str]:
    """{path under `root`: digest} of `modules` (dotted names under `root`, ROOT by default), the
    modules of their own package they import, and `data_files`."""
    root = (root or ROOT).resolve()
    digests: dict[str, str] = {}
    pending = [(name, name.rpartition(".")[0]) for name in modules]
    # A module reached from two packages (`sftmix.sources.common` from a converter and from
    # `sftmix.normalize`) is followed within each: which reached it first must not matter.
    followed = set()
    while pending:
        name, package = pending.pop()
        if (name, package) in followed:
            continue
        followed.add((name, package))
        path = _module_file(root, name)
        if path is None:
            raise FileNotFoundError(f"no source file for module {name!r} under {root}")
        key = path.relative_to(root).as_posix()
        stat = path.stat()
        digests[key], imports = _module_digest(path, stat.st_mtime_ns, stat.st_size)
        pending += [(other, package) for other in _own_modules(root, name, package, imports)]
    for path in data_files:
        path = Path(path).resolve()
        stat = path.stat()
        digests[path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)] = \
            _file_digest(path, stat.st_mtime_ns, stat.st_size)
    return dict(sorted(digests.items()))


def _module_file(root: Path, name: str) -> Path | None:
    """The module's own file (a package's `__init__` is not one: it is a registry, not a rule)."""
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    return path if path.is_file() else None


@lru_cache(maxsize=1024)
def _own_modules(root: Path, name: str, package: str, imports: tuple) -> tuple[str, ...]:
    """The modules of `package` that module `name` imports (`imports`: `_module_digest`'s)."""
    return tuple(other for other in _imported_names(name, imports)
                 if other.startswith(f"{package}.") and _module_file(root, other) is not None)


def _imported_names(name: str, imports: tuple) -> Iterable[str]:
    """The dotted names module `name` imports: for `from a import b`, `a` and `a.b` (b may be a module)."""
    for level, module, names in imports:
        base = ".".join(filter(None, [*name.split(".")[:-level], module])) if level else module
        yield base
        yield from (f"{base}.{n}" for n in names)


@lru_cache(maxsize=256)
def _module_digest(path: Path, modified_ns: int, size: int) -> tuple[str, tuple]:
    """(digest, its imports as (level, module, names)). Keyed on the file's state, so that a module
    edited while a process runs is read again."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return hashlib.sha256(syntax_text(tree).encode()).hexdigest()[:16], tuple(imports)


def syntax_text(node) -> str:
    """The tree as text, without the fields a node leaves empty: `ast.dump` lists those too, and a
    newer Python adds some to its nodes (3.12: every function's `type_params=[]`), which would make
    every record stale after an upgrade."""
    if isinstance(node, ast.AST):
        fields = ",".join(f"{name}={syntax_text(value)}" for name, value in ast.iter_fields(node)
                          if value is not None and value != [])
        return f"{type(node).__name__}({fields})"
    if isinstance(node, list):
        return f"[{','.join(syntax_text(item) for item in node)}]"
    return repr(node)


@lru_cache(maxsize=256)
def _file_digest(path: Path, modified_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
