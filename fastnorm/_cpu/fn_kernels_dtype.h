/*
 * The kernels of one storage type, included by fn_kernels.c once per type with
 *   FN_T    storage type            FN_SUF  name suffix (f32, f64, f16, bf16)
 *   FN_LDV  FN_VL elements -> fn_vd FN_LDS  one element -> double
 *   FN_WD   1: applied in double (float32, float64); 0: in float (16-bit,
 *           with FN_LDH / FN_STH for FN_FL elements and FN_H2F / FN_F2H for one)
 * No include guard on purpose.
 */
#define FN(name) FN_CAT(name, FN_SUF)

#if defined(__clang__)
#define FN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FN_UNROLL _Pragma("GCC unroll 16")
#else
#define FN_UNROLL
#endif

/* stores of working-precision vectors into the storage type (f32/f64), and
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

#include "fn_stats.h"
#include "fn_apply.h"
#include "fn_cl.h"
#include "fn_backward.h"

#undef FN_STORE2
#undef FN_STREAM2
#undef FN_STORE1
#undef FN_STREAM1
#undef FN_SILU
#undef FN_UNROLL
#undef FN
#undef FN_T
#undef FN_SUF
#undef FN_LDV
#undef FN_LDS
#undef FN_LDH
#undef FN_STH
#undef FN_H2F
#undef FN_F2H
#undef FN_WD
#undef FN_F32
