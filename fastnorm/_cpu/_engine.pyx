# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""OpenMP drivers around the C kernels in fn_kernels.h.

Everything here assumes validated input (see fastnorm._validate): contiguous
arrays of a supported dtype, consistent sizes, thread count >= 1.  The GIL is
released for the whole computation.

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
from libc.string cimport memset
from libc.math cimport sqrt
cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "fn_kernels.h" nogil:
    enum: FN_ACT_NT_CL
    ctypedef struct fn_triple:
        double n
        double mean
        double m2
    int FN_BLOCK
    int FN_HAVE_OPENMP
    int omp_get_max_threads()
    int fn_team_size()
    void fn_barrier()
    void fn_merge(fn_triple *a, const fn_triple *b)
    void fn_stats_f32(const float *x, Py_ssize_t n, fn_triple *t)
    void fn_stats_f64(const double *x, Py_ssize_t n, fn_triple *t)
    void fn_stats_f16(const unsigned short *x, Py_ssize_t n, fn_triple *t)
    void fn_stats_bf16(const unsigned short *x, Py_ssize_t n, fn_triple *t)
    void fn_apply_f32(const float *x, float *y, Py_ssize_t n, double hi, double lo, double sc, double sh, int act, double slope)
    void fn_apply_f64(const double *x, double *y, Py_ssize_t n, double hi, double lo, double sc, double sh, int act, double slope)
    void fn_apply_f16(const unsigned short *x, unsigned short *y, Py_ssize_t n, float hi, float lo, float sc, float sh, int act, float slope)
    void fn_apply_bf16(const unsigned short *x, unsigned short *y, Py_ssize_t n, float hi, float lo, float sc, float sh, int act, float slope)
    void fn_stats_cl_f32(const float *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, Py_ssize_t R, double *acc, fn_triple *out)
    void fn_stats_cl_f64(const double *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, Py_ssize_t R, double *acc, fn_triple *out)
    void fn_stats_cl_f16(const unsigned short *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, Py_ssize_t R, double *acc, fn_triple *out)
    void fn_stats_cl_bf16(const unsigned short *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, Py_ssize_t R, double *acc, fn_triple *out)
    void fn_apply_cl_f32(const float *x, float *y, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, const double *coef, int act, double slope)
    void fn_apply_cl_f64(const double *x, double *y, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, const double *coef, int act, double slope)
    void fn_apply_cl_f16(const unsigned short *x, unsigned short *y, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, const float *coef, int act, float slope)
    void fn_apply_cl_bf16(const unsigned short *x, unsigned short *y, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m, const float *coef, int act, float slope)
    void fn_planes_f32(const float *x, float *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, double eps, const double *w, const double *b, int act, double slope, fn_triple *tri, double *mean, double *scale, double *shift)
    void fn_planes_f64(const double *x, double *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, double eps, const double *w, const double *b, int act, double slope, fn_triple *tri, double *mean, double *scale, double *shift)
    void fn_planes_f16(const unsigned short *x, unsigned short *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, double eps, const double *w, const double *b, int act, double slope, fn_triple *tri, double *mean, double *scale, double *shift)
    void fn_planes_bf16(const unsigned short *x, unsigned short *y, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, double eps, const double *w, const double *b, int act, double slope, fn_triple *tri, double *mean, double *scale, double *shift)
    void fn_group_coefs(const fn_triple *t, double eps, Py_ssize_t g, Py_ssize_t Cg, Py_ssize_t row0, const double *w, const double *b, double *mean, double *scale, double *shift)
    void fn_parallel_copy(const char *src, char *dst, Py_ssize_t nbytes, int nthreads, int stream)
    int fn_stream_level()
    int fn_stream_cap
    void fn_stream_apply(int lvl, int dt, const void *x, void *y, Py_ssize_t n, double hi,
                         double sc, double sh)
    const char *fn_build_isa()
    int fn_fused_now()
    int fn_fma_off
    const char *fn_half_impl()
    int fn_half_select(int want)
    void fn_widen_f16(const unsigned short *src, float *dst, Py_ssize_t n)
    void fn_narrow_f16(const float *src, unsigned short *dst, Py_ssize_t n)
    int fn_have_openmp()

# storage codes (fastnorm._validate maps dtypes to these)
cdef enum:
    F16 = 0
    F32 = 1
    F64 = 2
    BF16 = 3

DT_F16 = F16
DT_F32 = F32
DT_F64 = F64
DT_BF16 = BF16
BLOCK = FN_BLOCK
# Below this many elements one thread does it all: a parallel region costs
# more than the work.
SERIAL_BELOW = 1 << 15
# planes up to this size are software-pipelined (hides per-plane overhead of
# small planes); larger ones are read then applied while still in L2, which
# measured faster for 256 KiB - 512 KiB planes
cdef Py_ssize_t PIPELINE_MAX_BYTES = 1 << 17
# Planes larger than this are normalized in waves shared by all threads, each
# thread holding at most about this much of the wave in its L2.
cdef Py_ssize_t WAVE_BYTES = 1 << 19
# A plane (or a thread's share of one) larger than this is normalized from its
# end: with LRU-like caches a forward second pass over more than L2 misses on
# every line, a backward one hits on the part read last (S4: +3-6%).
cdef Py_ssize_t BACKWARD_MIN_BYTES = 1 << 20
# planes of one statistics block run through one C call per thread (fn_planes)
cdef bint SMALL_PLANES = True
# channels-first outputs larger than this (float32/float64, no activation)
# are written with non-temporal stores when the CPU has them (fn_kernels.h,
# "streaming"): past the last-level cache a normal store also reads the line
# it writes.  20 MiB, measured on this VM over two periods.  How much of its
# (reported 480 MiB) L3 the VM really gives drifts with the neighbours: with
# normal stores 32-MiB float32 outputs (S5, S6) ran at 0.80 of a copy at 2
# threads in one period and at 0.57-0.64 in the next (0.41-0.62 at 1
# thread), 24-MiB ones at 0.55-0.72; streaming held 0.71-0.82 in both.  At
# 16 MiB normal stores still win (0.79-0.88 against 0.70-0.82).
cdef Py_ssize_t STREAM_ABOVE_BYTES = 20 << 20
# activation codes above A_STREAM stand for "none, streaming stores at level
# act - A_STREAM" (1 AVX2, 2 AVX-512F); k_apply and k_apply_cl translate them,
# and a C kernel's activation switch sees them at most as "none"
cdef enum:
    A_STREAM = 16


def _tuning(pipeline_max_bytes=None, wave_bytes=None, small_planes=None,
            backward_min_bytes=None, stream_above_bytes=None):
    """Read (and, for tests and experiments, set) the plan choices; returns the
    old (pipeline_max_bytes, wave_bytes, small_planes, backward_min_bytes,
    stream_above_bytes).  Every setting gives the same bits; only the speed changes."""
    global PIPELINE_MAX_BYTES, WAVE_BYTES, SMALL_PLANES, BACKWARD_MIN_BYTES, STREAM_ABOVE_BYTES
    old = (PIPELINE_MAX_BYTES, WAVE_BYTES, bool(SMALL_PLANES), BACKWARD_MIN_BYTES,
           STREAM_ABOVE_BYTES)
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
    return old


def streaming_stores():
    """(level, above_bytes): the non-temporal output stores this CPU runs (2:
    AVX-512F, 1: AVX2, 0: none) and the output size above which float32/float64
    normalizations without activation use them (channels first; channels last
    for rows of up to 64 lanes)."""
    return fn_stream_level(), STREAM_ABOVE_BYTES


def _stream_cap(cap=None):
    """Test hook: the highest streaming-kernel level to use (2 AVX-512F,
    1 AVX2, 0 none); returns the old cap."""
    global fn_stream_cap
    old = fn_stream_cap
    if cap is not None:
        fn_stream_cap = cap
    return old


cdef inline int stream_act(int dt, int act, Py_ssize_t out_bytes) noexcept nogil:
    """act, or A_STREAM + the streaming level for a float32/float64 output
    without activation large enough to be written past the caches (the level
    is found once per call, not per segment).  Channels first, k_apply runs
    the streaming kernels of that level; channels last, k_apply_cl passes
    FN_ACT_NT_CL to the tile kernel, which writes rows of up to 64 channels
    with non-temporal stores (A/B: S5/S6 channels last at 1 thread
    0.57-0.60 -> 0.65 of a copy, at 2 threads 0.62 -> 0.65)."""
    cdef int lvl
    if act == 0 and (dt == F32 or dt == F64) and out_bytes > STREAM_ABOVE_BYTES:
        lvl = fn_stream_level()
        if lvl > 0:
            return A_STREAM + lvl
    return act


def have_openmp():
    return bool(fn_have_openmp())

def default_threads():
    return omp_get_max_threads()

def build_isa():
    return fn_build_isa().decode()

def fused_multiply_add():
    """True when the kernels' multiply-adds are fused (rounded once) on this
    CPU: a build with FMA code running on a CPU that has FMA.  False on a CPU
    without FMA (the kernels' unfused twin) or for a build whose only target
    lacks it."""
    return bool(fn_fused_now())


def _unfused(flag=None):
    """Test hook: with True, run the kernels' unfused twin (what a CPU without
    FMA runs) on this machine; returns the old setting."""
    global fn_fma_off
    old = bool(fn_fma_off)
    if flag is not None:
        fn_fma_off = 1 if flag else 0
    return old


def half_impl():
    return fn_half_impl().decode()


# float16 conversion: the best the CPU has (F16C / AVX-512F), else software;
# both give the same bits (tests/test_half.py checks every half).
_HALF_LEVEL = fn_half_select(-1)

def select_half(int level=-1):
    """Use float16 conversion level 0 (software), 1 (F16C+AVX2), 2 (AVX-512F),
    capped at what the CPU supports; -1 = best.  Returns the level in use.
    For tests and benchmarks: not thread-safe against running kernels."""
    return fn_half_select(level)


def half_to_float(cnp.ndarray src):
    """Test hook: the engine's float16 -> float32 bulk conversion (uint16 bits in)."""
    cdef cnp.ndarray a = np.ascontiguousarray(src, dtype=np.uint16)
    cdef cnp.ndarray out = np.empty(a.shape[0], np.float32)
    fn_widen_f16(<const unsigned short *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(out), a.shape[0])
    return out


def float_to_half(cnp.ndarray src):
    """Test hook: the engine's float32 -> float16 bulk conversion (uint16 bits out)."""
    cdef cnp.ndarray a = np.ascontiguousarray(src, dtype=np.float32)
    cdef cnp.ndarray out = np.empty(a.shape[0], np.uint16)
    fn_narrow_f16(<const float *>cnp.PyArray_DATA(a), <unsigned short *>cnp.PyArray_DATA(out), a.shape[0])
    return out


# ---------------------------------------------------------------- helpers
cdef inline void k_stats(int dt, const char *x, Py_ssize_t n, fn_triple *t) noexcept nogil:
    if dt == F32:
        fn_stats_f32(<const float *>x, n, t)
    elif dt == F64:
        fn_stats_f64(<const double *>x, n, t)
    elif dt == F16:
        fn_stats_f16(<const unsigned short *>x, n, t)
    else:
        fn_stats_bf16(<const unsigned short *>x, n, t)


cdef inline void k_apply(int dt, const char *x, char *y, Py_ssize_t n, double mean,
                         double sc, double sh, int act, double slope) noexcept nogil:
    # mean split into a high part and a low correction in working precision
    cdef float hf, lf
    cdef double hd
    if act > A_STREAM:   # float32 / float64 only (stream_act)
        fn_stream_apply(act - A_STREAM, dt, x, y, n, mean, sc, sh)
        return
    if dt == F64:
        hd = mean
        fn_apply_f64(<const double *>x, <double *>y, n, hd, mean - hd, sc, sh, act, slope)
        return
    if dt == F32:  # computed in double, rounded once
        fn_apply_f32(<const float *>x, <float *>y, n, mean, 0.0, sc, sh, act, slope)
        return
    hf = <float>mean
    lf = <float>(mean - <double>hf)
    if dt == F16:
        fn_apply_f16(<const unsigned short *>x, <unsigned short *>y, n, hf, lf, <float>sc, <float>sh, act, <float>slope)
    else:
        fn_apply_bf16(<const unsigned short *>x, <unsigned short *>y, n, hf, lf, <float>sc, <float>sh, act, <float>slope)


cdef inline void k_stats_cl(int dt, const char *x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t m,
                            Py_ssize_t R, double *acc, fn_triple *out) noexcept nogil:
    if dt == F32:
        fn_stats_cl_f32(<const float *>x, rows, C, m, R, acc, out)
    elif dt == F64:
        fn_stats_cl_f64(<const double *>x, rows, C, m, R, acc, out)
    elif dt == F16:
        fn_stats_cl_f16(<const unsigned short *>x, rows, C, m, R, acc, out)
    else:
        fn_stats_cl_bf16(<const unsigned short *>x, rows, C, m, R, acc, out)


cdef inline void k_apply_cl(int dt, const char *x, char *y, Py_ssize_t rows, Py_ssize_t C,
                            Py_ssize_t m, const char *coef, int act, double slope) noexcept nogil:
    if act > A_STREAM:   # float32 / float64 only (stream_act)
        act = FN_ACT_NT_CL
    if dt == F32:
        fn_apply_cl_f32(<const float *>x, <float *>y, rows, C, m, <const double *>coef, act, slope)
    elif dt == F64:
        fn_apply_cl_f64(<const double *>x, <double *>y, rows, C, m, <const double *>coef, act, slope)
    elif dt == F16:
        fn_apply_cl_f16(<const unsigned short *>x, <unsigned short *>y, rows, C, m, <const float *>coef, act, <float>slope)
    else:
        fn_apply_cl_bf16(<const unsigned short *>x, <unsigned short *>y, rows, C, m, <const float *>coef, act, <float>slope)


cdef inline void k_planes(int dt, const char *x, char *y, Py_ssize_t p0, Py_ssize_t p1,
                          Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, double eps,
                          const double *w, const double *b, int act, double slope,
                          fn_triple *tri, double *mean, double *scale,
                          double *shift) noexcept nogil:
    if dt == F32:
        fn_planes_f32(<const float *>x, <float *>y, p0, p1, L, S, G, Cg, eps, w, b, act, slope,
                      tri, mean, scale, shift)
    elif dt == F64:
        fn_planes_f64(<const double *>x, <double *>y, p0, p1, L, S, G, Cg, eps, w, b, act, slope,
                      tri, mean, scale, shift)
    elif dt == F16:
        fn_planes_f16(<const unsigned short *>x, <unsigned short *>y, p0, p1, L, S, G, Cg, eps,
                      w, b, act, slope, tri, mean, scale, shift)
    else:
        fn_planes_bf16(<const unsigned short *>x, <unsigned short *>y, p0, p1, L, S, G, Cg, eps,
                       w, b, act, slope, tri, mean, scale, shift)


cdef inline void plane_stats(int dt, const char *x, Py_ssize_t L, Py_ssize_t isz,
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
        k_stats(dt, x + s * isz, n, &b)
        fn_merge(t, &b)
        s += n


cdef inline Py_ssize_t block_end(Py_ssize_t s0, Py_ssize_t L) noexcept nogil:
    return s0 + FN_BLOCK if s0 + FN_BLOCK < L else L


cdef inline void cf_block_stats(int dt, const char *xp, Py_ssize_t it, Py_ssize_t nb, Py_ssize_t L,
                                Py_ssize_t isz, fn_triple *out) noexcept nogil:
    """Triple of block it = p * nb + k (block k of plane p) of planes of length L."""
    cdef Py_ssize_t p = it // nb
    cdef Py_ssize_t s0 = (it - p * nb) * FN_BLOCK
    k_stats(dt, xp + (p * L + s0) * isz, block_end(s0, L) - s0, out)


cdef inline void merge_blocks(fn_triple *t, const fn_triple *bt, Py_ssize_t nb) noexcept nogil:
    """t = the nb block triples merged in order (the one merge order of every plan)."""
    cdef Py_ssize_t k
    t.n = 0.0
    t.mean = 0.0
    t.m2 = 0.0
    for k in range(nb):
        fn_merge(t, &bt[k])


cdef inline void seg_apply(int dt, const char *x, char *y, Py_ssize_t isz, Py_ssize_t start,
                           Py_ssize_t stop, Py_ssize_t S, Py_ssize_t c0, const double *mean,
                           const double *scale, const double *shift, int act,
                           double slope) noexcept nogil:
    """Apply over [start, stop) of a run of consecutive rows of length S whose
    per-row coefficients are mean[c0 + r], scale[c0 + r], shift[c0 + r]."""
    cdef Py_ssize_t r, a, e
    while start < stop:
        r = start // S
        e = (r + 1) * S
        if e > stop:
            e = stop
        k_apply(dt, x + start * isz, y + start * isz, e - start, mean[c0 + r],
                scale[c0 + r], shift[c0 + r], act, slope)
        start = e


cdef inline void group_coefs(const fn_triple *t, double eps, Py_ssize_t g, Py_ssize_t Cg,
                             Py_ssize_t row0, const double *w, const double *b,
                             double *mean, double *scale, double *shift) noexcept nogil:
    """Per-channel coefficients of one (instance, group) from its triple."""
    fn_group_coefs(t, eps, g, Cg, row0, w, b, mean, scale, shift)


cdef inline const double *dptr(object a):
    if a is None:
        return NULL
    return <const double *>cnp.PyArray_DATA(<cnp.ndarray>a)


# ---------------------------------------------------------- channels-first
def norm_cf(cnp.ndarray x, cnp.ndarray y, int dt, Py_ssize_t N, Py_ssize_t G, Py_ssize_t Cg,
            Py_ssize_t S, object weight, object bias, double eps, int act, double slope,
            int nt, object stats_out=None):
    """Instance / group norm, channels first: x viewed as (N, G, Cg*S).

    weight, bias: None or float64 arrays of length G*Cg.  stats_out: None or a
    float64 array (N*G, 3) that receives the (count, mean, M2) triples.
    """
    cdef Py_ssize_t P = N * G, L = Cg * S, R = N * G * Cg
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (L + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t items = P * nb
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef Py_ssize_t p, it, k, s0, s1, wk
    cdef bint par = nt > 1 and P * L >= SERIAL_BELOW
    cdef bint fused
    cdef fn_triple *tri
    cdef fn_triple *btri = NULL
    cdef double *coef
    cdef double *mean
    cdef double *scale
    cdef double *shift
    if not par:
        nt = 1
    act = stream_act(dt, act, P * L * isz)
    # one thread per plane when that balances and a plane fits L2 with its
    # output; else waves of planes split into blocks across the threads
    fused = nt == 1 or (P >= nt and (P % nt == 0 or P >= 4 * nt) and L * isz <= WAVE_BYTES)
    tri = <fn_triple *>malloc(P * sizeof(fn_triple))
    coef = <double *>malloc(3 * R * sizeof(double))
    if not fused:
        btri = <fn_triple *>malloc(items * sizeof(fn_triple))
    if tri == NULL or coef == NULL or (not fused and btri == NULL):
        free(tri); free(coef); free(btri)
        raise MemoryError()
    mean = coef
    scale = coef + R
    shift = coef + 2 * R
    with nogil:
        if fused:
            # one worker per thread, each a contiguous range of planes
            for wk in prange(nt, num_threads=nt, schedule='static', chunksize=1, use_threads_if=par):
                cf_range(dt, xp, yp, (P * wk) // nt, (P * (wk + 1)) // nt, L, S, G, Cg, isz, nb,
                         eps, w, b, act, slope, tri, mean, scale, shift)
        else:
            with parallel(num_threads=nt):
                cf_waves(dt, xp, yp, P, L, S, G, Cg, isz, nb, nt, eps, w, b, act, slope,
                         btri, tri, mean, scale, shift)
    if stats_out is not None:
        _store_triples(tri, P, stats_out)
    free(tri); free(coef); free(btri)
    return y


cdef inline Py_ssize_t wave_units(int nt, Py_ssize_t unit_bytes, Py_ssize_t total) noexcept nogil:
    """Planes / instances per wave: about nt * WAVE_BYTES, at least one."""
    cdef Py_ssize_t w = (nt * WAVE_BYTES) // unit_bytes if unit_bytes > 0 else total
    return w if w > 0 else 1


cdef inline void team_share(Py_ssize_t i0, Py_ssize_t cnt, int tid, int team, Py_ssize_t *a,
                            Py_ssize_t *e) noexcept nogil:
    """Thread tid's contiguous share [a, e) of items [i0, i0 + cnt): the same
    for the statistics and the normalize pass of a wave."""
    a[0] = i0 + (cnt * tid) // team
    e[0] = i0 + (cnt * (tid + 1)) // team


cdef void cf_waves(int dt, const char *xp, char *yp, Py_ssize_t P, Py_ssize_t L, Py_ssize_t S,
                   Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t isz, Py_ssize_t nb, int nt,
                   double eps, const double *w, const double *b, int act, double slope,
                   fn_triple *btri, fn_triple *tri, double *mean, double *scale,
                   double *shift) noexcept nogil:
    """Run by every thread of a team: planes in waves of about nt * WAVE_BYTES.
    Each thread takes the same contiguous share of a wave's blocks for the
    statistics and for the normalize pass, so its second read hits its own
    L2.  Blocks merge in block order, as in every other plan."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t wp = wave_units(nt, L * isz, P)
    cdef Py_ssize_t w0, w1, a, e, it, p, s0, k
    cdef bint back
    w0 = 0
    while w0 < P:
        w1 = w0 + wp
        if w1 > P:
            w1 = P
        team_share(w0 * nb, (w1 - w0) * nb, tid, team, &a, &e)
        for it in range(a, e):
            cf_block_stats(dt, xp, it, nb, L, isz, &btri[it])
        fn_barrier()
        p = w0 + tid
        while p < w1:
            merge_blocks(&tri[p], &btri[p * nb], nb)
            group_coefs(&tri[p], eps, p % G, Cg, p * Cg, w, b, mean, scale, shift)
            p += team
        fn_barrier()
        # a share larger than L2 is normalized backwards: its last blocks,
        # read last by the statistics, are the ones still cached
        back = (e - a) * FN_BLOCK * isz > BACKWARD_MIN_BYTES
        for k in range(e - a):
            it = e - 1 - k if back else a + k
            p = it // nb
            s0 = (it - p * nb) * FN_BLOCK
            seg_apply(dt, xp + p * L * isz, yp + p * L * isz, isz, s0, block_end(s0, L), S,
                      p * Cg, mean, scale, shift, act, slope)
        w0 = w1


cdef void cf_range(int dt, const char *xp, char *yp, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t L,
                   Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t isz, Py_ssize_t nb,
                   double eps, const double *w, const double *b, int act, double slope,
                   fn_triple *tri, double *mean, double *scale, double *shift) noexcept nogil:
    """Planes [p0, p1) on one thread, software-pipelined: the statistics of
    plane p+1 are read block by block while plane p (still in L2) is
    normalized, so the read and the write streams overlap like a copy's.
    The merge order is the block order, as in every other plan."""
    cdef Py_ssize_t p, k, s0, s1
    cdef fn_triple bt
    cdef bint nxt
    cdef bint pipe = L * isz <= PIPELINE_MAX_BYTES
    if p0 >= p1:
        return
    if nb == 1 and SMALL_PLANES:
        # planes of one block: the same order in one C call (no per-plane
        # dispatch; normal stores: A_STREAM is passed on as no activation)
        k_planes(dt, xp, yp, p0, p1, L, S, G, Cg, eps, w, b, 0 if act > A_STREAM else act, slope,
                 tri, mean, scale, shift)
        return
    plane_stats(dt, xp + p0 * L * isz, L, isz, &tri[p0])
    group_coefs(&tri[p0], eps, p0 % G, Cg, p0 * Cg, w, b, mean, scale, shift)
    for p in range(p0, p1):
        nxt = p + 1 < p1
        if not pipe:
            # large planes: two in flight would not fit L2; apply this plane
            # while it is cached (from its end when larger than L2), then read
            # the next
            if L * isz > BACKWARD_MIN_BYTES:
                plane_apply_back(dt, xp + p * L * isz, yp + p * L * isz, isz, L, S, p * Cg,
                                 mean, scale, shift, act, slope)
            else:
                seg_apply(dt, xp + p * L * isz, yp + p * L * isz, isz, 0, L, S, p * Cg,
                          mean, scale, shift, act, slope)
            if nxt:
                plane_stats(dt, xp + (p + 1) * L * isz, L, isz, &tri[p + 1])
                group_coefs(&tri[p + 1], eps, (p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale,
                            shift)
            continue
        if nxt:
            tri[p + 1].n = 0.0
            tri[p + 1].mean = 0.0
            tri[p + 1].m2 = 0.0
        for k in range(nb):
            s0 = k * FN_BLOCK
            s1 = block_end(s0, L)
            if nxt:
                k_stats(dt, xp + ((p + 1) * L + s0) * isz, s1 - s0, &bt)
                fn_merge(&tri[p + 1], &bt)
            seg_apply(dt, xp + p * L * isz, yp + p * L * isz, isz, s0, s1, S, p * Cg,
                      mean, scale, shift, act, slope)
        if nxt:
            group_coefs(&tri[p + 1], eps, (p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale, shift)


cdef inline void plane_apply_back(int dt, const char *x, char *y, Py_ssize_t isz, Py_ssize_t L,
                                 Py_ssize_t S, Py_ssize_t c0, const double *mean,
                                 const double *scale, const double *shift, int act,
                                 double slope) noexcept nogil:
    """The apply of one plane block by block from its end: when the plane is
    larger than L2, the blocks the statistics read last are the ones still
    cached (elementwise, so the order changes no bit)."""
    cdef Py_ssize_t s0 = ((L - 1) // FN_BLOCK) * FN_BLOCK
    while s0 >= 0 and L > 0:
        seg_apply(dt, x, y, isz, s0, block_end(s0, L), S, c0, mean, scale, shift, act, slope)
        s0 -= FN_BLOCK


cdef void _store_triples(const fn_triple *tri, Py_ssize_t n, object out):
    cdef double *o = <double *>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef Py_ssize_t i
    for i in range(n):
        o[3 * i] = tri[i].n
        o[3 * i + 1] = tri[i].mean
        o[3 * i + 2] = tri[i].m2


def stats_cf(cnp.ndarray x, int dt, Py_ssize_t P, Py_ssize_t L, int nt, cnp.ndarray out):
    """Triples of P contiguous planes of length L into out (P, 3) float64."""
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (L + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t items = P * nb
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef fn_triple *tri = <fn_triple *>cnp.PyArray_DATA(out)
    cdef fn_triple *btri
    cdef Py_ssize_t p, it, k, s0, s1
    cdef bint par = nt > 1 and P * L >= SERIAL_BELOW
    if not par:
        nt = 1
    if nt == 1 or (P >= nt and (P % nt == 0 or P >= 4 * nt)) or L == 0:
        with nogil:
            for p in prange(P, num_threads=nt, schedule='static', use_threads_if=par):
                plane_stats(dt, xp + p * L * isz, L, isz, &tri[p])
        return out
    btri = <fn_triple *>malloc(items * sizeof(fn_triple))
    if btri == NULL:
        raise MemoryError()
    with nogil:
        for it in prange(items, num_threads=nt, schedule='static'):
            cf_block_stats(dt, xp, it, nb, L, isz, &btri[it])
        for p in range(P):
            merge_blocks(&tri[p], &btri[p * nb], nb)
    free(btri)
    return out


def apply_cf(cnp.ndarray x, cnp.ndarray y, int dt, Py_ssize_t R, Py_ssize_t S,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int nt):
    """y[r, :] = act((x[r, :] - mean[r]) * scale[r] + shift[r]) for R rows of S."""
    cdef Py_ssize_t isz = x.itemsize
    cdef Py_ssize_t nb = (S + FN_BLOCK - 1) // FN_BLOCK
    cdef Py_ssize_t items = R * nb
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *mp = <const double *>cnp.PyArray_DATA(mean)
    cdef const double *sp = <const double *>cnp.PyArray_DATA(scale)
    cdef const double *hp = <const double *>cnp.PyArray_DATA(shift)
    cdef Py_ssize_t it, r, k, s0, s1
    cdef bint par = nt > 1 and R * S >= SERIAL_BELOW
    if not par:
        nt = 1
    act = stream_act(dt, act, R * S * isz)
    with nogil:
        for it in prange(items, num_threads=nt, schedule='static', use_threads_if=par):
            r = it // nb
            s0 = (it - r * nb) * FN_BLOCK
            s1 = block_end(s0, S)
            k_apply(dt, xp + (r * S + s0) * isz, yp + (r * S + s0) * isz, s1 - s0,
                    mp[r], sp[r], hp[r], act, slope)
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


cdef struct cl_plan:
    Py_ssize_t m, W, R, RC, nch, stride


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


cdef char *aligned_scratch(Py_ssize_t nbytes, char **base) noexcept nogil:
    base[0] = <char *>malloc(nbytes + 64)
    if base[0] == NULL:
        return NULL
    return base[0] + (64 - (<size_t>base[0]) % 64)


cdef inline void cl_chunk_stats(int dt, const char *x, Py_ssize_t S, Py_ssize_t C, Py_ssize_t isz,
                                const cl_plan *q, Py_ssize_t k, char *scratch,
                                fn_triple *out) noexcept nogil:
    cdef Py_ssize_t r0 = k * q.RC, r1 = r0 + q.RC
    if r1 > S:
        r1 = S
    k_stats_cl(dt, x + r0 * C * isz, r1 - r0, C, q.m, q.R, <double *>scratch, out)


cdef inline void cl_chunk_apply(int dt, const char *x, char *y, Py_ssize_t S, Py_ssize_t C,
                                Py_ssize_t isz, const cl_plan *q, Py_ssize_t k, const char *tiles,
                                int act, double slope) noexcept nogil:
    cdef Py_ssize_t r0 = k * q.RC, r1 = r0 + q.RC
    if r1 > S:
        r1 = S
    k_apply_cl(dt, x + r0 * C * isz, y + r0 * C * isz, r1 - r0, C, q.m, tiles, act, slope)


cdef inline void cl_tile_coefs(int dt, Py_ssize_t C, Py_ssize_t m, const double *mean,
                               const double *scale, const double *shift,
                               char *dst) noexcept nogil:
    """Working-precision (hi, lo, scale, shift) arrays of W = C*m for one instance."""
    cdef Py_ssize_t W = C * m, j, c
    cdef float *f
    cdef double *d
    cdef float h
    if dt == F64 or dt == F32:
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
        group_coefs(&gt, eps, g, Cg, g * Cg, w, b, mean, scale, shift)


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


cdef void cl_instance(int dt, const char *x, char *y, Py_ssize_t S, Py_ssize_t C, Py_ssize_t G,
                      Py_ssize_t isz, const cl_plan *q, char *scratch, fn_triple *ct,
                      fn_triple *tri, double eps, const double *w, const double *b,
                      double *mean, double *scale, double *shift, char *tiles, int act,
                      double slope) noexcept nogil:
    """One whole instance on one thread: chunk statistics merged in chunk
    order (as in the split plan), then the normalize pass."""
    cdef Py_ssize_t k
    cdef bint back
    zero_triples(tri, C)
    for k in range(q.nch):
        cl_chunk_stats(dt, x, S, C, isz, q, k, scratch, ct)
        merge_triples(tri, ct, C)
    cl_instance_coefs(tri, C, G, eps, w, b, mean, scale, shift)
    cl_tile_coefs(dt, C, q.m, mean, scale, shift, tiles)
    # an instance larger than L2 is normalized backwards (see cf_waves)
    back = S * C * isz > BACKWARD_MIN_BYTES
    for k in range(q.nch):
        cl_chunk_apply(dt, x, y, S, C, isz, q, q.nch - 1 - k if back else k, tiles, act, slope)


cdef void cl_waves(int dt, const char *xp, char *yp, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
                   Py_ssize_t G, Py_ssize_t isz, const cl_plan *q, int nt, char *scratch,
                   fn_triple *ct, fn_triple *tri, double eps, const double *w, const double *b,
                   double *coef, char *tiles, Py_ssize_t tsz, int act,
                   double slope) noexcept nogil:
    """Run by every thread of a team: instances in waves of about
    nt * WAVE_BYTES, chunks shared out so that each thread normalizes the
    same chunks it read for the statistics (still in its L2).  Chunks merge
    in chunk order, as in the one-thread plan."""
    cdef int tid = threadid()
    cdef int team = fn_team_size()
    cdef Py_ssize_t wp = wave_units(nt, S * C * isz, N)
    cdef Py_ssize_t n0, n1, a, e, it, n, k
    cdef bint back
    cdef char *scr = scratch + tid * q.stride
    n0 = 0
    while n0 < N:
        n1 = n0 + wp
        if n1 > N:
            n1 = N
        team_share(n0 * q.nch, (n1 - n0) * q.nch, tid, team, &a, &e)
        for it in range(a, e):
            n = it // q.nch
            cl_chunk_stats(dt, xp + n * S * C * isz, S, C, isz, q, it - n * q.nch, scr,
                           ct + it * C)
        fn_barrier()
        n = n0 + tid
        while n < n1:
            zero_triples(tri + n * C, C)
            for k in range(q.nch):
                merge_triples(tri + n * C, ct + (n * q.nch + k) * C, C)
            cl_instance_coefs(tri + n * C, C, G, eps, w, b, coef + n * C,
                              coef + N * C + n * C, coef + 2 * N * C + n * C)
            cl_tile_coefs(dt, C, q.m, coef + n * C, coef + N * C + n * C,
                          coef + 2 * N * C + n * C, tiles + n * tsz)
            n += team
        fn_barrier()
        # a share larger than L2 is normalized backwards (see cf_waves)
        back = (e - a) * q.RC * C * isz > BACKWARD_MIN_BYTES
        for k in range(e - a):
            it = e - 1 - k if back else a + k
            n = it // q.nch
            cl_chunk_apply(dt, xp + n * S * C * isz, yp + n * S * C * isz, S, C, isz, q,
                           it - n * q.nch, tiles + n * tsz, act, slope)
        n0 = n1


def norm_cl(cnp.ndarray x, cnp.ndarray y, int dt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
            Py_ssize_t G, object weight, object bias, double eps, int act, double slope,
            int nt, object stats_out=None):
    """Instance / group norm, channels last: x viewed as (N, S, C).
    stats_out: None or float64 (N, C, 3) for the per-channel triples."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef Py_ssize_t items = N * q.nch
    cdef Py_ssize_t wsz = 8 if dt == F64 or dt == F32 else 4
    cdef Py_ssize_t tsz = 4 * q.W * wsz
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef bint par = nt > 1 and N * S * C >= SERIAL_BELOW
    cdef bint fused
    cdef Py_ssize_t n, it, k, tid
    cdef fn_triple *tri
    cdef fn_triple *ct
    cdef double *coef
    cdef char *tiles
    cdef char *sbase = NULL
    cdef char *scratch
    if not par:
        nt = 1
    act = stream_act(dt, act, N * S * C * isz)
    fused = nt == 1 or (N >= nt and (N % nt == 0 or N >= 4 * nt) and S * C * isz <= WAVE_BYTES)
    tri = <fn_triple *>malloc(N * C * sizeof(fn_triple))
    coef = <double *>malloc(3 * N * C * sizeof(double))
    tiles = <char *>malloc(N * tsz)
    ct = <fn_triple *>malloc((nt if fused else items) * C * sizeof(fn_triple))
    scratch = aligned_scratch(nt * q.stride, &sbase)
    if tri == NULL or coef == NULL or tiles == NULL or ct == NULL or scratch == NULL:
        free(tri); free(coef); free(tiles); free(ct); free(sbase)
        raise MemoryError()
    with nogil:
        if fused:
            for n in prange(N, num_threads=nt, schedule='static', use_threads_if=par):
                tid = threadid()
                cl_instance(dt, xp + n * S * C * isz, yp + n * S * C * isz, S, C, G, isz, &q,
                            scratch + tid * q.stride, ct + tid * C, tri + n * C, eps, w, b,
                            coef + n * C, coef + N * C + n * C, coef + 2 * N * C + n * C,
                            tiles + n * tsz, act, slope)
        else:
            with parallel(num_threads=nt):
                cl_waves(dt, xp, yp, N, S, C, G, isz, &q, nt, scratch, ct, tri, eps, w, b, coef,
                         tiles, tsz, act, slope)
    if stats_out is not None:
        _store_triples(tri, N * C, stats_out)
    free(tri); free(coef); free(tiles); free(ct); free(sbase)
    return y


def stats_cl(cnp.ndarray x, int dt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, int nt,
             cnp.ndarray out):
    """Per-channel triples of x viewed as (N, S, C) into out (N, C, 3) float64."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef Py_ssize_t items = N * q.nch
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef fn_triple *tri = <fn_triple *>cnp.PyArray_DATA(out)
    cdef bint par = nt > 1 and N * S * C >= SERIAL_BELOW
    cdef Py_ssize_t n, it, k, tid
    cdef fn_triple *ct
    cdef char *sbase = NULL
    cdef char *scratch
    if not par:
        nt = 1
    ct = <fn_triple *>malloc(items * C * sizeof(fn_triple) + 1)
    scratch = aligned_scratch(nt * q.stride, &sbase)
    if ct == NULL or scratch == NULL:
        free(ct); free(sbase)
        raise MemoryError()
    with nogil:
        with parallel(num_threads=nt, use_threads_if=par):
            tid = threadid()
            for it in prange(items, schedule='static'):
                n = it // q.nch
                k = it - n * q.nch
                cl_chunk_stats(dt, xp + n * S * C * isz, S, C, isz, &q, k,
                               scratch + tid * q.stride, ct + it * C)
        for n in prange(N, num_threads=nt, schedule='static', use_threads_if=par):
            zero_triples(tri + n * C, C)
            for k in range(q.nch):
                merge_triples(tri + n * C, ct + (n * q.nch + k) * C, C)
    free(ct); free(sbase)
    return out


def apply_cl(cnp.ndarray x, cnp.ndarray y, int dt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int nt):
    """y[n, s, c] = act((x[n, s, c] - mean[n, c]) * scale[n, c] + shift[n, c])."""
    cdef Py_ssize_t isz = x.itemsize
    cdef cl_plan q = make_cl_plan(S, C)
    cdef Py_ssize_t items = N * q.nch
    cdef Py_ssize_t wsz = 8 if dt == F64 or dt == F32 else 4
    cdef Py_ssize_t tsz = 4 * q.W * wsz
    cdef const char *xp = <const char *>cnp.PyArray_DATA(x)
    cdef char *yp = <char *>cnp.PyArray_DATA(y)
    cdef const double *mp = <const double *>cnp.PyArray_DATA(mean)
    cdef const double *sp = <const double *>cnp.PyArray_DATA(scale)
    cdef const double *hp = <const double *>cnp.PyArray_DATA(shift)
    cdef bint par = nt > 1 and N * S * C >= SERIAL_BELOW
    cdef Py_ssize_t n, it, k
    cdef char *tiles = <char *>malloc(N * tsz + 1)
    if tiles == NULL:
        raise MemoryError()
    if not par:
        nt = 1
    act = stream_act(dt, act, N * S * C * isz)
    with nogil:
        for n in range(N):
            cl_tile_coefs(dt, C, q.m, mp + n * C, sp + n * C, hp + n * C, tiles + n * tsz)
        for it in prange(items, num_threads=nt, schedule='static', use_threads_if=par):
            n = it // q.nch
            k = it - n * q.nch
            cl_chunk_apply(dt, xp + n * S * C * isz, yp + n * S * C * isz, S, C, isz, &q, k,
                           tiles + n * tsz, act, slope)
    free(tiles)
    return y


# ------------------------------------------------------------- benchmarks
def parallel_copy(cnp.ndarray src, cnp.ndarray dst, int nt, int stream=-1):
    """src copied into dst split over nt OpenMP threads: the bandwidth ceiling.
    stream: 0 memcpy, 1 non-temporal stores (memcpy where the CPU has none),
    -1 (default) non-temporal from the kernels' streaming threshold up.  The
    bench times both and keeps the faster: which one wins depends on the size
    and on how much last-level cache the machine gives (glibc's memcpy picks
    its own non-temporal threshold from the reported L3, 480 MiB on this VM)."""
    cdef const char *s = <const char *>cnp.PyArray_DATA(src)
    cdef char *d = <char *>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t nbytes = src.nbytes
    if stream not in (-1, 0, 1):
        raise ValueError(f"stream must be -1, 0 or 1, got {stream!r}")
    if stream < 0:
        stream = nbytes > STREAM_ABOVE_BYTES
    with nogil:
        fn_parallel_copy(s, d, nbytes, nt, stream)
    return dst


# ------------------------------------------------------------- fast path
def fast_norm_cf(cnp.ndarray x, int dt, double eps):
    """instance_norm of a validated C-contiguous channels-first array with no
    affine, no activation and the default thread count: the per-call overhead
    floor for small inputs."""
    cdef int nd = cnp.PyArray_NDIM(x)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(x)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(nd, dims, cnp.PyArray_TYPE(x), 0)
    cdef Py_ssize_t N = dims[0], C = dims[1]
    cdef Py_ssize_t S = cnp.PyArray_SIZE(x) // (N * C)
    return norm_cf(x, y, dt, N, C, 1, S, None, None, eps, 0, 0.0, omp_get_max_threads())
