"""The CPU reference suite on CuPy arrays (runs where a CUDA GPU and CuPy exist)."""

import numpy as np
import pytest
from _optional import require

cp = require("cupy", reason="CuPy is not installed (pip install 'pyfastnorm[gpu]')")
try:
    HAVE_GPU = cp.cuda.runtime.getDeviceCount() > 0
except Exception:  # no driver
    HAVE_GPU = False
pytestmark = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU available")

import _reference as R  # noqa: E402

import fastnorm  # noqa: E402

DTYPES = [np.float32, np.float64, np.float16]
# planes that take the warp, the block and the split paths
SHAPES = [(4, 6, 7, 9), (2, 3, 60, 70), (1, 2, 300, 301), (3, 2, 1000), (1, 3, 2, 3, 4)]


def make(shape, dtype, loc=0.5, scale=2.0, seed=0):
    return (loc + scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_gpu(shape, dtype, channel_axis, affine):
    x = make(shape, dtype)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    C = x.shape[channel_axis]
    w = np.linspace(0.5, 2, C) if affine else None
    b = np.linspace(-1, 1, C) if affine else None
    y = fastnorm.instance_norm(cp.asarray(x), w, b, channel_axis=channel_axis)
    assert isinstance(y, cp.ndarray) and y.dtype == x.dtype and y.shape == x.shape
    R.assert_close(cp.asnumpy(y), R.instance_norm(x, w, b, 1e-5, channel_axis))


@pytest.mark.parametrize("loc", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("shape", [(2, 3, 10, 10), (1, 3, 300, 301)])
def test_precision_gpu(loc, shape):
    x = make(shape, np.float32, loc=loc, scale=1.0)
    y = cp.asnumpy(fastnorm.instance_norm(cp.asarray(x))).astype(np.float64)
    assert np.abs(y - R.instance_norm(x)).max() <= 1e-6


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_other_functions_gpu(channel_axis):
    x = make((2, 6, 40, 30), np.float32)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    g = cp.asarray(x)
    R.assert_close(
        cp.asnumpy(fastnorm.group_norm(g, 3, channel_axis=channel_axis, activation="silu")),
        R.group_norm(x, 3, None, None, 1e-5, channel_axis, "silu"),
    )
    mean, var = fastnorm.instance_stats(g, channel_axis=channel_axis)
    rm, rv = R.stats(x, channel_axis)
    np.testing.assert_allclose(cp.asnumpy(mean), rm, rtol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(var), rv, rtol=1e-5)
    m = fastnorm.instance_moments(g, channel_axis=channel_axis)
    np.testing.assert_allclose(cp.asnumpy(m.var), rv, rtol=1e-10)
    R.assert_close(
        cp.asnumpy(fastnorm.normalize(g, rm, rv, channel_axis=channel_axis)),
        R.normalize(x, rm, rv, channel_axis=channel_axis),
    )
    style = x[:1] * 3 - 1
    R.assert_close(
        cp.asnumpy(fastnorm.adain(g, cp.asarray(style), channel_axis=channel_axis, alpha=0.5)),
        R.adain(x, style, 1e-5, channel_axis, 0.5),
    )


def test_out_in_place_strided_gpu():
    x = make((2, 3, 50, 40), np.float32)
    g = cp.asarray(x)
    out = cp.empty_like(g)
    assert fastnorm.instance_norm(g, out=out) is out
    gi = g.copy()
    assert fastnorm.instance_norm(gi, out=gi) is gi
    np.testing.assert_array_equal(cp.asnumpy(gi), cp.asnumpy(out))
    v = g[:, :, ::2, ::-1]
    R.assert_close(cp.asnumpy(fastnorm.instance_norm(v)), R.instance_norm(x[:, :, ::2, ::-1]))


def test_bad_input_gpu():
    g = cp.asarray(make((2, 3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="x"):
        fastnorm.instance_norm(g.astype(cp.int32))
    with pytest.raises(ValueError, match="channel_axis"):
        fastnorm.instance_norm(g, channel_axis=2)
    with pytest.raises(TypeError, match="out"):
        fastnorm.instance_norm(g, out=np.empty((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="eps"):
        fastnorm.instance_norm(g, eps=-1)
