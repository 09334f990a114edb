"""instance_norm_backward / group_norm_backward: against a float64
NumPy oracle of the formulas and against torch.autograd; every layout, group
count, with and without weight, empty and one-element planes, bit-identical
across thread counts, plans and SIMD levels; bad input."""

import numpy as np
import pytest
from _isa import LEVELS, UNFUSED_LEVEL, kernels, unfused
from _optional import require

import fastnorm
from fastnorm._cpu import _engine as E

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None


def ref_backward(dy, x, G, weight=None, eps=1e-5, cl=False):
    """float64 oracle: (grad_x, grad_weight, grad_bias)."""
    x = np.asarray(x).astype(np.float64)
    dy = np.asarray(dy).astype(np.float64)
    if cl:
        x, dy = np.moveaxis(x, -1, 1), np.moveaxis(dy, -1, 1)
    N, C = x.shape[:2]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    bshape = (1, C) + (1,) * (x.ndim - 2)
    ax = (0,) + tuple(range(2, x.ndim))
    if x.size == 0:
        gx = np.zeros(x.shape)
        gw, gb = np.zeros(C), np.zeros(C)
    else:
        xs = x.reshape(N, G, -1)
        mu = xs.mean(-1, keepdims=True)
        r = 1.0 / np.sqrt(xs.var(-1, keepdims=True) + eps)
        xhat = (xs - mu) * r
        gy = (dy * w.reshape(bshape)).reshape(N, G, -1)
        gx = r * (gy - gy.mean(-1, keepdims=True) - xhat * (gy * xhat).mean(-1, keepdims=True))
        gx = gx.reshape(x.shape)
        gw = (dy * xhat.reshape(x.shape)).sum(ax)
        gb = dy.sum(ax)
    if cl:
        gx = np.moveaxis(gx, 1, -1)
    return gx, gw, gb


def _cl(shape):
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


def _data(rng, shape, dtype, cl, offset=0.0):
    s = _cl(shape) if cl else shape
    x = (rng.standard_normal(s) * 2.0 + offset).astype(dtype)
    dy = rng.standard_normal(s).astype(dtype)
    return x, dy


def _call(dy, x, G, w, cl, **kw):
    ax = -1 if cl else None
    C = x.shape[-1] if cl else x.shape[1]
    if G == C and x.ndim >= 3 and kw.pop("instance", True):
        return fastnorm.instance_norm_backward(dy, x, w, channel_axis=ax, **kw)
    kw.pop("instance", None)
    return fastnorm.group_norm_backward(dy, x, G, w, channel_axis=ax, **kw)


def _close(got, want, rtol):
    got = np.asarray(got, np.float64)
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol:.3g}"


SHAPES = [(2, 6, 5, 7), (3, 4, 33), (2, 4, 3, 4, 5), (1, 8, 130, 131)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
@pytest.mark.parametrize("groups", ["1", "half", "C"])
@pytest.mark.parametrize("with_weight", [False, True], ids=["now", "w"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)], ids=["f64", "f32"])
def test_against_oracle(rng, shape, cl, groups, with_weight, dtype, rtol):
    C = shape[1]
    G = {"1": 1, "half": C // 2, "C": C}[groups]
    x, dy = _data(rng, shape, dtype, cl, offset=3.0)
    w = rng.standard_normal(C) if with_weight else None
    gx, gw, gb = _call(dy, x, G, w, cl)
    rx, rw, rb = ref_backward(dy, x, G, w, cl=cl)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    adt = np.float64 if dtype == np.float64 else np.float32
    assert gw.shape == gb.shape == (C,) and gw.dtype == gb.dtype == adt
    _close(gx, rx, rtol)
    _close(gw, rw, rtol)
    _close(gb, rb, rtol)


@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
@pytest.mark.parametrize(
    "shape,G",
    [
        ((2, 3, 20000), 3),
        ((1, 4, 40000), 2),
        ((2, 20, 9, 11), 5),
        ((1, 70, 300), 70),
        ((3, 5, 17), 5),
        ((2, 3, 16385), 1),
    ],
)
def test_block_and_tile_edges(rng, cl, shape, G):
    """Rows of several statistics blocks, channels-last widths below one
    vector, remainder tiles and rows that do not fill a virtual row."""
    x, dy = _data(rng, shape, np.float64, cl, offset=-5.0)
    w = rng.uniform(0.5, 2.0, shape[1])
    got = _call(dy, x, G, w, cl)
    for a, b in zip(got, ref_backward(dy, x, G, w, cl=cl)):
        _close(a, b, 1e-11)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_16bit(rng, dtype, cl):
    if dtype == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("ml_dtypes is not installed")
        dt = ml_dtypes.bfloat16
        tol = 2e-2
    else:
        dt = np.float16
        tol = 3e-3
    for shape, G in [((2, 6, 9, 10), 6), ((2, 6, 9, 10), 2), ((1, 3, 20000), 3)]:
        x, dy = _data(rng, shape, np.float32, cl, offset=1.0)
        x, dy = x.astype(dt), dy.astype(dt)
        w = rng.standard_normal(shape[1])
        gx, gw, gb = _call(dy, x, G, w, cl)
        assert gx.dtype == x.dtype and gw.dtype == np.float32
        rx, rw, rb = ref_backward(dy, x, G, w, cl=cl)  # of the 16-bit values
        _close(gx.astype(np.float64), rx, tol)
        _close(gw, rw, 1e-5)
        _close(gb, rb, 1e-5)


# ------------------------------------------------------------------ torch
torch = None


def _torch():
    global torch
    torch = require("torch")
    return torch


@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
@pytest.mark.parametrize("op", ["instance", "group1", "group_half"])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-5)], ids=["f64", "f32"])
def test_against_torch_autograd(rng, cl, op, dtype, rtol):
    T = _torch()
    F = T.nn.functional
    shape = (3, 8, 12, 10)
    C = shape[1]
    G = {"instance": C, "group1": 1, "group_half": C // 2}[op]
    x, dy = _data(rng, shape, dtype, cl, offset=0.5)
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    xt = T.from_numpy(np.moveaxis(x, -1, 1).copy() if cl else x.copy()).requires_grad_()
    wt = T.from_numpy(w.copy()).requires_grad_()
    bt = T.from_numpy(b.copy()).requires_grad_()
    if op == "instance":
        y = F.instance_norm(xt, weight=wt, bias=bt, eps=1e-5)
    else:
        y = F.group_norm(xt, G, wt, bt, eps=1e-5)
    y.backward(T.from_numpy(np.moveaxis(dy, -1, 1).copy() if cl else dy))
    tx = xt.grad.numpy()
    if cl:
        tx = np.moveaxis(tx, 1, -1)
    gx, gw, gb = _call(dy, x, G, w, cl, instance=op == "instance")
    _close(gx, tx.astype(np.float64), rtol)
    _close(gw, wt.grad.numpy().astype(np.float64), rtol)
    _close(gb, bt.grad.numpy().astype(np.float64), rtol)


# ------------------------------------------------------------- edge cases
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_empty(cl):
    for shape in [(0, 3, 4), (2, 0, 4), (2, 3, 0), (2, 3, 0, 5)]:
        x = np.zeros(_cl(shape) if cl else shape, np.float32)
        C = shape[1]
        gx, gw, gb = fastnorm.instance_norm_backward(x, x, channel_axis=-1 if cl else 1)
        assert gx.shape == x.shape and gx.dtype == x.dtype
        assert gw.shape == gb.shape == (C,)
        assert not gw.any() and not gb.any()


@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_one_element_planes(rng, cl):
    """xhat = 0 in a plane of one element: grad_x = 0, grad_weight = 0,
    grad_bias = the sum of grad_out."""
    x, dy = _data(rng, (4, 5, 1, 1), np.float64, cl)
    w = rng.standard_normal(5)
    gx, gw, gb = fastnorm.instance_norm_backward(dy, x, w, channel_axis=-1 if cl else 1)
    assert not gx.any()
    assert not gw.any()
    np.testing.assert_allclose(gb, dy.reshape(4, 5).sum(0), rtol=1e-15)
    # (N, C) group norm: a spatial size of one, units of C // G elements
    x2, dy2 = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    got = fastnorm.group_norm_backward(dy2, x2, 2, w[:1].repeat(6))
    for a, b in zip(got, ref_backward(dy2[..., None], x2[..., None], 2, w[:1].repeat(6))):
        _close(np.asarray(a).reshape(b.shape), b, 1e-12)


def test_constant_plane_and_zero_grad(rng):
    x = np.ones((2, 3, 8, 8))
    dy = rng.standard_normal(x.shape)
    gx, gw, gb = fastnorm.instance_norm_backward(dy, x)
    rx, rw, rb = ref_backward(dy, x, 3)
    _close(gx, rx, 1e-12)
    assert not gw.any()
    gx, gw, gb = fastnorm.instance_norm_backward(np.zeros_like(x), rng.standard_normal(x.shape))
    assert not gx.any() and not gw.any() and not gb.any()


def test_strides_and_byte_order(rng):
    x, dy = _data(rng, (2, 6, 10, 12), np.float32, False)
    want = fastnorm.instance_norm_backward(dy, x)
    xs = np.asfortranarray(x)
    got = fastnorm.instance_norm_backward(dy[:, :, ::1], xs)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    big = x.astype(">f4")
    got = fastnorm.instance_norm_backward(dy.astype(">f4"), big)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # a strided view
    xb = np.repeat(x, 2, axis=-1)[..., ::2]
    np.testing.assert_array_equal(fastnorm.instance_norm_backward(dy, xb)[0], want[0])


def test_lists_are_arrays():
    x = [[[1.0, 2.0, 4.0]], [[0.0, 1.0, 0.5]]]
    dy = [[[0.5, -1.0, 2.0]], [[1.0, 1.0, -3.0]]]
    got = fastnorm.instance_norm_backward(dy, x)
    for a, b in zip(got, ref_backward(np.array(dy), np.array(x), 1)):
        _close(a, b, 1e-13)


# ------------------------------------------------------------ determinism
def _bits(r):
    return [np.asarray(a).tobytes() for a in r]


CASES = [
    ((2, 8, 40, 40), 8, False),
    ((2, 8, 40, 40), 2, False),
    ((3, 4, 50000), 4, False),
    ((2, 8, 40, 40), 8, True),
    ((2, 8, 40, 40), 4, True),
    ((1, 3, 300, 301), 3, True),
    ((64, 16, 6, 6), 16, False),
    ((64, 16, 6, 6), 16, True),
]


@pytest.mark.parametrize("shape,G,cl", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_bit_identical_threads_and_waves(rng, shape, G, cl, dtype):
    x, dy = _data(rng, shape, dtype, cl, offset=10.0)
    w = rng.standard_normal(shape[1])
    want = _bits(_call(dy, x, G, w, cl, num_threads=1))
    for nt in (2, 3):
        assert _bits(_call(dy, x, G, w, cl, num_threads=nt)) == want
    old = E._backward_tuning(wave_bytes=4096, fused_max_bytes=-1)  # many small waves, never fused
    try:
        for nt in (1, 2, 3):
            assert _bits(_call(dy, x, G, w, cl, num_threads=nt)) == want
    finally:
        E._backward_tuning(*old)


CF_FUSED = [
    ((32, 16, 8, 8), 16),  # small planes: fused by default
    ((4, 8, 40, 40), 2),  # groups of 4 planes
    ((3, 4, 50000), 4),  # planes of several blocks
    ((5, 3, 7), 3),  # too small to share: one thread, the waves, whatever the setting
]


@pytest.mark.parametrize("shape,G", CF_FUSED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_bit_identical_fused_and_waves(rng, shape, G, dtype):
    """Channels first: units a thread runs whole (fused) give the waves' bits,
    for every team, with and without the waves' fused planes.  Every result
    is kept and each output poisoned first (a pool buffer of its size filled
    with NaN, then freed), so an element the kernels skip cannot keep the
    bits of an earlier call's output."""
    x, dy = _data(rng, shape, dtype, False, offset=10.0)
    w = rng.standard_normal(shape[1])
    keep = []

    def run(nt):
        poison = E.empty(x.shape, x.dtype)
        poison.fill(np.nan)
        del poison
        keep.append(_call(dy, x, G, w, False, num_threads=nt))
        return _bits(keep[-1])

    old = E._backward_tuning(fused_max_bytes=-1)  # waves only
    try:
        want = run(1)
        assert run(2) == want
        for batch in (0, 1 << 12, 1 << 40):  # one unit, a few, all a thread's units at a time
            E._backward_tuning(fused_max_bytes=1 << 40, fused_batch_bytes=batch)  # every unit fused
            for nt in (1, 2, 3, 4):
                assert run(nt) == want
    finally:
        E._backward_tuning(*old)
    for nt in (1, 2):  # the default plan
        assert run(nt) == want


def test_backward_tuning_reads_and_restores():
    old = E._backward_tuning(fused_max_bytes=123, fused_batch_bytes=7)
    assert isinstance(old, tuple) and len(old) == 3
    try:
        assert E._backward_tuning() == (old[0], 123, 7)
        assert E._backward_tuning(fused_max_bytes=-5, fused_batch_bytes=-1) == (old[0], 123, 7)
        assert E._backward_tuning() == (old[0], -1, 0)  # clamped: never fused, one unit per batch
    finally:
        E._backward_tuning(*old)
    assert E._backward_tuning() == old


@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_bit_identical_streaming(rng, cl):
    x, dy = _data(rng, (2, 4, 100, 64), np.float32, cl)
    want = _bits(_call(dy, x, 4, None, cl, num_threads=2))
    old = E._tuning(stream_above_bytes=0)
    try:
        assert _bits(_call(dy, x, 4, None, cl, num_threads=2)) == want
        assert _bits(_call(dy, x, 4, None, cl, num_threads=1)) == want
    finally:
        E._tuning(stream_above_bytes=old[4])


@pytest.mark.skipif(len(LEVELS) < 2, reason="one SIMD level here")
@pytest.mark.parametrize("shape,G,cl", CASES[:6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_bit_identical_simd_levels(rng, shape, G, cl, dtype):
    x, dy = _data(rng, shape, dtype, cl, offset=10.0)
    w = rng.standard_normal(shape[1])
    res = {}
    for level in LEVELS:
        with kernels(isa=level):
            res[level] = _bits(_call(dy, x, G, w, cl, num_threads=2))
    first = res[LEVELS[0]]
    for level in LEVELS[1:]:
        assert res[level] == first, f"{level} differs from {LEVELS[0]}"


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", ["instance", "group"])
def test_bad_input(fn):
    x = np.zeros((2, 4, 5), np.float32)
    dy = np.zeros_like(x)

    def call(dy=dy, x=x, **kw):
        if fn == "instance":
            return fastnorm.instance_norm_backward(dy, x, **kw)
        return fastnorm.group_norm_backward(dy, x, kw.pop("num_groups", 2), **kw)

    with pytest.raises(ValueError, match="grad_out"):
        call(dy=np.zeros((2, 4, 6), np.float32))
    with pytest.raises(TypeError, match="grad_out"):
        call(dy=dy.astype(np.float64))
    with pytest.raises(TypeError, match="grad_out"):
        call(dy=object())
    with pytest.raises(TypeError, match="x"):
        call(dy=dy.astype(np.int32), x=x.astype(np.int32))
    with pytest.raises(ValueError, match="x must have at least"):
        call(dy=np.zeros(4, np.float32), x=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="channel_axis"):
        call(channel_axis=0)
    with pytest.raises(TypeError, match="channel_axis"):
        call(channel_axis=1.0)
    with pytest.raises(ValueError, match="eps"):
        call(eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        call(eps=float("nan"))
    with pytest.raises(TypeError, match="eps"):
        call(eps="1e-5")
    with pytest.raises(ValueError, match="weight"):
        call(weight=np.ones(3))
    with pytest.raises(TypeError, match="weight"):
        call(weight=np.array(["a"] * 4))
    with pytest.raises(ValueError, match="num_threads"):
        call(num_threads=0)
    with pytest.raises(TypeError, match="num_threads"):
        call(num_threads=1.5)
    if fn == "instance":
        with pytest.raises(ValueError, match="at least 3"):
            fastnorm.instance_norm_backward(np.zeros((2, 4)), np.zeros((2, 4)))
    else:
        with pytest.raises(ValueError, match="num_groups"):
            call(num_groups=3)
        with pytest.raises(ValueError, match="num_groups"):
            call(num_groups=0)
        with pytest.raises(TypeError, match="num_groups"):
            call(num_groups=2.0)


@pytest.mark.skipif(UNFUSED_LEVEL is None, reason="no unfused kernels in this build")
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_unfused_kernels(rng, cl):
    """The unfused form (a CPU without FMA): the oracle, and one result for every thread count."""
    x, dy = _data(rng, (2, 6, 30, 31), np.float64, cl, offset=2.0)
    w = rng.standard_normal(6)
    with unfused():
        got = _call(dy, x, 3, w, cl, num_threads=1)
        assert _bits(_call(dy, x, 3, w, cl, num_threads=3)) == _bits(got)
    for a, b in zip(got, ref_backward(dy, x, 3, w, cl=cl)):
        _close(a, b, 1e-12)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("groups", [None, 2])
def test_fast_path_same_bits_as_general(rng, cl, groups):
    """float32 C-contiguous ndarrays take a short path (no backend lookups,
    the checks in a cheaper form): its results are the general path's bits.
    An np.float64 eps (not exactly a float) forces the general path."""
    x = (rng.standard_normal((3, 4, 9, 7)) * 3 + 2).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    if cl:
        x, dy = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, dy))
    ax = -1 if cl else 1
    for w in (None, rng.standard_normal(4), rng.standard_normal(4).astype(np.float32)):
        for nt in (None, 1, 2):
            for eps in (1e-5, 0.0):

                def run(e, w=w, nt=nt):
                    if groups is None:
                        return fastnorm.instance_norm_backward(dy, x, w, eps=e, channel_axis=ax, num_threads=nt)
                    return fastnorm.group_norm_backward(dy, x, groups, w, eps=e, channel_axis=ax, num_threads=nt)

                fast, general = run(eps), run(np.float64(eps))
                pc = groups is None
                G = fastnorm._backward.V.PER_CHANNEL if pc else groups
                args = (dy, x, G, pc, w, eps, ax, nt)
                assert fastnorm._backward._fast_backward(*args) is not None  # the short path took it
                assert fastnorm._backward._fast_backward(*args[:5], np.float64(eps), ax, nt) is None
                for f, g in zip(fast, general):
                    assert f.dtype == g.dtype == np.float32 and f.shape == g.shape
                    assert f.tobytes() == g.tobytes()


def test_fast_path_still_refuses(rng):
    """Values the short path does not take fall to the general path, which
    names them: the refusals are the same."""
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    with pytest.raises(ValueError, match="grad_out must have the shape"):
        fastnorm.instance_norm_backward(dy[:1], x)
    with pytest.raises(ValueError, match="eps"):
        fastnorm.instance_norm_backward(dy, x, eps=-1.0)
    with pytest.raises(ValueError, match="weight must have length C=4"):
        fastnorm.instance_norm_backward(dy, x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="num_groups"):
        fastnorm.group_norm_backward(dy, x, 3)
    with pytest.raises(ValueError, match="num_threads"):
        fastnorm.instance_norm_backward(dy, x, num_threads=0)
    with pytest.raises(TypeError, match="grad_out must have the dtype"):
        fastnorm.instance_norm_backward(dy.astype(np.float64), x)
