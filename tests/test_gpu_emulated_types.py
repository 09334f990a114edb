"""Integer inputs, output dtypes and the backward of the CUDA kernels, run on
the CUDA emulator (tests/gpu_emu, see tests/test_gpu_emulated.py), no GPU.

Forward: the output type's kernel runs and every input element is converted
on load to its working type (float; double for float64 outputs), so a norm
or apply of an integer (or another floating) input equals bit for bit the
same kernels on ``x.astype(working type)`` with the same output dtype, and
the float64 NumPy reference within the output's rounding.  The backend's
primitives are called directly for integer inputs (the public functions take
them once the dtype codes of the CPU work are in _validate.dtype_code), and
through the public functions' ``dtype=`` for floating inputs.

Backward: ``backward(x, dy, code, cl, G, weight, eps, nt)`` against a float64
NumPy reference, both layouts, G in {1, C/2, C}, with and without weight,
the same bits when run twice.
"""

import sys

import _reference as R
import numpy as np
import pytest
from gpu_emu import fakecupy as cp

import fastnorm
from fastnorm import _validate as V
from fastnorm._gpu import _names

pytestmark = [
    # every type pair through every kernel on the emulator: minutes of CPU
    pytest.mark.slow,
    pytest.mark.skipif(not cp.CXX, reason="no host C++ compiler (g++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CUDA emulator runs on Linux only"),
]

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    ml_dtypes = None
    BF16 = None

CHUNK, CL_ROWS, CL_CT = 1024, 16, 32  # as tests/test_gpu_emulated.py: small shapes reach every path
INTS = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
CODE = {
    np.dtype(np.float16): V.F16,
    np.dtype(np.float32): V.F32,
    np.dtype(np.float64): V.F64,
    np.dtype(np.uint8): V.U8,
    np.dtype(np.int8): V.I8,
    np.dtype(np.uint16): V.U16,
    np.dtype(np.int16): V.I16,
    np.dtype(np.uint32): V.U32,
    np.dtype(np.int32): V.I32,
    np.dtype(np.uint64): V.U64,
    np.dtype(np.int64): V.I64,
}
if BF16 is not None:
    CODE[BF16] = V.BF16
OUTS = [np.float16, np.float32, np.float64] + ([BF16] if BF16 is not None else [])
FLOATS = OUTS
# (shape, channel_axis, G): channels first a warp plane, a block plane, a
# split plane (> 8192), group planes; channels last C = 3, 16, 40 (tiled
# apply, vector), 37 (tiled, scalar) and groups
CASES = [
    ((3, 4, 5, 7), 1, None),
    ((2, 3, 40, 50), 1, None),
    ((1, 2, 97, 101), 1, None),
    ((2, 6, 4, 9), 1, 3),
    ((2, 6, 30, 40), 1, 2),
    ((2, 9, 11, 3), -1, None),
    ((2, 7, 5, 16), -1, None),
    ((1, 6, 7, 40), -1, None),
    ((2, 5, 3, 37), -1, None),
    ((2, 9, 11, 6), -1, 3),
]
VARIANTS = [dict(), dict(affine=True, act="relu"), dict(affine=True, act="leaky_relu", slope=0.2), dict(act="silu")]
ACT = {None: 0, "relu": 1, "leaky_relu": 2, "silu": 3}


@pytest.fixture(scope="module")
def be():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_names, "CHUNK", CHUNK)
        mp.setattr(_names, "CL_ROWS", CL_ROWS)
        mp.setattr(_names, "CL_CT", CL_CT)
        with cp.installed() as backend:
            yield backend


def ints(shape, dtype, seed=0):
    """Integers over the type's range (64-bit ones within +-2**53: the
    16-bit outputs' statistics are float sums of squares, which 2**63-sized
    values overflow, as they do for x.astype(float32))."""
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**53)), min(int(info.max), 2**54)
    rng = np.random.default_rng(seed)
    return rng.integers(
        lo, hi, size=shape, dtype=np.int64 if lo < 0 or hi < 2**63 else np.uint64, endpoint=True
    ).astype(dtype)


def floats(shape, dtype, seed=0, loc=0.5, scale=2.0):
    return (loc + scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def working(odtype):
    """The type an output dtype's kernel computes in: what its loads convert to."""
    return np.float64 if np.dtype(odtype) == np.float64 else np.float32


def coefs(C, variant):
    if variant.get("affine"):
        return np.linspace(0.5, 2, C), np.linspace(-1, 1, C)
    return None, None


def norm(be, x, channel_axis, G, variant, odtype, out=None):
    """The backend's norm primitive on a device copy of x (host array back)."""
    C = x.shape[channel_axis]
    cl = channel_axis == -1
    w, b = coefs(C, variant)
    y = be.norm(
        cp.asarray(x),
        CODE[x.dtype],
        cl,
        G or C,
        w,
        b,
        1e-5,
        ACT[variant.get("act")],
        variant.get("slope", 0.01),
        out,
        None,
        CODE[np.dtype(odtype)],
    )
    assert isinstance(y, cp.ndarray) and y.dtype == np.dtype(odtype) and y.shape == x.shape
    return y.get()


def reference(x, channel_axis, G, variant):
    C = x.shape[channel_axis]
    w, b = coefs(C, variant)
    return R.group_norm(x, G or C, w, b, 1e-5, channel_axis, variant.get("act"), variant.get("slope", 0.01))


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# ------------------------------------------------------------- forward
@pytest.mark.parametrize("odtype", OUTS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_norm(be, dtype, odtype):
    """Every path (fused warp / block, split, channels-last flat and tiled,
    groups) with an activation each: the bits of x.astype(working type), and
    the float64 reference within the output's rounding."""
    for k, (shape, ax, G) in enumerate(CASES):
        variant = VARIANTS[k % len(VARIANTS)]
        x = ints(shape, dtype, seed=k)
        y = norm(be, x, ax, G, variant, odtype)
        same_bits(y, norm(be, x.astype(working(odtype)), ax, G, variant, odtype))
        R.assert_close(y, reference(x, ax, G, variant), odtype)


@pytest.mark.parametrize("odtype", OUTS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_float_to_other_dtype(be, dtype, odtype):
    """A floating input into any output dtype: x.astype(working type)'s bits."""
    for k, (shape, ax, G) in enumerate(CASES[:3] + CASES[5:9]):
        variant = VARIANTS[k % len(VARIANTS)]
        x = floats(shape, dtype, seed=k)
        y = norm(be, x, ax, G, variant, odtype)
        same_bits(y, norm(be, x.astype(working(odtype)), ax, G, variant, odtype))
        R.assert_close(y, reference(x, ax, G, variant), odtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_default_output_is_float32(be, dtype):
    x = ints((2, 3, 6, 7), dtype)
    y = be.norm(cp.asarray(x), CODE[x.dtype], False, 3, None, None, 1e-5, 0, 0.01, None, None)
    assert y.dtype == np.float32
    same_bits(y.get(), norm(be, x.astype(np.float32), 1, None, {}, np.float32))


@pytest.mark.parametrize("odtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.uint32])
def test_integer_extremes(be, dtype, odtype):
    """The type's extremes (2**63-sized values: float32 and float64 outputs
    accumulate in double) convert as astype does (round to nearest even)."""
    info = np.iinfo(dtype)
    x = ints((2, 3, 5, 9), dtype)
    x[:, :, 0, :3] = [info.min, info.max, info.max - 1]
    x[:, :, 1, :2] = [info.min + 1, 2**24 + 1]
    for ax in (1, -1):
        y = norm(be, x, ax, None, VARIANTS[1], odtype)
        same_bits(y, norm(be, x.astype(working(odtype)), ax, None, VARIANTS[1], odtype))
        R.assert_close(y, reference(x, ax, None, VARIANTS[1]), odtype)


@pytest.mark.parametrize("dtype", INTS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "shape, channel_axis", [((2, 3, 5, 7), 1), ((1, 2, 97, 101), 1), ((2, 9, 11, 3), -1), ((1, 40, 30, 5), -1)]
)
def test_integer_moments(be, dtype, shape, channel_axis):
    """Statistics of the exact values, float64: the float64 kernels' sums."""
    x = ints(shape, dtype)
    count, mean, m2, var = be.moments(cp.asarray(x), CODE[x.dtype], channel_axis == -1, None)
    rm, rv = R.stats(x, channel_axis)
    S = x.size // (x.shape[0] * x.shape[channel_axis])
    np.testing.assert_array_equal(count.get(), np.full(rm.shape, S, np.float64))
    scale = np.sqrt(rv) + np.abs(rm)
    np.testing.assert_allclose(mean.get(), rm, rtol=0, atol=1e-14 * scale.max())
    np.testing.assert_allclose(var.get(), rv, rtol=1e-12)
    np.testing.assert_allclose(m2.get(), rv * S, rtol=1e-12)
    # the same kernels as the float64 input's
    t = be.triples(cp.asarray(x), CODE[x.dtype], channel_axis == -1, None).get()
    if x.dtype.itemsize < 8:  # exact in double: the float64 array's bits
        same_bits(t, be.triples(cp.asarray(x.astype(np.float64)), V.F64, channel_axis == -1, None).get())


@pytest.mark.parametrize("odtype", OUTS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.uint32, np.int64, np.float16, np.float64], ids=lambda d: np.dtype(d).name
)
def test_apply(be, dtype, odtype):
    """The apply primitive (normalize, adain, the Dask blocks): channels
    first (one row a block, and split rows) and last (flat and tiled)."""
    for k, (shape, ax) in enumerate(
        [((2, 6, 40, 30), 1), ((1, 2, 97, 101), 1), ((2, 9, 11, 6), -1), ((1, 6, 7, 40), -1), ((2, 5, 3, 37), -1)]
    ):
        x = ints(shape, dtype, seed=k) if np.dtype(dtype).kind in "iu" else floats(shape, dtype, seed=k)
        rm, rv = R.stats(x, ax)
        N, C = rm.shape
        w, b = coefs(C, dict(affine=True))
        sc = w / np.sqrt(rv + 1e-5)
        sh = np.broadcast_to(b, (N, C)).copy()
        args = (ax == -1, cp.asarray(rm), cp.asarray(sc), cp.asarray(sh), 2, 0.1, None, None, CODE[np.dtype(odtype)])
        y = be.apply(cp.asarray(x), CODE[x.dtype], *args)
        assert y.dtype == np.dtype(odtype)
        xw = x.astype(working(odtype))
        same_bits(y.get(), be.apply(cp.asarray(xw), CODE[xw.dtype], *args).get())
        R.assert_close(y.get(), R.normalize(x, rm, rv, w, b, 1e-5, ax, "leaky_relu", 0.1), odtype)


def test_out_and_overlap(be):
    """out of the output dtype is written and returned; an out sharing x's
    start with x's element size is in place, another overlap reads a copy."""
    x = ints((2, 3, 40, 50), np.int32)
    ref = norm(be, x, 1, None, VARIANTS[3], np.float32)
    out = cp.empty(x.shape, np.float32)
    g = cp.asarray(x)
    assert be.norm(g, V.I32, False, 3, None, None, 1e-5, 3, 0.01, out, None, V.F32) is out
    same_bits(out.get(), ref)
    buf = cp.asarray(x)  # in place: float32 out over the int32 input
    o = buf.view(np.float32)
    assert be.norm(buf, V.I32, False, 3, None, None, 1e-5, 3, 0.01, o, None, V.F32) is o
    same_bits(o.get(), ref)
    raw = cp.zeros(x.size * 4 + 64, np.uint8)  # uint8 input inside a float32 output's bytes
    xin = raw[: x.size].reshape(x.shape)
    xin[...] = (x & 0xFF).astype(np.uint8)
    out = raw[64:].view(np.float32).reshape(x.shape)
    ref8 = norm(be, (x & 0xFF).astype(np.uint8), 1, None, {}, np.float32)
    assert be.norm(xin, V.U8, False, 3, None, None, 1e-5, 0, 0.01, out, None, V.F32) is out
    same_bits(out.get(), ref8)


@pytest.mark.parametrize("odtype", OUTS, ids=lambda d: np.dtype(d).name)
def test_public_dtype_keyword(be, odtype):
    """dtype= through the public functions (floating CuPy inputs): the bits
    of x.astype(working type) with that dtype."""
    for dtype in [np.float16, np.float32, np.float64]:
        for shape, ax in [((2, 3, 40, 50), 1), ((2, 9, 11, 6), -1)]:
            x = floats(shape, dtype)
            xw = cp.asarray(x.astype(working(odtype)))
            y = fastnorm.instance_norm(cp.asarray(x), channel_axis=ax, activation="silu", dtype=odtype)
            assert y.dtype == np.dtype(odtype)
            same_bits(y.get(), fastnorm.instance_norm(xw, channel_axis=ax, activation="silu", dtype=odtype).get())
            y = fastnorm.group_norm(cp.asarray(x), 3, channel_axis=ax, dtype=odtype)
            same_bits(y.get(), fastnorm.group_norm(xw, 3, channel_axis=ax, dtype=odtype).get())
            rm, rv = R.stats(x, ax)
            y = fastnorm.normalize(cp.asarray(x), rm, rv, channel_axis=ax, dtype=odtype)
            same_bits(y.get(), fastnorm.normalize(xw, rm, rv, channel_axis=ax, dtype=odtype).get())
            R.assert_close(y.get(), R.normalize(x, rm, rv, channel_axis=ax), odtype)


# ------------------------------------------------------------ backward
def ref_backward(x, dy, G, w, eps, channel_axis):
    """float64 (grad_x, grad_weight, grad_bias) and the scale of grad_x's terms."""
    x64 = R.to_cf(x.astype(np.float64), channel_axis)
    g64 = R.to_cf(dy.astype(np.float64), channel_axis)
    N, C = x64.shape[:2]
    w = np.ones(C) if w is None else np.asarray(w, np.float64)
    bs = (1, C) + (1,) * (x64.ndim - 2)
    xg = x64.reshape(N, G, -1)
    mu = xg.mean(-1, keepdims=True)
    r = 1 / np.sqrt(xg.var(-1, keepdims=True) + eps)
    xhat = ((xg - mu) * r).reshape(x64.shape)
    sp = (0,) + tuple(range(2, x64.ndim))
    gb = g64.sum(axis=sp)
    gw = (g64 * xhat).sum(axis=sp)
    gy = (g64 * w.reshape(bs)).reshape(N, G, -1)
    xh = xhat.reshape(N, G, -1)
    gx = r * (gy - gy.mean(-1, keepdims=True) - xh * (gy * xh).mean(-1, keepdims=True))
    scale = np.abs(r * gy).max()
    return R.from_cf(gx.reshape(x64.shape), channel_axis), gw, gb, scale


BW_CASES = [
    ((2, 4, 5, 7), 1),
    ((2, 4, 40, 50), 1),
    ((1, 2, 97, 101), 1),
    ((3, 6, 13), 1),
    ((2, 9, 11, 4), -1),
    ((1, 6, 7, 40), -1),
    ((2, 13, 6), -1),
    ((1, 300, 2), -1),
]
# float32 and the 16-bit types compute grad_x in float (sums in double)
BW_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6, np.dtype(np.float16): 2e-3}
if BF16 is not None:
    BW_TOL[BF16] = 2e-2


def backward(be, x, dy, ax, G, w):
    gx, gw, gb = be.backward(cp.asarray(x), cp.asarray(dy), CODE[x.dtype], ax == -1, G, w, 1e-5, None)
    assert gx.dtype == x.dtype and gx.shape == x.shape
    assert gw.dtype == gb.dtype == np.float64 and gw.shape == gb.shape == (x.shape[ax],)
    return gx.get(), gw.get(), gb.get()


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32, np.float16] + ([BF16] if BF16 is not None else []), ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("shape, channel_axis", BW_CASES)
@pytest.mark.parametrize("groups", ["C", "C/2", "1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["ones", "weight"])
def test_backward(be, dtype, shape, channel_axis, groups, weighted):
    C = shape[channel_axis]
    G = {"C": C, "C/2": max(1, C // 2), "1": 1}[groups]
    if C % G:
        pytest.skip("C not divisible")
    rng = np.random.default_rng(C * 7 + G)
    x = (1.5 + 2 * rng.standard_normal(shape)).astype(dtype)
    dy = (0.3 + rng.standard_normal(shape)).astype(dtype)
    w = np.linspace(-1.5, 2, C) if weighted else None
    gx, gw, gb = backward(be, x, dy, channel_axis, G, w)
    rgx, rgw, rgb, scale = ref_backward(x, dy, G, w, 1e-5, channel_axis)
    tol = BW_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(gx.astype(np.float64), rgx, rtol=0, atol=tol * scale)
    n = x.size // C  # terms of each affine gradient
    exact = 1e-13 if dtype == np.float64 else 1e-12  # of inputs stored exactly: sums in double
    np.testing.assert_allclose(gb, rgb, rtol=0, atol=exact * n * np.abs(dy.astype(np.float64)).max())
    np.testing.assert_allclose(gw, rgw, rtol=0, atol=max(exact, tol / 10) * n * np.abs(dy.astype(np.float64)).max() * 4)
    again = backward(be, x, dy, channel_axis, G, w)
    for a, b in zip((gx, gw, gb), again):
        same_bits(a, b)


@pytest.mark.parametrize(
    "shape, channel_axis, G",
    [((9, 8, 3, 4), 1, 8), ((5, 2, 97, 101), 1, 1), ((5, 3, 2, 300), -1, 3), ((4, 40, 100), -1, 20)],
)
def test_backward_grid_limits_tiled(be, monkeypatch, shape, channel_axis, G):
    """Launches tiled to grids of 7 x 3 x 3 blocks give the same bits."""
    x = floats(shape, np.float32, seed=1)
    dy = floats(shape, np.float32, seed=2, loc=0.0, scale=1.0)
    w = np.linspace(0.5, 2, shape[channel_axis])
    want = backward(be, x, dy, channel_axis, G, w)
    monkeypatch.setitem(cp.LIMITS, "grid_x", 7)
    monkeypatch.setitem(cp.LIMITS, "grid_yz", 3)
    monkeypatch.setattr(_names, "MAX_GRID_X", 7)
    monkeypatch.setattr(_names, "MAX_GRID_YZ", 3)
    for a, b in zip(backward(be, x, dy, channel_axis, G, w), want):
        same_bits(a, b)


def test_backward_edge_cases(be):
    x = np.zeros((0, 3, 4), np.float32)
    gx, gw, gb = backward(be, x, x, 1, 3, None)
    assert gx.shape == x.shape and (gw == 0).all() and (gb == 0).all() and gw.shape == (3,)
    x = np.zeros((2, 3, 0), np.float64)
    gx, gw, gb = backward(be, x, x, -1, 1, None)
    assert gx.shape == x.shape and gw.shape == (0,) if x.shape[-1] == 0 else True
    # a constant plane: xhat = 0, grad_x = r * (gy - mean(gy))
    x = np.full((1, 2, 3, 5), 7.0)
    dy = floats(x.shape, np.float64)
    gx, gw, gb = backward(be, x, dy, 1, 2, None)
    rgx, rgw, rgb, scale = ref_backward(x, dy, 2, None, 1e-5, 1)
    np.testing.assert_allclose(gx, rgx, atol=1e-12 * scale)
    np.testing.assert_allclose(gw, 0, atol=1e-12)
    with pytest.raises(TypeError, match="floating"):
        be.backward(
            cp.asarray(ints((1, 2, 3), np.uint8)),
            cp.asarray(ints((1, 2, 3), np.uint8)),
            V.U8,
            False,
            2,
            None,
            1e-5,
            None,
        )


def test_backward_on_x_device(be):
    """x and dy on device 1 while device 0 is current: everything there."""
    x = floats((2, 4, 9, 11), np.float32)
    dy = floats(x.shape, np.float32, seed=3)
    want = backward(be, x, dy, 1, 2, np.linspace(1, 2, 4))
    with cp.cuda.Device(1):
        gx1, dy1 = cp.asarray(x), cp.asarray(dy)
    cp.LAUNCHES.clear()
    gx, gw, gb = be.backward(gx1, dy1, V.F32, False, 2, np.linspace(1, 2, 4), 1e-5, None)
    assert gx.device.id == gw.device.id == gb.device.id == 1
    assert {L.device for L in cp.LAUNCHES} == {1}
    for a, b in zip((gx.get(), gw.get(), gb.get()), want):
        same_bits(a, b)


# ------------------------------------------------------------ coverage
def test_every_instantiation_launches(be):
    """A workload that takes every kernel instantiation of _names.names():
    every (input, output) pair's forward paths and every type's backward."""
    cp.LAUNCHES.clear()
    for idt in INTS + FLOATS:
        for odt in OUTS:
            for k, (shape, ax) in enumerate(
                [((2, 3, 4, 5), 1), ((2, 3, 40, 50), 1), ((1, 2, 97, 101), 1), ((2, 9, 11, 3), -1), ((1, 6, 7, 40), -1)]
            ):
                x = ints(shape, idt, k) if np.dtype(idt).kind in "iu" else floats(shape, idt, k)
                norm(be, x, ax, None, {}, odt)
    for dt in FLOATS:
        for shape, ax in [((2, 3, 40, 50), 1), ((2, 9, 11, 3), -1)]:
            x = floats(shape, dt)
            backward(be, x, x, ax, shape[ax] if ax == 1 else 1, None)  # channels-last groups: merge_groups
    launched = {L.name for L in cp.LAUNCHES}
    wanted = set(_names.names()) if BF16 is not None else {n for n in _names.names() if "bfloat16" not in n}
    assert wanted <= launched, sorted(wanted - launched)


BROKEN = {
    "bw_cl_partial without its barrier": (
        "    s2s[t] = q;\n    __syncthreads();\n    for (int m = rl; m > 1;) {",
        "    s2s[t] = q;\n    for (int m = rl; m > 1;) {",
    ),
    "bw_cl_dx reads its coefficients unsynchronized": (
        "        cc[c] = (Wt)c0s[j];\n    }\n    __syncthreads();\n",
        "        cc[c] = (Wt)c0s[j];\n    }\n",
    ),
    "bw_cf_dx without its alignment check": (
        "                     ((unsigned long long)(op + s0))) &\n                    15ull) == 0;\n",
        "                     ((unsigned long long)(op + s0))) &\n                    15ull) == 0 || true;\n",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_emulator_catches_a_broken_backward(be, broken, monkeypatch):
    old, new = BROKEN[broken]
    src = be._source()
    assert src.count(old) >= 1, "kernels.cu changed: update BROKEN"
    # the backward kernels only: the forward's copies of the pattern stay
    mark = "// " + "-" * 64 + " backward"
    head, tail = src.split(mark)
    assert old in tail
    monkeypatch.setattr(be, "_source", lambda: head + mark + tail.replace(old, new))
    be._module.cache_clear()
    be._function.cache_clear()
    try:
        failed = 0
        for shape, ax in [((2, 37, 11, 40), -1), ((2, 300, 3), -1), ((1, 2, 97, 101), 1), ((2, 3, 11, 13), 1)]:
            x = floats(shape, np.float32)
            dy = floats(shape, np.float32, seed=5)
            try:
                gx, gw, gb = backward(be, x, dy, ax, shape[ax], None)
                rgx, rgw, rgb, scale = ref_backward(x, dy, shape[ax], None, 1e-5, ax)
                np.testing.assert_allclose(gx, rgx, atol=2e-6 * scale)
                np.testing.assert_allclose(gb, rgb, atol=1e-9 * x.size)
            except (AssertionError, RuntimeError):
                failed += 1
        assert failed, f"{broken}: every case still passed"
    finally:
        be._module.cache_clear()
        be._function.cache_clear()
