"""layout=: every layout against a float64 reference that reduces
over the layout's spatial letters directly, statistics in the layout's shape,
the layer, torch and Dask, and every kind of bad layout."""

import numpy as np
import pytest
from _optional import require
from _reference import assert_close

import fastnorm

LAYOUTS = [
    "NCHW",
    "NHWC",
    "CHW",
    "HWC",
    "HW",
    "NHW",
    "DHW",
    "CDHW",
    "NDHWC",
    "NCL",
    "NLC",
    "L",
    "NCDHW",
    "CL",
    "LC",
    "NL",
]
SIZES = {"N": 2, "C": 3, "D": 3, "H": 5, "W": 7, "L": 11}


def _shape(layout):
    return tuple(SIZES[ch] for ch in layout)


def _ref(x, layout, weight=None, bias=None, eps=1e-5):
    x64 = x.astype(np.float64)
    sp = tuple(i for i, ch in enumerate(layout) if ch in "DHWL")
    mean = x64.mean(axis=sp, keepdims=True)
    var = x64.var(axis=sp, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + eps)
    bshape = [1] * x.ndim
    if "C" in layout:
        bshape[layout.index("C")] = -1
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(bshape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(bshape)
    stat_axes = tuple(i for i, ch in enumerate(layout) if ch in "NC")
    keep = tuple(x.shape[i] for i in stat_axes)
    return y, mean.reshape(keep), var.reshape(keep)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_every_layout_against_the_reference(layout, dtype, rng):
    x = (rng.standard_normal(_shape(layout)) * 3 + 10).astype(dtype)
    C = SIZES["C"] if "C" in layout else 1
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    ref, rmean, rvar = _ref(x, layout, w, b)
    y = fastnorm.instance_norm(x, w, b, layout=layout)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert_close(y, ref, dtype)
    mean, var = fastnorm.instance_stats(x, layout=layout)
    assert mean.shape == rmean.shape and var.shape == rvar.shape
    np.testing.assert_allclose(mean, rmean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    m = fastnorm.instance_moments(x, layout=layout)
    assert m.mean.shape == m.m2.shape == m.count.shape == rmean.shape
    # normalize takes the statistics in the layout's shape
    z = fastnorm.normalize(x, mean, var, w, b, layout=layout)
    assert_close(z, ref, dtype)
    # group norm with one group per channel is instance norm
    np.testing.assert_array_equal(fastnorm.group_norm(x, C, w, b, layout=layout), y)


def test_layout_is_the_channel_axis_view(rng):
    """A layout maps to the same kernels as channel_axis on a view: equal bits."""
    x = rng.standard_normal((2, 9, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(fastnorm.instance_norm(x, layout="NHWC"), fastnorm.instance_norm(x, channel_axis=-1))
    img = x[0]
    np.testing.assert_array_equal(
        fastnorm.instance_norm(img, layout="HWC"), fastnorm.instance_norm(img[None], channel_axis=-1)[0]
    )
    gray = img[..., 0]
    np.testing.assert_array_equal(
        fastnorm.instance_norm(gray, layout="HW"), fastnorm.instance_norm(gray[None, None])[0, 0]
    )
    mean, var = fastnorm.instance_stats(gray, layout="HW")
    assert mean.shape == () and var.shape == () and isinstance(mean, np.ndarray)


def test_layout_with_out_adain_and_activation(rng):
    x = rng.standard_normal((6, 8, 3)).astype(np.float32)
    out = np.full_like(x, np.nan)
    r = fastnorm.instance_norm(x, layout="HWC", activation="relu", out=out)
    assert r is out
    np.testing.assert_array_equal(out, fastnorm.instance_norm(x[None], channel_axis=-1, activation="relu")[0])
    style = (rng.standard_normal((4, 5, 3)) * 2 + 1).astype(np.float32)
    y = fastnorm.adain(x, style, layout="HWC")
    np.testing.assert_array_equal(y, fastnorm.adain(x[None], style[None], channel_axis=-1)[0])
    with pytest.raises(ValueError, match=r"out must have shape \(6, 8, 3\)"):
        fastnorm.instance_norm(x, layout="HWC", out=np.empty((1, 6, 8, 3), np.float32))


@pytest.mark.parametrize(
    "layout, shape, why",
    [
        ("NCHW", (2, 3, 4), "4 letters for 3 dimensions"),
        ("HCW", (4, 3, 5), "C \\(the channel axis\\) must come"),
        ("HNW", (4, 2, 5), "N \\(the batch axis\\) must come first"),
        ("NC", (2, 3), "at least one spatial axis"),
        ("HH", (4, 4), "a letter repeats"),
        ("XY", (4, 4), "'X' is not an axis letter"),
        ("nchw", (2, 3, 4, 4), "'n' is not an axis letter"),
        ("CNHW", (3, 2, 4, 4), "N \\(the batch axis\\) must come first"),
    ],
)
def test_bad_layouts_name_layout_value_and_shape(layout, shape, why):
    x = np.zeros(shape, np.float32)
    shp = "\\(" + ", ".join(map(str, shape)) + "\\)"
    for call in (
        lambda: fastnorm.instance_norm(x, layout=layout),
        lambda: fastnorm.instance_stats(x, layout=layout),
        lambda: fastnorm.group_norm(x, 1, layout=layout),
    ):
        with pytest.raises(ValueError, match=f"layout={layout!r} does not fit x of shape {shp}: .*{why}"):
            call()
    with pytest.raises(TypeError, match="layout must be None or a string"):
        fastnorm.instance_norm(np.zeros((1, 1, 4), np.float32), layout=["N", "C", "L"])


def test_layout_and_channel_axis_together_is_an_error():
    x = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="layout='HWC' and channel_axis=-1"):
        fastnorm.instance_norm(x, layout="HWC", channel_axis=-1)
    with pytest.raises(ValueError, match="layout or channel_axis, not both"):
        fastnorm.InstanceNorm(3, layout="HWC", channel_axis=-1)


def test_weight_length_follows_the_layout(rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = fastnorm.instance_norm(x, [2.0], [1.0], layout="HW")
    np.testing.assert_allclose(y, _ref(x, "HW", [2.0], [1.0])[0], atol=2e-6)
    with pytest.raises(ValueError, match="weight must have length C=1"):
        fastnorm.instance_norm(x, [1.0, 2.0], layout="HW")


def test_layer_takes_a_layout(rng):
    chw = rng.standard_normal((3, 8, 8)).astype(np.float32)
    layer = fastnorm.InstanceNorm(3, layout="CHW", affine=True, track_running_stats=True)
    y = layer(chw, training=True)
    np.testing.assert_array_equal(y, fastnorm.instance_norm(chw, layer.weight, layer.bias, layout="CHW"))
    np.testing.assert_allclose(layer.running_mean, 0.9 * 0 + 0.1 * chw.reshape(3, -1).mean(1), rtol=1e-5)
    ev = layer(chw)  # running statistics in evaluation
    assert ev.shape == chw.shape
    with pytest.raises(ValueError, match="3 channels"):
        fastnorm.InstanceNorm(3)(chw)  # channels first needs the batch axis
    with pytest.raises(ValueError, match="layout='XYZ'"):
        fastnorm.InstanceNorm(3, layout="XYZ")


def test_layout_through_torch_and_dask(rng):
    x = (rng.standard_normal((3, 16, 20)) * 5 + 2).astype(np.float32)
    ref = fastnorm.instance_norm(x, layout="CHW")
    torch = require("torch", reason="torch is not installed")
    with torch.no_grad():
        t = fastnorm.instance_norm(torch.from_numpy(x), layout="CHW")
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == x.shape
    np.testing.assert_array_equal(t.numpy(), ref)
    tm, tv = fastnorm.instance_stats(torch.from_numpy(x), layout="CHW")
    assert tuple(tm.shape) == (3,)
    da = require("dask.array", reason="dask is not installed")
    for chunks in ((3, 16, 20), (1, 8, 20)):  # whole planes; spatial chunks
        d = da.from_array(x, chunks=chunks)
        np.testing.assert_allclose(fastnorm.instance_norm(d, layout="CHW").compute(), ref, atol=2e-6)
        m, v = fastnorm.instance_stats(d, layout="CHW")
        assert m.shape == (3,)
        np.testing.assert_allclose(m.compute(), x.reshape(3, -1).mean(1), rtol=1e-5)


def test_statistics_for_a_layout_without_c_are_checked_in_the_callers_shape():
    x = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    for bad in (np.zeros((2, 3)), np.zeros(3)):
        with pytest.raises(ValueError, match=r"mean must have shape \(2,\) or \(\) for layout='NHW'.*got shape"):
            fastnorm.normalize(x, bad, np.ones(2), layout="NHW")
    with pytest.raises(ValueError, match=r"var must have shape \(\) for layout='HW'.*got shape \(2,\)"):
        fastnorm.normalize(x[0], 0.0, [1.0, 1.0], layout="HW")
    ref = fastnorm.normalize(x, np.zeros(2), np.ones(2), layout="NHW")
    for shared in (0.0, np.zeros(1)):  # one value for every instance
        np.testing.assert_array_equal(fastnorm.normalize(x, shared, np.ones_like(shared), layout="NHW"), ref)
