/*
 * fastnorm's kernels for one target.  setup.py compiles this file once per
 * target with that target's flags and -DFN_TARGET=<suffix> (and -DFN_FUSED=0
 * for the unfused baseline); each object exports one table,
 * fn_target_<suffix>, and fn_dispatch.c picks one table at import.
 *
 * The kernels are written once, per storage type (fn_kernels_dtype.h, included
 * below four times), against the vector layer of fn_simd.h.  Whatever the
 * vector width, every element sees the same operations in the same order
 * (fn_base.h, "Numerics"), so every target gives the same bits.
 */
#include "fn_base.h"
#include "fn_half.h"
#include "fn_simd.h"

#ifndef FN_TARGET
#define FN_TARGET generic
#endif
#define FN_CAT2(a, b) a##_##b
#define FN_CAT(a, b) FN_CAT2(a, b)
#define FN_STR2(a) #a
#define FN_STR(a) FN_STR2(a)
#ifndef FN_LEVEL_NAME
#define FN_LEVEL_NAME FN_STR(FN_TARGET)
#endif

#if defined(__clang__)
#define FN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FN_IVDEP _Pragma("GCC ivdep")
#else
#define FN_IVDEP
#endif

/* Prefetch the lines of [p, p + nbytes): the channels-last tile loops walk a
 * block tile by tile, touching a few lines of every row, a pattern the
 * hardware prefetchers follow poorly from memory; each row therefore asks
 * for its lines of the next block. */
FN_INLINE void fn_prefetch_lines(const void *p, fn_ssize nbytes, int write)
{
    fn_ssize o;
    for (o = 0; o < nbytes; o += 64) {
        if (write) FN_PREFETCH((const char *)p + o, 1);
        else FN_PREFETCH((const char *)p + o, 0);
    }
}

/* silu(v) = v / (1 + exp(-v)) in double, branch-free so the apply loops stay
 * vectorized.  exp: Cody-Waite reduction by ln 2 (n = round(x / ln 2) read
 * from the low bits of x / ln 2 + 1.5 * 2^52, so no float -> int64
 * conversion, which AVX2 lacks), a degree-9 Taylor polynomial on
 * |r| <= ln 2 / 2 (relative error < 1e-11), 2^n built from its bits; the
 * argument is clamped to [-708, 709] and the result set to +inf above
 * 709.78 and 0 below -745.2.  float32 and 16-bit results, rounded once from
 * this double, are within 1 ulp of the exact silu (float exp and sigmoid
 * were 2.2 ulp off); float64 uses libm's exp (fn_silu_libm).  The limits are
 * exact: silu(-inf) = -0, silu(+inf) = +inf, silu(NaN) = that NaN (one NaN
 * operand only, so its sign cannot depend on the operand order a given
 * vector width compiles to). */
FN_INLINE double fn_u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}
FN_INLINE uint64_t fn_d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
FN_INLINE double fn_exp_d(double x)
{
    const double big = 6755399441055744.0; /* 1.5 * 2^52 */
    double xc = x == x ? x : 0.0, t, n, r, p;
    xc = xc < -708.0 ? -708.0 : xc;
    xc = xc > 709.0 ? 709.0 : xc;
    t = FN_FMA(xc, 1.4426950408889634, big);
    n = t - big;
    r = FN_FMA(n, -6.93147180369123816490e-01, xc);
    r = FN_FMA(n, -1.90821492927058770002e-10, r);
    p = 2.7557319223985893e-06;
    p = FN_FMA(p, r, 2.4801587301587302e-05);
    p = FN_FMA(p, r, 1.9841269841269841e-04);
    p = FN_FMA(p, r, 1.3888888888888889e-03);
    p = FN_FMA(p, r, 8.3333333333333333e-03);
    p = FN_FMA(p, r, 4.1666666666666667e-02);
    p = FN_FMA(p, r, 1.6666666666666667e-01);
    p = FN_FMA(p, r, 0.5);
    p = FN_FMA(p, r, 1.0);
    p = FN_FMA(p, r, 1.0);
    p = p * fn_u2d((fn_d2u(t) + 1023u) << 52); /* 2^n: n in [-1022, 1023] */
    p = x > 709.782712893384 ? (double)INFINITY : p;
    p = x < -745.2 ? 0.0 : p;
    return p;
}
FN_INLINE double fn_silu_d(double v)
{
    double q = v / (1.0 + fn_exp_d(-v));
    q = v < -745.2 ? -0.0 : q; /* v / inf: -0, also for -inf */
    return v == v ? q : v;
}
FN_INLINE double fn_silu_libm(double v)
{
    double q = v / (1.0 + exp(-v));
    q = v < -745.2 ? -0.0 : q;
    return v == v ? q : v;
}

/* relu's zero arm is read from a value the compiler cannot see: with the
 * constant 0 GCC turns the select into a NaN-honouring max that it leaves
 * scalar in the float32 loops, and v * 0 + 0 would give NaN for -inf */
static volatile double fn_relu_zero = 0.0;

/* Run LOOP(ACT) with the activation statement for act; v is the working
 * value (type W), slope leaky_relu's negative slope, SILU(v) silu in W. */
#define FN_ACT_SWITCH(W, SILU, LOOP)                                  \
    switch (act) {                                                    \
    case FN_ACT_RELU: {                                               \
        const W zr = (W)fn_relu_zero;                                 \
        LOOP(v = v < (W)0 ? zr : v);                                  \
        break;                                                        \
    }                                                                 \
    case FN_ACT_LEAKY: LOOP(v = v >= (W)0 ? v : v * (W)slope); break; \
    case FN_ACT_SILU: LOOP(v = SILU(v)); break;                       \
    default: LOOP((void)0); break;                                    \
    }
#define FN_SILU_F(v) ((float)fn_silu_d((double)(v)))

/* Calls CALL(K) with K a compile-time constant 1 .. FN_TILE_V - 1 equal to kk
 * (the vector count of a channels-last remainder tile). */
#if FN_TILE_V > 4
#define FN_TILE_REM(kk, CALL) \
    switch (kk) {             \
    case 1: CALL(1); break;   \
    case 2: CALL(2); break;   \
    case 3: CALL(3); break;   \
    case 4: CALL(4); break;   \
    case 5: CALL(5); break;   \
    case 6: CALL(6); break;   \
    case 7: CALL(7); break;   \
    default: break;           \
    }
#else
#define FN_TILE_REM(kk, CALL) \
    switch (kk) {             \
    case 1: CALL(1); break;   \
    case 2: CALL(2); break;   \
    case 3: CALL(3); break;   \
    default: break;           \
    }
#endif
#if FN_TILE_VS > 2
#define FN_TILE_REM_S(kk, CALL) \
    switch (kk) {               \
    case 1: CALL(1); break;     \
    case 2: CALL(2); break;     \
    case 3: CALL(3); break;     \
    default: break;             \
    }
#else
#define FN_TILE_REM_S(kk, CALL) \
    if ((kk) == 1) CALL(1);
#endif

#define FN_TILE_LANES (FN_TILE_V * FN_VL)

/* The statistics' FN_LANES logical lanes as FN_NV vectors of shifted sums
 * (a: of d, b: of d * d); lane j of the block gets elements i % FN_LANES == j,
 * each added in order, whatever the vector width. */
#define FN_NV (FN_LANES / FN_VL)
typedef struct { fn_vd a[FN_NV], b[FN_NV]; } fn_lanes;
FN_INLINE void fn_lanes_zero(fn_lanes *l)
{
    int k;
    for (k = 0; k < FN_NV; k++) {
        l->a[k] = vd_set1(0.0);
        l->b[k] = l->a[k];
    }
}
FN_INLINE void fn_lanes_add(fn_lanes *l, int k, fn_vd d)
{
    l->a[k] = vd_add(l->a[k], d);
    l->b[k] = vd_fma(d, d, l->b[k]);
}
/* the triple of n elements shifted by sh: the lanes reduced in the one fixed
 * order (fn_lanes_sum), plus the scalar tail's sums t1, t2 */
FN_INLINE void fn_lanes_finish(const fn_lanes *l, double n, double sh, double t1, double t2, fn_triple *t)
{
    double s1[FN_LANES], s2[FN_LANES];
    int k;
    for (k = 0; k < FN_NV; k++) {
        vd_store(s1 + k * FN_VL, l->a[k]);
        vd_store(s2 + k * FN_VL, l->b[k]);
    }
    fn_finish(t, n, sh, fn_lanes_sum(s1) + t1, fn_lanes_sum(s2) + t2);
}

/* ---- the four storage types ------------------------------------------ */
#define FN_T float
#define FN_F32 1
#define FN_SUF f32
#define FN_LDV vd_load_f32
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#include "fn_kernels_dtype.h"

#define FN_T double
#define FN_SUF f64
#define FN_LDV vd_load
#define FN_LDS(p) (*(p))
#define FN_WD 1
#include "fn_kernels_dtype.h"

#define FN_T uint16_t
#define FN_SUF f16
#define FN_LDV vd_load_f16
#define FN_LDS(p) ((double)fn_h2f(*(p)))
#define FN_LDH vs_load_f16
#define FN_STH vs_store_f16
#define FN_H2F fn_h2f
#define FN_F2H fn_f2h
#define FN_WD 0
#include "fn_kernels_dtype.h"

#define FN_T uint16_t
#define FN_SUF bf16
#define FN_LDV vd_load_bf16
#define FN_LDS(p) ((double)fn_b2f(*(p)))
#define FN_LDH vs_load_bf16
#define FN_STH vs_store_bf16
#define FN_H2F fn_b2f
#define FN_F2H fn_f2b
#define FN_WD 0
#include "fn_kernels_dtype.h"

/* ---- bulk float16 conversion (tests, and the engine's hooks) --------- */
static void widen_f16(const uint16_t *src, float *dst, fn_ssize n)
{
    fn_ssize i = 0;
    for (; i + FN_FL <= n; i += FN_FL) vs_store(dst + i, vs_load_f16(src + i));
    for (; i < n; i++) dst[i] = fn_h2f(src[i]);
}
static void narrow_f16(const float *src, uint16_t *dst, fn_ssize n)
{
    fn_ssize i = 0;
    for (; i + FN_FL <= n; i += FN_FL) vs_store_f16(dst + i, vs_load(src + i));
    for (; i < n; i++) dst[i] = fn_f2h(src[i]);
}

/* ---- the bandwidth ceiling of the bench: a copy ------------------------ */
/* memcpy, or with stream a loop of the target's non-temporal stores (the
 * kernels' own store policy past the caches, so the ceiling is never a copy
 * that the kernels beat by storing differently). */
static void copy_run(const char *s, char *d, fn_ssize n, int stream)
{
#if FN_HAVE_STREAM
    if (stream) {
        fn_ssize i, a = (fn_ssize)((FN_STREAM_ALIGN - ((uintptr_t)d & (FN_STREAM_ALIGN - 1))) &
                                   (FN_STREAM_ALIGN - 1));
        if (a > n) a = n;
        memcpy(d, s, (size_t)a);
        for (i = a; i + 8 * FN_VL <= n; i += 8 * FN_VL) {
            vd_stream((double *)(void *)(d + i), vd_load((const double *)(const void *)(s + i)));
        }
        memcpy(d + i, s + i, (size_t)(n - i));
        fn_sfence();
        return;
    }
#endif
    (void)stream;
    memcpy(d, s, (size_t)n);
}

#define FN_KSET(SUF)                                                    \
    {FN_CAT(stats, SUF),    FN_CAT(apply, SUF),    FN_CAT(planes, SUF), \
     FN_CAT(stats_cl, SUF), FN_CAT(apply_cl, SUF), FN_CAT(stats_apply, SUF)}

FN_BWD_TABLE;

const fn_target FN_CAT(fn_target, FN_TARGET) = {
    FN_LEVEL_NAME,                                             /* level */
    FN_SIMD_NAME,                                              /* vector */
    FN_FUSED,                                                  /* fused */
    FN_HALF_HW,                                                /* half_hw */
    FN_HAVE_STREAM,                                            /* stream */
    {FN_KSET(f16), FN_KSET(f32), FN_KSET(f64), FN_KSET(bf16)}, /* k, by storage code */
    widen_f16,                                                 /* widen_f16 */
    narrow_f16,                                                /* narrow_f16 */
    copy_run,                                                  /* copy */
    fn_bwd_table,                                              /* bwd */
};
