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

/* ------------------------------------------------------------ statistics */
/* Triple of one contiguous block (n <= FN_BLOCK): element i goes to logical
 * lane i % FN_LANES (FN_LANES / FN_VL vectors), the tail to a scalar pair;
 * shifted by the block's first element. */
FN_INLINE void FN(stats_in)(const FN_T *x, fn_ssize n, fn_triple *t)
{
    enum { NV = FN_LANES / FN_VL };
    double sh = n > 0 ? FN_LDS(x) : 0.0, t1 = 0.0, t2 = 0.0, s1[FN_LANES], s2[FN_LANES];
    fn_vd shv = vd_set1(sh), a[NV], b[NV];
    fn_ssize i, nv = n - n % FN_LANES;
    int k;
    for (k = 0; k < NV; k++) { a[k] = vd_set1(0.0); b[k] = a[k]; }
    for (i = 0; i < nv; i += FN_LANES) {
        FN_UNROLL for (k = 0; k < NV; k++) {
            fn_vd d = vd_sub(FN_LDV(x + i + k * FN_VL), shv);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
        }
    }
    for (k = 0; k < NV; k++) {
        vd_store(s1 + k * FN_VL, a[k]);
        vd_store(s2 + k * FN_VL, b[k]);
    }
    for (i = nv; i < n; i++) {
        double d = FN_LDS(x + i) - sh;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_finish(t, (double)n, sh, fn_lanes_sum(s1) + t1, fn_lanes_sum(s2) + t2);
}

static void FN(stats)(const void *x, fn_ssize n, fn_triple *t)
{
    FN(stats_in)((const FN_T *)x, n, t);
}

/* ------------------------------------------------ channels-first apply */
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

/* y = act((x - mean) * sc + sh) over a run, in double, rounded once; y may
 * be x.  stream: non-temporal stores (no activation), the lanes before the
 * first aligned output line and after the last full vector stored normally. */
static void FN(apply)(const void *xv, void *yv, fn_ssize n, double mean, double sc, double sh,
                      int act, double slope, int stream)
{
    const FN_T *x = (const FN_T *)xv;
    FN_T *y = (FN_T *)yv;
    fn_ssize i = 0;
    if (act == FN_ACT_NONE) {
        const fn_vd hv = vd_set1(mean), scv = vd_set1(sc), shv = vd_set1(sh);
        stream = stream && FN_HAVE_STREAM;
        if (stream)
            for (; i < n && ((uintptr_t)(y + i) & (FN_STREAM_ALIGN - 1)); i++)
                y[i] = (FN_T)FN_FMA(FN_LDS(x + i) - mean, sc, sh);
        for (; i + 2 * FN_VL <= n; i += 2 * FN_VL) {
            fn_vd d0 = vd_fma(vd_sub(FN_LDV(x + i), hv), scv, shv);
            fn_vd d1 = vd_fma(vd_sub(FN_LDV(x + i + FN_VL), hv), scv, shv);
            if (stream) FN_STREAM2(y + i, d0, d1);
            else FN_STORE2(y + i, d0, d1);
        }
        for (; i < n; i++)
            y[i] = (FN_T)FN_FMA(FN_LDS(x + i) - mean, sc, sh);
        if (stream) fn_sfence();   /* the streamed lines are visible before we return */
        return;
    }
#define FN_LOOP(ACT)                                                            \
    FN_IVDEP for (i = 0; i < n; i++) {                                          \
        double v = FN_FMA(FN_LDS(x + i) - mean, sc, sh);                        \
        ACT;                                                                    \
        y[i] = (FN_T)v;                                                         \
    }
    FN_ACT_SWITCH(double, FN_SILU, FN_LOOP)
#undef FN_LOOP
}

#else   /* 16-bit storage: applied in float */

static void FN(apply)(const void *xv, void *yv, fn_ssize n, double mean, double sc, double sh,
                      int act, double slope, int stream)
{
    const FN_T *x = (const FN_T *)xv;
    FN_T *y = (FN_T *)yv;
    const float hi = (float)mean, lo = (float)(mean - (double)hi), scf = (float)sc,
                shf = (float)sh;
    fn_ssize i = 0, s0, len;
    float buf[FN_CHUNK];
    (void)stream;
    if (act == FN_ACT_NONE) {
        const fn_vs h = vs_set1(hi), l = vs_set1(lo), s = vs_set1(scf), f = vs_set1(shf);
        for (; i + FN_FL <= n; i += FN_FL)
            FN_STH(y + i, vs_fma(vs_sub(vs_sub(FN_LDH(x + i), h), l), s, f));
        for (; i < n; i++)
            y[i] = FN_F2H(FN_FMAF((FN_H2F(x[i]) - hi) - lo, scf, shf));
        return;
    }
    /* activations: through an L1 buffer of floats, the loop vectorized by
     * the compiler */
    for (s0 = 0; s0 < n; s0 += FN_CHUNK) {
        len = n - s0 < FN_CHUNK ? n - s0 : FN_CHUNK;
        for (i = 0; i + FN_FL <= len; i += FN_FL) vs_store(buf + i, FN_LDH(x + s0 + i));
        for (; i < len; i++) buf[i] = FN_H2F(x[s0 + i]);
#define FN_LOOP(ACT)                                                            \
        FN_IVDEP for (i = 0; i < len; i++) {                                    \
            float v = FN_FMAF((buf[i] - hi) - lo, scf, shf);                    \
            ACT;                                                                \
            buf[i] = v;                                                         \
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
 * the chains' latency.  Each half does exactly what FN(stats_in) and
 * FN(apply) do, in the same order, so the same bits. */
static void FN(stats_apply)(const void *xsv, fn_ssize ns, fn_triple *t, const void *xav,
                            void *yav, fn_ssize na, double mean, double sc, double sh)
{
    enum { NV = FN_LANES / FN_VL };
    const FN_T *xs = (const FN_T *)xsv, *xa = (const FN_T *)xav;
    FN_T *ya = (FN_T *)yav;
    double sft = ns > 0 ? FN_LDS(xs) : 0.0, t1 = 0.0, t2 = 0.0, s1[FN_LANES], s2[FN_LANES];
    const fn_vd shv = vd_set1(sft), hv = vd_set1(mean), scv = vd_set1(sc), fv = vd_set1(sh);
    fn_vd a[NV], b[NV];
    fn_ssize i, j = 0, nv = ns - ns % FN_LANES, both;
    int k;
    for (k = 0; k < NV; k++) { a[k] = vd_set1(0.0); b[k] = a[k]; }
    /* steps of FN_LANES elements of each while both have whole steps left */
    both = nv < na - na % FN_LANES ? nv : na - na % FN_LANES;
    for (i = 0; i < both; i += FN_LANES, j += FN_LANES) {
        FN_UNROLL for (k = 0; k < NV; k++) {
            fn_vd d = vd_sub(FN_LDV(xs + i + k * FN_VL), shv);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
        }
        FN_UNROLL for (k = 0; k < FN_LANES; k += 2 * FN_VL)
            FN_STORE2(ya + j + k, vd_fma(vd_sub(FN_LDV(xa + j + k), hv), scv, fv),
                      vd_fma(vd_sub(FN_LDV(xa + j + k + FN_VL), hv), scv, fv));
    }
    for (; i < nv; i += FN_LANES) {
        FN_UNROLL for (k = 0; k < NV; k++) {
            fn_vd d = vd_sub(FN_LDV(xs + i + k * FN_VL), shv);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
        }
    }
    for (k = 0; k < NV; k++) {
        vd_store(s1 + k * FN_VL, a[k]);
        vd_store(s2 + k * FN_VL, b[k]);
    }
    for (i = nv; i < ns; i++) {
        double d = FN_LDS(xs + i) - sft;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_finish(t, (double)ns, sft, fn_lanes_sum(s1) + t1, fn_lanes_sum(s2) + t2);
    for (; j + 2 * FN_VL <= na; j += 2 * FN_VL)
        FN_STORE2(ya + j, vd_fma(vd_sub(FN_LDV(xa + j), hv), scv, fv),
                  vd_fma(vd_sub(FN_LDV(xa + j + FN_VL), hv), scv, fv));
    for (; j < na; j++)
        ya[j] = (FN_T)FN_FMA(FN_LDS(xa + j) - mean, sc, sh);
}
#else
static void FN(stats_apply)(const void *xs, fn_ssize ns, fn_triple *t, const void *xa, void *ya,
                            fn_ssize na, double mean, double sc, double sh)
{
    FN(stats_in)((const FN_T *)xs, ns, t);
    FN(apply)(xa, ya, na, mean, sc, sh, FN_ACT_NONE, 0.0, 0);
}
#endif

/* ------------------------------------------------ small planes, one call */
#if defined(FN_F32)
/* Small float32 planes (FN_KEEP_MAX elements): the statistics keep the
 * widened doubles in an L1 buffer and the apply reads them back, so each
 * element is converted once instead of twice; the same values feed the same
 * operations in the same order, so the same bits. */
FN_INLINE void fn_stats_keep_f32(const float *x, fn_ssize n, double *buf, fn_triple *t)
{
    enum { NV = FN_LANES / FN_VL };
    double sh = n > 0 ? (double)x[0] : 0.0, t1 = 0.0, t2 = 0.0, s1[FN_LANES], s2[FN_LANES];
    fn_vd shv = vd_set1(sh), a[NV], b[NV];
    fn_ssize i, nv = n - n % FN_LANES;
    int k;
    for (k = 0; k < NV; k++) { a[k] = vd_set1(0.0); b[k] = a[k]; }
    for (i = 0; i < nv; i += FN_LANES) {
        FN_UNROLL for (k = 0; k < NV; k++) {
            fn_vd v = vd_load_f32(x + i + k * FN_VL), d = vd_sub(v, shv);
            vd_store(buf + i + k * FN_VL, v);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
        }
    }
    for (k = 0; k < NV; k++) {
        vd_store(s1 + k * FN_VL, a[k]);
        vd_store(s2 + k * FN_VL, b[k]);
    }
    for (i = nv; i < n; i++) {
        double v = (double)x[i], d = v - sh;
        buf[i] = v;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_finish(t, (double)n, sh, fn_lanes_sum(s1) + t1, fn_lanes_sum(s2) + t2);
}
FN_INLINE void fn_apply_keep_f32(const double *buf, float *y, fn_ssize n, double mean, double sc,
                                 double sh)
{
    const fn_vd hv = vd_set1(mean), scv = vd_set1(sc), shv = vd_set1(sh);
    fn_ssize i;
    for (i = 0; i + 2 * FN_VL <= n; i += 2 * FN_VL)
        vd2_store_f32(y + i, vd_fma(vd_sub(vd_load(buf + i), hv), scv, shv),
                      vd_fma(vd_sub(vd_load(buf + i + FN_VL), hv), scv, shv));
    for (; i < n; i++)
        y[i] = (float)FN_FMA(buf[i] - mean, sc, sh);
}
#endif

/* Channels-first planes [p0, p1) of L = Cg * S elements, each one statistics
 * block, on the calling thread, software-pipelined: statistics of plane p+1,
 * plane p normalized, then the coefficients of p+1.  The same formulas as
 * the block-by-block plans, so the same bits. */
static void FN(planes)(const void *xv, void *yv, fn_ssize p0, fn_ssize p1, fn_ssize L,
                       fn_ssize S, fn_ssize G, fn_ssize goff, fn_ssize Cg, double eps,
                       const double *w,
                       const double *b, int act, double slope, fn_triple *tri, double *mean,
                       double *scale, double *shift)
{
    const FN_T *x = (const FN_T *)xv;
    FN_T *y = (FN_T *)yv;
    fn_ssize p, r;
#if defined(FN_F32)
    const int keep = L <= FN_KEEP_MAX && act == FN_ACT_NONE;
    double kb[2][FN_KEEP_MAX];
#define FN_PLANE_STATS(q)                                                       \
    (keep ? fn_stats_keep_f32(x + (q) * L, L, kb[(q) & 1], &tri[q])            \
          : FN(stats_in)(x + (q) * L, L, &tri[q]))
#define FN_KEEPING keep
#else
#define FN_PLANE_STATS(q) FN(stats_in)(x + (q) * L, L, &tri[q])
#define FN_KEEPING 0
#endif
    if (p0 >= p1) return;
    FN_PLANE_STATS(p0);
    fn_group_coefs(&tri[p0], eps, (goff + p0) % G, Cg, p0 * Cg, w, b, mean, scale, shift);
    for (p = p0; p < p1; p++) {
        if (p + 1 < p1 && Cg == 1 && act == FN_ACT_NONE && !FN_KEEPING) {
            /* the next plane's statistics interleaved with this plane's apply */
            FN(stats_apply)(x + (p + 1) * L, L, &tri[p + 1], x + p * L, y + p * L, L, mean[p],
                            scale[p], shift[p]);
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale,
                           shift);
            continue;
        }
        if (p + 1 < p1)
            FN_PLANE_STATS(p + 1);
        for (r = p * Cg; r < (p + 1) * Cg; r++) {
#if defined(FN_F32)
            if (keep) {
                fn_apply_keep_f32(kb[p & 1] + (r - p * Cg) * S, y + r * S, S, mean[r], scale[r],
                                  shift[r]);
                continue;
            }
#endif
            FN(apply)(x + r * S, y + r * S, S, mean[r], scale[r], shift[r], act, slope, 0);
        }
        if (p + 1 < p1)
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale,
                           shift);
    }
#undef FN_PLANE_STATS
#undef FN_KEEPING
}

/* ------------------------------------------------ channels-last statistics */
/* K vectors of lanes [j0, j0 + K * FN_VL) of nv rows of W: the lane sums stay
 * in registers over all the rows, each lane adding its rows in order.  pf:
 * also prefetch the tile's lines of the next block. */
FN_INLINE void FN(cl_stats_tile)(const FN_T *x, fn_ssize nv, fn_ssize W, fn_ssize j0,
                                 const double *sh, double *s1, double *s2, int pf, const int K)
{
    fn_vd h[FN_TILE_V], a[FN_TILE_V], b[FN_TILE_V];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vd_load(sh + j0 + k * FN_VL);
        a[k] = vd_load(s1 + j0 + k * FN_VL);
        b[k] = vd_load(s2 + j0 + k * FN_VL);
    }
    for (r = 0; r < nv; r++) {
        const FN_T *p = x + r * W + j0;
        if (pf) fn_prefetch_lines(p + nv * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
        FN_UNROLL for (k = 0; k < K; k++) {
            fn_vd d = vd_sub(FN_LDV(p + k * FN_VL), h[k]);
            a[k] = vd_add(a[k], d);
            b[k] = vd_fma(d, d, b[k]);
        }
    }
    for (k = 0; k < K; k++) {
        vd_store(s1 + j0 + k * FN_VL, a[k]);
        vd_store(s2 + j0 + k * FN_VL, b[k]);
    }
}

/* nv rows of W added to the shifted lane sums s1, s2 (shifts sh): full
 * tiles, one remainder tile, the last lanes scalar. */
FN_INLINE void FN(block_cl)(const FN_T *x, fn_ssize nv, fn_ssize W, const double *sh,
                            double *s1, double *s2, int pf)
{
    fn_ssize r, j, j0 = 0, kk;
    for (; j0 + FN_TILE_LANES <= W; j0 += FN_TILE_LANES)
        FN(cl_stats_tile)(x, nv, W, j0, sh, s1, s2, pf, FN_TILE_V);
    kk = (W - j0) / FN_VL;
#define FN_CALL(K) FN(cl_stats_tile)(x, nv, W, j0, sh, s1, s2, pf, K)
    FN_TILE_REM(kk, FN_CALL)
#undef FN_CALL
    j0 += kk * FN_VL;
    if (j0 < W)
        for (r = 0; r < nv; r++)
            for (j = j0; j < W; j++) {
                double d = FN_LDS(x + r * W + j) - sh[j];
                s1[j] += d;
                s2[j] = FN_FMA(d, d, s2[j]);
            }
}

/* Channels-last chunk of rows x C: one triple per channel in out[0..C).
 * Lane j of W = C * m (m rows per virtual row, W a multiple of 16 for
 * C < 16) sums its rows over the whole chunk, shifted by its channel's value
 * in the chunk's first row, walked in blocks of R rows (a multiple of m) that
 * stay in L1 across the tiles; the m lanes of a channel are then summed in
 * order.  acc: 3*W doubles of scratch. */
static void FN(stats_cl)(const void *xv, fn_ssize rows, fn_ssize C, fn_ssize m, fn_ssize R,
                         double *acc, fn_triple *out)
{
    const FN_T *x = (const FN_T *)xv;
    fn_ssize W = C * m, vr = rows / m, r0, r, c, k, j, nv;
    double *sh = acc, *s1 = acc + W, *s2 = acc + 2 * W;
    const int wide = W > FN_TILE_LANES;
    if (rows <= 0) {
        for (c = 0; c < C; c++) { out[c].n = 0.0; out[c].mean = 0.0; out[c].m2 = 0.0; }
        return;
    }
    for (c = 0; c < C; c++) sh[c] = FN_LDS(x + c);
    for (j = C; j < W; j++) sh[j] = sh[j - C];
    for (j = 0; j < W; j++) { s1[j] = 0.0; s2[j] = 0.0; }
    if (wide) {
        /* several tile passes per block: blocks of about FN_CL_WALK bytes, so
         * a block and the next one (prefetched by the tile passes) fit L1;
         * the lanes still add their rows in order, so no bit changes */
        fn_ssize rw = FN_CL_WALK / (fn_ssize)(W * sizeof(FN_T)) * m;
        if (rw < m) rw = m;
        if (rw < R) R = rw;
    }
    for (r0 = 0; r0 < vr * m; r0 += R) {
        nv = (vr * m - r0 < R ? vr * m - r0 : R) / m;
        FN(block_cl)(x + r0 * C, nv, W, sh, s1, s2, wide);
    }
    for (r = vr * m; r < rows; r++) {   /* rows that do not fill a virtual row */
        const FN_T *p = x + r * C;
        for (c = 0; c < C; c++) {
            double d = FN_LDS(p + c) - sh[c];
            s1[c] += d;
            s2[c] = FN_FMA(d, d, s2[c]);
        }
    }
    for (c = 0; c < C; c++) {
        double a = s1[c], b = s2[c];
        for (k = 1; k < m; k++) { a += s1[k * C + c]; b += s2[k * C + c]; }
        fn_finish(&out[c], (double)rows, sh[c], a, b);
    }
}

/* ------------------------------------------------ channels-last apply */
#if FN_WD
/* K vectors of lanes of nr rows, the coefficients in registers for all the
 * rows; st: non-temporal stores. */
FN_INLINE void FN(cl_apply_tile)(const FN_T *x, FN_T *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const double *hi, const double *sc, const double *sf, int pf,
                                 const int st, const int K)
{
    fn_vd h[FN_TILE_V], s[FN_TILE_V], f[FN_TILE_V];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vd_load(hi + j0 + k * FN_VL);
        s[k] = vd_load(sc + j0 + k * FN_VL);
        f[k] = vd_load(sf + j0 + k * FN_VL);
    }
    for (r = 0; r < nr; r++) {
        const FN_T *p = x + r * W + j0;
        FN_T *q = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 0);
            /* never the lines stream stores write: they would be fetched
             * into the cache only to be evicted by the stores */
            if (!st) fn_prefetch_lines(q + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_T), 1);
        }
        FN_UNROLL for (k = 0; k < K; k++) {
            fn_vd v = vd_fma(vd_sub(FN_LDV(p + k * FN_VL), h[k]), s[k], f[k]);
            if (st) FN_STREAM1(q + k * FN_VL, v);
            else FN_STORE1(q + k * FN_VL, v);
        }
    }
}

FN_INLINE void FN(cl_apply_rows)(const FN_T *x, FN_T *y, fn_ssize nr, fn_ssize W,
                                 const double *hi, const double *sc, const double *sf, int pf,
                                 const int st)
{
    fn_ssize r, j, j0 = 0, kk;
    for (; j0 + FN_TILE_LANES <= W; j0 += FN_TILE_LANES)
        FN(cl_apply_tile)(x, y, nr, W, j0, hi, sc, sf, pf, st, FN_TILE_V);
    kk = (W - j0) / FN_VL;
#define FN_CALL(K) FN(cl_apply_tile)(x, y, nr, W, j0, hi, sc, sf, pf, st, K)
    FN_TILE_REM(kk, FN_CALL)
#undef FN_CALL
    j0 += kk * FN_VL;
    if (j0 < W)
        for (r = 0; r < nr; r++)
            for (j = j0; j < W; j++)
                y[r * W + j] = (FN_T)FN_FMA(FN_LDS(x + r * W + j) - hi[j], sc[j], sf[j]);
}

/* nr rows of W without activation, in groups of about FN_CL_APPLY_BYTES of
 * input so that a group's tiles walk an L1-sized piece.  Streaming only for
 * rows of whole vectors of at most 64 lanes (a group of rows is then one
 * contiguous run written front to back, in 16-byte pieces) into a 16-byte
 * aligned output. */
FN_INLINE void FN(cl_apply_tiles)(const FN_T *x, FN_T *y, fn_ssize nr, fn_ssize W,
                                  const double *hi, const double *sc, const double *sf,
                                  int stream)
{
    fn_ssize g = W > 0 ? FN_CL_APPLY_BYTES / (fn_ssize)(sizeof(FN_T) * W) : nr, r0, cnt;
    const int pf = W > FN_TILE_LANES;
    if (g < 1) g = 1;
    stream = stream && FN_HAVE_STREAM && FN_VL >= 4 && W <= 64 && W % FN_VL == 0 &&
             ((uintptr_t)y & 15) == 0;
    if (stream && W > FN_TILE_LANES) {
        /* rows of several tiles: streamed row by row, front to back (tile by
         * tile, the stream stores of neighbouring lines interleave and ran
         * 1.6x slower), the coefficients read from L1 */
        fn_ssize r, j;
        for (r = 0; r < nr; r++)
            for (j = 0; j < W; j += FN_VL)
                FN_STREAM1(y + r * W + j, vd_fma(vd_sub(FN_LDV(x + r * W + j), vd_load(hi + j)),
                                                 vd_load(sc + j), vd_load(sf + j)));
        fn_sfence();
        return;
    }
    for (r0 = 0; r0 < nr; r0 += cnt) {
        cnt = nr - r0 < g ? nr - r0 : g;
        if (stream) FN(cl_apply_rows)(x + r0 * W, y + r0 * W, cnt, W, hi, sc, sf, pf, 1);
        else FN(cl_apply_rows)(x + r0 * W, y + r0 * W, cnt, W, hi, sc, sf, pf, 0);
    }
    if (stream) fn_sfence();
}

/* rows x C with per-lane coefficients (hi, lo, scale, shift: 4 arrays of
 * W = C * m doubles, lo unused in double); y may be x */
static void FN(apply_cl)(const void *xv, void *yv, fn_ssize rows, fn_ssize C, fn_ssize m,
                         const void *coefv, int act, double slope, int stream)
{
    const FN_T *x = (const FN_T *)xv;
    FN_T *y = (FN_T *)yv;
    const double *coef = (const double *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, j;
    const double *hi = coef, *sc = coef + 2 * W, *sf = coef + 3 * W;
    if (act == FN_ACT_NONE) {
        FN(cl_apply_tiles)(x, y, vr, W, hi, sc, sf, stream);
        FN(cl_apply_tiles)(x + vr * W, y + vr * W, rows - vr * m, C, hi, sc, sf, 0);
        return;
    }
#define FN_LOOP(ACT)                                                            \
    for (r = 0; r < vr; r++) {                                                  \
        const FN_T *p = x + r * W;                                              \
        FN_T *q = y + r * W;                                                    \
        FN_IVDEP for (j = 0; j < W; j++) {                                      \
            double v = FN_FMA(FN_LDS(p + j) - hi[j], sc[j], sf[j]);             \
            ACT;                                                                \
            q[j] = (FN_T)v;                                                     \
        }                                                                       \
    }                                                                           \
    for (r = vr * m; r < rows; r++) {                                           \
        const FN_T *p = x + r * C;                                              \
        FN_T *q = y + r * C;                                                    \
        FN_IVDEP for (j = 0; j < C; j++) {                                      \
            double v = FN_FMA(FN_LDS(p + j) - hi[j], sc[j], sf[j]);             \
            ACT;                                                                \
            q[j] = (FN_T)v;                                                     \
        }                                                                       \
    }
    FN_ACT_SWITCH(double, FN_SILU, FN_LOOP)
#undef FN_LOOP
}

#else   /* 16-bit storage, channels-last apply in float */

FN_INLINE void FN(cl_apply_tile)(const FN_T *x, FN_T *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const float *hi, const float *lo, const float *sc,
                                 const float *sf, int pf, const int K)
{
    fn_vs h[FN_TILE_VS], l[FN_TILE_VS], s[FN_TILE_VS], f[FN_TILE_VS];
    fn_ssize r;
    int k;
    for (k = 0; k < K; k++) {
        h[k] = vs_load(hi + j0 + k * FN_FL);
        l[k] = vs_load(lo + j0 + k * FN_FL);
        s[k] = vs_load(sc + j0 + k * FN_FL);
        f[k] = vs_load(sf + j0 + k * FN_FL);
    }
    for (r = 0; r < nr; r++) {
        const FN_T *p = x + r * W + j0;
        FN_T *q = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_FL * 2, 0);
            fn_prefetch_lines(q + nr * W, K * FN_FL * 2, 1);
        }
        FN_UNROLL for (k = 0; k < K; k++)
            FN_STH(q + k * FN_FL,
                   vs_fma(vs_sub(vs_sub(FN_LDH(p + k * FN_FL), h[k]), l[k]), s[k], f[k]));
    }
}

static void FN(apply_cl)(const void *xv, void *yv, fn_ssize rows, fn_ssize C, fn_ssize m,
                         const void *coefv, int act, double slope, int stream)
{
    const FN_T *x = (const FN_T *)xv;
    FN_T *y = (FN_T *)yv;
    const float *coef = (const float *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, j, r0, cnt, g, j0, kk, s0, len, pass, nr, width;
    const float *hi = coef, *lo = coef + W, *sc = coef + 2 * W, *sf = coef + 3 * W;
    float buf[FN_CHUNK];
    (void)stream;
    /* two passes: vr rows of W, then the rows that do not fill a virtual row
     * (rows of C, the same coefficient arrays) */
    for (pass = 0; pass < 2; pass++) {
        const FN_T *xp = pass ? x + vr * W : x;
        FN_T *yp = pass ? y + vr * W : y;
        nr = pass ? rows - vr * m : vr;
        width = pass ? C : W;
        if (act == FN_ACT_NONE) {
            const int pf = width > FN_TILE_VS * FN_FL;
            g = width > 0 ? FN_CL_APPLY_BYTES / (2 * width) : nr;
            if (g < 1) g = 1;
            for (r0 = 0; r0 < nr; r0 += cnt) {
                const FN_T *xg = xp + r0 * width;
                FN_T *yg = yp + r0 * width;
                cnt = nr - r0 < g ? nr - r0 : g;
                for (j0 = 0; j0 + FN_TILE_VS * FN_FL <= width; j0 += FN_TILE_VS * FN_FL)
                    FN(cl_apply_tile)(xg, yg, cnt, width, j0, hi, lo, sc, sf, pf, FN_TILE_VS);
                kk = (width - j0) / FN_FL;
#define FN_CALL(K) FN(cl_apply_tile)(xg, yg, cnt, width, j0, hi, lo, sc, sf, pf, K)
                FN_TILE_REM_S(kk, FN_CALL)
#undef FN_CALL
                j0 += kk * FN_FL;
                if (j0 < width)
                    for (r = 0; r < cnt; r++)
                        for (j = j0; j < width; j++)
                            yg[r * width + j] = FN_F2H(FN_FMAF(
                                (FN_H2F(xg[r * width + j]) - hi[j]) - lo[j], sc[j], sf[j]));
            }
            continue;
        }
        /* activations: each row in pieces of up to FN_CHUNK through a float buffer */
        for (r = 0; r < nr; r++)
            for (s0 = 0; s0 < width; s0 += len) {
                const FN_T *p = xp + r * width + s0;
                FN_T *q = yp + r * width + s0;
                const float *h = hi + s0, *l = lo + s0, *c = sc + s0, *f = sf + s0;
                len = width - s0 < FN_CHUNK ? width - s0 : FN_CHUNK;
                for (j = 0; j < len; j++) buf[j] = FN_H2F(p[j]);
#define FN_LOOP(ACT)                                                            \
                FN_IVDEP for (j = 0; j < len; j++) {                            \
                    float v = FN_FMAF((buf[j] - h[j]) - l[j], c[j], f[j]);      \
                    ACT;                                                        \
                    buf[j] = v;                                                 \
                }
                FN_ACT_SWITCH(float, FN_SILU_F, FN_LOOP)
#undef FN_LOOP
                for (j = 0; j < len; j++) q[j] = FN_F2H(buf[j]);
            }
    }
}
#endif

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
