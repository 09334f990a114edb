/*
 * The statistics of one input kind, included by fn_kernels.c once per kind with
 *   FN_TI   input storage type      FNS_SUF name suffix (f32, u8, i32f, ...)
 *   FN_LDV  FN_VL elements -> fn_vd FN_LDS  one element -> double
 * where the loads give the value the output type's kernels load: exact for
 * every kind but the *f ones (rounded to float first: 32/64-bit integers and
 * float64 normalized into float32 or 16-bit outputs).  The apply sets of
 * fn_kernels_dtype.h name their kind's statistics through FNS().  No include
 * guard on purpose.
 */
#define FNS(name) FN_CAT(name, FNS_SUF)

#if defined(__clang__)
#define FN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FN_UNROLL _Pragma("GCC unroll 16")
#else
#define FN_UNROLL
#endif

#include "fn_stats.h"
#include "fn_cl_stats.h"

#undef FN_UNROLL
#undef FNS
#undef FNS_SUF
#undef FN_TI
#undef FN_LDV
#undef FN_LDS
