"""A serial engine (built without OpenMP: clang without libomp, or
FASTNORM_NO_OPENMP=1) says so: show_config()'s first line, and one
RuntimeWarning per process the first time a call asks for more than one
thread or would have had more by default. The slow test builds such an
engine for real."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from _optional import require

import fastnorm
from fastnorm import _threads as T


@pytest.fixture
def serial(monkeypatch):
    from fastnorm import _api

    T.engine()  # the engine's facts are read when it loads: before one is overridden
    monkeypatch.setattr(T, "SERIAL", True)
    monkeypatch.setattr(T, "_serial_warned", False)
    # instance_norm's fast path, as a serial engine has it: off
    monkeypatch.setattr(_api, "_engine", None)
    monkeypatch.setattr(_api, "_FAST_CODES", dict(_api._FAST_CODES))


def test_serial_build_warns_once_when_threads_are_asked(serial):
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.warns(RuntimeWarning, match=r"without OpenMP.*num_threads=2") as rec:
        fastnorm.instance_norm(x, num_threads=2)
    # the warning names the caller's line, not fastnorm's
    assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastnorm.instance_norm(x, num_threads=2)  # once per process


def test_serial_build_is_quiet_for_one_thread(serial):
    x = np.ones((1, 2, 4, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastnorm.instance_norm(x, num_threads=1)


def test_serial_build_warns_when_the_default_would_be_more(serial, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with pytest.warns(RuntimeWarning, match="a default of 4 threads"):
        fastnorm.instance_norm(np.ones((2, 8, 64, 64), np.float32))


def test_serial_build_is_said_on_show_configs_first_line(monkeypatch):
    from fastnorm._cpu import _engine as E

    monkeypatch.setattr(E, "have_openmp", lambda: False)
    import io

    buf = io.StringIO()
    fastnorm.show_config(file=buf)
    first = buf.getvalue().splitlines()[0]
    assert "SERIAL BUILD" in first and "no OpenMP" in first


@pytest.mark.slow
def test_a_real_serial_build_warns(tmp_path):
    """FASTNORM_NO_OPENMP=1 builds a serial engine (one kernel level, to keep
    it short) that reports itself and warns at num_threads=2."""
    require("Cython.Build", reason="the build needs Cython and setuptools (pip install Cython setuptools)")
    require("setuptools", reason="the build needs Cython and setuptools (pip install Cython setuptools)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = tmp_path / "src"
    if not os.path.isdir(os.path.join(root, ".git")):
        pytest.skip("needs a git checkout (copies the tracked sources)")
    files = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True, capture_output=True).stdout
    for rel in files.decode().split("\0"):
        if rel.startswith("fastnorm/") or rel in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(open(os.path.join(root, rel), "rb").read())
    env = dict(os.environ, FASTNORM_NO_OPENMP="1", FASTNORM_NATIVE="1")
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    code = textwrap.dedent(
        """
        import warnings, numpy as np, fastnorm, io
        buf = io.StringIO(); fastnorm.show_config(file=buf)
        print(buf.getvalue().splitlines()[0])
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fastnorm.instance_norm(np.ones((1, 2, 4, 4), np.float32), num_threads=2)
        print("WARN", [str(m.message) for m in w])
        """
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "SERIAL BUILD" in r.stdout and "without OpenMP" in r.stdout, r.stdout
