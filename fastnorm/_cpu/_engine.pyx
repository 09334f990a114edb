# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Python binding of the CPU engine: the drivers (fn_drive.h) called on
NumPy arrays with the GIL released, the configuration (level, streaming
stores, plan thresholds), the output pool and plan_for.

Everything here assumes validated input (fastnorm._cpu._backend validates):
contiguous arrays of a supported dtype, consistent sizes, thread count >= 1.
The plans, the work split and the thread team are the C drivers'
(fn_plan.h, fn_drive.c, fn_threads.h).
"""
from libc.stdint cimport SIZE_MAX
cimport numpy as cnp
import numpy as np

from fastnorm._cpu import _env, _plans

cnp.import_array()

cdef extern from "fn_dispatch.h" nogil:
    # codes of fn_base.h (fastnorm._codes states the storage codes in Python;
    # tests/test_constants.py checks that the two agree)
    enum:
        FN_F64
        FN_NOUT
        FN_ACT_NONE
    ctypedef struct fn_triple:
        double n
        double mean
        double m2
    int FN_BLOCK
    int omp_get_max_threads()
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

cdef extern from "fn_plan.h" nogil:
    ctypedef struct fn_tunables:
        Py_ssize_t pipeline_max_bytes, wave_bytes, backward_min_bytes, plane_batch, ct_round_bytes
        Py_ssize_t stream_above_bytes, cl_rows_above_bytes, bwd_wave_bytes, bwd_fused_max_bytes
        Py_ssize_t bwd_fused_batch_bytes
        int small_planes
    fn_tunables fn_tune
    ctypedef struct fn_plan:
        int n_threads, parallel, fused, small_planes, pipelined, backward, stream, rows
        Py_ssize_t wave
    ctypedef struct fn_cl_geom:
        pass
    fn_plan fn_plan_cf(int dt, int odt, Py_ssize_t P, Py_ssize_t L, Py_ssize_t isz, Py_ssize_t osz,
                       int n_threads, int act, double slope)
    fn_cl_geom fn_cl_geometry(Py_ssize_t S, Py_ssize_t C)
    fn_plan fn_plan_cl(int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, Py_ssize_t isz,
                       Py_ssize_t osz, const fn_cl_geom *q, int n_threads, int act, double slope)

cdef extern from "fn_drive.h" nogil:
    ctypedef struct fn_err:
        const char *what
        Py_ssize_t nbytes
    int fn_drive_norm_cf(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                         Py_ssize_t N, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads,
                         fn_triple *stats_out, fn_err *err)
    int fn_drive_stats_cf(const void *x, int dt, int odt, Py_ssize_t isz, Py_ssize_t P, Py_ssize_t L,
                          int n_threads, fn_triple *out, fn_err *err)
    int fn_drive_norm_pad_cf(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                             Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph,
                             Py_ssize_t pw, const double *w, const double *b, double eps, int act,
                             double slope, int n_threads)
    int fn_drive_norm_pad_cl(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                             Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t ph,
                             Py_ssize_t pw, const double *w, const double *b, double eps, int act,
                             double slope, int n_threads, fn_err *err)
    void fn_drive_fold_reflect_f32(const float *g, float *o, Py_ssize_t P, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                                   int n_threads)
    void fn_drive_apply_cf(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                           Py_ssize_t R, Py_ssize_t S, const double *mean, const double *scale,
                           const double *shift, int act, double slope, int n_threads)
    int fn_drive_norm_cl(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                         Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, Py_ssize_t G, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads,
                         fn_triple *stats_out, fn_err *err)
    int fn_drive_stats_cl(const void *x, int dt, int odt, Py_ssize_t isz, Py_ssize_t N, Py_ssize_t S,
                          Py_ssize_t C, int n_threads, fn_triple *out, fn_err *err)
    int fn_drive_apply_cl(const void *x, void *y, int dt, int odt, Py_ssize_t isz, Py_ssize_t osz,
                          Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, const double *mean,
                          const double *scale, const double *shift, int act, double slope,
                          int n_threads, fn_err *err)
    int fn_drive_backward_cf(const void *x, const void *dy, void *gx, int dt, Py_ssize_t isz, Py_ssize_t N,
                             Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S, const double *w, double eps,
                             const double *eps_u, int n_threads, double *grad_weight, double *grad_bias,
                             double *sums_out, fn_err *err)
    int fn_drive_backward_cl(const void *x, const void *dy, void *gx, int dt, Py_ssize_t isz, Py_ssize_t N,
                             Py_ssize_t S, Py_ssize_t C, Py_ssize_t G, const double *w, double eps,
                             const double *eps_u, int n_threads, double *grad_weight, double *grad_bias,
                             double *sums_out, fn_err *err)

cdef extern from "fn_threads.h" nogil:
    int fn_busy_now()
    void fn_call_enter()
    void fn_call_leave()
    const Py_ssize_t FN_SERIAL_BELOW_N


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


# ------------------------------------------------------------------ plans
_TUNABLES = ("pipeline_max_bytes", "wave_bytes", "small_planes", "backward_min_bytes", "stream_above_bytes",
             "plane_batch", "ct_round_bytes", "cl_rows_above_bytes")
_FLOORS = {"stream_above_bytes": 0, "wave_bytes": 1, "plane_batch": 1, "ct_round_bytes": 1,
           "cl_rows_above_bytes": 0}


def _tuning(pipeline_max_bytes=None, wave_bytes=None, small_planes=None,
            backward_min_bytes=None, stream_above_bytes=None, plane_batch=None,
            ct_round_bytes=None, cl_rows_above_bytes=None):
    """Read (and, for tests and experiments, set) the plan thresholds of
    fn_plan.h; returns the old values in _TUNABLES' order.  Every setting
    gives the same bits; only the speed and the working memory change."""
    global fn_tune
    new, t = locals(), dict(fn_tune)
    old = tuple(bool(t[k]) if k == "small_planes" else t[k] for k in _TUNABLES)
    for k in _TUNABLES:
        if new[k] is not None:
            t[k] = int(bool(new[k])) if k == "small_planes" else max(_FLOORS.get(k, new[k]), new[k])
    fn_tune = t
    return old


def _backward_tuning(wave_bytes=None, fused_max_bytes=None, fused_batch_bytes=None):
    """Read (and set) the backward's plan thresholds: the wave size in bytes
    of x and dy per thread, the largest channels-first unit (x and dy bytes)
    one thread runs whole (fused; -1: never), and the bytes of whole units a
    fused thread sums before it writes them (at least one unit).  Returns the
    old (wave_bytes, fused_max_bytes, fused_batch_bytes).  Every setting gives
    the same bits."""
    old = (fn_tune.bwd_wave_bytes, fn_tune.bwd_fused_max_bytes, fn_tune.bwd_fused_batch_bytes)
    if wave_bytes is not None:
        fn_tune.bwd_wave_bytes = max(1, wave_bytes)
    if fused_max_bytes is not None:
        fn_tune.bwd_fused_max_bytes = max(-1, fused_max_bytes)
    if fused_batch_bytes is not None:
        fn_tune.bwd_fused_batch_bytes = max(0, fused_batch_bytes)
    return old


def _plan(bint cl, int dt, int odt, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t isz,
          Py_ssize_t osz, int n_threads):
    """The plan of fn_plan_cl or fn_plan_cf, as a dict (plan_for describes it)."""
    cdef fn_cl_geom q = fn_cl_geometry(S, C)
    if cl:
        return fn_plan_cl(dt, odt, N, S, C, isz, osz, &q, n_threads, FN_ACT_NONE, 0.0)
    return fn_plan_cf(dt, odt, N * C, S, isz, osz, n_threads, FN_ACT_NONE, 0.0)


plan_for = _plans.plan_for  # the engine's plan for a shape, described


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
        "stream_above_bytes": fn_tune.stream_above_bytes,
    }


def build_info():
    """How this engine was built, as setup.py recorded it: openmp, compiler,
    cflags, ldflags, native, kernel_targets, sanitize, platform; {} when it was
    built without setup.py's build_ext."""
    import json

    return json.loads((<bytes>fn_build_info).decode("ascii"))


def _select_at_import():
    """FASTNORM_ISA: "auto" (default) or a level of simd_levels(); anything
    else warns and runs auto."""
    want = _env.isa_request()
    fn_select(b"auto", -1)
    if want != "auto" and fn_select(want.encode(), -1) != 0:
        fn_select(b"auto", -1)
        _env.warn(f"FASTNORM_ISA={want!r} is not a level this CPU and build run; valid: 'auto', "
                  f"{', '.join(repr(v) for v in simd_levels())}. Running 'auto' ({fn_level().decode()}).")


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
    return bool(fn_can_stream()), fn_tune.stream_above_bytes


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


# ---------------------------------------------------------------- drivers
# Thin calls of fn_drive.h's drivers, which document the arguments; the
# arrays are validated and C-contiguous (fastnorm._cpu._backend).
cdef inline double *dptr(object a):
    """The data of a float64 array, or NULL for None."""
    return NULL if a is None else <double *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int check(int rc, const fn_err *err) except -1:
    if rc != 0:
        raise MemoryError(f"fastnorm: could not allocate {err.nbytes} bytes for {err.what.decode()}")
    return 0


def norm_cf(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t G, Py_ssize_t Cg,
            Py_ssize_t S, object weight, object bias, double eps, int act, double slope,
            int n_threads, object stats_out=None):
    """Instance / group norm of x viewed as (N, G, Cg*S) into y; stats_out:
    None or float64 (N*G, 3) for the (count, mean, M2) triples."""
    cdef fn_err err
    cdef int rc
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef fn_triple *so = <fn_triple *>dptr(stats_out)
    with nogil:
        fn_call_enter()
        rc = fn_drive_norm_cf(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt, cnp.PyArray_ITEMSIZE(x),
                              cnp.PyArray_ITEMSIZE(y), N, G, Cg, S, w, b, eps, act, slope, n_threads, so,
                              &err)
        fn_call_leave()
    check(rc, &err)
    return y


cdef _pad_arrays(str name, cnp.ndarray x, cnp.ndarray y, object weight, object bias, Py_ssize_t C):
    """The padded drivers' arrays as they read and write them."""
    if not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable):
        raise ValueError(f"{name}: x and y must be C-contiguous, y writeable")
    for v in (weight, bias):
        if v is not None and not (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.size == C
                                  and v.flags.c_contiguous):
            raise ValueError(f"{name}: weight and bias must be None or contiguous float64 arrays of C values")


def norm_pad(cnp.ndarray x, cnp.ndarray y, int dt, int odt, bint cl, Py_ssize_t N, Py_ssize_t C,
             Py_ssize_t H, Py_ssize_t W, Py_ssize_t ph, Py_ssize_t pw, object weight, object bias, double eps,
             int act, double slope, int n_threads):
    """Instance norm of x viewed as (N, C, H, W) (cl: (N, H, W, C)) into y
    viewed as (N, C, H + 2 ph, W + 2 pw) (cl: (N, H + 2 ph, W + 2 pw, C)): the
    interior as norm_cf (norm_cl) writes it, the border its reflection."""
    cdef fn_err err
    cdef int rc = 0
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    if not (0 <= ph < H and 0 <= pw < W) or y.size != N * C * (H + 2 * ph) * (W + 2 * pw) \
            or x.size != N * C * H * W:
        raise ValueError("norm_pad: inconsistent sizes")
    _pad_arrays("norm_pad", x, y, weight, bias, C)
    with nogil:
        fn_call_enter()
        if cl:
            rc = fn_drive_norm_pad_cl(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt,
                                      cnp.PyArray_ITEMSIZE(x), cnp.PyArray_ITEMSIZE(y), N, H, W, C, ph, pw,
                                      w, b, eps, act, slope, n_threads, &err)
        else:
            fn_drive_norm_pad_cf(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt, cnp.PyArray_ITEMSIZE(x),
                                 cnp.PyArray_ITEMSIZE(y), N, C, H, W, ph, pw, w, b, eps, act, slope,
                                 n_threads)
        fn_call_leave()
    check(rc, &err)
    return y


def fold_reflect(cnp.ndarray g not None, cnp.ndarray o not None, Py_ssize_t P, Py_ssize_t H, Py_ssize_t W,
                 Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr, int n_threads):
    """torch's reflection_pad2d_backward of float32 g viewed as (P, H + pt +
    pb, W + pl + pr) into o viewed as (P, H, W), bit for bit (but for NaNs'
    signs and payloads)."""
    # the sizes as Python integers: a product of Py_ssize_t could wrap
    if not (0 <= pt < H and 0 <= pb < H and 0 <= pl < W and 0 <= pr < W and P >= 0) \
            or g.size != int(P) * int(H + pt + pb) * int(W + pl + pr) or o.size != int(P) * int(H) * int(W):
        raise ValueError("fold_reflect: inconsistent sizes")
    if not (g.dtype == np.float32 and o.dtype == np.float32 and g.flags.c_contiguous
            and o.flags.c_contiguous and o.flags.writeable) or np.may_share_memory(g, o):
        raise ValueError("fold_reflect: g and o must be C-contiguous float32 in separate memory, o writeable")
    with nogil:
        fn_call_enter()
        fn_drive_fold_reflect_f32(<const float *>cnp.PyArray_DATA(g), <float *>cnp.PyArray_DATA(o), P, H, W,
                                  pt, pb, pl, pr, n_threads)
        fn_call_leave()
    return o


def norm_cl(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
            Py_ssize_t G, object weight, object bias, double eps, int act, double slope,
            int n_threads, object stats_out=None):
    """Instance / group norm of x viewed as (N, S, C) into y; stats_out: None
    or float64 (N, C, 3)."""
    cdef fn_err err
    cdef int rc
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    cdef fn_triple *so = <fn_triple *>dptr(stats_out)
    with nogil:
        fn_call_enter()
        rc = fn_drive_norm_cl(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt, cnp.PyArray_ITEMSIZE(x),
                              cnp.PyArray_ITEMSIZE(y), N, S, C, G, w, b, eps, act, slope, n_threads, so, &err)
        fn_call_leave()
    check(rc, &err)
    return y


def stats_cf(cnp.ndarray x, int dt, Py_ssize_t P, Py_ssize_t L, int n_threads, cnp.ndarray out,
             int odt=-1):
    """Triples of P planes of L into out (P, 3) float64: of the exact values
    (odt -1), or of the values the kernels of output code odt load."""
    cdef fn_err err
    cdef int rc
    with nogil:
        fn_call_enter()
        rc = fn_drive_stats_cf(cnp.PyArray_DATA(x), dt, FN_F64 if odt < 0 else odt, cnp.PyArray_ITEMSIZE(x),
                               P, L, n_threads, <fn_triple *>cnp.PyArray_DATA(out), &err)
        fn_call_leave()
    check(rc, &err)
    return out


def stats_cl(cnp.ndarray x, int dt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C, int n_threads,
             cnp.ndarray out, int odt=-1):
    """Per-channel triples of x viewed as (N, S, C) into out (N, C, 3)
    float64; odt as stats_cf's."""
    cdef fn_err err
    cdef int rc
    with nogil:
        fn_call_enter()
        rc = fn_drive_stats_cl(cnp.PyArray_DATA(x), dt, FN_F64 if odt < 0 else odt, cnp.PyArray_ITEMSIZE(x),
                               N, S, C, n_threads, <fn_triple *>cnp.PyArray_DATA(out), &err)
        fn_call_leave()
    check(rc, &err)
    return out


def apply_cf(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t R, Py_ssize_t S,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int n_threads):
    """y[r, :] = act((x[r, :] - mean[r]) * scale[r] + shift[r]) for R rows of S."""
    with nogil:
        fn_call_enter()
        fn_drive_apply_cf(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt, cnp.PyArray_ITEMSIZE(x),
                          cnp.PyArray_ITEMSIZE(y), R, S, <double *>cnp.PyArray_DATA(mean),
                          <double *>cnp.PyArray_DATA(scale), <double *>cnp.PyArray_DATA(shift), act, slope,
                          n_threads)
        fn_call_leave()
    return y


def apply_cl(cnp.ndarray x, cnp.ndarray y, int dt, int odt, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
             cnp.ndarray mean, cnp.ndarray scale, cnp.ndarray shift, int act, double slope,
             int n_threads):
    """y[n, s, c] = act((x[n, s, c] - mean[n, c]) * scale[n, c] + shift[n, c])."""
    cdef fn_err err
    cdef int rc
    with nogil:
        fn_call_enter()
        rc = fn_drive_apply_cl(cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), dt, odt, cnp.PyArray_ITEMSIZE(x),
                               cnp.PyArray_ITEMSIZE(y), N, S, C, <double *>cnp.PyArray_DATA(mean),
                               <double *>cnp.PyArray_DATA(scale), <double *>cnp.PyArray_DATA(shift), act,
                               slope, n_threads, &err)
        fn_call_leave()
    check(rc, &err)
    return y


def backward_cf(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray gx, int dt, Py_ssize_t N, Py_ssize_t G,
                Py_ssize_t Cg, Py_ssize_t S, object weight, double eps, int n_threads,
                cnp.ndarray grad_weight, cnp.ndarray grad_bias, object eps_units=None,
                object sums_out=None):
    """Backward of x, dy viewed as (N, G, Cg*S) into gx, grad_weight,
    grad_bias; eps_units None or float64 (N*G,); sums_out None or float64
    (2*N*C + N*G,)."""
    cdef fn_err err
    cdef int rc
    cdef const double *w = dptr(weight)
    cdef const double *eu = dptr(eps_units)
    cdef double *so = dptr(sums_out)
    with nogil:
        fn_call_enter()
        rc = fn_drive_backward_cf(cnp.PyArray_DATA(x), cnp.PyArray_DATA(dy), cnp.PyArray_DATA(gx), dt,
                                  cnp.PyArray_ITEMSIZE(x), N, G, Cg, S, w, eps, eu, n_threads,
                                  <double *>cnp.PyArray_DATA(grad_weight),
                                  <double *>cnp.PyArray_DATA(grad_bias), so, &err)
        fn_call_leave()
    check(rc, &err)
    return gx


def backward_cl(cnp.ndarray x, cnp.ndarray dy, cnp.ndarray gx, int dt, Py_ssize_t N, Py_ssize_t S,
                Py_ssize_t C, Py_ssize_t G, object weight, double eps, int n_threads,
                cnp.ndarray grad_weight, cnp.ndarray grad_bias, object eps_units=None,
                object sums_out=None):
    """Backward of x, dy viewed as (N, S, C); the rest as backward_cf's."""
    cdef fn_err err
    cdef int rc
    cdef const double *w = dptr(weight)
    cdef const double *eu = dptr(eps_units)
    cdef double *so = dptr(sums_out)
    with nogil:
        fn_call_enter()
        rc = fn_drive_backward_cl(cnp.PyArray_DATA(x), cnp.PyArray_DATA(dy), cnp.PyArray_DATA(gx), dt,
                                  cnp.PyArray_ITEMSIZE(x), N, S, C, G, w, eps, eu, n_threads,
                                  <double *>cnp.PyArray_DATA(grad_weight),
                                  <double *>cnp.PyArray_DATA(grad_bias), so, &err)
        fn_call_leave()
    check(rc, &err)
    return gx


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
    if not 1 <= n_threads <= 1024:  # an OpenMP team of 100000 threads crashes libgomp
        raise ValueError(f"n_threads must be in [1, 1024], got {n_threads}")
    if not (src.flags.c_contiguous and dst.flags.c_contiguous and dst.flags.writeable):
        raise ValueError("src and dst must be C-contiguous and dst writeable")
    if dst.nbytes < nbytes:
        raise ValueError(f"dst holds {dst.nbytes} bytes, fewer than src's {nbytes}")
    if stream < 0:
        stream = nbytes > fn_tune.stream_above_bytes
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


def _busy_others(int concurrent_calls=0):
    """One reading of the thread policy's load check: runnable threads of
    other processes (this process's own are not counted), -1 when unknown;
    as if concurrent_calls other fastnorm calls were running (then this
    process's threads count, but for our own spinning workers)."""
    cdef int _k, r
    for _k in range(concurrent_calls + 1):
        fn_call_enter()
    r = fn_busy_now()
    for _k in range(concurrent_calls + 1):
        fn_call_leave()
    return r


def _pool_from_env():
    cap = _env.cache_bytes(SIZE_MAX, fn_pool_get_cap())
    if cap is not None:
        fn_pool_set_cap(cap)


_pool_from_env()


# ------------------------------------------------------------- fast path
def fast_norm_cf(cnp.ndarray x, int dt, double eps, int odt=-1, object odtype=None, cnp.ndarray out=None,
                 int nt=0, cnp.ndarray weight=None, cnp.ndarray bias=None, int act=0, double slope=0.0,
                 Py_ssize_t groups=0):
    """instance_norm (groups 0) or group_norm (groups G, a divisor of C) of
    a validated channels-first array: the per-call overhead floor for small
    inputs.  weight, bias: None or contiguous float64 of length C (the caller
    checked); act, slope: the activation's code and slope.  None
    (nothing done) unless x is C-contiguous, at least 3-d and not empty.
    odt, odtype: the output code and dtype (default: x's, for a floating x).
    out: None, or an array the call writes (x's shape and dtype in native
    byte order, C-contiguous, writeable, x itself or not overlapping it;
    else None, and the general path checks it and says why).  nt: the team
    (the thread policy's answer for an explicit num_threads), 0 for OpenMP's
    default."""
    cdef int nd = cnp.PyArray_NDIM(x)
    if nd < 3 or not cnp.PyArray_IS_C_CONTIGUOUS(x) or cnp.PyArray_SIZE(x) == 0:
        return None
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(x)
    cdef cnp.ndarray y
    cdef Py_ssize_t N = dims[0], C = dims[1]
    cdef char *lo
    cdef char *hi
    if out is not None:
        if (odt >= 0 or cnp.PyArray_NDIM(out) != nd or not cnp.PyArray_IS_C_CONTIGUOUS(out)
                or not cnp.PyArray_ISWRITEABLE(out) or cnp.PyArray_TYPE(out) != cnp.PyArray_TYPE(x)
                or not cnp.PyArray_ISNOTSWAPPED(out)
                or not cnp.PyArray_SAMESHAPE(out, x)):
            return None
        lo = <char *>cnp.PyArray_DATA(x)
        hi = <char *>cnp.PyArray_DATA(out)
        if hi != lo and hi < lo + cnp.PyArray_NBYTES(x) and lo < hi + cnp.PyArray_NBYTES(out):
            return None  # partial overlap: the general path reads a copy of x
        odt = dt
        y = out
    elif odt < 0:
        odt = dt
        if x.nbytes < FN_POOL_MIN:
            y = cnp.PyArray_EMPTY(nd, dims, cnp.PyArray_TYPE(x), 0)
        else:
            y = empty((<object>x).shape, x.dtype)
    else:
        y = empty((<object>x).shape, odtype)
    cdef Py_ssize_t S = cnp.PyArray_SIZE(x) // (N * C)
    cdef Py_ssize_t G = C, Cg = 1
    if groups > 0:
        G, Cg = groups, C // groups
    cdef fn_err err
    cdef int rc
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *yp = cnp.PyArray_DATA(y)
    cdef int xs = cnp.PyArray_ITEMSIZE(x), ys = cnp.PyArray_ITEMSIZE(y)
    if nt <= 0:
        nt = omp_get_max_threads()
    cdef const double *w = dptr(weight)
    cdef const double *b = dptr(bias)
    if N * C * S < FN_SERIAL_BELOW_N:
        # one thread and well under a microsecond of work: releasing the GIL
        # would cost more than other threads could gain from it
        rc = fn_drive_norm_cf(xp, yp, dt, odt, xs, ys, N, G, Cg, S, w, b, eps, act, slope, nt, NULL, &err)
    else:
        with nogil:
            fn_call_enter()
            rc = fn_drive_norm_cf(xp, yp, dt, odt, xs, ys, N, G, Cg, S, w, b, eps, act, slope, nt, NULL, &err)
            fn_call_leave()
    check(rc, &err)
    return y
