/* Prints two hashes of the kernels' outputs (statistics and apply, channels
 * first and last, float32 / float64 / float16, every activation) on fixed
 * pseudo-random data: with the fused multiply-add and with the unfused twin
 * that CPUs without FMA run.  tests/test_hardening.py builds it for several
 * ISA levels and checks that every build prints the same line. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
typedef ptrdiff_t Py_ssize_t;
#include "fn_kernels.h"

static unsigned long long h = 1469598103934665603ULL;
static void mix(const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) { h ^= c[i]; h *= 1099511628211ULL; }
}
static unsigned long long s = 88172645463325252ULL;
static double rnd(void)   /* xorshift64 -> [0, 1) */
{
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return (double)(s >> 11) * (1.0 / 9007199254740992.0);
}

#define N 20011
#define C1 16
#define C2 37

static void run(void)
{
    static float xf[N], yf[N];
    static double xd[N], yd[N];
    static uint16_t xh[N], yh[N];
    static double acc[3 * 4 * 64];
    static double coefd[4 * 4 * 64];
    static float coeff[4 * 4 * 64];
    fn_triple t, tc[64];
    int i, act, k;
    for (i = 0; i < N; i++) {
        double v = (rnd() - 0.3) * (i % 7 == 0 ? 1e3 : 3.0) + 1e4 * (i % 5 == 0);
        xf[i] = (float)v;
        xd[i] = v;
        xh[i] = fn_f2h((float)(v * 1e-3));
    }
    fn_stats_f32(xf, N, &t); mix(&t, sizeof t);
    fn_stats_f64(xd, N, &t); mix(&t, sizeof t);
    fn_stats_f16(xh, N, &t); mix(&t, sizeof t);
    for (act = 0; act < 4; act++) {
        fn_apply_f32(xf, yf, N, 1234.5678901, 0.0, 0.0123456789, 0.987654321, act, 0.01);
        mix(yf, sizeof yf);
        fn_apply_f64(xd, yd, N, 1234.5678901, 0.0, 0.0123456789, 0.987654321, act, 0.01);
        mix(yd, sizeof yd);
        fn_apply_f16(xh, yh, N, 1.2345678f, 1e-8f, 1.3456789f, -0.25f, act, 0.01f);
        mix(yh, sizeof yh);
    }
    /* channels last: C1 channels in one tile (m = 4, W = 64) and C2 wider than a
     * tile (m = 2, W > 64: several tile passes with the next-block prefetch) */
    for (k = 0; k < 2; k++) {
        Py_ssize_t C = k ? C2 : C1, m = k ? 2 : 4, W = C * m, rows = N / C, j;
        fn_stats_cl_f32(xf, rows, C, m, 8 * m, acc, tc); mix(tc, C * sizeof tc[0]);
        fn_stats_cl_f64(xd, rows, C, m, 8 * m, acc, tc); mix(tc, C * sizeof tc[0]);
        fn_stats_cl_f16(xh, rows, C, m, 8 * m, acc, tc); mix(tc, C * sizeof tc[0]);
        for (j = 0; j < W; j++) {
            double mean = 1e4 * (j % 5 == 0) + 0.1 * (double)(j % C), sc = 0.5 + 0.01 * (double)(j % C);
            fn_coef_f32(mean, sc, 0.25, &coefd[j], &coefd[W + j], &coefd[2 * W + j], &coefd[3 * W + j]);
        }
        for (act = 0; act < 4; act++) {
            fn_apply_cl_f32(xf, yf, rows, C, m, coefd, act, 0.01);
            mix(yf, rows * C * sizeof yf[0]);
            fn_apply_cl_f64(xd, yd, rows, C, m, coefd, act, 0.01);
            mix(yd, rows * C * sizeof yd[0]);
        }
        for (j = 0; j < W; j++) {
            double mean = 0.1 * (double)(j % C) - 0.3, sc = 0.5 + 0.01 * (double)(j % C);
            fn_coef_f16(mean, sc, 0.25, &coeff[j], &coeff[W + j], &coeff[2 * W + j], &coeff[3 * W + j]);
        }
        for (act = 0; act < 4; act++) {
            fn_apply_cl_f16(xh, yh, rows, C, m, coeff, act, 0.01f);
            mix(yh, rows * C * sizeof yh[0]);
        }
    }
}

int main(void)
{
    run();
    printf("%016llx ", h);
    fn_fma_off = 1;
    s = 88172645463325252ULL;
    h = 1469598103934665603ULL;
    run();
    printf("%016llx\n", h);
    return 0;
}
