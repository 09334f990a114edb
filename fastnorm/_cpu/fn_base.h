/*
 * fastnorm kernels: what every translation unit shares (the engine's
 * dispatch and each per-target kernel object).
 *
 * Numerics
 *   Statistics: each block of at most FN_BLOCK elements yields a Welford
 *   triple (count, mean, M2).  Inside a block the sums are shifted by the
 *   block's first element and accumulated in double over FN_LANES logical
 *   lanes (element i goes to lane i % FN_LANES, whatever the vector width),
 *   then reduced in one fixed order (fn_vlanes_sum).  Because the shift is one
 *   of the block's own values, |mean - shift|^2 <= count * var, so the shifted
 *   second moment never cancels more than log10(FN_BLOCK) ~ 4 of double's 16
 *   digits.  Blocks are merged with Chan's formula in an order that depends
 *   only on the shape: every thread count and every target gives the same bits.
 *   Apply: y = ((x - hi) - lo) * scale + shift with one fused multiply-add, in
 *   double for float32/float64 (lo = 0) and in float for 16-bit storage (the
 *   double mean split into hi + lo), rounded once to the storage type.
 *
 * Input and output types
 *   The input may be any storage type (floating or integer), the output any
 *   floating one.  The kernels that run are the output type's; each input
 *   element is converted on load to the value those kernels load from their
 *   own type: float for float32 and 16-bit outputs (x.astype(float32): an
 *   integer above 2^24 or a float64 rounds to nearest even), double for
 *   float64 outputs.  So a uint8 input normalized into float32 gives the bits
 *   of its float32 copy normalized, without the copy.  Statistics alone
 *   (no output) load double: the exact values of every input type but
 *   64-bit integers above 2^53 (rounded to nearest even, as astype(float64)).
 */
#ifndef FN_BASE_H
#define FN_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef ptrdiff_t fn_ssize; /* Py_ssize_t without Python.h */

#if defined(__GNUC__) || defined(__clang__)
#define FN_INLINE static inline __attribute__((always_inline))
#else
#define FN_INLINE static inline
#endif

#define FN_BLOCK 16384         /* elements per statistics block (fixed by design) */
#define FN_LANES 16            /* logical accumulation lanes of a block */
#define FN_CHUNK 512           /* floats: L1 buffer of the 16-bit activation paths */
#define FN_CL_WALK 16384       /* bytes: channels-last statistics block for rows wider than a tile */
#define FN_CL_APPLY_BYTES 8192 /* bytes of input per group of channels-last apply rows */
#define FN_KEEP_MAX 1024       /* float32 planes up to this keep their widened doubles */
#define FN_KEEP_BATCH 8        /* kept planes whose coefficients are computed together */
#define FN_ALIAS_BYTES 1024    /* fn_store_ahead: store-to-load distances that stall */

/* Channels-last rows wider than a tile whose groups of FN_CL_GROUP rows span
 * at most FN_CL_GROUP_SPAN bytes of input are walked a group at a time over
 * the whole width (the statistics of 4- and 8-byte inputs, the rows path):
 * such a group is one stream for the prefetchers; rows 1 KiB or more apart
 * interleaved so measured 1.2-1.5x slower than the tiles' strips
 * (benchmarks/README.md, round 16). */
#ifndef FN_CL_GROUP
#define FN_CL_GROUP 4
#endif
#ifndef FN_CL_GROUP_SPAN
#define FN_CL_GROUP_SPAN 1024
#endif

/* apply_cl's stream argument: bit 0 non-temporal stores, FN_CL_ROWS: rows
 * wider than a register tile normalized row by row (fn_plan.h, fn_plan.rows) */
#define FN_CL_ROWS 2

/* Whether an elementwise pass reading x and writing y, run forward, would
 * store just ahead of its loads: y starts less than FN_ALIAS_BYTES after x
 * in the low 12 address bits, so each load matches the address bits of a
 * store a few steps earlier, which the CPU makes it wait for ("4K
 * aliasing").  Such passes run from their end instead; the order of an
 * elementwise pass changes no bit. */
FN_INLINE int fn_store_ahead(const void *x, const void *y)
{
    const size_t d = ((size_t)(uintptr_t)y - (size_t)(uintptr_t)x) & 4095u;
    return d > 0 && d < FN_ALIAS_BYTES;
}

/* activations fused into the apply pass */
enum { FN_ACT_NONE = 0, FN_ACT_RELU = 1, FN_ACT_LEAKY = 2, FN_ACT_SILU = 3 };
/* The activations the vector apply loops run (the others take the
 * activation switch's loops): none, relu and leaky relu, each exactly its
 * scalar form (fn_kernels.c's fn_d_act; fn_simd.h's vd_relu, vd_leaky).
 * Only they stream and interleave the next plane's statistics. */
FN_INLINE int fn_act_in_vectors(int act)
{
    return act == FN_ACT_NONE || act == FN_ACT_RELU || act == FN_ACT_LEAKY;
}
/* storage codes, shared with fastnorm._validate: the floating ones (every
 * output type) first, then the integer inputs */
enum {
    FN_F16 = 0,
    FN_F32 = 1,
    FN_F64 = 2,
    FN_BF16 = 3,
    FN_U8 = 4,
    FN_I8 = 5,
    FN_U16 = 6,
    FN_I16 = 7,
    FN_U32 = 8,
    FN_I32 = 9,
    FN_U64 = 10,
    FN_I64 = 11
};
#define FN_NCODES 12 /* input codes */
#define FN_NOUT 4    /* output codes: the floating ones, 0 .. 3 */

typedef struct { double n, mean, m2; } fn_triple;

/* Chan et al. pairwise merge of b into a. */
static inline void fn_merge(fn_triple *a, const fn_triple *b)
{
    if (b->n == 0.0) return;
    if (a->n == 0.0) {
        *a = *b;
        return;
    }
    double n = a->n + b->n;
    double d = b->mean - a->mean;
    double fb = b->n / n;
    a->mean += d * fb;
    a->m2 += b->m2 + d * d * (a->n * fb);
    a->n = n;
}

/* Shifted sums to a triple; the finalizer owns the edge cases. */
static inline void fn_finish(fn_triple *t, double cnt, double shift, double s1, double s2)
{
    t->n = cnt;
    if (cnt == 0.0) {
        t->mean = 0.0;
        t->m2 = 0.0;
        return;
    }
    double q = s1 / cnt;
    double m2 = s2 - s1 * q;
    t->mean = shift + q;
    t->m2 = (m2 < 0.0) ? 0.0 : m2; /* NaN stays NaN */
}

/* Per-channel coefficients of one (instance, group) from its triple.
 * NaN statistics (the unit holds a NaN, or infinities): every output is NaN,
 * and which NaN must not depend on the target.  x86 returns the first NaN
 * operand of an operation, and the vector widths compile the multiply-add
 * with different operand orders, so NaN coefficients gave NaNs whose sign
 * and payload differed between SIMD levels.  Here such a unit gets mean =
 * FN_NAN, scale 1 and shift 0: x - mean is x's own NaN (quieted) where x is
 * NaN, else FN_NAN, and it is the multiply-add's only NaN operand. */
#define FN_NAN ((double)NAN) /* the quiet NaN with sign and payload 0 */
static inline void fn_group_coefs_rs(const fn_triple *t, double rs, fn_ssize g, fn_ssize Cg, fn_ssize row0,
                                     const double *w, const double *b, double *mean, double *scale,
                                     double *shift)
{
    const int nan = t->mean != t->mean || t->m2 != t->m2;
    fn_ssize k, c;
    for (k = 0; k < Cg; k++) {
        c = g * Cg + k;
        mean[row0 + k] = nan ? FN_NAN : t->mean;
        scale[row0 + k] = nan ? 1.0 : (w != NULL ? rs * w[c] : rs);
        shift[row0 + k] = nan ? 0.0 : (b != NULL ? b[c] : 0.0);
    }
}
/* rs = 1 / sqrt(var + eps), var = M2 / count: the one formula */
static inline void fn_group_coefs(const fn_triple *t, double eps, fn_ssize g, fn_ssize Cg, fn_ssize row0,
                                  const double *w, const double *b, double *mean, double *scale,
                                  double *shift)
{
    fn_group_coefs_rs(t, 1.0 / sqrt(t->m2 / t->n + eps), g, Cg, row0, w, b, mean, scale, shift);
}

/* ---- one target's kernels: the dispatch table ------------------------- */
/* One set per (input code, output code); x is read as the input type, y
 * written as the output type, the coefficients are the output type's.
 * Channels-first: stats of one block; apply of a run with one (mean, scale,
 * shift); planes: planes [p0, p1) of one block each, statistics and apply on
 * the calling thread (plane p in group (goff + p) % G).  Channels-last: stats of a chunk of rows x C (acc:
 * 3*W doubles of scratch), apply with per-lane coefficients (4 arrays of W:
 * hi, lo, scale, shift; double for float32/float64, float for 16-bit).
 * stream: non-temporal output stores (float32/float64, no activation). */
typedef struct {
    void (*stats)(const void *x, fn_ssize n, fn_triple *t);
    void (*apply)(const void *x, void *y, fn_ssize n, double mean, double sc, double sh, int act,
                  double slope, int stream);
    void (*planes)(const void *x, void *y, fn_ssize p0, fn_ssize p1, fn_ssize L, fn_ssize S, fn_ssize G,
                   fn_ssize goff, fn_ssize Cg, double eps, const double *w, const double *b, int act,
                   double slope, fn_triple *tri, double *mean, double *scale, double *shift);
    void (*stats_cl)(const void *x, fn_ssize rows, fn_ssize C, fn_ssize m, fn_ssize R, double *acc,
                     fn_triple *out);
    void (*apply_cl)(const void *x, void *y, fn_ssize rows, fn_ssize C, fn_ssize m, const void *coef, int act,
                     double slope, int stream);
    /* stats of one block and, interleaved, the apply of another run (normal
     * stores): what stats then apply would give */
    void (*stats_apply)(const void *xs, fn_ssize ns, fn_triple *t, const void *xa, void *ya, fn_ssize na,
                        double mean, double sc, double sh, int act, double slope);
} fn_dtype_kernels;

struct fn_bwd_kernels_s; /* the backward kernels: fn_backward.h */

typedef struct {
    const char *level;  /* FASTNORM_ISA name: x86-64-v4, x86-64-v3, x86-64, neon, generic */
    const char *vector; /* the vector layer: "AVX-512 (8 doubles)", ... */
    int fused;          /* multiply-adds rounded once */
    int half_hw;        /* float16 converted by instructions (F16C / NEON) */
    int stream;         /* non-temporal output stores */
    fn_dtype_kernels k[FN_NCODES][FN_NOUT]; /* by (input code, output code) */
    void (*widen_f16)(const uint16_t *src, float *dst, fn_ssize n);
    void (*narrow_f16)(const float *src, uint16_t *dst, fn_ssize n);
    void (*copy)(const char *src, char *dst, fn_ssize n, int stream);
    const struct fn_bwd_kernels_s *bwd; /* backward kernels by storage code (fn_backward.h) */
} fn_target;

#endif /* FN_BASE_H */
