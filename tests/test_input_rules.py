"""Every path of a call computes one function: the values the output type's
kernels load (float32 and 16-bit outputs read x.astype(float32)), the
16-bit outputs' range rescue, the fast and the general path, layouts on
ndarray subclasses; and arguments beyond float's range are refused by name."""

import warnings

import numpy as np
import pytest
from _optional import require

import fastnorm

ml_dtypes = require("ml_dtypes", reason="ml_dtypes is not installed (pip install ml_dtypes)")
OUT16 = [np.float16, ml_dtypes.bfloat16]


@pytest.mark.parametrize("odt", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_float64_into_narrower_output_reads_x_as_float32(rng, odt):
    """dtype=float32 or a 16-bit type on float64 data: the call on
    x.astype(float32), in every function (adain's statistics were of the
    float64 values while its apply read float32 ones)."""
    x = 1000.0 + 1e-3 * rng.standard_normal((2, 3, 40))
    s = rng.standard_normal((2, 3, 40))
    m, v = x.mean(-1), x.var(-1)
    xf = x.astype(np.float32)
    for f in (
        lambda a: fastnorm.instance_norm(a, dtype=odt),
        lambda a: fastnorm.instance_norm(a, np.linspace(0.5, 2, 3), dtype=odt, activation="relu"),
        lambda a: fastnorm.group_norm(a, 3, dtype=odt),
        lambda a: fastnorm.normalize(a, m, v, dtype=odt),
        lambda a: fastnorm.adain(a, s, dtype=odt),
        lambda a: fastnorm.adain(a, s.astype(np.float32), dtype=odt),
    ):
        np.testing.assert_array_equal(f(x), f(xf))


@pytest.mark.parametrize("odt", OUT16)
def test_16bit_rescue_reads_what_the_kernels_read(odt):
    """The float64 stand-in for a 16-bit output whose coefficients leave
    float (eps = 0 here) computes the kernels' function: float64 data read as
    float32, where these values are 0 and the constant plane gives NaN as
    float32's output does (the stand-in gave +-inf)."""
    t = np.array([[[1e-320, 0.0, 1e-320, 0.0]]])
    f32 = fastnorm.instance_norm(t, eps=0.0, dtype=np.float32)
    assert np.isnan(f32).all()
    got = fastnorm.instance_norm(t, eps=0.0, dtype=odt)
    assert np.isnan(got.astype(np.float32)).all()
    # where float32 data leave float's range only through the coefficients
    # (1 / sqrt(eps) > FLT_MAX), the output is the float64 result rounded
    y = np.array([[[3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0]]], np.float32)
    ref = fastnorm.instance_norm(y.astype(np.float64), eps=1e-300).astype(odt)
    np.testing.assert_array_equal(fastnorm.instance_norm(y, eps=1e-300, dtype=odt), ref)


def test_float16_tiny_eps_one_answer_on_every_path():
    """A constant float16 plane with eps below 1 / FLT_MAX**2: 0 on the bare
    fast path as on the paths with out=, weight= or groups (the fast path
    skipped the range check and gave 0 * inf = NaN); normalize and adain too."""
    x = np.full((1, 2, 4), 3.0, np.float16)
    x[0, 1] = [1.0, 2.0, 3.0, 4.0]
    ref = fastnorm.instance_norm(x.astype(np.float64), eps=1e-300).astype(np.float16)
    assert (ref[0, 0] == 0).all()
    for got in (
        fastnorm.instance_norm(x, eps=1e-300),
        fastnorm.instance_norm(x, eps=1e-300, out=np.empty_like(x)),
        fastnorm.instance_norm(x, np.ones(2), eps=1e-300),
        fastnorm.group_norm(x, 2, eps=1e-300),
    ):
        np.testing.assert_array_equal(got, ref)
    mean, var = x.astype(np.float64).mean(-1), x.astype(np.float64).var(-1)
    got = fastnorm.normalize(x, mean, var, eps=1e-300)
    np.testing.assert_array_equal(got, ref)
    style = np.random.default_rng(0).standard_normal((1, 2, 4)).astype(np.float16)
    got = fastnorm.adain(x, style, eps=1e-300)
    assert np.isfinite(got.astype(np.float32)).all()
    np.testing.assert_array_equal(got[0, 0], np.full(4, style[0, 0].astype(np.float64).mean(), np.float16))


def test_layout_on_a_matrix_subclass():
    """np.matrix stays 2-d under reshape: layout= read it as (N, C) instead of
    one (C, W) signal (group_norm silently wrong, instance_norm refused)."""
    a = np.array([[1.0, 2.0, 10.0, 20.0], [0.0, 1.0, 5.0, 9.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        m = np.matrix(a)
        o = np.matrix(np.zeros((2, 4)))
    np.testing.assert_array_equal(fastnorm.group_norm(m, 2, layout="CW"), fastnorm.group_norm(a, 2, layout="CW"))
    np.testing.assert_array_equal(fastnorm.instance_norm(m, layout="CW"), fastnorm.instance_norm(a, layout="CW"))
    fastnorm.instance_norm(m, layout="CW", out=o)
    np.testing.assert_array_equal(np.asarray(o), fastnorm.instance_norm(a, layout="CW"))
    for got, ref in zip(
        fastnorm.group_norm_backward(m, m, 2, layout="CW"), fastnorm.group_norm_backward(a, a, 2, layout="CW")
    ):
        np.testing.assert_array_equal(np.asarray(got), ref)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: fastnorm.instance_norm(x, eps=10**400), "eps"),
        (lambda x: fastnorm.group_norm(x, 2, eps=-(10**400)), "eps"),
        (lambda x: fastnorm.instance_norm(x, activation="leaky_relu", negative_slope=2**1100), "negative_slope"),
        (lambda x: fastnorm.adain(x, x, alpha=10**400), "alpha"),
        (lambda x: fastnorm.InstanceNorm(2, momentum=10**400), "momentum"),
        (lambda x: fastnorm.instance_norm(x, eps=2**100000), "eps"),
    ],
)
def test_ints_beyond_float_are_value_errors(call, name):
    x = np.ones((1, 2, 3), np.float32)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=rf"^{name} must be .*, got "):
        call(x)
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        fastnorm.instance_norm(x, eps=10**400, out=out) if name == "eps" else call(x)
    assert (out == 7.0).all()


def test_no_numpy_warnings_from_documented_results():
    """Results the contract defines (NaN for a constant plane at eps=0 times
    a zero weight, +-1 for a rescaled float64 group) raise no RuntimeWarning
    from fastnorm's own NumPy arithmetic."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fastnorm.instance_norm(np.full((1, 2, 5), 3.0), np.array([2.0, 0.0]), np.array([1.0, 1.0]), eps=0.0)
        assert np.isnan(y).all()
        g = fastnorm.group_norm(np.array([[[1e300, -1e300], [3e300, -3e300]]]), 1, channel_axis=-1)
        np.testing.assert_allclose(g, [[[1 / 5**0.5, -1 / 5**0.5], [3 / 5**0.5, -3 / 5**0.5]]], rtol=1e-15)
