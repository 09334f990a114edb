/*
 * fastnorm CPU kernels: the innermost loops, called from the Cython drivers
 * in _engine.pyx (which own the OpenMP parallelism and the work split).
 *
 * Numerics
 *   Statistics: each block of at most FN_BLOCK elements yields a Welford
 *   triple (count, mean, M2).  Inside a block the sums are shifted by the
 *   block's first element and accumulated in double over FN_LANES
 *   independent lanes (no division per element, vectorizable).  Because the
 *   shift is one of the block's own values, |mean - shift|^2 <= count * var,
 *   so the shifted second moment never cancels more than log10(FN_BLOCK) ~ 4
 *   of double's 16 digits.  Blocks are merged with Chan's formula in a fixed
 *   order that depends only on the shape, so any thread count gives the
 *   same bits.
 *   Apply: y = ((x - hi) - lo) * scale + shift in the working precision,
 *   with the double mean split into hi + lo so large offsets lose nothing.
 *   Contraction is disabled at build time (-ffp-contract=off) and the two
 *   fused multiply-adds that the kernels want (sum of squares, apply) are
 *   written out (FN_FMA), so every ISA clone produces the same bits on a CPU
 *   with FMA; CPUs without it run an unfused twin of each kernel.
 */
#ifndef FN_KERNELS_H
#define FN_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#define FN_HAVE_OPENMP 1
#else
#define FN_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

/* Team size and barrier of the enclosing parallel region.  The barrier is an
 * orphaned directive: it is called from a Cython `with parallel()` block that
 * every thread of the team runs through (Cython has no barrier of its own). */
static inline int fn_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
static inline void fn_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

#ifndef FN_BLOCK
#define FN_BLOCK 16384   /* elements per statistics block (fixed by design) */
#endif
#define FN_LANES 16      /* independent accumulators per block */

/* Runtime ISA dispatch (GCC/Clang ifunc on x86-64 Linux) so a portable wheel
 * still runs AVX2/AVX-512 code where the CPU has it. */
#if defined(FN_NATIVE)
#define FN_MV
#define FN_MV_NAME "native"
#elif (defined(__GNUC__) && !defined(__INTEL_COMPILER)) && defined(__x86_64__) && defined(__linux__) && !defined(FN_NO_MULTIVERSION) && !defined(__SANITIZE_ADDRESS__)
#define FN_MV __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FN_MV_CLONES 1
#define FN_MV_NAME "x86-64 baseline + runtime dispatch to x86-64-v3 (AVX2/FMA/F16C) and x86-64-v4 (AVX-512)"
#else
#define FN_MV
#define FN_MV_NAME "compiler default"
#endif

/* Fused multiply-add, rounded once: the statistics' sums of squares and the
 * apply's (x - mean) * scale + shift.  Written out explicitly (the build has
 * -ffp-contract=off, so the compiler fuses nothing on its own), so every
 * clone of one build gives the same bits on every CPU with FMA: the AVX2 and
 * AVX-512 clones run vfmadd, and the baseline clone, on the rare CPU that has
 * FMA without AVX2, gets it from libm.  On a CPU without FMA the kernels take
 * their unfused twin (chosen once per call, fn_fused_now): libm's software
 * fma would cost far more than the memory traffic, so such CPUs may differ
 * from FMA ones in the last bit.  A build whose only target lacks FMA (no
 * runtime dispatch, e.g. MSVC or macOS x86-64 without -mfma) has only the
 * unfused form.  Kernels see the choice as `fn_fz`, a constant after inlining. */
#if defined(FN_MV_CLONES) || defined(FN_FORCE_FUSED) || defined(__FMA__) || defined(__aarch64__) || \
    defined(__ARM_FEATURE_FMA)
#define FN_FUSED 1
#define FN_FMA(a, b, c) (fn_fz ? __builtin_fma((a), (b), (c)) : (a) * (b) + (c))
#define FN_FMAF(a, b, c) (fn_fz ? __builtin_fmaf((a), (b), (c)) : (a) * (b) + (c))
#else
#define FN_FUSED 0
#define FN_FMA(a, b, c) ((a) * (b) + (c))
#define FN_FMAF(a, b, c) ((a) * (b) + (c))
#endif
/* tests set this to run the unfused twin on an FMA machine */
static int fn_fma_off = 0;
static inline int fn_fused_now(void)
{
#if FN_FUSED && defined(FN_MV_CLONES) && !defined(FN_FORCE_FUSED)
    return !fn_fma_off && __builtin_cpu_supports("fma");
#elif FN_FUSED
    return !fn_fma_off;
#else
    return 0;
#endif
}
/* run CALL (which passes fn_fz on) with fn_fz a compile-time constant */
#define FN_WITH_FZ(CALL)                                                        \
    do {                                                                        \
        if (fn_fused_now()) { const int fn_fz = 1; CALL; }                      \
        else { const int fn_fz = 0; CALL; }                                     \
    } while (0)

#if defined(__GNUC__) || defined(__clang__)
#define FN_INLINE static inline __attribute__((always_inline))
#else
#define FN_INLINE static inline
#endif

#if defined(__clang__)
#define FN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FN_IVDEP _Pragma("GCC ivdep")
#else
#define FN_IVDEP
#endif

typedef struct { double n, mean, m2; } fn_triple;

/* Chan et al. pairwise merge of b into a. */
static inline void fn_merge(fn_triple *a, const fn_triple *b)
{
    if (b->n == 0.0) return;
    if (a->n == 0.0) { *a = *b; return; }
    double n = a->n + b->n;
    double d = b->mean - a->mean;
    double fb = b->n / n;
    a->mean += d * fb;
    a->m2 += b->m2 + d * d * (a->n * fb);
    a->n = n;
}

/* Turn shifted sums into a triple; the finalizer owns the edge cases. */
static inline void fn_finish(fn_triple *t, double cnt, double shift, double s1, double s2)
{
    t->n = cnt;
    if (cnt == 0.0) { t->mean = 0.0; t->m2 = 0.0; return; }
    double q = s1 / cnt;
    double m2 = s2 - s1 * q;
    t->mean = shift + q;
    t->m2 = (m2 < 0.0) ? 0.0 : m2;   /* NaN stays NaN */
}

/* Per-channel coefficients of one (instance, group) from its triple: the one
 * formula of every plan (the engine's group_coefs is the same). */
static inline void fn_group_coefs(const fn_triple *t, double eps, Py_ssize_t g, Py_ssize_t Cg,
                                  Py_ssize_t row0, const double *w, const double *b,
                                  double *mean, double *scale, double *shift)
{
    double rs = 1.0 / sqrt(t->m2 / t->n + eps);
    Py_ssize_t k, c;
    for (k = 0; k < Cg; k++) {
        c = g * Cg + k;
        mean[row0 + k] = t->mean;
        scale[row0 + k] = w != NULL ? rs * w[c] : rs;
        shift[row0 + k] = b != NULL ? b[c] : 0.0;
    }
}

/* ---- half precision ---------------------------------------------------- */
/* Branch-free IEEE binary16 <-> binary32 conversions (after F. Giesen): exact
 * for every half, round-to-nearest-even on output, NaN stays NaN.  Written
 * with selects only so that compilers vectorize them in any loop, on any ISA,
 * with identical results (no dependence on F16C being present). */
#define FN_HALF_IMPL "branch-free vectorized bit conversion (exact, round-to-nearest-even)"
FN_INLINE float fn_u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
FN_INLINE uint32_t fn_f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
FN_INLINE float fn_h2f(uint16_t h)
{
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t e = o & 0x0f800000u;
    float fn, fd;
    o += 0x38000000u;                                    /* rebias exponent */
    o += (e == 0x0f800000u) ? 0x38000000u : 0u;          /* inf / nan */
    o |= (e == 0x0f800000u && (o & 0x007fe000u)) ? 0x00400000u : 0u;  /* quiet a NaN */
    fn = fn_u2f(o);
    fd = fn_u2f(o + 0x00800000u) - 6.103515625e-05f;     /* zero / subnormal */
    fn = (e == 0u) ? fd : fn;
    return fn_u2f(fn_f2u(fn) | ((uint32_t)(h & 0x8000u) << 16));
}
FN_INLINE uint16_t fn_f2h(float f)
{
    uint32_t u = fn_f2u(f);
    uint32_t sign = u & 0x80000000u;
    uint32_t a = u ^ sign;
    uint32_t r_inf = (a > 0x7f800000u) ? (0x7e00u | ((a >> 13) & 0x3ffu)) : 0x7c00u;
    uint32_t r_sub = fn_f2u(fn_u2f(a) + 0.5f) - 0x3f000000u;
    uint32_t r_norm = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
    uint32_t r = (a >= 0x47800000u) ? r_inf : ((a < 0x38800000u) ? r_sub : r_norm);
    return (uint16_t)(r | (sign >> 16));
}

/* bfloat16: upper half of a float32; round to nearest even on output. */
FN_INLINE float fn_b2f(uint16_t h) { uint32_t b = (uint32_t)h << 16; float f; memcpy(&f, &b, 4); return f; }
FN_INLINE uint16_t fn_f2b(float f)
{
    uint32_t x; memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
/* ---- 8 x double vectors (GCC/Clang vector extensions) ----------------- */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FN_NO_VEC)
#define FN_HAVE_VEC 1
typedef double fn_v8d __attribute__((vector_size(64)));
typedef float fn_v8f __attribute__((vector_size(32)));
typedef float fn_v16f __attribute__((vector_size(64)));
typedef uint32_t fn_v8u __attribute__((vector_size(32)));
typedef uint16_t fn_v8s __attribute__((vector_size(16)));
FN_INLINE fn_v8d fn_v8d_zero(void) { fn_v8d z = {0, 0, 0, 0, 0, 0, 0, 0}; return z; }
/* pairwise: (0+4, 1+5, 2+6, 3+7) -> (02 + 46) + (13 + 57) */
FN_INLINE double fn_v8d_hsum(fn_v8d v)
{
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}
/* Written as an initializer, not __builtin_convertvector: GCC 12 splits the
 * latter into 128-bit pieces (5 uops), the former is one vcvtps2pd zmm, m256. */
FN_INLINE fn_v8d fn_v8f_to_v8d(fn_v8f f)
{
    fn_v8d d = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]};
    return d;
}
FN_INLINE fn_v8d fn_load8d_f32(const float *p)
{
    fn_v8d d = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
    return d;
}
/* lane-wise FN_FMA; the simd loop is what makes GCC emit one vfmadd zmm (as
 * elementwise calls on a vector it scalarizes them inside the kernels) */
FN_INLINE fn_v8d fn_fma8d(fn_v8d a, fn_v8d b, fn_v8d c, const int fn_fz)
{
#if FN_FUSED
    if (fn_fz) {
        fn_v8d r;
        int j;
        _Pragma("omp simd")
        for (j = 0; j < 8; j++) r[j] = __builtin_fma(a[j], b[j], c[j]);
        return r;
    }
#endif
    (void)fn_fz;
    return a * b + c;
}
#define FN_FMA8D(a, b, c) fn_fma8d(a, b, c, fn_fz)
FN_INLINE fn_v8d fn_load8d_f64(const double *p)
{
    fn_v8d d; memcpy(&d, p, sizeof d); return d;
}
/* 8 doubles rounded once to float and stored (one vcvtpd2ps); used inside
 * the unrolled channels-last tiles, where GCC scalarized the initializer
 * form below (and __builtin_shufflevector in the AVX2 clone) */
FN_INLINE void fn_store8d_f32(float *p, fn_v8d d)
{
    fn_v8f f = __builtin_convertvector(d, fn_v8f);
    memcpy(p, &f, sizeof f);
}
/* 16 floats from two 8-double halves, rounded once and written as one 64-byte
 * store.  A whole cache line in one store lets the CPU skip the
 * read-for-ownership when the output streams to L3 / DRAM: two 32-byte
 * stores made S4 (8 MiB planes) 7% slower.  Written as an initializer: GCC 12
 * compiles it to 2 vcvtpd2ps + vinsertf64x4 + one zmm store (AVX-512) and to
 * 256-bit halves on AVX2. */
FN_INLINE void fn_store16d_f32(float *p, fn_v8d a, fn_v8d b)
{
    fn_v16f v = {(float)a[0], (float)a[1], (float)a[2], (float)a[3],
                 (float)a[4], (float)a[5], (float)a[6], (float)a[7],
                 (float)b[0], (float)b[1], (float)b[2], (float)b[3],
                 (float)b[4], (float)b[5], (float)b[6], (float)b[7]};
    memcpy(p, &v, sizeof v);
}
#ifdef __clang__
#define FN_UNROLL8 _Pragma("unroll 8")
#else
#define FN_UNROLL8 _Pragma("GCC unroll 8")
#endif
/* Channels-last rows wider than one register tile (W > 64) are walked tile
 * by tile, so each pass over a block touches a few lines of every row: a
 * pattern the hardware prefetchers follow poorly from memory (S3 channels-last
 * read and wrote at 0.58 of a copy against 0.84 for C = 64 with the same
 * instance size).  The tile loops therefore prefetch, row by row, the same
 * lines of the next block into L1 (for the apply the output lines too, with
 * write intent): A/B, 2 threads, S2/S3 channels-last 0.62/0.58 -> 0.68/0.66. */
#define FN_PREFETCH_LINES(P, NBYTES, RW)                                        \
    do {                                                                        \
        int pl_;                                                                \
        for (pl_ = 0; pl_ < (int)(NBYTES); pl_ += 64)                           \
            __builtin_prefetch((const char *)(P) + pl_, RW, 3);                 \
    } while (0)
/* Channels-last outputs past the caches (the engine passes FN_ACT_NT_CL):
 * 8 values per 16-byte non-temporal stores (SSE/SSE2, every x86-64), p
 * 16-byte aligned, rounded exactly as the normal stores. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#define FN_HAVE_CL_NT 1
FN_INLINE void fn_stream8d_f32(float *p, fn_v8d d)
{
    fn_v8f f = __builtin_convertvector(d, fn_v8f);
    __m128 a, b;
    memcpy(&a, &f, 16);
    memcpy(&b, (char *)&f + 16, 16);
    _mm_stream_ps(p, a);
    _mm_stream_ps(p + 4, b);
}
FN_INLINE void fn_stream8d_f64(double *p, fn_v8d d)
{
    __m128d v[4];
    int i;
    memcpy(v, &d, sizeof v);
    for (i = 0; i < 4; i++) _mm_stream_pd(p + 2 * i, v[i]);
}
#else
#define FN_HAVE_CL_NT 0
#define fn_stream8d_f32 fn_store8d_f32
#define fn_stream8d_f64 fn_store8d_f64
#endif
FN_INLINE void fn_store8d_f64(double *p, fn_v8d d) { memcpy(p, &d, sizeof d); }
/* vr channels-last rows of W float32 / float64 values, in column tiles of
 * 16*K lanes (K <= 4) whose coefficients stay in registers for all the rows:
 * the same per-element arithmetic as the generic apply_cl loop, without its
 * 6 coefficient loads per 16 elements (float32 C = 64: 1.5x faster on cached
 * data).  With pf (rows wider than a tile) each row also prefetches its lines
 * of the next group. */
#define FN_APPLY_CL_TILE(T, LOAD, K, STORE)                                     \
    {                                                                           \
        fn_v8d h[2 * K], s[2 * K], f[2 * K];                                    \
        int k;                                                                  \
        for (k = 0; k < 2 * K; k++) {                                           \
            h[k] = fn_load8d_f64(hi + j0 + 8 * k);                              \
            s[k] = fn_load8d_f64(sc + j0 + 8 * k);                              \
            f[k] = fn_load8d_f64(sf + j0 + 8 * k);                              \
        }                                                                       \
        for (r = 0; r < vr; r++) {                                              \
            const T *p = x + r * W + j0;                                        \
            T *q = y + r * W + j0;                                              \
            if (pf) {                                                           \
                FN_PREFETCH_LINES(p + vr * W, 16 * K * sizeof(T), 0);           \
                FN_PREFETCH_LINES(q + vr * W, 16 * K * sizeof(T), 1);           \
            }                                                                   \
            FN_UNROLL8 for (k = 0; k < 2 * K; k++)                              \
                STORE(q + 8 * k, FN_FMA8D(LOAD(p + 8 * k) - h[k], s[k], f[k])); \
        }                                                                       \
        j0 += 16 * K;                                                           \
    }
/* rows in groups of about FN_CL_APPLY_BYTES of input so that the column
 * tiles of a group walk an L1-sized piece */
#ifndef FN_CL_APPLY_BYTES
#define FN_CL_APPLY_BYTES 8192
#endif
#define FN_DEF_CL_TILES(SUF, T, LOAD, STORE, STREAM)                            \
FN_INLINE void fn_apply_cl_tile_rows_##SUF(const T *x, T *y, Py_ssize_t vr, Py_ssize_t W,  \
                                           const double *hi, const double *sc,  \
                                           const double *sf, int nt, const int fn_fz) \
{                                                                               \
    Py_ssize_t r, j, j0 = 0;                                                    \
    const int pf = W > 64;   /* see FN_PREFETCH_LINES */                        \
    if (nt) {                                                                   \
        /* only rows of one tile (W <= 64, a multiple of 16): a group of        \
         * rows is then one contiguous run written front to back */             \
        switch (W / 16) {                                                       \
        case 4: FN_APPLY_CL_TILE(T, LOAD, 4, STREAM) break;                     \
        case 3: FN_APPLY_CL_TILE(T, LOAD, 3, STREAM) break;                     \
        case 2: FN_APPLY_CL_TILE(T, LOAD, 2, STREAM) break;                     \
        case 1: FN_APPLY_CL_TILE(T, LOAD, 1, STREAM) break;                     \
        default: break;                                                         \
        }                                                                       \
        return;                                                                 \
    }                                                                           \
    while (W - j0 >= 64) FN_APPLY_CL_TILE(T, LOAD, 4, STORE)                    \
    switch ((W - j0) / 16) {                                                    \
    case 3: FN_APPLY_CL_TILE(T, LOAD, 3, STORE) break;                          \
    case 2: FN_APPLY_CL_TILE(T, LOAD, 2, STORE) break;                          \
    case 1: FN_APPLY_CL_TILE(T, LOAD, 1, STORE) break;                          \
    default: break;                                                             \
    }                                                                           \
    if (j0 < W)                                                                 \
        for (r = 0; r < vr; r++)                                                \
            for (j = j0; j < W; j++)                                            \
                y[r * W + j] = (T)FN_FMA((double)x[r * W + j] - hi[j], sc[j], sf[j]); \
}                                                                               \
FN_INLINE void fn_apply_cl_tiles_##SUF(const T *x, T *y, Py_ssize_t vr, Py_ssize_t W, \
                                       const double *hi, const double *sc,      \
                                       const double *sf, int nt, const int fn_fz) \
{                                                                               \
    Py_ssize_t g = W > 0 ? FN_CL_APPLY_BYTES / (Py_ssize_t)(sizeof(T) * W) : vr, r0, cnt; \
    if (g < 1) g = 1;                                                           \
    /* non-temporal stores need whole 16-byte pieces written in order */        \
    nt = nt && FN_HAVE_CL_NT && W <= 64 && W % 16 == 0 && ((uintptr_t)y & 15) == 0; \
    for (r0 = 0; r0 < vr; r0 += cnt) {                                          \
        cnt = vr - r0 < g ? vr - r0 : g;                                        \
        fn_apply_cl_tile_rows_##SUF(x + r0 * W, y + r0 * W, cnt, W, hi, sc, sf, nt, fn_fz); \
    }                                                                           \
    if (nt) FN_SFENCE();   /* the streamed lines are visible before we return */ \
}
#if FN_HAVE_CL_NT
#define FN_SFENCE() _mm_sfence()
#else
#define FN_SFENCE() ((void)0)
#endif
FN_DEF_CL_TILES(f32, float, fn_load8d_f32, fn_store8d_f32, fn_stream8d_f32)
FN_DEF_CL_TILES(f64, double, fn_load8d_f64, fn_store8d_f64, fn_stream8d_f64)
#undef FN_DEF_CL_TILES
#undef FN_APPLY_CL_TILE
/* Lane-wise widen / narrow written as initializers: GCC 12 lowers
 * __builtin_convertvector between vector widths into 128-bit pieces, but
 * an initializer becomes one vpmovzxwd / vpmovdw. */
FN_INLINE fn_v8u fn_v8s_to_v8u(fn_v8s h)
{
    fn_v8u u = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
    return u;
}
/* the same widening as fn_b2f, 8 lanes at a time (bfloat16 channels-last tiles;
 * float16 goes through the bulk conversion and float32 tiles instead) */
FN_INLINE fn_v8f fn_b2f_v8(fn_v8s h16)
{
    return (fn_v8f)(fn_v8s_to_v8u(h16) << 16);
}
typedef uint32_t fn_v16u __attribute__((vector_size(64)));
typedef uint16_t fn_v16s __attribute__((vector_size(32)));
FN_INLINE fn_v16u fn_v16s_to_v16u(fn_v16s h)
{
    fn_v16u u = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
                 h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]};
    return u;
}
FN_INLINE fn_v16s fn_v16u_to_v16s(fn_v16u u)
{
    fn_v16s h = {(uint16_t)u[0], (uint16_t)u[1], (uint16_t)u[2], (uint16_t)u[3],
                 (uint16_t)u[4], (uint16_t)u[5], (uint16_t)u[6], (uint16_t)u[7],
                 (uint16_t)u[8], (uint16_t)u[9], (uint16_t)u[10], (uint16_t)u[11],
                 (uint16_t)u[12], (uint16_t)u[13], (uint16_t)u[14], (uint16_t)u[15]};
    return h;
}
FN_INLINE fn_v16f fn_h2f_v16(fn_v16s h16)
{
    fn_v16u h = fn_v16s_to_v16u(h16);
    fn_v16u o = (h & 0x7fffu) << 13;
    fn_v16u e = o & 0x0f800000u;
    fn_v16u m, r;
    fn_v16f fd;
    o += (fn_v16u)(e == 0x0f800000u) & 0x38000000u;
    o |= (fn_v16u)(e == 0x0f800000u) & (fn_v16u)((o & 0x007fe000u) != 0u) & 0x00400000u;
    o += 0x38000000u;
    fd = (fn_v16f)(o + 0x00800000u) - 6.103515625e-05f;
    m = (fn_v16u)(e == 0u);
    r = ((fn_v16u)fd & m) | (o & ~m);
    return (fn_v16f)(r | ((h & 0x8000u) << 16));
}
FN_INLINE fn_v16s fn_f2h_v16(fn_v16f f)
{
    fn_v16u u = (fn_v16u)f;
    fn_v16u sign = u & 0x80000000u;
    fn_v16u a = u ^ sign;
    fn_v16u big = (fn_v16u)(a >= 0x47800000u), sub = (fn_v16u)(a < 0x38800000u);
    fn_v16u r_inf = ((fn_v16u)(a > 0x7f800000u) & (0x0200u | ((a >> 13) & 0x3ffu))) | 0x7c00u;
    fn_v16u r_sub = (fn_v16u)((fn_v16f)a + 0.5f) - 0x3f000000u;
    fn_v16u r_norm = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
    fn_v16u r = (big & r_inf) | (~big & ((sub & r_sub) | (~sub & r_norm)));
    return fn_v16u_to_v16s(r | (sign >> 16));
}
FN_INLINE fn_v16f fn_b2f_v16(fn_v16s h16)
{
    return (fn_v16f)(fn_v16s_to_v16u(h16) << 16);
}
FN_INLINE fn_v16s fn_f2b_v16(fn_v16f f)
{
    fn_v16u x = (fn_v16u)f;
    fn_v16u nan = (fn_v16u)((x & 0x7fffffffu) > 0x7f800000u);
    fn_v16u r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    r = (nan & ((x >> 16) | 0x40u)) | (~nan & r);
    return fn_v16u_to_v16s(r);
}
FN_INLINE fn_v8d fn_load8d_bf16(const uint16_t *p)
{
    fn_v8s h; memcpy(&h, p, sizeof h);
    return fn_v8f_to_v8d(fn_b2f_v8(h));
}
#else
#define FN_HAVE_VEC 0
#endif

/* exp for float, branch-free so the apply loops stay vectorized (Cephes
 * expf: Cody-Waite reduction by ln 2, degree-6 polynomial, ~1 ulp).  Inputs
 * are clamped to [-87, 88] (exp(-87) ~ 1.6e-38, exp(88) ~ 1.7e38): enough for
 * silu, where v / (1 + exp(-v)) is then 0 or v to within rounding. */
FN_INLINE float fn_expf(float x, const int fn_fz)
{
    float n, r, p, x0 = x;
    uint32_t bits;
    x = (x == x) ? x : 0.0f;            /* NaN: keep the integer conversion defined */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    n = FN_FMAF(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;   /* round to nearest */
    r = FN_FMAF(n, -0.693359375f, x);
    r = FN_FMAF(n, 2.12194440e-4f, r);
    p = 1.9875691500e-4f;
    p = FN_FMAF(p, r, 1.3981999507e-3f);
    p = FN_FMAF(p, r, 8.3334519073e-3f);
    p = FN_FMAF(p, r, 4.1665795894e-2f);
    p = FN_FMAF(p, r, 1.6666665459e-1f);
    p = FN_FMAF(p, r, 5.0000001201e-1f);
    p = FN_FMAF(p * r, r, r) + 1.0f;
    bits = (uint32_t)((int32_t)n + 127) << 23;
    p = p * fn_u2f(bits);
    return (x0 == x0) ? p : x0;
}

/* Activations fused into the apply pass. */
enum { FN_ACT_NONE = 0, FN_ACT_RELU = 1, FN_ACT_LEAKY = 2, FN_ACT_SILU = 3 };
/* "no activation, non-temporal stores": only the engine passes it, only to
 * the channels-last float32/float64 apply; any other kernel treats it as none */
enum { FN_ACT_NT_CL = 15 };
/* +0.0, read once per call: see FN_ACT_SWITCH */
static volatile double fn_relu_zero = 0.0;

/* Bulk 16-bit <-> float conversion for the chunked 16-bit kernels. */
#define FN_CHUNK 512
#define FN_CL_WALK 16384   /* bytes: statistics block for rows wider than a tile */
#define FN_CL_BUF 4096   /* floats: the channels-last float16 statistics buffer */
#define FN_DEF_CONVERT(NAME, VIN, VOUT, SIN, SOUT)                              \
    FN_MV static void fn_widen_##NAME(const uint16_t *src, float *dst, Py_ssize_t n) \
    {                                                                           \
        Py_ssize_t i = 0;                                                       \
        FN_VEC_WIDEN(VIN)                                                       \
        for (; i < n; i++) dst[i] = SIN(src[i]);                                \
    }                                                                           \
    FN_MV static void fn_narrow_##NAME(const float *src, uint16_t *dst, Py_ssize_t n) \
    {                                                                           \
        Py_ssize_t i = 0;                                                       \
        FN_VEC_NARROW(VOUT)                                                     \
        for (; i < n; i++) dst[i] = SOUT(src[i]);                               \
    }
#if FN_HAVE_VEC
#define FN_VEC_WIDEN(VIN)                                                       \
    for (; i + 16 <= n; i += 16) {                                              \
        fn_v16s h; fn_v16f f; memcpy(&h, src + i, sizeof h);                    \
        f = VIN(h); memcpy(dst + i, &f, sizeof f);                              \
    }
#define FN_VEC_NARROW(VOUT)                                                    \
    for (; i + 16 <= n; i += 16) {                                              \
        fn_v16f f; fn_v16s h; memcpy(&f, src + i, sizeof f);                    \
        h = VOUT(f); memcpy(dst + i, &h, sizeof h);                             \
    }
#else
#define FN_VEC_WIDEN(VIN)
#define FN_VEC_NARROW(VOUT)
#endif
FN_DEF_CONVERT(f16_sw, fn_h2f_v16, fn_f2h_v16, fn_h2f, fn_f2h)
FN_DEF_CONVERT(bf16, fn_b2f_v16, fn_f2b_v16, fn_b2f, fn_f2b)

/* Hardware float16 conversion (F16C: vcvtph2ps / vcvtps2ph, 16 lanes with
 * AVX-512F), chosen once at run time by fn_half_select().  Bit-identical to
 * the software conversion above for all 2^32 floats and 2^16 halves, NaN
 * payloads included (the software form quiets and truncates NaNs exactly as
 * the instructions do); tests/test_half.py checks it on every half and on
 * float bit patterns around every rounding boundary. */
static int fn_half_level = 0;   /* 0 software, 1 F16C + AVX2, 2 AVX-512F */
static int fn_half_fma = 0;     /* FMA present: the register kernels may run */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FN_NO_F16C)
#define FN_HAVE_F16C 1
#include <immintrin.h>
__attribute__((target("avx512f,f16c"))) static void
fn_widen_f16_x512(const uint16_t *src, float *dst, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = fn_h2f(src[i]);
}
__attribute__((target("avx512f,f16c"))) static void
fn_narrow_f16_x512(const float *src, uint16_t *dst, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = fn_f2h(src[i]);
}
__attribute__((target("avx2,f16c"))) static void
fn_widen_f16_f16c(const uint16_t *src, float *dst, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = fn_h2f(src[i]);
}
__attribute__((target("avx2,f16c"))) static void
fn_narrow_f16_f16c(const float *src, uint16_t *dst, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = fn_f2h(src[i]);
}
/* float16 apply without activation straight from registers: widen 16 (8)
 * halves, (v - hi) - lo, one multiply-add (fused or not, as fz says), round
 * once: lane for lane the buffer path's operations (widen to an L1 buffer,
 * the float loop, narrow), so the same bits, without its two extra passes
 * over the buffer.  The tail goes through a zero-padded 16-lane buffer so it
 * runs the same instructions. */
#define FN_APPLY_F16_HW(V, SET1, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST, NL)        \
    {                                                                                 \
        const V h = SET1(hi), l = SET1(lo), s = SET1(sc), f = SET1(sh);               \
        uint16_t tx[16], ty[16];                                                      \
        Py_ssize_t i = 0;                                                             \
        for (;;) {                                                                    \
            const uint16_t *px = x + i;                                               \
            uint16_t *py = y + i;                                                     \
            Py_ssize_t m = n - i;                                                     \
            if (m <= 0) break;                                                        \
            if (m < NL) {                                                             \
                memset(tx, 0, sizeof tx);                                             \
                memcpy(tx, px, (size_t)m * 2);                                        \
                px = tx;                                                              \
                py = ty;                                                              \
            }                                                                         \
            V v = SUB(SUB(CVT_IN(LD(px)), h), l);                                     \
            v = fz ? FMADD(v, s, f) : ADD(MUL(v, s), f);                              \
            ST(py, CVT_OUT(v, _MM_FROUND_TO_NEAREST_INT));                            \
            if (m < NL) { memcpy(y + i, ty, (size_t)m * 2); break; }                  \
            i += NL;                                                                  \
        }                                                                             \
    }
#define FN_LD256(p) _mm256_loadu_si256((const __m256i *)(p))
#define FN_ST256(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define FN_LD128(p) _mm_loadu_si128((const __m128i *)(p))
#define FN_ST128(p, v) _mm_storeu_si128((__m128i *)(p), v)
__attribute__((target("avx512f,f16c,fma"))) static void
fn_apply_f16_x512(const uint16_t *x, uint16_t *y, Py_ssize_t n, float hi, float lo, float sc,
                  float sh, int fz)
FN_APPLY_F16_HW(__m512, _mm512_set1_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_add_ps,
                _mm512_fmadd_ps, _mm512_cvtph_ps, _mm512_cvtps_ph, FN_LD256, FN_ST256, 16)
__attribute__((target("avx2,f16c,fma"))) static void
fn_apply_f16_f16c(const uint16_t *x, uint16_t *y, Py_ssize_t n, float hi, float lo, float sc,
                  float sh, int fz)
FN_APPLY_F16_HW(__m256, _mm256_set1_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_add_ps,
                _mm256_fmadd_ps, _mm256_cvtph_ps, _mm256_cvtps_ph, FN_LD128, FN_ST128, 8)
#undef FN_APPLY_F16_HW
/* Channels-last float16 apply without activation from registers: nr rows
 * of W halves, column tiles of up to 4 x 16 (8) lanes whose coefficients
 * (hi, lo, scale, shift as float) stay in registers for all the rows; lanes
 * past the last full vector go through the scalar conversions, which give
 * the instructions' bits.  Same per-element operations as the buffer path
 * (apply_rows_buf). */
#define FN_CL16_TILE(K, V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST) \
    {                                                                          \
        V h_[K], l_[K], s_[K], f_[K];                                          \
        int k_;                                                                \
        for (k_ = 0; k_ < K; k_++) {                                           \
            h_[k_] = LOADU(hi + j0 + NL * k_);                                 \
            l_[k_] = LOADU(lo + j0 + NL * k_);                                 \
            s_[k_] = LOADU(sc + j0 + NL * k_);                                 \
            f_[k_] = LOADU(sf + j0 + NL * k_);                                 \
        }                                                                      \
        for (r = 0; r < nr; r++) {                                             \
            const uint16_t *p_ = x + r * W + j0;                               \
            uint16_t *q_ = y + r * W + j0;                                     \
            if (pf) {                                                          \
                FN_PREFETCH_LINES(p_ + nr * W, 2 * NL * K, 0);                 \
                FN_PREFETCH_LINES(q_ + nr * W, 2 * NL * K, 1);                 \
            }                                                                  \
            for (k_ = 0; k_ < K; k_++) {                                       \
                V v_ = SUB(SUB(CVT_IN(LD(p_ + NL * k_)), h_[k_]), l_[k_]);     \
                v_ = fz ? FMADD(v_, s_[k_], f_[k_]) : ADD(MUL(v_, s_[k_]), f_[k_]); \
                ST(q_ + NL * k_, CVT_OUT(v_, _MM_FROUND_TO_NEAREST_INT));      \
            }                                                                  \
        }                                                                      \
        j0 += NL * K;                                                          \
    }
#define FN_CL16_BODY(V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST)     \
    {                                                                          \
        Py_ssize_t r, j, j0 = 0;                                               \
        const int pf = W > 4 * NL;                                             \
        while (W - j0 >= 4 * NL)                                               \
            FN_CL16_TILE(4, V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST) \
        switch ((W - j0) / NL) {                                               \
        case 3: FN_CL16_TILE(3, V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST) break; \
        case 2: FN_CL16_TILE(2, V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST) break; \
        case 1: FN_CL16_TILE(1, V, NL, SET1, LOADU, SUB, MUL, ADD, FMADD, CVT_IN, CVT_OUT, LD, ST) break; \
        default: break;                                                        \
        }                                                                      \
        if (j0 < W)                                                            \
            for (r = 0; r < nr; r++)                                           \
                for (j = j0; j < W; j++) {                                     \
                    float v = (fn_h2f(x[r * W + j]) - hi[j]) - lo[j];          \
                    v = fz ? fmaf(v, sc[j], sf[j]) : v * sc[j] + sf[j];        \
                    y[r * W + j] = fn_f2h(v);                                  \
                }                                                              \
    }
__attribute__((target("avx512f,f16c,fma"))) static void
fn_apply_cl_f16_x512(const uint16_t *x, uint16_t *y, Py_ssize_t nr, Py_ssize_t W,
                     const float *hi, const float *lo, const float *sc, const float *sf, int fz)
FN_CL16_BODY(__m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_sub_ps, _mm512_mul_ps,
             _mm512_add_ps, _mm512_fmadd_ps, _mm512_cvtph_ps, _mm512_cvtps_ph, FN_LD256, FN_ST256)
__attribute__((target("avx2,f16c,fma"))) static void
fn_apply_cl_f16_f16c(const uint16_t *x, uint16_t *y, Py_ssize_t nr, Py_ssize_t W,
                     const float *hi, const float *lo, const float *sc, const float *sf, int fz)
FN_CL16_BODY(__m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_sub_ps, _mm256_mul_ps,
             _mm256_add_ps, _mm256_fmadd_ps, _mm256_cvtph_ps, _mm256_cvtps_ph, FN_LD128, FN_ST128)
#undef FN_CL16_BODY
#undef FN_CL16_TILE
/* float16 statistics of x[0, nv) (nv a multiple of 16) from registers: the
 * buffer path's double accumulators lane for lane (lanes 0-7 of a step in
 * a0/b0, 8-15 in a1/b1), written to acc[0..31] as a0, a1, b0, b1. */
#define FN_ACC_PD(A, B, D)                                                    \
    do {                                                                      \
        A = ADD(A, D);                                                        \
        B = fz ? FMADD(D, D, B) : ADD(MUL(D, D), B);                          \
    } while (0)
#define ADD _mm512_add_pd
#define MUL _mm512_mul_pd
#define FMADD _mm512_fmadd_pd
__attribute__((target("avx512f,f16c,fma"))) static void
fn_stats_f16_x512(const uint16_t *x, Py_ssize_t nv, double sh, double *acc, int fz)
{
    const __m512d shv = _mm512_set1_pd(sh);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    Py_ssize_t i;
    for (i = 0; i < nv; i += 16) {
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_cvtph_ps(FN_LD128(x + i))), shv);
        __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_cvtph_ps(FN_LD128(x + i + 8))), shv);
        FN_ACC_PD(a0, b0, d0);
        FN_ACC_PD(a1, b1, d1);
    }
    _mm512_storeu_pd(acc, a0);
    _mm512_storeu_pd(acc + 8, a1);
    _mm512_storeu_pd(acc + 16, b0);
    _mm512_storeu_pd(acc + 24, b1);
}
#undef ADD
#undef MUL
#undef FMADD
#define ADD _mm256_add_pd
#define MUL _mm256_mul_pd
#define FMADD _mm256_fmadd_pd
__attribute__((target("avx2,f16c,fma"))) static void
fn_stats_f16_f16c(const uint16_t *x, Py_ssize_t nv, double sh, double *acc, int fz)
{
    const __m256d shv = _mm256_set1_pd(sh);
    __m256d a0l = _mm256_setzero_pd(), a0h = a0l, a1l = a0l, a1h = a0l;
    __m256d b0l = a0l, b0h = a0l, b1l = a0l, b1h = a0l;
    Py_ssize_t i;
    for (i = 0; i < nv; i += 16) {
        __m256 f0 = _mm256_cvtph_ps(FN_LD128(x + i));
        __m256 f1 = _mm256_cvtph_ps(FN_LD128(x + i + 8));
        __m256d d;
        d = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f0)), shv); FN_ACC_PD(a0l, b0l, d);
        d = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)), shv); FN_ACC_PD(a0h, b0h, d);
        d = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f1)), shv); FN_ACC_PD(a1l, b1l, d);
        d = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1)), shv); FN_ACC_PD(a1h, b1h, d);
    }
    _mm256_storeu_pd(acc, a0l);      _mm256_storeu_pd(acc + 4, a0h);
    _mm256_storeu_pd(acc + 8, a1l);  _mm256_storeu_pd(acc + 12, a1h);
    _mm256_storeu_pd(acc + 16, b0l); _mm256_storeu_pd(acc + 20, b0h);
    _mm256_storeu_pd(acc + 24, b1l); _mm256_storeu_pd(acc + 28, b1h);
}
#undef ADD
#undef MUL
#undef FMADD
#undef FN_ACC_PD
#else
#define FN_HAVE_F16C 0
#endif

/* Pick the float16 conversion: want < 0 means the best the CPU has, else at
 * most level `want` (0 forces software; used by the tests).  Returns the level
 * in use.  Called while no kernel runs (module import, tests). */
static int fn_half_select(int want)
{
    int best = 0;
#if FN_HAVE_F16C
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) best = 1;
    if (best && __builtin_cpu_supports("avx512f")) best = 2;
    /* the register kernels are compiled with FMA enabled */
    fn_half_fma = __builtin_cpu_supports("fma") ? 1 : 0;
#endif
    fn_half_level = (want < 0 || want > best) ? best : want;
    return fn_half_level;
}

static inline void fn_widen_f16(const uint16_t *src, float *dst, Py_ssize_t n)
{
#if FN_HAVE_F16C
    if (fn_half_level == 2) { fn_widen_f16_x512(src, dst, n); return; }
    if (fn_half_level == 1) { fn_widen_f16_f16c(src, dst, n); return; }
#endif
    fn_widen_f16_sw(src, dst, n);
}
static inline void fn_narrow_f16(const float *src, uint16_t *dst, Py_ssize_t n)
{
#if FN_HAVE_F16C
    if (fn_half_level == 2) { fn_narrow_f16_x512(src, dst, n); return; }
    if (fn_half_level == 1) { fn_narrow_f16_f16c(src, dst, n); return; }
#endif
    fn_narrow_f16_sw(src, dst, n);
}
/* 1 when the hardware float16 statistics ran (F16C present) */
static inline int fn_stats_f16_hw(const uint16_t *x, Py_ssize_t nv, double sh, double *acc, int fz)
{
#if FN_HAVE_F16C
    if (!fn_half_fma) return 0;
    if (fn_half_level == 2) { fn_stats_f16_x512(x, nv, sh, acc, fz); return 1; }
    if (fn_half_level == 1) { fn_stats_f16_f16c(x, nv, sh, acc, fz); return 1; }
#endif
    (void)x; (void)nv; (void)sh; (void)acc; (void)fz;
    return 0;
}
/* 1 when the hardware channels-last float16 apply ran (rows in groups of
 * about 8 KiB of input, so a group's column tiles walk an L1-sized piece) */
static inline int fn_apply_cl_f16_hw(const uint16_t *x, uint16_t *y, Py_ssize_t nr,
                                     Py_ssize_t W, const float *coef, Py_ssize_t cw, int fz)
{
#if FN_HAVE_F16C
    Py_ssize_t g, r0, cnt;
    if (!fn_half_fma || fn_half_level == 0) return 0;
    g = W > 0 ? FN_CL_APPLY_BYTES / (2 * W) : nr;
    if (g < 1) g = 1;
    for (r0 = 0; r0 < nr; r0 += cnt) {
        cnt = nr - r0 < g ? nr - r0 : g;
        if (fn_half_level == 2)
            fn_apply_cl_f16_x512(x + r0 * W, y + r0 * W, cnt, W, coef, coef + cw, coef + 2 * cw,
                                 coef + 3 * cw, fz);
        else
            fn_apply_cl_f16_f16c(x + r0 * W, y + r0 * W, cnt, W, coef, coef + cw, coef + 2 * cw,
                                 coef + 3 * cw, fz);
    }
    return 1;
#else
    (void)x; (void)y; (void)nr; (void)W; (void)coef; (void)cw; (void)fz;
    return 0;
#endif
}
/* Channels-last float16 statistics from registers (AVX-512F): add nv rows
 * of W halves to the shifted lane sums s1, s2 (shifts sh), column tiles of up
 * to 64 lanes held in registers, the lanes past the last 16 in scalar form.
 * Each lane adds its rows in order with the buffer path's operations, so the
 * same bits.  pf: also prefetch each tile's lines of the next block. */
#define FN_CL16S_TILE(K)                                                        \
    {                                                                           \
        __m512d h_[2 * K], a_[2 * K], b_[2 * K];                                \
        int k_;                                                                 \
        for (k_ = 0; k_ < 2 * K; k_++) {                                        \
            h_[k_] = _mm512_loadu_pd(sh + j0 + 8 * k_);                         \
            a_[k_] = _mm512_loadu_pd(s1 + j0 + 8 * k_);                         \
            b_[k_] = _mm512_loadu_pd(s2 + j0 + 8 * k_);                         \
        }                                                                       \
        for (r = 0; r < nv; r++) {                                              \
            const uint16_t *p_ = x + r * W + j0;                                \
            if (pf)                                                             \
                FN_PREFETCH_LINES(p_ + nv * W, 32 * K, 0);                      \
            for (k_ = 0; k_ < 2 * K; k_++) {                                    \
                __m512d d_ = _mm512_sub_pd(                                     \
                    _mm512_cvtps_pd(_mm256_cvtph_ps(FN_LD128(p_ + 8 * k_))), h_[k_]); \
                a_[k_] = _mm512_add_pd(a_[k_], d_);                             \
                b_[k_] = fz ? _mm512_fmadd_pd(d_, d_, b_[k_])                   \
                            : _mm512_add_pd(_mm512_mul_pd(d_, d_), b_[k_]);     \
            }                                                                   \
        }                                                                       \
        for (k_ = 0; k_ < 2 * K; k_++) {                                        \
            _mm512_storeu_pd(s1 + j0 + 8 * k_, a_[k_]);                         \
            _mm512_storeu_pd(s2 + j0 + 8 * k_, b_[k_]);                         \
        }                                                                       \
        j0 += 16 * K;                                                           \
    }
#if FN_HAVE_F16C
__attribute__((target("avx512f,f16c,fma"))) static void
fn_block_cl_f16_x512(const uint16_t *x, Py_ssize_t nv, Py_ssize_t W, const double *sh,
                     double *s1, double *s2, int pf, int fz)
{
    Py_ssize_t r, j, j0 = 0;
    while (W - j0 >= 64) FN_CL16S_TILE(4)
    switch ((W - j0) / 16) {
    case 3: FN_CL16S_TILE(3) break;
    case 2: FN_CL16S_TILE(2) break;
    case 1: FN_CL16S_TILE(1) break;
    default: break;
    }
    if (j0 < W)
        for (r = 0; r < nv; r++)
            for (j = j0; j < W; j++) {
                double d = (double)fn_h2f(x[r * W + j]) - sh[j];
                s1[j] += d;
                s2[j] = fz ? fma(d, d, s2[j]) : d * d + s2[j];
            }
}
#endif
#undef FN_CL16S_TILE
/* 1 when the hardware channels-last float16 statistics ran */
static inline int fn_block_cl_f16_hw(const uint16_t *x, Py_ssize_t nv, Py_ssize_t W,
                                     const double *sh, double *s1, double *s2, int pf, int fz)
{
#if FN_HAVE_F16C
    if (fn_half_fma && fn_half_level == 2) {
        fn_block_cl_f16_x512(x, nv, W, sh, s1, s2, pf, fz);
        return 1;
    }
#endif
    (void)x; (void)nv; (void)W; (void)sh; (void)s1; (void)s2; (void)pf; (void)fz;
    return 0;
}
/* 1 when the hardware float16 apply ran (no activation, F16C present) */
static inline int fn_apply_f16_hw(const uint16_t *x, uint16_t *y, Py_ssize_t n, float hi,
                                  float lo, float sc, float sh, int fz)
{
#if FN_HAVE_F16C
    if (!fn_half_fma) return 0;
    if (fn_half_level == 2) { fn_apply_f16_x512(x, y, n, hi, lo, sc, sh, fz); return 1; }
    if (fn_half_level == 1) { fn_apply_f16_f16c(x, y, n, hi, lo, sc, sh, fz); return 1; }
#endif
    (void)x; (void)y; (void)n; (void)hi; (void)lo; (void)sc; (void)sh; (void)fz;
    return 0;
}

/* ---- instantiate the typed kernels ------------------------------------ */
/* float32 is applied in double and rounded once: the output is the float64
 * formula correctly rounded, and no intermediate can overflow or go subnormal. */
#define FN_T float
#define FN_W double
#define FN_W_DOUBLE 1
#define FN_SUF f32
#define FN_LOAD(v) (v)
#define FN_STORE(v) (v)
#define FN_EXP fn_expf
#define FN_SIGMOID(v) (double)fn_sigmoidf((float)(v), fn_fz)
#define FN_SILU_IN_FLOAT 1
#define FN_APPLY_V16_F32 1
#define FN_CL_TILES fn_apply_cl_tiles_f32
#include "fn_kernels_tmpl.h"

#define FN_T double
#define FN_W double
#define FN_W_DOUBLE 1
#define FN_SUF f64
#define FN_LOAD(v) (v)
#define FN_STORE(v) (v)
#define FN_EXP exp
#define FN_SIGMOID(v) fn_sigmoidd(v)
#define FN_CL_TILES fn_apply_cl_tiles_f64
#include "fn_kernels_tmpl.h"

#define FN_T uint16_t
#define FN_W float
#define FN_SUF f16
#define FN_IS16 1
#define FN_BUF16 1
#define FN_APPLY_HW fn_apply_f16_hw
#define FN_STATS_HW fn_stats_f16_hw
#define FN_APPLY_CL_HW fn_apply_cl_f16_hw
#define FN_STATS_CL_HW fn_block_cl_f16_hw
#define FN_WIDEN fn_widen_f16
#define FN_LOAD16F fn_h2f_v16
#define FN_NARROW fn_narrow_f16
#define FN_LOAD(v) fn_h2f(v)
#define FN_STORE(v) fn_f2h(v)
#define FN_EXP fn_expf
#define FN_SIGMOID(v) fn_sigmoidf(v, fn_fz)
#include "fn_kernels_tmpl.h"

#define FN_T uint16_t
#define FN_W float
#define FN_SUF bf16
#define FN_IS16 1
#define FN_WIDEN fn_widen_bf16
#define FN_LOAD16F fn_b2f_v16
#define FN_NARROW fn_narrow_bf16
#define FN_LOAD(v) fn_b2f(v)
#define FN_STORE(v) fn_f2b(v)
#define FN_EXP fn_expf
#define FN_SIGMOID(v) fn_sigmoidf(v, fn_fz)
#include "fn_kernels_tmpl.h"

/* ---- streaming (non-temporal) output stores ---------------------------- */
/* A channels-first output larger than the last-level cache is written with
 * non-temporal stores: a normal store first reads the line it writes
 * (read-for-ownership), so once the data stream from DRAM a normalize costs
 * read + read + write + write-back.  Measured on the 2-core VM (C
 * micro-benchmark, 1 thread): with 64 MiB arrays a loop copy with normal
 * stores ran at 19.6 GB/s, with streaming stores 28.5 GB/s, glibc memcpy
 * 16.7 GB/s (its own non-temporal threshold follows the 480 MiB L3 the VM
 * reports, not the ~64 MiB it can use); up to 32 MiB arrays all three run at
 * ~29.5 GB/s.  float64 S6 (64 MiB) channels first: 0.45 -> 0.88 of the better
 * copy at 2 threads, 0.39 -> 0.83 at 1.  Channels last does not use these
 * kernels (a row-by-row version measured 0.62 -> 0.30 on S6: rows of 32-64
 * channels are too short for its per-row alignment work); its tile kernels
 * stream whole rows of up to 64 lanes instead (fn_stream8d_f32/_f64).
 * The kernels are the float32/float64 applies without activation, fused
 * multiply-add only (the unfused twin keeps normal stores): per element the
 * same operations as the vector kernels, ((double)x - hi) * sc + sh with one
 * rounding of the fma, then one to the storage type, so the bits are those of
 * every other plan.  Lanes before the first aligned output line and after the
 * last full vector use scalar code; each call ends with sfence, so the stores
 * are visible before the caller's barrier. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FN_NO_STREAM)
#define FN_HAVE_STREAM 1
#include <immintrin.h>
#define FN_STREAM_RUN(NAME, TGT, T, VD, SET1, STEP, ALIGN, BODY)                 \
    __attribute__((target(TGT))) static void NAME(const T *x, T *y, Py_ssize_t n, \
                                                  double hi, double sc, double sh) \
    {                                                                            \
        Py_ssize_t j;                                                            \
        const VD h = SET1(hi), s = SET1(sc), f = SET1(sh);                       \
        for (j = 0; j < n && ((uintptr_t)(y + j) & (ALIGN - 1)); j++)            \
            y[j] = (T)__builtin_fma((double)x[j] - hi, sc, sh);                  \
        for (; j + STEP <= n; j += STEP) {                                       \
            BODY                                                                 \
        }                                                                        \
        for (; j < n; j++)                                                       \
            y[j] = (T)__builtin_fma((double)x[j] - hi, sc, sh);                  \
        _mm_sfence();                                                            \
    }
FN_STREAM_RUN(fn_stream_f64_512, "avx512f,fma", double, __m512d, _mm512_set1_pd, 8, 64,
    _mm512_stream_pd(y + j, _mm512_fmadd_pd(_mm512_sub_pd(_mm512_loadu_pd(x + j), h), s, f));)
FN_STREAM_RUN(fn_stream_f64_256, "avx2,fma", double, __m256d, _mm256_set1_pd, 4, 32,
    _mm256_stream_pd(y + j, _mm256_fmadd_pd(_mm256_sub_pd(_mm256_loadu_pd(x + j), h), s, f));)
FN_STREAM_RUN(fn_stream_f32_512, "avx512f,fma", float, __m512d, _mm512_set1_pd, 16, 64,
    __m256 lo = _mm512_cvtpd_ps(_mm512_fmadd_pd(
        _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j)), h), s, f));
    __m256 up = _mm512_cvtpd_ps(_mm512_fmadd_pd(
        _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j + 8)), h), s, f));
    _mm512_stream_ps(y + j, _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(up), 1)));)
FN_STREAM_RUN(fn_stream_f32_256, "avx2,fma", float, __m256d, _mm256_set1_pd, 8, 32,
    __m128 lo = _mm256_cvtpd_ps(_mm256_fmadd_pd(
        _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + j)), h), s, f));
    __m128 up = _mm256_cvtpd_ps(_mm256_fmadd_pd(
        _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + j + 4)), h), s, f));
    _mm256_stream_ps(y + j, _mm256_set_m128(up, lo));)
#undef FN_STREAM_RUN
#endif

/* 2: AVX-512F streaming kernels, 1: AVX2, 0: none here (normal stores).  Only
 * with fused multiply-add, whose bits the streaming kernels reproduce.
 * fn_stream_cap lowers the level for tests (the AVX2 kernels on this CPU). */
static int fn_stream_cap = 2;
static inline int fn_stream_level(void)
{
#ifdef FN_HAVE_STREAM
    int lvl = 0;
    if (!fn_fused_now()) return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma")) return 0;
    if (__builtin_cpu_supports("avx2")) lvl = 1;
    if (__builtin_cpu_supports("avx512f")) lvl = 2;
    return lvl < fn_stream_cap ? lvl : fn_stream_cap;
#else
    return 0;
#endif
}

/* y = (x - hi) * sc + sh over a run of n, streaming; dt 1: float32, 2: float64
 * (the engine's codes); lvl from fn_stream_level() > 0. */
static void fn_stream_apply(int lvl, int dt, const void *x, void *y, Py_ssize_t n, double hi,
                            double sc, double sh)
{
#ifdef FN_HAVE_STREAM
    if (dt == 1 && lvl == 2) fn_stream_f32_512((const float *)x, (float *)y, n, hi, sc, sh);
    else if (dt == 1) fn_stream_f32_256((const float *)x, (float *)y, n, hi, sc, sh);
    else if (lvl == 2) fn_stream_f64_512((const double *)x, (double *)y, n, hi, sc, sh);
    else fn_stream_f64_256((const double *)x, (double *)y, n, hi, sc, sh);
#else
    (void)lvl; (void)dt; (void)x; (void)y; (void)n; (void)hi; (void)sc; (void)sh;
#endif
}

/* ---- benchmark helper: the bandwidth ceiling --------------------------- */
/* glibc memcpy over 64 KiB pieces, or with stream (a copy larger than the
 * kernels' streaming threshold) a vector loop with non-temporal stores: the
 * faster copy in each regime on the VM measured above, so the ceiling is not
 * a copy that the kernels' own store policy beats. */
#ifdef FN_HAVE_STREAM
__attribute__((target("avx2"))) static void fn_copy_stream(const char *s, char *d, Py_ssize_t n)
{
    Py_ssize_t i = 0, a = (Py_ssize_t)((32 - ((uintptr_t)d & 31)) & 31);
    if (a > n) a = n;
    memcpy(d, s, (size_t)a);
    for (i = a; i + 64 <= n; i += 64) {
        _mm256_stream_si256((__m256i *)(d + i), _mm256_loadu_si256((const __m256i *)(s + i)));
        _mm256_stream_si256((__m256i *)(d + i + 32), _mm256_loadu_si256((const __m256i *)(s + i + 32)));
    }
    memcpy(d + i, s + i, (size_t)(n - i));
    _mm_sfence();
}
#endif
static void fn_parallel_copy(const char *src, char *dst, Py_ssize_t nbytes, int nthreads, int stream)
{
    Py_ssize_t chunk = 1 << 16;
    Py_ssize_t nchunks = (nbytes + chunk - 1) / chunk;
    Py_ssize_t i;
#ifdef FN_HAVE_STREAM
    stream = stream && fn_stream_level() > 0;
#else
    stream = 0;
#endif
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (i = 0; i < nchunks; i++) {
        Py_ssize_t off = i * chunk;
        Py_ssize_t len = nbytes - off < chunk ? nbytes - off : chunk;
#ifdef FN_HAVE_STREAM
        if (stream) { fn_copy_stream(src + off, dst + off, len); continue; }
#endif
        memcpy(dst + off, src + off, (size_t)len);
    }
    (void)nthreads;
}

static const char *fn_build_isa(void) { return FN_MV_NAME; }
static const char *fn_half_impl(void)
{
    if (fn_half_level == 2) return "F16C hardware conversion, 16 lanes (AVX-512F), bit-identical to the software path";
    if (fn_half_level == 1) return "F16C hardware conversion, 8 lanes (AVX2), bit-identical to the software path";
    return FN_HALF_IMPL;
}
static int fn_have_openmp(void) { return FN_HAVE_OPENMP; }

#endif /* FN_KERNELS_H */
