"""Large outputs fastnorm allocates come from a small pool of freed outputs
(fn_pool.h): a repeated call reuses mapped pages instead of faulting in fresh
ones.  Bounded, releasable, invisible to the results."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnorm
from fastnorm._cpu import _engine as E


@pytest.fixture
def pool():
    old_cap = E.output_pool()[1]
    E.empty_cache()
    yield
    E.output_pool(old_cap)
    E.empty_cache()


def test_freed_output_is_reused_and_results_unchanged(pool):
    x = np.random.default_rng(0).standard_normal((1, 8, 256, 256)).astype(np.float32)  # 2 MiB
    ref = fastnorm.instance_norm(x).copy()
    E.empty_cache()
    y = fastnorm.instance_norm(x)
    addr = y.ctypes.data
    assert y.flags.owndata and y.flags.c_contiguous
    assert E.output_pool()[0] == 0
    del y
    assert E.output_pool()[0] == x.nbytes  # kept
    y2 = fastnorm.instance_norm(x)
    assert y2.ctypes.data == addr  # the same block, reused
    assert E.output_pool()[0] == 0
    np.testing.assert_array_equal(y2, ref)
    # a reused block's old contents never show: every element is written
    z = fastnorm.instance_norm(x * 0 + 1.0, activation="relu")
    del z
    np.testing.assert_array_equal(fastnorm.instance_norm(x), ref)


def test_pool_is_bounded_and_releasable(pool):
    E.output_pool(3 << 20)  # room for one 2 MiB block
    x = np.ones((1, 8, 256, 256), np.float32)
    ys = [fastnorm.instance_norm(x) for _ in range(4)]
    del ys
    assert E.output_pool()[0] == x.nbytes
    assert E.empty_cache() == x.nbytes and E.output_pool()[0] == 0
    E.output_pool(0)  # off
    del x
    x = np.ones((1, 8, 256, 256), np.float32)
    y = fastnorm.instance_norm(x)
    del y
    assert E.output_pool()[0] == 0
    small = fastnorm.instance_norm(np.ones((1, 2, 8, 8), np.float32))  # below the pool's minimum
    del small
    assert E.output_pool()[0] == 0
    with pytest.raises(ValueError, match="cap_bytes must be >= 0, got -1"):
        E.output_pool(-1)


def test_pool_size_from_environment():
    code = "from fastnorm._cpu import _engine as E; print(E.output_pool()[1])"
    env = dict(os.environ, FASTNORM_CACHE_BYTES="12345")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "12345", r.stderr
    env["FASTNORM_CACHE_BYTES"] = "lots"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "RuntimeWarning" in r.stderr and "FASTNORM_CACHE_BYTES" in r.stderr


def test_pool_size_from_environment_out_of_range():
    """A byte count beyond size_t warns and keeps the default, as text and
    negative values do; fastnorm imports and runs."""
    default = "from fastnorm._cpu import _engine as E; print(E.output_pool()[1])"
    want = subprocess.run(
        [sys.executable, "-c", default],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "FASTNORM_CACHE_BYTES"},
    )
    assert want.returncode == 0, want.stderr
    code = (
        "import numpy as np, fastnorm; from fastnorm._cpu import _engine as E; "
        "fastnorm.instance_norm(np.ones((1, 2, 3, 3))); print(E.output_pool()[1])"
    )
    smax = sys.maxsize * 2 + 1  # the largest size_t
    for v in (str(smax + 1), str(smax + 5), "1" + "0" * 40, f" {smax + 1} "):
        env = dict(os.environ, FASTNORM_CACHE_BYTES=v)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "RuntimeWarning" in r.stderr and "FASTNORM_CACHE_BYTES" in r.stderr, r.stderr
        assert r.stdout.strip() == want.stdout.strip()
    # the largest size_t is a byte count like any other
    env = dict(os.environ, FASTNORM_CACHE_BYTES=str(smax))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == str(smax) and "Warning" not in r.stderr, r.stderr


def test_output_pool_cap_out_of_range():
    old = E.output_pool()[1]
    smax = sys.maxsize * 2 + 1
    with pytest.raises(ValueError, match=f"cap_bytes must be at most {smax}, got {smax + 1}"):
        E.output_pool(smax + 1)
    with pytest.raises(TypeError, match=r"cap_bytes must be an int, got 1.5"):
        E.output_pool(1.5)
    assert E.output_pool()[1] == old


def test_pool_size_warning_names_the_users_line(tmp_path):
    """The FASTNORM_CACHE_BYTES warning points at the line of the user's
    script that loaded the engine, not at importlib's frozen frames."""
    script = tmp_path / "user_script.py"
    script.write_text("import numpy as np\nimport fastnorm\nfastnorm.instance_norm(np.ones((1, 2, 3, 3)))\n")
    env = dict(os.environ, FASTNORM_CACHE_BYTES="lots")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "FASTNORM_CACHE_BYTES" in r.stderr and "user_script.py:3: RuntimeWarning" in r.stderr, r.stderr
    assert "frozen" not in r.stderr


def test_output_pool_takes_numpy_integers():
    held, cap = E.output_pool()
    try:
        assert E.output_pool(np.int64(1 << 20))[1] == 1 << 20
        with pytest.raises(TypeError, match="cap_bytes"):
            E.output_pool(True)
        with pytest.raises(TypeError, match="cap_bytes"):
            E.output_pool(1.5)
    finally:
        E.output_pool(cap)
