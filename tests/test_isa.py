"""Kernel levels: FASTNORM_ISA, show_config's SIMD fields, the plan, and the
same bits at every level."""

import os
import subprocess
import sys

import numpy as np
import pytest
from _isa import LEVELS, kernels

import fastnorm
from fastnorm._cpu import _engine as E

HERE = os.path.dirname(os.path.abspath(__file__))
# where the fastnorm under test lives (a checkout, or site-packages for an
# installed sdist or wheel): the subprocesses import that one
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))

# a hash of outputs over both layouts, four dtypes' worth of kernels, affine,
# groups, activations, statistics and thread counts
_HASH_SCRIPT = r"""
import hashlib, numpy as np, fastnorm
h = hashlib.sha256()
rng = np.random.default_rng(5)
for shape in [(2, 3, 7, 9), (3, 37, 20, 9), (1, 16, 64, 64), (2, 100, 7, 11), (1, 2, 40000)]:
    for dt in (np.float32, np.float64, np.float16):
        x = (rng.standard_normal(shape) * 3 + 300).astype(dt)
        C = shape[1]
        w, b = rng.standard_normal(C), rng.standard_normal(C)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        for nt in (1, 2):
            for act in (None, "relu", "silu"):
                h.update(fastnorm.instance_norm(x, w, b, activation=act, num_threads=nt).tobytes())
                h.update(fastnorm.instance_norm(xl, w, b, channel_axis=-1, activation=act,
                                                num_threads=nt).tobytes())
            for a in fastnorm.instance_stats(xl, channel_axis=-1, num_threads=nt):
                h.update(a.tobytes())
            if C % 2 == 0:
                h.update(fastnorm.group_norm(x, C // 2, w, b, num_threads=nt).tobytes())
print(fastnorm.show_config(mode="dicts")["simd_level"], h.hexdigest())
"""


def _run(env_isa, script=_HASH_SCRIPT):
    env = dict(os.environ)
    if env_isa is None:
        env.pop("FASTNORM_ISA", None)
    else:
        env["FASTNORM_ISA"] = env_isa
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split(), r.stderr


def test_show_config_dicts_names_the_levels():
    d = fastnorm.show_config(mode="dicts")
    assert isinstance(d, dict)
    assert d["simd_levels"] == LEVELS and d["simd_level"] in d["simd_levels"]
    assert d["simd_level"] == LEVELS[0]  # auto: the best this CPU runs
    if os.uname().machine in ("x86_64", "AMD64"):
        assert "x86-64" in d["simd_levels"]
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts', got 'json'"):
        fastnorm.show_config(mode="json")


def test_show_config_stdout_prints_the_active_level(capsys):
    assert fastnorm.show_config(mode="stdout") is None
    out = capsys.readouterr().out
    assert f"SIMD level      : {LEVELS[0]}" in out
    for level in LEVELS:
        assert level in out


@pytest.mark.parametrize("level", LEVELS)
def test_fastnorm_isa_selects_the_level_and_gives_the_same_bits(level):
    """FASTNORM_ISA=<level> runs that level (show_config says so), and every
    level gives the bits of the default one."""
    (auto_level, auto_hash), _ = _run(None)
    (got_level, got_hash), err = _run(level)
    assert auto_level == LEVELS[0]
    assert got_level == level
    assert got_hash == auto_hash
    assert "RuntimeWarning" not in err


@pytest.mark.parametrize(
    "value", ["avx9000", "x86-64-v9", "AUTO-ish", "neon" if os.uname().machine != "aarch64" else "x86-64"]
)
def test_fastnorm_isa_unknown_value_warns_and_runs_auto(value):
    (level, _), err = _run(value)
    assert level == LEVELS[0]
    assert "RuntimeWarning" in err and "FASTNORM_ISA" in err and repr(value) in err
    for valid in LEVELS:
        assert repr(valid) in err


def test_fastnorm_isa_auto_is_silent():
    (level, _), err = _run("auto")
    assert level == LEVELS[0] and "Warning" not in err


def test_configure_refuses_unknown_levels_and_restores():
    old = E.configure()
    with pytest.raises(ValueError, match="isa must be 'auto' or one of"):
        E.configure(isa="avx9000")
    assert E.configure() == old
    for level in LEVELS:
        with kernels(isa=level):
            assert E.config()["isa"] == level
            assert fastnorm.show_config(mode="dicts")["simd_level"] == level
    assert E.config()["isa"] == old["isa"]


def test_plan_for_describes_the_plan():
    """plan_for returns the plan the engine runs: small planes in one C call,
    pipelined and read-then-apply planes, waves for planes larger than a
    thread's share of L2, backward passes past L2, streaming stores past the
    streaming threshold, serial below the parallel threshold."""
    p = E.plan_for((8, 128, 64, 64), np.float32, 1, 2)  # S2: 16 KiB planes
    assert p["layout"] == "channels_first" and p["n_threads"] == 2 and p["fused"]
    assert p["small_planes"] and not p["stream"] and not p["backward"]
    p = E.plan_for((1, 64, 256, 256), np.float32, 1, 2)  # S1: 256 KiB planes
    assert p["fused"] and not p["small_planes"] and p["pipelined"]
    p = E.plan_for((1, 16, 512, 256), np.float32, 1, 2)  # 512 KiB planes
    assert p["fused"] and not p["pipelined"] and not p["backward"]
    p = E.plan_for((2, 16, 150, 150), np.float32, 1, 2)  # 88 KiB planes, 2 blocks
    assert p["pipelined"] and not p["small_planes"]
    p = E.plan_for((1, 3, 1080, 1920), np.float32, 1, 2)  # S4: 3 planes of 8 MiB
    assert not p["fused"] and p["wave"] >= 1 and p["backward"]
    assert p["stream"] == E.config()["streaming"]  # 24 MiB output
    p = E.plan_for((1, 32, 512, 512), np.float32, 1, 2)  # S6: 32 MiB output
    assert p["stream"] == E.config()["streaming"]
    p = E.plan_for((1, 32, 512, 512), np.float16, 1, 2)  # float16: never streamed
    assert not p["stream"]
    p = E.plan_for((1, 4, 8, 8), np.float32, 1, 2)  # tiny: serial
    assert p["n_threads"] == 1 and not p["parallel"]
    p = E.plan_for((32, 16, 16, 256), np.float32, -1, 2)  # S3 channels last
    assert p["layout"] == "channels_last" and p["fused"] and not p["backward"]
    p = E.plan_for((1, 256, 256, 64), np.float32, -1, 2)  # S1 channels last
    assert not p["fused"] and p["backward"]
    assert E.plan_for((1, 256, 256, 64), np.float32, -1, 1)["fused"]
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        E.plan_for((1, 4, 8, 8), np.float32, 1, 0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        E.plan_for((1, 4, 8, 8), np.bool_)


def test_plan_choices_are_what_runs():
    """Forcing the thresholds changes the plan plan_for reports, and the bits
    do not change (test_plans.py forces every choice)."""
    shape = (2, 16, 150, 150)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref = fastnorm.instance_norm(x, num_threads=2)
    old = E._tuning(pipeline_max_bytes=0, backward_min_bytes=0)
    try:
        p = E.plan_for(shape, np.float32, 1, 2)
        assert not p["pipelined"] and p["backward"]
        np.testing.assert_array_equal(fastnorm.instance_norm(x, num_threads=2), ref)
    finally:
        E._tuning(*old)
    assert E.plan_for(shape, np.float32, 1, 2)["pipelined"]


def _nan_planes(rng, shape, dtype):
    """Planes holding NaNs of both signs and several payloads, infinities,
    and planes of finite values only."""
    x = rng.standard_normal(shape).astype(dtype)
    bits = x.view({8: np.uint64, 4: np.uint32, 2: np.uint16}[x.itemsize])
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    flat[0, :, ::5] = np.nan
    flat[0, 1::2, 1::7] = -np.nan
    flat[-1, 0, 2] = np.inf
    flat[-1, 1, 3] = -np.inf
    flat[-1, 1, 4] = np.inf
    bits.reshape(-1)[::13] ^= 1  # other payloads (finite values move one ulp)
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_nan_planes_give_the_same_bits_at_every_level(dtype, cl):
    """A unit with NaN statistics (a NaN or infinities in it) is all NaN, and
    the NaNs are the same at every level, plan and thread count: an element
    that is NaN keeps its own NaN (quieted), every other one is the positive
    default NaN.  (x86 returns the first NaN operand, and the vector widths
    order the multiply-add's operands differently: NaN coefficients gave
    NaNs of either sign.)"""
    from _plans import PLAN_SETTINGS

    rng = np.random.default_rng(7)
    shape = (3, 6, 9, 41)
    x = _nan_planes(rng, shape, dtype)
    if cl:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    ax = -1 if cl else 1
    w, b = np.linspace(-1.0, 2.0, 6), np.linspace(0.5, -0.5, 6)

    def run(nt):
        return [
            fastnorm.instance_norm(x, channel_axis=ax, activation=act, weight=ww, bias=bb, num_threads=nt).tobytes()
            for act in (None, "relu", "leaky_relu", "silu")
            for ww, bb in ((None, None), (w, b))
        ] + [fastnorm.group_norm(x, 3, channel_axis=ax, num_threads=nt).tobytes()]

    want = run(1)
    for level in LEVELS:
        with kernels(isa=level):
            assert run(1) == want, level
            assert run(2) == want, level
    for setting in PLAN_SETTINGS:
        old = E._tuning(**setting)
        try:
            assert run(2) == want, setting
        finally:
            E._tuning(*old)
    y = fastnorm.instance_norm(x, channel_axis=ax)
    ybits = y.view({8: np.uint64, 4: np.uint32, 2: np.uint16}[y.itemsize])
    xbits = x.view(ybits.dtype)
    quiet = {8: 1 << 51, 4: 1 << 22, 2: 1 << 9}[y.itemsize]
    default = np.array(np.nan, dtype).view(ybits.dtype)
    xm = np.moveaxis(x, ax, 1).reshape(3, 6, -1)
    nan_unit = ~np.isfinite(xm).all(axis=-1)  # (N, C)
    assert nan_unit.sum() == 8  # instance 0: every channel; instance 2: channels 0 and 1
    mask = np.moveaxis(np.broadcast_to(nan_unit[:, :, None], xm.shape).reshape(np.moveaxis(x, ax, 1).shape), 1, ax)
    assert np.isnan(y[mask]).all() and np.isfinite(y[~mask]).all()
    own = np.isnan(x) & mask
    if dtype != np.float16 or E.config()["half_hw"]:
        np.testing.assert_array_equal(ybits[own], xbits[own] | quiet)  # its own NaN, quieted
    np.testing.assert_array_equal(ybits[mask & ~np.isnan(x)], default)  # the default NaN


def test_nan_planes_keep_their_bits_when_another_unit_is_rescaled():
    """float64 units beyond double's comfortable range are normalized from
    rescaled data (fastnorm._range): a NaN unit in the same call keeps the
    engine's NaN bits."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 40))
    x[0, 1, ::4] = -np.nan
    alone = fastnorm.instance_norm(x[:1])
    x[1] *= 1e200  # rescaled
    both = fastnorm.instance_norm(x)
    np.testing.assert_array_equal(both[:1].view(np.uint64), alone.view(np.uint64))
    assert np.isfinite(both[1]).all()
