"""Concurrency, GIL release, determinism, memory growth, size limits, edge numerics."""
import os
import sys
import threading
import time

import numpy as np
import pytest

import fastnorm
import _reference as R
from _isa import LEVELS, UNFUSED_LEVEL, kernels
from _isa import unfused as _isa_unfused


# ---------------------------------------------------------------- concurrency
def _work(rng_seed):
    rng = np.random.default_rng(rng_seed)
    shape = [(1, 3, 300, 200), (4, 8, 32, 32), (2, 50, 40, 6)][rng_seed % 3]
    return (rng.standard_normal(shape) + rng_seed).astype(np.float32)


def test_eight_threads_match_serial():
    inputs = [_work(i) for i in range(8)]
    shared = _work(99)
    serial = [(fastnorm.instance_norm(x), fastnorm.group_norm(x, 1, channel_axis=-1),
               fastnorm.instance_stats(x)) for x in inputs]
    serial_shared = fastnorm.instance_norm(shared)
    results = [None] * 8
    errors = []
    barrier = threading.Barrier(8)

    def run(i):
        try:
            barrier.wait()
            for rep in range(5):
                nt = (i + rep) % 4 + 1
                x = inputs[i]
                r = (fastnorm.instance_norm(x, num_threads=nt),
                     fastnorm.group_norm(x, 1, channel_axis=-1, num_threads=nt),
                     fastnorm.instance_stats(x, num_threads=nt))
                s = fastnorm.instance_norm(shared, num_threads=nt)
                np.testing.assert_array_equal(s, serial_shared)
            results[i] = r
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2][0], want[2][0])
        np.testing.assert_array_equal(got[2][1], want[2][1])


def test_shared_out_buffers_separate_threads():
    x = _work(3)
    want = fastnorm.instance_norm(x)
    outs = [np.empty_like(x) for _ in range(8)]
    ts = [threading.Thread(target=fastnorm.instance_norm, args=(x,), kwargs={"out": o, "num_threads": 2})
          for o in outs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, want)


def test_gil_is_released_during_compute():
    x = np.random.default_rng(0).standard_normal((1, 8, 2048, 1024)).astype(np.float32)  # 64 MiB
    y = np.empty_like(x)
    fastnorm.instance_norm(x, out=y, num_threads=1)
    t0 = time.perf_counter()
    fastnorm.instance_norm(x, out=y, num_threads=1)
    one = time.perf_counter() - t0
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.01)
        reps = max(3, int(0.3 / max(one, 1e-3)))
        before = ticks[0]
        t0 = time.perf_counter()
        for _ in range(reps):
            fastnorm.instance_norm(x, out=y, num_threads=1)
        elapsed = time.perf_counter() - t0
        during = ticks[0] - before
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    # the spinning thread ran throughout: far more ticks than GIL hand-offs alone would allow
    assert during > 1000 * elapsed, (during, elapsed)


# ---------------------------------------------------------------- determinism
# includes planes larger than a wave share (several waves, a partial last wave)
SPLIT_SHAPES = [(1, 2, 1000, 700), (3, 5, 200, 130), (1, 1, 70001), (2, 3, 17, 18, 19),
                (2, 7, 300, 300)]


@pytest.mark.parametrize("shape", SPLIT_SHAPES)
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_every_function_bit_identical_1_to_8_threads(shape, channel_axis):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 10).astype(np.float32)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    C = x.shape[channel_axis]
    G = 1
    style = x[:1]
    mean, var = np.full(C, 10.0), np.full(C, 9.0)

    def all_funcs(nt):
        return [fastnorm.instance_norm(x, channel_axis=channel_axis, activation="silu", num_threads=nt),
                fastnorm.group_norm(x, G, channel_axis=channel_axis, num_threads=nt),
                *fastnorm.instance_stats(x, channel_axis=channel_axis, num_threads=nt),
                fastnorm.instance_moments(x, channel_axis=channel_axis, num_threads=nt).m2,
                fastnorm.normalize(x, mean, var, channel_axis=channel_axis, num_threads=nt),
                fastnorm.adain(x, style, channel_axis=channel_axis, alpha=0.7, num_threads=nt)]

    ref = all_funcs(1)
    for nt in range(2, 9):
        for a, b in zip(all_funcs(nt), ref):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------- memory
def _rss_mib():
    if os.environ.get("FASTNORM_UNDER_ASAN"):
        pytest.skip("AddressSanitizer's quarantine holds freed memory: RSS does not measure leaks there")
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        pytest.skip("RSS needs /proc (Linux)")


def test_no_memory_growth_over_many_calls():
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = np.ones(4)
    for _ in range(2000):
        fastnorm.instance_norm(x)
        fastnorm.instance_norm(xl, w, channel_axis=-1)
        fastnorm.group_norm(x, 2)
        fastnorm.instance_stats(x)
    before = _rss_mib()
    for _ in range(12500):  # 50,000 calls
        fastnorm.instance_norm(x)
        fastnorm.instance_norm(xl, w, channel_axis=-1)
        fastnorm.group_norm(x, 2)
        fastnorm.instance_stats(x)
    grown = _rss_mib() - before
    assert grown < 4, f"RSS grew {grown:.1f} MiB over 50,000 calls"


def test_no_memory_growth_over_raising_calls():
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    out = np.empty_like(x)
    bad = [lambda: fastnorm.instance_norm(x, eps=-1, out=out),
           lambda: fastnorm.instance_norm(x.astype(np.int32)),
           lambda: fastnorm.group_norm(x, 3),
           lambda: fastnorm.normalize(x, np.zeros(3), np.ones(4)),
           lambda: fastnorm.instance_norm(x, np.ones(5))]
    for _ in range(200):
        for f in bad:
            with pytest.raises((TypeError, ValueError)):
                f()
    before = _rss_mib()
    for _ in range(1000):  # 5,000 raising calls
        for f in bad:
            try:
                f()
            except (TypeError, ValueError):
                pass
    grown = _rss_mib() - before
    assert grown < 4, f"RSS grew {grown:.1f} MiB over 5,000 raising calls"


# ------------------------------------------------------------------------ size
def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


@pytest.mark.bigmem
def test_plane_larger_than_2_31_elements():
    """One float16 plane of 2**31 + 2**16 elements (4 GiB): statistics and a
    normalized sample match the float64 values of the repeating pattern."""
    if _mem_available_gib() < 14:
        pytest.skip("needs ~14 GiB of free memory")
    L = 2**31 + 2**16
    pattern = (np.random.default_rng(5).standard_normal(2**16) * 2 + 3).astype(np.float16)
    x = np.empty((1, 1, L), np.float16)
    xv = x.reshape(-1, 2**16)
    xv[...] = pattern
    pm = pattern.astype(np.float64).mean()
    pv = pattern.astype(np.float64).var()
    m = fastnorm.instance_moments(x)
    assert m.count[0, 0] == L
    np.testing.assert_allclose(m.mean[0, 0], pm, rtol=1e-12)
    np.testing.assert_allclose(m.var[0, 0], pv, rtol=1e-10)
    # channels last: the same memory as (1, L, 1)
    ml = fastnorm.instance_moments(x.reshape(1, L, 1), channel_axis=-1)
    np.testing.assert_allclose(ml.mean[0, 0], pm, rtol=1e-12)
    np.testing.assert_allclose(ml.var[0, 0], pv, rtol=1e-10)
    fastnorm.instance_norm(x, out=x)  # in place: no second 4 GiB buffer
    idx = np.array([0, 1, 2**31 - 1, 2**31, L - 1])
    want = ((pattern[idx % 2**16].astype(np.float64) - pm) / np.sqrt(pv + 1e-5)).astype(np.float16)
    np.testing.assert_allclose(x[0, 0, idx].astype(np.float64), want.astype(np.float64), rtol=2e-3, atol=2e-3)


# -------------------------------------------------------------- edge numerics
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_near_float32_max(channel_axis):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, (2, 3, 40, 30)) * 3.0e38).astype(np.float32)
    x[0, 0] = np.float32(3.4e38)  # a constant plane at the limit
    x[0, 0, 0, 0] = -3.4e38
    xx = x if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = fastnorm.instance_norm(xx, channel_axis=channel_axis)
    assert np.isfinite(y).all(), "variance overflowing float32 must not give inf"
    R.assert_close(y, R.instance_norm(xx, channel_axis=channel_axis))
    m = fastnorm.instance_moments(xx, channel_axis=channel_axis)
    assert np.isfinite(m.var).all() and (m.var > 1e76).any()
    yg = fastnorm.group_norm(xx, 1, channel_axis=channel_axis)
    assert np.isfinite(yg).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_inputs(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    rng = np.random.default_rng(2)
    x = (rng.integers(-1000, 1000, (2, 3, 20, 20)) * tiny).astype(dtype)
    # float32 subnormals: the double accumulator holds their variance, so even
    # eps = 0 normalizes them exactly; float64 ones square to 0 in any float64 code
    eps = 0.0 if dtype == np.float32 else 1e-300
    y = fastnorm.instance_norm(x, eps=eps)
    assert np.isfinite(y).all()
    R.assert_close(y, R.instance_norm(x, eps=eps))
    mean, var = fastnorm.instance_stats(x)
    assert (var >= 0).all()


def test_all_equal_planes_and_eps_zero():
    x = np.full((2, 3, 16, 16), -2.5, np.float32)
    b = np.array([0.5, -1.0, 2.0])
    y = fastnorm.instance_norm(x, bias=b)
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(1, 3, 1, 1), x.shape).astype(np.float32))
    # eps = 0 on a constant plane: 0 / 0 -> NaN, documented, never a crash
    for f in (lambda a: fastnorm.instance_norm(a, eps=0.0), lambda a: fastnorm.group_norm(a, 3, eps=0.0),
              lambda a: fastnorm.instance_norm(np.ascontiguousarray(np.moveaxis(a, 1, -1)), eps=0.0, channel_axis=-1)):
        assert np.isnan(f(x)).all()


PLAN_SETTINGS = [dict(plane_batch=3), dict(plane_batch=1, small_planes=False),
                 dict(wave_bytes=1 << 12, ct_round_bytes=1),
                 dict(wave_bytes=1 << 12, ct_round_bytes=1 << 10, backward_min_bytes=0),
                 dict(small_planes=False), dict(pipeline_max_bytes=0),
                 dict(pipeline_max_bytes=1 << 30), dict(wave_bytes=1 << 12),
                 dict(small_planes=False, pipeline_max_bytes=0, wave_bytes=1 << 14),
                 dict(backward_min_bytes=0), dict(backward_min_bytes=0, wave_bytes=1 << 12),
                 dict(backward_min_bytes=0, pipeline_max_bytes=0),
                 dict(stream_above_bytes=0), dict(stream_above_bytes=0, wave_bytes=1 << 12),
                 dict(stream_above_bytes=0, small_planes=False, pipeline_max_bytes=0,
                      backward_min_bytes=0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(4, 6, 16, 16), (2, 4, 8, 8, 8), (3, 2, 130, 140), (1, 3, 50000)])
def test_every_plan_gives_the_same_bits(dtype, shape):
    """The engine chooses among plans by plane size (one C call for planes of
    one block, pipelined planes, read-then-apply planes, waves across threads,
    the normalize pass forwards or backwards); forcing each choice must not
    change a bit, with affine, groups and activations, in both layouts."""
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 4 + 300).astype(dtype)
    C = shape[1]
    w, b = rng.standard_normal(C), rng.standard_normal(C)

    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))

    def run():
        return [fastnorm.instance_norm(x, w, b, activation=act, num_threads=nt).tobytes()
                for act in (None, "silu", "leaky_relu") for nt in (1, 2, 3)] + \
               [fastnorm.group_norm(x, G, w, b, num_threads=nt).tobytes()
                for G in (1, C // 2 if C % 2 == 0 else 1) for nt in (1, 3)] + \
               [fastnorm.instance_norm(xl, w, b, channel_axis=-1, num_threads=nt).tobytes()
                for nt in (1, 3)]

    ref = run()
    for setting in PLAN_SETTINGS:
        old = E._tuning(**setting)
        try:
            got = run()
        finally:
            E._tuning(*old)
        assert got == ref, setting


def _misaligned_like(a, shift):
    """An empty C-contiguous array shaped like a whose data start `shift`
    elements past a 64-byte boundary."""
    buf = np.empty(a.size + 16, a.dtype)
    k = (-(buf.ctypes.data // a.itemsize)) % (64 // a.itemsize) + shift
    return buf[k:k + a.size].reshape(a.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 5, 33, 37), (3, 37, 20, 9), (2, 100, 7, 11), (1, 16, 64, 64),
                                   (2, 3, 20, 30), (1, 64, 12, 10), (3, 32, 7, 9)])
def test_streaming_stores_give_the_same_bits(dtype, shape):
    """Large float32/float64 outputs are written with non-temporal stores
    (channels first: the lanes before the first aligned line and after the
    last full vector stored normally; channels last: rows of whole vectors of
    at most 64 lanes into an aligned output).  Forced on for small arrays, at
    every level that has them, they must give exactly the normal stores' bits
    through every entry point, at several output alignments (shift 0: 64-byte
    aligned; 1, 3: unaligned; 16 bytes)."""
    from fastnorm._cpu import _engine as E

    streaming = [lv for lv in LEVELS if _streams_at(lv)]
    if not streaming:
        pytest.skip("no level of this CPU/build has streaming stores")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 200).astype(dtype)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    mean, var = rng.standard_normal(shape[:2]) + 200, rng.random(shape[:2]) + 0.5

    def run():
        got = []
        for shift in (0, 1, 3, 16 // x.itemsize):
            for nt in (1, 2, 3):
                o = _misaligned_like(x, shift)
                fastnorm.instance_norm(x, w, b, out=o, num_threads=nt)
                ol = _misaligned_like(xl, shift)
                fastnorm.instance_norm(xl, w, b, channel_axis=-1, out=ol, num_threads=nt)
                got += [o.tobytes(), ol.tobytes()]
            io = x.copy()                         # in place: y is x
            fastnorm.instance_norm(io, w, b, out=io, num_threads=2)
            got.append(io.tobytes())
            got.append(fastnorm.group_norm(x, 1, w, b, num_threads=2).tobytes())
            got.append(fastnorm.normalize(x, mean, var, w, b, num_threads=2).tobytes())
            got.append(fastnorm.normalize(xl, mean, var, w, b, channel_axis=-1,
                                          num_threads=2).tobytes())
        return got

    with kernels(stream=False):
        ref = run()
    old = E._tuning(stream_above_bytes=0)
    try:
        for level in streaming:
            with kernels(isa=level):
                assert fastnorm._cpu._engine.plan_for(x.shape, x.dtype)["stream"]
                assert run() == ref, level
    finally:
        E._tuning(*old)


def _streams_at(level):
    from fastnorm._cpu import _engine as E

    with kernels(isa=level):
        return E.config()["streaming"]


def test_streaming_threshold_and_copy():
    """The default threshold, and the streaming copy of the bench ceiling."""
    from fastnorm._cpu import _engine as E

    level, above = E.streaming_stores()
    assert above == 20 << 20
    src = np.random.default_rng(0).standard_normal(300001)
    for above in (0, 1 << 40):
        old = E._tuning(stream_above_bytes=above)
        try:
            dst = np.zeros_like(src[1:])
            E.parallel_copy(src[1:], dst, 2)
        finally:
            E._tuning(*old)
        np.testing.assert_array_equal(dst, src[1:])
    for mode in (0, 1):
        dst = np.zeros_like(src[1:])
        E.parallel_copy(src[1:], dst, 2, mode)
        np.testing.assert_array_equal(dst, src[1:])
    with pytest.raises(ValueError, match="stream must be -1, 0 or 1, got 2"):
        E.parallel_copy(src, np.empty_like(src), 1, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_wave_plan_matches_reference(dtype):
    """Planes bigger than a thread's L2 share go through the wave plan; check
    it against the float64 oracle, not only against itself."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((1, 5, 512, 400)) * 2 + 50).astype(dtype)
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    ref = R.instance_norm(x.astype(np.float64), weight=w, bias=b)
    for nt in (2, 3):
        R.assert_close(fastnorm.instance_norm(x, weight=w, bias=b, num_threads=nt), ref, dtype)


# ------------------------------------------------------- ISA-independent bits
def _isa_bits(tmp_path, name, flags, cc=None, runner=()):
    """Build tests/c/isa_bits.c against fastnorm/_cpu/fn_kernels.c compiled with
    these flags and return the line it prints (None if this CPU cannot run it)."""
    import os
    import shutil
    import signal
    import subprocess

    import fastnorm as fnm

    inc = os.path.join(os.path.dirname(fnm.__file__), "_cpu")
    src = os.path.join(os.path.dirname(__file__), "c", "isa_bits.c")
    cc = cc or shutil.which("gcc") or shutil.which("cc")
    if cc is None or not os.path.exists(os.path.join(inc, "fn_kernels.c")):
        pytest.skip("needs a C compiler and the kernel sources")
    exe = str(tmp_path / f"isa_{name}")
    # the build's flags (setup.py) and one target's
    base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-w",
            f"-DFN_TARGET={name}"]
    subprocess.run([cc, *base, *flags, "-I", inc, os.path.join(inc, "fn_kernels.c"), src,
                    "-o", exe, "-lm"], check=True, capture_output=True, text=True)
    r = subprocess.run([*runner, exe], capture_output=True, text=True)
    if r.returncode == -signal.SIGILL:
        return None
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


# x86-64 kernel builds: the setup.py targets, two more vector widths' worth of
# flags, and the scalar layer; (name, flags, fused)
X86_BUILDS = [
    ("v4", ["-march=x86-64-v4", "-mprefer-vector-width=512"], True),
    ("v3", ["-march=x86-64-v3"], True),
    ("v2fma", ["-march=x86-64-v2", "-mfma"], True),
    ("base_fma", ["-march=x86-64", "-mfma"], True),
    ("scalar_fma", ["-DFN_SIMD_SCALAR", "-march=x86-64-v3"], True),
    ("base", ["-march=x86-64", "-DFN_FUSED=0"], False),
    ("scalar", ["-DFN_SIMD_SCALAR", "-DFN_FUSED=0"], False),
]


def test_every_isa_level_gives_the_same_bits(tmp_path):
    """One kernel source, every vector width: the AVX-512, AVX2, SSE2 and
    scalar layers hash the same over every kernel (statistics, apply with
    every activation and with streaming stores, small planes, channels-last
    tiles of every width, float32/64/16 and bfloat16, the half conversions)
    when fused, and the same (another hash) when unfused.  A build that lets
    the compiler contract the unfused form must differ from it, so the hash
    can see a stray fused multiply-add."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 builds")
    got = {}
    for name, flags, fused in X86_BUILDS:
        got[name, fused] = _isa_bits(tmp_path, name, flags)
    for fused in (True, False):
        ran = {n: h for (n, f), h in got.items() if f == fused and h is not None}
        assert len(set(ran.values())) == 1, ran
    contracted = _isa_bits(tmp_path, "contract", ["-march=x86-64-v3", "-DFN_FUSED=0",
                                                  "-ffp-contract=fast"])
    if contracted is not None:
        assert contracted != got["base", False], "the hash does not see contraction"


def test_aarch64_neon_gives_the_same_bits(tmp_path):
    """The NEON layer (aarch64), cross-compiled and run under qemu-user where
    both are installed (CI installs them), hashes as the x86-64 builds."""
    import platform
    import shutil

    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if platform.machine().lower() == "aarch64":
        cc, runner = shutil.which("gcc") or shutil.which("cc"), ()
    elif cc is None or qemu is None:
        pytest.skip("needs gcc-aarch64-linux-gnu and qemu-user")
    else:
        runner = (qemu, "-L", "/usr/aarch64-linux-gnu")
    neon = _isa_bits(tmp_path, "neon", ["-static"] if runner else [], cc=cc, runner=runner)
    neon_unfused = _isa_bits(tmp_path, "neon_unfused", ["-DFN_FUSED=0"] + (["-static"] if runner else []),
                             cc=cc, runner=runner)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert neon == _isa_bits(tmp_path, "v3", ["-march=x86-64-v3"])
        assert neon_unfused == _isa_bits(tmp_path, "base", ["-march=x86-64", "-DFN_FUSED=0"])
    assert neon != neon_unfused


@pytest.mark.skipif(UNFUSED_LEVEL is None, reason="this build has no unfused kernels")
@pytest.mark.parametrize("unfused", [False, True])
def test_engine_multiply_add_is_what_it_says(unfused):
    """fused_multiply_add() tells whether y = (x - mean) * scale + shift is
    rounded once; check it on float64 data against an exact oracle (where the
    fused and unfused forms differ, which is about every other element), for
    the FMA kernels and for the unfused ones that CPUs without FMA run."""
    from fractions import Fraction

    from fastnorm._api import _apply_coefs
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 4000)) * 3 + 1
    mean, scale, shift = 0.3141592653589793, 1.2345678901234567, 0.5772156649015329
    with (_isa_unfused() if unfused else kernels()):
        fused_now = E.fused_multiply_add()
        y = _apply_coefs(x, np.full((1, 1), mean), np.full((1, 1), scale),
                         np.full((1, 1), shift), num_threads=1).ravel()
        yl = _apply_coefs(x.reshape(1, -1, 1), np.full((1, 1), mean), np.full((1, 1), scale),
                          np.full((1, 1), shift), channel_axis=-1, num_threads=1).ravel()
    if unfused:
        assert not fused_now
    d = x.ravel() - mean
    plain = d * scale + shift
    exact = np.array([float(Fraction(v) * Fraction(scale) + Fraction(shift)) for v in d])
    assert (exact != plain).sum() > 100      # the data tell the two apart
    want = exact if fused_now else plain
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(yl, want)


@pytest.mark.skipif(UNFUSED_LEVEL is None, reason="this build has no unfused kernels")
def test_unfused_twin_gives_the_same_bits_in_every_plan():
    """The unfused kernels (CPUs without FMA) are as deterministic as the fused
    ones: every plan and thread count gives the same bits, and they differ from
    the fused ones only in the last place."""
    from fastnorm._cpu import _engine as E

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 130, 140)) * 4 + 300).astype(np.float32)
    fused = fastnorm.instance_norm(x, num_threads=2)
    with _isa_unfused():
        ref = fastnorm.instance_norm(x, num_threads=1).tobytes()
        for setting in PLAN_SETTINGS:
            told = E._tuning(**setting)
            try:
                for nt in (1, 2, 3):
                    assert fastnorm.instance_norm(x, num_threads=nt).tobytes() == ref, setting
            finally:
                E._tuning(*told)
    unf = np.frombuffer(ref, np.float32).reshape(x.shape)
    ulp = np.spacing(np.abs(fused))
    assert (np.abs(unf - fused) <= ulp).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("C", [1, 3, 5, 15, 16, 17, 33, 48, 64, 65, 100, 130, 257])
def test_channels_last_apply_bits_equal_channels_first(dtype, C):
    """Channels-last normalizes with other kernels (register tiles of 16-64
    channels, a scalar tail for the rest, virtual rows for C < 16) than
    channels-first, with the same formula: given the same mean and variance
    the two layouts must agree bit for bit, for every channel count.  (The
    statistics themselves may differ in the last bit between layouts: the
    accumulation order follows the memory order.)"""
    rng = np.random.default_rng(C)
    x = (rng.standard_normal((2, C, 37, 29)) * 5 - 20).astype(dtype)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    mean, var = rng.standard_normal((2, C)) - 20, rng.uniform(1, 30, (2, C))
    for nt in (1, 2):
        zf = fastnorm.normalize(x, mean, var, w, b, num_threads=nt)
        zl = fastnorm.normalize(xl, mean, var, w, b, channel_axis=-1, num_threads=nt)
        np.testing.assert_array_equal(zl, np.moveaxis(zf, 1, -1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("channel_axis", [1, -1])
def test_activations_on_infinities_and_nan(dtype, channel_axis):
    """relu(-inf) is +0 (it was NaN when relu was computed as v * 0 + 0),
    relu(NaN) and leaky_relu(NaN) stay NaN, leaky_relu(-inf) is -inf; through
    normalize() with given statistics, so the infinities reach the apply."""
    vals = np.array([-np.inf, -3.0, -0.0, 0.0, 2.5, np.inf, np.nan] * 5)
    x = vals.reshape(1, 1, -1).astype(dtype)
    m, v = np.zeros((1, 1)), np.ones((1, 1))
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    with np.errstate(invalid="ignore"):
        relu = fastnorm.normalize(x, m, v, eps=0.0, activation="relu", channel_axis=channel_axis)
        leaky = fastnorm.normalize(x, m, v, eps=0.0, activation="leaky_relu", negative_slope=0.5,
                                   channel_axis=channel_axis)
    want_relu = np.where(vals < 0, 0.0, vals).astype(dtype)
    want_leaky = np.where(vals < 0, vals * 0.5, vals).astype(dtype)
    np.testing.assert_array_equal(relu.ravel(), want_relu)
    np.testing.assert_array_equal(leaky.ravel(), want_leaky)
