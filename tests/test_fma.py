"""Fused and unfused multiply-add kernels: fused_multiply_add() says which
rounding the apply pass does, and the unfused twin (what CPUs without FMA
run) is as deterministic as the fused kernels."""

import numpy as np
import pytest
from _isa import UNFUSED_LEVEL, kernels
from _isa import unfused as _isa_unfused
from _plans import PLAN_SETTINGS

import fastnorm


@pytest.mark.skipif(UNFUSED_LEVEL is None, reason="this build has no unfused kernels")
@pytest.mark.parametrize("unfused", [False, True])
def test_engine_multiply_add_is_what_it_says(unfused):
    """fused_multiply_add() tells whether y = (x - mean) * scale + shift is
    rounded once; check it on float64 data against an exact oracle (where the
    fused and unfused forms differ, which is about every other element), for
    the FMA kernels and for the unfused ones that CPUs without FMA run."""
    from fractions import Fraction

    from fastnorm._api import apply_coefs
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 4000)) * 3 + 1
    mean, scale, shift = 0.3141592653589793, 1.2345678901234567, 0.5772156649015329
    with _isa_unfused() if unfused else kernels():
        fused_now = E.fused_multiply_add()
        y = apply_coefs(x, np.full((1, 1), mean), np.full((1, 1), scale), np.full((1, 1), shift), num_threads=1).ravel()
        yl = apply_coefs(
            x.reshape(1, -1, 1),
            np.full((1, 1), mean),
            np.full((1, 1), scale),
            np.full((1, 1), shift),
            channel_axis=-1,
            num_threads=1,
        ).ravel()
    if unfused:
        assert not fused_now
    d = x.ravel() - mean
    plain = d * scale + shift
    exact = np.array([float(Fraction(v) * Fraction(scale) + Fraction(shift)) for v in d])
    assert (exact != plain).sum() > 100  # the data tell the two apart
    want = exact if fused_now else plain
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(yl, want)


@pytest.mark.skipif(UNFUSED_LEVEL is None, reason="this build has no unfused kernels")
def test_unfused_twin_gives_the_same_bits_in_every_plan():
    """The unfused kernels (CPUs without FMA) are as deterministic as the fused
    ones: every plan and thread count gives the same bits, and they differ from
    the fused ones only in the last place."""
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 130, 140)) * 4 + 300).astype(np.float32)
    fused = fastnorm.instance_norm(x, num_threads=2)
    with _isa_unfused():
        ref = fastnorm.instance_norm(x, num_threads=1).tobytes()
        for setting in PLAN_SETTINGS:
            told = E._tuning(**setting)
            try:
                for nt in (1, 2, 3):
                    assert fastnorm.instance_norm(x, num_threads=nt).tobytes() == ref, setting
            finally:
                E._tuning(*told)
    unf = np.frombuffer(ref, np.float32).reshape(x.shape)
    ulp = np.spacing(np.abs(fused))
    assert (np.abs(unf - fused) <= ulp).all()
