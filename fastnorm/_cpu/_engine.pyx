# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""OpenMP drivers around the C kernels (fn_dispatch.h: one target's table, chosen at import).

Everything here assumes validated input (see fastnorm._validate): contiguous
arrays of a supported dtype, consistent sizes, thread count >= 1.  The GIL is
released for the whole computation.

Types.  x has an input code dt (any storage code: floating or integer), y an
output code odt (a floating one, y.itemsize bytes per element): the kernels
that run are the output type's, reading x converted on load (fn_base.h,
"Input and output types").  Statistics alone read exact doubles (odt =
FN_F64 in the table).

Work split.  Statistics are always computed per block of at most FN_BLOCK
elements (channels-first: a slice of one plane; channels-last: a run of rows
of one instance, all channels).  Block triples are merged with Chan's formula
in block order.  The block boundaries and the merge order depend only on the
shape, never on the thread count or on which plan runs, so every plan and
every num_threads gives identical bits.

Plans.  "fused": one thread owns a whole plane (or instance): statistics, then
the normalize pass while the data are still in L2.  "split": statistics over
all blocks in parallel, a merge, then the normalize pass over the same blocks
with the same static schedule (each thread re-reads what it just read).
"""
from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport SIZE_MAX
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "fn_dispatch.h" nogil:
    # storage codes (fn_base.h; fastnorm._validate maps dtypes to the same
    # numbers, tests/test_constants.py checks) and the activation without one
    enum:
        FN_F16
        FN_F32
        FN_F64
        FN_BF16
        FN_U8
        FN_I8
        FN_U16
        FN_I16
        FN_U32
        FN_I32
        FN_U64
        FN_I64
        FN_NCODES
        FN_NOUT
        FN_ACT_NONE
    ctypedef struct fn_triple:
        double n
        double mean
        double m2
    int FN_BLOCK
    int FN_HAVE_OPENMP
    int omp_get_max_threads()
    int omp_get_num_procs()
    int fn_threads_now(int want, int ncpu)
    void fn_team_finished(int team)
    int fn_team_size()
    void fn_barrier()
    void fn_merge(fn_triple *a, const fn_triple *b)
    void fn_group_coefs(const fn_triple *t, double eps, Py_ssize_t g, Py_ssize_t Cg, Py_ssize_t row0,
                        const double *w, const double *b, double *mean, double *scale, double *shift)
    void fn_stats(int dt, int odt, const void *x, Py_ssize_t n, fn_triple *t)
    void fn_apply(int dt, int odt, const void *x, void *y, Py_ssize_t n, double mean, double sc,
                  double sh, int act, double slope, int stream)
    void fn_planes(int dt, int odt, const void *x, void *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L,
                   Py_ssize_t S, Py_ssize_t G, Py_ssize_t goff, Py_ssize_t Cg, double eps, const double *w,
                   const double *b, int act, double slope, fn_triple *tri, double *mean, double *scale,
                   double *shift)
    void fn_stats_apply(int dt, int odt, const void *xs, Py_ssize_t ns, fn_triple *t, const void *xa,
                        void *ya, Py_ssize_t na, double mean, double sc, double sh)
    void fn_stats_cl(int dt, int odt, const void *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m,
                     Py_ssize_t R, double *acc, fn_triple *out)
    void fn_apply_cl(int dt, int odt, const void *x, void *y, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m,
                     const void *coef, int act, double slope, int stream)
    int fn_can_stream()
    void fn_parallel_copy(const char *src, char *dst, Py_ssize_t nbytes, int nthreads, int stream)
    void fn_widen_f16(const unsigned short *src, float *dst, Py_ssize_t n)
    void fn_narrow_f16(const float *src, unsigned short *dst, Py_ssize_t n)
    int fn_select(const char *name, int fused)
    const char *fn_levels()
    const char *fn_built_levels()
    const char *fn_level()
    const char *fn_vector()
    int fn_fused()
    int fn_half_hw()
    int fn_have_openmp()
    ctypedef struct fn_config_t:
        int stream
    fn_config_t fn_config

cdef extern from "fn_pool.h":
    object fn_pool_capsule()
    size_t fn_pool_clear()
    size_t fn_pool_set_cap(size_t cap)
    size_t fn_pool_held()
    size_t fn_pool_get_cap()
    size_t FN_POOL_MIN

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

# setup.py compiles the engine with -DFN_BUILD_INFO=<a JSON object as a C string>:
# the facts of this build (compiler, flags, kernel targets) live in the binary
# they describe, not in a generated file
cdef extern from *:
    """
    #ifndef FN_BUILD_INFO
    #define FN_BUILD_INFO "{}"
    #endif
    static const char fn_build_info[] = FN_BUILD_INFO;
    """
    const char *fn_build_info

BLOCK = FN_BLOCK
# Below this many elements one thread does it all: a parallel region costs
# more than the work.
cdef Py_ssize_t SERIAL_BELOW_N = 1 << 15
# Planes up to this size are software-pipelined (the statistics of the next
# plane are read while this one, still in L2, is normalized, interleaved in
# one loop); larger ones are read, then normalized while still in L2.  The
# two planes in flight and the output must fit a 1 MiB L2.
cdef Py_ssize_t PIPELINE_MAX_BYTES = 1 << 18
# Planes larger than this are normalized in waves shared by all threads, each
# thread holding at most about this much of the wave in its L2.
cdef Py_ssize_t WAVE_BYTES = 1 << 19
# A plane, instance or thread's share larger than this is normalized from its
# end: with LRU-like caches a forward second pass over more than L2 misses on
# every line, a backward one hits on the part the statistics read last.
cdef Py_ssize_t BACKWARD_MIN_BYTES = 1 << 20
# planes of one statistics block run through one C call per thread (fn_planes)
cdef bint SMALL_PLANES = True
# a thread normalizes its planes this many at a time, through working arrays
# of this size (the pipeline restarts once per batch)
cdef Py_ssize_t PLANE_BATCH = 4096
# the channels-last wave plan holds the triples of at most about this many
# bytes of chunks at once (cl_round_chunks)
cdef Py_ssize_t CT_ROUND_BYTES = 16 << 20
# float32/float64 outputs without activation larger than this are written
# with non-temporal stores where the target has them: past the last-level
# cache a normal store first reads the line it writes.  (The threshold's
# measurements: benchmarks/README.md, "Streaming stores".)
cdef Py_ssize_t STREAM_ABOVE_BYTES = 20 << 20


# ------------------------------------------------------------------ plans
cdef struct plan_t:
    int dt               # input code
    int odt              # output code (the kernels that run: fn_base.h, "Input and output types")
    Py_ssize_t isz       # bytes of an input element
    Py_ssize_t osz       # bytes of an output element
    int act
    double slope
    int n_threads        # threads of the team (1: serial, no parallel region)
    bint parallel
    bint fused           # one thread owns whole planes / instances; else waves
    bint small_planes    # channels first, fused, planes of one block: one C call per thread
    bint pipelined       # channels first, fused: plane p+1 read while plane p is normalized
    bint backward        # the normalize pass of a large plane / instance / share runs from its end
    bint stream          # non-temporal output stores
    Py_ssize_t wave      # planes (instances) per wave when not fused


cdef inline int team_for(int n_threads, Py_ssize_t work) noexcept nogil:
    """Threads for a call of `work` elements: 1 below SERIAL_BELOW_N, else at
    most n_threads and, when other processes keep cores busy, no more than
    the cores left to us (fn_threads_now).  The last step of the thread
    policy of fastnorm/_threads.py, which decided n_threads."""
    if n_threads <= 1 or work < SERIAL_BELOW_N:
        return 1
    return fn_threads_now(n_threads, omp_get_num_procs())


cdef inline bint stream_for(int odt, int act, Py_ssize_t out_bytes) noexcept nogil:
    return (act == FN_ACT_NONE and (odt == FN_F32 or odt == FN_F64) and out_bytes > STREAM_ABOVE_BYTES
            and fn_can_stream())


cdef inline bint owns_units(Py_ssize_t units, int n_threads, Py_ssize_t unit_bytes) noexcept nogil:
    """One thread per plane (instance) when that balances and a unit fits L2
    with its output."""
    return n_threads == 1 or (units >= n_threads and (units % n_threads == 0 or units >= 4 * n_threads)
                              and unit_bytes <= WAVE_BYTES)


cdef inline Py_ssize_t wave_units(int n_threads, Py_ssize_t unit_bytes, Py_ssize_t total) noexcept nogil:
    """Planes / instances per wave: about n_threads * WAVE_BYTES, at least one."""
    cdef Py_ssize_t w = (n_threads * WAVE_BYTES) // unit_bytes if unit_bytes > 0 else total
    return w if w > 0 else 1


cdef inline Py_ssize_t plan_bytes(Py_ssize_t isz, Py_ssize_t osz) noexcept nogil:
    """The element size the plans size their units by: the mean of the input's
    and the output's (what a unit moves per element and direction; the
    element size itself when they are the same type)."""
    return (isz + osz) // 2


cdef plan_t plan_cf(int dt, int odt, Py_ssize_t P, Py_ssize_t L, Py_ssize_t isz_in, Py_ssize_t osz,
                    int n_threads, int act, double slope) noexcept nogil:
    """The channels-first plan for P planes of L elements."""
    cdef plan_t pl
    cdef Py_ssize_t nb = (L + FN_BLOCK - 1) // FN_BLOCK, share
    cdef Py_ssize_t isz = plan_bytes(isz_in, osz)
    pl.dt = dt
    pl.odt = odt
    pl.isz = isz_in
    pl.osz = osz
    pl.act = act
    pl.slope = slope
    pl.n_threads = team_for(n_threads, P * L)
    pl.parallel = pl.n_threads > 1
    pl.stream = stream_for(odt, act, P * L * osz)
    pl.fused = owns_units(P, pl.n_threads, L * isz)
    pl.small_planes = pl.fused and nb == 1 and SMALL_PLANES
    pl.pipelined = pl.fused and not pl.small_planes and L * isz <= PIPELINE_MAX_BYTES
    pl.wave = 0 if pl.fused else wave_units(pl.n_threads, L * isz, P)
    if pl.fused:
        pl.backward = not pl.small_planes and not pl.pipelined and L * isz > BACKWARD_MIN_BYTES
    else:
        share = (pl.wave * nb + pl.n_threads - 1) // pl.n_threads
        pl.backward = share * FN_BLOCK * isz > BACKWARD_MIN_BYTES
    return pl


cdef struct cl_plan:
    Py_ssize_t m, W, R, RC, nch, stride


cdef plan_t plan_cl(int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, Py_ssize_t isz_in,
                    Py_ssize_t osz, const cl_plan *q, int n_threads, int act, double slope) noexcept nogil:
    """The channels-last plan for N instances of S rows of C."""
    cdef plan_t pl
    cdef Py_ssize_t share
    cdef Py_ssize_t isz = plan_bytes(isz_in, osz)
    pl.dt = dt
    pl.odt = odt
    pl.isz = isz_in
    pl.osz = osz
    pl.act = act
    pl.slope = slope
    pl.n_threads = team_for(n_threads, N * S * C)
    pl.parallel = pl.n_threads > 1
    pl.stream = stream_for(odt, act, N * S * C * osz)
    pl.fused = owns_units(N, pl.n_threads, S * C * isz)
    pl.small_planes = False
    pl.pipelined = False
    pl.wave = 0 if pl.fused else wave_units(pl.n_threads, S * C * isz, N)
    if pl.fused:
        pl.backward = S * C * isz > BACKWARD_MIN_BYTES
    else:
        share = (pl.wave * q.nch + pl.n_threads - 1) // pl.n_threads
        pl.backward = share * q.RC * C * isz > BACKWARD_MIN_BYTES
    return pl


_DTYPE_CODES = {"float16": FN_F16, "float32": FN_F32, "float64": FN_F64, "bfloat16": FN_BF16,
                "uint8": FN_U8, "int8": FN_I8, "uint16": FN_U16, "int16": FN_I16,
                "uint32": FN_U32, "int32": FN_I32, "uint64": FN_U64, "int64": FN_I64}


def plan_for(shape, dtype, channel_axis=1, num_threads=None, out_dtype=None):
    """The plan instance_norm runs for an array of this shape and dtype into
    out_dtype (default: dtype for a floating dtype, float32 for an integer
    one), as a dict: layout, n_threads, parallel, fused (one thread per plane
    or instance; else waves of `wave` planes or instances shared by the
    threads), small_planes, pipelined, backward, stream.  The plans size their
    units by the mean of the input's and the output's element sizes; the
    streaming stores follow the output's type and size.  Every plan gives the
    same bits; this says which one runs (tests, and `python -m fastnorm
    bench`)."""
    cdef cl_plan q
    cdef plan_t pl
    cdef Py_ssize_t N, C, S, isz, osz
    shape = tuple(int(d) for d in shape)
    if len(shape) < 3:
        raise ValueError(f"shape must have at least 3 dimensions, got {shape!r}")
    dt = np.dtype(dtype)
    if dt.name not in _DTYPE_CODES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPE_CODES)}, got {dt.name!r}")
    if out_dtype is None:
        odt = dt if _DTYPE_CODES[dt.name] < FN_NOUT else np.dtype(np.float32)
    else:
        odt = np.dtype(out_dtype)
    if odt.name not in _DTYPE_CODES or _DTYPE_CODES[odt.name] >= FN_NOUT:
        raise ValueError(f"out_dtype must be one of float16, float32, float64, bfloat16, got {odt.name!r}")
    if channel_axis not in (1, -1, len(shape) - 1):
        raise ValueError(f"channel_axis must be 1 or -1, got {channel_axis!r}")
    cl = channel_axis != 1
    n_threads = omp_get_max_threads() if num_threads is None else int(num_threads)
    if n_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads!r}")
    N = shape[0]
    C = shape[len(shape) - 1] if cl else shape[1]
    S = int(np.prod(shape)) // (N * C) if N * C else 0
    isz = dt.itemsize
    osz = odt.itemsize
    if cl:
        q = make_cl_plan(S, C)
        pl = plan_cl(_DTYPE_CODES[dt.name], _DTYPE_CODES[odt.name], N, S, C, isz, osz, &q, n_threads,
                     0, 0.0)
    else:
        pl = plan_cf(_DTYPE_CODES[dt.name], _DTYPE_CODES[odt.name], N * C, S, isz, osz, n_threads, 0, 0.0)
    return {
        "layout": "channels_last" if cl else "channels_first",
        "n_threads": pl.n_threads,
        "parallel": bool(pl.parallel),
        "fused": bool(pl.fused),
        "wave": pl.wave,
        "small_planes": bool(pl.small_planes),
        "pipelined": bool(pl.pipelined),
        "backward": bool(pl.backward),
        "stream": bool(pl.stream),
        "level": fn_level().decode(),
    }


def _tuning(pipeline_max_bytes=None, wave_bytes=None, small_planes=None,
            backward_min_bytes=None, stream_above_bytes=None, plane_batch=None,
            ct_round_bytes=None):
    """Read (and, for tests and experiments, set) the plan thresholds; returns
    the old (pipeline_max_bytes, wave_bytes, small_planes, backward_min_bytes,
    stream_above_bytes, plane_batch, ct_round_bytes).  Every setting gives the
    same bits; only the speed and the working memory change."""
    global PIPELINE_MAX_BYTES, WAVE_BYTES, SMALL_PLANES, BACKWARD_MIN_BYTES, STREAM_ABOVE_BYTES
    global PLANE_BATCH, CT_ROUND_BYTES
    old = (PIPELINE_MAX_BYTES, WAVE_BYTES, bool(SMALL_PLANES), BACKWARD_MIN_BYTES,
           STREAM_ABOVE_BYTES, PLANE_BATCH, CT_ROUND_BYTES)
    if stream_above_bytes is not None:
        STREAM_ABOVE_BYTES = max(0, stream_above_bytes)
    if backward_min_bytes is not None:
        BACKWARD_MIN_BYTES = backward_min_bytes
    if pipeline_max_bytes is not None:
        PIPELINE_MAX_BYTES = pipeline_max_bytes
    if wave_bytes is not None:
        WAVE_BYTES = max(1, wave_bytes)
    if small_planes is not None:
        SMALL_PLANES = small_planes
    if plane_batch is not None:
        PLANE_BATCH = max(1, plane_batch)
    if ct_round_bytes is not None:
        CT_ROUND_BYTES = max(1, ct_round_bytes)
    return old


# ------------------------------------------------------- configuration
def simd_levels():
    """The kernel levels this build has and this CPU runs, best first."""
    return [v for v in fn_levels().decode().split(",") if v]


def built_levels():
    """Every kernel level in this build (some may not run on this CPU)."""
    return [v for v in fn_built_levels().decode().split(",") if v]


def configure(isa=None, fused=None, stream=None):
    """Select the kernels: isa "auto" or a level of simd_levels(); fused False
    runs the level's unfused form (what a CPU without FMA runs; the x86-64
    level has one); stream False turns the non-temporal stores off.  Returns
    the previous settings as a dict (pass it back as keywords to restore).
    Raises ValueError for a level this build or CPU lacks.  For FASTNORM_ISA
    at import, tests and benchmarks: not safe while kernels run."""
    old = config()
    cdef int rc
    if isa is not None or fused is not None:
        name = old["isa"] if isa is None else str(isa)
        want = -1 if fused is None else (1 if fused else 0)
        rc = fn_select(name.encode(), want)
        if rc == -1:
            raise ValueError(f"isa must be 'auto' or one of {simd_levels()}, got {name!r}")
        if rc == -2:
            raise ValueError(f"isa {name!r} is built but this CPU cannot run it; "
                             f"levels here: {simd_levels()}")
        if rc == -3:
            raise ValueError(f"level {name!r} has no {'un' if want == 0 else ''}fused form "
                             f"in this build")
    if stream is not None:
        fn_config.stream = 1 if stream else 0
    return {k: old[k] for k in ("isa", "fused", "stream")}


def config():
    """The active kernel configuration: isa (the level), vector (the vector
    layer), fused (multiply-adds rounded once), half_hw (float16 converted by
    instructions), stream (non-temporal stores allowed and available),
    stream_above_bytes."""
    return {
        "isa": fn_level().decode(),
        "vector": fn_vector().decode(),
        "fused": bool(fn_fused()),
        "half_hw": bool(fn_half_hw()),
        "stream": bool(fn_config.stream),
        "streaming": bool(fn_can_stream()),
        "stream_above_bytes": STREAM_ABOVE_BYTES,
    }


def build_info():
    """How this engine was built, as setup.py recorded it: openmp, compiler,
    cflags, ldflags, native, kernel_targets, sanitize, platform; {} when it was
    built without setup.py's build_ext."""
    import json

    return json.loads((<bytes>fn_build_info).decode("ascii"))


def _select_at_import():
    """FASTNORM_ISA: "auto" (default) or a level of simd_levels(); anything
    else warns (naming the variable, the value and the valid levels) and runs
    auto."""
    import os
    import warnings

    want = os.environ.get("FASTNORM_ISA", "auto").strip() or "auto"
    fn_select(b"auto", -1)
    if want == "auto":
        return
    if fn_select(want.encode(), -1) != 0:
        fn_select(b"auto", -1)
        warnings.warn(
            f"FASTNORM_ISA={want!r} is not a level this CPU and build run; valid: "
            f"'auto', {', '.join(repr(v) for v in simd_levels())}. Running 'auto' "
            f"({fn_level().decode()}).", RuntimeWarning, stacklevel=_caller_level())


def _caller_level():
    """The warnings stacklevel of the first frame outside the import machinery
    and outside fastnorm (the user's line that imported or first called it).

    This module's initialisation runs without a Python frame of its own, so
    the innermost frame is importlib's; warnings walks back one frame per
    level from there, which is what this counts."""
    import importlib
    import os
    import sys

    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    machinery = os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep
    f = sys._getframe(0)
    level = 1
    while f is not None and f.f_back is not None:
        name = f.f_code.co_filename
        path = os.path.abspath(name)
        if not (name.startswith("<frozen importlib") or path.startswith(pkg) or path.startswith(machinery)):
            break
        f = f.f_back
        level += 1
    return level


_select_at_import()


def have_openmp():
    return bool(fn_have_openmp())


def default_threads():
    return omp_get_max_threads()


def build_isa():
    """The active kernel level and its vector layer."""
    return f"{fn_level().decode()}: {fn_vector().decode()}"


def fused_multiply_add():
    """True when the active kernels' multiply-adds are fused (rounded once)."""
    return bool(fn_fused())


def half_impl():
    if fn_half_hw():
        return "hardware conversion (" + fn_vector().decode() + "), bit-identical to the software path"
    return "branch-free software conversion (exact, round-to-nearest-even), bit-identical to F16C"


def streaming_stores():
    """(available, above_bytes): whether the active kernels write large
    float32/float64 outputs without activation with non-temporal stores, and
    the output size above which they do."""
    return bool(fn_can_stream()), STREAM_ABOVE_BYTES


def half_to_float(cnp.ndarray src):
    """Test hook: the active level's float16 -> float32 bulk conversion (uint16 bits in)."""
    cdef cnp.ndarray a = np.ascontiguousarray(src, dtype=np.uint16)
    cdef cnp.ndarray out = np.empty(a.shape[0], np.float32)
    fn_widen_f16(<const unsigned short *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(out), a.shape[0])
    return out


def float_to_half(cnp.ndarray src):
    """Test hook: the active level's float32 -> float16 bulk conversion (uint16 bits out)."""
    cdef cnp.ndarray a = np.ascontiguousarray(src, dtype=np.float32)
    cdef cnp.ndarray out = np.empty(a.shape[0], np.uint16)
    fn_narrow_f16(<const float *>cnp.PyArray_DATA(a), <unsigned short *>cnp.PyArray_DATA(out), a.shape[0])
    return out


# ---------------------------------------------------------------- helpers
cdef inline void plane_stats(int dt, int odt, const char *x, Py_ssize_t L, Py_ssize_t isz,
                             fn_triple *t) noexcept nogil:
    """Triple of one contiguous plane: blocks merged in order."""
    cdef fn_triple b
    cdef Py_ssize_t s = 0, n
    t.n = 0.0
    t.mean = 0.0
    t.m2 = 0.0
    while s < L:
        n = L - s
        if n > FN_BLOCK:
            n = FN_BLOCK
        fn_stats(dt, odt, x + s * isz, n, &b)
        fn_merge(t, &b)
        s += n


cdef inline Py_ssize_t block_end(Py_ssize_t s0, Py_ssize_t L) noexcept nogil:
    return s0 + FN_BLOCK if s0 + FN_BLOCK < L else L


cdef inline void cf_block_stats(int dt, int odt, const char *xp, Py_ssize_t it, Py_ssize_t nb,
                                Py_ssize_t L, Py_ssize_t isz, fn_triple *out) noexcept nogil:
    """Triple of block it = p * nb + k (block k of plane p) of planes of length L."""
    cdef Py_ssize_t p = it // nb
    cdef Py_ssize_t s0 = (it - p * nb) * FN_BLOCK
    fn_stats(dt, odt, xp + (p * L + s0) * isz, block_end(s0, L) - s0, out)


cdef inline void merge_blocks(fn_triple *t, const fn_triple *bt, Py_ssize_t nb) noexcept nogil:
    """t = the nb block triples merged in order (the one merge order of every plan)."""
    cdef Py_ssize_t k
    t.n = 0.0
    t.mean = 0.0
    t.m2 = 0.0
    for k in range(nb):
        fn_merge(t, &bt[k])


cdef inline void seg_apply(const plan_t *pl, const char *x, char *y, Py_ssize_t isz,
                           Py_ssize_t start, Py_ssize_t stop, Py_ssize_t S, Py_ssize_t c0,
                           const double *mean, const double *scale,
                           const double *shift) noexcept nogil:
    """Apply over [start, stop) of a run of consecutive rows of length S whose
    per-row coefficients are mean[c0 + r], scale[c0 + r], shift[c0 + r] (x
    of isz-byte elements, y of the plan's output elements)."""
    cdef Py_ssize_t r, e
    while start < stop:
        r = start // S
        e = (r + 1) * S
        if e > stop:
            e = stop
        fn_apply(pl.dt, pl.odt, x + start * isz, y + start * pl.osz, e - start, mean[c0 + r],
                 scale[c0 + r], shift[c0 + r], pl.act, pl.slope, pl.stream)
        start = e


cdef inline const double *dptr(object a):
    if a is None:
        return NULL
    return <const double *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void *alloc_or_raise(Py_ssize_t nbytes, what) except NULL:
    cdef void *p = malloc(nbytes if nbytes > 0 else 1)
    if p == NULL:
        raise MemoryError(f"fastnorm: could not allocate {nbytes} bytes for {what}")
    return p


# ---------------------------------------------------------- channels-first
def norm_cf(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t G, Py_ssize_t Cg,
            Py_ssize_t S, object weight, object bias, double eps, int act, double slope,
            int n_threads, object stats_out=None):
    """Instance / group norm, channels first: x viewed as (N, G, Cg*S), of
    input code dt, into y of output code odt (a floating code).

    weight, bias: None or float64 arrays of length G*Cg.  stats_out: None or a
    float64 array (N*G, 3) that receives the (count, mean, M2) triples.
    """
    cdef Py_ssize_t P = N * G, L = Cg * S, R = N * G * Cg
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (L + FN_BLOCK - 1) // FN_BLOCK
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef Py_ssize_t wk
    cdef plan_t pl = plan_cf(dt, odt, P, L, isz, y.itemsize, n_threads, act, slope)
    cdef int nth = pl.n_threads
    cdef fn_triple *tri = NULL
    cdef fn_triple *btri = NULL
    cdef double *coef = NULL
    cdef Py_ssize_t batch = PLANE_BATCH if PLANE_BATCH < P else P
    cdef bint keep_tri = stats_out is not None
    try:
        if pl.fused:
            # per-thread working arrays for `batch` planes at a time (the
            # triples of all planes only when they are returned)
            tri = <fn_triple *>alloc_or_raise((P if keep_tri else nth * batch) * sizeof(fn_triple),
                                              "the plane statistics")
            coef = <double *>alloc_or_raise(nth * 3 * batch * Cg * sizeof(double),
                                            "the coefficients")
        else:
            tri = <fn_triple *>alloc_or_raise(P * sizeof(fn_triple), "the plane statistics")
            coef = <double *>alloc_or_raise(3 * R * sizeof(double), "the coefficients")
            btri = <fn_triple *>alloc_or_raise(P * nb * sizeof(fn_triple), "the block statistics")
        with nogil:
            if pl.fused:
                # one worker per thread, each a contiguous range of planes
                for wk in prange(nth, num_threads=nth, schedule='static', chunksize=1,
                                 use_threads_if=pl.parallel):
                    cf_batches(&pl, xp, yp, (P * wk) // nth, (P * (wk + 1)) // nth, L, S, G, Cg,
                               isz, nb, eps, w, b, tri if keep_tri else NULL,
                               tri if keep_tri else tri + wk * batch,
                               coef + wk * 3 * batch * Cg, batch)
            else:
                with parallel(num_threads=nth):
                    cf_waves(&pl, xp, yp, P, L, S, G, Cg, isz, nb, eps, w, b, btri, tri,
                             coef, coef + R, coef + 2 * R)
        if pl.parallel:
            fn_team_finished(nth)
        if stats_out is not None:
            _store_triples(tri, P, stats_out)
    finally:
        free(tri)
        free(coef)
        free(btri)
    return y


cdef void cf_batches(const plan_t *pl, const char *xp, char *yp, Py_ssize_t p0, Py_ssize_t p1,
                     Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t isz,
                     Py_ssize_t nb, double eps, const double *w, const double *b,
                     fn_triple *tri_all, fn_triple *tri_buf, double *coef_buf,
                     Py_ssize_t batch) noexcept nogil:
    """Planes [p0, p1) on one thread, `batch` planes at a time through this
    thread's working arrays (tri_all: the triples of every plane, kept for
    the caller, or NULL), so the working memory does not grow with N x C."""
    cdef Py_ssize_t q = p0, q1
    cdef fn_triple *t
    while q < p1:
        q1 = q + batch if q + batch < p1 else p1
        t = tri_all + q if tri_all != NULL else tri_buf
        cf_range(pl, xp + q * L * isz, yp + q * L * pl.osz, 0, q1 - q, L, S, G, q % G, Cg, isz, nb,
                 eps, w, b, t, coef_buf, coef_buf + batch * Cg, coef_buf + 2 * batch * Cg)
        q = q1


cdef inline void team_share(Py_ssize_t i0, Py_ssize_t cnt, int tid, int team, Py_ssize_t *a,
                            Py_ssize_t *e) noexcept nogil:
    """Thread tid's contiguous share [a, e) of items [i0, i0 + cnt): the same
    for the statistics and the normalize pass of a wave."""
    a[0] = i0 + (cnt * tid) // team
    e[0] = i0 + (cnt * (tid + 1)) // team


cdef void cf_waves(const plan_t *pl, const char *xp, char *yp, Py_ssize_t P, Py_ssize_t L,
                   Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t isz, Py_ssize_t nb,
                   double eps, const double *w, const double *b, fn_triple *btri,
                   fn_triple *tri, double *mean, double *scale, double *shift) noexcept nogil:
    """Run by every thread of a team: planes in waves of pl.wave.  Each thread
    takes the same contiguous share of a wave's blocks for the statistics and
    for the normalize pass, so its second read hits its own L2.  Blocks merge
    in block order, as in every other plan."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t w0, w1, a, e, it, p, s0, k
    w0 = 0
    while w0 < P:
        w1 = w0 + pl.wave
        if w1 > P:
            w1 = P
        team_share(w0 * nb, (w1 - w0) * nb, tid, team, &a, &e)
        for it in range(a, e):
            cf_block_stats(pl.dt, pl.odt, xp, it, nb, L, isz, &btri[it])
        fn_barrier()
        p = w0 + tid
        while p < w1:
            merge_blocks(&tri[p], &btri[p * nb], nb)
            fn_group_coefs(&tri[p], eps, p % G, Cg, p * Cg, w, b, mean, scale, shift)
            p += team
        fn_barrier()
        for k in range(e - a):
            it = e - 1 - k if pl.backward else a + k
            p = it // nb
            s0 = (it - p * nb) * FN_BLOCK
            seg_apply(pl, xp + p * L * isz, yp + p * L * pl.osz, isz, s0, block_end(s0, L), S,
                      p * Cg, mean, scale, shift)
        w0 = w1


cdef void cf_range(const plan_t *pl, const char *xp, char *yp, Py_ssize_t p0, Py_ssize_t p1,
                   Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t goff, Py_ssize_t Cg,
                   Py_ssize_t isz, Py_ssize_t nb, double eps, const double *w, const double *b,
                   fn_triple *tri, double *mean, double *scale, double *shift) noexcept nogil:
    """Planes [p0, p1) on one thread.  Small planes: one C call.  Pipelined:
    the statistics of plane p+1 are read block by block while plane p (still
    in L2) is normalized, so the read and the write streams overlap like a
    copy's.  Else each plane is read, then normalized (backwards when larger
    than L2).  Plane p is in group (goff + p) % G.  The merge order is the
    block order, as in every other plan."""
    cdef int dt = pl.dt, odt = pl.odt
    cdef Py_ssize_t osz = pl.osz
    cdef Py_ssize_t p, k, s0, s1
    cdef fn_triple bt
    cdef bint nxt
    cdef bint interleave = Cg == 1 and pl.act == FN_ACT_NONE and not pl.stream
    if p0 >= p1:
        return
    if pl.small_planes:
        # normal stores: small planes are written while still cached
        fn_planes(dt, odt, xp, yp, p0, p1, L, S, G, goff, Cg, eps, w, b, pl.act, pl.slope, tri, mean,
                  scale, shift)
        return
    plane_stats(dt, odt, xp + p0 * L * isz, L, isz, &tri[p0])
    fn_group_coefs(&tri[p0], eps, (goff + p0) % G, Cg, p0 * Cg, w, b, mean, scale, shift)
    for p in range(p0, p1):
        nxt = p + 1 < p1
        if not pl.pipelined:
            if pl.backward:
                s0 = ((L - 1) // FN_BLOCK) * FN_BLOCK
                while s0 >= 0 and L > 0:
                    seg_apply(pl, xp + p * L * isz, yp + p * L * osz, isz, s0, block_end(s0, L),
                              S, p * Cg, mean, scale, shift)
                    s0 -= FN_BLOCK
            else:
                seg_apply(pl, xp + p * L * isz, yp + p * L * osz, isz, 0, L, S, p * Cg,
                          mean, scale, shift)
            if nxt:
                plane_stats(dt, odt, xp + (p + 1) * L * isz, L, isz, &tri[p + 1])
                fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean,
                               scale, shift)
            continue
        if nxt:
            tri[p + 1].n = 0.0
            tri[p + 1].mean = 0.0
            tri[p + 1].m2 = 0.0
        for k in range(nb):
            s0 = k * FN_BLOCK
            s1 = block_end(s0, L)
            if nxt and interleave:
                # one row per plane: the next plane's block statistics
                # interleaved with this block's apply (fn_stats_apply)
                fn_stats_apply(dt, odt, xp + ((p + 1) * L + s0) * isz, s1 - s0, &bt,
                               xp + (p * L + s0) * isz, yp + (p * L + s0) * osz, s1 - s0,
                               mean[p], scale[p], shift[p])
                fn_merge(&tri[p + 1], &bt)
                continue
            if nxt:
                fn_stats(dt, odt, xp + ((p + 1) * L + s0) * isz, s1 - s0, &bt)
                fn_merge(&tri[p + 1], &bt)
            seg_apply(pl, xp + p * L * isz, yp + p * L * osz, isz, s0, s1, S, p * Cg,
                      mean, scale, shift)
        if nxt:
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale,
                           shift)


cdef void _store_triples(const fn_triple *tri, Py_ssize_t n, object out):
    cdef double *o = <double *>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef Py_ssize_t i
    for i in range(n):
        o[3 * i] = tri[i].n
        o[3 * i + 1] = tri[i].mean
        o[3 * i + 2] = tri[i].m2


def stats_cf(cnp.ndarray x, int dt, Py_ssize_t P, Py_ssize_t L, int n_threads, cnp.ndarray out,
             int odt=-1):
    """Triples of P contiguous planes of length L into out (P, 3) float64: of
    the exact values of any input code (odt -1: the kernels that load double),
    or of the values the kernels of output code odt load (an integer x read as
    x.astype(float32) for a float32 or 16-bit odt)."""
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (L + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t items = P * nb
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef fn_triple *tri = <fn_triple *>cnp.PyArray_DATA(out)
    cdef fn_triple *btri
    cdef Py_ssize_t p, it
    if odt < 0:
        odt = FN_F64
    n_threads = team_for(n_threads, P * L)
    cdef bint par = n_threads > 1
    if owns_units(P, n_threads, 0) or L == 0:
        with nogil:
            for p in prange(P, num_threads=n_threads, schedule='static', use_threads_if=par):
                plane_stats(dt, odt, xp + p * L * isz, L, isz, &tri[p])
        return out
    btri = <fn_triple *>alloc_or_raise(items * sizeof(fn_triple), "the block statistics")
    with nogil:
        for it in prange(items, num_threads=n_threads, schedule='static'):
            cf_block_stats(dt, odt, xp, it, nb, L, isz, &btri[it])
        for p in range(P):
            merge_blocks(&tri[p], &btri[p * nb], nb)
    free(btri)
    return out


def apply_cf(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t R, Py_ssize_t S,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int n_threads):
    """y[r, :] = act((x[r, :] - mean[r]) * scale[r] + shift[r]) for R rows of S."""
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (S + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t items = R * nb
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *mp = <const double *>cnp.PyArray_DATA(mean)
    cdef const double *sp = <const double *>cnp.PyArray_DATA(scale)
    cdef const double *hp = <const double *>cnp.PyArray_DATA(shift)
    cdef Py_ssize_t it, r, s0
    cdef Py_ssize_t osz = y.itemsize
    cdef bint stream = stream_for(odt, act, R * S * osz)
    n_threads = team_for(n_threads, R * S)
    cdef bint par = n_threads > 1
    with nogil:
        for it in prange(items, num_threads=n_threads, schedule='static', use_threads_if=par):
            r = it // nb
            s0 = (it - r * nb) * FN_BLOCK
            fn_apply(dt, odt, xp + (r * S + s0) * isz, yp + (r * S + s0) * osz, block_end(s0, S) - s0,
                     mp[r], sp[r], hp[r], act, slope, stream)
    return y


# ----------------------------------------------------------- channels-last
# Statistics tree, fixed by the shape: one shifted sum per lane over a chunk
# of RC rows (~CL_CHUNK elements, the unit of parallel work; walked in blocks
# of R rows, ~CL_BLOCK elements, that stay in L1 across register tiles), one
# triple per channel per chunk, chunks merged in order into the instance.
cdef enum:
    CL_BLOCK = 8192
    CL_CHUNK = 65536


cdef inline Py_ssize_t cl_m(Py_ssize_t C) noexcept nogil:
    """Rows per virtual row: 16 / gcd(C, 16) for C < 16, so W = C*m % 16 == 0."""
    cdef Py_ssize_t g = 16, a = C, t
    if C >= 16:
        return 1
    while a:
        t = g % a
        g = a
        a = t
    return 16 // g


cdef inline Py_ssize_t cl_block_rows(Py_ssize_t C, Py_ssize_t m) noexcept nogil:
    # ~CL_BLOCK elements (L1-resident for the tile passes), at least 16 rows
    cdef Py_ssize_t v = CL_BLOCK // (C * m)
    if v * m < 16:
        v = (16 + m - 1) // m
    return v * m


cdef inline Py_ssize_t cl_chunk_rows(Py_ssize_t C, Py_ssize_t R) noexcept nogil:
    cdef Py_ssize_t k = CL_CHUNK // (R * C)
    if k < 1:
        k = 1
    return k * R


cdef inline cl_plan make_cl_plan(Py_ssize_t S, Py_ssize_t C) noexcept nogil:
    cdef cl_plan q
    q.m = cl_m(C)
    q.W = C * q.m
    q.R = cl_block_rows(C, q.m)
    q.RC = cl_chunk_rows(C, q.R)
    q.nch = (S + q.RC - 1) // q.RC
    # per-thread scratch: 3*W + 2*C doubles, padded to whole cache lines
    q.stride = (((3 * q.W + 2 * C) * 8) // 64 + 2) * 64
    return q


cdef char *aligned_scratch(Py_ssize_t nbytes, char **base) except NULL:
    base[0] = <char *>alloc_or_raise(nbytes + 64, "the channels-last scratch")
    return base[0] + (64 - (<size_t>base[0]) % 64)


cdef inline void cl_chunk_stats(int dt, int odt, const char *x, Py_ssize_t S, Py_ssize_t C,
                                Py_ssize_t isz, const cl_plan *q, Py_ssize_t k, char *scratch,
                                fn_triple *out) noexcept nogil:
    cdef Py_ssize_t r0 = k * q.RC, r1 = r0 + q.RC
    if r1 > S:
        r1 = S
    fn_stats_cl(dt, odt, x + r0 * C * isz, r1 - r0, C, q.m, q.R, <double *>scratch, out)


cdef inline void cl_chunk_apply(const plan_t *pl, const char *x, char *y, Py_ssize_t S,
                                Py_ssize_t C, Py_ssize_t isz, const cl_plan *q, Py_ssize_t k,
                                const char *tiles) noexcept nogil:
    cdef Py_ssize_t r0 = k * q.RC, r1 = r0 + q.RC
    if r1 > S:
        r1 = S
    fn_apply_cl(pl.dt, pl.odt, x + r0 * C * isz, y + r0 * C * pl.osz, r1 - r0, C, q.m, tiles, pl.act,
                pl.slope, pl.stream)


cdef inline void cl_tile_coefs(int odt, Py_ssize_t C, Py_ssize_t m, const double *mean,
                               const double *scale, const double *shift,
                               char *dst) noexcept nogil:
    """Working-precision (hi, lo, scale, shift) arrays of W = C*m for one
    instance, in the output type odt's working precision."""
    cdef Py_ssize_t W = C * m, j, c
    cdef float *f
    cdef double *d
    cdef float h
    if odt == FN_F64 or odt == FN_F32:
        d = <double *>dst
        for j in range(W):
            c = j % C
            d[j] = mean[c]
            d[W + j] = 0.0
            d[2 * W + j] = scale[c]
            d[3 * W + j] = shift[c]
    else:
        f = <float *>dst
        for j in range(W):
            c = j % C
            h = <float>mean[c]
            f[j] = h
            f[W + j] = <float>(mean[c] - <double>h)
            f[2 * W + j] = <float>scale[c]
            f[3 * W + j] = <float>shift[c]


cdef inline void cl_instance_coefs(fn_triple *tri, Py_ssize_t C, Py_ssize_t G, double eps,
                                   const double *w, const double *b, double *mean,
                                   double *scale, double *shift) noexcept nogil:
    """Per-channel coefficients of one instance from its C channel triples;
    with G < C the channel triples of a group are first merged in order."""
    cdef Py_ssize_t Cg = C // G, g, k
    cdef fn_triple gt
    for g in range(G):
        if Cg == 1:
            gt = tri[g]
        else:
            gt.n = 0.0
            gt.mean = 0.0
            gt.m2 = 0.0
            for k in range(Cg):
                fn_merge(&gt, &tri[g * Cg + k])
        fn_group_coefs(&gt, eps, g, Cg, g * Cg, w, b, mean, scale, shift)


cdef inline void zero_triples(fn_triple *t, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        t[i].n = 0.0
        t[i].mean = 0.0
        t[i].m2 = 0.0


cdef inline void merge_triples(fn_triple *acc, const fn_triple *t, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        fn_merge(&acc[i], &t[i])


cdef void cl_instance(const plan_t *pl, const char *x, char *y, Py_ssize_t S, Py_ssize_t C,
                      Py_ssize_t G, Py_ssize_t isz, const cl_plan *q, char *scratch,
                      fn_triple *ct, fn_triple *tri, double eps, const double *w,
                      const double *b, double *mean, double *scale, double *shift,
                      char *tiles) noexcept nogil:
    """One whole instance on one thread: chunk statistics merged in chunk
    order (as in the wave plan), then the normalize pass."""
    cdef Py_ssize_t k
    zero_triples(tri, C)
    for k in range(q.nch):
        cl_chunk_stats(pl.dt, pl.odt, x, S, C, isz, q, k, scratch, ct)
        merge_triples(tri, ct, C)
    cl_instance_coefs(tri, C, G, eps, w, b, mean, scale, shift)
    cl_tile_coefs(pl.odt, C, q.m, mean, scale, shift, tiles)
    for k in range(q.nch):
        cl_chunk_apply(pl, x, y, S, C, isz, q, q.nch - 1 - k if pl.backward else k, tiles)


cdef inline Py_ssize_t cl_round_chunks(const cl_plan *q, Py_ssize_t C, int nth,
                                       Py_ssize_t items) noexcept nogil:
    """Chunks whose statistics are held at once by the wave plan: enough for
    every thread, at most about CT_ROUND_BYTES of triples (a wave of many
    chunks of many channels held them all: 805 MB for a float16 (1, 65536,
    8192) input)."""
    cdef Py_ssize_t r = CT_ROUND_BYTES // (C * <Py_ssize_t>sizeof(fn_triple))
    if r < nth:
        r = nth
    return r if r < items else (items if items > 0 else 1)


cdef void cl_waves(const plan_t *pl, const char *xp, char *yp, Py_ssize_t N, Py_ssize_t S,
                   Py_ssize_t C, Py_ssize_t G, Py_ssize_t isz, const cl_plan *q, char *scratch,
                   fn_triple *ct, Py_ssize_t rnd, fn_triple *tri_all, fn_triple *tri_w,
                   double eps, const double *w, const double *b, double *coef, char *tiles,
                   Py_ssize_t tsz) noexcept nogil:
    """Run by every thread of a team: instances in waves of pl.wave.  The
    statistics of a wave's chunks are read in rounds of at most rnd chunks
    shared out among the threads, and merged in chunk order (each thread a
    share of the channels) into the instances' triples after each round, so
    the merge order is the one-thread plan's.  The normalize pass shares the
    wave's chunks out contiguously; with one round (the usual case) each
    thread normalizes the chunks it read for the statistics (still in its L2).
    The triples (tri_all: every instance's, kept for the caller, or NULL),
    coefficients and tiles are the wave's own (tri_w, coef, tiles: pl.wave
    instances), so the memory does not grow with N x C."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t n0, n1, a, e, it, n, k, base, cnt, r0, r1, c0, c1
    cdef char *scr = scratch + tid * q.stride
    cdef fn_triple *tri
    cdef Py_ssize_t W3 = pl.wave * C
    team_share(0, C, tid, team, &c0, &c1)
    n0 = 0
    while n0 < N:
        n1 = n0 + pl.wave
        if n1 > N:
            n1 = N
        base = n0 * q.nch
        cnt = (n1 - n0) * q.nch
        # tri + n * C is instance n's triples, for n in [n0, n1)
        tri = (tri_all if tri_all != NULL else tri_w - n0 * C)
        for n in range(n0, n1):
            zero_triples(tri + n * C + c0, c1 - c0)
        r0 = 0
        while r0 < cnt:
            r1 = r0 + rnd if r0 + rnd < cnt else cnt
            team_share(base + r0, r1 - r0, tid, team, &a, &e)
            for it in range(a, e):
                n = it // q.nch
                cl_chunk_stats(pl.dt, pl.odt, xp + n * S * C * isz, S, C, isz, q, it - n * q.nch, scr,
                               ct + (it - base - r0) * C)
            fn_barrier()
            for it in range(base + r0, base + r1):
                n = it // q.nch
                merge_triples(tri + n * C + c0, ct + (it - base - r0) * C + c0, c1 - c0)
            fn_barrier()
            r0 = r1
        n = n0 + tid
        while n < n1:
            k = n - n0
            cl_instance_coefs(tri + n * C, C, G, eps, w, b, coef + k * C,
                              coef + W3 + k * C, coef + 2 * W3 + k * C)
            cl_tile_coefs(pl.odt, C, q.m, coef + k * C, coef + W3 + k * C,
                          coef + 2 * W3 + k * C, tiles + k * tsz)
            n += team
        fn_barrier()
        team_share(base, cnt, tid, team, &a, &e)
        for k in range(e - a):
            it = e - 1 - k if pl.backward else a + k
            n = it // q.nch
            cl_chunk_apply(pl, xp + n * S * C * isz, yp + n * S * C * pl.osz, S, C, isz, q,
                           it - n * q.nch, tiles + (n - n0) * tsz)
        fn_barrier()   # the wave's tiles are rewritten by the next wave
        n0 = n1


def norm_cl(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
            Py_ssize_t G, object weight, object bias, double eps, int act, double slope,
            int n_threads, object stats_out=None):
    """Instance / group norm, channels last: x viewed as (N, S, C), of input
    code dt, into y of output code odt.
    stats_out: None or float64 (N, C, 3) for the per-channel triples."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef plan_t pl = plan_cl(dt, odt, N, S, C, isz, y.itemsize, &q, n_threads, act, slope)
    cdef int nth = pl.n_threads
    cdef Py_ssize_t items = N * q.nch
    cdef Py_ssize_t wsz = 8 if odt == FN_F64 or odt == FN_F32 else 4
    cdef Py_ssize_t tsz = 4 * q.W * wsz
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef Py_ssize_t n, tid
    cdef fn_triple *tri = NULL
    cdef fn_triple *ct = NULL
    cdef double *coef = NULL
    cdef char *tiles = NULL
    cdef char *sbase = NULL
    cdef char *scratch
    cdef bint keep_tri = stats_out is not None
    try:
        if pl.fused:
            # per-thread working arrays (the triples of every instance only
            # when they are returned), so the memory does not grow with N x C
            tri = <fn_triple *>alloc_or_raise((N if keep_tri else nth) * C * sizeof(fn_triple),
                                              "the channel statistics")
            coef = <double *>alloc_or_raise(nth * 3 * C * sizeof(double), "the coefficients")
            tiles = <char *>alloc_or_raise(nth * tsz, "the coefficient tiles")
            ct = <fn_triple *>alloc_or_raise(nth * C * sizeof(fn_triple), "the chunk statistics")
        else:
            # the wave's own triples, coefficients and tiles (cl_waves)
            tri = <fn_triple *>alloc_or_raise((N if keep_tri else pl.wave) * C * sizeof(fn_triple),
                                              "the channel statistics")
            coef = <double *>alloc_or_raise(3 * pl.wave * C * sizeof(double), "the coefficients")
            tiles = <char *>alloc_or_raise(pl.wave * tsz, "the coefficient tiles")
            ct = <fn_triple *>alloc_or_raise(cl_round_chunks(&q, C, nth, items) * C * sizeof(fn_triple),
                                             "the chunk statistics")
        scratch = aligned_scratch(nth * q.stride, &sbase)
        with nogil:
            if pl.fused:
                for n in prange(N, num_threads=nth, schedule='static', use_threads_if=pl.parallel):
                    tid = threadid()
                    cl_instance(&pl, xp + n * S * C * isz, yp + n * S * C * pl.osz, S, C, G, isz,
                                &q, scratch + tid * q.stride, ct + tid * C,
                                tri + (n if keep_tri else tid) * C, eps, w, b,
                                coef + tid * 3 * C, coef + tid * 3 * C + C,
                                coef + tid * 3 * C + 2 * C, tiles + tid * tsz)
            else:
                with parallel(num_threads=nth):
                    cl_waves(&pl, xp, yp, N, S, C, G, isz, &q, scratch, ct,
                             cl_round_chunks(&q, C, nth, items), tri if keep_tri else NULL, tri,
                             eps, w, b, coef, tiles, tsz)
        if pl.parallel:
            fn_team_finished(nth)
        if stats_out is not None:
            _store_triples(tri, N * C, stats_out)
    finally:
        free(tri)
        free(coef)
        free(tiles)
        free(ct)
        free(sbase)
    return y


def stats_cl(cnp.ndarray x, int dt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, int n_threads,
             cnp.ndarray out, int odt=-1):
    """Per-channel triples of x viewed as (N, S, C) into out (N, C, 3) float64;
    odt as stats_cf's."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef Py_ssize_t items = N * q.nch
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef fn_triple *tri = <fn_triple *>cnp.PyArray_DATA(out)
    cdef Py_ssize_t n, it, k, tid
    cdef fn_triple *ct = NULL
    cdef char *sbase = NULL
    cdef char *scratch
    if odt < 0:
        odt = FN_F64
    n_threads = team_for(n_threads, N * S * C)
    cdef bint par = n_threads > 1
    try:
        ct = <fn_triple *>alloc_or_raise(items * C * sizeof(fn_triple), "the chunk statistics")
        scratch = aligned_scratch(n_threads * q.stride, &sbase)
        with nogil:
            with parallel(num_threads=n_threads, use_threads_if=par):
                tid = threadid()
                for it in prange(items, schedule='static'):
                    n = it // q.nch
                    k = it - n * q.nch
                    cl_chunk_stats(dt, odt, xp + n * S * C * isz, S, C, isz, &q, k,
                                   scratch + tid * q.stride, ct + it * C)
            for n in prange(N, num_threads=n_threads, schedule='static', use_threads_if=par):
                zero_triples(tri + n * C, C)
                for k in range(q.nch):
                    merge_triples(tri + n * C, ct + (n * q.nch + k) * C, C)
    finally:
        free(ct)
        free(sbase)
    return out


def apply_cl(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int n_threads):
    """y[n, s, c] = act((x[n, s, c] - mean[n, c]) * scale[n, c] + shift[n, c])."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef plan_t pl = plan_cl(dt, odt, N, S, C, isz, y.itemsize, &q, n_threads, act, slope)
    cdef Py_ssize_t items = N * q.nch
    cdef Py_ssize_t wsz = 8 if odt == FN_F64 or odt == FN_F32 else 4
    cdef Py_ssize_t tsz = 4 * q.W * wsz
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *mp = <const double *>cnp.PyArray_DATA(mean)
    cdef const double *sp = <const double *>cnp.PyArray_DATA(scale)
    cdef const double *hp = <const double *>cnp.PyArray_DATA(shift)
    cdef Py_ssize_t n, it, k
    cdef char *tiles = <char *>alloc_or_raise(N * tsz, "the coefficient tiles")
    with nogil:
        for n in range(N):
            cl_tile_coefs(odt, C, q.m, mp + n * C, sp + n * C, hp + n * C, tiles + n * tsz)
        for it in prange(items, num_threads=pl.n_threads, schedule='static',
                         use_threads_if=pl.parallel):
            n = it // q.nch
            k = it - n * q.nch
            cl_chunk_apply(&pl, xp + n * S * C * isz, yp + n * S * C * pl.osz, S, C, isz, &q, k,
                           tiles + n * tsz)
    free(tiles)
    return y


# ------------------------------------------------------------- benchmarks
def parallel_copy(cnp.ndarray src, cnp.ndarray dst, int n_threads, int stream=-1):
    """src copied into dst split over n_threads OpenMP threads: the bandwidth ceiling.
    stream: 0 memcpy, 1 non-temporal stores (memcpy where the CPU has none),
    -1 (default) non-temporal from the kernels' streaming threshold up.  The
    bench times both and keeps the faster: which one wins depends on the size
    and on how much last-level cache the machine gives (glibc's memcpy picks
    its own non-temporal threshold from the reported L3)."""
    cdef const char *s = <const char *>cnp.PyArray_DATA(src)
    cdef char *d = <char *>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t nbytes = src.nbytes
    if stream not in (-1, 0, 1):
        raise ValueError(f"stream must be -1, 0 or 1, got {stream!r}")
    if stream < 0:
        stream = nbytes > STREAM_ABOVE_BYTES
    with nogil:
        fn_parallel_copy(s, d, nbytes, n_threads, stream)
    return dst


# ------------------------------------------------------------- outputs
_POOL_HANDLER = fn_pool_capsule()


def empty(shape, dtype):
    """np.empty for an output fastnorm allocates: one of at least FN_POOL_MIN
    bytes comes from the output pool (fn_pool.h), so a repeated call of the
    same size reuses the pages of a freed output instead of faulting in (and
    zeroing) fresh ones."""
    cdef object old
    dt = np.dtype(dtype)
    n = dt.itemsize
    for d in shape:
        n *= d
    if n < FN_POOL_MIN:
        return np.empty(shape, dt)
    old = PyDataMem_SetHandler(_POOL_HANDLER)
    try:
        return np.empty(shape, dt)
    finally:
        PyDataMem_SetHandler(old)


def output_pool(cap_bytes=None):
    """(bytes held, cap): the freed outputs kept for reuse; with cap_bytes,
    set the cap (0 turns the pool off; FASTNORM_CACHE_BYTES at import)."""
    if cap_bytes is not None:
        if isinstance(cap_bytes, bool) or not hasattr(type(cap_bytes), "__index__"):
            raise TypeError(f"cap_bytes must be an int, got {cap_bytes!r}")
        cap_bytes = cap_bytes.__index__()  # NumPy integers too
        if cap_bytes < 0:
            raise ValueError(f"cap_bytes must be >= 0, got {cap_bytes!r}")
        if cap_bytes > SIZE_MAX:
            raise ValueError(f"cap_bytes must be at most {SIZE_MAX}, got {cap_bytes!r}")
        fn_pool_set_cap(cap_bytes)
    return fn_pool_held(), fn_pool_get_cap()


def empty_cache():
    """Release the freed outputs kept for reuse; returns the bytes released."""
    return fn_pool_clear()


def _pool_from_env():
    import os
    import warnings

    v = os.environ.get("FASTNORM_CACHE_BYTES")
    if v is None or not v.strip():
        return
    try:
        cap = int(v)
        if cap < 0 or cap > SIZE_MAX:  # a size_t holds the cap
            raise ValueError
    except ValueError:
        warnings.warn(f"FASTNORM_CACHE_BYTES={v!r} is not a byte count in [0, {SIZE_MAX}]; keeping "
                      f"{fn_pool_get_cap()} bytes", RuntimeWarning, stacklevel=_caller_level())
        return
    fn_pool_set_cap(cap)


_pool_from_env()


# ------------------------------------------------------------- fast path
def fast_norm_cf(cnp.ndarray x, int dt, double eps, int odt=-1, object odtype=None):
    """instance_norm of a validated C-contiguous channels-first array with no
    affine, no activation and the default thread count: the per-call overhead
    floor for small inputs.  odt, odtype: the output code and dtype (default:
    x's, for a floating x)."""
    cdef int nd = cnp.PyArray_NDIM(x)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(x)
    cdef cnp.ndarray y
    cdef Py_ssize_t N = dims[0], C = dims[1]
    if odt < 0:
        odt = dt
        if x.nbytes < FN_POOL_MIN:
            y = cnp.PyArray_EMPTY(nd, dims, cnp.PyArray_TYPE(x), 0)
        else:
            y = empty((<object>x).shape, x.dtype)
    else:
        y = empty((<object>x).shape, odtype)
    cdef Py_ssize_t S = cnp.PyArray_SIZE(x) // (N * C)
    return norm_cf(x, y, dt, odt, N, C, 1, S, None, None, eps, 0, 0.0, omp_get_max_threads())


# ------------------------------------------------------------- backward
# The gradients of instance / group norm (fn_backward.h): one pass reading x
# and dy (the forward's statistics of x and sum(dy), sum(dy * (x - shift)) in
# the same fixed lanes and blocks), the per-unit coefficients, one pass
# writing grad_x; grad_weight and grad_bias summed over the instances in order.
# Work is shared like the forward's wave plans: units (planes of a group, or
# instances channels last) in waves of about BWD_WAVE_BYTES of x and dy per
# thread, each thread a contiguous share of a wave's blocks (rows, chunks) for
# both passes, so its second read hits its own L2.  Block boundaries and merge
# orders depend only on the shape: the same bits for every thread count.
cdef extern from *:
    """
    #include "fn_backward.h"
    static inline void fn_bsums(int dt, const void *x, const void *dy, fn_ssize rows, fn_ssize S,
                                fn_bsum *rec)
    {
        fn_config.t->bwd[dt].sums(x, dy, rows, S, rec);
    }
    static inline void fn_bgrad(int dt, const void *x, const void *dy, void *gx, fn_ssize rows,
                                fn_ssize S, const double *coef, int stream)
    {
        fn_config.t->bwd[dt].grad(x, dy, gx, rows, S, coef, stream);
    }
    static inline void fn_bsums_cl(int dt, const void *x, const void *dy, fn_ssize rows, fn_ssize C,
                                   fn_ssize m, fn_ssize R, double *acc, fn_bsum *out)
    {
        fn_config.t->bwd[dt].sums_cl(x, dy, rows, C, m, R, acc, out);
    }
    static inline void fn_bgrad_cl(int dt, const void *x, const void *dy, void *gx, fn_ssize rows,
                                   fn_ssize C, fn_ssize m, const void *coef, int stream)
    {
        fn_config.t->bwd[dt].grad_cl(x, dy, gx, rows, C, m, coef, stream);
    }
    """
    ctypedef struct fn_bsum:
        fn_triple t
        double sh
        double sdy
        double sdyx
    void fn_bsum_merge(fn_bsum *a, const fn_bsum *b) noexcept nogil
    double fn_bwd_unit(const fn_bsum *st, Py_ssize_t Cg, double eps, const double *w, double *sdy,
                       double *sdyxc, double *coef) noexcept nogil
    void fn_bsums(int dt, const void *x, const void *dy, Py_ssize_t rows, Py_ssize_t S,
                  fn_bsum *rec) noexcept nogil
    void fn_bgrad(int dt, const void *x, const void *dy, void *gx, Py_ssize_t rows, Py_ssize_t S,
                  const double *coef, int stream) noexcept nogil
    void fn_bsums_cl(int dt, const void *x, const void *dy, Py_ssize_t rows, Py_ssize_t C,
                     Py_ssize_t m, Py_ssize_t R, double *acc, fn_bsum *out) noexcept nogil
    void fn_bgrad_cl(int dt, const void *x, const void *dy, void *gx, Py_ssize_t rows, Py_ssize_t C,
                     Py_ssize_t m, const void *coef, int stream) noexcept nogil

# x and dy bytes of a backward wave per thread (the second pass re-reads them
# from L2, where grad_x's lines are written too)
cdef Py_ssize_t BWD_WAVE_BYTES = 1 << 19


cdef struct bwd_t:
    int dt
    int stream
    bint backward      # the grad pass of a share runs from its end
    Py_ssize_t wave    # units (planes of a group / instances) per wave
    double eps
    const double *eps_u  # (N, G): eps per unit, or NULL (eps for every unit)
    const double *w
    double *psdy       # (N, C): sum(dy)
    double *psdyx      # (N, C): sum(dy * (x - mean))
    double *pr         # (N, G): rstd


cdef inline void bwd_zero(fn_bsum *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        s[i].t.n = 0.0
        s[i].t.mean = 0.0
        s[i].t.m2 = 0.0
        s[i].sh = 0.0
        s[i].sdy = 0.0
        s[i].sdyx = 0.0


cdef void bwd_affine(const bwd_t *bp, Py_ssize_t N, Py_ssize_t C, Py_ssize_t G, double *gw,
                     double *gb) noexcept nogil:
    """grad_weight and grad_bias: the per-(n, c) sums added over n in order."""
    cdef Py_ssize_t Cg = C // G, n, c
    for c in range(C):
        gw[c] = 0.0
        gb[c] = 0.0
    for n in range(N):
        for c in range(C):
            gb[c] += bp.psdy[n * C + c]
            gw[c] += bp.pr[n * G + c // Cg] * bp.psdyx[n * C + c]


cdef void bwd_cf_waves(const bwd_t *bp, const char *xp, const char *dp, char *gp, Py_ssize_t U,
                       Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S, Py_ssize_t isz, fn_bsum *rec,
                       fn_bsum *st_all, double *coef) noexcept nogil:
    """Run by every thread of a team: units (planes of a group) in waves; items
    are the blocks of the wave's rows (nb per row), each thread a contiguous
    share of them for both passes."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t nb = (S + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t u0 = 0, u1, r0, a, e, it, k, row, s0, u, j, i
    cdef fn_bsum *st = st_all + tid * Cg
    cdef const double *wg
    while u0 < U:
        u1 = u0 + bp.wave if u0 + bp.wave < U else U
        r0 = u0 * Cg
        team_share(0, (u1 - u0) * Cg * nb, tid, team, &a, &e)
        if nb == 1:
            fn_bsums(bp.dt, xp + (r0 + a) * S * isz, dp + (r0 + a) * S * isz, e - a, S, rec + a)
        else:
            for it in range(a, e):
                row = it // nb
                s0 = (it - row * nb) * FN_BLOCK
                fn_bsums(bp.dt, xp + ((r0 + row) * S + s0) * isz, dp + ((r0 + row) * S + s0) * isz, 1,
                         block_end(s0, S) - s0, rec + it)
        fn_barrier()
        u = u0 + tid
        while u < u1:
            for k in range(Cg):
                row = (u - u0) * Cg + k
                bwd_zero(&st[k], 1)
                for j in range(nb):
                    fn_bsum_merge(&st[k], &rec[row * nb + j])
            i = (u % G) * Cg
            wg = bp.w + i if bp.w != NULL else NULL
            bp.pr[u] = fn_bwd_unit(st, Cg, bp.eps_u[u] if bp.eps_u != NULL else bp.eps, wg,
                                   bp.psdy + u * Cg, bp.psdyx + u * Cg, coef + 4 * (u - u0) * Cg)
            u += team
        fn_barrier()
        if nb == 1 and not bp.backward:
            fn_bgrad(bp.dt, xp + (r0 + a) * S * isz, dp + (r0 + a) * S * isz, gp + (r0 + a) * S * isz,
                     e - a, S, coef + 4 * a, bp.stream)
        else:
            for k in range(e - a):
                it = e - 1 - k if bp.backward else a + k
                row = it // nb
                s0 = (it - row * nb) * FN_BLOCK
                j = ((r0 + row) * S + s0) * isz
                fn_bgrad(bp.dt, xp + j, dp + j, gp + j, 1, block_end(s0, S) - s0, coef + 4 * row,
                         bp.stream)
        u0 = u1


def backward_cf(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray gx, int dt, Py_ssize_t N, Py_ssize_t G,
                Py_ssize_t Cg, Py_ssize_t S, object weight, double eps, int n_threads,
                cnp.ndarray grad_weight, cnp.ndarray grad_bias, object eps_units=None,
                object sums_out=None):
    """Instance / group norm backward, channels first: x, dy, gx viewed as
    (N, G, Cg*S); weight None or float64 (G*Cg,); grad_weight, grad_bias
    float64 (G*Cg,) written.  S > 0 and N*G*Cg > 0.  eps_units: None, or
    float64 (N*G,) C-contiguous, each unit's eps in place of eps.  sums_out: None,
    or float64 (2*N*C + N*G,) C-contiguous, written with the per-(n, c)
    sum(dy), the per-(n, c) sum(dy * (x - mean)) and the per-(n, g) rstd."""
    cdef Py_ssize_t C = G * Cg, R = N * C, U = N * G
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (S + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t ub = 2 * Cg * S * isz
    cdef int nth = team_for(n_threads, R * S)
    cdef bwd_t bp
    cdef fn_bsum *rec = NULL
    cdef fn_bsum *st = NULL
    cdef double *coef = NULL
    cdef double *sums = NULL
    bp.dt = dt
    bp.eps = eps
    bp.eps_u = dptr(eps_units)
    bp.w = dptr(weight)
    bp.stream = stream_for(dt, FN_ACT_NONE, R * S * isz)
    bp.wave = (nth * BWD_WAVE_BYTES) // ub if ub > 0 else U
    bp.wave = 1 if bp.wave < 1 else (U if bp.wave > U else bp.wave)
    bp.backward = (bp.wave * ub + nth - 1) // nth > BACKWARD_MIN_BYTES
    try:
        rec = <fn_bsum *>alloc_or_raise(bp.wave * Cg * nb * sizeof(fn_bsum), "the block sums")
        st = <fn_bsum *>alloc_or_raise(nth * Cg * sizeof(fn_bsum), "the channel sums")
        coef = <double *>alloc_or_raise(4 * bp.wave * Cg * sizeof(double), "the coefficients")
        if sums_out is None:
            sums = <double *>alloc_or_raise((2 * R + U) * sizeof(double), "the per-plane sums")
            bp.psdy = sums
        else:
            bp.psdy = <double *>cnp.PyArray_DATA(<cnp.ndarray>sums_out)
        bp.psdyx = bp.psdy + R
        bp.pr = bp.psdy + 2 * R
        with nogil:
            with parallel(num_threads=nth):
                bwd_cf_waves(&bp, <const char *>cnp.PyArray_DATA(x), <const char *>cnp.PyArray_DATA(dy),
                             <char *>cnp.PyArray_DATA(gx), U, G, Cg, S, isz, rec, st, coef)
            bwd_affine(&bp, N, C, G, <double *>cnp.PyArray_DATA(grad_weight),
                       <double *>cnp.PyArray_DATA(grad_bias))
        if nth > 1:
            fn_team_finished(nth)
    finally:
        free(rec)
        free(st)
        free(coef)
        free(sums)
    return gx


cdef void bwd_cl_tiles(int dt, Py_ssize_t C, Py_ssize_t m, const double *cf, char *dst) noexcept nogil:
    """Per-lane (W = C*m) coefficient arrays of one instance from its per-channel
    (mu, a1, a2, a0) rows: 4 arrays of doubles, or 5 of floats (hi, lo, a1, a2,
    a0) for 16-bit."""
    cdef Py_ssize_t W = C * m, j, c
    cdef double *d
    cdef float *f
    cdef float h
    if dt == FN_F64 or dt == FN_F32:
        d = <double *>dst
        for j in range(W):
            c = j % C
            d[j] = cf[4 * c]
            d[W + j] = cf[4 * c + 1]
            d[2 * W + j] = cf[4 * c + 2]
            d[3 * W + j] = cf[4 * c + 3]
    else:
        f = <float *>dst
        for j in range(W):
            c = j % C
            h = <float>cf[4 * c]
            f[j] = h
            f[W + j] = <float>(cf[4 * c] - <double>h)
            f[2 * W + j] = <float>cf[4 * c + 1]
            f[3 * W + j] = <float>cf[4 * c + 2]
            f[4 * W + j] = <float>cf[4 * c + 3]


cdef void bwd_cl_waves(const bwd_t *bp, const char *xp, const char *dp, char *gp, Py_ssize_t N,
                       Py_ssize_t S, Py_ssize_t C, Py_ssize_t G, Py_ssize_t isz, const cl_plan *q,
                       char *scratch, Py_ssize_t stride, fn_bsum *ct, Py_ssize_t rnd, fn_bsum *st,
                       double *cf, char *tiles, Py_ssize_t tsz) noexcept nogil:
    """Run by every thread of a team: instances in waves, as the forward's
    cl_waves: the chunk sums in rounds of at most rnd chunks, merged in chunk
    order (each thread a share of the channels), the coefficients, then the
    grad pass over a contiguous share of the wave's chunks."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t Cg = C // G
    cdef Py_ssize_t n0 = 0, n1, a, e, it, n, k, base, cnt, r0, r1, c0, c1, c, g, s0, s1, off
    cdef char *scr = scratch + tid * stride
    cdef const double *wg
    team_share(0, C, tid, team, &c0, &c1)
    while n0 < N:
        n1 = n0 + bp.wave if n0 + bp.wave < N else N
        base = n0 * q.nch
        cnt = (n1 - n0) * q.nch
        for n in range(n0, n1):
            bwd_zero(st + (n - n0) * C + c0, c1 - c0)
        r0 = 0
        while r0 < cnt:
            r1 = r0 + rnd if r0 + rnd < cnt else cnt
            team_share(base + r0, r1 - r0, tid, team, &a, &e)
            for it in range(a, e):
                n = it // q.nch
                s0 = (it - n * q.nch) * q.RC
                s1 = s0 + q.RC if s0 + q.RC < S else S
                off = (n * S + s0) * C * isz
                fn_bsums_cl(bp.dt, xp + off, dp + off, s1 - s0, C, q.m, q.R, <double *>scr,
                            ct + (it - base - r0) * C)
            fn_barrier()
            for it in range(base + r0, base + r1):
                n = it // q.nch
                for c in range(c0, c1):
                    fn_bsum_merge(&st[(n - n0) * C + c], &ct[(it - base - r0) * C + c])
            fn_barrier()
            r0 = r1
        n = n0 + tid
        while n < n1:
            k = n - n0
            for g in range(G):
                wg = bp.w + g * Cg if bp.w != NULL else NULL
                bp.pr[n * G + g] = fn_bwd_unit(st + k * C + g * Cg, Cg,
                                               bp.eps_u[n * G + g] if bp.eps_u != NULL else bp.eps, wg,
                                               bp.psdy + n * C + g * Cg, bp.psdyx + n * C + g * Cg,
                                               cf + 4 * (k * C + g * Cg))
            bwd_cl_tiles(bp.dt, C, q.m, cf + 4 * k * C, tiles + k * tsz)
            n += team
        fn_barrier()
        team_share(base, cnt, tid, team, &a, &e)
        for k in range(e - a):
            it = e - 1 - k if bp.backward else a + k
            n = it // q.nch
            s0 = (it - n * q.nch) * q.RC
            s1 = s0 + q.RC if s0 + q.RC < S else S
            off = (n * S + s0) * C * isz
            fn_bgrad_cl(bp.dt, xp + off, dp + off, gp + off, s1 - s0, C, q.m, tiles + (n - n0) * tsz,
                        bp.stream)
        fn_barrier()   # the wave's sums and tiles are rewritten by the next wave
        n0 = n1


def backward_cl(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray gx, int dt, Py_ssize_t N, Py_ssize_t S,
                Py_ssize_t C, Py_ssize_t G, object weight, double eps, int n_threads,
                cnp.ndarray grad_weight, cnp.ndarray grad_bias, object eps_units=None,
                object sums_out=None):
    """Instance / group norm backward, channels last: x, dy, gx viewed as
    (N, S, C); weight None or float64 (C,); grad_weight, grad_bias float64 (C,)
    written.  S > 0 and N*C > 0.  eps_units, sums_out: as backward_cf's."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef Py_ssize_t ib = 2 * S * C * isz
    cdef int nth = team_for(n_threads, N * S * C)
    cdef Py_ssize_t wsz = 8 if dt == FN_F64 or dt == FN_F32 else 4
    cdef Py_ssize_t tsz = 5 * q.W * wsz
    cdef Py_ssize_t stride = ((5 * q.W * 8) // 64 + 2) * 64
    cdef Py_ssize_t rnd
    cdef bwd_t bp
    cdef fn_bsum *ct = NULL
    cdef fn_bsum *st = NULL
    cdef double *cf = NULL
    cdef double *sums = NULL
    cdef char *tiles = NULL
    cdef char *sbase = NULL
    cdef char *scratch
    bp.dt = dt
    bp.eps = eps
    bp.eps_u = dptr(eps_units)
    bp.w = dptr(weight)
    bp.stream = stream_for(dt, FN_ACT_NONE, N * S * C * isz)
    bp.wave = (nth * BWD_WAVE_BYTES) // ib if ib > 0 else N
    bp.wave = 1 if bp.wave < 1 else (N if bp.wave > N else bp.wave)
    bp.backward = (bp.wave * ib + nth - 1) // nth > BACKWARD_MIN_BYTES
    # the records are twice a triple's size: rounds of half the forward's chunks
    rnd = cl_round_chunks(&q, 2 * C, nth, bp.wave * q.nch)
    try:
        ct = <fn_bsum *>alloc_or_raise(rnd * C * sizeof(fn_bsum), "the chunk sums")
        st = <fn_bsum *>alloc_or_raise(bp.wave * C * sizeof(fn_bsum), "the channel sums")
        cf = <double *>alloc_or_raise(4 * bp.wave * C * sizeof(double), "the coefficients")
        tiles = <char *>alloc_or_raise(bp.wave * tsz, "the coefficient tiles")
        if sums_out is None:
            sums = <double *>alloc_or_raise((2 * N * C + N * G) * sizeof(double), "the per-channel sums")
            bp.psdy = sums
        else:
            bp.psdy = <double *>cnp.PyArray_DATA(<cnp.ndarray>sums_out)
        bp.psdyx = bp.psdy + N * C
        bp.pr = bp.psdy + 2 * N * C
        scratch = aligned_scratch(nth * stride, &sbase)
        with nogil:
            with parallel(num_threads=nth):
                bwd_cl_waves(&bp, <const char *>cnp.PyArray_DATA(x), <const char *>cnp.PyArray_DATA(dy),
                             <char *>cnp.PyArray_DATA(gx), N, S, C, G, isz, &q, scratch, stride, ct, rnd,
                             st, cf, tiles, tsz)
            bwd_affine(&bp, N, C, G, <double *>cnp.PyArray_DATA(grad_weight),
                       <double *>cnp.PyArray_DATA(grad_bias))
        if nth > 1:
            fn_team_finished(nth)
    finally:
        free(ct)
        free(st)
        free(cf)
        free(tiles)
        free(sums)
        free(sbase)
    return gx


def _backward_tuning(wave_bytes=None):
    """Read (and, for tests and experiments, set) the backward's wave size in
    bytes of x and dy per thread; returns the old value.  Every setting gives
    the same bits."""
    global BWD_WAVE_BYTES
    old = BWD_WAVE_BYTES
    if wave_bytes is not None:
        BWD_WAVE_BYTES = max(1, wave_bytes)
    return old
