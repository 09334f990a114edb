/*
 * The drivers (fn_drive.h): a call's work on a team of threads, as its plan
 * (fn_plan.h) splits it.
 *
 * Statistics are always computed per block of at most FN_BLOCK elements
 * (channels first: a slice of one plane; channels last: the rows of a chunk,
 * all channels) and merged with Chan's formula in block order.  The block
 * boundaries and the merge order depend only on the shape, never on the
 * team or the plan, so every plan and every thread count gives the same bits.
 *
 * Two skeletons run every call:
 *   fused  one thread owns whole planes (instances): statistics, then the
 *          normalize pass while the unit is still in L2 (forward only);
 *   waves  fn_run_waves: units in waves shared by the team (forward and
 *          backward, both layouts), each thread a contiguous share of a
 *          wave's items for the statistics and for the second pass.
 */
#include <stdlib.h>
#include <string.h>

#include "fn_backward.h"
#include "fn_dispatch.h"
#include "fn_drive.h"
#include "fn_plan.h"

/* ---- memory -------------------------------------------------------------- */
/* malloc, or NULL with the first failure recorded in err */
static void *fn_alloc(fn_ssize nbytes, const char *what, fn_err *err)
{
    void *p = malloc(nbytes > 0 ? (size_t)nbytes : 1);
    if (p == NULL && err->what == NULL) {
        err->what = what;
        err->nbytes = nbytes;
    }
    return p;
}
/* nbytes at a 64-byte boundary of a block whose start goes to *base (free that) */
static char *fn_alloc_lines(fn_ssize nbytes, char **base, const char *what, fn_err *err)
{
    *base = (char *)fn_alloc(nbytes + 64, what, err);
    return *base == NULL ? NULL : *base + (64 - (size_t)*base % 64);
}

/* ---- the wave skeleton ---------------------------------------------------- */
/* Units (planes, planes of a group, instances) in waves of `wave`, each unit
 * per_unit items (statistics blocks or chunks).  Run by every thread of a
 * team.  Per wave:
 *   begin   (optional) the wave's accumulators zeroed;
 *   rounds of at most `round` items (0: the whole wave): each thread reads
 *           the statistics of its contiguous share of the round's items,
 *           then (optional) merge folds the round into the units, each
 *           thread a share of the channels, in item order;
 *   unit    each unit's coefficients, units dealt round robin;
 *   apply   the second pass over each thread's share of the wave's items,
 *           the same share as the statistics' when there is one round
 *           (still in that thread's L2), from its end when `backward`.
 * Items are numbered over the whole call: unit u's are [u * per_unit,
 * (u + 1) * per_unit). */
typedef struct {
    fn_ssize units, wave, per_unit, round;
    int backward;   /* the second pass runs from the end of each share */
    int sync_after; /* a barrier after the second pass: the next wave reuses the wave's buffers */
    void *ctx;
    void (*begin)(void *ctx, fn_ssize u0, fn_ssize u1, int tid, int team);
    void (*stats)(void *ctx, fn_ssize a, fn_ssize e, fn_ssize r0, fn_ssize u0, int tid);
    void (*merge)(void *ctx, fn_ssize r0, fn_ssize r1, fn_ssize u0, int tid, int team);
    void (*unit)(void *ctx, fn_ssize u, fn_ssize u0, int tid);
    void (*apply)(void *ctx, fn_ssize a, fn_ssize e, fn_ssize u0, int backward);
} fn_waves;

static void fn_run_waves(const fn_waves *wv)
{
    const int tid = fn_team_id(), team = fn_team_size();
    fn_ssize u0, u1, u, base, cnt, r0, r1, a, e;
    for (u0 = 0; u0 < wv->units; u0 = u1) {
        u1 = u0 + wv->wave < wv->units ? u0 + wv->wave : wv->units;
        base = u0 * wv->per_unit;
        cnt = (u1 - u0) * wv->per_unit;
        if (wv->begin) wv->begin(wv->ctx, u0, u1, tid, team);
        r0 = 0;
        do { /* one round at least: its barrier orders begin before unit */
            r1 = wv->round > 0 && r0 + wv->round < cnt ? r0 + wv->round : cnt;
            fn_team_share(base + r0, r1 - r0, tid, team, &a, &e);
            wv->stats(wv->ctx, a, e, base + r0, u0, tid);
            fn_barrier();
            if (wv->merge) {
                wv->merge(wv->ctx, base + r0, base + r1, u0, tid, team);
                fn_barrier();
            }
            r0 = r1;
        } while (r0 < cnt);
        for (u = u0 + tid; u < u1; u += team) wv->unit(wv->ctx, u, u0, tid);
        fn_barrier();
        fn_team_share(base, cnt, tid, team, &a, &e);
        wv->apply(wv->ctx, a, e, u0, wv->backward);
        if (wv->sync_after) fn_barrier();
    }
}

/* fn_run_waves on a team of nth.  One thread runs it with no OpenMP region
 * at all (its barriers then bind to no team and return): libgomp sets up a
 * team and wakes the pool's docked threads even for an if(0) region, about
 * half a microsecond, as much as a tiny call's whole work.  The same rule
 * holds for every region of the drivers: below two threads, plain loops
 * (which take thread 0 explicitly).  Called from inside an active parallel
 * region (a caller's own OpenMP code), the waves' barriers and thread ids
 * would bind to the caller's team: there they get a team of their own. */
static void fn_team_run_waves(const fn_waves *wv, int nth)
{
    if (nth > 1 || fn_in_parallel()) {
#pragma omp parallel num_threads(nth)
        fn_run_waves(wv);
    } else {
        fn_run_waves(wv);
    }
}

/* ---- shared helpers --------------------------------------------------------- */
static const fn_triple fn_zero_triple = {0.0, 0.0, 0.0};

static void zero_triples(fn_triple *t, fn_ssize n)
{
    fn_ssize i;
    for (i = 0; i < n; i++) t[i] = fn_zero_triple;
}
static void merge_triples(fn_triple *acc, const fn_triple *t, fn_ssize n)
{
    fn_ssize i;
    for (i = 0; i < n; i++) fn_merge(&acc[i], &t[i]);
}
static fn_ssize block_end(fn_ssize s0, fn_ssize L) { return s0 + FN_BLOCK < L ? s0 + FN_BLOCK : L; }

/* Triple of one contiguous plane: blocks merged in order. */
static void plane_stats(int dt, int odt, const char *x, fn_ssize L, fn_ssize isz, fn_triple *t)
{
    fn_triple b;
    fn_ssize s, n;
    *t = fn_zero_triple;
    for (s = 0; s < L; s += n) {
        n = L - s < FN_BLOCK ? L - s : FN_BLOCK;
        fn_stats(dt, odt, x + s * isz, n, &b);
        fn_merge(t, &b);
    }
}
/* Triple of block it = p * nb + k (block k of plane p) of planes of L. */
static void cf_block_stats(int dt, int odt, const char *x, fn_ssize it, fn_ssize nb, fn_ssize L, fn_ssize isz,
                           fn_triple *out)
{
    const fn_ssize p = it / nb, s0 = (it - p * nb) * FN_BLOCK;
    fn_stats(dt, odt, x + (p * L + s0) * isz, block_end(s0, L) - s0, out);
}
/* t = the nb block triples merged in order (the one merge order of every plan). */
static void merge_blocks(fn_triple *t, const fn_triple *bt, fn_ssize nb)
{
    fn_ssize k;
    *t = fn_zero_triple;
    for (k = 0; k < nb; k++) fn_merge(t, &bt[k]);
}
/* Apply over [start, stop) of consecutive rows of S elements whose
 * coefficients are mean[c0 + r], scale[c0 + r], shift[c0 + r]. */
static void seg_apply(const fn_plan *pl, const char *x, char *y, fn_ssize start, fn_ssize stop, fn_ssize S,
                      fn_ssize c0, const double *mean, const double *scale, const double *shift)
{
    fn_ssize r, e;
    while (start < stop) {
        r = start / S;
        e = (r + 1) * S < stop ? (r + 1) * S : stop;
        fn_apply(pl->dt, pl->odt, x + start * pl->isz, y + start * pl->osz, e - start, mean[c0 + r],
                 scale[c0 + r], shift[c0 + r], pl->act, pl->slope, pl->stream);
        start = e;
    }
}

/* ---- channels first ----------------------------------------------------------- */
typedef struct {
    const fn_plan *pl;
    const char *x;
    char *y;
    fn_ssize L, S, G, Cg, nb;
    double eps;
    const double *w, *b;
    fn_triple *btri, *tri;
    double *mean, *scale, *shift;
} cf_job;

/* Planes [p0, p1) of a job's x + .. on one thread.  Small planes: one kernel
 * call.  Pipelined: the statistics of plane p+1 are read block by block
 * while plane p (still in L2) is normalized, so the read and the write
 * streams overlap like a copy's.  Else each plane is read, then normalized
 * (from its end when larger than L2).  Plane p is in group (goff + p) % G. */
static void cf_range(const fn_plan *pl, const char *x, char *y, fn_ssize p0, fn_ssize p1, fn_ssize L,
                     fn_ssize S, fn_ssize G, fn_ssize goff, fn_ssize Cg, fn_ssize nb, double eps,
                     const double *w, const double *b, fn_triple *tri, double *mean, double *scale,
                     double *shift)
{
    const int dt = pl->dt, odt = pl->odt;
    const fn_ssize isz = pl->isz, osz = pl->osz;
    /* the next plane's statistics interleaved with this plane's apply: one
     * row per plane, an activation the vector loops run, normal stores */
    const int interleave = Cg == 1 && fn_act_in_vectors(pl->act) && !pl->stream;
    fn_ssize p, k, s0, s1;
    fn_triple bt;
    if (p0 >= p1) return;
    if (pl->small_planes) { /* normal stores: small planes are written while still cached */
        fn_planes(dt, odt, x, y, p0, p1, L, S, G, goff, Cg, eps, w, b, pl->act, pl->slope, tri, mean, scale,
                  shift);
        return;
    }
    plane_stats(dt, odt, x + p0 * L * isz, L, isz, &tri[p0]);
    fn_group_coefs(&tri[p0], eps, (goff + p0) % G, Cg, p0 * Cg, w, b, mean, scale, shift);
    for (p = p0; p < p1; p++) {
        const int nxt = p + 1 < p1;
        const char *xp = x + p * L * isz;
        char *yp = y + p * L * osz;
        if (!pl->pipelined) {
            if (pl->backward) {
                for (s0 = L > 0 ? ((L - 1) / FN_BLOCK) * FN_BLOCK : -1; s0 >= 0; s0 -= FN_BLOCK)
                    seg_apply(pl, xp, yp, s0, block_end(s0, L), S, p * Cg, mean, scale, shift);
            } else {
                seg_apply(pl, xp, yp, 0, L, S, p * Cg, mean, scale, shift);
            }
            if (nxt) {
                plane_stats(dt, odt, xp + L * isz, L, isz, &tri[p + 1]);
                fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale,
                               shift);
            }
            continue;
        }
        if (nxt) tri[p + 1] = fn_zero_triple;
        for (k = 0; k < nb; k++) {
            s0 = k * FN_BLOCK;
            s1 = block_end(s0, L);
            if (nxt && interleave) {
                /* one row per plane: the next plane's block statistics
                 * interleaved with this block's apply */
                fn_stats_apply(dt, odt, xp + (L + s0) * isz, s1 - s0, &bt, xp + s0 * isz, yp + s0 * osz,
                               s1 - s0, mean[p], scale[p], shift[p], pl->act, pl->slope);
                fn_merge(&tri[p + 1], &bt);
                continue;
            }
            if (nxt) {
                fn_stats(dt, odt, xp + (L + s0) * isz, s1 - s0, &bt);
                fn_merge(&tri[p + 1], &bt);
            }
            seg_apply(pl, xp, yp, s0, s1, S, p * Cg, mean, scale, shift);
        }
        if (nxt)
            fn_group_coefs(&tri[p + 1], eps, (goff + p + 1) % G, Cg, (p + 1) * Cg, w, b, mean, scale, shift);
    }
}

/* Planes [p0, p1) on one thread, `batch` planes at a time through this
 * thread's working arrays (tri_all: the triples of every plane, kept for the
 * caller, or NULL), so the working memory does not grow with N x C. */
static void cf_batches(const cf_job *j, fn_ssize p0, fn_ssize p1, fn_triple *tri_all, fn_triple *tri_buf,
                       double *coef, fn_ssize batch)
{
    const fn_plan *pl = j->pl;
    fn_ssize q, q1;
    for (q = p0; q < p1; q = q1) {
        q1 = q + batch < p1 ? q + batch : p1;
        cf_range(pl, j->x + q * j->L * pl->isz, j->y + q * j->L * pl->osz, 0, q1 - q, j->L, j->S, j->G,
                 q % j->G, j->Cg, j->nb, j->eps, j->w, j->b, tri_all != NULL ? tri_all + q : tri_buf, coef,
                 coef + batch * j->Cg, coef + 2 * batch * j->Cg);
    }
}

/* waves: items are the blocks of the planes (nb per plane) */
static void cf_wave_stats(void *ctx, fn_ssize a, fn_ssize e, fn_ssize r0, fn_ssize u0, int tid)
{
    const cf_job *j = (const cf_job *)ctx;
    fn_ssize it;
    for (it = a; it < e; it++)
        cf_block_stats(j->pl->dt, j->pl->odt, j->x, it, j->nb, j->L, j->pl->isz, &j->btri[it]);
    (void)r0, (void)u0, (void)tid;
}
static void cf_wave_unit(void *ctx, fn_ssize p, fn_ssize u0, int tid)
{
    const cf_job *j = (const cf_job *)ctx;
    merge_blocks(&j->tri[p], &j->btri[p * j->nb], j->nb);
    fn_group_coefs(&j->tri[p], j->eps, p % j->G, j->Cg, p * j->Cg, j->w, j->b, j->mean, j->scale, j->shift);
    (void)u0, (void)tid;
}
static void cf_wave_apply(void *ctx, fn_ssize a, fn_ssize e, fn_ssize u0, int backward)
{
    const cf_job *j = (const cf_job *)ctx;
    fn_ssize k, it, p, s0;
    for (k = 0; k < e - a; k++) {
        it = backward ? e - 1 - k : a + k;
        p = it / j->nb;
        s0 = (it - p * j->nb) * FN_BLOCK;
        seg_apply(j->pl, j->x + p * j->L * j->pl->isz, j->y + p * j->L * j->pl->osz, s0, block_end(s0, j->L),
                  j->S, p * j->Cg, j->mean, j->scale, j->shift);
    }
    (void)u0;
}

int fn_drive_norm_cf(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                     fn_ssize G, fn_ssize Cg, fn_ssize S, const double *w, const double *b, double eps,
                     int act, double slope, int n_threads, fn_triple *stats_out, fn_err *err)
{
    const fn_ssize P = N * G, L = Cg * S, R = N * G * Cg, nb = (L + FN_BLOCK - 1) / FN_BLOCK;
    const fn_plan pl = fn_plan_cf(dt, odt, P, L, isz, osz, n_threads, act, slope);
    const int nth = pl.n_threads, keep = stats_out != NULL;
    const fn_ssize batch = fn_tune.plane_batch < P ? fn_tune.plane_batch : P,
                   ts = (fn_ssize)sizeof(fn_triple);
    cf_job j;
    fn_triple *tri, *btri = NULL;
    double *coef;
    err->what = NULL;
    if (pl.fused) { /* per-thread working arrays for `batch` planes at a time */
        tri = (fn_triple *)fn_alloc((keep ? P : nth * batch) * ts, "the plane statistics", err);
        coef = (double *)fn_alloc(nth * 3 * batch * Cg * 8, "the coefficients", err);
    } else {
        tri = (fn_triple *)fn_alloc(P * ts, "the plane statistics", err);
        coef = (double *)fn_alloc(3 * R * 8, "the coefficients", err);
        btri = (fn_triple *)fn_alloc(P * nb * ts, "the block statistics", err);
    }
    if (err->what == NULL) {
        j.pl = &pl;
        j.x = (const char *)x;
        j.y = (char *)y;
        j.L = L, j.S = S, j.G = G, j.Cg = Cg, j.nb = nb, j.eps = eps, j.w = w, j.b = b;
        j.btri = btri, j.tri = tri, j.mean = coef, j.scale = coef + R, j.shift = coef + 2 * R;
        if (pl.fused) {
            int wk; /* one worker per thread, each a contiguous range of planes */
            if (pl.parallel) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
                for (wk = 0; wk < nth; wk++)
                    cf_batches(&j, (P * wk) / nth, (P * (wk + 1)) / nth, keep ? tri : NULL,
                               tri + (keep ? 0 : wk * batch), coef + wk * 3 * batch * Cg, batch);
            } else { /* no OpenMP region: libgomp sets up a team even for an if(0) region */
                for (wk = 0; wk < nth; wk++)
                    cf_batches(&j, (P * wk) / nth, (P * (wk + 1)) / nth, keep ? tri : NULL,
                               tri + (keep ? 0 : wk * batch), coef + wk * 3 * batch * Cg, batch);
            }
        } else {
            const fn_waves wv = {P,    pl.wave,      nb,           0, pl.backward, 0, &j, NULL, cf_wave_stats,
                                 NULL, cf_wave_unit, cf_wave_apply};
            fn_team_run_waves(&wv, nth);
        }
        if (pl.parallel) fn_team_finished(nth);
        if (keep) memcpy(stats_out, tri, (size_t)(P * ts));
    }
    free(tri);
    free(coef);
    free(btri);
    return err->what == NULL ? 0 : -1;
}

int fn_drive_stats_cf(const void *xv, int dt, int odt, fn_ssize isz, fn_ssize P, fn_ssize L, int n_threads,
                      fn_triple *out, fn_err *err)
{
    const char *x = (const char *)xv;
    const fn_ssize nb = (L + FN_BLOCK - 1) / FN_BLOCK, items = P * nb;
    const int nth = fn_team_for(n_threads, P * L);
    fn_triple *btri;
    fn_ssize p, it;
    err->what = NULL;
    if (fn_owns_units(P, nth, 0) || L == 0) {
        if (nth > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
            for (p = 0; p < P; p++) plane_stats(dt, odt, x + p * L * isz, L, isz, &out[p]);
        } else {
            for (p = 0; p < P; p++) plane_stats(dt, odt, x + p * L * isz, L, isz, &out[p]);
        }
        return 0;
    }
    btri = (fn_triple *)fn_alloc(items * (fn_ssize)sizeof(fn_triple), "the block statistics", err);
    if (btri == NULL) return -1;
    if (nth > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (it = 0; it < items; it++) cf_block_stats(dt, odt, x, it, nb, L, isz, &btri[it]);
    } else {
        for (it = 0; it < items; it++) cf_block_stats(dt, odt, x, it, nb, L, isz, &btri[it]);
    }
    for (p = 0; p < P; p++) merge_blocks(&out[p], &btri[p * nb], nb);
    free(btri);
    return 0;
}

static void apply_cf_block(int dt, int odt, const char *x, char *y, fn_ssize isz, fn_ssize osz, fn_ssize S,
                           fn_ssize nb, fn_ssize it, const double *mean, const double *scale,
                           const double *shift, int act, double slope, int stream)
{
    const fn_ssize r = it / nb, s0 = (it - r * nb) * FN_BLOCK;
    fn_apply(dt, odt, x + (r * S + s0) * isz, y + (r * S + s0) * osz, block_end(s0, S) - s0, mean[r],
             scale[r], shift[r], act, slope, stream);
}

void fn_drive_apply_cf(const void *xv, void *yv, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize R,
                       fn_ssize S, const double *mean, const double *scale, const double *shift, int act,
                       double slope, int n_threads)
{
    const char *x = (const char *)xv;
    char *y = (char *)yv;
    const fn_ssize nb = (S + FN_BLOCK - 1) / FN_BLOCK, items = R * nb;
    const int stream = fn_stream_for(odt, act, R * S * osz), nth = fn_team_for(n_threads, R * S);
    fn_ssize it;
    if (nth > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (it = 0; it < items; it++)
            apply_cf_block(dt, odt, x, y, isz, osz, S, nb, it, mean, scale, shift, act, slope, stream);
    } else {
        for (it = 0; it < items; it++)
            apply_cf_block(dt, odt, x, y, isz, osz, S, nb, it, mean, scale, shift, act, slope, stream);
    }
}

/* ---- channels first, into a reflection-padded output ----------------------------- */
/* Plane p of x (H rows of W) normalized into the interior of plane p of y
 * (H + 2 ph rows of W + 2 pw), rows from the last to the first (the end of a
 * plane is what its statistics read last, so still cached); each row's pw
 * border elements on either side, then the ph border rows above and below,
 * copied from their mirror images in the interior (numpy.pad's 'reflect',
 * torch's ReflectionPad2d: the edge is not repeated, so ph < H, pw < W).
 * The interior gets the bits fn_drive_norm_cf writes: the same block
 * statistics merged in the same order, the same coefficients, the same
 * elementwise apply. */
static void pad_plane(int dt, int odt, const char *xp, char *yp, fn_ssize isz, fn_ssize osz, fn_ssize H,
                      fn_ssize W, fn_ssize ph, fn_ssize pw, double eps, fn_ssize c, const double *w,
                      const double *b, int act, double slope)
{
    const fn_ssize Wp = W + 2 * pw, row = Wp * osz;
    fn_triple t;
    double mean, scale, shift;
    fn_ssize h, k;
    plane_stats(dt, odt, xp, H * W, isz, &t);
    fn_group_coefs(&t, eps, c, 1, 0, w, b, &mean, &scale, &shift);
    for (h = H - 1; h >= 0; h--) {
        char *yr = yp + (ph + h) * row + pw * osz;
        fn_apply(dt, odt, xp + h * W * isz, yr, W, mean, scale, shift, act, slope, 0);
        for (k = 1; k <= pw; k++) {
            memcpy(yr - k * osz, yr + k * osz, (size_t)osz);
            memcpy(yr + (W - 1 + k) * osz, yr + (W - 1 - k) * osz, (size_t)osz);
        }
    }
    for (k = 1; k <= ph; k++) {
        memcpy(yp + (ph - k) * row, yp + (ph + k) * row, (size_t)row);
        memcpy(yp + (ph + H - 1 + k) * row, yp + (ph + H - 1 - k) * row, (size_t)row);
    }
}

int fn_drive_norm_pad_cf(const void *xv, void *yv, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                         fn_ssize C, fn_ssize H, fn_ssize W, fn_ssize ph, fn_ssize pw, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads)
{
    const char *x = (const char *)xv;
    char *y = (char *)yv;
    const fn_ssize P = N * C, L = H * W, Lp = (H + 2 * ph) * (W + 2 * pw);
    const int nth = fn_team_for(n_threads < P ? n_threads : (int)(P > 0 ? P : 1), P * L);
    fn_ssize p;
    if (nth > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (p = 0; p < P; p++)
            pad_plane(dt, odt, x + p * L * isz, y + p * Lp * osz, isz, osz, H, W, ph, pw, eps, p % C, w, b,
                      act, slope);
        fn_team_finished(nth);
    } else {
        for (p = 0; p < P; p++)
            pad_plane(dt, odt, x + p * L * isz, y + p * Lp * osz, isz, osz, H, W, ph, pw, eps, p % C, w, b,
                      act, slope);
    }
    return 0;
}

/* ---- the reflection pad's gradient, channels first -------------------------------- */
/* Plane p of g (H + pt + pb rows of W + pl + pr floats) folded into plane p
 * of o (H rows of W): each element of o the sum of the elements of g that
 * mirror it, added from zero in g's row-major order, the order in which
 * torch's reflection_pad2d_backward adds them, so the bits are torch's (a sum
 * of two NaNs may keep the other one's sign and payload: the compiler may
 * swap a commutative addition's operands).
 * Each row of g adds its left border, then its interior (one addition per
 * element of o's row: vectorized without changing any sum), then its
 * right border. */
static void fold_plane(const float *restrict g, float *restrict o, fn_ssize H, fn_ssize W, fn_ssize pt,
                       fn_ssize pb, fn_ssize pl, fn_ssize pr)
{
    const fn_ssize Wp = W + pl + pr, Hp = H + pt + pb;
    fn_ssize oh, k;
    memset(o, 0, (size_t)(H * W) * sizeof(float));
    for (oh = 0; oh < Hp; oh++) {
        const fn_ssize ih = oh < pt ? pt - oh : oh < pt + H ? oh - pt : 2 * (H - 1) - (oh - pt);
        const float *gr = g + oh * Wp;
        float *orow = o + ih * W;
        for (k = 0; k < pl; k++) orow[pl - k] += gr[k];
        for (k = 0; k < W; k++) orow[k] += gr[pl + k];
        for (k = 0; k < pr; k++) orow[W - 2 - k] += gr[pl + W + k];
    }
}

void fn_drive_fold_reflect_f32(const float *g, float *o, fn_ssize P, fn_ssize H, fn_ssize W, fn_ssize pt,
                               fn_ssize pb, fn_ssize pl, fn_ssize pr, int n_threads)
{
    const fn_ssize L = H * W, Lp = (H + pt + pb) * (W + pl + pr);
    const int nth = fn_team_for(n_threads < P ? n_threads : (int)(P > 0 ? P : 1), P * Lp);
    fn_ssize p;
    if (nth > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (p = 0; p < P; p++) fold_plane(g + p * Lp, o + p * L, H, W, pt, pb, pl, pr);
        fn_team_finished(nth);
    } else {
        for (p = 0; p < P; p++) fold_plane(g + p * Lp, o + p * L, H, W, pt, pb, pl, pr);
    }
}

/* ---- channels last -------------------------------------------------------------- */
typedef struct {
    const fn_plan *pl;
    const fn_cl_geom *q;
    const char *x;
    char *y;
    fn_ssize S, C, G;
    double eps;
    const double *w, *b;
    char *scratch;      /* per-thread scratch, q->stride bytes each */
    fn_triple *ct;      /* chunk triples: a round's (waves) or a thread's (fused) */
    fn_triple *tri_all; /* every instance's triples (kept for the caller), or NULL */
    fn_triple *tri_w;   /* the wave's (thread's) instance triples */
    double *coef;       /* mean, scale, shift of the wave's instances */
    char *tiles;        /* the wave's coefficient tiles, tsz bytes each */
    fn_ssize tsz;
} cl_job;

static void cl_chunk_stats(const cl_job *j, fn_ssize n, fn_ssize k, char *scratch, fn_triple *out)
{
    const fn_cl_geom *q = j->q;
    const fn_ssize r0 = k * q->RC, r1 = r0 + q->RC < j->S ? r0 + q->RC : j->S;
    fn_stats_cl(j->pl->dt, j->pl->odt, j->x + (n * j->S + r0) * j->C * j->pl->isz, r1 - r0, j->C, q->m, q->R,
                (double *)scratch, out);
}
static void cl_chunk_apply(const cl_job *j, fn_ssize n, fn_ssize k, const char *tiles)
{
    const fn_plan *pl = j->pl;
    const fn_cl_geom *q = j->q;
    const fn_ssize r0 = k * q->RC, r1 = r0 + q->RC < j->S ? r0 + q->RC : j->S, off = (n * j->S + r0) * j->C;
    fn_apply_cl(pl->dt, pl->odt, j->x + off * pl->isz, j->y + off * pl->osz, r1 - r0, j->C, q->m, tiles,
                pl->act, pl->slope, pl->stream | (pl->rows ? FN_CL_ROWS : 0));
}

/* The per-lane coefficient arrays of one instance (W = C * m lanes, lane j
 * of channel j % C) from ncol per-channel columns, column k of channel c at
 * col[k][c * step].  Float32/float64 (applied in double): one array of
 * doubles per column, plus an array of zeros after the first when zero_lo.
 * 16-bit (applied in float): floats, the first column split into hi + lo
 * (its double = hi + lo to float's precision twice), then the others. */
static void lane_coefs(int odt, int zero_lo, fn_ssize C, fn_ssize m, int ncol, const double *const *col,
                       fn_ssize step, char *dst)
{
    const fn_ssize W = C * m;
    fn_ssize jj, c;
    int k;
    if (odt == FN_F64 || odt == FN_F32) {
        double *d = (double *)(void *)dst;
        for (jj = 0; jj < W; jj++) {
            c = (jj % C) * step;
            d[jj] = col[0][c];
            if (zero_lo) d[W + jj] = 0.0;
            for (k = 1; k < ncol; k++) d[(k + zero_lo) * W + jj] = col[k][c];
        }
    } else {
        float *f = (float *)(void *)dst;
        float h;
        for (jj = 0; jj < W; jj++) {
            c = (jj % C) * step;
            h = (float)col[0][c];
            f[jj] = h;
            f[W + jj] = (float)(col[0][c] - (double)h);
            for (k = 1; k < ncol; k++) f[(k + 1) * W + jj] = (float)col[k][c];
        }
    }
}
/* the forward's (mean, lo, scale, shift) lanes */
static void cl_tile_coefs(int odt, fn_ssize C, fn_ssize m, const double *mean, const double *scale,
                          const double *shift, char *dst)
{
    const double *col[3];
    col[0] = mean, col[1] = scale, col[2] = shift;
    lane_coefs(odt, 1, C, m, 3, col, 1, dst);
}

/* Per-channel coefficients of one instance from its C channel triples; with
 * G < C the channel triples of a group are first merged in order. */
static void cl_instance_coefs(const fn_triple *tri, fn_ssize C, fn_ssize G, double eps, const double *w,
                              const double *b, double *mean, double *scale, double *shift)
{
    const fn_ssize Cg = C / G;
    fn_ssize g, k;
    fn_triple gt;
    for (g = 0; g < G; g++) {
        if (Cg == 1) {
            gt = tri[g];
        } else {
            gt = fn_zero_triple;
            for (k = 0; k < Cg; k++) fn_merge(&gt, &tri[g * Cg + k]);
        }
        fn_group_coefs(&gt, eps, g, Cg, g * Cg, w, b, mean, scale, shift);
    }
}

/* One whole instance n on thread tid: chunk statistics merged in chunk order
 * (as in the wave plan), then the normalize pass. */
static void cl_instance(const cl_job *j, fn_ssize n, int tid, fn_triple *tri)
{
    const fn_cl_geom *q = j->q;
    const fn_ssize C = j->C;
    fn_triple *ct = j->ct + tid * C;
    double *coef = j->coef + tid * 3 * C;
    char *tiles = j->tiles + tid * j->tsz;
    fn_ssize k;
    zero_triples(tri, C);
    for (k = 0; k < q->nch; k++) {
        cl_chunk_stats(j, n, k, j->scratch + tid * q->stride, ct);
        merge_triples(tri, ct, C);
    }
    cl_instance_coefs(tri, C, j->G, j->eps, j->w, j->b, coef, coef + C, coef + 2 * C);
    cl_tile_coefs(j->pl->odt, C, q->m, coef, coef + C, coef + 2 * C, tiles);
    for (k = 0; k < q->nch; k++) cl_chunk_apply(j, n, j->pl->backward ? q->nch - 1 - k : k, tiles);
}

/* waves: items are the chunks of the instances (nch per instance); the
 * statistics of a wave are read in rounds and merged after each round, each
 * thread a share of the channels, so the merge order is the fused plan's.
 * tri + n * C: instance n's triples, n in the wave [n0, n1). */
static fn_triple *cl_wave_tri(const cl_job *j, fn_ssize n0)
{
    return j->tri_all != NULL ? j->tri_all : j->tri_w - n0 * j->C;
}
static void cl_wave_begin(void *ctx, fn_ssize n0, fn_ssize n1, int tid, int team)
{
    const cl_job *j = (const cl_job *)ctx;
    fn_triple *tri = cl_wave_tri(j, n0);
    fn_ssize c0, c1, n;
    fn_team_share(0, j->C, tid, team, &c0, &c1);
    for (n = n0; n < n1; n++) zero_triples(tri + n * j->C + c0, c1 - c0);
}
static void cl_wave_stats(void *ctx, fn_ssize a, fn_ssize e, fn_ssize r0, fn_ssize n0, int tid)
{
    const cl_job *j = (const cl_job *)ctx;
    fn_ssize it;
    for (it = a; it < e; it++)
        cl_chunk_stats(j, it / j->q->nch, it % j->q->nch, j->scratch + tid * j->q->stride,
                       j->ct + (it - r0) * j->C);
    (void)n0;
}
static void cl_wave_merge(void *ctx, fn_ssize r0, fn_ssize r1, fn_ssize n0, int tid, int team)
{
    const cl_job *j = (const cl_job *)ctx;
    fn_triple *tri = cl_wave_tri(j, n0);
    fn_ssize c0, c1, it;
    fn_team_share(0, j->C, tid, team, &c0, &c1);
    for (it = r0; it < r1; it++)
        merge_triples(tri + (it / j->q->nch) * j->C + c0, j->ct + (it - r0) * j->C + c0, c1 - c0);
}
static void cl_wave_unit(void *ctx, fn_ssize n, fn_ssize n0, int tid)
{
    const cl_job *j = (const cl_job *)ctx;
    const fn_ssize C = j->C, k = n - n0, W3 = j->pl->wave * C;
    double *mean = j->coef + k * C, *scale = mean + W3, *shift = mean + 2 * W3;
    cl_instance_coefs(cl_wave_tri(j, n0) + n * C, C, j->G, j->eps, j->w, j->b, mean, scale, shift);
    cl_tile_coefs(j->pl->odt, C, j->q->m, mean, scale, shift, j->tiles + k * j->tsz);
    (void)tid;
}
static void cl_wave_apply(void *ctx, fn_ssize a, fn_ssize e, fn_ssize n0, int backward)
{
    const cl_job *j = (const cl_job *)ctx;
    fn_ssize k, it;
    for (k = 0; k < e - a; k++) {
        it = backward ? e - 1 - k : a + k;
        cl_chunk_apply(j, it / j->q->nch, it % j->q->nch, j->tiles + (it / j->q->nch - n0) * j->tsz);
    }
}

/* bytes of one instance's coefficient tiles: 4 arrays of W in the output's
 * working precision */
static fn_ssize cl_tile_bytes(int odt, const fn_cl_geom *q, int arrays)
{
    return arrays * q->W * (odt == FN_F64 || odt == FN_F32 ? 8 : 4);
}

int fn_drive_norm_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                     fn_ssize S, fn_ssize C, fn_ssize G, const double *w, const double *b, double eps,
                     int act, double slope, int n_threads, fn_triple *stats_out, fn_err *err)
{
    const fn_cl_geom q = fn_cl_geometry(S, C);
    const fn_plan pl = fn_plan_cl(dt, odt, N, S, C, isz, osz, &q, n_threads, act, slope);
    const int nth = pl.n_threads, keep = stats_out != NULL;
    const fn_ssize items = N * q.nch, tsz = cl_tile_bytes(odt, &q, 4), ts = (fn_ssize)sizeof(fn_triple);
    /* the fused plan's arrays are per thread, the waves' per wave instance
     * (every instance's triples only when they are returned), so the memory
     * does not grow with N x C */
    const fn_ssize units = pl.fused ? nth : pl.wave;
    const fn_ssize rnd = pl.fused ? nth : fn_cl_round_chunks(C, ts, nth, items);
    char *sbase = NULL;
    cl_job j;
    err->what = NULL;
    j.pl = &pl, j.q = &q, j.x = (const char *)x, j.y = (char *)y, j.S = S, j.C = C, j.G = G;
    j.eps = eps, j.w = w, j.b = b, j.tsz = tsz;
    j.tri_w = (fn_triple *)fn_alloc((keep ? N : units) * C * ts, "the channel statistics", err);
    j.tri_all = keep ? j.tri_w : NULL;
    j.coef = (double *)fn_alloc(3 * units * C * 8, "the coefficients", err);
    j.tiles = (char *)fn_alloc(units * tsz, "the coefficient tiles", err);
    j.ct = (fn_triple *)fn_alloc(rnd * C * ts, "the chunk statistics", err);
    j.scratch = fn_alloc_lines(nth * q.stride, &sbase, "the channels-last scratch", err);
    if (err->what == NULL) {
        if (pl.fused) {
            fn_ssize n;
            if (pl.parallel) {
#pragma omp parallel for num_threads(nth) schedule(static)
                for (n = 0; n < N; n++) {
                    const int tid = fn_team_id();
                    cl_instance(&j, n, tid, j.tri_w + (keep ? n : tid) * C);
                }
            } else {
                for (n = 0; n < N; n++) cl_instance(&j, n, 0, j.tri_w + (keep ? n : 0) * C);
            }
        } else {
            const fn_waves wv = {
                N,  pl.wave,       q.nch,         rnd,           pl.backward,  1,
                &j, cl_wave_begin, cl_wave_stats, cl_wave_merge, cl_wave_unit, cl_wave_apply};
            fn_team_run_waves(&wv, nth);
        }
        if (pl.parallel) fn_team_finished(nth);
        if (keep) memcpy(stats_out, j.tri_w, (size_t)(N * C * ts));
    }
    free(j.tri_w);
    free(j.coef);
    free(j.tiles);
    free(j.ct);
    free(sbase);
    return err->what == NULL ? 0 : -1;
}

/* the channel triples of one instance from its nch chunks' */
static void cl_merge_chunks(fn_triple *out, const fn_triple *ct, fn_ssize nch, fn_ssize C)
{
    fn_ssize k;
    zero_triples(out, C);
    for (k = 0; k < nch; k++) merge_triples(out, ct + k * C, C);
}

int fn_drive_stats_cl(const void *x, int dt, int odt, fn_ssize isz, fn_ssize N, fn_ssize S, fn_ssize C,
                      int n_threads, fn_triple *out, fn_err *err)
{
    const fn_cl_geom q = fn_cl_geometry(S, C);
    const fn_ssize items = N * q.nch;
    const int nth = fn_team_for(n_threads, N * S * C);
    fn_plan pl;
    char *sbase = NULL;
    cl_job j;
    fn_ssize n;
    err->what = NULL;
    memset(&pl, 0, sizeof pl);
    pl.dt = dt, pl.odt = odt, pl.isz = isz;
    j.pl = &pl, j.q = &q, j.x = (const char *)x, j.S = S, j.C = C;
    j.ct = (fn_triple *)fn_alloc(items * C * (fn_ssize)sizeof(fn_triple), "the chunk statistics", err);
    j.scratch = fn_alloc_lines(nth * q.stride, &sbase, "the channels-last scratch", err);
    if (err->what == NULL) {
        if (nth > 1) {
#pragma omp parallel num_threads(nth)
            {
                const int tid = fn_team_id();
                fn_ssize it;
#pragma omp for schedule(static)
                for (it = 0; it < items; it++)
                    cl_chunk_stats(&j, it / q.nch, it % q.nch, j.scratch + tid * q.stride, j.ct + it * C);
            }
#pragma omp parallel for num_threads(nth) schedule(static)
            for (n = 0; n < N; n++) cl_merge_chunks(out + n * C, j.ct + n * q.nch * C, q.nch, C);
        } else {
            fn_ssize it;
            for (it = 0; it < items; it++)
                cl_chunk_stats(&j, it / q.nch, it % q.nch, j.scratch, j.ct + it * C);
            for (n = 0; n < N; n++) cl_merge_chunks(out + n * C, j.ct + n * q.nch * C, q.nch, C);
        }
    }
    free(j.ct);
    free(sbase);
    return err->what == NULL ? 0 : -1;
}

int fn_drive_apply_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                      fn_ssize S, fn_ssize C, const double *mean, const double *scale, const double *shift,
                      int act, double slope, int n_threads, fn_err *err)
{
    const fn_cl_geom q = fn_cl_geometry(S, C);
    const fn_plan pl = fn_plan_cl(dt, odt, N, S, C, isz, osz, &q, n_threads, act, slope);
    const fn_ssize items = N * q.nch, tsz = cl_tile_bytes(odt, &q, 4);
    cl_job j;
    fn_ssize n, it;
    err->what = NULL;
    j.pl = &pl, j.q = &q, j.x = (const char *)x, j.y = (char *)y, j.S = S, j.C = C;
    j.tiles = (char *)fn_alloc(N * tsz, "the coefficient tiles", err);
    if (j.tiles == NULL) return -1;
    for (n = 0; n < N; n++)
        cl_tile_coefs(odt, C, q.m, mean + n * C, scale + n * C, shift + n * C, j.tiles + n * tsz);
    if (pl.parallel) {
#pragma omp parallel for num_threads(pl.n_threads) schedule(static)
        for (it = 0; it < items; it++)
            cl_chunk_apply(&j, it / q.nch, it % q.nch, j.tiles + (it / q.nch) * tsz);
    } else {
        for (it = 0; it < items; it++)
            cl_chunk_apply(&j, it / q.nch, it % q.nch, j.tiles + (it / q.nch) * tsz);
    }
    free(j.tiles);
    return 0;
}

/* ---- channels last, into a reflection-padded output ----------------------------- */
/* x viewed as (N, H, W, C), y as (N, H + 2 ph, W + 2 pw, C): the statistics
 * as fn_drive_stats_cl reads them (the chunks norm_cl merges, in order), the
 * coefficients as norm_cl's (cl_instance_coefs), each interior row of W
 * pixels applied by the channels-last kernel into its place, its pw border
 * pixels on either side copied from their mirror images; then the border
 * rows copied from theirs.  The interior gets the bits fn_drive_norm_cl
 * writes (G = C). */
typedef struct {
    const char *x;
    char *y;
    int dt, odt, act;
    fn_ssize isz, osz, H, W, C, ph, pw, m;
    double slope, eps;
    const double *w, *b;
    const fn_triple *tri;
} pad_cl_job;

static void pad_cl_row(const pad_cl_job *j, fn_ssize it, const char *tile)
{
    const fn_ssize n = it / j->H, h = it - n * j->H, Wp = j->W + 2 * j->pw, px = j->C * j->osz;
    char *yr = j->y + ((n * (j->H + 2 * j->ph) + j->ph + h) * Wp + j->pw) * px;
    fn_ssize k;
    fn_apply_cl(j->dt, j->odt, j->x + (n * j->H + h) * j->W * j->C * j->isz, yr, j->W, j->C, j->m, tile,
                j->act, j->slope, 0);
    for (k = 1; k <= j->pw; k++) {
        memcpy(yr - k * px, yr + k * px, (size_t)px);
        memcpy(yr + (j->W - 1 + k) * px, yr + (j->W - 1 - k) * px, (size_t)px);
    }
}
/* Interior rows [r0, r1) on one thread, through its own coefficients (3 * C
 * doubles) and tile: an instance's built when its first row comes, so the
 * working memory is per thread, not per instance. */
static void pad_cl_rows(const pad_cl_job *j, fn_ssize r0, fn_ssize r1, double *coef, char *tile)
{
    const fn_ssize C = j->C;
    fn_ssize it, n = -1;
    for (it = r0; it < r1; it++) {
        if (it / j->H != n) {
            n = it / j->H;
            cl_instance_coefs(j->tri + n * C, C, C, j->eps, j->w, j->b, coef, coef + C, coef + 2 * C);
            cl_tile_coefs(j->odt, C, j->m, coef, coef + C, coef + 2 * C, tile);
        }
        pad_cl_row(j, it, tile);
    }
}
/* border row k (0 <= k < 2 ph) of instance n: the ph above, then the ph below */
static void pad_cl_border(const pad_cl_job *j, fn_ssize it)
{
    const fn_ssize n = it / (2 * j->ph), k = it - n * 2 * j->ph, Hp = j->H + 2 * j->ph;
    const fn_ssize row = (j->W + 2 * j->pw) * j->C * j->osz;
    char *yn = j->y + n * Hp * row;
    const fn_ssize dst = k < j->ph ? k : j->ph + j->H + (k - j->ph);
    const fn_ssize src = k < j->ph ? 2 * j->ph - k : 2 * (j->ph + j->H - 1) - dst;
    memcpy(yn + dst * row, yn + src * row, (size_t)row);
}

int fn_drive_norm_pad_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                         fn_ssize H, fn_ssize W, fn_ssize C, fn_ssize ph, fn_ssize pw, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads, fn_err *err)
{
    const fn_cl_geom q = fn_cl_geometry(W, C);
    const fn_ssize tsz = cl_tile_bytes(odt, &q, 4), rows = N * H, brows = N * 2 * ph;
    const int nth = fn_team_for(n_threads, N * H * W * C);
    fn_triple *tri;
    double *coef = NULL;
    char *tiles = NULL;
    pad_cl_job j;
    fn_ssize it;
    int wk;
    err->what = NULL;
    tri = (fn_triple *)fn_alloc(N * C * (fn_ssize)sizeof(fn_triple), "the channel statistics", err);
    if (tri != NULL) coef = (double *)fn_alloc(nth * 3 * C * 8, "the coefficients", err);
    if (coef != NULL) tiles = (char *)fn_alloc(nth * tsz, "the coefficient tiles", err);
    if (tiles != NULL && fn_drive_stats_cl(x, dt, odt, isz, N, H * W, C, n_threads, tri, err) == 0) {
        j.x = (const char *)x, j.y = (char *)y, j.dt = dt, j.odt = odt, j.act = act, j.isz = isz, j.osz = osz;
        j.H = H, j.W = W, j.C = C, j.ph = ph, j.pw = pw, j.m = q.m, j.slope = slope, j.eps = eps;
        j.w = w, j.b = b, j.tri = tri;
        if (nth > 1) {
#pragma omp parallel num_threads(nth)
            {
#pragma omp for schedule(static, 1)
                for (wk = 0; wk < nth; wk++)
                    pad_cl_rows(&j, (rows * wk) / nth, (rows * (wk + 1)) / nth, coef + wk * 3 * C,
                                tiles + wk * tsz);
                /* the implied barrier: every interior row is written before a border row copies one */
#pragma omp for schedule(static)
                for (it = 0; it < brows; it++) pad_cl_border(&j, it);
            }
            fn_team_finished(nth);
        } else {
            pad_cl_rows(&j, 0, rows, coef, tiles);
            for (it = 0; it < brows; it++) pad_cl_border(&j, it);
        }
    }
    free(tri);
    free(coef);
    free(tiles);
    return err->what == NULL ? 0 : -1;
}

/* ---- backward ------------------------------------------------------------------- */
/* One pass reads x and dy (the forward's statistics of x and sum(dy),
 * sum(dy * (x - shift)) in the same lanes and blocks), the per-unit
 * coefficients, one pass writes grad_x; grad_weight and grad_bias are summed
 * over the instances in order.  Work is shared like the forward's waves:
 * units (planes of a group, or instances channels last) in waves of about
 * bwd_wave_bytes of x and dy per thread. */
static void fn_bsums(int dt, const void *x, const void *dy, fn_ssize rows, fn_ssize S, fn_bsum *rec)
{
    fn_config.t->bwd[dt].sums(x, dy, rows, S, rec);
}
static void fn_bgrad(int dt, const void *x, const void *dy, void *gx, fn_ssize rows, fn_ssize S,
                     const double *coef, int stream)
{
    fn_config.t->bwd[dt].grad(x, dy, gx, rows, S, coef, stream);
}

typedef struct {
    fn_bwd_plan bp;
    int dt;
    const char *x, *dy;
    char *gx;
    fn_ssize isz, S, C, G, Cg;
    double eps;
    const double *eps_u; /* (N, G) eps per unit, or NULL */
    const double *w;
    double *psdy;  /* (N, C): sum(dy) */
    double *psdyx; /* (N, C): sum(dy * (x - mean)) */
    double *pr;    /* (N, G): rstd */
    fn_bsum *rec;  /* a wave's block (chunk) records */
    fn_bsum *st;   /* running sums: per thread Cg (cf; bwd_st_stride apart), per wave instance C (cl) */
    double *coef;  /* a wave's (mu, a1, a2, a0) per row (cf) or channel (cl) */
    const fn_cl_geom *q;
    char *scratch, *tiles;
    fn_ssize stride, tsz;
    fn_ssize batch; /* fused: units per batch */
} bwd_job;

static void bwd_zero(fn_bsum *s, fn_ssize n) { memset(s, 0, (size_t)n * sizeof(fn_bsum)); }

/* Channels first: the running sums of one thread's Cg channels, rounded up
 * to whole multiples of 8 records (3 lines of 128 bytes), so that no two
 * threads write one cache line: every unit rewrites them, and an instance
 * norm's Cg = 1 put both threads' sums in one line. */
static fn_ssize bwd_st_stride(fn_ssize Cg) { return (Cg + 7) / 8 * 8; }

/* grad_weight and grad_bias: the per-(n, c) sums added over n in order. */
static void bwd_affine(const bwd_job *j, fn_ssize N, double *gw, double *gb)
{
    const fn_ssize C = j->C, Cg = C / j->G;
    fn_ssize n, c;
    for (c = 0; c < C; c++) gw[c] = gb[c] = 0.0;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            gb[c] += j->psdy[n * C + c];
            gw[c] += j->pr[n * j->G + c / Cg] * j->psdyx[n * C + c];
        }
}
/* unit u's rstd and coefficients from its Cg channels' running sums st */
static void bwd_unit(const bwd_job *j, fn_ssize u, const fn_bsum *st, double *coef)
{
    const fn_ssize Cg = j->Cg, g = u % j->G;
    j->pr[u] = fn_bwd_unit(st, Cg, j->eps_u != NULL ? j->eps_u[u] : j->eps,
                           j->w != NULL ? j->w + g * Cg : NULL, j->psdy + u * Cg, j->psdyx + u * Cg, coef);
}

/* channels first: units are planes of a group (Cg rows of S), items the
 * blocks of their rows (nb per row); the records and coefficients are the
 * wave's (rows counted from the wave's first) */
static fn_ssize bwd_nb(const bwd_job *j) { return (j->S + FN_BLOCK - 1) / FN_BLOCK; }
static void bwd_cf_stats(void *ctx, fn_ssize a, fn_ssize e, fn_ssize r0, fn_ssize u0, int tid)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_ssize nb = bwd_nb(j), S = j->S, isz = j->isz, row0 = u0 * j->Cg, base = row0 * nb;
    fn_ssize it, row, s0, off;
    if (nb == 1) {
        off = (row0 + a - base) * S * isz;
        fn_bsums(j->dt, j->x + off, j->dy + off, e - a, S, j->rec + (a - base));
        return;
    }
    for (it = a - base; it < e - base; it++) {
        row = it / nb;
        s0 = (it - row * nb) * FN_BLOCK;
        off = ((row0 + row) * S + s0) * isz;
        fn_bsums(j->dt, j->x + off, j->dy + off, 1, block_end(s0, S) - s0, j->rec + it);
    }
    (void)r0, (void)tid;
}
/* unit u's coefficients from the block records of its Cg rows (rec: Cg * nb,
 * row-major), merged in block order into st (Cg running sums) */
static void bwd_unit_from_records(const bwd_job *j, fn_ssize u, const fn_bsum *rec, fn_bsum *st, double *coef)
{
    const fn_ssize nb = bwd_nb(j);
    fn_ssize k, b;
    for (k = 0; k < j->Cg; k++) {
        bwd_zero(&st[k], 1);
        for (b = 0; b < nb; b++) fn_bsum_merge(&st[k], &rec[k * nb + b]);
    }
    bwd_unit(j, u, st, coef);
}
static void bwd_cf_unit(void *ctx, fn_ssize u, fn_ssize u0, int tid)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_ssize Cg = j->Cg;
    bwd_unit_from_records(j, u, j->rec + (u - u0) * Cg * bwd_nb(j), j->st + tid * bwd_st_stride(Cg),
                          j->coef + 4 * (u - u0) * Cg);
}
static void bwd_cf_apply(void *ctx, fn_ssize a, fn_ssize e, fn_ssize u0, int backward)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_ssize nb = bwd_nb(j), S = j->S, isz = j->isz, row0 = u0 * j->Cg, base = row0 * nb;
    fn_ssize k, it, row, s0, off;
    a -= base;
    e -= base;
    if (nb == 1 && !backward) {
        off = (row0 + a) * S * isz;
        fn_bgrad(j->dt, j->x + off, j->dy + off, j->gx + off, e - a, S, j->coef + 4 * a, j->bp.stream);
        return;
    }
    for (k = 0; k < e - a; k++) {
        it = backward ? e - 1 - k : a + k;
        row = it / nb;
        s0 = (it - row * nb) * FN_BLOCK;
        off = ((row0 + row) * S + s0) * isz;
        fn_bgrad(j->dt, j->x + off, j->dy + off, j->gx + off, 1, block_end(s0, S) - s0, j->coef + 4 * row,
                 j->bp.stream);
    }
}

/* the per-(n, c) and per-(n, g) sums: the caller's sums_out, or allocated */
static double *bwd_sums(bwd_job *j, fn_ssize N, double *sums_out, const char *what, fn_err *err)
{
    double *sums = sums_out != NULL ? NULL : (double *)fn_alloc((2 * N * j->C + N * j->G) * 8, what, err);
    j->psdy = sums_out != NULL ? sums_out : sums;
    if (j->psdy != NULL) {
        j->psdyx = j->psdy + N * j->C;
        j->pr = j->psdy + 2 * N * j->C;
    }
    return sums;
}

static void bwd_init(bwd_job *j, const void *x, const void *dy, void *gx, int dt, fn_ssize isz, fn_ssize S,
                     fn_ssize C, fn_ssize G, const double *w, double eps, const double *eps_u)
{
    memset(j, 0, sizeof *j);
    j->dt = dt, j->x = (const char *)x, j->dy = (const char *)dy, j->gx = (char *)gx, j->isz = isz;
    j->S = S, j->C = C, j->G = G, j->Cg = C / G, j->eps = eps, j->eps_u = eps_u, j->w = w;
}

/* Run a backward's waves on nth threads and sum grad_weight, grad_bias; then
 * (or when an allocation failed) free its arrays. */
static int bwd_run(bwd_job *j, const fn_waves *wv, fn_ssize N, int nth, double *gw, double *gb, double *sums,
                   char *sbase, const fn_err *err)
{
    if (err->what == NULL) {
        if (wv != NULL) fn_team_run_waves(wv, nth); /* NULL: the caller ran the units */
        bwd_affine(j, N, gw, gb);
        if (nth > 1) fn_team_finished(nth);
    }
    free(j->rec);
    free(j->st);
    free(j->coef);
    free(j->tiles);
    free(sums);
    free(sbase);
    return err->what == NULL ? 0 : -1;
}

/* Fused: units [u0, u1) on one thread, a batch of j->batch units at a time:
 * summed, their coefficients, then written while their x and dy are still
 * in L1 / L2 (the batch's coefficients side by side, so their divisions and
 * square roots overlap instead of waiting on each other).  The records,
 * merges and coefficients are the waves' own (this thread's rec, st and
 * coef), so the same bits. */
static void bwd_cf_owned(const bwd_job *j, fn_ssize u0, fn_ssize u1, int tid)
{
    const fn_ssize Cg = j->Cg, S = j->S, nb = bwd_nb(j), rb = Cg * S * j->isz, B = j->batch;
    fn_bsum *rec = j->rec + tid * B * Cg * nb, *st = j->st + tid * bwd_st_stride(Cg);
    double *coef = j->coef + tid * B * 4 * Cg;
    fn_ssize u, v, n;
    for (u = u0; u < u1; u += n) {
        n = u1 - u < B ? u1 - u : B;
        fn_bsums(j->dt, j->x + u * rb, j->dy + u * rb, n * Cg, S, rec);
        for (v = 0; v < n; v++) bwd_unit_from_records(j, u + v, rec + v * Cg * nb, st, coef + v * 4 * Cg);
        fn_bgrad(j->dt, j->x + u * rb, j->dy + u * rb, j->gx + u * rb, n * Cg, S, coef, j->bp.stream);
    }
}

int fn_drive_backward_cf(const void *x, const void *dy, void *gx, int dt, fn_ssize isz, fn_ssize N,
                         fn_ssize G, fn_ssize Cg, fn_ssize S, const double *w, double eps,
                         const double *eps_u, int n_threads, double *grad_weight, double *grad_bias,
                         double *sums_out, fn_err *err)
{
    const fn_ssize C = G * Cg, R = N * C, U = N * G, nb = (S + FN_BLOCK - 1) / FN_BLOCK;
    const int nth = fn_team_for(n_threads, R * S);
    bwd_job j;
    double *sums;
    fn_ssize held;
    err->what = NULL;
    bwd_init(&j, x, dy, gx, dt, isz, S, C, G, w, eps, eps_u);
    j.bp = fn_plan_bwd(dt, U, 2 * Cg * S * isz, R * S * isz, nth);
    j.batch = j.bp.fused ? j.bp.batch : 0;
    held = j.bp.fused ? nth * j.batch : j.bp.wave; /* units whose records and coefficients are held at once */
    j.rec = (fn_bsum *)fn_alloc(held * Cg * nb * (fn_ssize)sizeof(fn_bsum), "the block sums", err);
    j.st = (fn_bsum *)fn_alloc(nth * bwd_st_stride(Cg) * (fn_ssize)sizeof(fn_bsum), "the channel sums", err);
    j.coef = (double *)fn_alloc(4 * held * Cg * 8, "the coefficients", err);
    sums = bwd_sums(&j, N, sums_out, "the per-plane sums", err);
    if (j.bp.fused && err->what == NULL) { /* a team of two or more (fn_plan_bwd) */
        int wk; /* no barriers or team ids: also right in a caller's region (a nested team of one) */
#pragma omp parallel for num_threads(nth) schedule(static, 1)
        for (wk = 0; wk < nth; wk++) bwd_cf_owned(&j, (U * wk) / nth, (U * (wk + 1)) / nth, wk);
        return bwd_run(&j, NULL, N, nth, grad_weight, grad_bias, sums, NULL, err);
    }
    {
        const fn_waves wv = {U,  j.bp.wave, Cg * nb,      0,    j.bp.backward, 0,
                             &j, NULL,      bwd_cf_stats, NULL, bwd_cf_unit,   bwd_cf_apply};
        return bwd_run(&j, &wv, N, nth, grad_weight, grad_bias, sums, NULL, err);
    }
}

/* channels last: units are instances, items their chunks; the running sums,
 * coefficients and tiles are the wave's (instances counted from its first),
 * merged after each round of chunk records, each thread a share of the
 * channels */
static void bwd_cl_begin(void *ctx, fn_ssize n0, fn_ssize n1, int tid, int team)
{
    const bwd_job *j = (const bwd_job *)ctx;
    fn_ssize c0, c1, n;
    fn_team_share(0, j->C, tid, team, &c0, &c1);
    for (n = n0; n < n1; n++) bwd_zero(j->st + (n - n0) * j->C + c0, c1 - c0);
}
static void bwd_cl_stats(void *ctx, fn_ssize a, fn_ssize e, fn_ssize r0, fn_ssize n0, int tid)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_cl_geom *q = j->q;
    fn_ssize it, n, s0, s1, off;
    for (it = a; it < e; it++) {
        n = it / q->nch;
        s0 = (it - n * q->nch) * q->RC;
        s1 = s0 + q->RC < j->S ? s0 + q->RC : j->S;
        off = (n * j->S + s0) * j->C * j->isz;
        fn_config.t->bwd[j->dt].sums_cl(j->x + off, j->dy + off, s1 - s0, j->C, q->m, q->R,
                                        (double *)(void *)(j->scratch + tid * j->stride),
                                        j->rec + (it - r0) * j->C);
    }
    (void)n0;
}
static void bwd_cl_merge(void *ctx, fn_ssize r0, fn_ssize r1, fn_ssize n0, int tid, int team)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_ssize C = j->C;
    fn_ssize c0, c1, it, c;
    fn_team_share(0, C, tid, team, &c0, &c1);
    for (it = r0; it < r1; it++)
        for (c = c0; c < c1; c++)
            fn_bsum_merge(&j->st[(it / j->q->nch - n0) * C + c], &j->rec[(it - r0) * C + c]);
}
/* the backward's lanes from per-channel (mu, a1, a2, a0) rows: 4 arrays of
 * doubles, or 5 of floats (hi, lo, a1, a2, a0) for 16-bit */
static void bwd_cl_tiles(int dt, fn_ssize C, fn_ssize m, const double *cf, char *dst)
{
    const double *col[4];
    col[0] = cf, col[1] = cf + 1, col[2] = cf + 2, col[3] = cf + 3;
    lane_coefs(dt, 0, C, m, 4, col, 4, dst);
}
static void bwd_cl_unit(void *ctx, fn_ssize n, fn_ssize n0, int tid)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_ssize C = j->C, k = n - n0;
    fn_ssize g;
    for (g = 0; g < j->G; g++)
        bwd_unit(j, n * j->G + g, j->st + k * C + g * j->Cg, j->coef + 4 * (k * C + g * j->Cg));
    bwd_cl_tiles(j->dt, C, j->q->m, j->coef + 4 * k * C, j->tiles + k * j->tsz);
    (void)tid;
}
static void bwd_cl_apply(void *ctx, fn_ssize a, fn_ssize e, fn_ssize n0, int backward)
{
    const bwd_job *j = (const bwd_job *)ctx;
    const fn_cl_geom *q = j->q;
    fn_ssize k, it, n, s0, s1, off;
    for (k = 0; k < e - a; k++) {
        it = backward ? e - 1 - k : a + k;
        n = it / q->nch;
        s0 = (it - n * q->nch) * q->RC;
        s1 = s0 + q->RC < j->S ? s0 + q->RC : j->S;
        off = (n * j->S + s0) * j->C * j->isz;
        fn_config.t->bwd[j->dt].grad_cl(j->x + off, j->dy + off, j->gx + off, s1 - s0, j->C, q->m,
                                        j->tiles + (n - n0) * j->tsz, j->bp.stream);
    }
}

int fn_drive_backward_cl(const void *x, const void *dy, void *gx, int dt, fn_ssize isz, fn_ssize N,
                         fn_ssize S, fn_ssize C, fn_ssize G, const double *w, double eps, const double *eps_u,
                         int n_threads, double *grad_weight, double *grad_bias, double *sums_out, fn_err *err)
{
    const fn_cl_geom q = fn_cl_geometry(S, C);
    const int nth = fn_team_for(n_threads, N * S * C);
    fn_ssize rnd;
    char *sbase = NULL;
    bwd_job j;
    double *sums;
    err->what = NULL;
    bwd_init(&j, x, dy, gx, dt, isz, S, C, G, w, eps, eps_u);
    j.q = &q;
    j.bp = fn_plan_bwd(dt, N, 2 * S * C * isz, N * S * C * isz, nth);
    j.tsz = cl_tile_bytes(dt, &q, 5);
    j.stride = ((5 * q.W * 8) / 64 + 2) * 64;
    /* the records are twice a triple's size: rounds of half the forward's chunks */
    rnd = fn_cl_round_chunks(C, 2 * (fn_ssize)sizeof(fn_triple), nth, j.bp.wave * q.nch);
    j.rec = (fn_bsum *)fn_alloc(rnd * C * (fn_ssize)sizeof(fn_bsum), "the chunk sums", err);
    j.st = (fn_bsum *)fn_alloc(j.bp.wave * C * (fn_ssize)sizeof(fn_bsum), "the channel sums", err);
    j.coef = (double *)fn_alloc(4 * j.bp.wave * C * 8, "the coefficients", err);
    j.tiles = (char *)fn_alloc(j.bp.wave * j.tsz, "the coefficient tiles", err);
    sums = bwd_sums(&j, N, sums_out, "the per-channel sums", err);
    j.scratch = fn_alloc_lines(nth * j.stride, &sbase, "the channels-last scratch", err);
    {
        const fn_waves wv = {N,  j.bp.wave,    q.nch,        rnd,          j.bp.backward, 1,
                             &j, bwd_cl_begin, bwd_cl_stats, bwd_cl_merge, bwd_cl_unit,   bwd_cl_apply};
        return bwd_run(&j, &wv, N, nth, grad_weight, grad_bias, sums, sbase, err);
    }
}
