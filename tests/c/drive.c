/* The engine driven without Python: fn_select, the plans and the drivers of
 * fn_drive.h over the kernels of one target.  tests/test_c_driver.py builds
 * this file with fastnorm/_cpu's C sources (no Python, no NumPy headers) and
 * compares what it writes with the extension's results on the same data.
 *
 * Writes to argv[1], in order: x and dy (float32, N * C * S each), then
 * float32 y of instance norm channels first (x as (N, C, S)), y channels last
 * (x as (N, S, C)), grad_x channels first, and float64 grad_weight,
 * grad_bias (C each).  Each is computed twice, on one thread with the
 * default plan and on two threads with the wave plans forced; it exits 1
 * if the two differ in any bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_dispatch.h"
#include "fn_drive.h"
#include "fn_plan.h"

#define N 2
#define C 3
#define S 6001
#define E ((size_t)N * C * S)

static unsigned long long s = 88172645463325252ULL;
static float rnd(void) /* xorshift64 -> [-1, 3) */
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (float)((double)(s >> 11) * (4.0 / 9007199254740992.0) - 1.0);
}

static float x[E], dy[E], ya[E], yb[E];
static double g1[2 * C], g2[2 * C];

static int same(const void *a, const void *b, size_t n, const char *what)
{
    if (memcmp(a, b, n) == 0) return 1;
    fprintf(stderr, "%s: one thread and two threads differ\n", what);
    return 0;
}

static int run(FILE *out)
{
    fn_err err;
    int ok = 1;
    fn_ssize i;
    const fn_tunables dflt = fn_tune;
    for (i = 0; i < (fn_ssize)E; i++) x[i] = rnd();
    for (i = 0; i < (fn_ssize)E; i++) dy[i] = rnd();
    fwrite(x, sizeof x, 1, out);
    fwrite(dy, sizeof dy, 1, out);

    /* channels first: default plan, then waves on two threads */
    if (fn_drive_norm_cf(x, ya, FN_F32, FN_F32, 4, 4, N, C, 1, S, NULL, NULL, 1e-5, FN_ACT_NONE, 0.0, 1, NULL,
                         &err))
        return 0;
    fn_tune.wave_bytes = 1 << 12;
    fn_tune.small_planes = 0;
    if (fn_drive_norm_cf(x, yb, FN_F32, FN_F32, 4, 4, N, C, 1, S, NULL, NULL, 1e-5, FN_ACT_NONE, 0.0, 2, NULL,
                         &err))
        return 0;
    fn_tune = dflt;
    ok &= same(ya, yb, sizeof ya, "channels first");
    fwrite(ya, sizeof ya, 1, out);

    /* channels last */
    if (fn_drive_norm_cl(x, ya, FN_F32, FN_F32, 4, 4, N, S, C, C, NULL, NULL, 1e-5, FN_ACT_NONE, 0.0, 1, NULL,
                         &err))
        return 0;
    fn_tune.wave_bytes = 1 << 12;
    fn_tune.ct_round_bytes = 1;
    if (fn_drive_norm_cl(x, yb, FN_F32, FN_F32, 4, 4, N, S, C, C, NULL, NULL, 1e-5, FN_ACT_NONE, 0.0, 2, NULL,
                         &err))
        return 0;
    fn_tune = dflt;
    ok &= same(ya, yb, sizeof ya, "channels last");
    fwrite(ya, sizeof ya, 1, out);

    /* backward, channels first */
    if (fn_drive_backward_cf(x, dy, ya, FN_F32, 4, N, C, 1, S, NULL, 1e-5, NULL, 1, g1, g1 + C, NULL, &err))
        return 0;
    fn_tune.bwd_wave_bytes = 1 << 12;
    if (fn_drive_backward_cf(x, dy, yb, FN_F32, 4, N, C, 1, S, NULL, 1e-5, NULL, 2, g2, g2 + C, NULL, &err))
        return 0;
    fn_tune = dflt;
    ok &= same(ya, yb, sizeof ya, "backward") & same(g1, g2, sizeof g1, "grad_weight, grad_bias");
    fwrite(ya, sizeof ya, 1, out);
    fwrite(g1, sizeof g1, 1, out);
    return ok;
}

int main(int argc, char **argv)
{
    FILE *out;
    int ok;
    if (argc != 2 || fn_select("auto", -1) != 0) return 2;
    out = fopen(argv[1], "wb");
    if (out == NULL) return 2;
    ok = run(out);
    fclose(out);
    printf("%s\n", fn_level());
    return ok ? 0 : 1;
}
