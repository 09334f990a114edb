"""group_norm, fused activations, adain, moments, normalize, InstanceNorm layer."""

import _reference as R
import numpy as np
import pytest
from _optional import require

import fastnorm

DTYPES = [np.float32, np.float64, np.float16]


def make(rng, shape, dtype=np.float32, loc=0.0, scale=1.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def to_layout(x_cf, channel_axis):
    return x_cf if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(x_cf, 1, -1))


# ------------------------------------------------------------------ group_norm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("G", [1, 2, 3, 6])
def test_group_norm_reference(rng, dtype, channel_axis, G):
    x = to_layout(make(rng, (3, 6, 13, 11), dtype, loc=2.0), channel_axis)
    w = rng.uniform(0.5, 2, 6)
    b = rng.standard_normal(6)
    y = fastnorm.group_norm(x, G, w, b, eps=1e-4, channel_axis=channel_axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    R.assert_close(y, R.group_norm(x, G, w, b, 1e-4, channel_axis))


def test_group_norm_C_groups_is_instance_norm(rng):
    x = make(rng, (2, 5, 30, 30))
    np.testing.assert_array_equal(fastnorm.group_norm(x, 5), fastnorm.instance_norm(x))
    xl = to_layout(x, -1)
    np.testing.assert_array_equal(
        fastnorm.group_norm(xl, 5, channel_axis=-1), fastnorm.instance_norm(xl, channel_axis=-1)
    )


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("G", [1, 4, 8, 32])
def test_group_norm_vs_torch(rng, channel_axis, G):
    torch = require("torch")
    x = make(rng, (2, 32, 12, 10), loc=1.0, scale=3.0)
    w = rng.uniform(0.5, 2, 32).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    ref = torch.nn.functional.group_norm(torch.from_numpy(x), G, torch.from_numpy(w), torch.from_numpy(b)).numpy()
    y = fastnorm.group_norm(to_layout(x, channel_axis), G, w, b, channel_axis=channel_axis)
    y = y if channel_axis == 1 else np.moveaxis(y, -1, 1)
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("G", [0, 4, 5, -1])
def test_group_norm_bad_groups(G):
    x = np.zeros((2, 6, 4, 4), np.float32)
    out = np.full_like(x, 9.0)
    with pytest.raises(ValueError, match="num_groups"):
        fastnorm.group_norm(x, G, out=out)
    assert (out == 9).all()
    with pytest.raises(TypeError, match="num_groups"):
        fastnorm.group_norm(x, 2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_group_norm_threads_identical(rng, dtype, channel_axis):
    x = to_layout(make(rng, (1, 8, 300, 301), dtype), channel_axis)
    ys = [fastnorm.group_norm(x, 2, channel_axis=channel_axis, num_threads=t) for t in (1, 2, 3, 8)]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])


# ----------------------------------------------------------------- activations
@pytest.mark.parametrize(
    "activation,slope", [("relu", 0.01), ("leaky_relu", 0.2), ("leaky_relu", 0.01), ("silu", 0.01)]
)
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_activations_reference(rng, activation, slope, channel_axis, dtype):
    x = to_layout(make(rng, (2, 4, 21, 17), dtype), channel_axis)
    b = rng.standard_normal(4) * 0.5
    y = fastnorm.instance_norm(x, bias=b, channel_axis=channel_axis, activation=activation, negative_slope=slope)
    R.assert_close(y, R.instance_norm(x, None, b, 1e-5, channel_axis, activation, slope))
    y = fastnorm.group_norm(x, 2, bias=b, channel_axis=channel_axis, activation=activation, negative_slope=slope)
    R.assert_close(y, R.group_norm(x, 2, None, b, 1e-5, channel_axis, activation, slope))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu"])
def test_fused_activations_vs_torch(rng, activation):
    torch = require("torch")
    F = torch.nn.functional
    x = make(rng, (2, 8, 16, 16))
    t = torch.from_numpy(x)
    act = {"relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.2), "silu": F.silu}[activation]
    ref_in = act(F.instance_norm(t)).numpy()
    ref_gn = act(F.group_norm(t, 4)).numpy()
    np.testing.assert_allclose(fastnorm.instance_norm(x, activation=activation, negative_slope=0.2), ref_in, atol=2e-5)
    np.testing.assert_allclose(fastnorm.group_norm(x, 4, activation=activation, negative_slope=0.2), ref_gn, atol=2e-5)


def test_activation_errors():
    x = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ValueError, match="relu.*silu|silu"):
        fastnorm.instance_norm(x, activation="tanh")
    with pytest.raises(ValueError, match="activation"):
        fastnorm.group_norm(x, 1, activation="gelu")
    with pytest.raises(ValueError, match="negative_slope"):
        fastnorm.instance_norm(x, activation="leaky_relu", negative_slope=float("nan"))


# ------------------------------------------------------------------------ adain
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.0])
@pytest.mark.parametrize("style_batch", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adain_reference(rng, channel_axis, alpha, style_batch, dtype):
    content = to_layout(make(rng, (3, 4, 20, 24), dtype, loc=1.0, scale=2.0), channel_axis)
    style = to_layout(make(rng, (style_batch, 4, 9, 7), dtype, loc=-3.0, scale=0.5), channel_axis)
    y = fastnorm.adain(content, style, channel_axis=channel_axis, alpha=alpha)
    assert y.shape == content.shape and y.dtype == content.dtype
    R.assert_close(y, R.adain(content, style, 1e-5, channel_axis, alpha), dtype)


def test_adain_errors(rng):
    c = make(rng, (2, 3, 8, 8))
    with pytest.raises(ValueError, match="style"):
        fastnorm.adain(c, make(rng, (2, 4, 8, 8)))
    with pytest.raises(ValueError, match="style"):
        fastnorm.adain(c, make(rng, (3, 3, 8, 8)))
    with pytest.raises(ValueError, match="alpha"):
        fastnorm.adain(c, c, alpha=1.5)
    with pytest.raises(TypeError, match="alpha"):
        fastnorm.adain(c, c, alpha="1")
    with pytest.raises(TypeError, match="content"):
        fastnorm.adain(c > 0, c)
    with pytest.raises(TypeError, match="style"):
        fastnorm.adain(c, c.astype(np.complex64))


# ---------------------------------------------------------------------- moments
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tiled_moments_equal_whole(rng, channel_axis, axis):
    x_cf = make(rng, (2, 3, 40, 50, 6), np.float32, loc=100.0, scale=5.0)
    x = to_layout(x_cf, channel_axis)
    sp_axis = (2 + axis) if channel_axis == 1 else (1 + axis)
    n = x.shape[sp_axis]
    cuts = [0, n // 3, n // 3 + 1, n]
    tiles = [np.take(x, np.arange(a, b), axis=sp_axis) for a, b in zip(cuts[:-1], cuts[1:])]
    m = None
    for t in tiles:
        mt = fastnorm.instance_moments(t, channel_axis=channel_axis)
        m = mt if m is None else m.merge(mt)
    whole = fastnorm.instance_moments(x, channel_axis=channel_axis)
    rm, rv = R.stats(x, channel_axis)
    np.testing.assert_allclose(m.mean, rm, rtol=1e-14)
    np.testing.assert_allclose(m.var, rv, rtol=1e-12)
    np.testing.assert_allclose(m.mean, whole.mean, rtol=1e-14)
    np.testing.assert_allclose(m.m2, whole.m2, rtol=1e-12)
    np.testing.assert_array_equal(m.count, whole.count)
    m2 = fastnorm.merge_moments(
        tiles and fastnorm.instance_moments(tiles[0], channel_axis=channel_axis),
        fastnorm.instance_moments(tiles[1], channel_axis=channel_axis),
    )
    assert m2.mean.shape == (2, 3) and m2.count.dtype == np.float64


def test_moments_attributes(rng):
    x = make(rng, (2, 3, 5, 5), np.float64)
    m = fastnorm.instance_moments(x)
    assert isinstance(m, fastnorm.Moments)
    for a in (m.mean, m.m2, m.var):
        assert a.shape == (2, 3) and a.dtype == np.float64
    assert np.all(m.count == 25)
    np.testing.assert_allclose(m.var, x.var(axis=(2, 3)), rtol=1e-13)
    with pytest.raises(TypeError):
        fastnorm.merge_moments(m, 3)
    with pytest.raises(ValueError):
        m.merge(fastnorm.instance_moments(x[:1]))


# -------------------------------------------------------------------- normalize
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stats_shape", ["NC", "C"])
def test_normalize_reference(rng, channel_axis, dtype, stats_shape):
    x = to_layout(make(rng, (3, 4, 10, 12), dtype, loc=5.0), channel_axis)
    shape = (3, 4) if stats_shape == "NC" else (4,)
    mean = rng.standard_normal(shape) + 5
    var = rng.uniform(0.5, 2.0, shape)
    w = rng.uniform(0.5, 2, 4)
    b = rng.standard_normal(4)
    y = fastnorm.normalize(x, mean, var, w, b, eps=1e-3, channel_axis=channel_axis, activation="relu")
    R.assert_close(y, R.normalize(x, mean, var, w, b, 1e-3, channel_axis, "relu"))


def test_tiled_normalize_matches_instance_norm(rng):
    x = make(rng, (1, 3, 600, 200), loc=1e3)
    m = None
    for i in range(0, 600, 128):
        mt = fastnorm.instance_moments(x[:, :, i : i + 128])
        m = mt if m is None else m.merge(mt)
    y = np.concatenate([fastnorm.normalize(x[:, :, i : i + 128], m.mean, m.var) for i in range(0, 600, 128)], axis=2)
    np.testing.assert_allclose(y, fastnorm.instance_norm(x), atol=1e-6)


def test_normalize_errors():
    x = np.zeros((2, 3, 4), np.float32)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="mean"):
        fastnorm.normalize(x, np.zeros(4), np.ones(3), out=out)
    with pytest.raises(ValueError, match="var"):
        fastnorm.normalize(x, np.zeros(3), np.ones((3, 3)), out=out)
    with pytest.raises(ValueError, match="var"):
        fastnorm.normalize(x, np.zeros(3), -np.ones(3), out=out)
    with pytest.raises(TypeError, match="mean"):
        fastnorm.normalize(x, np.zeros(3, complex), np.ones(3), out=out)
    assert (out == 7).all()


# -------------------------------------------------------------- InstanceNorm layer
@pytest.mark.parametrize("momentum", [0.1, 0.3])
@pytest.mark.parametrize("affine", [True, False])
def test_instancenorm_layer_vs_torch(rng, momentum, affine):
    torch = require("torch")
    C = 5
    tm = torch.nn.InstanceNorm2d(C, affine=affine, track_running_stats=True, momentum=momentum)
    if affine:
        with torch.no_grad():
            tm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, C).astype(np.float32)))
            tm.bias.copy_(torch.from_numpy(rng.standard_normal(C).astype(np.float32)))
    layer = fastnorm.InstanceNorm(C, affine=affine, track_running_stats=True, momentum=momentum)
    layer.load_state_dict(tm.state_dict())
    tm.train()
    for step in range(3):
        x = make(rng, (4, C, 9, 8), loc=step, scale=1 + step)
        with torch.no_grad():
            ref = tm(torch.from_numpy(x)).numpy()
        y = layer(x, training=True)
        np.testing.assert_allclose(y, ref, atol=2e-5)
        np.testing.assert_allclose(layer.running_mean, tm.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.running_var, tm.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(layer.num_batches_tracked) == int(tm.num_batches_tracked)
    tm.eval()
    x = make(rng, (2, C, 7, 6), loc=1.0)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer(x), ref, atol=2e-5)
    # state_dict round trip into a fresh torch module
    sd = {k: torch.from_numpy(np.asarray(v)) for k, v in layer.state_dict().items()}
    tm2 = torch.nn.InstanceNorm2d(C, affine=affine, track_running_stats=True)
    tm2.load_state_dict(sd)
    tm2.eval()
    with torch.no_grad():
        np.testing.assert_allclose(tm2(torch.from_numpy(x)).numpy(), ref, atol=1e-6)


def test_instancenorm_layer_semantics(rng):
    x = make(rng, (2, 3, 6, 6), loc=4.0)
    plain = fastnorm.InstanceNorm(3)
    assert plain.weight is None and plain.running_mean is None
    np.testing.assert_array_equal(plain(x), fastnorm.instance_norm(x))
    np.testing.assert_array_equal(plain(x, training=True), fastnorm.instance_norm(x))
    tracked = fastnorm.InstanceNorm(3, track_running_stats=True, affine=True, momentum=None)
    assert (tracked.weight == 1).all() and (tracked.bias == 0).all()
    assert (tracked.running_mean == 0).all() and (tracked.running_var == 1).all()
    # eval with fresh running stats: (x - 0) / sqrt(1 + eps)
    R.assert_close(tracked(x), x / np.sqrt(1 + 1e-5))
    tracked(x, training=True)
    tracked(x + 2, training=True)
    # momentum=None: cumulative average of the two batches
    m1 = x.astype(np.float64).mean(axis=(2, 3)).mean(0)
    np.testing.assert_allclose(tracked.running_mean, (m1 + m1 + 2) / 2, rtol=1e-5)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    cl = fastnorm.InstanceNorm(3, channel_axis=-1)
    np.testing.assert_array_equal(cl(xl), fastnorm.instance_norm(xl, channel_axis=-1))
    with pytest.raises(ValueError, match="channels"):
        plain(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(KeyError):
        tracked.load_state_dict({"weight": np.ones(3)})
    with pytest.raises(ValueError, match="running_mean"):
        tracked.load_state_dict(
            {
                "weight": np.ones(3),
                "bias": np.zeros(3),
                "running_mean": np.zeros(4),
                "running_var": np.ones(3),
                "num_batches_tracked": 0,
            }
        )
