/*
 * Channels-first apply, the interleaved statistics and apply, and the small-planes kernel,
 * for one (input, output) pair, included by fn_kernels_dtype.h (which defines
 * FN_TI, FN_TO, the loads, FN_WD, the store macros, FN() and FNS(), the
 * statistics of the input kind).  No include guard on purpose.
 */
#if FN_WD
/* y = act((x - mean) * sc + sh) over a run, in double, rounded once; y may
 * be x.  stream: non-temporal stores (no activation), the lanes before the
 * first aligned output line and after the last full vector stored normally. */
static void FN(apply)(const void *xv, void *yv, fn_ssize n, double mean, double sc, double sh, int act,
                      double slope, int stream)
{
    const FN_TI *x = (const FN_TI *)xv;
    FN_TO *y = (FN_TO *)yv;
    fn_ssize i = 0;
    if (act == FN_ACT_NONE) {
        const fn_vd hv = vd_set1(mean), scv = vd_set1(sc), shv = vd_set1(sh);
        stream = stream && FN_HAVE_STREAM;
        if (stream)
            for (; i < n && ((uintptr_t)(y + i) & (FN_STREAM_ALIGN - 1)); i++)
                y[i] = (FN_TO)FN_FMA(FN_LDS(x + i) - mean, sc, sh);
        for (; i + 2 * FN_VL <= n; i += 2 * FN_VL) {
            fn_vd d0 = vd_fma(vd_sub(FN_LDV(x + i), hv), scv, shv);
            fn_vd d1 = vd_fma(vd_sub(FN_LDV(x + i + FN_VL), hv), scv, shv);
            if (stream) FN_STREAM2(y + i, d0, d1);
            else FN_STORE2(y + i, d0, d1);
        }
        for (; i < n; i++) y[i] = (FN_TO)FN_FMA(FN_LDS(x + i) - mean, sc, sh);
        if (stream) fn_sfence(); /* the streamed lines are visible before we return */
        return;
    }
#if defined(FN_ACT_VIA)
    fn_buf_apply(&FN_ACT_VIA, xv, yv, n, mean, sc, sh, act, slope, 0);
#else
#define FN_LOOP(ACT)                                     \
    FN_IVDEP                                             \
    for (i = 0; i < n; i++) {                            \
        double v = FN_FMA(FN_LDS(x + i) - mean, sc, sh); \
        ACT;                                             \
        y[i] = (FN_TO)v;                                 \
    }
    FN_ACT_SWITCH(double, FN_SILU, FN_LOOP)
#undef FN_LOOP
#endif
}

#else /* 16-bit storage: applied in float */

static void FN(apply)(const void *xv, void *yv, fn_ssize n, double mean, double sc, double sh, int act,
                      double slope, int stream)
{
    const FN_TI *x = (const FN_TI *)xv;
    FN_TO *y = (FN_TO *)yv;
    const float hi = (float)mean, lo = (float)(mean - (double)hi), scf = (float)sc, shf = (float)sh;
    fn_ssize i = 0, s0, len;
    float buf[FN_CHUNK];
    (void)stream;
    if (act == FN_ACT_NONE) {
        const fn_vs h = vs_set1(hi), l = vs_set1(lo), s = vs_set1(scf), f = vs_set1(shf);
        for (; i + FN_FL <= n; i += FN_FL) FN_STH(y + i, vs_fma(vs_sub(vs_sub(FN_LDH(x + i), h), l), s, f));
        for (; i < n; i++) y[i] = FN_F2H(FN_FMAF((FN_LDF(x + i) - hi) - lo, scf, shf));
        return;
    }
    /* activations: through an L1 buffer of floats, the loop vectorized by
     * the compiler */
    for (s0 = 0; s0 < n; s0 += FN_CHUNK) {
        len = n - s0 < FN_CHUNK ? n - s0 : FN_CHUNK;
        for (i = 0; i + FN_FL <= len; i += FN_FL) vs_store(buf + i, FN_LDH(x + s0 + i));
        for (; i < len; i++) buf[i] = FN_LDF(x + s0 + i);
#define FN_LOOP(ACT)                                     \
    FN_IVDEP                                             \
    for (i = 0; i < len; i++) {                          \
        float v = FN_FMAF((buf[i] - hi) - lo, scf, shf); \
        ACT;                                             \
        buf[i] = v;                                      \
    }
        FN_ACT_SWITCH(float, FN_SILU_F, FN_LOOP)
#undef FN_LOOP
        for (i = 0; i + FN_FL <= len; i += FN_FL) FN_STH(y + s0 + i, vs_load(buf + i));
        for (; i < len; i++) y[s0 + i] = FN_F2H(buf[i]);
    }
}
#endif

/* ------------------------------------- statistics and apply, interleaved */
#if FN_WD
/* The statistics of block xs (ns elements, its triple into t) and the apply
 * without activation of a run xa -> ya (na elements, one mean / scale /
 * shift) in one loop.  The statistics are bound by the latency of their lane
 * chains (FN_LANES lanes, one dependent add per lane per FN_LANES elements),
 * the apply by throughput: interleaved, the apply's independent work fills
 * the chains' latency.  Each half does exactly what the statistics (stats_in)
 * and FN(apply) do, in the same order, so the same bits. */
static void FN(stats_apply)(const void *xsv, fn_ssize ns, fn_triple *t, const void *xav, void *yav,
                            fn_ssize na, double mean, double sc, double sh)
{
    const FN_TI *xs = (const FN_TI *)xsv, *xa = (const FN_TI *)xav;
    FN_TO *ya = (FN_TO *)yav;
    const double sft = ns > 0 ? FN_LDS(xs) : 0.0;
    const fn_vd shv = vd_set1(sft), hv = vd_set1(mean), scv = vd_set1(sc), fv = vd_set1(sh);
    fn_ssize i, j = 0, nv = ns - ns % FN_LANES, both;
    fn_lanes l;
    int k;
    fn_lanes_zero(&l);
    /* steps of FN_LANES elements of each while both have whole steps left */
    both = nv < na - na % FN_LANES ? nv : na - na % FN_LANES;
    for (i = 0; i < both; i += FN_LANES, j += FN_LANES) {
        FNS(lanes_step)(&l, xs + i, shv);
        FN_UNROLL for (k = 0; k < FN_LANES; k += 2 * FN_VL)
            FN_STORE2(ya + j + k, vd_fma(vd_sub(FN_LDV(xa + j + k), hv), scv, fv),
                      vd_fma(vd_sub(FN_LDV(xa + j + k + FN_VL), hv), scv, fv));
    }
    for (; i < nv; i += FN_LANES) FNS(lanes_step)(&l, xs + i, shv);
    FNS(lanes_done)(&l, xs, nv, ns, sft, t);
    for (; j + 2 * FN_VL <= na; j += 2 * FN_VL)
        FN_STORE2(ya + j, vd_fma(vd_sub(FN_LDV(xa + j), hv), scv, fv),
                  vd_fma(vd_sub(FN_LDV(xa + j + FN_VL), hv), scv, fv));
    for (; j < na; j++) ya[j] = (FN_TO)FN_FMA(FN_LDS(xa + j) - mean, sc, sh);
}
#else
static void FN(stats_apply)(const void *xs, fn_ssize ns, fn_triple *t, const void *xa, void *ya, fn_ssize na,
                            double mean, double sc, double sh)
{
    FNS(stats_in)((const FN_TI *)xs, ns, t);
    FN(apply)(xa, ya, na, mean, sc, sh, FN_ACT_NONE, 0.0, 0);
}
#endif

/* ------------------------------------------------ small planes, one call */
#if defined(FN_KEEP)
/* Small float32 planes (FN_KEEP_MAX elements): the statistics keep the
 * widened doubles in an L1 buffer and the apply reads them back, so each
 * element is converted once instead of twice; the same values feed the same
 * operations in the same order, so the same bits. */
FN_INLINE void fn_stats_keep_f32(const float *x, fn_ssize n, double *buf, fn_triple *t)
{
    const double sh = n > 0 ? (double)x[0] : 0.0;
    const fn_vd shv = vd_set1(sh);
    fn_ssize i, nv = n - n % FN_LANES;
    fn_lanes l;
    int k;
    fn_lanes_zero(&l);
    for (i = 0; i < nv; i += FN_LANES) {
        FN_UNROLL for (k = 0; k < FN_NV; k++) {
            fn_vd v = vd_load_f32(x + i + k * FN_VL);
            vd_store(buf + i + k * FN_VL, v);
            fn_lanes_add(&l, k, vd_sub(v, shv));
        }
    }
    for (i = nv; i < n; i++) buf[i] = (double)x[i];
    FNS(lanes_done)(&l, x, nv, n, sh, t);
}
FN_INLINE void fn_apply_keep_f32(const double *buf, float *y, fn_ssize n, double mean, double sc, double sh)
{
    const fn_vd hv = vd_set1(mean), scv = vd_set1(sc), shv = vd_set1(sh);
    fn_ssize i;
    for (i = 0; i + 2 * FN_VL <= n; i += 2 * FN_VL)
        vd2_store_f32(y + i, vd_fma(vd_sub(vd_load(buf + i), hv), scv, shv),
                      vd_fma(vd_sub(vd_load(buf + i + FN_VL), hv), scv, shv));
    for (; i < n; i++) y[i] = (float)FN_FMA(buf[i] - mean, sc, sh);
}
#endif

/* Channels-first planes [p0, p1) of L = Cg * S elements, each one statistics
 * block, on the calling thread, software-pipelined: statistics of plane p+1,
 * plane p normalized, then the coefficients of p+1.  The same formulas as
 * the block-by-block plans, so the same bits. */
static void FN(planes)(const void *xv, void *yv, fn_ssize p0, fn_ssize p1, fn_ssize L, fn_ssize S, fn_ssize G,
                       fn_ssize goff, fn_ssize Cg, double eps, const double *w, const double *b, int act,
                       double slope, fn_triple *tri, double *mean, double *scale, double *shift)
{
    const FN_TI *x = (const FN_TI *)xv;
    FN_TO *y = (FN_TO *)yv;
    fn_ssize p, r;
#if defined(FN_KEEP)
    const int keep = L <= FN_KEEP_MAX && act == FN_ACT_NONE;
    double kb[2][FN_KEEP_MAX];
#define FN_PLANE_STATS(q) \
    (keep ? fn_stats_keep_f32(x + (q) * L, L, kb[(q) & 1], &tri[q]) : FNS(stats_in)(x + (q) * L, L, &tri[q]))
#define FN_KEEPING keep
#else
#define FN_PLANE_STATS(q) FNS(stats_in)(x + (q) * L, L, &tri[q])
#define FN_KEEPING 0
#endif
    if (p0 >= p1) return;
    FN_PLANE_STATS(p0);
    fn_group_coefs(&tri[p0], eps, (goff + p0) % G, Cg, p0 * Cg, w, b, mean, scale, shift);
    for (p = p0; p < p1; p++) {
        if (p + 1 < p1 && Cg == 1 && act == FN_ACT_NONE && !FN_KEEPING) {
            /* the next plane's statistics interleaved with this plane's apply */
            FN(stats_apply)(x + (p + 1) * L, L, &tri[p + 1], x + p * L, y + p * L, L, mean[p], scale[p],
                            shift[p]);
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale, shift);
            continue;
        }
        if (p + 1 < p1) FN_PLANE_STATS(p + 1);
        for (r = p * Cg; r < (p + 1) * Cg; r++) {
#if defined(FN_KEEP)
            if (keep) {
                fn_apply_keep_f32(kb[p & 1] + (r - p * Cg) * S, y + r * S, S, mean[r], scale[r], shift[r]);
                continue;
            }
#endif
            FN(apply)(x + r * S, y + r * S, S, mean[r], scale[r], shift[r], act, slope, 0);
        }
        if (p + 1 < p1)
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale, shift);
    }
#undef FN_PLANE_STATS
#undef FN_KEEPING
}
