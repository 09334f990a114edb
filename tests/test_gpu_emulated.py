"""The GPU reference suite on kernels.cu executed on the CPU, no GPU needed.

tests/gpu_emu/fakecupy.py stands in for CuPy (arrays held as NumPy) and builds
kernels.cu with g++ against tests/gpu_emu/fnemu.h (each CUDA thread a fiber,
__syncthreads a block barrier, shuffles through a per-warp exchange).  The
real fastnorm/_gpu/_backend.py runs on it unchanged: its grids, blocks and
argument types are what the emulated kernels get, checked strictly (exact
scalar types, pointee dtypes, device of every array, grid limits, guard bytes).
The chunk sizes are shrunk (FN_CHUNK, FN_CL_ROWS, passed by the backend from
fastnorm/_gpu/_names.py) so small shapes reach the split and chunked paths.
"""

import sys

import _reference as R
import numpy as np
import pytest
from gpu_emu import fakecupy as cp

import fastnorm
from fastnorm._gpu import _names

pytestmark = [
    pytest.mark.skipif(not cp.CXX, reason="no host C++ compiler (g++) to build the CUDA emulator"),
    # ucontext fibers and the linker's __start_/__stop_ section symbols: ELF (Linux) only
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CUDA emulator runs on Linux only"),
]

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    ml_dtypes = None
    BF16 = None

# small chunks: split planes and many chunks at small shapes; channels-last
# apply tiles of 32 channels, so C = 40 takes the tiled kernel
CHUNK, CL_ROWS, CL_CT = 1024, 16, 32
DTYPES = [np.float32, np.float64, np.float16] + ([BF16] if BF16 is not None else [])
# channels first: a warp plane (<= 256), a block plane (<= 8192), a split plane (> 8192)
CF_SHAPES = [(3, 4, 5, 7), (2, 3, 40, 50), (1, 2, 97, 101)]
# channels last: C = 3, C = 16 (a multiple of every vector width), C = 40 and
# C = 37 (tiled apply, vector and scalar)
CL_SHAPES = [(2, 9, 11, 3), (2, 7, 5, 16), (1, 6, 7, 40), (2, 5, 3, 37)]
VARIANTS = [
    dict(),
    dict(affine=True, activation="relu"),
    dict(affine=True, activation="leaky_relu", slope=0.2),
    dict(activation="silu"),
]


@pytest.fixture(scope="module")
def be():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_names, "CHUNK", CHUNK)
        mp.setattr(_names, "CL_ROWS", CL_ROWS)
        mp.setattr(_names, "CL_CT", CL_CT)
        with cp.installed() as backend:
            yield backend


def make(shape, dtype, loc=0.5, scale=2.0, seed=0):
    return (loc + scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def affine(C):
    return np.linspace(0.5, 2, C), np.linspace(-1, 1, C)


def run_norm(x, channel_axis, G=None, variant=None, **kw):
    variant = variant or {}
    C = x.shape[channel_axis]
    w, b = affine(C) if variant.get("affine") else (None, None)
    act, slope = variant.get("activation"), variant.get("slope", 0.01)
    g = cp.asarray(x)
    if G is None:
        y = fastnorm.instance_norm(g, w, b, channel_axis=channel_axis, activation=act, negative_slope=slope, **kw)
        ref = R.instance_norm(x, w, b, 1e-5, channel_axis, act, slope)
    else:
        y = fastnorm.group_norm(g, G, w, b, channel_axis=channel_axis, activation=act, negative_slope=slope, **kw)
        ref = R.group_norm(x, G, w, b, 1e-5, channel_axis, act, slope)
    assert isinstance(y, cp.ndarray) and y.dtype == x.dtype and y.shape == x.shape
    return y, ref


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, channel_axis", [(s, 1) for s in CF_SHAPES] + [(s, -1) for s in CL_SHAPES])
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_instance_norm(be, dtype, shape, channel_axis, variant):
    x = make(shape, dtype, seed=variant)
    y, ref = run_norm(x, channel_axis, variant=VARIANTS[variant])
    R.assert_close(y.get(), ref, dtype)


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16] + ([BF16] if BF16 is not None else []), ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize(
    "shape, channel_axis, G",
    [
        ((2, 6, 4, 9), 1, 3),
        ((2, 6, 30, 40), 1, 2),
        ((1, 4, 60, 70), 1, 2),
        ((2, 6, 10), 1, 1),
        ((2, 9, 11, 6), -1, 3),
        ((2, 5, 8, 16), -1, 4),
        ((1, 30, 12), -1, 1),
        ((2, 600, 3), 1, 1),
    ],
)  # Cg > FUSED_CG: the split path
def test_group_norm(be, dtype, shape, channel_axis, G):
    x = make(shape, dtype, seed=G)
    y, ref = run_norm(x, channel_axis, G=G, variant=VARIANTS[G % len(VARIANTS)])
    R.assert_close(y.get(), ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, channel_axis", [(s, 1) for s in CF_SHAPES] + [(s, -1) for s in CL_SHAPES])
def test_moments_match_cpu_engine(be, dtype, shape, channel_axis):
    """Chunked shifted sums merged with Chan's formula: the CPU engine's
    statistics to double rounding (counts exact)."""
    x = make(shape, dtype, loc=3.0)
    m = fastnorm.instance_moments(cp.asarray(x), channel_axis=channel_axis)
    ref = fastnorm.instance_moments(x, channel_axis=channel_axis)
    np.testing.assert_array_equal(m.count.get(), ref.count)
    np.testing.assert_allclose(m.mean.get(), ref.mean, rtol=1e-13, atol=0)
    np.testing.assert_allclose(m.m2.get(), ref.m2, rtol=1e-12, atol=0)
    mean, var = fastnorm.instance_stats(cp.asarray(x), channel_axis=channel_axis)
    rm, rv = fastnorm.instance_stats(x, channel_axis=channel_axis)
    assert mean.dtype == rm.dtype and var.dtype == rv.dtype
    np.testing.assert_allclose(mean.get(), rm, rtol=1e-13 if dtype == np.float64 else 1e-7)
    np.testing.assert_allclose(var.get(), rv, rtol=1e-12 if dtype == np.float64 else 1e-7)


@pytest.mark.parametrize("loc", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("shape, channel_axis", [((2, 3, 10, 10), 1), ((1, 2, 97, 101), 1), ((1, 40, 30, 5), -1)])
def test_precision_large_mean(be, loc, shape, channel_axis):
    x = make(shape, np.float32, loc=loc, scale=1.0)
    y = fastnorm.instance_norm(cp.asarray(x), channel_axis=channel_axis).get().astype(np.float64)
    assert np.abs(y - R.instance_norm(x, channel_axis=channel_axis)).max() <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    "shape, channel_axis",
    [(CF_SHAPES[0], 1), (CF_SHAPES[1], 1), (CF_SHAPES[2], 1), (CL_SHAPES[1], -1), (CL_SHAPES[0], -1)],
)
def test_out_and_in_place(be, dtype, shape, channel_axis):
    x = make(shape, dtype)
    g = cp.asarray(x)
    C = x.shape[channel_axis]
    w, b = affine(C)
    ref = fastnorm.instance_norm(g, w, b, channel_axis=channel_axis, activation="silu")
    out = cp.empty(x.shape, x.dtype)
    assert fastnorm.instance_norm(g, w, b, channel_axis=channel_axis, activation="silu", out=out) is out
    np.testing.assert_array_equal(out.get(), ref.get())
    gi = g.copy()
    assert fastnorm.instance_norm(gi, w, b, channel_axis=channel_axis, activation="silu", out=gi) is gi
    np.testing.assert_array_equal(gi.get(), ref.get())
    np.testing.assert_array_equal(g.get(), x)  # the input untouched by the other calls
    R.assert_close(ref.get(), R.instance_norm(x, w, b, 1e-5, channel_axis, "silu"), dtype)


def test_out_overlapping_input(be):
    x = make((2, 3, 40, 50), np.float32)
    buf = cp.asarray(np.concatenate([x.ravel(), np.zeros(7, np.float32)]))
    xin, out = buf[: x.size].reshape(x.shape), buf[7:].reshape(x.shape)
    assert fastnorm.instance_norm(xin, out=out) is out
    R.assert_close(out.get(), R.instance_norm(x))


def test_strided_input(be):
    x = make((2, 3, 50, 40), np.float32)
    v = cp.asarray(x)[:, :, ::2, ::-1]
    R.assert_close(fastnorm.instance_norm(v).get(), R.instance_norm(x[:, :, ::2, ::-1]))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "shape, channel_axis", [((2, 6, 40, 30), 1), ((1, 2, 97, 101), 1), ((2, 9, 11, 6), -1), ((2, 7, 5, 16), -1)]
)
def test_normalize_adain_apply(be, dtype, shape, channel_axis):
    x = make(shape, dtype)
    g = cp.asarray(x)
    rm, rv = R.stats(x, channel_axis)
    y = fastnorm.normalize(g, rm, rv, channel_axis=channel_axis, activation="leaky_relu", negative_slope=0.1)
    R.assert_close(
        y.get(), R.normalize(x, rm, rv, channel_axis=channel_axis, activation="leaky_relu", slope=0.1), dtype
    )
    style = (x[:1].astype(np.float64) * 3 - 1).astype(dtype)
    y = fastnorm.adain(g, cp.asarray(style), channel_axis=channel_axis, alpha=0.5)
    R.assert_close(y.get(), R.adain(x, style, 1e-5, channel_axis, 0.5), dtype)
    # the apply primitive with device coefficients (the Dask blocks' path)
    N, C = rm.shape
    w, b = affine(C)
    sc = 1 / np.sqrt(rv + 1e-5) * w
    y = fastnorm._api.apply_coefs(
        g,
        cp.asarray(rm),
        cp.asarray(sc),
        cp.asarray(np.broadcast_to(b, (N, C))),
        channel_axis=channel_axis,
        activation="relu",
    )
    R.assert_close(y.get(), R.normalize(x, rm, rv, w, b, channel_axis=channel_axis, activation="relu"), dtype)


# ------------------------------------------------------------ coverage
def test_every_same_type_instantiation_launches(be):
    """A workload that takes every forward kernel of each floating type in
    and out (tests/test_gpu_emulated_types.py covers every (input, output)
    pair and the backward kernels)."""
    cp.LAUNCHES.clear()
    for dtype in DTYPES:
        for shape in CF_SHAPES:
            run_norm(make(shape, dtype), 1)
        for shape in CL_SHAPES:
            run_norm(make(shape, dtype), -1)
        run_norm(make((2, 6, 4, 6), dtype), -1, G=3)
    launched = {L.name for L in cp.LAUNCHES}
    wanted = {"merge_chunks", "merge_groups", "coefs_from_triples"}
    for t in _names.TYPES.values():
        wanted |= set(_names.forward(t, t)) if BF16 is not None or "bfloat16" not in t else set()
    assert wanted <= launched, sorted(wanted - launched)


# ----------------------------------------------------------- the emulator
def test_half_conversions_round_to_nearest_even(be):
    lib = cp.helper_lib()
    import ctypes

    rng = np.random.default_rng(0)
    bits = np.concatenate(
        [
            rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32),
            np.array(
                [
                    0,
                    0x80000000,
                    0x7F800000,
                    0xFF800000,
                    0x477FE000,
                    0x477FF000,
                    0x477FEFFF,
                    0x33000000,
                    0x33000001,
                    0x387FE000,
                    0x38800000,
                    0x3F801000,
                    0x3F803000,
                    0x3F808000,
                    0x3F818000,
                    0x00000001,
                ],
                np.uint32,
            ),
        ]
    )
    # every half's neighbourhood: the value, and the midpoints to its neighbours
    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    mids = ((h[1:].astype(np.float64) + h[:-1]) / 2).astype(np.float32)
    f = np.concatenate([bits.view(np.float32), h, mids, -mids])

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    o = np.empty(f.size, np.uint16)
    lib.fnemu_f2h(ptr(f), ptr(o), ctypes.c_long(f.size))
    with np.errstate(all="ignore"):
        want = f.astype(np.float16)
    ok = (o.view(np.float16) == want) | (np.isnan(want) & np.isnan(o.view(np.float16)))
    assert ok.all(), f[~ok][:5]
    back = np.empty(65536, np.float32)
    allh = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    lib.fnemu_h2f(ptr(allh), ptr(back), ctypes.c_long(65536))
    np.testing.assert_array_equal(back, allh.view(np.float16).astype(np.float32))
    if BF16 is not None:
        lib.fnemu_f2b(ptr(f), ptr(o), ctypes.c_long(f.size))
        with np.errstate(all="ignore"):
            want = f.astype(BF16)
        got = o.view(BF16)
        ok = (got == want) | (np.isnan(want.astype(np.float32)) & np.isnan(got.astype(np.float32)))
        assert ok.all(), f[~ok][:5]
        lib.fnemu_b2f(ptr(allh), ptr(back), ctypes.c_long(65536))
        np.testing.assert_array_equal(back, allh.view(BF16).astype(np.float32))


BROKEN = {
    # the barrier that keeps a warp from overwriting the partial sums another warp still reads
    "block_sum without its first barrier": ("    v = warp_sum(v);\n    __syncthreads();\n", "    v = warp_sum(v);\n"),
    # the barrier between the warps' writes and warp 0's reads
    "block_sum without its second barrier": (
        "    if (lane == 0) smem[wid] = v;\n    __syncthreads();\n",
        "    if (lane == 0) smem[wid] = v;\n",
    ),
    "warp_sum one shuffle short": ("for (int o = 16; o > 0; o >>= 1)", "for (int o = 16; o > 1; o >>= 1)"),
    # a lane that leaves before its warp's shuffles: a deadlock the emulator reports
    "a lane exits before the warp's shuffles": (
        "    if (p >= P) return;\n",
        "    if (p >= P || ((threadIdx.x & 31) == 5 && p == P - 1)) return;\n",
    ),
    "cl_partial without its barrier": ("    s2s[t] = q;\n    __syncthreads();\n", "    s2s[t] = q;\n"),
    "cl_partial's tree without its barrier": (
        "            s2s[t] += s2s[t + h * ct];\n        }\n        __syncthreads();\n",
        "            s2s[t] += s2s[t + h * ct];\n        }\n",
    ),
    "channels-last apply reads its coefficients unsynchronized": (
        "        csf[c] = (W)shift[j];\n    }\n    __syncthreads();\n",
        "        csf[c] = (W)shift[j];\n    }\n",
    ),
    # a 16-byte access where a row is not 16-byte aligned (rows of 9797 floats)
    "cf_apply without its alignment check": (
        "    bool aligned = ((((unsigned long long)(xp + s0)) & (sizeof(typename V::In) - 1)) |\n"
        "                    (((unsigned long long)(yp + s0)) & (sizeof(typename V::Out) - 1))) == 0;\n",
        "    bool aligned = true;\n",
    ),
    "fused block reads its group's coefficients unsynchronized": (
        "            csf[c] = (Wt)(b ? b[c0 + c] : 0.0);\n        }\n        __syncthreads();\n",
        "            csf[c] = (Wt)(b ? b[c0 + c] : 0.0);\n        }\n",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_emulator_catches_a_broken_kernel(be, broken, monkeypatch):
    """kernels.cu with one barrier or shuffle removed fails this suite (a
    wrong result, or a deadlock the emulator reports)."""
    old, new = BROKEN[broken]
    src = be._source()
    assert old in src, "kernels.cu changed: update BROKEN"
    monkeypatch.setattr(be, "_source", lambda: src.replace(old, new))
    be._module.cache_clear()
    be._function.cache_clear()
    try:
        failed = 0
        cases = [
            ((2, 3, 40, 50), 1, None),
            ((1, 2, 97, 101), 1, None),
            ((3, 4, 5, 7), 1, None),
            ((2, 6, 30, 40), 1, 2),
            ((2, 37, 11, 40), -1, None),
            ((2, 300, 3), -1, None),
        ]
        for shape, ax, G in cases:
            x = make(shape, np.float32)
            try:
                y, ref = run_norm(x, ax, G=G)
                R.assert_close(y.get(), ref)
            except (AssertionError, RuntimeError):
                failed += 1
        assert failed, f"{broken}: every case still passed"
    finally:
        be._module.cache_clear()
        be._function.cache_clear()


# ------------------------------ devices, grid limits, lanes and compilation
def _on_device_1(x):
    with cp.cuda.Device(1):
        return cp.asarray(x)


@pytest.mark.parametrize(
    "shape, channel_axis", [((2, 6, 4, 5), 1), ((2, 6, 40, 30), 1), ((1, 2, 97, 101), 1), ((2, 9, 11, 6), -1)]
)
def test_memory_on_x_device(be, shape, channel_axis):
    """#2: x on device 1 while device 0 is current: outputs, coefficients and
    every launch on device 1 (the fake refuses a launch with an array of
    another device)."""
    x = make(shape, np.float32)
    g = _on_device_1(x)
    C = x.shape[channel_axis]
    w, b = affine(C)
    assert cp.cuda.Device().id == 0
    cp.LAUNCHES.clear()
    y = fastnorm.instance_norm(g, w, b, channel_axis=channel_axis, activation="silu")
    assert y.device.id == 1
    R.assert_close(y.get(), R.instance_norm(x, w, b, 1e-5, channel_axis, "silu"))
    y = fastnorm.group_norm(g, 3, w, b, channel_axis=channel_axis) if C % 3 == 0 else y
    mean, var = fastnorm.instance_stats(g, channel_axis=channel_axis)
    assert mean.device.id == 1 and var.device.id == 1
    rm, rv = R.stats(x, channel_axis)
    np.testing.assert_allclose(mean.get(), rm, rtol=1e-6)
    y = fastnorm.normalize(g, rm, rv, w, b, channel_axis=channel_axis)  # host statistics
    assert y.device.id == 1
    R.assert_close(y.get(), R.normalize(x, rm, rv, w, b, channel_axis=channel_axis))
    y = fastnorm.normalize(g, cp.asarray(rm), cp.asarray(rv), channel_axis=channel_axis)  # on device 0
    R.assert_close(y.get(), R.normalize(x, rm, rv, channel_axis=channel_axis))
    y = fastnorm.adain(g, g[:1], channel_axis=channel_axis)
    assert y.device.id == 1
    R.assert_close(y.get(), R.adain(x, x[:1], 1e-5, channel_axis))
    with cp.cuda.Device(1):
        out = cp.empty(x.shape, x.dtype)
    assert fastnorm.instance_norm(g, out=out, channel_axis=channel_axis) is out
    R.assert_close(out.get(), R.instance_norm(x, channel_axis=channel_axis))
    assert cp.LAUNCHES and {L.device for L in cp.LAUNCHES} == {1}


@pytest.mark.parametrize(
    "shape, channel_axis, G",
    [
        ((9, 8, 3, 4), 1, None),
        ((5, 4, 30, 40), 1, None),
        ((5, 2, 97, 101), 1, None),
        ((4, 6, 20, 30), 1, 2),
        ((5, 3, 2, 300), -1, None),
        ((7, 3, 2, 300), -1, 3),
        ((4, 40, 2000), -1, None),
        ((5, 200, 3), -1, None),
    ],
)
def test_grid_limits_tiled(be, monkeypatch, shape, channel_axis, G):
    """#7: with the device's grid limits shrunk to 7 blocks in x and 3 in y and
    z, every launch still fits (the fake refuses one that does not) and the
    results are right: the backend loops over tiles."""
    monkeypatch.setitem(cp.LIMITS, "grid_x", 7)
    monkeypatch.setitem(cp.LIMITS, "grid_yz", 3)
    monkeypatch.setattr(_names, "MAX_GRID_X", 7)
    monkeypatch.setattr(_names, "MAX_GRID_YZ", 3)
    x = make(shape, np.float32)
    y, ref = run_norm(x, channel_axis, G=G, variant=VARIANTS[1])
    R.assert_close(y.get(), ref)
    rm, rv = R.stats(x, channel_axis)
    R.assert_close(
        fastnorm.normalize(cp.asarray(x), rm, rv, channel_axis=channel_axis).get(),
        R.normalize(x, rm, rv, channel_axis=channel_axis),
    )
    t = fastnorm.instance_moments(cp.asarray(x), channel_axis=channel_axis)
    np.testing.assert_allclose(t.m2.get(), fastnorm.instance_moments(x, channel_axis=channel_axis).m2, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16] + ([BF16] if BF16 is not None else []), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(2, 2048, 3), (2, 512, 12), (2, 96, 64), (1, 40, 520), (1, 16, 1100)])
def test_channels_last_lanes_busy(be, dtype, shape, monkeypatch):
    """#5: channels-last statistics and apply keep the block's lanes busy for
    any C (C = 3, C not a multiple of the vector width, C = 64, C above the
    apply's channel tile): at least 90% of the threads launched load data
    (the emulator counts 16-bit loads).  Production sizes, in a fresh backend."""
    for k in ("CHUNK", "CL_ROWS", "CL_CT"):
        monkeypatch.setattr(_names, k, getattr(_names, k))
    _names.CHUNK, _names.CL_ROWS, _names.CL_CT = 16384, 256, 1024
    x = make(shape, dtype)
    with cp.installed():
        cp.LAUNCHES.clear()
        y, ref = run_norm(x, -1)
    R.assert_close(y.get(), ref, dtype)
    cl = [L for L in cp.LAUNCHES if L.name.startswith("cl_")]
    assert {L.name.split("<")[0] for L in cl} >= {"cl_partial"} and len(cl) >= 2
    for L in cl:
        assert L.loading >= 0.9 * L.threads, (L.name, L.grid, L.block, L.loading, L.threads)


def test_one_module_per_dtype_compiled_lazily(be):
    """#4: a float32 call compiles the float32 kernels only (float32 in and
    out, and the common ones), a float16 call then adds its own module; the
    options are stable."""
    with cp.installed() as fresh:
        cp.RawModule.compiled.clear()
        run_norm(make((2, 3, 40, 50), np.float32), 1)
        run_norm(make((2, 9, 11, 3), np.float32), -1)
        mods = list(cp.RawModule.compiled)
        names = [n for _, ne in mods for n in ne]
        assert len(mods) == 1 and set(names) == set(_names.names("float")), names
        assert all("<" not in n or n.split("<")[1].startswith(("float>", "float, float")) for n in names), names
        run_norm(make((2, 3, 40, 50), np.float16), 1)
        new = cp.RawModule.compiled[len(mods) :]
        assert len(new) == 1 and set(new[0][1]) == set(_names.names("__half")), new
        assert len({o for o, _ in cp.RawModule.compiled}) == 1
        assert fresh is not be


# ------------------------------------------- range and precision against the CPU engine
def _host(a):
    return np.asarray(a.get() if hasattr(a, "get") else a)


@pytest.mark.parametrize(
    "x, dtype",
    [
        # squares above float's range: 16-bit outputs accumulate in double too
        (np.array([1e20, -2e20, 3e20, 0.5e20], np.float32).reshape(1, 1, 4), np.float16),
        (np.array([9 * 10**18, -(9 * 10**18), 4 * 10**18, 0], np.int64).reshape(1, 1, 1, 4), BF16),
        (np.array([1e38, -1e38, 1e38, -1e38], np.float32).astype(BF16).reshape(1, 1, 4) if BF16 else None, None),
    ],
    ids=["f32-to-f16", "i64-to-bf16", "bf16-1e38"],
)
def test_16_bit_outputs_of_huge_values_equal_the_cpu(be, x, dtype):
    if x is None or (dtype is None and BF16 is None) or (dtype is BF16 and BF16 is None):
        pytest.skip("ml_dtypes is not installed")
    cpu = fastnorm.instance_norm(x, dtype=dtype)
    gpu = _host(fastnorm.instance_norm(cp.asarray(x), dtype=dtype))
    assert np.isfinite(cpu.astype(np.float64)).all()
    assert np.array_equal(gpu.astype(np.float64), cpu.astype(np.float64))


def test_16_bit_statistics_are_computed_in_double(be):
    x = np.random.default_rng(0).standard_normal((1, 1, 97, 101)).astype(np.float16)
    exact = x.astype(np.float64).ravel()
    m = fastnorm.instance_moments(cp.asarray(x))
    assert abs(_host(m.mean).ravel()[0] - exact.mean()) <= 1e-15
    m2 = ((exact - exact.mean()) ** 2).sum()
    assert abs(_host(m.m2).ravel()[0] - m2) <= 1e-12 * m2


def test_adain_of_float64_into_float32_reads_the_float32_copy(be):
    rng = np.random.default_rng(1)
    content = 1e6 + 1e-2 * rng.standard_normal((1, 2, 4, 4))
    style = 3 * rng.standard_normal((1, 2, 4, 4))
    cpu = fastnorm.adain(content, style, dtype=np.float32)
    assert np.array_equal(cpu, fastnorm.adain(content.astype(np.float32), style.astype(np.float32)))
    gpu = _host(fastnorm.adain(cp.asarray(content), cp.asarray(style), dtype=np.float32))
    R.assert_close(gpu, cpu, np.float32)


def test_float32_backward_is_computed_in_double(be):
    rng = np.random.default_rng(2)
    # 1-element planes: exactly 0
    x = rng.standard_normal((2, 3, 1, 1)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert not _host(fastnorm.instance_norm_backward(cp.asarray(dy), cp.asarray(x))[0]).any()
    # near-cancelling planes: within a few float32 ulps of the float64 result
    x = (1e-3 * rng.standard_normal((1, 2, 5, 7))).astype(np.float32)
    dy = (0.7 + 1e-3 * rng.standard_normal(x.shape)).astype(np.float32)
    r64 = fastnorm.instance_norm_backward(dy.astype(np.float64), x.astype(np.float64))[0]
    gx = _host(fastnorm.instance_norm_backward(cp.asarray(dy), cp.asarray(x))[0])
    assert np.abs(gx - r64).max() <= 1e-6 * np.abs(r64).max()
