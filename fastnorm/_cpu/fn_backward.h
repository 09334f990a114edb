/*
 * Backward kernels of instance / group norm: the gradients of
 * y = (x - mean) * rstd * w[c] + b[c] with respect to x, w and b, the
 * statistics recomputed from x.
 *
 * Included twice over: the first part (types and the merges, any
 * translation unit: the engine includes this file for them) once, guarded;
 * the second part (the kernels) once per storage type from
 * fn_kernels_dtype.h, which defines FN_SUF and the type's macros.
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

/* the table of one target: the four storage types by code */
#define FN_BSET(SUF) {FN_CAT(bsums, SUF), FN_CAT(bgrad, SUF), FN_CAT(bsums_cl, SUF), FN_CAT(bgrad_cl, SUF)}
#define FN_BWD_TABLE \
    static const fn_bwd_kernels fn_bwd_table[4] = {FN_BSET(f16), FN_BSET(f32), FN_BSET(f64), FN_BSET(bf16)}

#endif /* FN_BACKWARD_TYPES */

/* ======================================== the kernels of one storage type */
#ifdef FN_SUF

/* vectors per register tile of the channels-last backward kernels: five
 * accumulators (sums) or four coefficients (grad) per vector */
#ifndef FN_BTILE_V
#define FN_BTILE_V (FN_TILE_V / 2)
#define FN_BTILE_LANES (FN_BTILE_V * FN_VL)
#if FN_BTILE_V > 2
#define FN_BTILE_REM(kk, CALL) \
    switch (kk) {              \
    case 1: CALL(1); break;    \
    case 2: CALL(2); break;    \
    case 3: CALL(3); break;    \
    default: break;            \
    }
#else
#define FN_BTILE_REM(kk, CALL) \
    if ((kk) == 1) CALL(1);
#endif
#endif

/* --------------------------------------------- channels-first sums */
/* One block of n <= FN_BLOCK elements: x's triple exactly as FN(stats_in),
 * and the dy sums in the same lanes. */
FN_INLINE void FN(bsum_block)(const FN_T *x, const FN_T *dy, fn_ssize n, fn_bsum *o)
{
    const double sh = n > 0 ? FN_LDS(x) : 0.0;
    const fn_vd shv = vd_set1(sh);
    fn_vd a[FN_NV], b[FN_NV], c[FN_NV], e[FN_NV];
    double s[4][FN_LANES], t1 = 0.0, t2 = 0.0, t3 = 0.0, t4 = 0.0;
    fn_ssize i, nv = n - n % FN_LANES;
    int k;
    for (k = 0; k < FN_NV; k++) {
        a[k] = vd_set1(0.0);
        b[k] = a[k];
        c[k] = a[k];
        e[k] = a[k];
    }
    for (i = 0; i < nv; i += FN_LANES) {
        FN_UNROLL for (k = 0; k < FN_NV; k++) {
            fn_vd d = vd_sub(FN_LDV(x + i + k * FN_VL), shv);
            fn_vd g = FN_LDV(dy + i + k * FN_VL);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
            c[k] = vd_add(c[k], g);
            e[k] = vd_fma(g, d, e[k]);
        }
    }
    for (i = nv; i < n; i++) {
        double d = FN_LDS(x + i) - sh, g = FN_LDS(dy + i);
        t1 += d;
        t2 = FN_FMA(d, d, t2);
        t3 += g;
        t4 = FN_FMA(g, d, t4);
    }
    for (k = 0; k < FN_NV; k++) {
        vd_store(s[0] + k * FN_VL, a[k]);
        vd_store(s[1] + k * FN_VL, b[k]);
        vd_store(s[2] + k * FN_VL, c[k]);
        vd_store(s[3] + k * FN_VL, e[k]);
    }
    fn_finish(&o->t, (double)n, sh, fn_lanes_sum(s[0]) + t1, fn_lanes_sum(s[1]) + t2);
    o->sh = sh;
    o->sdy = fn_lanes_sum(s[2]) + t3;
    o->sdyx = fn_lanes_sum(s[3]) + t4;
}

static void FN(bsums)(const void *xv, const void *dyv, fn_ssize rows, fn_ssize S, fn_bsum *rec)
{
    const FN_T *x = (const FN_T *)xv, *dy = (const FN_T *)dyv;
    fn_ssize r, s0;
    for (r = 0; r < rows; r++)
        for (s0 = 0; s0 < S; s0 += FN_BLOCK, rec++)
            FN(bsum_block)(x + r * S + s0, dy + r * S + s0, S - s0 < FN_BLOCK ? S - s0 : FN_BLOCK, rec);
}

/* --------------------------------------------- channels-first grad */
#if FN_WD
FN_INLINE void FN(bgrad_run)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize n, const double *cf, int stream)
{
    const double mu = cf[0], a1 = cf[1], a2 = cf[2], a0 = cf[3];
    const fn_vd mv = vd_set1(mu), v1 = vd_set1(a1), v2 = vd_set1(a2), v0 = vd_set1(a0);
    fn_ssize i = 0;
    stream = stream && FN_HAVE_STREAM;
    if (stream)
        for (; i < n && ((uintptr_t)(y + i) & (FN_STREAM_ALIGN - 1)); i++)
            y[i] = (FN_T)FN_FMA(a1, FN_LDS(dy + i), FN_FMA(a2, FN_LDS(x + i) - mu, a0));
    for (; i + 2 * FN_VL <= n; i += 2 * FN_VL) {
        fn_vd g0 = vd_fma(v1, FN_LDV(dy + i), vd_fma(v2, vd_sub(FN_LDV(x + i), mv), v0));
        fn_vd g1 = vd_fma(v1, FN_LDV(dy + i + FN_VL), vd_fma(v2, vd_sub(FN_LDV(x + i + FN_VL), mv), v0));
        if (stream) FN_STREAM2(y + i, g0, g1);
        else FN_STORE2(y + i, g0, g1);
    }
    for (; i < n; i++) y[i] = (FN_T)FN_FMA(a1, FN_LDS(dy + i), FN_FMA(a2, FN_LDS(x + i) - mu, a0));
    if (stream) fn_sfence();
}
#else
FN_INLINE void FN(bgrad_run)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize n, const double *cf, int stream)
{
    const float hi = (float)cf[0], lo = (float)(cf[0] - (double)hi);
    const float a1 = (float)cf[1], a2 = (float)cf[2], a0 = (float)cf[3];
    const fn_vs h = vs_set1(hi), l = vs_set1(lo), v1 = vs_set1(a1), v2 = vs_set1(a2), v0 = vs_set1(a0);
    fn_ssize i = 0;
    (void)stream;
    for (; i + FN_FL <= n; i += FN_FL)
        FN_STH(y + i, vs_fma(v1, FN_LDH(dy + i), vs_fma(v2, vs_sub(vs_sub(FN_LDH(x + i), h), l), v0)));
    for (; i < n; i++) y[i] = FN_F2H(FN_FMAF(a1, FN_H2F(dy[i]), FN_FMAF(a2, (FN_H2F(x[i]) - hi) - lo, a0)));
}
#endif

static void FN(bgrad)(const void *xv, const void *dyv, void *gv, fn_ssize rows, fn_ssize S,
                      const double *coef, int stream)
{
    const FN_T *x = (const FN_T *)xv, *dy = (const FN_T *)dyv;
    FN_T *y = (FN_T *)gv;
    fn_ssize r;
    for (r = 0; r < rows; r++) FN(bgrad_run)(x + r * S, dy + r * S, y + r * S, S, coef + 4 * r, stream);
}

/* --------------------------------------------- channels-last sums */
/* K vectors of lanes [j0, j0 + K * FN_VL) of nv rows of W, the forward's
 * cl_stats_tile plus the dy sums. */
FN_INLINE void FN(cl_bsum_tile)(const FN_T *x, const FN_T *dy, fn_ssize nv, fn_ssize W, fn_ssize j0,
                                const double *sh, double *s1, double *s2, double *s3, double *s4, int pf,
                                const int K)
{
    fn_vd h[FN_BTILE_V], a[FN_BTILE_V], b[FN_BTILE_V], c[FN_BTILE_V], e[FN_BTILE_V];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vd_load(sh + j0 + k * FN_VL);
        a[k] = vd_load(s1 + j0 + k * FN_VL);
        b[k] = vd_load(s2 + j0 + k * FN_VL);
        c[k] = vd_load(s3 + j0 + k * FN_VL);
        e[k] = vd_load(s4 + j0 + k * FN_VL);
    }
    for (r = 0; r < nv; r++) {
        const FN_T *p = x + r * W + j0, *q = dy + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nv * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
            fn_prefetch_lines(q + nv * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
        }
        FN_UNROLL for (k = 0; k < K; k++) {
            fn_vd d = vd_sub(FN_LDV(p + k * FN_VL), h[k]);
            fn_vd g = FN_LDV(q + k * FN_VL);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
            c[k] = vd_add(c[k], g);
            e[k] = vd_fma(g, d, e[k]);
        }
    }
    for (k = 0; k < K; k++) {
        vd_store(s1 + j0 + k * FN_VL, a[k]);
        vd_store(s2 + j0 + k * FN_VL, b[k]);
        vd_store(s3 + j0 + k * FN_VL, c[k]);
        vd_store(s4 + j0 + k * FN_VL, e[k]);
    }
}

FN_INLINE void FN(block_bcl)(const FN_T *x, const FN_T *dy, fn_ssize nv, fn_ssize W, const double *sh,
                             double *s1, double *s2, double *s3, double *s4, int pf)
{
    fn_ssize r, j, j0 = 0, kk;
    for (; j0 + FN_BTILE_LANES <= W; j0 += FN_BTILE_LANES)
        FN(cl_bsum_tile)(x, dy, nv, W, j0, sh, s1, s2, s3, s4, pf, FN_BTILE_V);
    kk = (W - j0) / FN_VL;
#define FN_CALL(K) FN(cl_bsum_tile)(x, dy, nv, W, j0, sh, s1, s2, s3, s4, pf, K)
    FN_BTILE_REM(kk, FN_CALL)
#undef FN_CALL
    j0 += kk * FN_VL;
    if (j0 < W)
        for (r = 0; r < nv; r++)
            for (j = j0; j < W; j++) {
                double d = FN_LDS(x + r * W + j) - sh[j], g = FN_LDS(dy + r * W + j);
                s1[j] += d;
                s2[j] = FN_FMA(d, d, s2[j]);
                s3[j] += g;
                s4[j] = FN_FMA(g, d, s4[j]);
            }
}

/* A chunk of rows x C: one record per channel, its triple exactly the
 * forward's stats_cl one (lanes of W = C * m, each adding its rows in order;
 * the m lanes of a channel then summed in order). */
static void FN(bsums_cl)(const void *xv, const void *dyv, fn_ssize rows, fn_ssize C, fn_ssize m, fn_ssize R,
                         double *acc, fn_bsum *out)
{
    const FN_T *x = (const FN_T *)xv, *dy = (const FN_T *)dyv;
    fn_ssize W = C * m, vr = rows / m, r0, r, c, k, j, nv;
    double *sh = acc, *s1 = acc + W, *s2 = acc + 2 * W, *s3 = acc + 3 * W, *s4 = acc + 4 * W;
    const int wide = W > FN_BTILE_LANES;
    if (rows <= 0) {
        for (c = 0; c < C; c++) memset(&out[c], 0, sizeof(fn_bsum));
        return;
    }
    for (c = 0; c < C; c++) sh[c] = FN_LDS(x + c);
    for (j = C; j < W; j++) sh[j] = sh[j - C];
    for (j = 0; j < W; j++) s1[j] = s2[j] = s3[j] = s4[j] = 0.0;
    if (wide) {
        /* blocks of about FN_CL_WALK bytes of x and dy together (L1) */
        fn_ssize rw = FN_CL_WALK / (fn_ssize)(2 * W * sizeof(FN_T)) * m;
        if (rw < m) rw = m;
        if (rw < R) R = rw;
    }
    for (r0 = 0; r0 < vr * m; r0 += R) {
        nv = (vr * m - r0 < R ? vr * m - r0 : R) / m;
        FN(block_bcl)(x + r0 * C, dy + r0 * C, nv, W, sh, s1, s2, s3, s4, wide);
    }
    for (r = vr * m; r < rows; r++) {
        const FN_T *p = x + r * C, *q = dy + r * C;
        for (c = 0; c < C; c++) {
            double d = FN_LDS(p + c) - sh[c], g = FN_LDS(q + c);
            s1[c] += d;
            s2[c] = FN_FMA(d, d, s2[c]);
            s3[c] += g;
            s4[c] = FN_FMA(g, d, s4[c]);
        }
    }
    for (c = 0; c < C; c++) {
        double a = s1[c], b = s2[c], g = s3[c], e = s4[c];
        for (k = 1; k < m; k++) {
            a += s1[k * C + c];
            b += s2[k * C + c];
            g += s3[k * C + c];
            e += s4[k * C + c];
        }
        fn_finish(&out[c].t, (double)rows, sh[c], a, b);
        out[c].sh = sh[c];
        out[c].sdy = g;
        out[c].sdyx = e;
    }
}

/* --------------------------------------------- channels-last grad */
#if FN_WD
FN_INLINE void FN(cl_bgrad_tile)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const double *cf, int pf, const int K)
{
    fn_vd h[FN_BTILE_V], c1[FN_BTILE_V], c2[FN_BTILE_V], c0[FN_BTILE_V];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vd_load(cf + j0 + k * FN_VL);
        c1[k] = vd_load(cf + W + j0 + k * FN_VL);
        c2[k] = vd_load(cf + 2 * W + j0 + k * FN_VL);
        c0[k] = vd_load(cf + 3 * W + j0 + k * FN_VL);
    }
    for (r = 0; r < nr; r++) {
        const FN_T *p = x + r * W + j0, *q = dy + r * W + j0;
        FN_T *o = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
            fn_prefetch_lines(q + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
            fn_prefetch_lines(o + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 1);
        }
        FN_UNROLL for (k = 0; k < K; k++)
            FN_STORE1(o + k * FN_VL, vd_fma(c1[k], FN_LDV(q + k * FN_VL),
                                            vd_fma(c2[k], vd_sub(FN_LDV(p + k * FN_VL), h[k]), c0[k])));
    }
}

FN_INLINE void FN(cl_bgrad_rows)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize nr, fn_ssize W,
                                 const double *cf, int pf)
{
    fn_ssize r, j, j0 = 0, kk;
    for (; j0 + FN_BTILE_LANES <= W; j0 += FN_BTILE_LANES)
        FN(cl_bgrad_tile)(x, dy, y, nr, W, j0, cf, pf, FN_BTILE_V);
    kk = (W - j0) / FN_VL;
#define FN_CALL(K) FN(cl_bgrad_tile)(x, dy, y, nr, W, j0, cf, pf, K)
    FN_BTILE_REM(kk, FN_CALL)
#undef FN_CALL
    j0 += kk * FN_VL;
    if (j0 < W)
        for (r = 0; r < nr; r++)
            for (j = j0; j < W; j++)
                y[r * W + j] =
                    (FN_T)FN_FMA(cf[W + j], FN_LDS(dy + r * W + j),
                                 FN_FMA(cf[2 * W + j], FN_LDS(x + r * W + j) - cf[j], cf[3 * W + j]));
}

/* nr rows of W in groups of about FN_CL_APPLY_BYTES of x and dy; streamed
 * row by row, front to back, for rows of whole vectors of at most 64 lanes
 * into a 16-byte aligned output (the forward's rule) */
FN_INLINE void FN(cl_bgrad_part)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize nr, fn_ssize W,
                                 const double *cf, int stream)
{
    fn_ssize g = W > 0 ? FN_CL_APPLY_BYTES / (fn_ssize)(2 * sizeof(FN_T) * W) : nr, r0, cnt;
    const int pf = W > FN_BTILE_LANES;
    if (g < 1) g = 1;
    stream = stream && FN_HAVE_STREAM && FN_VL >= 4 && W <= 64 && W % FN_VL == 0 && ((uintptr_t)y & 15) == 0;
    if (stream) {
        fn_ssize r, j;
        for (r = 0; r < nr; r++)
            for (j = 0; j < W; j += FN_VL)
                FN_STREAM1(y + r * W + j, vd_fma(vd_load(cf + W + j), FN_LDV(dy + r * W + j),
                                                 vd_fma(vd_load(cf + 2 * W + j),
                                                        vd_sub(FN_LDV(x + r * W + j), vd_load(cf + j)),
                                                        vd_load(cf + 3 * W + j))));
        fn_sfence();
        return;
    }
    for (r0 = 0; r0 < nr; r0 += cnt) {
        cnt = nr - r0 < g ? nr - r0 : g;
        FN(cl_bgrad_rows)(x + r0 * W, dy + r0 * W, y + r0 * W, cnt, W, cf, pf);
    }
}

static void FN(bgrad_cl)(const void *xv, const void *dyv, void *gv, fn_ssize rows, fn_ssize C, fn_ssize m,
                         const void *coefv, int stream)
{
    const FN_T *x = (const FN_T *)xv, *dy = (const FN_T *)dyv;
    FN_T *y = (FN_T *)gv;
    const double *cf = (const double *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, c;
    FN(cl_bgrad_part)(x, dy, y, vr, W, cf, stream);
    /* rows that do not fill a virtual row: lanes [0, C) of the same arrays */
    for (r = vr * m; r < rows; r++)
        for (c = 0; c < C; c++)
            y[r * C + c] = (FN_T)FN_FMA(cf[W + c], FN_LDS(dy + r * C + c),
                                        FN_FMA(cf[2 * W + c], FN_LDS(x + r * C + c) - cf[c], cf[3 * W + c]));
}

#else /* 16-bit storage: grad in float */

FN_INLINE void FN(cl_bgrad_tile)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const float *cf, int pf, const int K)
{
    fn_vs h[FN_TILE_VS], l[FN_TILE_VS], c1[FN_TILE_VS], c2[FN_TILE_VS], c0[FN_TILE_VS];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vs_load(cf + j0 + k * FN_FL);
        l[k] = vs_load(cf + W + j0 + k * FN_FL);
        c1[k] = vs_load(cf + 2 * W + j0 + k * FN_FL);
        c2[k] = vs_load(cf + 3 * W + j0 + k * FN_FL);
        c0[k] = vs_load(cf + 4 * W + j0 + k * FN_FL);
    }
    for (r = 0; r < nr; r++) {
        const FN_T *p = x + r * W + j0, *q = dy + r * W + j0;
        FN_T *o = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_FL * 2, 0);
            fn_prefetch_lines(q + nr * W, K * FN_FL * 2, 0);
            fn_prefetch_lines(o + nr * W, K * FN_FL * 2, 1);
        }
        FN_UNROLL for (k = 0; k < K; k++)
            FN_STH(o + k * FN_FL,
                   vs_fma(c1[k], FN_LDH(q + k * FN_FL),
                          vs_fma(c2[k], vs_sub(vs_sub(FN_LDH(p + k * FN_FL), h[k]), l[k]), c0[k])));
    }
}

FN_INLINE void FN(bgrad_cl_one)(const FN_T *x, const FN_T *dy, FN_T *y, fn_ssize W, fn_ssize j,
                                const float *cf)
{
    y[j] = FN_F2H(FN_FMAF(cf[2 * W + j], FN_H2F(dy[j]),
                          FN_FMAF(cf[3 * W + j], (FN_H2F(x[j]) - cf[j]) - cf[W + j], cf[4 * W + j])));
}

static void FN(bgrad_cl)(const void *xv, const void *dyv, void *gv, fn_ssize rows, fn_ssize C, fn_ssize m,
                         const void *coefv, int stream)
{
    const FN_T *x = (const FN_T *)xv, *dy = (const FN_T *)dyv;
    FN_T *y = (FN_T *)gv;
    const float *cf = (const float *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, j, r0, cnt, g, j0, kk;
    const int pf = W > FN_TILE_VS * FN_FL;
    (void)stream;
    g = W > 0 ? FN_CL_APPLY_BYTES / (4 * W) : vr;
    if (g < 1) g = 1;
    for (r0 = 0; r0 < vr; r0 += cnt) {
        const FN_T *xg = x + r0 * W, *dg = dy + r0 * W;
        FN_T *yg = y + r0 * W;
        cnt = vr - r0 < g ? vr - r0 : g;
        for (j0 = 0; j0 + FN_TILE_VS * FN_FL <= W; j0 += FN_TILE_VS * FN_FL)
            FN(cl_bgrad_tile)(xg, dg, yg, cnt, W, j0, cf, pf, FN_TILE_VS);
        kk = (W - j0) / FN_FL;
#define FN_CALL(K) FN(cl_bgrad_tile)(xg, dg, yg, cnt, W, j0, cf, pf, K)
        FN_TILE_REM_S(kk, FN_CALL)
#undef FN_CALL
        j0 += kk * FN_FL;
        for (r = 0; r < cnt && j0 < W; r++)
            for (j = j0; j < W; j++) FN(bgrad_cl_one)(xg + r * W, dg + r * W, yg + r * W, W, j, cf);
    }
    /* rows that do not fill a virtual row: lanes [0, C) of the same arrays */
    for (r = vr * m; r < rows; r++)
        for (j = 0; j < C; j++) FN(bgrad_cl_one)(x + r * C, dy + r * C, y + r * C, W, j, cf);
}
#endif

#endif /* FN_SUF */
