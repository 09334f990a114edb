/*
 * Channels-first statistics of one block: a Welford triple from 16 logical lanes,
 * for one input kind, included by fn_kernels_stats.h (which defines FN_TI,
 * FN_LDV, FN_LDS and FNS()).  No include guard on purpose.
 */
/* One step of FN_LANES elements at p into the lanes. */
FN_INLINE void FNS(lanes_step)(fn_lanes *l, const FN_TI *p, fn_vd shv)
{
    int k;
    FN_UNROLL for (k = 0; k < FN_NV; k++)
        fn_lanes_add(l, k, vd_sub(FN_LDV(p + k * FN_VL), shv));
}

/* The block's triple from its lanes and its scalar tail [nv, n). */
FN_INLINE void FNS(lanes_done)(const fn_lanes *l, const FN_TI *x, fn_ssize nv, fn_ssize n, double sh,
                               fn_triple *t)
{
    double t1 = 0.0, t2 = 0.0;
    fn_ssize i;
    for (i = nv; i < n; i++) {
        double d = FN_LDS(x + i) - sh;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_lanes_finish(l, (double)n, sh, t1, t2, t);
}

/* Triple of one contiguous block (n <= FN_BLOCK), shifted by its first
 * element. */
FN_INLINE void FNS(stats_in)(const FN_TI *x, fn_ssize n, fn_triple *t)
{
    double sh = n > 0 ? FN_LDS(x) : 0.0;
    const fn_vd shv = vd_set1(sh);
    fn_ssize i, nv = n - n % FN_LANES;
    fn_lanes l;
    fn_lanes_zero(&l);
    for (i = 0; i < nv; i += FN_LANES) FNS(lanes_step)(&l, x + i, shv);
    FNS(lanes_done)(&l, x, nv, n, sh, t);
}

static void FNS(stats)(const void *x, fn_ssize n, fn_triple *t) { FNS(stats_in)((const FN_TI *)x, n, t); }
