"""tools/output_hash.py: fails (non-zero) where fastnorm, its engine or an
expected array library cannot be imported, says which libraries the hash
covers, and keeps the cases that raise out of the output hash."""

import os
import shutil
import subprocess
import sys

import pytest
from _optional import require

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "output_hash.py")


# where the fastnorm under test lives (the checkout, or site-packages for an
# installed sdist or wheel): `python -c` runs there so it imports that one
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def _run(args, cwd=PKG_ROOT, env_path=None, code=None):
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([env_path] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, TOOL]
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _blocker(tmp_path, name):
    """A directory that, first on the path, makes `import name` fail."""
    d = tmp_path / "blocked"
    (d / name).mkdir(parents=True)
    (d / name / "__init__.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
    return str(d)


@pytest.mark.slow  # several Python processes that import torch and dask
def test_missing_expected_library_fails(tmp_path):
    require("dask")
    path = _blocker(tmp_path, "dask")
    r = _run(["--only", "normalize"], env_path=path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "dask" in r.stderr and "--allow-missing" in r.stderr
    assert r.stdout.strip() == ""  # no hash printed
    r = _run(["--only", "normalize", "--expect", "dask"], env_path=path)
    assert r.returncode == 2 and "dask" in r.stderr
    # allowed: the hash comes with a line that says what it covers
    r = _run(["--only", "normalize", "--allow-missing"], env_path=path)
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("array libraries covered"))
    assert line.endswith("missing: dask") and "dask " not in line.split(";")[0]
    # not expected: not a failure either
    r = _run(["--only", "normalize", "--expect", ""], env_path=path)
    assert r.returncode == 0, r.stderr


def test_unbuilt_engine_fails(tmp_path):
    """The source tree without the compiled engine: exit 2, no hash of the
    ImportError."""
    shutil.copytree(
        os.path.join(ROOT, "fastnorm"),
        tmp_path / "fastnorm",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "_engine.c", "__pycache__"),
    )
    (tmp_path / "tools").mkdir()
    shutil.copy(TOOL, tmp_path / "tools")
    # the copy first on the path, ahead of any installed fastnorm
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run(
        [sys.executable, str(tmp_path / "tools" / "output_hash.py"), "--expect", ""],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "fastnorm cannot be imported" in r.stderr
    assert r.stdout.strip() == ""


_RAISING = """
import runpy, sys
import fastnorm

def boom(*args, **kwargs):
    raise RuntimeError({msg!r})

fastnorm.adain = boom
sys.argv = [{tool!r}] + sys.argv[1:]
runpy.run_path({tool!r}, run_name="__main__")
"""


def _last(r):
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # several Python processes that import torch and dask
def test_exceptions_are_listed_and_kept_out_of_the_hash():
    args = ["--only", "adain", "--expect", ""]
    clean = _run(args)
    assert clean.returncode == 0, clean.stderr
    assert "exceptions" not in clean.stderr
    runs = [_run(args, code=_RAISING.format(msg=m, tool=TOOL)) for m in ("boom", "bang")]
    for r, m in zip(runs, ("boom", "bang")):
        assert r.returncode == 1, r.stdout + r.stderr
        assert "cases raised (not in the output hash)" in r.stderr
        assert f"adain (2, 4, 7, 9) float32 cl=False nt=1: RuntimeError: {m}" in r.stderr
    # the messages differ: the exceptions' hashes do, the output hashes do not
    eh = [next(s for s in r.stderr.splitlines() if s.startswith("exceptions hash")) for r in runs]
    assert eh[0] != eh[1]
    assert _last(runs[0]) == _last(runs[1])
    # and a run whose cases raised never prints the clean run's hash
    assert _last(runs[0]) != _last(clean)


def test_only_with_an_unknown_name_fails():
    r = _run(["--only", "no_such_function", "--expect", ""])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no_such_function" in r.stderr and r.stdout.strip() == ""
