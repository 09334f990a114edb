/*
 * fastnorm's kernels for one target.  setup.py compiles this file once per
 * target with that target's flags and -DFN_TARGET=<suffix> (and -DFN_FUSED=0
 * for the unfused baseline); each object exports one table,
 * fn_target_<suffix>, and fn_dispatch.c picks one table at import.
 *
 * The kernels are written once against the vector layer of fn_simd.h: the
 * statistics per input kind (fn_kernels_stats.h), the apply per (input,
 * output) pair (fn_kernels_dtype.h) for the pairs read directly, and every
 * other pair through an L1 buffer of the values its output type loads.  Whatever the
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

/* ---- statistics, one set per input kind --------------------------------- */
/* The kinds: every storage type read exactly (what statistics alone and
 * float64 outputs load; 64-bit integers round once to double), and the *f
 * kinds, rounded to float first, of the types float does not hold exactly
 * (what float32 and 16-bit outputs load). */
#define FN_TI float
#define FNS_SUF f32
#define FN_LDV vd_load_f32
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI double
#define FNS_SUF f64
#define FN_LDV vd_load
#define FN_LDS(p) (*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint16_t
#define FNS_SUF f16
#define FN_LDV vd_load_f16
#define FN_LDS(p) ((double)fn_h2f(*(p)))
#include "fn_kernels_stats.h"

#define FN_TI uint16_t
#define FNS_SUF bf16
#define FN_LDV vd_load_bf16
#define FN_LDS(p) ((double)fn_b2f(*(p)))
#include "fn_kernels_stats.h"

#define FN_TI uint8_t
#define FNS_SUF u8
#define FN_LDV vd_load_u8
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int8_t
#define FNS_SUF i8
#define FN_LDV vd_load_i8
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint16_t
#define FNS_SUF u16
#define FN_LDV vd_load_u16
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int16_t
#define FNS_SUF i16
#define FN_LDV vd_load_i16
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint32_t
#define FNS_SUF u32
#define FN_LDV vd_load_u32
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int32_t
#define FNS_SUF i32
#define FN_LDV vd_load_i32
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint64_t
#define FNS_SUF u64
#define FN_LDV vd_load_u64
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int64_t
#define FNS_SUF i64
#define FN_LDV vd_load_i64
#define FN_LDS(p) ((double)*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint32_t
#define FNS_SUF u32f
#define FN_LDV vd_load_u32f
#define FN_LDS(p) ((double)(float)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int32_t
#define FNS_SUF i32f
#define FN_LDV vd_load_i32f
#define FN_LDS(p) ((double)(float)*(p))
#include "fn_kernels_stats.h"

#define FN_TI uint64_t
#define FNS_SUF u64f
#define FN_LDV vd_load_u64f
#define FN_LDS(p) ((double)(float)*(p))
#include "fn_kernels_stats.h"

#define FN_TI int64_t
#define FNS_SUF i64f
#define FN_LDV vd_load_i64f
#define FN_LDS(p) ((double)(float)*(p))
#include "fn_kernels_stats.h"

#define FN_TI double
#define FNS_SUF f64f
#define FN_LDV vd_load_f64f
#define FN_LDS(p) ((double)(float)*(p))
#include "fn_kernels_stats.h"

/* ---- statistics of 8/16-bit integers, in integers ----------------------- */
/* Their shifted sums are exact integers in double whatever the order: |d| <
 * 2^16, and a block (FN_BLOCK elements) or a channels-last chunk (at most
 * 2^16 rows per lane, below) keeps S2 < 2^53.  So integer sums, which the
 * compiler vectorizes with no order to keep, give the lanes' bits through
 * fn_finish, and read several times faster than the double lanes. */
#define FN_STATS_EXACT(IN, T, ACC2)                                               \
    static void FN_CAT(stats_exact, IN)(const void *xv, fn_ssize n, fn_triple *t) \
    {                                                                             \
        const T *x = (const T *)xv;                                               \
        const int32_t sh = n > 0 ? (int32_t)x[0] : 0;                             \
        int32_t s1 = 0;                                                           \
        ACC2 s2 = 0;                                                              \
        fn_ssize i;                                                               \
        for (i = 0; i < n; i++) {                                                 \
            const int32_t d = (int32_t)x[i] - sh;                                 \
            s1 += d;                                                              \
            s2 += (ACC2)((uint32_t)d * (uint32_t)d); /* d^2 < 2^32 */             \
        }                                                                         \
        fn_finish(t, (double)n, (double)sh, (double)s1, (double)s2);              \
    }
/* 8-bit: d^2 < 2^16, so a block's S2 < 2^30 fits int32; 16-bit: d^2 < 2^32 (uint32), S2 in uint64 */
FN_STATS_EXACT(u8, uint8_t, int32_t)
FN_STATS_EXACT(i8, int8_t, int32_t)
FN_STATS_EXACT(u16, uint16_t, uint64_t)
FN_STATS_EXACT(i16, int16_t, uint64_t)

/* Channels-last, 8-bit: int32 lane sums over the virtual rows of W = C * m
 * lanes (3 * W doubles of scratch hold 3 * W int32) in tiles of 16 lanes
 * whose sums stay in registers over a block of R rows (GCC / clang vector
 * extensions: one AVX-512 register, two AVX2, four SSE2 or NEON: fn_simd.h's
 * vi16_load_*), the m
 * lanes of a channel then summed in int64.  A lane sums at most 2^15 rows
 * (S2 < 2^31); a longer chunk takes the double lanes (the engine's chunks
 * have about 2^16 / W). */
#if defined(FN_HAVE_VI)
#define FN_CL_TILE(T, LOAD)                                 \
    for (; j0 + 16 <= W; j0 += 16) {                        \
        fn_vi s[FN_VIN], va[FN_VIN], vb[FN_VIN], d[FN_VIN]; \
        int q;                                              \
        memcpy(s, sh + j0, 64);                             \
        memcpy(va, a + j0, 64);                             \
        memcpy(vb, b + j0, 64);                             \
        for (r = 0; r < nv; r++) {                          \
            LOAD(d, p + r * W + j0);                        \
            for (q = 0; q < FN_VIN; q++) {                  \
                d[q] -= s[q];                               \
                va[q] += d[q];                              \
                vb[q] += d[q] * d[q];                       \
            }                                               \
        }                                                   \
        memcpy(a + j0, va, 64);                             \
        memcpy(b + j0, vb, 64);                             \
    }
#else
#define FN_CL_TILE(T, LOAD) (void)0
#endif
#define FN_STATS_CL_EXACT(IN, T, LOAD)                                                            \
    static void FN_CAT(stats_cl_exact, IN)(const void *xv, fn_ssize rows, fn_ssize C, fn_ssize m, \
                                           fn_ssize R, double *acc, fn_triple *out)               \
    {                                                                                             \
        const T *x = (const T *)xv;                                                               \
        const fn_ssize W = C * m, vr = rows > 0 ? rows / m : 0;                                   \
        int32_t *sh = (int32_t *)(void *)acc, *a = sh + W, *b = a + W;                            \
        fn_ssize r, j, c, k, r0, nv, j0;                                                          \
        if (rows <= 0 || vr >= ((fn_ssize)1 << 15)) {                                             \
            FN_CAT(stats_cl, IN)(xv, rows, C, m, R, acc, out);                                    \
            return;                                                                               \
        }                                                                                         \
        for (j = 0; j < W; j++) {                                                                 \
            sh[j] = (int32_t)x[j % C];                                                            \
            a[j] = 0;                                                                             \
            b[j] = 0;                                                                             \
        }                                                                                         \
        if (R < m) R = m;                                                                         \
        for (r0 = 0; r0 < vr * m; r0 += R) {                                                      \
            const T *p = x + r0 * C;                                                              \
            nv = (vr * m - r0 < R ? vr * m - r0 : R) / m;                                         \
            j0 = 0;                                                                               \
            FN_CL_TILE(T, LOAD)                                                                   \
            for (r = 0; r < nv; r++)                                                              \
                for (j = j0; j < W; j++) {                                                        \
                    const int32_t d = (int32_t)p[r * W + j] - sh[j];                              \
                    a[j] += d;                                                                    \
                    b[j] += d * d;                                                                \
                }                                                                                 \
        }                                                                                         \
        for (r = vr * m; r < rows; r++) /* rows that do not fill a virtual row */                 \
            for (c = 0; c < C; c++) {                                                             \
                const int32_t d = (int32_t)x[r * C + c] - sh[c];                                  \
                a[c] += d;                                                                        \
                b[c] += d * d;                                                                    \
            }                                                                                     \
        for (c = 0; c < C; c++) {                                                                 \
            int64_t s1 = 0, s2 = 0;                                                               \
            for (k = 0; k < m; k++) {                                                             \
                s1 += a[k * C + c];                                                               \
                s2 += b[k * C + c];                                                               \
            }                                                                                     \
            fn_finish(&out[c], (double)rows, (double)sh[c], (double)s1, (double)s2);              \
        }                                                                                         \
    }
FN_STATS_CL_EXACT(u8, uint8_t, vi16_load_u8)
FN_STATS_CL_EXACT(i8, int8_t, vi16_load_i8)
/* 16-bit channels-last: the double lanes (d^2 needs int64 lanes there) */
#define stats_cl_exact_u16 stats_cl_u16
#define stats_cl_exact_i16 stats_cl_i16

/* ---- apply, direct: the pairs read by the kernels themselves ------------ */
/* Each floating type into itself and float32 into the 16-bit types (what
 * every other pair into a 16-bit output runs on, through a float buffer);
 * the 8/16-bit integers into float32 follow the buffered machinery below. */
#define FN_TI float
#define FN_TO float
#define FN_SUF f32
#define FNS_SUF f32
#define FN_BWD 1
#define FN_LDV vd_load_f32
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#define FN_F32 1
#define FN_KEEP 1
#include "fn_kernels_dtype.h"

#define FN_TI double
#define FN_TO double
#define FN_SUF f64
#define FNS_SUF f64
#define FN_BWD 1
#define FN_LDV vd_load
#define FN_LDS(p) (*(p))
#define FN_WD 1
#include "fn_kernels_dtype.h"

#define FN_TI uint16_t
#define FN_TO uint16_t
#define FN_SUF f16
#define FNS_SUF f16
#define FN_BWD 1
#define FN_BWD_LDV vd_load_f16
#define FN_LDH vs_load_f16
#define FN_LDF(p) fn_h2f(*(p))
#define FN_STH vs_store_f16
#define FN_F2H fn_f2h
#define FN_WD 0
#include "fn_kernels_dtype.h"

#define FN_TI uint16_t
#define FN_TO uint16_t
#define FN_SUF bf16
#define FNS_SUF bf16
#define FN_BWD 1
#define FN_BWD_LDV vd_load_bf16
#define FN_LDH vs_load_bf16
#define FN_LDF(p) fn_b2f(*(p))
#define FN_STH vs_store_bf16
#define FN_F2H fn_f2b
#define FN_WD 0
#include "fn_kernels_dtype.h"

#define FN_TI float
#define FN_TO uint16_t
#define FN_SUF f32_f16
#define FNS_SUF f32
#define FN_LDH vs_load
#define FN_LDF(p) (*(p))
#define FN_STH vs_store_f16
#define FN_F2H fn_f2h
#define FN_WD 0
#include "fn_kernels_dtype.h"

#define FN_TI float
#define FN_TO uint16_t
#define FN_SUF f32_bf16
#define FNS_SUF f32
#define FN_LDH vs_load
#define FN_LDF(p) (*(p))
#define FN_STH vs_store_bf16
#define FN_F2H fn_f2b
#define FN_WD 0
#include "fn_kernels_dtype.h"

/* ---- apply, buffered: every other pair --------------------------------- */
/* The input converted, a piece at a time, into an L1 buffer of the values
 * the output type's kernels load (float, or double for float64 outputs),
 * which the direct kernels of that load type then normalize into the
 * output: f32 (float -> float32), f64 (double -> float64), f32_f16 and
 * f32_bf16 (float -> 16-bit).  Apply is elementwise, so the pieces give the
 * bits of one pass; the statistics read the input directly (their kind). */
#define FN_BUF_BYTES 8192 /* the buffer: 2048 floats or 1024 doubles */
#if defined(__GNUC__) || defined(__clang__)
#define FN_NOINLINE __attribute__((noinline))
#else
#define FN_NOINLINE
#endif
#define FN_BUF_SEG 256 /* channels-last rows wider than the buffer: columns per piece */

#define FN_CONV(IN, T, F, D)                                          \
    static void FN_CAT(cvf, IN)(const void *xv, void *bv, fn_ssize n) \
    {                                                                 \
        const T *x = (const T *)xv;                                   \
        float *b = (float *)bv;                                       \
        fn_ssize i;                                                   \
        FN_IVDEP                                                      \
        for (i = 0; i < n; i++) b[i] = F;                             \
    }                                                                 \
    static void FN_CAT(cvd, IN)(const void *xv, void *bv, fn_ssize n) \
    {                                                                 \
        const T *x = (const T *)xv;                                   \
        double *b = (double *)bv;                                     \
        fn_ssize i;                                                   \
        FN_IVDEP                                                      \
        for (i = 0; i < n; i++) b[i] = D;                             \
    }
FN_CONV(f16, uint16_t, fn_h2f(x[i]), (double)fn_h2f(x[i]))
FN_CONV(bf16, uint16_t, fn_b2f(x[i]), (double)fn_b2f(x[i]))
FN_CONV(f32, float, x[i], (double)x[i])
FN_CONV(f64, double, (float)x[i], x[i])
FN_CONV(u8, uint8_t, (float)x[i], (double)x[i])
FN_CONV(i8, int8_t, (float)x[i], (double)x[i])
FN_CONV(u16, uint16_t, (float)x[i], (double)x[i])
FN_CONV(i16, int16_t, (float)x[i], (double)x[i])
FN_CONV(u32, uint32_t, (float)x[i], (double)x[i])
FN_CONV(i32, int32_t, (float)x[i], (double)x[i])
FN_CONV(u64, uint64_t, (float)x[i], (double)x[i])
FN_CONV(i64, int64_t, (float)x[i], (double)x[i])

typedef struct {
    void (*conv)(const void *x, void *buf, fn_ssize n); /* inputs -> the buffer */
    fn_ssize isz, bsz, osz, csz; /* bytes of an input, a buffer, an output element, a coefficient */
    void (*stats)(const void *x, fn_ssize n, fn_triple *t); /* the input kind's */
    void (*apply)(const void *x, void *y, fn_ssize n, double mean, double sc, double sh, int act,
                  double slope, int stream); /* the load type's, from the buffer */
    void (*apply_cl)(const void *x, void *y, fn_ssize rows, fn_ssize C, fn_ssize m, const void *coef, int act,
                     double slope, int stream);
} fn_buf_pair;

FN_NOINLINE static void fn_buf_apply(const fn_buf_pair *d, const void *x, void *y, fn_ssize n, double mean,
                                     double sc, double sh, int act, double slope, int stream)
{
    double buf[FN_BUF_BYTES / 8];
    const fn_ssize per = FN_BUF_BYTES / d->bsz;
    fn_ssize s0, len;
    for (s0 = 0; s0 < n; s0 += len) {
        len = n - s0 < per ? n - s0 : per;
        d->conv((const char *)x + s0 * d->isz, buf, len);
        d->apply(buf, (char *)y + s0 * d->osz, len, mean, sc, sh, act, slope, stream);
    }
}

FN_NOINLINE static void fn_buf_stats_apply(const fn_buf_pair *d, const void *xs, fn_ssize ns, fn_triple *t,
                                           const void *xa, void *ya, fn_ssize na, double mean, double sc,
                                           double sh)
{
    d->stats(xs, ns, t);
    fn_buf_apply(d, xa, ya, na, mean, sc, sh, FN_ACT_NONE, 0.0, 0);
}

/* each plane's statistics, coefficients and apply in turn (the formulas of
 * the direct kernels, so the same bits) */
FN_NOINLINE static void fn_buf_planes(const fn_buf_pair *d, const void *xv, void *yv, fn_ssize p0,
                                      fn_ssize p1, fn_ssize L, fn_ssize S, fn_ssize G, fn_ssize goff,
                                      fn_ssize Cg, double eps, const double *w, const double *b, int act,
                                      double slope, fn_triple *tri, double *mean, double *scale,
                                      double *shift)
{
    const char *x = (const char *)xv;
    char *y = (char *)yv;
    fn_ssize p, r;
    for (p = p0; p < p1; p++) {
        d->stats(x + p * L * d->isz, L, &tri[p]);
        fn_group_coefs(&tri[p], eps, (goff + p) % G, Cg, p * Cg, w, b, mean, scale, shift);
        for (r = p * Cg; r < (p + 1) * Cg; r++)
            fn_buf_apply(d, x + r * S * d->isz, y + r * S * d->osz, S, mean[r], scale[r], shift[r], act,
                         slope, 0);
    }
}

/* groups of whole virtual rows (m rows each, so every piece starts on lane
 * 0); rows wider than the buffer in pieces of FN_BUF_SEG columns, each with
 * its columns' coefficients copied out (4 arrays of FN_BUF_SEG) */
FN_NOINLINE static void fn_buf_apply_cl(const fn_buf_pair *d, const void *xv, void *yv, fn_ssize rows,
                                        fn_ssize C, fn_ssize m, const void *coef, int act, double slope,
                                        int stream)
{
    const char *x = (const char *)xv;
    char *y = (char *)yv;
    double buf[FN_BUF_BYTES / 8];
    const fn_ssize per = FN_BUF_BYTES / d->bsz, W = C * m;
    fn_ssize r0, cnt, g, j0, seg, k;
    if (W <= per) {
        g = per / W * m;
        for (r0 = 0; r0 < rows; r0 += cnt) {
            cnt = rows - r0 < g ? rows - r0 : g;
            d->conv(x + r0 * C * d->isz, buf, cnt * C);
            d->apply_cl(buf, y + r0 * C * d->osz, cnt, C, m, coef, act, slope, stream);
        }
        return;
    }
    {
        double lc[4 * FN_BUF_SEG]; /* 4 coefficient arrays of FN_BUF_SEG (double or float) */
        for (r0 = 0; r0 < rows; r0++)
            for (j0 = 0; j0 < C; j0 += seg) {
                seg = C - j0 < FN_BUF_SEG ? C - j0 : FN_BUF_SEG;
                for (k = 0; k < 4; k++)
                    memcpy((char *)lc + k * seg * d->csz, (const char *)coef + (k * W + j0) * d->csz,
                           (size_t)(seg * d->csz));
                d->conv(x + (r0 * C + j0) * d->isz, buf, seg);
                d->apply_cl(buf, y + (r0 * C + j0) * d->osz, 1, seg, 1, lc, act, slope, 0);
            }
    }
}

/* ---- apply, direct: the 8/16-bit integers into float32 -------------------- */
/* The images: read by the kernels themselves without activation; with one,
 * through the float buffer into float32's activation loops (bpa_*: the same
 * values into the same loops, so the same bits, and one activation loop per
 * output type instead of one per pair). */
static const fn_buf_pair bpa_u8 = {cvf_u8, 1, 4, 4, 8, stats_exact_u8, apply_f32, apply_cl_f32};
static const fn_buf_pair bpa_i8 = {cvf_i8, 1, 4, 4, 8, stats_exact_i8, apply_f32, apply_cl_f32};
static const fn_buf_pair bpa_u16 = {cvf_u16, 2, 4, 4, 8, stats_exact_u16, apply_f32, apply_cl_f32};
static const fn_buf_pair bpa_i16 = {cvf_i16, 2, 4, 4, 8, stats_exact_i16, apply_f32, apply_cl_f32};

#define FN_TI uint8_t
#define FN_TO float
#define FN_SUF u8_f32
#define FN_ACT_VIA bpa_u8
#define FNS_SUF u8
#define FN_LDV vd_load_u8
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#define FN_F32 1
#include "fn_kernels_dtype.h"

#define FN_TI int8_t
#define FN_TO float
#define FN_SUF i8_f32
#define FN_ACT_VIA bpa_i8
#define FNS_SUF i8
#define FN_LDV vd_load_i8
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#define FN_F32 1
#include "fn_kernels_dtype.h"

#define FN_TI uint16_t
#define FN_TO float
#define FN_SUF u16_f32
#define FN_ACT_VIA bpa_u16
#define FNS_SUF u16
#define FN_LDV vd_load_u16
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#define FN_F32 1
#include "fn_kernels_dtype.h"

#define FN_TI int16_t
#define FN_TO float
#define FN_SUF i16_f32
#define FN_ACT_VIA bpa_i16
#define FNS_SUF i16
#define FN_LDV vd_load_i16
#define FN_LDS(p) ((double)*(p))
#define FN_WD 1
#define FN_F32 1
#include "fn_kernels_dtype.h"

/* One buffered pair IN -> OUT: its descriptor and its four table entries.
 * CV: the conversion (cvf_IN, cvd_IN), BT: the buffer's type, SK: the
 * statistics kind, AP: the load type's direct set, CT: the coefficients' type. */
#define FN_BUFSET(IN, OUT, TI, TO, CV, BT, SK, AP, CT)                                                       \
    static const fn_buf_pair bp_##IN##_##OUT = {                                                             \
        CV,         sizeof(TI),        sizeof(BT),        sizeof(TO),                                        \
        sizeof(CT), FN_CAT(stats, SK), FN_CAT(apply, AP), FN_CAT(apply_cl, AP)};                             \
    static void apply_##IN##_##OUT(const void *x, void *y, fn_ssize n, double mean, double sc, double sh,    \
                                   int act, double slope, int stream)                                        \
    {                                                                                                        \
        fn_buf_apply(&bp_##IN##_##OUT, x, y, n, mean, sc, sh, act, slope, stream);                           \
    }                                                                                                        \
    static void planes_##IN##_##OUT(const void *x, void *y, fn_ssize p0, fn_ssize p1, fn_ssize L,            \
                                    fn_ssize S, fn_ssize G, fn_ssize goff, fn_ssize Cg, double eps,          \
                                    const double *w, const double *b, int act, double slope, fn_triple *tri, \
                                    double *mean, double *scale, double *shift)                              \
    {                                                                                                        \
        fn_buf_planes(&bp_##IN##_##OUT, x, y, p0, p1, L, S, G, goff, Cg, eps, w, b, act, slope, tri, mean,   \
                      scale, shift);                                                                         \
    }                                                                                                        \
    static void apply_cl_##IN##_##OUT(const void *x, void *y, fn_ssize rows, fn_ssize C, fn_ssize m,         \
                                      const void *coef, int act, double slope, int stream)                   \
    {                                                                                                        \
        fn_buf_apply_cl(&bp_##IN##_##OUT, x, y, rows, C, m, coef, act, slope, stream);                       \
    }                                                                                                        \
    static void stats_apply_##IN##_##OUT(const void *xs, fn_ssize ns, fn_triple *t, const void *xa,          \
                                         void *ya, fn_ssize na, double mean, double sc, double sh)           \
    {                                                                                                        \
        fn_buf_stats_apply(&bp_##IN##_##OUT, xs, ns, t, xa, ya, na, mean, sc, sh);                           \
    }

/* IN into each output it has no direct set for: SKF the kind loading float
 * (float32 and 16-bit outputs), SKD the kind loading double (float64) */
#define FN_BUF_F16(IN, TI, SKF) FN_BUFSET(IN, f16, TI, uint16_t, cvf_##IN, float, SKF, f32_f16, float)
#define FN_BUF_BF16(IN, TI, SKF) FN_BUFSET(IN, bf16, TI, uint16_t, cvf_##IN, float, SKF, f32_bf16, float)
#define FN_BUF_F32(IN, TI, SKF) FN_BUFSET(IN, f32, TI, float, cvf_##IN, float, SKF, f32, double)
#define FN_BUF_F64(IN, TI, SKD) FN_BUFSET(IN, f64, TI, double, cvd_##IN, double, SKD, f64, double)

FN_BUF_F32(f16, uint16_t, f16)
FN_BUF_F64(f16, uint16_t, f16)
FN_BUF_BF16(f16, uint16_t, f16)
FN_BUF_F64(f32, float, f32)
FN_BUF_F16(f64, double, f64f)
FN_BUF_F32(f64, double, f64f)
FN_BUF_BF16(f64, double, f64f)
FN_BUF_F16(bf16, uint16_t, bf16)
FN_BUF_F32(bf16, uint16_t, bf16)
FN_BUF_F64(bf16, uint16_t, bf16)
#define FN_BUF_INT8_16(IN, TI) \
    FN_BUF_F16(IN, TI, exact_##IN) FN_BUF_F64(IN, TI, exact_##IN) FN_BUF_BF16(IN, TI, exact_##IN)
FN_BUF_INT8_16(u8, uint8_t)
FN_BUF_INT8_16(i8, int8_t)
FN_BUF_INT8_16(u16, uint16_t)
FN_BUF_INT8_16(i16, int16_t)
#define FN_BUF_INT32_64(IN, TI) \
    FN_BUF_F16(IN, TI, IN##f) FN_BUF_F32(IN, TI, IN##f) FN_BUF_F64(IN, TI, IN) FN_BUF_BF16(IN, TI, IN##f)
FN_BUF_INT32_64(u32, uint32_t)
FN_BUF_INT32_64(i32, int32_t)
FN_BUF_INT32_64(u64, uint64_t)
FN_BUF_INT32_64(i64, int64_t)

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

/* the kernels of one pair: SUF its apply set (direct or buffered), SK its
 * statistics kind */
#define FN_KSET(SUF, SK)                                               \
    {FN_CAT(stats, SK),    FN_CAT(apply, SUF),    FN_CAT(planes, SUF), \
     FN_CAT(stats_cl, SK), FN_CAT(apply_cl, SUF), FN_CAT(stats_apply, SUF)}
/* one input's row: into float16, float32, float64, bfloat16 */
#define FN_KROW(IN, SKF, SKD) \
    {FN_KSET(IN##_f16, SKF), FN_KSET(IN##_f32, SKF), FN_KSET(IN##_f64, SKD), FN_KSET(IN##_bf16, SKF)}

FN_BWD_TABLE;

const fn_target FN_CAT(fn_target, FN_TARGET) = {
    FN_LEVEL_NAME,  /* level */
    FN_SIMD_NAME,   /* vector */
    FN_FUSED,       /* fused */
    FN_HALF_HW,     /* half_hw */
    FN_HAVE_STREAM, /* stream */
    {
        /* k, by (input code, output code) */
        {FN_KSET(f16, f16), FN_KSET(f16_f32, f16), FN_KSET(f16_f64, f16), FN_KSET(f16_bf16, f16)},
        {FN_KSET(f32_f16, f32), FN_KSET(f32, f32), FN_KSET(f32_f64, f32), FN_KSET(f32_bf16, f32)},
        {FN_KSET(f64_f16, f64f), FN_KSET(f64_f32, f64f), FN_KSET(f64, f64), FN_KSET(f64_bf16, f64f)},
        {FN_KSET(bf16_f16, bf16), FN_KSET(bf16_f32, bf16), FN_KSET(bf16_f64, bf16), FN_KSET(bf16, bf16)},
        FN_KROW(u8, exact_u8, exact_u8),
        FN_KROW(i8, exact_i8, exact_i8),
        FN_KROW(u16, exact_u16, exact_u16),
        FN_KROW(i16, exact_i16, exact_i16),
        FN_KROW(u32, u32f, u32),
        FN_KROW(i32, i32f, i32),
        FN_KROW(u64, u64f, u64),
        FN_KROW(i64, i64f, i64),
    },
    widen_f16,    /* widen_f16 */
    narrow_f16,   /* narrow_f16 */
    copy_run,     /* copy */
    fn_bwd_table, /* bwd */
};
