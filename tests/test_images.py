"""Image data as image code holds it: integer pixels read directly,
the output dtype, single images through layout=, on NumPy, torch and Dask."""

import numpy as np
import pytest
from _optional import require
from _reference import assert_close

import fastnorm

INTS = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]


def _pixels(rng, shape, dt):
    info = np.iinfo(dt)
    lo, hi = max(info.min, -(2**20)), min(info.max, 2**20)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)


@pytest.mark.parametrize("dt", INTS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "HWC", "HW", "NHW"])
def test_integers_equal_their_float32_copy(rng, dt, layout):
    shape = {"NCHW": (2, 3, 9, 11), "NHWC": (2, 9, 11, 3), "HWC": (13, 17, 3), "HW": (13, 17), "NHW": (4, 8, 9)}[layout]
    x = _pixels(rng, shape, dt)
    y = fastnorm.instance_norm(x, layout=layout)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, fastnorm.instance_norm(x.astype(np.float32), layout=layout))
    y64 = fastnorm.instance_norm(x, layout=layout, dtype=np.float64)
    assert y64.dtype == np.float64
    np.testing.assert_array_equal(y64, fastnorm.instance_norm(x.astype(np.float64), layout=layout))
    mean, var = fastnorm.instance_stats(x, layout=layout)
    assert mean.dtype == np.float64 and var.dtype == np.float64
    sp = tuple(i for i, ch in enumerate(layout) if ch in "HW")
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=sp), rtol=1e-12)
    np.testing.assert_allclose(var, x64.var(axis=sp), rtol=1e-10)


@pytest.mark.parametrize("dt", [np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("out", [np.float16, np.float32, np.float64])
def test_output_dtype_against_the_reference(rng, dt, out):
    x = _pixels(rng, (2, 3, 10, 12), dt)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    for act in (None, "relu", "silu"):
        y = fastnorm.instance_norm(x, w, b, dtype=out, activation=act)
        assert y.dtype == np.dtype(out)
        from _reference import instance_norm as ref

        assert_close(y, ref(x, w, b, activation=act), out)
        g = fastnorm.group_norm(x, 3, w, b, dtype=out, channel_axis=1)
        assert g.dtype == np.dtype(out)


def test_float_inputs_with_another_output_dtype(rng):
    x16 = rng.standard_normal((2, 4, 8, 8)).astype(np.float16)
    np.testing.assert_array_equal(
        fastnorm.instance_norm(x16, dtype=np.float32), fastnorm.instance_norm(x16.astype(np.float32))
    )
    x32 = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(
        fastnorm.instance_norm(x32, dtype="float64"), fastnorm.instance_norm(x32.astype(np.float64))
    )
    m, v = fastnorm.instance_stats(x32)
    np.testing.assert_array_equal(
        fastnorm.normalize(x32, m, v, dtype=np.float64), fastnorm.normalize(x32.astype(np.float64), m, v)
    )


def test_out_and_dtype_rules(rng):
    x = _pixels(rng, (2, 3, 8, 8), np.uint8)
    out = np.empty(x.shape, np.float32)
    assert fastnorm.instance_norm(x, out=out) is out
    np.testing.assert_array_equal(out, fastnorm.instance_norm(x.astype(np.float32)))
    with pytest.raises(TypeError, match=r"out must have dtype float64 \(the output dtype, dtype="):
        fastnorm.instance_norm(x, dtype=np.float64, out=out)
    with pytest.raises(TypeError, match="out must have dtype float32"):
        fastnorm.instance_norm(x, out=np.empty(x.shape, np.uint8))
    for bad in (np.int32, "uint8", np.complex64, "nonsense"):
        with pytest.raises(TypeError, match="dtype must be None or a floating dtype"):
            fastnorm.instance_norm(x, dtype=bad)
    with pytest.raises(TypeError, match="x must have"):
        fastnorm.instance_norm(x > 0)


def test_no_converted_copy_of_the_input(rng):
    """The kernels read the uint8 pixels: the call allocates the float32
    output and nothing of the input's size in float32 beyond it."""
    import tracemalloc

    x = _pixels(rng, (1, 3, 512, 512), np.uint8)
    fastnorm.instance_norm(x)  # warm up
    tracemalloc.start()
    y = fastnorm.instance_norm(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < y.nbytes + x.nbytes // 2, (peak, y.nbytes)


def test_layer_torch_and_dask_take_integers(rng):
    img = _pixels(rng, (3, 16, 20), np.uint8)
    ref = fastnorm.instance_norm(img, layout="CHW")
    np.testing.assert_array_equal(fastnorm.InstanceNorm(3, layout="CHW")(img), ref)
    torch = require("torch", reason="torch is not installed")
    t = fastnorm.instance_norm(torch.from_numpy(img), layout="CHW")  # what decode_image returns
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), ref)
    t64 = fastnorm.instance_norm(torch.from_numpy(img), layout="CHW", dtype=torch.float64)
    assert t64.dtype == torch.float64
    da = require("dask.array", reason="dask is not installed")
    for chunks in ((3, 16, 20), (1, 8, 10)):
        d = fastnorm.instance_norm(da.from_array(img, chunks=chunks), layout="CHW")
        assert d.dtype == np.float32
        np.testing.assert_allclose(d.compute(), ref, atol=2e-6)
        m, v = fastnorm.instance_stats(da.from_array(img, chunks=chunks), layout="CHW")
        assert m.dtype == np.float64
        np.testing.assert_allclose(m.compute(), img.reshape(3, -1).mean(1), rtol=1e-12)


def test_adain_alpha_0_is_the_content_whatever_the_style():
    rng = np.random.default_rng(3)
    content = rng.standard_normal((2, 3, 5, 7)) * 100 + 7
    style = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    bad_style = style.copy()
    bad_style[0, 1, 0, 0] = np.nan
    for s in (style, bad_style, np.zeros((1, 3, 0, 4), np.float32)):
        assert np.array_equal(fastnorm.adain(content, s, alpha=0.0), content)
        assert np.array_equal(
            fastnorm.adain(content, s, alpha=0.0, dtype=np.float16), content.astype(np.float32).astype(np.float16)
        )
    # a constant content plane with eps=0 (its rstd is inf): still the content
    flat = np.ones((1, 1, 4, 4), np.float32)
    assert np.array_equal(fastnorm.adain(flat, style[:, :1], eps=0.0, alpha=0.0), flat)
    u8 = rng.integers(0, 256, (1, 5, 6, 3), dtype=np.uint8)
    y = fastnorm.adain(u8, u8, alpha=0.0, channel_axis=-1)
    assert y.dtype == np.float32 and np.array_equal(y, u8.astype(np.float32))


@pytest.mark.parametrize("p", [600, -600])
def test_adain_of_float64_beyond_doubles_safe_range_is_scale_invariant(p):
    # squares of 2**600 or 2**-600 leave double's range: the planes are
    # redone from copies scaled by powers of two, as instance_norm does
    rng = np.random.default_rng(4)
    content = rng.standard_normal((2, 3, 5, 7))
    style = rng.standard_normal((1, 3, 4, 4)) * 3 + 1
    ref = fastnorm.adain(content, style, eps=0.0)
    y = fastnorm.adain(np.ldexp(content, p), style, eps=0.0)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-13)
    y = fastnorm.adain(content, np.ldexp(style, p), eps=0.0)
    np.testing.assert_allclose(y, np.ldexp(ref, p), rtol=1e-13, atol=np.ldexp(1e-13, p))
    # channels last
    cl = (0, 2, 3, 1)
    y = fastnorm.adain(np.ldexp(content, p).transpose(cl), style.transpose(cl), channel_axis=-1, eps=0.0)
    np.testing.assert_allclose(y, ref.transpose(cl), rtol=1e-13, atol=1e-13)


def test_dask_adain_alpha_0_is_the_content_as_numpys():
    da = require("dask.array", reason="dask is not installed")
    x = np.array([[[1e-8, 1.0, 3.0, 1e8]]], np.float32)
    xi = np.array([[[1.0, np.inf, 2.0]]])
    s = np.random.default_rng(5).standard_normal((1, 1, 5))
    for c, dt in ((x, None), (xi, None), (x, np.float16)):
        ref = fastnorm.adain(c, s.astype(c.dtype), alpha=0.0, dtype=dt)
        y = fastnorm.adain(da.from_array(c), s.astype(c.dtype), alpha=0.0, dtype=dt).compute()
        assert y.dtype == ref.dtype and np.array_equal(y, ref)


def test_adain_rescues_a_float64_style_beside_another_content_type():
    rng = np.random.default_rng(6)
    c32 = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    style = rng.standard_normal((1, 2, 3, 3))
    y = fastnorm.adain(c32, np.ldexp(style, 700), alpha=0.7, dtype=np.float64, eps=0.0)
    ref = fastnorm.adain(c32.astype(np.float64), np.ldexp(style, 700), alpha=0.7, eps=0.0)
    assert np.isfinite(y).all() and np.array_equal(y, ref)
