"""The package's layers import one way: no module imports from a layer above
its own, and the interop layers use the public functions' names of the API
layer, not its private helpers.  Imports are read from the sources with
ast (module-level, function-level and TYPE_CHECKING imports alike); nothing
is imported, so this runs without a build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fastnorm"

#: top to bottom; a module may import its own layer and the layers below
LAYERS = [
    ("face", ["fastnorm", "fastnorm.__main__", "fastnorm._config", "fastnorm.bench", "fastnorm.bench.*"]),
    (
        "interop",
        ["fastnorm.torch", "fastnorm._torch", "fastnorm._torch_ops", "fastnorm._torch_func", "fastnorm._torch_onnx"]
        + ["fastnorm._dask"]
        + ["fastnorm._torch_arrays", "fastnorm._layers"],
    ),
    ("api", ["fastnorm._api", "fastnorm._backward"]),
    ("validation", ["fastnorm._validate"]),
    (
        "backends",
        ["fastnorm._backends", "fastnorm._cpu._backend", "fastnorm._gpu._backend", "fastnorm._range"]
        + ["fastnorm._threads"],
    ),
    (
        "kernels",
        [
            "fastnorm._cpu._engine",
            "fastnorm._cpu._env",
            "fastnorm._cpu._plans",
            "fastnorm._gpu._names",
            "fastnorm._codes",
            "fastnorm._formulas",
        ],
    ),
    ("packages", ["fastnorm._cpu", "fastnorm._gpu"]),  # empty __init__.py files
]


def layer_of(mod: str) -> int:
    for i, (_, mods) in enumerate(LAYERS):
        for m in mods:
            if m == mod or (m.endswith(".*") and mod.startswith(m[:-1])):
                return i
    raise AssertionError(f"{mod} is in no layer of tests/test_layers.py's LAYERS: add it")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PKG.rglob("*.py")}
    found.update({module_name(p): p for p in PKG.rglob("*.pyx")})  # the engine
    return found


def imports(mod: str, source: str, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported fastnorm module, names taken from it, line) of every import
    statement anywhere in source, relative ones resolved; ``from . import X``
    names module X where X is one."""
    is_pkg = mod in {"fastnorm", "fastnorm._cpu", "fastnorm._gpu", "fastnorm.bench"}
    package = mod if is_pkg else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "fastnorm"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fastnorm":
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{target}.{n}" in known]
            if subs:  # from . import _api: the module fastnorm._api
                out += [(f"{target}.{n}", [], node.lineno) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                out.append((target, rest, node.lineno))
    return out


def _python_source(path: Path) -> str:
    if path.suffix == ".pyx":  # Cython: its Python-level imports are the lines that start with them
        lines = [ln for ln in path.read_text().splitlines() if ln.startswith(("import ", "from "))]
        return "\n".join(ln for ln in lines if " cimport " not in ln)
    return path.read_text()


def violations(sources: dict[str, str]) -> list[str]:
    known = set(sources)
    bad = []
    for mod, src in sorted(sources.items()):
        here = layer_of(mod)
        for target, names, line in imports(mod, src, known):
            there = layer_of(target)
            if there < here:
                bad.append(
                    f"{mod}:{line} imports {target} ({LAYERS[there][0]}), a layer above {LAYERS[here][0]}: "
                    f"move what it needs down, or ask the layer above to pass it"
                )
            if LAYERS[here][0] == "interop" and LAYERS[there][0] == "api":
                private = [n for n in names if n.startswith("_")]
                private += _private_attributes(src, target)
                if private:
                    bad.append(f"{mod} uses private names of {target}: {sorted(set(private))}")
    return bad


def _private_attributes(source: str, target: str) -> list[str]:
    """Private attributes read on the module target where source imports it as a name."""
    short = target.rpartition(".")[2]
    aliases = {short}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name == short and a.asname:
                    aliases.add(a.asname)
    return [
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
    ]


def _sources() -> dict[str, str]:
    return {mod: _python_source(path) for mod, path in modules().items()}


def test_every_module_has_a_layer():
    for mod in modules():
        layer_of(mod)


def test_no_module_imports_from_a_layer_above():
    assert violations(_sources()) == []


# (module, a line that breaks the rule): each must be caught
BREAKS = [
    ("fastnorm._cpu._backend", "from .. import _api\n"),  # a backend reading API state
    ("fastnorm._validate", "def f():\n    from ._dask import call\n"),  # a lazy import, upward
    ("fastnorm._codes", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import _validate\n"),
    ("fastnorm._dask", "from ._api import _prep\n"),  # a private helper of the API
    ("fastnorm._dask", "def f(a):\n    return _api._dispatch(a)\n"),
    ("fastnorm._threads", "import fastnorm._api\n"),
]


@pytest.mark.parametrize("mod, line", BREAKS, ids=[f"{m}:{ln.strip()}" for m, ln in BREAKS])
def test_a_broken_layer_is_caught(mod, line):
    src = _sources()
    src[mod] += "\n" + line
    assert violations(src), f"{line!r} in {mod} went unnoticed"
