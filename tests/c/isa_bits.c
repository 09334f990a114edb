/* Prints a hash of one kernel target's outputs (statistics and apply,
 * channels first and last, small planes, float32 / float64 / float16 /
 * bfloat16, every activation, normal and streaming stores) on fixed
 * pseudo-random data.  tests/test_isa_builds.py links it against
 * fastnorm/_cpu/fn_kernels.c compiled for several targets (x86-64 levels,
 * the scalar layer, aarch64 under qemu in CI) and checks that every build
 * with fused multiply-adds prints the same line, and every unfused build
 * another one. */
#include <stdio.h>
#include <stdlib.h>
#include "fn_base.h"
#include "fn_half.h"

#ifndef FN_TARGET
#define FN_TARGET generic
#endif
#define FN_CAT2(a, b) a##_##b
#define FN_CAT(a, b) FN_CAT2(a, b)
extern const fn_target FN_CAT(fn_target, FN_TARGET);
#define T (&FN_CAT(fn_target, FN_TARGET))

static unsigned long long h = 1469598103934665603ULL;
static void mix(const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
}
static unsigned long long s = 88172645463325252ULL;
static double rnd(void) /* xorshift64 -> [0, 1) */
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) * (1.0 / 9007199254740992.0);
}

#define N 20011
static float xf[N], yf[N + 64];
static double xd[N], yd[N + 64];
static uint16_t xh[N], yh[N], xb[N], yb[N];
static double acc[3 * 4 * 128];
static double coefd[4 * 4 * 128];
static float coeff[4 * 4 * 128];

int main(void)
{
    fn_triple t, tc[128], tri[64];
    double mean[256], scale[256], shift[256], w[64], b[64];
    int i, act, k, st;
    const void *xs[4];
    void *ys[4];
    for (i = 0; i < N; i++) {
        double v = (rnd() - 0.3) * (i % 7 == 0 ? 1e3 : 3.0) + 1e4 * (i % 5 == 0);
        xf[i] = (float)v;
        xd[i] = v;
        xh[i] = fn_f2h((float)(v * 1e-3));
        xb[i] = fn_f2b((float)v);
    }
    xs[FN_F32] = xf;
    xs[FN_F64] = xd;
    xs[FN_F16] = xh;
    xs[FN_BF16] = xb;
    ys[FN_F32] = yf;
    ys[FN_F64] = yd;
    ys[FN_F16] = yh;
    ys[FN_BF16] = yb;
    for (i = 0; i < 64; i++) {
        w[i] = 0.5 + 0.01 * i;
        b[i] = 0.1 * i - 2.0;
    }
    for (k = 0; k < 4; k++) {
        const fn_dtype_kernels *K = &T->k[k];
        int isz = k == FN_F32 ? 4 : k == FN_F64 ? 8 : 2;
        size_t ysz = (size_t)N * isz;
        K->stats(xs[k], N, &t);
        mix(&t, sizeof t);
        K->stats(xs[k], 37, &t);
        mix(&t, sizeof t);
        for (act = 0; act < 4; act++)
            for (st = 0; st < 2; st++) {
                /* an output offset by one element: unaligned head and tail */
                K->apply(xs[k], (char *)ys[k] + (st ? isz : 0), N - 1, k >= FN_F16 ? 1.2345678 : 1234.5678901,
                         0.0123456789, 0.987654321, act, 0.01, st);
                mix(ys[k], ysz);
            }
        /* small planes: 37 planes of 3 channels x 89 (groups of 3), affine */
        for (act = 0; act < 4; act++) {
            K->planes(xs[k], ys[k], 0, 37, 3 * 89, 89, 37, 0, 3, 1e-5, w, b, act, 0.02, tri, mean, scale,
                      shift);
            mix(ys[k], (size_t)37 * 3 * 89 * isz);
            mix(tri, 37 * sizeof tri[0]);
        }
        /* channels last: C = 16 (m = 1), C = 3 (m = 16, W = 48), C = 37 (m = 1,
         * several tiles), C = 100 (wide rows: walked blocks and prefetch) */
        {
            const int Cs[4] = {16, 3, 37, 100}, ms[4] = {1, 16, 1, 1};
            int q;
            for (q = 0; q < 4; q++) {
                fn_ssize C = Cs[q], m = ms[q], W = C * m, rows = N / C, j;
                K->stats_cl(xs[k], rows, C, m, 8 * m, acc, tc);
                mix(tc, C * sizeof tc[0]);
                for (j = 0; j < W; j++) {
                    double mu = (k >= FN_F16 ? 1.0 : 1e4) * (j % 5 == 0) + 0.1 * (double)(j % C);
                    double sc = 0.5 + 0.01 * (double)(j % C);
                    float hi = (float)mu;
                    coefd[j] = mu;
                    coefd[W + j] = 0.0;
                    coefd[2 * W + j] = sc;
                    coefd[3 * W + j] = 0.25;
                    coeff[j] = hi;
                    coeff[W + j] = (float)(mu - (double)hi);
                    coeff[2 * W + j] = (float)sc;
                    coeff[3 * W + j] = 0.25f;
                }
                for (act = 0; act < 4; act++)
                    for (st = 0; st < 2; st++) {
                        K->apply_cl(xs[k], ys[k], rows, C, m,
                                    k >= FN_F16 ? (const void *)coeff : (const void *)coefd, act, 0.01, st);
                        mix(ys[k], (size_t)rows * C * isz);
                    }
            }
        }
    }
    {
        static float hf[1 << 16];
        static uint16_t hb[1 << 16];
        uint16_t all[1 << 16];
        for (i = 0; i < (1 << 16); i++) all[i] = (uint16_t)i;
        T->widen_f16(all, hf, 1 << 16);
        T->narrow_f16(hf, hb, 1 << 16);
        mix(hf, sizeof hf);
        mix(hb, sizeof hb);
    }
    printf("%016llx %s fused=%d\n", h, T->level, T->fused);
    return 0;
}
