/*
 * Channels-first statistics of one block: a Welford triple from 16 logical lanes,
 * for one storage type, included by fn_kernels_dtype.h (which defines FN_T,
 * FN_SUF, FN_LDV, FN_LDS, FN_WD and FN()).  No include guard on purpose.
 */
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
