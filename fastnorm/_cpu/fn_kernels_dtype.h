/*
 * The apply kernels of one (input, output) pair, included by fn_kernels.c once
 * per pair it instantiates, with
 *   FN_TI   input storage type       FN_TO   output storage type
 *   FN_SUF  name suffix (f32, u8_f32, f32_f16, ...)
 *   FNS_SUF the suffix of the input kind's statistics (fn_kernels_stats.h,
 *           instantiated before: planes and stats_apply call them)
 *   FN_WD   1: applied in double (float32, float64 outputs), with
 *           FN_LDV   FN_VL inputs -> fn_vd    FN_LDS  one input -> double
 *           FN_F32   defined for a float32 output (else float64)
 *           FN_KEEP  defined for float32 -> float32 (small planes keep their doubles)
 *           FN_ACT_VIA  if defined, the fn_buf_pair the activations run
 *                    through (the output type's own activation loops)
 *           0: in float (16-bit outputs), with
 *           FN_LDH   FN_FL inputs -> fn_vs    FN_LDF  one input -> float
 *           FN_STH   FN_FL floats -> outputs  FN_F2H  one float -> output
 *   FN_ELEM_BYTES  the wider of the two element sizes (channels-last groups)
 * No include guard on purpose.
 */
#define FN(name) FN_CAT(name, FN_SUF)
#define FNS(name) FN_CAT(name, FNS_SUF)
#define FN_ELEM_BYTES ((fn_ssize)(sizeof(FN_TI) > sizeof(FN_TO) ? sizeof(FN_TI) : sizeof(FN_TO)))

#if defined(__clang__)
#define FN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FN_UNROLL _Pragma("GCC unroll 16")
#else
#define FN_UNROLL
#endif

/* stores of working-precision vectors into the output type (f32/f64), and
 * the silu of the working type */
#if FN_WD
#if defined(FN_F32)
#define FN_STORE2(p, a, b) vd2_store_f32(p, a, b)
#define FN_STREAM2(p, a, b) vd2_stream_f32(p, a, b)
#define FN_STORE1(p, a) vd_store_f32(p, a)
#define FN_STREAM1(p, a) vd_stream16_f32(p, a)
#define FN_SILU fn_silu_d
#else
#define FN_STORE2(p, a, b) (vd_store(p, a), vd_store((p) + FN_VL, b))
#define FN_STREAM2(p, a, b) (vd_stream(p, a), vd_stream((p) + FN_VL, b))
#define FN_STORE1(p, a) vd_store(p, a)
#define FN_STREAM1(p, a) vd_stream16(p, a)
#define FN_SILU fn_silu_libm
#endif
#endif

#include "fn_apply.h"
#include "fn_cl.h"

/* the backward kernels: the four floating types into themselves (FN_BWD) */
#ifdef FN_BWD
#define FN_T FN_TI
#if !FN_WD /* its statistics-like pass reads 16-bit data into doubles */
#define FN_H2F(v) FN_LDF(&(v))
#define FN_LDV FN_BWD_LDV
#define FN_LDS(p) ((double)FN_LDF(p))
#endif
#include "fn_backward.h"
#undef FN_T
#undef FN_H2F
#undef FN_BWD
#undef FN_BWD_LDV
#endif

#undef FN_STORE2
#undef FN_STREAM2
#undef FN_STORE1
#undef FN_STREAM1
#undef FN_SILU
#undef FN_UNROLL
#undef FN_ELEM_BYTES
#undef FN
#undef FNS
#undef FN_TI
#undef FN_TO
#undef FN_SUF
#undef FNS_SUF
#undef FN_LDV
#undef FN_LDS
#undef FN_LDH
#undef FN_LDF
#undef FN_STH
#undef FN_F2H
#undef FN_WD
#undef FN_F32
#undef FN_KEEP
#undef FN_ACT_VIA
