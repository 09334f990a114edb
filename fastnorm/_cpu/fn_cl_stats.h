/*
 * Channels-last statistics in register tiles of FN_TILE_V vectors, for one
 * input kind, included by fn_kernels_stats.h (which defines FN_TI, FN_LDV,
 * FN_LDS and FNS()).  No include guard on purpose.
 */
/* ------------------------------------------------ channels-last statistics */
/* K vectors of lanes [j0, j0 + K * FN_VL) of nv rows of W: the lane sums stay
 * in registers over all the rows, each lane adding its rows in order.  pf:
 * also prefetch the tile's lines of the next block. */
FN_INLINE void FNS(cl_stats_tile)(const FN_TI *x, fn_ssize nv, fn_ssize W, fn_ssize j0, const double *sh,
                                  double *s1, double *s2, int pf, const int K)
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
        const FN_TI *p = x + r * W + j0;
        if (pf) fn_prefetch_lines(p + nv * W, K * FN_VL * (fn_ssize)sizeof(FN_TI), 0);
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
FN_INLINE void FNS(block_cl)(const FN_TI *x, fn_ssize nv, fn_ssize W, const double *sh, double *s1,
                             double *s2, int pf)
{
    fn_ssize r, j, j0 = 0, kk;
    for (; j0 + FN_TILE_LANES <= W; j0 += FN_TILE_LANES)
        FNS(cl_stats_tile)(x, nv, W, j0, sh, s1, s2, pf, FN_TILE_V);
    kk = (W - j0) / FN_VL;
#define FN_CALL(K) FNS(cl_stats_tile)(x, nv, W, j0, sh, s1, s2, pf, K)
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
static void FNS(stats_cl)(const void *xv, fn_ssize rows, fn_ssize C, fn_ssize m, fn_ssize R, double *acc,
                          fn_triple *out)
{
    const FN_TI *x = (const FN_TI *)xv;
    fn_ssize W = C * m, vr = rows / m, r0, r, c, k, j, nv;
    double *sh = acc, *s1 = acc + W, *s2 = acc + 2 * W;
    const int wide = W > FN_TILE_LANES;
    if (rows <= 0) {
        for (c = 0; c < C; c++) {
            out[c].n = 0.0;
            out[c].mean = 0.0;
            out[c].m2 = 0.0;
        }
        return;
    }
    for (c = 0; c < C; c++) sh[c] = FN_LDS(x + c);
    for (j = C; j < W; j++) sh[j] = sh[j - C];
    for (j = 0; j < W; j++) {
        s1[j] = 0.0;
        s2[j] = 0.0;
    }
    if (wide) {
        /* several tile passes per block: blocks of about FN_CL_WALK bytes, so
         * a block and the next one (prefetched by the tile passes) fit L1;
         * the lanes still add their rows in order, so no bit changes */
        fn_ssize rw = FN_CL_WALK / (fn_ssize)(W * sizeof(FN_TI)) * m;
        if (rw < m) rw = m;
        if (rw < R) R = rw;
    }
    for (r0 = 0; r0 < vr * m; r0 += R) {
        nv = (vr * m - r0 < R ? vr * m - r0 : R) / m;
        FNS(block_cl)(x + r0 * C, nv, W, sh, s1, s2, wide);
    }
    for (r = vr * m; r < rows; r++) { /* rows that do not fill a virtual row */
        const FN_TI *p = x + r * C;
        for (c = 0; c < C; c++) {
            double d = FN_LDS(p + c) - sh[c];
            s1[c] += d;
            s2[c] = FN_FMA(d, d, s2[c]);
        }
    }
    for (c = 0; c < C; c++) {
        double a = s1[c], b = s2[c];
        for (k = 1; k < m; k++) {
            a += s1[k * C + c];
            b += s2[k * C + c];
        }
        fn_finish(&out[c], (double)rows, sh[c], a, b);
    }
}
