"""Edge numerics: values near the float32 maximum, subnormals, constant planes
(and eps = 0 on them), activations of infinities and NaN."""

import _reference as R
import numpy as np
import pytest

import fastnorm


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_near_float32_max(channel_axis):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, (2, 3, 40, 30)) * 3.0e38).astype(np.float32)
    x[0, 0] = np.float32(3.4e38)  # a constant plane at the limit
    x[0, 0, 0, 0] = -3.4e38
    xx = x if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = fastnorm.instance_norm(xx, channel_axis=channel_axis)
    assert np.isfinite(y).all(), "variance overflowing float32 must not give inf"
    R.assert_close(y, R.instance_norm(xx, channel_axis=channel_axis))
    m = fastnorm.instance_moments(xx, channel_axis=channel_axis)
    assert np.isfinite(m.var).all() and (m.var > 1e76).any()
    yg = fastnorm.group_norm(xx, 1, channel_axis=channel_axis)
    assert np.isfinite(yg).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_inputs(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    rng = np.random.default_rng(2)
    x = (rng.integers(-1000, 1000, (2, 3, 20, 20)) * tiny).astype(dtype)
    # float32 subnormals: the double accumulator holds their variance, so even
    # eps = 0 normalizes them exactly; float64 ones square to 0 in any float64 code
    eps = 0.0 if dtype == np.float32 else 1e-300
    y = fastnorm.instance_norm(x, eps=eps)
    assert np.isfinite(y).all()
    R.assert_close(y, R.instance_norm(x, eps=eps))
    mean, var = fastnorm.instance_stats(x)
    assert (var >= 0).all()


def test_all_equal_planes_and_eps_zero():
    x = np.full((2, 3, 16, 16), -2.5, np.float32)
    b = np.array([0.5, -1.0, 2.0])
    y = fastnorm.instance_norm(x, bias=b)
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), x.shape).astype(np.float32))
    # eps = 0 on a constant plane: 0 / 0 -> NaN, documented, never a crash
    for f in (
        lambda a: fastnorm.instance_norm(a, eps=0.0),
        lambda a: fastnorm.group_norm(a, 3, eps=0.0),
        lambda a: fastnorm.instance_norm(np.ascontiguousarray(np.moveaxis(a, 1, -1)), eps=0.0, channel_axis=-1),
    ):
        assert np.isnan(f(x)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_activations_on_infinities_and_nan(dtype, channel_axis):
    """relu(-inf) is +0 (it was NaN when relu was computed as v * 0 + 0),
    relu(NaN) and leaky_relu(NaN) stay NaN, leaky_relu(-inf) is -inf; through
    normalize() with given statistics, so the infinities reach the apply."""
    vals = np.array([-np.inf, -3.0, -0.0, 0.0, 2.5, np.inf, np.nan] * 5)
    x = vals.reshape(1, 1, -1).astype(dtype)
    m, v = np.zeros((1, 1)), np.ones((1, 1))
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    with np.errstate(invalid="ignore"):
        relu = fastnorm.normalize(x, m, v, eps=0.0, activation="relu", channel_axis=channel_axis)
        leaky = fastnorm.normalize(
            x, m, v, eps=0.0, activation="leaky_relu", negative_slope=0.5, channel_axis=channel_axis
        )
    want_relu = np.where(vals < 0, 0.0, vals).astype(dtype)
    want_leaky = np.where(vals < 0, vals * 0.5, vals).astype(dtype)
    np.testing.assert_array_equal(relu.ravel(), want_relu)
    np.testing.assert_array_equal(leaky.ravel(), want_leaky)
