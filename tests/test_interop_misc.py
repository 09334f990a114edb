"""bfloat16 NumPy arrays, threadpoolctl, import hygiene."""

import subprocess
import sys

import _reference as R
import numpy as np
import pytest
from _optional import require

import fastnorm


def test_import_pulls_no_optional_dependency():
    code = (
        "import sys, fastnorm, numpy as np\n"
        "fastnorm.instance_norm(np.ones((1, 2, 3), np.float32))\n"
        "bad = [m for m in ('torch', 'cupy', 'dask', 'onnxruntime', 'matplotlib', 'distributed') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import fastnorm imported {out}"


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_bfloat16_numpy(channel_axis):
    ml_dtypes = require("ml_dtypes")
    x = (np.random.default_rng(0).standard_normal((2, 3, 17, 19)) * 3 + 2).astype(ml_dtypes.bfloat16)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = fastnorm.instance_norm(x, channel_axis=channel_axis)
    assert y.dtype == x.dtype
    R.assert_close(y, R.instance_norm(x.astype(np.float64), channel_axis=channel_axis), y.dtype)
    g = fastnorm.group_norm(x, 3, channel_axis=channel_axis, activation="silu")
    R.assert_close(g, R.group_norm(x.astype(np.float64), 3, channel_axis=channel_axis, activation="silu"), y.dtype)
    mean, var = fastnorm.instance_stats(x, channel_axis=channel_axis)
    assert mean.dtype == np.float32


def test_threadpoolctl_sees_and_limits_fastnorm():
    threadpoolctl = require("threadpoolctl")
    from fastnorm._cpu import _engine

    if not _engine.have_openmp():
        pytest.skip("serial build")
    info = threadpoolctl.threadpool_info()
    assert any(i["user_api"] == "openmp" for i in info), info
    x = np.random.default_rng(0).standard_normal((1, 3, 600, 600)).astype(np.float32)
    ref = fastnorm.instance_norm(x, num_threads=2)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert _engine.default_threads() == 1
        np.testing.assert_array_equal(fastnorm.instance_norm(x), ref)
    assert _engine.default_threads() >= 1


def test_bench_ceiling_is_the_faster_copy():
    """The bench's "copy" is the faster of memcpy and the streaming copy,
    both kept in the raw numbers; neither appears as a peer column."""
    from fastnorm.bench import harness as B
    from fastnorm.bench import peers as P

    t = {"copy": 2.0, "copy_nt": 1.5, "fastnorm": 3.0, "numpy": 6.0}
    B._best_copy(t)
    assert t["copy"] == 1.5 and t["copy_memcpy"] == 2.0 and t["copy_nt"] == 1.5
    t2 = {"copy": 1.0, "copy_nt": 1.5, "fastnorm": 2.0}
    B._best_copy(t2)
    assert t2["copy"] == 1.0
    row = {
        "shape": "T",
        "dims": [1, 4, 8, 8],
        "layout": "cf",
        "dtype": "float32",
        "threads": 1,
        "bytes": 2048,
        "times": t,
    }
    text = B.table([row])
    head = text.splitlines()[0]
    assert "x numpy" in head and "x copy" not in head
    assert "| 0.50 |" in text and "| 2.0 (" in text  # of copy 1.5/3.0; numpy 6/3
    assert B.summary([row])["cf"]["min_copy_fraction"] == 0.5
    rows = B.run_suite(
        {"T": (1, 4, 8, 8)},
        layouts=("cf",),
        threads=1,
        repeat=1,
        peers=P.peers_available(["none"]),
        progress=False,
        min_time=0.0,
    )
    times = rows[0]["times"]
    assert set(times) == {"copy", "copy_nt", "copy_memcpy", "fastnorm", "fastnorm_out"}
    assert times["copy"] == min(times["copy_nt"], times["copy_memcpy"])


def test_bench_samples_in_interleaved_rounds():
    """timeit_rounds takes one sample of every callable per round (so a burst
    of noise hits a round of all of them, not all samples of one), warms each
    up before its sample, and reports a callable that raises instead of
    failing the run."""
    from fastnorm.bench import harness as B

    log = []

    def rec(name):
        return lambda: log.append(name)

    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("peer broke")

    times, errors = B.timeit_rounds({"a": rec("a"), "b": rec("b"), "bad": flaky}, repeat=3, min_time=0.0)
    assert set(times) == {"a", "b", "bad"}
    assert times["a"] > 0 and times["b"] > 0
    assert times["bad"] is None and "peer broke" in errors["bad"]
    # two calibration calls each, then per round: 1 warm-up + 1 timed call
    # (k = 1 for min_time 0), a's before b's in every round
    assert log[:4] == ["a", "a", "b", "b"]
    rounds = log[4:]
    assert rounds == ["a", "a", "b", "b"] * 3
