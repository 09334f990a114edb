"""float16 conversion: the hardware (F16C / NEON, at the levels that have it)
and software paths give the same bits, and the normalization results do not
depend on which ran."""

import numpy as np
import pytest
from _isa import LEVELS, UNFUSED_LEVEL, kernels

import fastnorm
from fastnorm._cpu import _engine as E


def _software_level():
    for level in reversed(LEVELS):
        with kernels(isa=level):
            if not E.config()["half_hw"]:
                return level
    return None


SOFT = _software_level()
HW = [lv for lv in LEVELS if lv != SOFT]


def _boundary_floats():
    """Float32 bit patterns at and around every rounding decision of the
    float32 -> float16 conversion: each half, the midpoints to its neighbours,
    +-1..3 ulp of float32 around both, the overflow and subnormal edges, and
    NaNs with assorted payloads."""
    h = np.arange(0, 0x7C01, dtype=np.uint16)  # +0 .. +inf
    f = h.view(np.float16).astype(np.float64)
    mids = (f[:-1] + f[1:]) / 2  # exact in float32
    centers = np.concatenate([f, mids, [65504.0, 65520.0, 65536.0, 2.0**-24, 2.0**-25, 2.0**-26]])
    bits = centers.astype(np.float32).view(np.uint32).astype(np.int64)
    pats = (bits[:, None] + np.arange(-3, 4)[None, :]).ravel()
    pats = pats[(pats >= 0) & (pats < 2**31)].astype(np.uint32)
    nans = np.array([0x7F800001, 0x7F802000, 0x7FC00000, 0x7FFFFFFF, 0x7FA5A5A5, 0x7F800FFF], np.uint32)
    rnd = np.random.default_rng(0).integers(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32)
    allp = np.concatenate([pats, nans, rnd])
    return np.concatenate([allp, allp | np.uint32(0x80000000)]).view(np.float32)


def test_levels_reported():
    assert LEVELS and "bit-identical" in E.half_impl()


@pytest.mark.parametrize("level", LEVELS)
def test_widen_every_half(level):
    h = np.arange(2**16, dtype=np.uint16)
    with kernels(isa=level):
        got = E.half_to_float(h)
    with kernels(isa=SOFT or level):
        soft = E.half_to_float(h)
    np.testing.assert_array_equal(got.view(np.uint32), soft.view(np.uint32))
    ok = ~np.isnan(h.view(np.float16))
    np.testing.assert_array_equal(got[ok].view(np.uint32), h.view(np.float16)[ok].astype(np.float32).view(np.uint32))
    # NaNs stay NaN, quieted, payload kept
    assert np.isnan(got[~ok]).all()
    assert ((got[~ok].view(np.uint32) & 0x00400000) != 0).all()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n_extra", [0, 5])  # vector body and scalar tail
def test_narrow_rounding_boundaries(level, n_extra):
    f = _boundary_floats()
    f = f[: len(f) - (len(f) % 16) + n_extra] if n_extra else f[: len(f) - (len(f) % 16)]
    with kernels(isa=level):
        got = E.float_to_half(f)
    with kernels(isa=SOFT or level):
        soft = E.float_to_half(f)
    np.testing.assert_array_equal(got, soft)
    ok = ~np.isnan(f)
    with np.errstate(over="ignore"):
        ref = f[ok].astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got[ok], ref)
    # a NaN keeps its sign and the top of its payload, quieted
    fb = f[~ok].view(np.uint32)
    want = ((fb >> 16) & 0x8000) | 0x7E00 | ((fb >> 13) & 0x3FF)
    np.testing.assert_array_equal(got[~ok], want.astype(np.uint16))


@pytest.mark.skipif(len(LEVELS) < 2, reason="one kernel level on this CPU: nothing to compare")
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("shape", [(2, 3, 37, 41), (1, 64, 64, 64), (2, 5, 300, 7), (1, 1000, 9, 9)])
@pytest.mark.parametrize("activation", [None, "relu", "silu"])
def test_norm_bits_independent_of_conversion(shape, channel_axis, activation):
    """Every level converts float16 its own way (16 or 8 lanes of F16C, or the
    software conversion at the x86-64 level) with its own vector width: the
    same bits at every level."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 4 + 100).astype(np.float16)
    x.flat[7::173] = np.float16(6e-8)  # subnormal inputs
    x[0, 0].flat[::97] = np.float16(np.nan)  # one plane non-finite, the rest finite
    x[0, 0].flat[5::131] = np.float16(np.inf)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    C = x.shape[channel_axis]
    w = rng.standard_normal(C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    outs = []
    for level in LEVELS:
        with kernels(isa=level):
            outs.append(fastnorm.instance_norm(x, w, b, channel_axis=channel_axis, activation=activation))
    assert np.isfinite(outs[0][1:]).all() and np.isnan(outs[0][0, 0] if channel_axis == 1 else outs[0][0, ..., 0]).all()
    for o in outs[1:]:
        np.testing.assert_array_equal(o.view(np.uint16), outs[0].view(np.uint16))


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("shape", [(2, 3, 37, 41), (2, 21, 13, 11), (1, 100, 9, 10)])
def test_stats_bits_independent_of_conversion(shape, channel_axis):
    """The float16 statistics (double accumulators) at every level (channels
    last: full register tiles, smaller ones and scalar lanes), on halves
    spread over 11 binades so that d*d is inexact in double and a fused and an
    unfused accumulation really differ: the unfused kernels (CPUs without
    FMA) must differ from the fused ones, so the test can tell them apart."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-7, 4, shape)).astype(np.float16)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    got = {}
    for level in LEVELS:
        with kernels(isa=level):
            m = fastnorm.instance_moments(x, channel_axis=channel_axis)
            got[level] = m.mean.tobytes() + m.m2.tobytes()
    assert len(set(got.values())) == 1, got.keys()
    if UNFUSED_LEVEL is not None and E.fused_multiply_add():
        with kernels(isa=UNFUSED_LEVEL, fused=False):
            m = fastnorm.instance_moments(x, channel_axis=channel_axis)
        assert m.mean.tobytes() + m.m2.tobytes() != got[LEVELS[0]]
