/*
 * Typed kernel template, included by fn_kernels.h once per storage type with
 *   FN_T (storage), FN_W (working precision), FN_SUF (name suffix),
 *   FN_LOAD / FN_STORE (widen / round once), FN_EXP.
 * No include guard on purpose.
 */
#ifndef FN_SIGMOID_DEFINED
#define FN_SIGMOID_DEFINED
/* sigmoid in float for float / half working types (float32 data are applied in
 * double, but a float sigmoid keeps silu within a few ulp at a quarter of the
 * cost of a double division); double data use the double formula. */
FN_INLINE float fn_sigmoidf(float v, const int fn_fz) { return 1.0f / (1.0f + fn_expf(-v, fn_fz)); }
FN_INLINE double fn_sigmoidd(double v) { return 1.0 / (1.0 + exp(-v)); }
#endif
/* the low part of the mean is 0 when the working type is double;
 * FN_MADD is the fused multiply-add of the working type */
#undef FN_SUBLO
#undef FN_MADD
#ifdef FN_W_DOUBLE
#define FN_SUBLO(v, l) (v)
#define FN_MADD(a, b, c) FN_FMA(a, b, c)
#else
#define FN_SUBLO(v, l) ((v) - (l))
#define FN_MADD(a, b, c) FN_FMAF(a, b, c)
#endif
#define FN_CAT2(a, b) a##_##b
#define FN_CAT(a, b) FN_CAT2(a, b)
#define FN(name) FN_CAT(fn_##name, FN_SUF)

/* Welford triple of one contiguous block (n <= FN_BLOCK).  Lane j of the
 * FN_LANES accumulators sees elements i with i % FN_LANES == j; the tail
 * goes to a scalar pair.  The same arithmetic runs in the vector and in the
 * portable form. */
FN_INLINE void FN(stats_in)(const FN_T *restrict x, Py_ssize_t n, fn_triple *t, const int fn_fz)
{
    double t1 = 0.0, t2 = 0.0, r1, r2;
    double sh = n > 0 ? (double)FN_LOAD(x[0]) : 0.0;
    Py_ssize_t i, nv = n - n % FN_LANES;
#if FN_HAVE_VEC
    /* two 8-lane halves per step: the same accumulation for every dtype */
    fn_v8d shv = fn_v8d_zero() + sh, a0 = fn_v8d_zero(), a1 = a0, b0 = a0, b1 = a0;
#define FN_ACC16(D0, D1)                                                       \
    do {                                                                       \
        a0 += D0;                                                              \
        a1 += D1;                                                              \
        b0 = FN_FMA8D(D0, D0, b0);                                             \
        b1 = FN_FMA8D(D1, D1, b1);                                             \
    } while (0)
#if defined(FN_BUF16)
    /* float16: chunks widened into an L1 buffer by the (hardware when
     * available) bulk conversion, then exactly the float32 arithmetic and
     * lane order below, so the bits do not depend on the conversion used. */
    float buf[FN_CHUNK];
    Py_ssize_t s0, len, nbuf = nv;
#ifdef FN_STATS_HW
    double acc[32];
    if (FN_STATS_HW(x, nv, sh, acc, fn_fz)) {
        memcpy(&a0, acc, sizeof a0);
        memcpy(&a1, acc + 8, sizeof a1);
        memcpy(&b0, acc + 16, sizeof b0);
        memcpy(&b1, acc + 24, sizeof b1);
        nbuf = 0;   /* the buffer loop has nothing left to do */
    }
#endif
    for (s0 = 0; s0 < nbuf; s0 += FN_CHUNK) {
        len = nbuf - s0 < FN_CHUNK ? nbuf - s0 : FN_CHUNK;
        FN_WIDEN(x + s0, buf, len);
        for (i = 0; i < len; i += FN_LANES) {
            fn_v8d d0 = fn_load8d_f32(buf + i) - shv;
            fn_v8d d1 = fn_load8d_f32(buf + i + 8) - shv;
            FN_ACC16(d0, d1);
        }
    }
#elif defined(FN_IS16)
    /* 16-bit input: 16 lanes widened at once (exact), then the same double
     * accumulation as float32, so results keep float64 rounding. */
    for (i = 0; i < nv; i += FN_LANES) {
        fn_v16s h;
        fn_v16f f;
        fn_v8f lo, hi;
        fn_v8d d0, d1;
        memcpy(&h, x + i, sizeof h);
        f = FN_LOAD16F(h);
        memcpy(&lo, &f, sizeof lo);
        memcpy(&hi, (char *)&f + 32, sizeof hi);
        d0 = __builtin_convertvector(lo, fn_v8d) - shv;
        d1 = __builtin_convertvector(hi, fn_v8d) - shv;
        FN_ACC16(d0, d1);
    }
#else
    for (i = 0; i < nv; i += FN_LANES) {
        fn_v8d d0 = FN(load8d)(x + i) - shv;
        fn_v8d d1 = FN(load8d)(x + i + 8) - shv;
        FN_ACC16(d0, d1);
    }
#endif
#undef FN_ACC16
    r1 = fn_v8d_hsum(a0 + a1);
    r2 = fn_v8d_hsum(b0 + b1);
#else
    double s1[FN_LANES], s2[FN_LANES];
    int j;
    for (j = 0; j < FN_LANES; j++) { s1[j] = 0.0; s2[j] = 0.0; }
    for (i = 0; i < nv; i += FN_LANES) {
        for (j = 0; j < FN_LANES; j++) {
            double d = (double)FN_LOAD(x[i + j]) - sh;
            s1[j] += d;
            s2[j] = FN_FMA(d, d, s2[j]);
        }
    }
    for (j = 0; j < 8; j++) { s1[j] += s1[j + 8]; s2[j] += s2[j + 8]; }
    r1 = ((s1[0] + s1[4]) + (s1[2] + s1[6])) + ((s1[1] + s1[5]) + (s1[3] + s1[7]));
    r2 = ((s2[0] + s2[4]) + (s2[2] + s2[6])) + ((s2[1] + s2[5]) + (s2[3] + s2[7]));
#endif
    for (i = nv; i < n; i++) {
        double d = (double)FN_LOAD(x[i]) - sh;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_finish(t, (double)n, sh, r1 + t1, r2 + t2);
}

FN_MV static void FN(stats)(const FN_T *restrict x, Py_ssize_t n, fn_triple *t)
{
    FN_WITH_FZ(FN(stats_in)(x, n, t, fn_fz));
}

/* relu: +0 for negatives (-inf included), NaN kept.  The zero arm is a value
 * the compiler cannot see (fn_relu_zero): with the constant 0 GCC turns the
 * select into a NaN-honouring max that it does not vectorize in the float32
 * kernels (20x slower), and the earlier v * 0 + 0 gave NaN for -inf. */
#define FN_ACT_SWITCH(LOOP)                                                   \
    switch (act) {                                                           \
    case FN_ACT_RELU: {                                                      \
        const FN_W zr = (FN_W)fn_relu_zero;                                  \
        LOOP(v = v < (FN_W)0 ? zr : v); break;                               \
    }                                                                        \
    case FN_ACT_LEAKY: LOOP(v = v >= (FN_W)0 ? v : v * slope); break;        \
    case FN_ACT_SILU:  LOOP(v = v * FN_SIGMOID(v)); break;                   \
    default:           LOOP((void)0); break;                                 \
    }

/* y = act(((x - hi) - lo) * sc + sh) over a contiguous run; y may equal x. */
#ifdef FN_IS16
FN_INLINE void FN(apply_in)(const FN_T *x, FN_T *y, Py_ssize_t n, FN_W hi, FN_W lo,
                             FN_W sc, FN_W sh, int act, FN_W slope, const int fn_fz)
{
    float buf[FN_CHUNK];
    Py_ssize_t s, len, i;
#ifdef FN_APPLY_HW
    if (act == FN_ACT_NONE && FN_APPLY_HW(x, y, n, hi, lo, sc, sh, fn_fz))
        return;
#endif
    for (s = 0; s < n; s += FN_CHUNK) {
        len = n - s < FN_CHUNK ? n - s : FN_CHUNK;
        FN_WIDEN(x + s, buf, len);
#define FN_LOOP(ACT)                                                          \
        FN_IVDEP for (i = 0; i < len; i++) {                                  \
            float v = FN_FMAF((buf[i] - hi) - lo, sc, sh);                    \
            ACT;                                                             \
            buf[i] = v;                                                      \
        }
        FN_ACT_SWITCH(FN_LOOP)
#undef FN_LOOP
        FN_NARROW(buf, y + s, len);
    }
}
#else
FN_INLINE void FN(apply_in)(const FN_T *x, FN_T *y, Py_ssize_t n, FN_W hi, FN_W lo,
                             FN_W sc, FN_W sh, int act, FN_W slope, const int fn_fz)
{
    Py_ssize_t i;
#ifdef FN_SILU_IN_FLOAT
    if (act == FN_ACT_SILU) {
        /* silu is compute-bound: run it in float (mean as hi + lo) */
        float hf = (float)hi, lf = (float)((hi - (double)hf) + lo), scf = (float)sc, shf = (float)sh;
        FN_IVDEP for (i = 0; i < n; i++) {
            float v = FN_FMAF(((float)x[i] - hf) - lf, scf, shf);
            y[i] = v * fn_sigmoidf(v, fn_fz);
        }
        return;
    }
#endif
#if FN_HAVE_VEC && defined(FN_APPLY_V16_F32)
    if (act == FN_ACT_NONE) {
        /* float32 in double, 16 per step as two 8-lane halves: the same
         * arithmetic as the loop below (lo is 0 for float32) */
        fn_v8d hv = fn_v8d_zero() + hi, scv = fn_v8d_zero() + sc, shv = fn_v8d_zero() + sh;
        for (i = 0; i + 16 <= n; i += 16) {
            fn_v8d d0 = FN_FMA8D(fn_load8d_f32(x + i) - hv, scv, shv);
            fn_v8d d1 = FN_FMA8D(fn_load8d_f32(x + i + 8) - hv, scv, shv);
            fn_store16d_f32(y + i, d0, d1);
        }
        for (; i < n; i++)
            y[i] = (float)FN_FMA((double)x[i] - hi, sc, sh);
        return;
    }
#endif
#define FN_LOOP(ACT)                                                          \
    FN_IVDEP for (i = 0; i < n; i++) {                                        \
        FN_W v = FN_MADD(FN_SUBLO((FN_W)FN_LOAD(x[i]) - hi, lo), sc, sh);               \
        ACT;                                                                 \
        y[i] = FN_STORE(v);                                                  \
    }
    FN_ACT_SWITCH(FN_LOOP)
#undef FN_LOOP
}
#endif

FN_MV static void FN(apply)(const FN_T *x, FN_T *y, Py_ssize_t n, FN_W hi, FN_W lo,
                            FN_W sc, FN_W sh, int act, FN_W slope)
{
    FN_WITH_FZ(FN(apply_in)(x, y, n, hi, lo, sc, sh, act, slope, fn_fz));
}

#if FN_HAVE_VEC && defined(FN_APPLY_V16_F32)
/* Small float32 planes (FN_KEEP_MAX elements): the statistics keep the
 * widened values in an L1 buffer of doubles and the apply reads them back,
 * so each element is converted float -> double once instead of twice (the
 * conversions are 4 of the 11 port-0/5 micro-ops per 8 elements).  The same
 * values feed the same operations in the same order: the same bits.
 * Measured (2 threads, A/B): 1024-element planes 0.80-0.81 -> 0.81-0.82 of a
 * copy, 2048-element ones 0.91 -> 0.87 (two 16 KiB buffers and the plane no
 * longer share L1 well; 4096: S2 0.88 -> 0.75), hence at most 1024. */
#define FN_KEEP_MAX 1024
FN_INLINE void fn_stats_keep_f32(const float *restrict x, Py_ssize_t n, double *restrict buf,
                                 fn_triple *t, const int fn_fz)
{
    double t1 = 0.0, t2 = 0.0, r1, r2;
    double sh = n > 0 ? (double)x[0] : 0.0;
    Py_ssize_t i, nv = n - n % FN_LANES;
    fn_v8d shv = fn_v8d_zero() + sh, a0 = fn_v8d_zero(), a1 = a0, b0 = a0, b1 = a0;
    for (i = 0; i < nv; i += FN_LANES) {
        fn_v8d v0 = fn_load8d_f32(x + i), v1 = fn_load8d_f32(x + i + 8);
        fn_v8d d0, d1;
        memcpy(buf + i, &v0, sizeof v0);
        memcpy(buf + i + 8, &v1, sizeof v1);
        d0 = v0 - shv;
        d1 = v1 - shv;
        a0 += d0;
        a1 += d1;
        b0 = FN_FMA8D(d0, d0, b0);
        b1 = FN_FMA8D(d1, d1, b1);
    }
    r1 = fn_v8d_hsum(a0 + a1);
    r2 = fn_v8d_hsum(b0 + b1);
    for (i = nv; i < n; i++) {
        double v = (double)x[i], d = v - sh;
        buf[i] = v;
        t1 += d;
        t2 = FN_FMA(d, d, t2);
    }
    fn_finish(t, (double)n, sh, r1 + t1, r2 + t2);
}
FN_INLINE void fn_apply_keep_f32(const double *restrict buf, float *y, Py_ssize_t n, double hi,
                                 double sc, double sh, const int fn_fz)
{
    fn_v8d hv = fn_v8d_zero() + hi, scv = fn_v8d_zero() + sc, shv = fn_v8d_zero() + sh;
    Py_ssize_t i;
    for (i = 0; i + 16 <= n; i += 16) {
        fn_v8d v0, v1;
        memcpy(&v0, buf + i, sizeof v0);
        memcpy(&v1, buf + i + 8, sizeof v1);
        fn_store16d_f32(y + i, FN_FMA8D(v0 - hv, scv, shv), FN_FMA8D(v1 - hv, scv, shv));
    }
    for (; i < n; i++)
        y[i] = (float)FN_FMA(buf[i] - hi, sc, sh);
}
#endif

/* Channels-first planes [p0, p1) of L = Cg * S elements that fit one
 * statistics block (L <= FN_BLOCK), all on the calling thread, in one call so
 * that small planes pay no per-plane dispatch.  The order is cf_range's
 * pipelined order: statistics of plane p+1, plane p normalized, then the
 * coefficients of p+1 (their divisions and square root placed after the apply
 * measured 5% faster on 256-element planes than before it).  Statistics,
 * coefficients and apply are the same code and formulas as the block-by-block
 * plans, so the bits are the same (tests/test_hardening.py forces each plan). */
FN_INLINE void FN(planes_in)(const FN_T *x, FN_T *y, Py_ssize_t p0, Py_ssize_t p1,
                              Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg,
                              double eps, const double *w, const double *b, int act,
                              double slope, fn_triple *tri, double *mean, double *scale,
                              double *shift, const int fn_fz)
{
    Py_ssize_t p, r;
#if FN_HAVE_VEC && defined(FN_APPLY_V16_F32)
    /* small planes keep their widened values for the apply (fn_stats_keep_f32) */
    const int keep = L <= FN_KEEP_MAX && act == FN_ACT_NONE;
    double kb[2][FN_KEEP_MAX];
#define FN_PLANE_STATS(q)                                                       \
    (keep ? fn_stats_keep_f32(x + (q) * L, L, kb[(q) & 1], &tri[q], fn_fz)     \
          : FN(stats_in)(x + (q) * L, L, &tri[q], fn_fz))
#else
    const int keep = 0;
#define FN_PLANE_STATS(q) FN(stats_in)(x + (q) * L, L, &tri[q], fn_fz)
#endif
    if (p0 >= p1) return;
    FN_PLANE_STATS(p0);
    fn_group_coefs(&tri[p0], eps, p0 % G, Cg, p0 * Cg, w, b, mean, scale, shift);
    for (p = p0; p < p1; p++) {
        if (p + 1 < p1)
            FN_PLANE_STATS(p + 1);
        for (r = p * Cg; r < (p + 1) * Cg; r++) {
            FN_W hi = (FN_W)mean[r], lo = (FN_W)(mean[r] - (double)hi);
#if FN_HAVE_VEC && defined(FN_APPLY_V16_F32)
            if (keep) {
                fn_apply_keep_f32(kb[p & 1] + (r - p * Cg) * S, y + r * S, S, mean[r], scale[r],
                                  shift[r], fn_fz);
                continue;
            }
#endif
            FN(apply_in)(x + r * S, y + r * S, S, hi, lo, (FN_W)scale[r], (FN_W)shift[r], act,
                         (FN_W)slope, fn_fz);
        }
        if (p + 1 < p1)
            fn_group_coefs(&tri[p + 1], eps, (p + 1) % G, Cg, (p + 1) * Cg, w, b, mean,
                           scale, shift);
    }
    (void)keep;
#undef FN_PLANE_STATS
}

FN_MV static void FN(planes)(const FN_T *x, FN_T *y, Py_ssize_t p0, Py_ssize_t p1,
                             Py_ssize_t L, Py_ssize_t S, Py_ssize_t G, Py_ssize_t Cg,
                             double eps, const double *w, const double *b, int act,
                             double slope, fn_triple *tri, double *mean, double *scale,
                             double *shift)
{
    FN_WITH_FZ(FN(planes_in)(x, y, p0, p1, L, S, G, Cg, eps, w, b, act, slope, tri, mean,
                             scale, shift, fn_fz));
}

/* Channels-last: add `vr` virtual rows of W = C*m elements (m rows, W a
 * multiple of 16 when C < 16, so lanes stay busy even for C = 3) to the
 * shifted lane sums s1, s2 (W doubles each; shifts sh).  Lane j accumulates
 * its rows in order.  The vector form keeps a tile of up to 64 lanes in
 * registers and walks the (L1-resident) block once per tile; with pf (rows
 * wider than a tile) each tile pass also prefetches its lines of the next
 * block (FN_PREFETCH_LINES).  Wider rows were summed row by row with the lane
 * sums in L1 before: the same per-lane order, so the same bits, but 1.45x
 * slower on cached data (C = 256). */
#if !(defined(FN_BUF16) && FN_HAVE_VEC)   /* float16 uses the float32 tiles on a buffer */
FN_INLINE void FN(block_cl)(const FN_T *restrict x, Py_ssize_t vr, Py_ssize_t W,
                            const double *restrict sh, double *restrict s1,
                            double *restrict s2, int pf, const int fn_fz)
{
    Py_ssize_t r, j, j0 = 0;
    (void)pf;
#if FN_HAVE_VEC
    /* tiles of K x 16 lanes: up to 64 lanes (24 of the 32 AVX-512
     * registers) so a row of C <= 64 channels is consumed in one pass */
#define FN_CL_TILE(K)                                                          \
    {                                                                          \
        fn_v8d h[2 * K], a[2 * K], b[2 * K];                                   \
        int k;                                                                 \
        for (k = 0; k < 2 * K; k++) {                                          \
            memcpy(&h[k], sh + j0 + 8 * k, sizeof h[k]);                       \
            memcpy(&a[k], s1 + j0 + 8 * k, sizeof a[k]);                       \
            memcpy(&b[k], s2 + j0 + 8 * k, sizeof b[k]);                       \
        }                                                                      \
        for (r = 0; r < vr; r++) {                                             \
            const FN_T *restrict p = x + r * W + j0;                           \
            if (pf)                                                            \
                FN_PREFETCH_LINES(p + vr * W, 16 * K * sizeof(FN_T), 0);      \
            FN_UNROLL8 for (k = 0; k < 2 * K; k++) {                           \
                fn_v8d d = FN(load8d)(p + 8 * k) - h[k];                       \
                a[k] += d;                                                     \
                b[k] = FN_FMA8D(d, d, b[k]);                                   \
            }                                                                  \
        }                                                                      \
        for (k = 0; k < 2 * K; k++) {                                          \
            memcpy(s1 + j0 + 8 * k, &a[k], sizeof a[k]);                       \
            memcpy(s2 + j0 + 8 * k, &b[k], sizeof b[k]);                       \
        }                                                                      \
        j0 += 16 * K;                                                          \
    }
    while (j0 + 64 <= W) FN_CL_TILE(4)
    if (j0 + 48 <= W) FN_CL_TILE(3)
    else if (j0 + 32 <= W) FN_CL_TILE(2)
    else if (j0 + 16 <= W) FN_CL_TILE(1)
#undef FN_CL_TILE
#endif
    if (j0 < W) {
        for (r = 0; r < vr; r++) {
            const FN_T *restrict p = x + r * W;
            for (j = j0; j < W; j++) {
                double d = (double)FN_LOAD(p[j]) - sh[j];
                s1[j] += d;
                s2[j] = FN_FMA(d, d, s2[j]);
            }
        }
    }
}
#endif

/* Channels-last chunk of `rows` rows x C: one Welford triple per channel in
 * out[0..C).  Every lane's sums run over the whole chunk, shifted by its
 * channel's value in the chunk's first row (walked in blocks of R rows, R a
 * multiple of m, so a block stays in L1 across its tiles); the m lanes of a
 * channel are then summed in fixed order: one fn_finish per channel per chunk.
 * acc: 3*W doubles of scratch. */
FN_INLINE void FN(stats_cl_in)(const FN_T *restrict x, Py_ssize_t rows, Py_ssize_t C,
                                Py_ssize_t m, Py_ssize_t R, double *restrict acc,
                                fn_triple *restrict out, const int fn_fz)
{
    Py_ssize_t W = C * m, vr = rows / m, r0, r, c, k, j, nv;
    double *restrict sh = acc, *restrict s1 = acc + W, *restrict s2 = acc + 2 * W;
    if (rows <= 0) {
        for (c = 0; c < C; c++) { out[c].n = 0.0; out[c].mean = 0.0; out[c].m2 = 0.0; }
        return;
    }
    for (c = 0; c < C; c++) sh[c] = (double)FN_LOAD(x[c]);
    for (j = C; j < W; j++) sh[j] = sh[j - C];
    for (j = 0; j < W; j++) { s1[j] = 0.0; s2[j] = 0.0; }
    if (W > 64) {
        /* rows wider than a tile: walk blocks of about FN_CL_WALK bytes so
         * that a block and the next one, prefetched by the tile passes, fit
         * L1 together (measured: S3 channels-last statistics from memory
         * 1.50 -> 1.60 of a copy's time).  The lanes still add their rows
         * in order: the same bits for any block size. */
        Py_ssize_t rw = FN_CL_WALK / (Py_ssize_t)(W * sizeof(FN_T)) * m;
        if (rw < m) rw = m;
        if (rw < R) R = rw;
    }
    for (r0 = 0; r0 < vr * m; r0 += R) {
        nv = (vr * m - r0 < R ? vr * m - r0 : R) / m;
#if defined(FN_BUF16) && FN_HAVE_VEC
#ifdef FN_STATS_CL_HW
        if (FN_STATS_CL_HW(x + r0 * C, nv, W, sh, s1, s2, W > 64, fn_fz))
            continue;   /* done from registers */
#endif
        {
            /* widen into an L1 buffer (hardware conversion when available)
             * and run the float32 tiles on it: each lane still adds its rows
             * in order, so splitting rows or columns changes no bits */
            float buf[FN_CL_BUF];
            const FN_T *xb = x + r0 * C;
            Py_ssize_t per = FN_CL_BUF / W, done, cnt, s0, len;
            if (per >= 1) {
                for (done = 0; done < nv; done += cnt) {
                    cnt = nv - done < per ? nv - done : per;
                    FN_WIDEN(xb + done * W, buf, cnt * W);
                    fn_block_cl_f32(buf, cnt, W, sh, s1, s2, 0, fn_fz);
                }
            } else {
                for (done = 0; done < nv; done++)
                    for (s0 = 0; s0 < W; s0 += len) {
                        len = W - s0 < FN_CL_BUF ? W - s0 : FN_CL_BUF;
                        FN_WIDEN(xb + done * W + s0, buf, len);
                        fn_block_cl_f32(buf, 1, len, sh + s0, s1 + s0, s2 + s0, 0, fn_fz);
                    }
            }
        }
#else
        FN(block_cl)(x + r0 * C, nv, W, sh, s1, s2, W > 64, fn_fz);
#endif
    }
    for (r = vr * m; r < rows; r++) {   /* rows that do not fill a virtual row */
        const FN_T *restrict p = x + r * C;
        for (c = 0; c < C; c++) {
            double d = (double)FN_LOAD(p[c]) - sh[c];
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

FN_MV static void FN(stats_cl)(const FN_T *restrict x, Py_ssize_t rows, Py_ssize_t C,
                               Py_ssize_t m, Py_ssize_t R, double *restrict acc,
                               fn_triple *restrict out)
{
    FN_WITH_FZ(FN(stats_cl_in)(x, rows, C, m, R, acc, out, fn_fz));
}

/* Channels-last apply over rows x C.  coef holds four arrays of W = C*m
 * working-precision values (hi, lo, scale, shift), tiled m times. */
#ifdef FN_BUF16
/* float16: nr rows of W elements through an L1 float buffer (bulk hardware
 * conversion when available), same per-element formula as below. */
FN_INLINE void FN(apply_rows_buf)(const FN_T *x, FN_T *y, Py_ssize_t nr, Py_ssize_t W,
                                  const FN_W *coef, Py_ssize_t cw, int act, FN_W slope,
                                  const int fn_fz)
{
    float buf[FN_CHUNK];
    const FN_W *hi = coef, *lo = coef + cw, *sc = coef + 2 * cw, *sf = coef + 3 * cw;
    Py_ssize_t per = FN_CHUNK / W, r, rr, cnt, j, s0, len;
#ifdef FN_APPLY_CL_HW
    if (act == FN_ACT_NONE && FN_APPLY_CL_HW(x, y, nr, W, coef, cw, fn_fz))
        return;
#endif
#define FN_LOOP(ACT)                                                          \
    FN_IVDEP for (j = 0; j < len; j++) {                                      \
        float v = FN_FMAF((b[j] - h[j]) - l[j], c[j], f[j]);                  \
        ACT;                                                                 \
        b[j] = v;                                                            \
    }
    if (per >= 1) {
        for (r = 0; r < nr; r += cnt) {
            cnt = nr - r < per ? nr - r : per;
            FN_WIDEN(x + r * W, buf, cnt * W);
            for (rr = 0; rr < cnt; rr++) {
                float *restrict b = buf + rr * W;
                const FN_W *h = hi, *l = lo, *c = sc, *f = sf;
                len = W;
                FN_ACT_SWITCH(FN_LOOP)
            }
            FN_NARROW(buf, y + r * W, cnt * W);
        }
    } else {
        for (r = 0; r < nr; r++)
            for (s0 = 0; s0 < W; s0 += len) {
                float *restrict b = buf;
                const FN_W *h = hi + s0, *l = lo + s0, *c = sc + s0, *f = sf + s0;
                len = W - s0 < FN_CHUNK ? W - s0 : FN_CHUNK;
                FN_WIDEN(x + r * W + s0, buf, len);
                FN_ACT_SWITCH(FN_LOOP)
                FN_NARROW(buf, y + r * W + s0, len);
            }
    }
#undef FN_LOOP
}
FN_INLINE void FN(apply_cl_in)(const FN_T *x, FN_T *y, Py_ssize_t rows, Py_ssize_t C,
                                Py_ssize_t m, const FN_W *coef, int act, FN_W slope,
                                const int fn_fz)
{
    Py_ssize_t W = C * m, vr = rows / m;
    FN(apply_rows_buf)(x, y, vr, W, coef, W, act, slope, fn_fz);
    FN(apply_rows_buf)(x + vr * W, y + vr * W, rows - vr * m, C, coef, W, act, slope, fn_fz);
}
#else
FN_INLINE void FN(apply_cl_in)(const FN_T *x, FN_T *y, Py_ssize_t rows, Py_ssize_t C,
                                Py_ssize_t m, const FN_W *coef, int act, FN_W slope,
                                const int fn_fz)
{
    Py_ssize_t W = C * m, vr = rows / m, r, j;
    const FN_W *hi = coef, *lo = coef + W, *sc = coef + 2 * W, *sf = coef + 3 * W;
    (void)lo;   /* unused when the working type is double */
#if FN_HAVE_VEC && defined(FN_CL_TILES)
    if (act == FN_ACT_NONE || act == FN_ACT_NT_CL) {
        FN_CL_TILES(x, y, vr, W, hi, sc, sf, act == FN_ACT_NT_CL, fn_fz);
        FN_CL_TILES(x + vr * W, y + vr * W, rows - vr * m, C, hi, sc, sf, 0, fn_fz);
        return;
    }
#endif
#define FN_LOOP(ACT)                                                          \
    for (r = 0; r < vr; r++) {                                                \
        const FN_T *p = x + r * W;                                            \
        FN_T *q = y + r * W;                                                  \
        FN_IVDEP for (j = 0; j < W; j++) {                                    \
            FN_W v = FN_MADD(FN_SUBLO((FN_W)FN_LOAD(p[j]) - hi[j], lo[j]), sc[j], sf[j]); \
            ACT;                                                             \
            q[j] = FN_STORE(v);                                              \
        }                                                                    \
    }                                                                        \
    for (r = vr * m; r < rows; r++) {                                         \
        const FN_T *p = x + r * C;                                            \
        FN_T *q = y + r * C;                                                  \
        FN_IVDEP for (j = 0; j < C; j++) {                                    \
            FN_W v = FN_MADD(FN_SUBLO((FN_W)FN_LOAD(p[j]) - hi[j], lo[j]), sc[j], sf[j]); \
            ACT;                                                             \
            q[j] = FN_STORE(v);                                              \
        }                                                                    \
    }
    FN_ACT_SWITCH(FN_LOOP)
#undef FN_LOOP
}
#endif

FN_MV static void FN(apply_cl)(const FN_T *x, FN_T *y, Py_ssize_t rows, Py_ssize_t C,
                               Py_ssize_t m, const FN_W *coef, int act, FN_W slope)
{
    FN_WITH_FZ(FN(apply_cl_in)(x, y, rows, C, m, coef, act, slope, fn_fz));
}

/* Working-precision coefficients from a double mean / scale / shift. */
static inline void FN(coef)(double mean, double scale, double shift, FN_W *hi, FN_W *lo,
                            FN_W *sc, FN_W *sf)
{
    FN_W h = (FN_W)mean;
    *hi = h;
    *lo = (FN_W)(mean - (double)h);
    *sc = (FN_W)scale;
    *sf = (FN_W)shift;
}

#undef FN_ACT_SWITCH
#undef FN_SUBLO
#undef FN_W_DOUBLE
#undef FN
#undef FN_CAT
#undef FN_CAT2
#undef FN_T
#undef FN_W
#undef FN_SUF
#undef FN_LOAD
#undef FN_STORE
#undef FN_EXP
#undef FN_SIGMOID
#undef FN_SILU_IN_FLOAT
#undef FN_APPLY_V16_F32
#undef FN_CL_TILES
#undef FN_IS16
#undef FN_BUF16
#undef FN_APPLY_HW
#undef FN_STATS_HW
#undef FN_APPLY_CL_HW
#undef FN_STATS_CL_HW
#undef FN_LOAD16F
#undef FN_WIDEN
#undef FN_NARROW
