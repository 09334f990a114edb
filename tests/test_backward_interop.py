"""The backward functions take every array type and layout= like the forward
ones: torch tensors (channels_last kept), Dask arrays (any
chunking), layouts without a batch axis."""

import numpy as np
import pytest
from _optional import require

import fastnorm


def _data(rng, shape=(3, 6, 10, 8)):
    x = rng.standard_normal(shape) * 2 + 1
    return rng.standard_normal(shape), x, rng.standard_normal(shape[1])


def test_backward_with_layout(rng):
    dy, x, w = _data(rng)
    ref = fastnorm.instance_norm_backward(dy, x, w)
    nhwc = [np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (dy, x)]
    gx, gw, gb = fastnorm.instance_norm_backward(*nhwc, w, layout="NHWC")
    np.testing.assert_allclose(np.moveaxis(gx, -1, 1), ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, ref[1], rtol=1e-12)
    gx1, gw1, gb1 = fastnorm.instance_norm_backward(dy[0], x[0], w, layout="CHW")
    r1 = fastnorm.instance_norm_backward(dy[:1], x[:1], w)
    assert gx1.shape == x[0].shape and gw1.shape == (6,)
    np.testing.assert_array_equal(gx1, r1[0][0])
    np.testing.assert_array_equal(gb1, r1[2])
    with pytest.raises(ValueError, match="layout='CHW' does not fit"):
        fastnorm.instance_norm_backward(dy, x, layout="CHW")


def test_backward_torch(rng):
    torch = require("torch", reason="torch is not installed")
    dy, x, w = _data(rng)
    ref = fastnorm.group_norm_backward(dy, x, 3, w)
    for fmt in (torch.contiguous_format, torch.channels_last):
        t, g = (torch.from_numpy(a).contiguous(memory_format=fmt) for a in (x, dy))
        gx, gw, gb = fastnorm.group_norm_backward(g, t, 3, torch.from_numpy(w))
        assert isinstance(gx, torch.Tensor) and gx.is_contiguous(memory_format=fmt)
        np.testing.assert_allclose(gx.numpy(), ref[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw.numpy(), ref[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunks", [(3, 6, 10, 8), (1, 2, 5, 8), (2, 4, 3, 3)])
def test_backward_dask(rng, chunks):
    da = require("dask.array", reason="dask is not installed")
    dy, x, w = _data(rng)
    ref = fastnorm.group_norm_backward(dy, x, 3, w)
    r = fastnorm.group_norm_backward(da.from_array(dy, chunks=chunks), da.from_array(x, chunks=chunks), 3, w)
    for a, b in zip(r, ref):
        np.testing.assert_allclose(a.compute(scheduler="synchronous"), b, rtol=1e-12, atol=1e-12)
