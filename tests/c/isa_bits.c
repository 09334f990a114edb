/* Prints a hash of one kernel target's outputs (statistics and apply,
 * channels first and last, small planes, every (input, output) pair of
 * float32 / float64 / float16 / bfloat16 and the integer inputs, every
 * activation, normal and streaming stores) on fixed
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
static uint8_t xu8[N];
static int8_t xi8[N];
static uint16_t xu16[N];
static int16_t xi16[N];
static uint32_t xu32[N];
static int32_t xi32[N];
static uint64_t xu64[N];
static int64_t xi64[N];
static const int isz_of[FN_NCODES] = {2, 4, 8, 2, 1, 1, 2, 2, 4, 4, 8, 8};
static double acc[3 * 4 * 128];
static double coefd[4 * 4 * 128];
static float coeff[4 * 4 * 128];

int main(void)
{
    fn_triple t, tc[128], tri[64];
    /* w, b: the weights of up to 128 channels (37 planes of 3; C = 100) */
    double mean[256], scale[256], shift[256], w[128], b[128];
    int i, act, k, st;
    const void *xs[FN_NCODES];
    void *ys[FN_NOUT];
    for (i = 0; i < N; i++) {
        double v = (rnd() - 0.3) * (i % 7 == 0 ? 1e3 : 3.0) + 1e4 * (i % 5 == 0);
        xf[i] = (float)v;
        xd[i] = v;
        xh[i] = fn_f2h((float)(v * 1e-3));
        xb[i] = fn_f2b((float)v);
        /* integers over each type's range, its ends included */
        xu8[i] = (uint8_t)(i % 11 == 0 ? 255 * (i % 2) : (int)(rnd() * 256.0));
        xi8[i] = (int8_t)(i % 11 == 0 ? (i % 2 ? 127 : -128) : (int)(rnd() * 256.0) - 128);
        xu16[i] = (uint16_t)(rnd() * 65536.0);
        xi16[i] = (int16_t)((int)(rnd() * 65536.0) - 32768);
        xu32[i] = (uint32_t)(rnd() * 4294967296.0);
        xi32[i] = (int32_t)(rnd() * 4294967296.0 - 2147483648.0);
        xu64[i] =
            (i % 3 ? (uint64_t)1 << 63 : 0) + (uint64_t)(rnd() * 9007199254740992.0) * 1023u + (uint64_t)i;
        xi64[i] = (int64_t)((i % 2 ? 1 : -1) * ((int64_t)1 << 62)) + (int64_t)(rnd() * 1e15) * 4099 + i;
    }
    xs[FN_U8] = xu8;
    xs[FN_I8] = xi8;
    xs[FN_U16] = xu16;
    xs[FN_I16] = xi16;
    xs[FN_U32] = xu32;
    xs[FN_I32] = xi32;
    xs[FN_U64] = xu64;
    xs[FN_I64] = xi64;
    xs[FN_F32] = xf;
    xs[FN_F64] = xd;
    xs[FN_F16] = xh;
    xs[FN_BF16] = xb;
    ys[FN_F32] = yf;
    ys[FN_F64] = yd;
    ys[FN_F16] = yh;
    ys[FN_BF16] = yb;
    for (i = 0; i < 128; i++) {
        w[i] = 0.5 + 0.01 * i;
        b[i] = 0.1 * i - 2.0;
    }
    for (k = 0; k < FN_NCODES * FN_NOUT; k++) {
        /* every pair (i, o): input code i, output code o (the kernels, and the
         * coefficients' type and the mean's scale, are o's) */
        const int ic = k / FN_NOUT, o = k % FN_NOUT;
        const fn_dtype_kernels *K = &T->k[ic][k % FN_NOUT];
        int isz = isz_of[o];
        size_t ysz = (size_t)N * isz;
        const int half = o == FN_F16 || o == FN_BF16; /* float coefficients */
        K->stats(xs[ic], N, &t);
        mix(&t, sizeof t);
        K->stats(xs[ic], 37, &t);
        mix(&t, sizeof t);
        for (act = 0; act < 4; act++)
            for (st = 0; st < 2; st++) {
                /* an output offset by one element: unaligned head and tail */
                K->apply(xs[ic], (char *)ys[o] + (st ? isz : 0), N - 1, half ? 1.2345678 : 1234.5678901,
                         0.0123456789, 0.987654321, act, 0.01, st);
                mix(ys[o], ysz);
            }
        /* small planes: 37 planes of 3 channels x 89 (groups of 3), affine */
        for (act = 0; act < 4; act++) {
            K->planes(xs[ic], ys[o], 0, 37, 3 * 89, 89, 37, 0, 3, 1e-5, w, b, act, 0.02, tri, mean, scale,
                      shift);
            mix(ys[o], (size_t)37 * 3 * 89 * isz);
            mix(tri, 37 * sizeof tri[0]);
        }
        /* channels last: C = 16 (m = 1), C = 3 (m = 16, W = 48), C = 37 (m = 1,
         * several tiles), C = 100 (wide rows: walked blocks and prefetch) */
        {
            const int Cs[4] = {16, 3, 37, 100}, ms[4] = {1, 16, 1, 1};
            int q;
            for (q = 0; q < 4; q++) {
                fn_ssize C = Cs[q], m = ms[q], W = C * m, rows = N / C, j;
                K->stats_cl(xs[ic], rows, C, m, 8 * m, acc, tc);
                mix(tc, C * sizeof tc[0]);
                for (j = 0; j < W; j++) {
                    double mu = (half ? 1.0 : 1e4) * (j % 5 == 0) + 0.1 * (double)(j % C);
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
                        K->apply_cl(xs[ic], ys[o], rows, C, m,
                                    half ? (const void *)coeff : (const void *)coefd, act, 0.01, st);
                        mix(ys[o], (size_t)rows * C * isz);
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
