"""Optional dependencies stay optional, and a broken one skips its tests.

A dask release installed beside a distributed it does not work with raised
ImportError from inside dask's own imports; pytest.importorskip skips only a
module that is missing, so the Dask tests stopped the run at collection.
Every test module imports optional libraries through tests/_optional.require,
which turns any import failure into a skip that gives the failure."""

import ast
import os
import subprocess
import sys
import textwrap

import pytest
from _optional import require

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_a_broken_optional_module_skips_with_its_import_error(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenlib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .base import collections_to_dsk\n")
    (pkg / "base.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="cannot import name 'collections_to_dsk'"):
        require("brokenlib")
    with pytest.raises(pytest.skip.Exception, match="No module named 'surely_not_installed_lib'"):
        require("surely_not_installed_lib")
    assert require("json").dumps([1]) == "[1]"


def test_a_broken_module_is_a_skip_at_collection_not_an_error(tmp_path):
    """A whole test module that needs a broken library: pytest reports a
    skip with the import error and exits 0."""
    (tmp_path / "brokenlib.py").write_text("raise ImportError('cannot import name x from brokenlib.base')\n")
    (tmp_path / "test_uses_it.py").write_text(
        textwrap.dedent(
            """
            from _optional import require
            lib = require("brokenlib")

            def test_never_runs():
                raise AssertionError
            """
        )
    )
    (tmp_path / "test_other.py").write_text("def test_runs():\n    pass\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), TESTS]))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 1 skipped" in r.stdout and "cannot import name x" in r.stdout, r.stdout


def test_no_test_module_uses_importorskip_directly():
    """pytest.importorskip lets a broken library error at collection."""
    offenders = []
    for d in (TESTS, os.path.join(os.path.dirname(TESTS), "benchmarks")):
        if not os.path.isdir(d):  # a copy of tests/ alone (the sanitized run)
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith(".py") or name == "_optional.py":
                continue
            tree = ast.parse(open(os.path.join(d, name)).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "importorskip":
                    offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"use tests/_optional.require instead of pytest.importorskip: {offenders}"


def test_import_fastnorm_imports_no_optional_dependency():
    code = (
        "import sys, fastnorm, fastnorm._api, fastnorm._config; "
        "bad = [m for m in ('torch', 'cupy', 'dask', 'distributed', 'onnxruntime', 'matplotlib', "
        "'albumentations', 'ml_dtypes', 'onnx', 'PIL') if m in sys.modules]; print(bad)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout
