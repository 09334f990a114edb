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

/* exp for float, branch-free so the apply loops stay vectorized (Cephes
 * expf: Cody-Waite reduction by ln 2, degree-6 polynomial, ~1 ulp).  Inputs
 * are clamped to [-87, 88]: enough for silu, where v / (1 + exp(-v)) is then
 * 0 or v to within rounding. */
FN_INLINE float fn_expf(float x)
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
/* sigmoid in float for float32 / 16-bit data (a float sigmoid keeps silu
 * within a few ulp at a quarter of the cost of a double division); float64
 * data use the double formula.  sigmoid(NaN) is that same NaN, so that silu's
 * v * sigmoid(v) multiplies one NaN by itself: with two different NaNs the
 * result would be whichever operand the compiler put first, which differs
 * between vector widths. */
FN_INLINE float fn_sigmoidf(float v)
{
    float s = 1.0f / (1.0f + fn_expf(-v));
    return v == v ? s : v;
}
FN_INLINE double fn_sigmoidd(double v)
{
    double s = 1.0 / (1.0 + exp(-v));
    return v == v ? s : v;
}

/* relu's zero arm is read from a value the compiler cannot see: with the
 * constant 0 GCC turns the select into a NaN-honouring max that it leaves
 * scalar in the float32 loops, and v * 0 + 0 would give NaN for -inf */
static volatile double fn_relu_zero = 0.0;

/* Run LOOP(ACT) with the activation statement for act; v is the working
 * value, slope leaky_relu's negative slope. */
#define FN_ACT_SWITCH(W, SIGMOID, LOOP)                                         \
    switch (act) {                                                              \
    case FN_ACT_RELU: {                                                         \
        const W zr = (W)fn_relu_zero;                                           \
        LOOP(v = v < (W)0 ? zr : v); break;                                     \
    }                                                                           \
    case FN_ACT_LEAKY: LOOP(v = v >= (W)0 ? v : v * (W)slope); break;           \
    case FN_ACT_SILU:  LOOP(v = v * SIGMOID(v)); break;                         \
    default:           LOOP((void)0); break;                                    \
    }
#define FN_SIGMOID_F32(v) (double)fn_sigmoidf((float)(v))

/* Calls CALL(K) with K a compile-time constant 1 .. FN_TILE_V - 1 equal to kk
 * (the vector count of a channels-last remainder tile). */
#if FN_TILE_V > 4
#define FN_TILE_REM(kk, CALL)                                                   \
    switch (kk) {                                                               \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;     \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break;     \
    case 7: CALL(7); break; default: break;                                     \
    }
#else
#define FN_TILE_REM(kk, CALL)                                                   \
    switch (kk) {                                                               \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;     \
    default: break;                                                             \
    }
#endif
#if FN_TILE_VS > 2
#define FN_TILE_REM_S(kk, CALL)                                                 \
    switch (kk) {                                                               \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;     \
    default: break;                                                             \
    }
#else
#define FN_TILE_REM_S(kk, CALL) if ((kk) == 1) CALL(1);
#endif

#define FN_TILE_LANES (FN_TILE_V * FN_VL)

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

#define FN_KSET(SUF)                                                            \
    { FN_CAT(stats, SUF), FN_CAT(apply, SUF), FN_CAT(planes, SUF),              \
      FN_CAT(stats_cl, SUF), FN_CAT(apply_cl, SUF), FN_CAT(stats_apply, SUF) }

const fn_target FN_CAT(fn_target, FN_TARGET) = {
    FN_LEVEL_NAME,
    FN_SIMD_NAME,
    FN_FUSED,
    FN_HALF_HW,
    FN_HAVE_STREAM,
    {FN_KSET(f16), FN_KSET(f32), FN_KSET(f64), FN_KSET(bf16)},
    widen_f16,
    narrow_f16,
    copy_run,
};
