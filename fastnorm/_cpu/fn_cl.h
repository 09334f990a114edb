/*
 * Channels-last apply in register tiles of FN_TILE_V (FN_TILE_VS) vectors,
 * for one (input, output) pair, included by fn_kernels_dtype.h (which defines
 * FN_TI, FN_TO, the loads, FN_WD, the store macros and FN()).  No include
 * guard on purpose.
 */
#if FN_WD
/* K vectors of lanes of nr rows, the coefficients in registers for all the
 * rows; st: non-temporal stores. */
FN_INLINE void FN(cl_apply_tile)(const FN_TI *x, FN_TO *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const double *hi, const double *sc, const double *sf, int pf, const int st,
                                 const int K)
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
        const FN_TI *p = x + r * W + j0;
        FN_TO *q = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_TI), 0);
            /* never the lines stream stores write: they would be fetched
             * into the cache only to be evicted by the stores */
            if (!st) fn_prefetch_lines(q + nr * W, K * FN_VL * (fn_ssize)sizeof(FN_TO), 1);
        }
        FN_UNROLL for (k = 0; k < K; k++) {
            fn_vd v = vd_fma(vd_sub(FN_LDV(p + k * FN_VL), h[k]), s[k], f[k]);
            if (st) FN_STREAM1(q + k * FN_VL, v);
            else FN_STORE1(q + k * FN_VL, v);
        }
    }
}

FN_INLINE void FN(cl_apply_rows)(const FN_TI *x, FN_TO *y, fn_ssize nr, fn_ssize W, const double *hi,
                                 const double *sc, const double *sf, int pf, const int st)
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
                y[r * W + j] = (FN_TO)FN_FMA(FN_LDS(x + r * W + j) - hi[j], sc[j], sf[j]);
}

/* nr rows of W without activation, in groups of about FN_CL_APPLY_BYTES of
 * input (or output, the wider) so that a group's tiles walk an L1-sized piece.  Streaming only for
 * rows of whole vectors of at most 64 lanes (a group of rows is then one
 * contiguous run written front to back, in 16-byte pieces) into a 16-byte
 * aligned output. */
FN_INLINE void FN(cl_apply_tiles)(const FN_TI *x, FN_TO *y, fn_ssize nr, fn_ssize W, const double *hi,
                                  const double *sc, const double *sf, int stream)
{
    fn_ssize g = W > 0 ? FN_CL_APPLY_BYTES / (FN_ELEM_BYTES * W) : nr, r0, cnt;
    const int pf = W > FN_TILE_LANES;
    if (g < 1) g = 1;
    stream = stream && FN_HAVE_STREAM && FN_VL >= 4 && W <= 64 && W % FN_VL == 0 && ((uintptr_t)y & 15) == 0;
    if (stream && W > FN_TILE_LANES) {
        /* rows of several tiles: streamed row by row, front to back (tile by
         * tile, the stream stores of neighbouring lines interleave, which
         * write-combining handles worse), the coefficients read from L1 */
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
static void FN(apply_cl)(const void *xv, void *yv, fn_ssize rows, fn_ssize C, fn_ssize m, const void *coefv,
                         int act, double slope, int stream)
{
    const FN_TI *x = (const FN_TI *)xv;
    FN_TO *y = (FN_TO *)yv;
    const double *coef = (const double *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, j;
    const double *hi = coef, *sc = coef + 2 * W, *sf = coef + 3 * W;
    if (act == FN_ACT_NONE) {
        FN(cl_apply_tiles)(x, y, vr, W, hi, sc, sf, stream);
        FN(cl_apply_tiles)(x + vr * W, y + vr * W, rows - vr * m, C, hi, sc, sf, 0);
        return;
    }
#if defined(FN_ACT_VIA)
    (void)r;
    (void)j;
    fn_buf_apply_cl(&FN_ACT_VIA, xv, yv, rows, C, m, coefv, act, slope, 0);
#else
#define FN_LOOP(ACT)                                                \
    for (r = 0; r < vr; r++) {                                      \
        const FN_TI *p = x + r * W;                                 \
        FN_TO *q = y + r * W;                                       \
        FN_IVDEP                                                    \
        for (j = 0; j < W; j++) {                                   \
            double v = FN_FMA(FN_LDS(p + j) - hi[j], sc[j], sf[j]); \
            ACT;                                                    \
            q[j] = (FN_TO)v;                                        \
        }                                                           \
    }                                                               \
    for (r = vr * m; r < rows; r++) {                               \
        const FN_TI *p = x + r * C;                                 \
        FN_TO *q = y + r * C;                                       \
        FN_IVDEP                                                    \
        for (j = 0; j < C; j++) {                                   \
            double v = FN_FMA(FN_LDS(p + j) - hi[j], sc[j], sf[j]); \
            ACT;                                                    \
            q[j] = (FN_TO)v;                                        \
        }                                                           \
    }
    FN_ACT_SWITCH(double, FN_SILU, FN_LOOP)
#undef FN_LOOP
#endif
}

#else /* 16-bit storage, channels-last apply in float */

FN_INLINE void FN(cl_apply_tile)(const FN_TI *x, FN_TO *y, fn_ssize nr, fn_ssize W, fn_ssize j0,
                                 const float *hi, const float *lo, const float *sc, const float *sf, int pf,
                                 const int K)
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
        const FN_TI *p = x + r * W + j0;
        FN_TO *q = y + r * W + j0;
        if (pf) {
            fn_prefetch_lines(p + nr * W, K * FN_FL * (fn_ssize)sizeof(FN_TI), 0);
            fn_prefetch_lines(q + nr * W, K * FN_FL * (fn_ssize)sizeof(FN_TO), 1);
        }
        FN_UNROLL for (k = 0; k < K; k++)
            FN_STH(q + k * FN_FL, vs_fma(vs_sub(vs_sub(FN_LDH(p + k * FN_FL), h[k]), l[k]), s[k], f[k]));
    }
}

static void FN(apply_cl)(const void *xv, void *yv, fn_ssize rows, fn_ssize C, fn_ssize m, const void *coefv,
                         int act, double slope, int stream)
{
    const FN_TI *x = (const FN_TI *)xv;
    FN_TO *y = (FN_TO *)yv;
    const float *coef = (const float *)coefv;
    fn_ssize W = C * m, vr = rows / m, r, j, r0, cnt, g, j0, kk, s0, len, pass, nr, width;
    const float *hi = coef, *lo = coef + W, *sc = coef + 2 * W, *sf = coef + 3 * W;
    float buf[FN_CHUNK];
    (void)stream;
    /* two passes: vr rows of W, then the rows that do not fill a virtual row
     * (rows of C, the same coefficient arrays) */
    for (pass = 0; pass < 2; pass++) {
        const FN_TI *xp = pass ? x + vr * W : x;
        FN_TO *yp = pass ? y + vr * W : y;
        nr = pass ? rows - vr * m : vr;
        width = pass ? C : W;
        if (act == FN_ACT_NONE) {
            const int pf = width > FN_TILE_VS * FN_FL;
            g = width > 0 ? FN_CL_APPLY_BYTES / (FN_ELEM_BYTES * width) : nr;
            if (g < 1) g = 1;
            for (r0 = 0; r0 < nr; r0 += cnt) {
                const FN_TI *xg = xp + r0 * width;
                FN_TO *yg = yp + r0 * width;
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
                            yg[r * width + j] =
                                FN_F2H(FN_FMAF((FN_LDF(xg + r * width + j) - hi[j]) - lo[j], sc[j], sf[j]));
            }
            continue;
        }
        /* activations: each row in pieces of up to FN_CHUNK through a float buffer */
        for (r = 0; r < nr; r++)
            for (s0 = 0; s0 < width; s0 += len) {
                const FN_TI *p = xp + r * width + s0;
                FN_TO *q = yp + r * width + s0;
                const float *h = hi + s0, *l = lo + s0, *c = sc + s0, *f = sf + s0;
                len = width - s0 < FN_CHUNK ? width - s0 : FN_CHUNK;
                for (j = 0; j < len; j++) buf[j] = FN_LDF(p + j);
#define FN_LOOP(ACT)                                           \
    FN_IVDEP                                                   \
    for (j = 0; j < len; j++) {                                \
        float v = FN_FMAF((buf[j] - h[j]) - l[j], c[j], f[j]); \
        ACT;                                                   \
        buf[j] = v;                                            \
    }
                FN_ACT_SWITCH(float, FN_SILU_F, FN_LOOP)
#undef FN_LOOP
                for (j = 0; j < len; j++) q[j] = FN_F2H(buf[j]);
            }
    }
}
#endif
