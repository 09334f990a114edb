"""Inputs at the ends of the floating types' ranges: float64 magnitudes
whose squares leave double, a float32 variance that overflows, silu at
extreme arguments."""

import numpy as np
import pytest

import fastnorm


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("scale", [1e154, 1e200, 1e300, 1e-300, 1e-160])
def test_float64_extreme_magnitudes_give_finite_results(scale, channel_axis):
    """float64 data whose squared deviations overflow (|x| > ~1e154) or
    underflow (|x| < ~1e-154) double: the normalized output is the exact
    result's rounding wherever that is finite (it came back NaN, 0 or inf)."""
    base = np.array([1.0, -1.0, 2.0, -2.0, 0.5, 3.0, -0.25, 1.5])
    x = np.stack([base * scale, base + 7.0, base[::-1] * scale]).reshape(1, 3, 8)
    want = fastnorm.instance_norm(np.stack([base, base + 7.0, base[::-1]]).reshape(1, 3, 8), eps=0.0)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        want = np.moveaxis(want, 1, -1)
    for nt in (1, 2):
        y = fastnorm.instance_norm(x, eps=0.0, channel_axis=channel_axis, num_threads=nt)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)
        g = fastnorm.group_norm(x, 3, eps=0.0, channel_axis=channel_axis, num_threads=nt)
        np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-13)
    # in place, and with an affine and an activation
    xi = x.copy()
    w, b = np.array([2.0, -1.0, 0.5]), np.array([0.1, 0.2, 0.3])
    fastnorm.instance_norm(xi, w, b, eps=0.0, channel_axis=channel_axis, out=xi)
    ref = want * w + b if channel_axis == -1 else want * w[:, None] + b[:, None]
    np.testing.assert_allclose(xi, ref, rtol=1e-13, atol=1e-13)
    r = fastnorm.instance_norm(x, w, b, eps=0.0, channel_axis=channel_axis, activation="relu")
    np.testing.assert_allclose(r, np.maximum(ref, 0), rtol=1e-13, atol=1e-13)


def test_float64_huge_magnitude_example_and_moments():
    x = np.array([[[1.0, -1, 2, -2]]]) * 1e154
    y = fastnorm.instance_norm(x)
    np.testing.assert_allclose(y.ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-8)
    m = fastnorm.instance_moments(x)
    assert m.mean[0, 0] == 0.0 and m.m2[0, 0] == np.inf  # 1e309 does not fit a double
    mean, var = fastnorm.instance_stats(x)
    assert var[0, 0] == np.inf  # 2.5e308 neither
    x2 = np.array([[[1.0, -1, 2, -2]]]) * 1e150
    mean, var = fastnorm.instance_stats(x2)
    np.testing.assert_allclose(var, [[2.5e300]], rtol=1e-14)
    m = fastnorm.instance_moments(x2 * 1e-450)
    np.testing.assert_allclose(m.m2, [[10.0 * 1e-600]], rtol=1e-13)  # underflow kept
    tiny = np.array([[[1.0, -1, 2, -2]]]) * 1e-300
    y = fastnorm.instance_norm(tiny, eps=0.0)
    np.testing.assert_allclose(y.ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-8)
    # NaN data keep their NaN; ordinary planes are unaffected
    z = np.array([[[1.0, np.nan, 2, -2], [1.0, 2.0, 3.0, 4.0]]])
    yz = fastnorm.instance_norm(z)
    assert np.isnan(yz[0, 0]).all() and np.isfinite(yz[0, 1]).all()


def test_float32_variance_overflow_is_not_silent():
    """float32 statistics of data above ~1.8e19 overflow (their variance is
    inf, the rounding of the exact value); normalize refuses an infinite
    variance instead of returning zeros."""
    x = (np.array([[[1.0, -1, 2, -2]]]) * 1e20).astype(np.float32)
    mean, var = fastnorm.instance_stats(x)
    assert var.dtype == np.float32 and var[0, 0] == np.inf
    with pytest.raises(ValueError, match="var must be finite, got inf"):
        fastnorm.normalize(x, mean, var)
    np.testing.assert_allclose(
        fastnorm.instance_norm(x).ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-6
    )


def test_silu_extremes():
    x = np.array([[[1.0, -1, 2, -2, 0]]], np.float32)
    y = fastnorm.instance_norm(x, weight=[-1e38], activation="silu")
    assert np.all(y[0, 0, [0, 2]] == 0) and np.all(np.signbit(y[0, 0, [0, 2]]))  # -0
    assert np.all(y[0, 0, [1, 3]] > 1e37)
    y = fastnorm.instance_norm(x, weight=[-1e39], activation="silu")  # > FLT_MAX
    assert not np.isnan(y).any()
    assert y[0, 0, 4] == 0 and np.all(y[0, 0, [0, 2]] == 0) and np.all(np.isinf(y[0, 0, [1, 3]]))
    for dt in (np.float16,) + ((__import__("ml_dtypes").bfloat16,) if _has("ml_dtypes") else ()):
        xh = x.astype(dt)
        for act in (None, "silu", "relu"):
            yh = fastnorm.instance_norm(xh, weight=[-1e300], activation=act)
            assert not np.isnan(yh.astype(np.float32)).any(), (dt, act)
            assert float(yh[0, 0, 4]) == 0.0  # x == mean: the bias
        for cl_x in (np.ascontiguousarray(np.moveaxis(xh, 1, -1)),):
            yh = fastnorm.instance_norm(cl_x, weight=[-1e300], channel_axis=-1, activation="silu")
            assert not np.isnan(yh.astype(np.float32)).any()
    s = fastnorm.normalize(
        np.array([[[-np.inf, np.inf, np.nan, -1e300, 1e300]]]),
        np.zeros((1, 1)),
        np.ones((1, 1)),
        eps=0.0,
        activation="silu",
    )
    assert s[0, 0, 0] == 0 and np.signbit(s[0, 0, 0]) and s[0, 0, 1] == np.inf
    assert np.isnan(s[0, 0, 2]) and s[0, 0, 3] == 0 and s[0, 0, 4] == 1e300


def _has(mod):
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_float32_silu_within_one_ulp(channel_axis):
    """float32 silu is the exact silu of the double normalized value rounded
    to float32 within 1 ulp (it was up to 2.2 ulp with float exp and sigmoid)."""
    from fractions import Fraction  # noqa: F401  (the exact check below uses float64 + a margin)

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((2, 3, 4000)) * 4).astype(np.float32)
    x.flat[::97] = rng.uniform(-90, 90, x.size // 97 + 1).astype(np.float32)[: x.flat[::97].size]
    mean, var = fastnorm.instance_stats(x.astype(np.float64))
    xx = x if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    mm, vv = mean.astype(np.float64), var.astype(np.float64)
    y = fastnorm.normalize(xx, mm, vv, eps=1e-5, activation="silu", channel_axis=channel_axis)
    if channel_axis == -1:
        y = np.moveaxis(y, -1, 1)
    v = np.array((x.astype(np.float64) - mm[..., None]) * (1.0 / np.sqrt(vv[..., None] + 1e-5)))
    with np.errstate(over="ignore"):
        exact = v / (1.0 + np.exp(-v))  # float64: ~1e-16 relative
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    err = np.abs(y.astype(np.float64) - exact) / ulp
    assert err.max() <= 1.0, err.max()


def test_float32_silu_sweep_and_limits():
    """silu of the float32 values themselves (mean 0, variance 1, eps 0, so
    the normalized value is x exactly): within 0.501 ulp of the exact silu
    over a dense sweep of [-110, 110] (the double formula rounds once; the
    margin is its exp's 1e-11), and exact at the limits: -0 below -708
    (the exact value is under 2.4e-305 in magnitude), x itself above 708."""
    sweep = np.linspace(-110, 110, 400_001)
    lim = np.array([-708.5, -709.0, -1e30, -np.inf, 707.9, 708.0, 800.0, 1e30, np.inf])
    x = np.concatenate([sweep, lim]).astype(np.float32)[None, None]
    y = fastnorm.normalize(x, np.zeros((1, 1)), np.ones((1, 1)), eps=0.0, activation="silu")[0, 0]
    v = x[0, 0, : sweep.size].astype(np.float64)
    exact = v / (1.0 + np.exp(-v))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    err = np.abs(y[: sweep.size].astype(np.float64) - exact) / ulp
    assert err.max() <= 0.501, err.max()
    tail = y[sweep.size :]
    assert np.array_equal(tail[:4], np.zeros(4, np.float32)) and np.all(np.signbit(tail[:4]))
    assert np.array_equal(tail[4:], lim[4:].astype(np.float32))
