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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_backward_host_path_bits(rng, dtype):
    """The operators' backward views plain CPU tensors as arrays (no torch
    copies): its gradients are the NumPy backward's bits, in both memory
    formats, with a float32 or float64 weight; a grad_out in another memory
    format than x (the general path, which copies it) gives the same."""
    torch = require("torch", reason="torch is not installed")
    from fastnorm import _torch_ops as O

    dy, x, w = _data(rng)
    dy, x = dy.astype(dtype), x.astype(dtype)
    for wdt in (np.float32, np.float64):
        ww = w.astype(wdt)
        for fmt in (torch.contiguous_format, torch.channels_last):
            if fmt == torch.channels_last:  # the channels-last kernels, on the memory as (N, H, W, C)
                cl = [np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (dy, x)]
                ref = list(fastnorm.instance_norm_backward(*cl, ww, channel_axis=-1))
                ref[0] = np.moveaxis(ref[0], -1, 1)
            else:
                ref = fastnorm.instance_norm_backward(dy, x, ww)
            t, g = (torch.from_numpy(a).contiguous(memory_format=fmt) for a in (x, dy))
            assert O._backward_host(g, t, torch.from_numpy(ww)) is not None
            for gg in (g, g.contiguous()):  # the second: x channels_last, grad_out contiguous
                gx, gw, gb = O._backward_impl(gg, t, None, torch.from_numpy(ww), 1e-5)
                assert gx.is_contiguous(memory_format=fmt)
                assert gx.dtype == t.dtype and gw.dtype == gb.dtype == torch.from_numpy(ww).dtype
                np.testing.assert_array_equal(gx.numpy(), ref[0])
                np.testing.assert_array_equal(gw.numpy(), ref[1].astype(wdt))
                np.testing.assert_array_equal(gb.numpy(), ref[2].astype(wdt))


def test_torch_dense_check_cached_per_key_set():
    """_dense remembers its answer per dispatch key set: a negative-bit view
    is still refused after a plain tensor's answer was cached."""
    torch = require("torch", reason="torch is not installed")
    from fastnorm import _torch_ops as O

    plain = torch.randn(3)
    assert O._dense(plain) and O._dense(plain)
    assert not O._dense(plain._neg_view())
    assert not O._dense(torch.randn(3, dtype=torch.cfloat).conj())
    assert O._dense(torch.nn.Parameter(torch.randn(3)))
