/*
 * Backward kernels of instance / group norm: the gradients of
 * y = (x - mean) * rstd * w[c] + b[c] with respect to x, w and b, the
 * statistics recomputed from x.
 *
 * This header: the records, the kernels' struct and the merges, for any
 * translation unit (the engine's and the kernels').  The kernels, one set
 * per floating type: fn_backward.c.src, expanded by tools/gen_kernels.py
 * into fn_kernels_gen.c (bsums_f32, bgrad_cl_f16, ...).
 *
 * Numerics
 *   One pass reads x and dy together: per block of a channels-first row
 *   (FN_BLOCK elements) or per channel of a channels-last chunk, the forward's
 *   statistics of x (the same lanes, shift and order as fn_stats /
 *   stats_cl, so the same triple) and, in the same FN_LANES logical lanes,
 *   sum(dy) and sum(dy * (x - shift)), in double.  Blocks merge in their
 *   fixed order (fn_bsum_merge): triples by Chan's formula, the dy sums moved
 *   to the first block's shift.  After the unit's mean mu and rstd r are
 *   known, sum(dy * (x - mu)) = sum(dy * (x - ref)) - (mu - ref) * sum(dy).
 *   The second pass writes
 *     grad_x = a1 * dy + (a2 * (x - mu) + a0),
 *     a1 = r * w[c], a2 = -r^3 * mean_unit(gy * (x - mu)), a0 = -r * mean_unit(gy),  gy = dy * w[c],
 *   in double rounded once (float32 / float64), in float for 16-bit storage
 *   (mu split into float hi + lo as in the forward).  Every target adds the
 *   same values in the same order: the same bits for every SIMD level and
 *   thread count (fused and unfused multiply-adds differ, as in the forward).
 */
#ifndef FN_BACKWARD_TYPES
#define FN_BACKWARD_TYPES

#include "fn_base.h"

/* bytes: the channels-first grad pass's write-prefetch distance (16 lines) */
#define FN_BGRAD_AHEAD 1024

/* One block's (or channel's) sums, and the running sums of a row or channel:
 * t the statistics of x, sh the shift (the first element; of a running sum:
 * the first block's shift, ref), sdy = sum(dy), sdyx = sum(dy * (x - sh)). */
typedef struct {
    fn_triple t;
    double sh, sdy, sdyx;
} fn_bsum;

/* The kernels of one storage type.
 *   sums:    channels first, rows of S elements, each cut into blocks of
 *            FN_BLOCK: rec[r * nb + k] for block k of row r.
 *   grad:    channels first, rows of S, coefficients (mu, a1, a2, a0) per row
 *            (coef + 4 * r); stream: non-temporal stores (float32 / float64).
 *   sums_cl: channels last, a chunk of rows x C (the forward's stats_cl lanes:
 *            m rows per virtual row, walked in blocks of R rows), one record
 *            per channel in out[0..C); acc: 5 * W doubles of scratch.
 *   grad_cl: channels last, rows x C with per-lane coefficients: 4 arrays of
 *            W = C * m doubles (mu, a1, a2, a0) for float32 / float64, 5 of
 *            floats (hi, lo, a1, a2, a0) for 16-bit. */
struct fn_bwd_kernels_s {
    void (*sums)(const void *x, const void *dy, fn_ssize rows, fn_ssize S, fn_bsum *rec);
    void (*grad)(const void *x, const void *dy, void *gx, fn_ssize rows, fn_ssize S, const double *coef,
                 int stream);
    void (*sums_cl)(const void *x, const void *dy, fn_ssize rows, fn_ssize C, fn_ssize m, fn_ssize R,
                    double *acc, fn_bsum *out);
    void (*grad_cl)(const void *x, const void *dy, void *gx, fn_ssize rows, fn_ssize C, fn_ssize m,
                    const void *coef, int stream);
};
typedef struct fn_bwd_kernels_s fn_bwd_kernels;

/* b merged into the running sums a (a zero a takes b as it is). */
static inline void fn_bsum_merge(fn_bsum *a, const fn_bsum *b)
{
    if (a->t.n == 0.0) {
        *a = *b;
        return;
    }
    if (b->t.n == 0.0) return;
    fn_merge(&a->t, &b->t);
    a->sdyx += b->sdyx + (b->sh - a->sh) * b->sdy;
    a->sdy += b->sdy;
}

/* One unit (instance, group) from the running sums of its Cg channels st:
 * per channel sum(dy) into sdy[k] and sum(dy * (x - mu)) into sdyxc[k], the
 * coefficients (mu, a1, a2, a0) into coef[4k..4k+3]; returns rstd.  w: the
 * group's Cg weights, or NULL for ones.  A unit of one element has xhat = 0:
 * its grad_x is r * (gy - gy) = 0, written exactly (zero coefficients; the
 * formula would leave the rounding of r * w * dy).  Where r^3 or a2 leave
 * double's range (float64 data beyond about 1e100 or below 1e-100 in
 * magnitude) the caller computes the unit again from data scaled by a power of
 * two, with eps scaled to match (fastnorm._range). */
static inline double fn_bwd_unit(const fn_bsum *st, fn_ssize Cg, double eps, const double *w, double *sdy,
                                 double *sdyxc, double *coef)
{
    fn_triple t = {0.0, 0.0, 0.0};
    double mu, r, a = 0.0, b = 0.0, wk;
    fn_ssize k;
    for (k = 0; k < Cg; k++) fn_merge(&t, &st[k].t);
    mu = t.mean;
    r = 1.0 / sqrt(t.m2 / t.n + eps);
    for (k = 0; k < Cg; k++) {
        wk = w != NULL ? w[k] : 1.0;
        sdy[k] = st[k].sdy;
        sdyxc[k] = st[k].sdyx - (mu - st[k].sh) * st[k].sdy;
        a += wk * sdy[k];
        b += wk * sdyxc[k];
    }
    a /= t.n;
    b /= t.n;
    if (t.n == 1.0) r = 0.0 * r; /* one element: xhat = 0 and grad_x exactly 0 (NaN stays NaN) */
    for (k = 0; k < Cg; k++) {
        wk = w != NULL ? w[k] : 1.0;
        coef[4 * k] = mu;
        coef[4 * k + 1] = r * wk;
        /* b = 0 (a constant unit, or no correlation): a2 is -b exactly, also
         * where r^3 overflows (a constant unit with a tiny eps) */
        coef[4 * k + 2] = b == 0.0 ? -b : -(r * r * r) * b;
        coef[4 * k + 3] = -r * a;
    }
    return r;
}

#endif /* FN_BACKWARD_TYPES */
