"""An integer array of 2 or 3 dimensions without layout= or channel_axis= is
refused: an (H, W, 3) photo would otherwise be read as N=H, C=W, L=3 and
every pixel's R, G, B normalized against each other, silently."""

import numpy as np
import pytest
from _optional import require

import fastnorm

PHOTO = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def _stats(C):
    return np.zeros(C), np.ones(C)


CALLS = {
    "instance_norm": lambda x, **k: fastnorm.instance_norm(x, **k),
    "group_norm": lambda x, **k: fastnorm.group_norm(x, 1, **k),
    "instance_stats": lambda x, **k: fastnorm.instance_stats(x, **k),
    "instance_moments": lambda x, **k: fastnorm.instance_moments(x, **k),
    "normalize": lambda x, **k: fastnorm.normalize(x, *_stats(x.shape[-1 if k.get("channel_axis") == -1 else 1]), **k),
    "adain": lambda x, **k: fastnorm.adain(x, x, **k),
}

MESSAGE = (
    r'x of shape \(48, 64, 3\) and dtype uint8 is ambiguous without layout=.*layout="HWC".*layout="CHW".*layout="NCL"'
)


@pytest.mark.parametrize("fn", sorted(CALLS))
def test_3d_integer_without_layout_is_refused(fn):
    msg = MESSAGE.replace("x of", "content of") if fn == "adain" else MESSAGE
    with pytest.raises(ValueError, match=msg):
        CALLS[fn](PHOTO)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_every_integer_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="layout="):
        fastnorm.instance_norm(PHOTO.astype(dtype))


def test_2d_integer_without_layout_is_refused():
    gray = PHOTO[..., 0]
    with pytest.raises(ValueError, match=r'layout="HW".*channel_axis=1'):
        fastnorm.group_norm(gray, 1)
    with pytest.raises(ValueError, match=r'layout="HW"'):
        fastnorm.instance_norm(gray)
    # the same three suggestions as for a 3-D image
    with pytest.raises(ValueError, match=r'layout.*"HWC".*"CHW".*"NCL"'):
        fastnorm.instance_norm(gray)


def test_adains_integer_style_photo_is_refused():
    """The style is an image too: a uint8 (H, W, 3) style without layout= is
    refused by name, NumPy and torch alike."""
    content = PHOTO.astype(np.float32)
    with pytest.raises(ValueError, match=r"^style .*layout.*\"HWC\""):
        fastnorm.adain(content, PHOTO)
    y = fastnorm.adain(content, PHOTO, layout="HWC")
    assert y.shape == PHOTO.shape
    torch = require("torch", reason="torch is not installed")
    with pytest.raises(ValueError, match=r"^style .*layout"):
        fastnorm.adain(torch.from_numpy(content), torch.from_numpy(PHOTO))


@pytest.mark.parametrize("fn", sorted(CALLS))
def test_an_explicit_layout_or_channel_axis_is_honoured(fn):
    y = CALLS[fn](PHOTO, layout="NCL")
    ref = CALLS[fn](PHOTO.astype(np.float32), channel_axis=1)
    for a, b in zip(y if isinstance(y, tuple) else [y], ref if isinstance(ref, tuple) else [ref]):
        if isinstance(a, fastnorm.Moments):
            a, b = a.mean, b.mean
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-5)
    CALLS[fn](PHOTO, channel_axis=1)  # the old reading, asked for by name
    CALLS[fn](PHOTO, channel_axis=-1)


def test_the_photo_with_layout_hwc_is_per_channel():
    y = fastnorm.instance_norm(PHOTO, layout="HWC")
    assert y.dtype == np.float32 and y.shape == PHOTO.shape
    np.testing.assert_allclose(y.reshape(-1, 3).mean(0), 0, atol=1e-5)


def test_floats_and_4d_integers_keep_the_default():
    fastnorm.instance_norm(PHOTO.astype(np.float32))  # float (N, C, L): the documented default
    fastnorm.instance_norm(PHOTO[None])  # 4-D uint8: (N, C, H, W), not ambiguous


def test_torch_uint8_chw_tensor_is_refused():
    torch = require("torch", reason="torch is not installed")
    t = torch.from_numpy(PHOTO.transpose(2, 0, 1).copy())  # (3, 48, 64) uint8, as decode_image gives
    with pytest.raises(ValueError, match=r'x of shape \(3, 48, 64\) and dtype uint8 is ambiguous.*layout="CHW"'):
        fastnorm.instance_norm(t)
    # channels-last memory (a permuted view) is refused too, before it picks an axis
    with pytest.raises(ValueError, match="ambiguous"):
        fastnorm.instance_stats(torch.from_numpy(PHOTO).permute(2, 0, 1))
    y = fastnorm.instance_norm(t, layout="CHW")
    assert y.dtype == torch.float32 and tuple(y.shape) == (3, 48, 64)


def test_dask_uint8_photo_is_refused():
    da = require("dask.array", reason="dask is not installed")
    x = da.from_array(PHOTO, chunks=(16, 64, 3))
    for fn in ("instance_norm", "group_norm", "instance_stats", "normalize"):
        with pytest.raises(ValueError, match="ambiguous.*layout="):
            CALLS[fn](x)
    y = fastnorm.instance_norm(x, layout="HWC").compute()
    np.testing.assert_array_equal(y, fastnorm.instance_norm(PHOTO, layout="HWC"))


def test_the_numpy_layer_refuses_an_integer_photo_without_axes():
    """fastnorm.InstanceNorm built without layout or channel_axis reads x as
    the functions do: a uint8 (H, W, 3) photo is refused, with layout or
    channel_axis given at construction it runs."""
    with pytest.raises(ValueError, match=r"layout"):
        fastnorm.InstanceNorm(64)(PHOTO)
    with pytest.raises(ValueError, match=r"layout"):
        fastnorm.InstanceNorm(64, track_running_stats=True)(PHOTO, training=True)
    y = fastnorm.InstanceNorm(3, layout="HWC")(PHOTO)
    np.testing.assert_array_equal(y, fastnorm.instance_norm(PHOTO, layout="HWC"))
    assert fastnorm.InstanceNorm(64, channel_axis=1)(PHOTO).shape == PHOTO.shape
