"""instance_norm / instance_stats against the float64 oracle."""

import _reference as R
import numpy as np
import pytest
from _optional import require

import fastnorm

DTYPES = [np.float32, np.float64, np.float16]
SHAPES = [(2, 3, 17), (2, 5, 6, 7), (1, 4, 3, 5, 6), (3, 2, 40, 50), (1, 3, 130, 129)]


def make(rng, shape, dtype, loc=0.0, scale=1.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def cl_shape(shape):
    return (shape[0],) + shape[2:] + (shape[1],)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_matches_reference(rng, shape, dtype, channel_axis):
    if channel_axis == -1:
        shape = cl_shape(shape)
    x = make(rng, shape, dtype, loc=0.5, scale=2.0)
    y = fastnorm.instance_norm(x, channel_axis=channel_axis)
    assert y.shape == x.shape and y.dtype == x.dtype and y.flags.c_contiguous
    R.assert_close(y, R.instance_norm(x, channel_axis=channel_axis))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_axis", [1, -1, 3])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.5, 0.0])
def test_affine_and_eps(rng, dtype, channel_axis, eps):
    shape = (3, 4, 9, 11) if channel_axis == 1 else (3, 9, 11, 4)
    x = make(rng, shape, dtype)
    w = rng.uniform(0.5, 2.0, 4)
    b = rng.standard_normal(4)
    for wt, bt in ((w, b), (w.astype(np.float32), None), (None, b.astype(np.float16)), (list(w), list(b))):
        y = fastnorm.instance_norm(x, wt, bt, eps=eps, channel_axis=channel_axis)
        ref = R.instance_norm(
            x,
            None if wt is None else np.asarray(wt, np.float64),
            None if bt is None else np.asarray(bt, np.float64),
            eps,
            channel_axis,
        )
        R.assert_close(y, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_inputs(rng, dtype):
    base = make(rng, (4, 6, 20, 22), dtype)
    views = {
        "slice": base[:, :, 2:18:2, 1:],
        "negative": base[::-1, :, ::-1, ::-3],
        "fortran": np.asfortranarray(base),
        "transposed": np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "channels_last_memory": np.ascontiguousarray(np.moveaxis(base, 1, -1)).transpose(0, 3, 1, 2),
    }
    for name, v in views.items():
        assert not v.flags.c_contiguous or name == "fortran" and v.ndim < 2
        y = fastnorm.instance_norm(v)
        assert y.flags.c_contiguous, name
        R.assert_close(y, R.instance_norm(v))
        # the same views, channels last
        vl = np.moveaxis(v, 1, -1)
        R.assert_close(fastnorm.instance_norm(vl, channel_axis=-1), R.instance_norm(vl, channel_axis=-1))


def test_array_like_input():
    x = [[[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]]]
    y = fastnorm.instance_norm(x)
    assert y.dtype == np.float64
    R.assert_close(y, R.instance_norm(np.array(x)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_out_and_in_place(rng, dtype, channel_axis):
    x = make(rng, (2, 3, 33, 31), dtype)
    ref = R.instance_norm(x, channel_axis=channel_axis)
    out = np.full_like(x, np.nan)
    r = fastnorm.instance_norm(x, out=out, channel_axis=channel_axis)
    assert r is out
    R.assert_close(out, ref)
    xi = x.copy()
    r = fastnorm.instance_norm(xi, out=xi, channel_axis=channel_axis)
    assert r is xi
    np.testing.assert_array_equal(xi, fastnorm.instance_norm(x, channel_axis=channel_axis))


def test_out_overlapping_input_is_safe(rng):
    buf = make(rng, (2, 2, 3, 20), np.float32)
    x = buf[:, :, :, :15]
    want = fastnorm.instance_norm(x)
    outbuf = np.empty(2 * 2 * 3 * 20, np.float32)
    # out shares memory with x but is not x
    big = make(rng, (2 * 2 * 3 * 15 + 7,), np.float32)
    x2 = big[7:].reshape(2, 2, 3, 15)
    out2 = big[:-7].reshape(2, 2, 3, 15)
    want2 = fastnorm.instance_norm(x2.copy())
    fastnorm.instance_norm(x2, out=out2)
    np.testing.assert_array_equal(out2, want2)
    del outbuf, want


@pytest.mark.parametrize("loc", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_float32_precision_large_offsets(rng, loc, channel_axis):
    """max |error| <= 1e-6 against float64 on the same float32 input, mean/std up to 1e6."""
    shape = (2, 3, 300, 301) if channel_axis == 1 else (2, 300, 301, 3)
    x = make(rng, shape, np.float32, loc=loc, scale=1.0)
    y = fastnorm.instance_norm(x, channel_axis=channel_axis).astype(np.float64)
    err = np.abs(y - R.instance_norm(x, channel_axis=channel_axis)).max()
    assert err <= 1e-6, err


def test_float32_precision_1080p():
    x = (1e4 + np.random.default_rng(7).standard_normal((1, 3, 1080, 1920))).astype(np.float32)
    err = np.abs(fastnorm.instance_norm(x).astype(np.float64) - R.instance_norm(x)).max()
    assert err <= 1e-6, err


@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 700, 500), (3, 2, 64, 64), (2, 40, 9, 10), (5, 17, 4099)])
def test_bit_identical_across_threads(rng, shape, dtype, channel_axis):
    if channel_axis == -1:
        shape = cl_shape(shape)
    x = make(rng, shape, dtype, loc=3.0)
    w = rng.uniform(0.5, 2, x.shape[channel_axis])
    ys = [fastnorm.instance_norm(x, w, eps=1e-3, channel_axis=channel_axis, num_threads=t) for t in (1, 2, 3, 8)]
    ms = [fastnorm.instance_stats(x, channel_axis=channel_axis, num_threads=t) for t in (1, 2, 3, 8)]
    for y, (m, v) in zip(ys[1:], ms[1:]):
        assert np.array_equal(y, ys[0], equal_nan=True)
        assert np.array_equal(m, ms[0][0]) and np.array_equal(v, ms[0][1])


def test_threadpoolctl_limits_are_respected(rng):
    threadpoolctl = require("threadpoolctl")
    x = make(rng, (1, 3, 512, 512), np.float32)
    ref = fastnorm.instance_norm(x)
    with threadpoolctl.threadpool_limits(1):
        from fastnorm._cpu import _engine

        assert _engine.default_threads() == 1
        np.testing.assert_array_equal(fastnorm.instance_norm(x), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_instance_stats(rng, dtype, channel_axis):
    shape = (3, 4, 50, 70) if channel_axis == 1 else (3, 50, 70, 4)
    x = make(rng, shape, dtype, loc=10.0, scale=3.0)
    mean, var = fastnorm.instance_stats(x, channel_axis=channel_axis)
    want_dt = np.float64 if dtype == np.float64 else np.float32
    assert mean.dtype == want_dt and var.dtype == want_dt and mean.shape == (3, 4) == var.shape
    rm, rv = R.stats(x, channel_axis)
    rt = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(mean, rm, rtol=rt)
    np.testing.assert_allclose(var, rv, rtol=rt * 10)


def test_edge_cases():
    # one-element planes: variance 0, output = bias
    x = np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    b = np.array([1.0, -2.0, 3.0])
    y = fastnorm.instance_norm(x, bias=b)
    np.testing.assert_array_equal(y[..., 0], np.broadcast_to(b, (2, 3)).astype(np.float32))
    # constant planes: bias, never NaN
    c = np.full((2, 3, 5, 5), 7.25, np.float32)
    y = fastnorm.instance_norm(c, bias=b)
    assert not np.isnan(y).any()
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), y.shape).astype(np.float32))
    yl = fastnorm.instance_norm(np.moveaxis(c, 1, -1).copy(), bias=b, channel_axis=-1)
    np.testing.assert_array_equal(yl, np.moveaxis(y, 1, -1))
    # eps = 0 on a constant plane: 0/0 -> NaN (documented), no crash
    assert np.isnan(fastnorm.instance_norm(c, eps=0.0)).all()


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_nan_inf_poison_only_their_plane(rng, channel_axis):
    x = make(rng, (2, 3, 10, 10), np.float32)
    x[0, 1, 3, 4] = np.nan
    x[1, 2, 0, 0] = np.inf
    xx = x if channel_axis == 1 else np.moveaxis(x, 1, -1).copy()
    y = fastnorm.instance_norm(xx, channel_axis=channel_axis)
    y = y if channel_axis == 1 else np.moveaxis(y, -1, 1)
    bad = np.isnan(y).all(axis=(2, 3))
    assert bad[0, 1] and bad[1, 2]
    good = ~bad
    assert np.isfinite(y[good]).all() and good.sum() == 4


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4), (2, 3, 0, 5), (2, 3, 4, 0)])
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_zero_size(shape, channel_axis):
    x = np.zeros(shape, np.float32)
    y = fastnorm.instance_norm(x, channel_axis=channel_axis)
    assert y.shape == shape and y.dtype == np.float32
    mean, var = fastnorm.instance_stats(x, channel_axis=channel_axis)
    N = shape[0]
    C = shape[channel_axis]
    assert mean.shape == (N, C) == var.shape


def test_1d_and_3d_spatial(rng):
    for shape in [(4, 3, 1000), (2, 3, 5, 6, 7, 3)]:
        x = make(rng, shape, np.float32)
        R.assert_close(fastnorm.instance_norm(x), R.instance_norm(x))


def test_show_config(capsys):
    fastnorm.show_config()
    out = capsys.readouterr().out
    assert fastnorm.__version__ in out
    for word in ("OpenMP", "threads", "compiler", "flags", "SIMD", "numpy", "output stores"):
        assert word in out
    c = fastnorm._config.config()
    assert isinstance(c["openmp"], bool) and c["default_threads"] >= 1
    assert c["streaming"][0] in (0, 1, 2) and c["streaming"][1] == 20 << 20


def test_build_info_is_compiled_into_the_engine():
    """setup.py records the build in the engine (-DFN_BUILD_INFO), not in a
    file of the source tree; show_config reports it from there."""
    from fastnorm._cpu import _engine as E

    info = E.build_info()
    assert {"openmp", "compiler", "cflags", "ldflags", "kernel_targets"} <= set(info)
    assert info["openmp"] == E.have_openmp()
    c = fastnorm._config.config()
    assert (c["compiler"], c["cflags"], c["ldflags"]) == (info["compiler"], info["cflags"], info["ldflags"])


# ---------------------------------------------------------------- vs torch
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_matches_torch_instancenorm(rng, nd):
    torch = require("torch")
    C = 4
    shape = (2, C) + (9, 8, 7)[:nd]
    x = make(rng, shape, np.float32, loc=1.0, scale=2.0)
    mod = {1: torch.nn.InstanceNorm1d, 2: torch.nn.InstanceNorm2d, 3: torch.nn.InstanceNorm3d}[nd](C, affine=True)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, C).astype(np.float32)))
        mod.bias.copy_(torch.from_numpy(rng.standard_normal(C).astype(np.float32)))
        ref = mod(torch.from_numpy(x)).numpy()
    y = fastnorm.instance_norm(x, mod.weight.detach().numpy(), mod.bias.detach().numpy(), eps=mod.eps)
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------ instance_norm's fast path
def _general(monkeypatch):
    """Count the calls that reach the general path (_api._norm)."""
    from fastnorm import _api

    calls = []
    general = _api._norm

    def counted(*a, **k):
        calls.append(1)
        return general(*a, **k)

    monkeypatch.setattr(_api, "_norm", counted)
    return calls


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (2, 8, 64, 64), (3, 5, 7)])
def test_fast_path_takes_out_and_num_threads(monkeypatch, shape):
    """A plain float32 call with out= (a fresh array or x itself) or an int
    num_threads runs the fast path, with the general path's bits; numpy
    integers for num_threads still work (through the general path)."""
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 3 + 1
    ref = fastnorm.instance_norm(x, num_threads=np.int64(1))  # the general path
    calls = _general(monkeypatch)
    for nt in (None, 1, 2, 3):
        o = np.full_like(x, np.nan)
        assert fastnorm.instance_norm(x, out=o, num_threads=nt) is o
        np.testing.assert_array_equal(o, ref)
        np.testing.assert_array_equal(fastnorm.instance_norm(x, num_threads=nt), ref)
        xi = x.copy()
        assert fastnorm.instance_norm(xi, out=xi, num_threads=nt) is xi  # in place
        np.testing.assert_array_equal(xi, ref)
    assert calls == []
    np.testing.assert_array_equal(fastnorm.instance_norm(x, num_threads=np.int32(2)), ref)
    assert calls == [1]


def test_fast_path_leaves_other_outs_to_the_general_path(monkeypatch):
    """What the fast path does not take goes to the general path, which gives
    the right answer or the right error: an out that overlaps x in part, a
    float16 out, strided, read-only or misshapen outs, bad num_threads."""
    buf = np.random.default_rng(4).standard_normal(2 * 8 * 16 * 16 + 8).astype(np.float32)
    x = buf[: 2 * 8 * 16 * 16].reshape(2, 8, 16, 16)
    ref = fastnorm.instance_norm(x.copy())
    calls = _general(monkeypatch)
    o = buf[8:].reshape(x.shape)  # shifted by 8 elements: a partial overlap
    fastnorm.instance_norm(x, out=o)
    np.testing.assert_array_equal(o, ref)
    assert calls == [1]
    xh = ref.astype(np.float16)
    oh = np.empty_like(xh)
    fastnorm.instance_norm(xh, out=oh)
    np.testing.assert_array_equal(oh, fastnorm.instance_norm(xh))
    assert calls == [1, 1]
    x = ref.copy()
    ro = np.empty_like(x)
    ro.flags.writeable = False
    for bad, exc in [
        (np.empty((2, 8, 16, 32), np.float32)[..., ::2], ValueError),
        (ro, ValueError),
        (np.empty((2, 8, 16, 15), np.float32), ValueError),
        (np.empty(x.shape, np.float64), TypeError),
        (np.empty(x.shape, ">f4"), TypeError),  # float32, but not in native byte order
        (x.view(">f4"), TypeError),  # x's own memory, read as big-endian
    ]:
        with pytest.raises(exc, match="out"):
            fastnorm.instance_norm(x, out=bad)
    np.testing.assert_array_equal(x, ref)  # nothing written
    for nt, exc in [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)]:
        with pytest.raises(exc, match="num_threads"):
            fastnorm.instance_norm(x, num_threads=nt)


@pytest.mark.parametrize("slope, exc", [(float("nan"), ValueError), (float("inf"), ValueError), ("0.1", TypeError)])
def test_plain_call_checks_negative_slope(slope, exc):
    """negative_slope is checked without an activation too, on the plain call
    as on every other."""
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(exc, match="negative_slope"):
        fastnorm.instance_norm(x, negative_slope=slope)


@pytest.mark.parametrize("shape", [(2, 4, 6, 5), (2, 16, 64, 40)])  # one thread; threads where allowed
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "silu"])
@pytest.mark.parametrize("wdt", [None, np.float32, np.float64])
@pytest.mark.parametrize("with_out", [False, True])
@pytest.mark.parametrize("groups", [None, 1, 2, 4])
def test_fast_path_with_affine_and_activation_gives_the_general_paths_bits(
    monkeypatch, shape, act, wdt, with_out, groups
):
    """float32 calls with weight / bias (float32 or float64 of length C) and
    an activation take the fast path, with the general path's bits, into out=
    too; group_norm's as well."""
    import functools

    from fastnorm import _api

    fn = fastnorm.instance_norm if groups is None else functools.partial(fastnorm.group_norm, num_groups=groups)

    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    C = shape[1]
    w = None if wdt is None else rng.uniform(-2, 2, C).astype(wdt)
    b = None if wdt is None else rng.normal(0, 1, C).astype(wdt)
    kw = dict(activation=act, negative_slope=0.2)
    out = np.full_like(x, np.nan) if with_out else None
    kw.update(weight=w, bias=b)
    got = fn(x, out=out, **kw)
    assert got is out or out is None
    calls = []
    real = _api._norm
    monkeypatch.setattr(_api, "_norm", lambda *a: calls.append(1) or real(*a))
    fast = fn(x, **kw)
    assert calls == []  # the fast path
    monkeypatch.setattr(_api, "_FAST_CODES", {})  # the general path
    want = fn(x, **kw)
    assert calls == [1]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fast, want)


def test_fast_path_leaves_other_affine_calls_to_the_general_path(monkeypatch):
    """Weights of another length, rank or dtype, lists, float16 data with
    weights, other activations: the general path's result or error."""
    from fastnorm import _api

    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    calls = []
    real = _api._norm
    monkeypatch.setattr(_api, "_norm", lambda *a: calls.append(1) or real(*a))
    for bad, exc in [
        (np.ones(4, np.float32), ValueError),
        (np.ones((1, 3), np.float32), ValueError),
        (np.ones(3, np.complex64), TypeError),
    ]:
        calls.clear()
        with pytest.raises(exc, match="weight"):
            fastnorm.instance_norm(x, bad)
        assert calls == [1]
    for w in ([1.0, 2.0, 3.0], np.arange(3), np.ones(3, np.float16)):
        calls.clear()
        np.testing.assert_array_equal(
            fastnorm.instance_norm(x, w), fastnorm.instance_norm(x, np.asarray(w, np.float64))
        )
        assert calls == [1]
    calls.clear()
    fastnorm.instance_norm(x.astype(np.float16), np.ones(3), activation="relu")
    assert calls == [1]
    for act, exc in [("gelu", ValueError), (["relu"], TypeError), ("RELU", ValueError)]:
        with pytest.raises(exc, match="activation"):
            fastnorm.instance_norm(x, activation=act)
    for G, exc in [(2, ValueError), (4, ValueError), (0, ValueError), (True, TypeError), (1.0, TypeError)]:
        calls.clear()
        with pytest.raises(exc, match="num_groups"):
            fastnorm.group_norm(x, G)


@pytest.mark.parametrize("which", ["weight", "bias", "in_place"])
def test_fast_path_reads_no_weight_that_out_overwrites(which):
    """A float64 weight or bias viewing out's memory (or x's, written in
    place) is read as it was before the call (the general path's copies)."""
    rng = np.random.default_rng(1)
    N, C, S = 1, 8192, 4  # more planes than one batch of coefficients
    x = rng.standard_normal((N, C, S)).astype(np.float32)
    v = rng.standard_normal(C)
    for fn in (fastnorm.instance_norm, lambda a, *r, **k: fastnorm.group_norm(a, C // 2, *r, **k)):
        buf = np.zeros(N * C * S, np.float32)
        out = buf.reshape(N, C, S)
        xx = x
        if which == "in_place":
            xx = out
            out[...] = x
        vv = buf[: 2 * C].view(np.float64)
        vv[:] = v  # in place: x's first elements are now the weight's bytes
        args = (vv, None) if which != "bias" else (None, vv)
        want = fn(np.array(xx), *(None if a is None else v.copy() for a in args))
        fn(xx, *args, out=out)
        np.testing.assert_array_equal(out, want)
