/*
 * The vector layer: one set of named operations whose lane count is the
 * target's, chosen by the flags the translation unit is compiled with
 * (setup.py compiles fn_kernels.c once per target).  Each kernel variant
 * (fn_kernels_gen.c) names the loads and stores of its types.
 *
 *   fn_vd  FN_VL doubles   (8 AVX-512, 4 AVX2, 2 SSE2 / NEON, 1 scalar)
 *   fn_vs  FN_FL floats    (16 AVX-512, 8 AVX2, 4 SSE2 / NEON, 1 scalar)
 *
 * Rules every implementation keeps, so that every target gives the same bits:
 *   - vd_fma / vs_fma round once when FN_FUSED is 1 and compute a * b + c
 *     (two roundings) when it is 0; nothing else is ever contracted
 *     (-ffp-contract=off).
 *   - loads widen exactly (float -> double, half / bfloat16 -> float, 8- to
 *     32-bit integers -> double), 64-bit integers round once to nearest even
 *     (as a C cast: what NumPy's astype does); the *f loads give the value
 *     rounded to float first (what float32 and 16-bit outputs load), stores
 *     narrow with one rounding to nearest even.
 *   - vd_relu(v) is exactly v < 0 ? 0 : v (NaN and -0 pass through) and
 *     vd_leaky(v, s) exactly v >= 0 ? v : v * s, the kernels' scalar forms;
 *     vd_leaky_unit(v, s) is vd_leaky's value for 0 < s <= 1 only, as
 *     max(v * s, v) where the ISA's max returns its second operand for a
 *     NaN (x86): v >= 0 gives v * s <= v, v < 0 gives v * s >= v, -0 and
 *     +-inf keep v, a NaN is v itself (v * s would be that NaN too).
 *   - vd_stream / vd2_stream_f32 need their address aligned to the store's
 *     size (FN_STREAM_ALIGN bytes); vd_stream16 / vd_stream16_f32 store in
 *     16-byte pieces and need 16-byte alignment only (NumPy's large arrays
 *     are 16-byte aligned).  FN_HAVE_STREAM is 0 where the target has no
 *     stream stores, and the kernels then use normal stores.
 *
 * FN_TILE_V / FN_TILE_VS: vectors per register tile of the channels-last
 * kernels, sized so that a tile's three (four) coefficient rows and the
 * temporaries fit the register file (32 registers AVX-512 / NEON, 16 AVX2 / SSE2).
 */
#ifndef FN_SIMD_H
#define FN_SIMD_H

#include "fn_half.h"

#ifndef FN_FUSED
#if defined(__FMA__) || defined(__aarch64__)
#define FN_FUSED 1
#else
#define FN_FUSED 0
#endif
#endif

#if FN_FUSED
#if defined(__GNUC__) || defined(__clang__)
#define FN_FMA(a, b, c) __builtin_fma((a), (b), (c))
#define FN_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define FN_FMA(a, b, c) fma((a), (b), (c))
#define FN_FMAF(a, b, c) fmaf((a), (b), (c))
#endif
#else
#define FN_FMA(a, b, c) ((a) * (b) + (c))
#define FN_FMAF(a, b, c) ((a) * (b) + (c))
#endif

#if !defined(FN_SIMD_SCALAR) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__F16C__) && FN_FUSED
/* ------------------------------------------------------------- AVX-512 */
#include <immintrin.h>
#define FN_SIMD_NAME "AVX-512 (8 doubles / 16 floats)"
#define FN_VL 8
#define FN_FL 16
#define FN_TILE_V 8
#define FN_TILE_VS 4
#define FN_HALF_HW 1
#define FN_HAVE_STREAM 1
#define FN_STREAM_ALIGN 64
typedef __m512d fn_vd;
typedef __m512 fn_vs;
FN_INLINE fn_vd vd_set1(double a) { return _mm512_set1_pd(a); }
FN_INLINE fn_vd vd_load(const double *p) { return _mm512_loadu_pd(p); }
FN_INLINE void vd_store(double *p, fn_vd v) { _mm512_storeu_pd(p, v); }
FN_INLINE void vd_stream(double *p, fn_vd v) { _mm512_stream_pd(p, v); }
FN_INLINE fn_vd vd_add(fn_vd a, fn_vd b) { return _mm512_add_pd(a, b); }
/* lane j += lane j + h for h = 4, 2, 1 (the lower lane the first operand):
 * fn_vlanes_sum's tree within one vector */
FN_INLINE double vd_hsum(fn_vd v)
{
    __m256d a = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d b = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(b, _mm_unpackhi_pd(b, b)));
}
FN_INLINE fn_vd vd_sub(fn_vd a, fn_vd b) { return _mm512_sub_pd(a, b); }
FN_INLINE fn_vd vd_relu(fn_vd v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
FN_INLINE fn_vd vd_leaky(fn_vd v, fn_vd s)
{
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GE_OQ), _mm512_mul_pd(v, s),
                                v);
}
FN_INLINE fn_vd vd_leaky_unit(fn_vd v, fn_vd s) { return _mm512_max_pd(_mm512_mul_pd(v, s), v); }
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return _mm512_fmadd_pd(a, b, c); }
FN_INLINE fn_vd vd_load_f32(const float *p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
FN_INLINE void vd_store_f32(float *p, fn_vd v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)); }
/* stream stores in 16-byte pieces (p 16-byte aligned): the channels-last rows */
FN_INLINE void vd_stream16(double *p, fn_vd v)
{
    __m256d lo = _mm512_castpd512_pd256(v), hi = _mm512_extractf64x4_pd(v, 1);
    _mm_stream_pd(p, _mm256_castpd256_pd128(lo));
    _mm_stream_pd(p + 2, _mm256_extractf128_pd(lo, 1));
    _mm_stream_pd(p + 4, _mm256_castpd256_pd128(hi));
    _mm_stream_pd(p + 6, _mm256_extractf128_pd(hi, 1));
}
FN_INLINE void vd_stream16_f32(float *p, fn_vd v)
{
    __m256 f = _mm512_cvtpd_ps(v);
    _mm_stream_ps(p, _mm256_castps256_ps128(f));
    _mm_stream_ps(p + 4, _mm256_extractf128_ps(f, 1));
}
/* two vectors narrowed into one 64-byte store: a whole cache line in one
 * store lets the CPU skip the read-for-ownership of a line it overwrites */
FN_INLINE __m512 fn_pair_f32(fn_vd a, fn_vd b)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(a))),
                                               _mm256_castps_pd(_mm512_cvtpd_ps(b)), 1));
}
FN_INLINE void vd2_store_f32(float *p, fn_vd a, fn_vd b) { _mm512_storeu_ps(p, fn_pair_f32(a, b)); }
FN_INLINE void vd2_stream_f32(float *p, fn_vd a, fn_vd b) { _mm512_stream_ps(p, fn_pair_f32(a, b)); }
FN_INLINE fn_vd vd_load_f16(const uint16_t *p)
{
    return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)));
}
FN_INLINE fn_vd vd_load_bf16(const uint16_t *p)
{
    __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
    return _mm512_cvtps_pd(_mm256_castsi256_ps(u));
}
FN_INLINE fn_vd vd_load_u8(const uint8_t *p)
{
    return _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_i8(const int8_t *p)
{
    return _mm512_cvtepi32_pd(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_u16(const uint16_t *p)
{
    return _mm512_cvtepi32_pd(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_i16(const int16_t *p)
{
    return _mm512_cvtepi32_pd(_mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_i32(const int32_t *p)
{
    return _mm512_cvtepi32_pd(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
FN_INLINE fn_vd vd_load_u32(const uint32_t *p)
{
    return _mm512_cvtepu32_pd(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
FN_INLINE fn_vd vd_load_i64(const int64_t *p) { return _mm512_cvtepi64_pd(_mm512_loadu_si512(p)); }
FN_INLINE fn_vd vd_load_u64(const uint64_t *p) { return _mm512_cvtepu64_pd(_mm512_loadu_si512(p)); }
FN_INLINE fn_vd vd_load_i64f(const int64_t *p)
{
    return _mm512_cvtps_pd(_mm512_cvtepi64_ps(_mm512_loadu_si512(p)));
}
FN_INLINE fn_vd vd_load_u64f(const uint64_t *p)
{
    return _mm512_cvtps_pd(_mm512_cvtepu64_ps(_mm512_loadu_si512(p)));
}
#define FN_HAVE_VD_I64 1
FN_INLINE fn_vs vs_set1(float a) { return _mm512_set1_ps(a); }
FN_INLINE fn_vs vs_load(const float *p) { return _mm512_loadu_ps(p); }
FN_INLINE void vs_store(float *p, fn_vs v) { _mm512_storeu_ps(p, v); }
FN_INLINE fn_vs vs_sub(fn_vs a, fn_vs b) { return _mm512_sub_ps(a, b); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return _mm512_fmadd_ps(a, b, c); }
FN_INLINE fn_vs vs_load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
FN_INLINE void vs_store_f16(uint16_t *p, fn_vs v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
FN_INLINE fn_vs vs_load_bf16(const uint16_t *p)
{
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
FN_INLINE void fn_sfence(void) { _mm_sfence(); }

#elif !defined(FN_SIMD_SCALAR) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && FN_FUSED
/* ---------------------------------------------------------------- AVX2 */
#include <immintrin.h>
#define FN_SIMD_NAME "AVX2 (4 doubles / 8 floats)"
#define FN_VL 4
#define FN_FL 8
#define FN_TILE_V 4
#define FN_TILE_VS 2
#define FN_HALF_HW 1
#define FN_HAVE_STREAM 1
#define FN_STREAM_ALIGN 32
typedef __m256d fn_vd;
typedef __m256 fn_vs;
FN_INLINE fn_vd vd_set1(double a) { return _mm256_set1_pd(a); }
FN_INLINE fn_vd vd_load(const double *p) { return _mm256_loadu_pd(p); }
FN_INLINE void vd_store(double *p, fn_vd v) { _mm256_storeu_pd(p, v); }
FN_INLINE void vd_stream(double *p, fn_vd v) { _mm256_stream_pd(p, v); }
FN_INLINE fn_vd vd_add(fn_vd a, fn_vd b) { return _mm256_add_pd(a, b); }
/* lane j += lane j + h for h = 2, 1 (the lower lane the first operand) */
FN_INLINE double vd_hsum(fn_vd v)
{
    __m128d b = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(b, _mm_unpackhi_pd(b, b)));
}
FN_INLINE fn_vd vd_sub(fn_vd a, fn_vd b) { return _mm256_sub_pd(a, b); }
FN_INLINE fn_vd vd_relu(fn_vd v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
FN_INLINE fn_vd vd_leaky(fn_vd v, fn_vd s)
{
    return _mm256_blendv_pd(_mm256_mul_pd(v, s), v, _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GE_OQ));
}
FN_INLINE fn_vd vd_leaky_unit(fn_vd v, fn_vd s) { return _mm256_max_pd(_mm256_mul_pd(v, s), v); }
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return _mm256_fmadd_pd(a, b, c); }
FN_INLINE fn_vd vd_load_f32(const float *p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
FN_INLINE void vd_store_f32(float *p, fn_vd v) { _mm_storeu_ps(p, _mm256_cvtpd_ps(v)); }
/* stream stores in 16-byte pieces (p 16-byte aligned): the channels-last rows */
FN_INLINE void vd_stream16(double *p, fn_vd v)
{
    _mm_stream_pd(p, _mm256_castpd256_pd128(v));
    _mm_stream_pd(p + 2, _mm256_extractf128_pd(v, 1));
}
FN_INLINE void vd_stream16_f32(float *p, fn_vd v) { _mm_stream_ps(p, _mm256_cvtpd_ps(v)); }
FN_INLINE __m256 fn_pair_f32(fn_vd a, fn_vd b)
{
    return _mm256_set_m128(_mm256_cvtpd_ps(b), _mm256_cvtpd_ps(a));
}
FN_INLINE void vd2_store_f32(float *p, fn_vd a, fn_vd b) { _mm256_storeu_ps(p, fn_pair_f32(a, b)); }
FN_INLINE void vd2_stream_f32(float *p, fn_vd a, fn_vd b) { _mm256_stream_ps(p, fn_pair_f32(a, b)); }
FN_INLINE fn_vd vd_load_f16(const uint16_t *p)
{
    return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p)));
}
FN_INLINE fn_vd vd_load_bf16(const uint16_t *p)
{
    __m128i u = _mm_slli_epi32(_mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)p)), 16);
    return _mm256_cvtps_pd(_mm_castsi128_ps(u));
}
FN_INLINE __m128i fn_load32i(const void *p)
{
    int32_t u;
    memcpy(&u, p, 4);
    return _mm_cvtsi32_si128(u);
}
FN_INLINE fn_vd vd_load_u8(const uint8_t *p) { return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(fn_load32i(p))); }
FN_INLINE fn_vd vd_load_i8(const int8_t *p) { return _mm256_cvtepi32_pd(_mm_cvtepi8_epi32(fn_load32i(p))); }
FN_INLINE fn_vd vd_load_u16(const uint16_t *p)
{
    return _mm256_cvtepi32_pd(_mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_i16(const int16_t *p)
{
    return _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FN_INLINE fn_vd vd_load_i32(const int32_t *p)
{
    return _mm256_cvtepi32_pd(_mm_loadu_si128((const __m128i *)(const void *)p));
}
/* unsigned: the signed conversion of x - 2^31, plus 2^31 (exact in double) */
FN_INLINE fn_vd vd_load_u32(const uint32_t *p)
{
    __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)p), _mm_set1_epi32(INT32_MIN));
    return _mm256_add_pd(_mm256_cvtepi32_pd(v), _mm256_set1_pd(2147483648.0));
}
FN_INLINE fn_vs vs_set1(float a) { return _mm256_set1_ps(a); }
FN_INLINE fn_vs vs_load(const float *p) { return _mm256_loadu_ps(p); }
FN_INLINE void vs_store(float *p, fn_vs v) { _mm256_storeu_ps(p, v); }
FN_INLINE fn_vs vs_sub(fn_vs a, fn_vs b) { return _mm256_sub_ps(a, b); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return _mm256_fmadd_ps(a, b, c); }
FN_INLINE fn_vs vs_load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
FN_INLINE void vs_store_f16(uint16_t *p, fn_vs v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
FN_INLINE fn_vs vs_load_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
FN_INLINE void fn_sfence(void) { _mm_sfence(); }

#elif !defined(FN_SIMD_SCALAR) && (defined(__SSE2__) || defined(_M_X64))
/* ---------------------------------------------- SSE2 (x86-64 baseline) */
/* With FN_FUSED the unit is compiled with -mfma (run only on FMA CPUs);
 * float16 is converted in software (no F16C at this level). */
#include <emmintrin.h>
#if FN_FUSED
#include <immintrin.h>
#endif
#define FN_SIMD_NAME "SSE2 (2 doubles / 4 floats)"
#define FN_VL 2
#define FN_FL 4
#define FN_TILE_V 4
#define FN_TILE_VS 2
#define FN_HALF_HW 0
#define FN_HAVE_STREAM 1
#define FN_STREAM_ALIGN 16
typedef __m128d fn_vd;
typedef __m128 fn_vs;
FN_INLINE fn_vd vd_set1(double a) { return _mm_set1_pd(a); }
FN_INLINE fn_vd vd_load(const double *p) { return _mm_loadu_pd(p); }
FN_INLINE void vd_store(double *p, fn_vd v) { _mm_storeu_pd(p, v); }
FN_INLINE void vd_stream(double *p, fn_vd v) { _mm_stream_pd(p, v); }
FN_INLINE fn_vd vd_add(fn_vd a, fn_vd b) { return _mm_add_pd(a, b); }
/* lane 0 + lane 1 */
FN_INLINE double vd_hsum(fn_vd v) { return _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v))); }
FN_INLINE fn_vd vd_sub(fn_vd a, fn_vd b) { return _mm_sub_pd(a, b); }
FN_INLINE fn_vd vd_relu(fn_vd v) { return _mm_max_pd(_mm_setzero_pd(), v); }
FN_INLINE fn_vd vd_leaky(fn_vd v, fn_vd s)
{
    const __m128d m = _mm_cmpge_pd(v, _mm_setzero_pd());
    return _mm_or_pd(_mm_and_pd(m, v), _mm_andnot_pd(m, _mm_mul_pd(v, s)));
}
FN_INLINE fn_vd vd_leaky_unit(fn_vd v, fn_vd s) { return _mm_max_pd(_mm_mul_pd(v, s), v); }
#if FN_FUSED
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return _mm_fmadd_pd(a, b, c); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return _mm_fmadd_ps(a, b, c); }
#else
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
#endif
/* two floats through the unaligned 64-bit integer load / store (a double
 * load would assume 8-byte alignment) */
FN_INLINE fn_vd vd_load_f32(const float *p)
{
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FN_INLINE void vd_store_f32(float *p, fn_vd v)
{
    _mm_storel_epi64((__m128i *)(void *)p, _mm_castps_si128(_mm_cvtpd_ps(v)));
}
FN_INLINE __m128 fn_pair_f32(fn_vd a, fn_vd b) { return _mm_movelh_ps(_mm_cvtpd_ps(a), _mm_cvtpd_ps(b)); }
FN_INLINE void vd2_store_f32(float *p, fn_vd a, fn_vd b) { _mm_storeu_ps(p, fn_pair_f32(a, b)); }
FN_INLINE void vd2_stream_f32(float *p, fn_vd a, fn_vd b) { _mm_stream_ps(p, fn_pair_f32(a, b)); }
FN_INLINE void vd_stream16(double *p, fn_vd v) { _mm_stream_pd(p, v); }
FN_INLINE void vd_stream16_f32(float *p, fn_vd v) { vd_store_f32(p, v); } /* 8 bytes: no stream */
FN_INLINE fn_vd vd_load_f16(const uint16_t *p) { return _mm_set_pd(fn_h2f(p[1]), fn_h2f(p[0])); }
FN_INLINE fn_vd vd_load_bf16(const uint16_t *p) { return _mm_set_pd(fn_b2f(p[1]), fn_b2f(p[0])); }
FN_INLINE fn_vd vd_load_u8(const uint8_t *p) { return _mm_set_pd((double)p[1], (double)p[0]); }
FN_INLINE fn_vd vd_load_i8(const int8_t *p) { return _mm_set_pd((double)p[1], (double)p[0]); }
FN_INLINE fn_vd vd_load_u16(const uint16_t *p) { return _mm_set_pd((double)p[1], (double)p[0]); }
FN_INLINE fn_vd vd_load_i16(const int16_t *p) { return _mm_set_pd((double)p[1], (double)p[0]); }
FN_INLINE fn_vd vd_load_i32(const int32_t *p)
{
    return _mm_cvtepi32_pd(_mm_loadl_epi64((const __m128i *)(const void *)p));
}
/* unsigned: the signed conversion of x - 2^31, plus 2^31 (exact in double) */
FN_INLINE fn_vd vd_load_u32(const uint32_t *p)
{
    __m128i v = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)(const void *)p), _mm_set1_epi32(INT32_MIN));
    return _mm_add_pd(_mm_cvtepi32_pd(v), _mm_set1_pd(2147483648.0));
}
FN_INLINE fn_vs vs_set1(float a) { return _mm_set1_ps(a); }
FN_INLINE fn_vs vs_load(const float *p) { return _mm_loadu_ps(p); }
FN_INLINE void vs_store(float *p, fn_vs v) { _mm_storeu_ps(p, v); }
FN_INLINE fn_vs vs_sub(fn_vs a, fn_vs b) { return _mm_sub_ps(a, b); }
FN_INLINE fn_vs vs_load_f16(const uint16_t *p)
{
    return _mm_set_ps(fn_h2f(p[3]), fn_h2f(p[2]), fn_h2f(p[1]), fn_h2f(p[0]));
}
FN_INLINE void vs_store_f16(uint16_t *p, fn_vs v)
{
    float f[4];
    int i;
    _mm_storeu_ps(f, v);
    for (i = 0; i < 4; i++) p[i] = fn_f2h(f[i]);
}
FN_INLINE fn_vs vs_load_bf16(const uint16_t *p)
{
    __m128i u = _mm_loadl_epi64((const __m128i *)(const void *)p);
    return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), u));
}
FN_INLINE void fn_sfence(void) { _mm_sfence(); }

#elif !defined(FN_SIMD_SCALAR) && defined(__aarch64__) && defined(__ARM_NEON)
/* ---------------------------------------------------------------- NEON */
#include <arm_neon.h>
#define FN_SIMD_NAME "NEON (2 doubles / 4 floats)"
#define FN_VL 2
#define FN_FL 4
#define FN_TILE_V 8
#define FN_TILE_VS 4
#define FN_HALF_HW 1
#define FN_HAVE_STREAM 0
#define FN_STREAM_ALIGN 16
typedef float64x2_t fn_vd;
typedef float32x4_t fn_vs;
FN_INLINE fn_vd vd_set1(double a) { return vdupq_n_f64(a); }
FN_INLINE fn_vd vd_load(const double *p) { return vld1q_f64(p); }
FN_INLINE void vd_store(double *p, fn_vd v) { vst1q_f64(p, v); }
FN_INLINE void vd_stream(double *p, fn_vd v) { vst1q_f64(p, v); }
FN_INLINE fn_vd vd_add(fn_vd a, fn_vd b) { return vaddq_f64(a, b); }
/* lane 0 + lane 1 */
FN_INLINE double vd_hsum(fn_vd v) { return vgetq_lane_f64(v, 0) + vgetq_lane_f64(v, 1); }
FN_INLINE fn_vd vd_sub(fn_vd a, fn_vd b) { return vsubq_f64(a, b); }
FN_INLINE fn_vd vd_relu(fn_vd v) { return vbslq_f64(vcltq_f64(v, vdupq_n_f64(0.0)), vdupq_n_f64(0.0), v); }
FN_INLINE fn_vd vd_leaky(fn_vd v, fn_vd s)
{
    return vbslq_f64(vcgeq_f64(v, vdupq_n_f64(0.0)), v, vmulq_f64(v, s));
}
FN_INLINE fn_vd vd_leaky_unit(fn_vd v, fn_vd s) { return vd_leaky(v, s); } /* NEON's max is not x86's */
#if FN_FUSED
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return vfmaq_f64(c, a, b); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return vfmaq_f32(c, a, b); }
#else
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return vaddq_f64(vmulq_f64(a, b), c); }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return vaddq_f32(vmulq_f32(a, b), c); }
#endif
FN_INLINE fn_vd vd_load_f32(const float *p) { return vcvt_f64_f32(vld1_f32(p)); }
FN_INLINE void vd_store_f32(float *p, fn_vd v) { vst1_f32(p, vcvt_f32_f64(v)); }
FN_INLINE void vd_stream16(double *p, fn_vd v) { vst1q_f64(p, v); }
FN_INLINE void vd_stream16_f32(float *p, fn_vd v) { vd_store_f32(p, v); }
FN_INLINE void vd2_store_f32(float *p, fn_vd a, fn_vd b)
{
    vst1q_f32(p, vcombine_f32(vcvt_f32_f64(a), vcvt_f32_f64(b)));
}
FN_INLINE void vd2_stream_f32(float *p, fn_vd a, fn_vd b) { vd2_store_f32(p, a, b); }
FN_INLINE fn_vd vd_load_f16(const uint16_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return vcvt_f64_f32(vget_low_f32(vcvt_f32_f16(vreinterpret_f16_u32(vdup_n_u32(u)))));
}
FN_INLINE fn_vd vd_load_bf16(const uint16_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return vcvt_f64_f32(
        vreinterpret_f32_u32(vshl_n_u32(vget_low_u32(vmovl_u16(vreinterpret_u16_u32(vdup_n_u32(u)))), 16)));
}
FN_INLINE fn_vd vd_load_u8(const uint8_t *p)
{
    return vcombine_f64(vdup_n_f64((double)p[0]), vdup_n_f64((double)p[1]));
}
FN_INLINE fn_vd vd_load_i8(const int8_t *p)
{
    return vcombine_f64(vdup_n_f64((double)p[0]), vdup_n_f64((double)p[1]));
}
FN_INLINE fn_vd vd_load_u16(const uint16_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return vcvtq_f64_u64(vmovl_u32(vget_low_u32(vmovl_u16(vreinterpret_u16_u32(vdup_n_u32(u))))));
}
FN_INLINE fn_vd vd_load_i16(const int16_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    return vcvtq_f64_s64(vmovl_s32(vget_low_s32(vmovl_s16(vreinterpret_s16_u32(vdup_n_u32(u))))));
}
FN_INLINE fn_vd vd_load_i32(const int32_t *p) { return vcvtq_f64_s64(vmovl_s32(vld1_s32(p))); }
FN_INLINE fn_vd vd_load_u32(const uint32_t *p) { return vcvtq_f64_u64(vmovl_u32(vld1_u32(p))); }
FN_INLINE fn_vd vd_load_i64(const int64_t *p) { return vcvtq_f64_s64(vld1q_s64(p)); }
FN_INLINE fn_vd vd_load_u64(const uint64_t *p) { return vcvtq_f64_u64(vld1q_u64(p)); }
#define FN_HAVE_VD_I64 1
FN_INLINE fn_vs vs_set1(float a) { return vdupq_n_f32(a); }
FN_INLINE fn_vs vs_load(const float *p) { return vld1q_f32(p); }
FN_INLINE void vs_store(float *p, fn_vs v) { vst1q_f32(p, v); }
FN_INLINE fn_vs vs_sub(fn_vs a, fn_vs b) { return vsubq_f32(a, b); }
FN_INLINE fn_vs vs_load_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
FN_INLINE void vs_store_f16(uint16_t *p, fn_vs v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }
FN_INLINE fn_vs vs_load_bf16(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshlq_n_u32(vmovl_u16(vld1_u16(p)), 16));
}
FN_INLINE void fn_sfence(void) {}

#else
/* -------------------------------------------- scalar (any C compiler) */
#define FN_SIMD_NAME "scalar (1 double / 1 float)"
#define FN_VL 1
#define FN_FL 1
#define FN_TILE_V 4
#define FN_TILE_VS 2
#define FN_HALF_HW 0
#define FN_HAVE_STREAM 0
#define FN_STREAM_ALIGN 8
typedef double fn_vd;
typedef float fn_vs;
FN_INLINE fn_vd vd_set1(double a) { return a; }
FN_INLINE fn_vd vd_load(const double *p) { return *p; }
FN_INLINE void vd_store(double *p, fn_vd v) { *p = v; }
FN_INLINE void vd_stream(double *p, fn_vd v) { *p = v; }
FN_INLINE fn_vd vd_add(fn_vd a, fn_vd b) { return a + b; }
FN_INLINE double vd_hsum(fn_vd v) { return v; }
FN_INLINE fn_vd vd_sub(fn_vd a, fn_vd b) { return a - b; }
FN_INLINE fn_vd vd_relu(fn_vd v) { return v < 0.0 ? 0.0 : v; }
FN_INLINE fn_vd vd_leaky(fn_vd v, fn_vd s) { return v >= 0.0 ? v : v * s; }
FN_INLINE fn_vd vd_leaky_unit(fn_vd v, fn_vd s) { return vd_leaky(v, s); }
FN_INLINE fn_vd vd_fma(fn_vd a, fn_vd b, fn_vd c) { return FN_FMA(a, b, c); }
FN_INLINE fn_vd vd_load_f32(const float *p) { return (double)*p; }
FN_INLINE void vd_store_f32(float *p, fn_vd v) { *p = (float)v; }
FN_INLINE void vd_stream16(double *p, fn_vd v) { *p = v; }
FN_INLINE void vd_stream16_f32(float *p, fn_vd v) { *p = (float)v; }
FN_INLINE void vd2_store_f32(float *p, fn_vd a, fn_vd b)
{
    p[0] = (float)a;
    p[1] = (float)b;
}
FN_INLINE void vd2_stream_f32(float *p, fn_vd a, fn_vd b) { vd2_store_f32(p, a, b); }
FN_INLINE fn_vd vd_load_f16(const uint16_t *p) { return (double)fn_h2f(*p); }
FN_INLINE fn_vd vd_load_bf16(const uint16_t *p) { return (double)fn_b2f(*p); }
FN_INLINE fn_vd vd_load_u8(const uint8_t *p) { return (double)*p; }
FN_INLINE fn_vd vd_load_i8(const int8_t *p) { return (double)*p; }
FN_INLINE fn_vd vd_load_u16(const uint16_t *p) { return (double)*p; }
FN_INLINE fn_vd vd_load_i16(const int16_t *p) { return (double)*p; }
FN_INLINE fn_vd vd_load_i32(const int32_t *p) { return (double)*p; }
FN_INLINE fn_vd vd_load_u32(const uint32_t *p) { return (double)*p; }
FN_INLINE fn_vs vs_set1(float a) { return a; }
FN_INLINE fn_vs vs_load(const float *p) { return *p; }
FN_INLINE void vs_store(float *p, fn_vs v) { *p = v; }
FN_INLINE fn_vs vs_sub(fn_vs a, fn_vs b) { return a - b; }
FN_INLINE fn_vs vs_fma(fn_vs a, fn_vs b, fn_vs c) { return FN_FMAF(a, b, c); }
FN_INLINE fn_vs vs_load_f16(const uint16_t *p) { return fn_h2f(*p); }
FN_INLINE void vs_store_f16(uint16_t *p, fn_vs v) { *p = fn_f2h(v); }
FN_INLINE fn_vs vs_load_bf16(const uint16_t *p) { return fn_b2f(*p); }
FN_INLINE void fn_sfence(void) {}
#endif

/* The loads the vector layer has no instruction for, lane by lane: 64-bit
 * integers (AVX-512 and NEON convert them), and the values rounded to float
 * first (x.astype(float32), for float32 and 16-bit outputs) of the types that
 * float does not hold exactly.  Not speed targets. */
#ifndef FN_HAVE_VD_I64
FN_INLINE fn_vd vd_load_i64(const int64_t *p)
{
    double t[FN_VL];
    int i;
    for (i = 0; i < FN_VL; i++) t[i] = (double)p[i];
    return vd_load(t);
}
FN_INLINE fn_vd vd_load_u64(const uint64_t *p)
{
    double t[FN_VL];
    int i;
    for (i = 0; i < FN_VL; i++) t[i] = (double)p[i];
    return vd_load(t);
}
#endif
#if !(defined(FN_HAVE_VD_I64) && defined(__AVX512F__))
FN_INLINE fn_vd vd_load_i64f(const int64_t *p)
{
    double t[FN_VL];
    int i;
    for (i = 0; i < FN_VL; i++) t[i] = (double)(float)p[i];
    return vd_load(t);
}
FN_INLINE fn_vd vd_load_u64f(const uint64_t *p)
{
    double t[FN_VL];
    int i;
    for (i = 0; i < FN_VL; i++) t[i] = (double)(float)p[i];
    return vd_load(t);
}
#endif
/* 32-bit integers and doubles: the exact double rounded once to float */
FN_INLINE fn_vd fn_vd_via_float(fn_vd v)
{
    double t[FN_VL];
    float f[FN_VL];
    int i;
    vd_store(t, v);
    for (i = 0; i < FN_VL; i++) f[i] = (float)t[i];
    return vd_load_f32(f);
}
FN_INLINE fn_vd vd_load_i32f(const int32_t *p) { return fn_vd_via_float(vd_load_i32(p)); }
FN_INLINE fn_vd vd_load_u32f(const uint32_t *p) { return fn_vd_via_float(vd_load_u32(p)); }
FN_INLINE fn_vd vd_load_f64f(const double *p) { return fn_vd_via_float(vd_load(p)); }

/* 16 8-bit integers widened to int32 (the exact integer statistics of
 * fn_kernels.c) into FN_VIN native vectors of int32 (GCC / clang vector
 * extensions at the register's width: one AVX-512 vector, two AVX2, four
 * SSE2 / NEON / generic ones; a 64-byte generic vector was lowered through
 * the stack at AVX2). */
#if defined(__GNUC__) || defined(__clang__)
#define FN_HAVE_VI 1
#if FN_VL == 8
#define FN_VIN 1
typedef int32_t fn_vi __attribute__((vector_size(64)));
FN_INLINE void vi16_load_u8(fn_vi *r, const uint8_t *p)
{
    r[0] = (fn_vi)_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}
FN_INLINE void vi16_load_i8(fn_vi *r, const int8_t *p)
{
    r[0] = (fn_vi)_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
}
#elif FN_VL == 4
#define FN_VIN 2
typedef int32_t fn_vi __attribute__((vector_size(32)));
FN_INLINE void vi16_load_u8(fn_vi *r, const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    r[0] = (fn_vi)_mm256_cvtepu8_epi32(v);
    r[1] = (fn_vi)_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8));
}
FN_INLINE void vi16_load_i8(fn_vi *r, const int8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    r[0] = (fn_vi)_mm256_cvtepi8_epi32(v);
    r[1] = (fn_vi)_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8));
}
#elif FN_VL == 2 && !defined(__aarch64__) && !defined(FN_SIMD_SCALAR)
#define FN_VIN 4
typedef int32_t fn_vi __attribute__((vector_size(16)));
FN_INLINE void vi16_load_u8(fn_vi *r, const uint8_t *p)
{
    const __m128i z = _mm_setzero_si128(), v = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i l = _mm_unpacklo_epi8(v, z), h = _mm_unpackhi_epi8(v, z);
    r[0] = (fn_vi)_mm_unpacklo_epi16(l, z);
    r[1] = (fn_vi)_mm_unpackhi_epi16(l, z);
    r[2] = (fn_vi)_mm_unpacklo_epi16(h, z);
    r[3] = (fn_vi)_mm_unpackhi_epi16(h, z);
}
FN_INLINE void vi16_load_i8(fn_vi *r, const int8_t *p)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i l = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8),
                  h = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
    r[0] = (fn_vi)_mm_srai_epi32(_mm_unpacklo_epi16(l, l), 16);
    r[1] = (fn_vi)_mm_srai_epi32(_mm_unpackhi_epi16(l, l), 16);
    r[2] = (fn_vi)_mm_srai_epi32(_mm_unpacklo_epi16(h, h), 16);
    r[3] = (fn_vi)_mm_srai_epi32(_mm_unpackhi_epi16(h, h), 16);
}
#elif FN_VL == 2 && defined(__aarch64__) && !defined(FN_SIMD_SCALAR)
#define FN_VIN 4
typedef int32_t fn_vi __attribute__((vector_size(16)));
FN_INLINE void vi16_load_u8(fn_vi *r, const uint8_t *p)
{
    const uint8x16_t v = vld1q_u8(p);
    const uint16x8_t l = vmovl_u8(vget_low_u8(v)), h = vmovl_u8(vget_high_u8(v));
    uint32x4_t q[4];
    q[0] = vmovl_u16(vget_low_u16(l));
    q[1] = vmovl_u16(vget_high_u16(l));
    q[2] = vmovl_u16(vget_low_u16(h));
    q[3] = vmovl_u16(vget_high_u16(h));
    memcpy(r, q, 64);
}
FN_INLINE void vi16_load_i8(fn_vi *r, const int8_t *p)
{
    const int8x16_t v = vld1q_s8(p);
    const int16x8_t l = vmovl_s8(vget_low_s8(v)), h = vmovl_s8(vget_high_s8(v));
    int32x4_t q[4];
    q[0] = vmovl_s16(vget_low_s16(l));
    q[1] = vmovl_s16(vget_high_s16(l));
    q[2] = vmovl_s16(vget_low_s16(h));
    q[3] = vmovl_s16(vget_high_s16(h));
    memcpy(r, q, 64);
}
#else
#define FN_VIN 4
typedef int32_t fn_vi __attribute__((vector_size(16)));
FN_INLINE void vi16_load_u8(fn_vi *r, const uint8_t *p)
{
    int i;
    for (i = 0; i < 16; i++) r[i / 4][i % 4] = p[i];
}
FN_INLINE void vi16_load_i8(fn_vi *r, const int8_t *p)
{
    int i;
    for (i = 0; i < 16; i++) r[i / 4][i % 4] = p[i];
}
#endif
#endif

/* bfloat16 narrowing: the scalar rule on every lane (bfloat16 is a storage
 * format here, its apply is not a speed target) */
FN_INLINE void vs_store_bf16(uint16_t *p, fn_vs v)
{
    float f[FN_FL];
    int i;
    vs_store(f, v);
    for (i = 0; i < FN_FL; i++) p[i] = fn_f2b(f[i]);
}

#if defined(__GNUC__) || defined(__clang__)
#define FN_PREFETCH(P, RW) __builtin_prefetch((const void *)(P), RW, 3)
#else
#define FN_PREFETCH(P, RW) ((void)0)
#endif

#endif /* FN_SIMD_H */
