/*
 * Plans (fn_plan.h): the split of a call's work, from the shape, the types
 * and the team.
 */
#include "fn_plan.h"
#include "fn_dispatch.h"

/* channels last: elements of a block of rows (L1) and of a chunk (the unit
 * of parallel work) */
#define FN_CL_BLOCK 8192
#define FN_CL_CHUNK 65536

fn_tunables fn_tune = {
    (fn_ssize)1 << 18,  /* pipeline_max_bytes */
    (fn_ssize)1 << 19,  /* wave_bytes */
    (fn_ssize)1 << 20,  /* backward_min_bytes */
    1,                  /* small_planes */
    4096,               /* plane_batch */
    (fn_ssize)16 << 20, /* ct_round_bytes */
    (fn_ssize)20 << 20, /* stream_above_bytes */
    (fn_ssize)12 << 20, /* cl_rows_above_bytes */
    (fn_ssize)1 << 19,  /* bwd_wave_bytes */
    (fn_ssize)16 << 10, /* bwd_fused_max_bytes */
    (fn_ssize)32 << 10, /* bwd_fused_batch_bytes */
};

int fn_stream_for(int odt, int act, fn_ssize out_bytes)
{
    return fn_act_in_vectors(act) && (odt == FN_F32 || odt == FN_F64) &&
           out_bytes > fn_tune.stream_above_bytes && fn_can_stream();
}

/* One thread per plane (instance) when that balances and a unit fits L2 with
 * its output. */
int fn_owns_units(fn_ssize units, int n_threads, fn_ssize unit_bytes)
{
    return n_threads == 1 || (units >= n_threads && (units % n_threads == 0 || units >= 4 * n_threads) &&
                              unit_bytes <= fn_tune.wave_bytes);
}

/* Planes / instances per wave: about n_threads * wave_bytes, at least one. */
static fn_ssize fn_wave_units(int n_threads, fn_ssize unit_bytes, fn_ssize total)
{
    fn_ssize w = unit_bytes > 0 ? (n_threads * fn_tune.wave_bytes) / unit_bytes : total;
    return w > 0 ? w : 1;
}

/* The element size the plans size their units by: the mean of the input's
 * and the output's (what a unit moves per element and direction). */
static fn_ssize fn_plan_bytes(fn_ssize isz, fn_ssize osz) { return (isz + osz) / 2; }

static void fn_plan_common(fn_plan *pl, int dt, int odt, fn_ssize isz, fn_ssize osz, int act, double slope,
                           int n_threads, fn_ssize work)
{
    pl->dt = dt;
    pl->odt = odt;
    pl->isz = isz;
    pl->osz = osz;
    pl->act = act;
    pl->slope = slope;
    pl->n_threads = fn_team_for(n_threads, work);
    pl->parallel = pl->n_threads > 1;
    pl->stream = fn_stream_for(odt, act, work * osz);
    pl->rows = 0;
}

fn_plan fn_plan_cf(int dt, int odt, fn_ssize P, fn_ssize L, fn_ssize isz, fn_ssize osz, int n_threads,
                   int act, double slope)
{
    fn_plan pl;
    const fn_ssize nb = (L + FN_BLOCK - 1) / FN_BLOCK, ub = L * fn_plan_bytes(isz, osz);
    fn_plan_common(&pl, dt, odt, isz, osz, act, slope, n_threads, P * L);
    pl.fused = fn_owns_units(P, pl.n_threads, ub);
    pl.small_planes = pl.fused && nb == 1 && fn_tune.small_planes;
    pl.pipelined = pl.fused && !pl.small_planes && ub <= fn_tune.pipeline_max_bytes;
    pl.wave = pl.fused ? 0 : fn_wave_units(pl.n_threads, ub, P);
    if (pl.fused) {
        pl.backward = !pl.small_planes && !pl.pipelined && ub > fn_tune.backward_min_bytes;
    } else {
        const fn_ssize share = (pl.wave * nb + pl.n_threads - 1) / pl.n_threads;
        pl.backward = share * FN_BLOCK * fn_plan_bytes(isz, osz) > fn_tune.backward_min_bytes;
    }
    return pl;
}

/* Rows per virtual row: 16 / gcd(C, 16) for C < 16, so W = C * m % 16 == 0. */
static fn_ssize fn_cl_m(fn_ssize C)
{
    fn_ssize g = 16, a = C, t;
    if (C >= 16) return 1;
    while (a) {
        t = g % a;
        g = a;
        a = t;
    }
    return 16 / g;
}

fn_cl_geom fn_cl_geometry(fn_ssize S, fn_ssize C)
{
    fn_cl_geom q;
    fn_ssize v, k;
    q.m = fn_cl_m(C);
    q.W = C * q.m;
    v = FN_CL_BLOCK / (C * q.m); /* blocks of ~FN_CL_BLOCK elements, at least 16 rows */
    if (v * q.m < 16) v = (16 + q.m - 1) / q.m;
    q.R = v * q.m;
    k = FN_CL_CHUNK / (q.R * C);
    q.RC = (k < 1 ? 1 : k) * q.R;
    q.nch = (S + q.RC - 1) / q.RC;
    q.stride = (((3 * q.W + 2 * C) * 8) / 64 + 2) * 64;
    return q;
}

fn_plan fn_plan_cl(int dt, int odt, fn_ssize N, fn_ssize S, fn_ssize C, fn_ssize isz, fn_ssize osz,
                   const fn_cl_geom *q, int n_threads, int act, double slope)
{
    fn_plan pl;
    const fn_ssize eb = fn_plan_bytes(isz, osz);
    fn_plan_common(&pl, dt, odt, isz, osz, act, slope, n_threads, N * S * C);
    pl.fused = fn_owns_units(N, pl.n_threads, S * C * eb);
    pl.small_planes = 0;
    pl.pipelined = 0;
    pl.rows = fn_act_in_vectors(act) && (odt == FN_F32 || odt == FN_F64) &&
              N * S * C * osz > fn_tune.cl_rows_above_bytes;
    pl.wave = pl.fused ? 0 : fn_wave_units(pl.n_threads, S * C * eb, N);
    if (pl.fused) {
        pl.backward = S * C * eb > fn_tune.backward_min_bytes;
    } else {
        const fn_ssize share = (pl.wave * q->nch + pl.n_threads - 1) / pl.n_threads;
        pl.backward = share * q->RC * C * eb > fn_tune.backward_min_bytes;
    }
    return pl;
}

fn_ssize fn_cl_round_chunks(fn_ssize C, fn_ssize rec_bytes, int nth, fn_ssize items)
{
    fn_ssize r = fn_tune.ct_round_bytes / (C * rec_bytes);
    if (r < nth) r = nth;
    return r < items ? r : (items > 0 ? items : 1);
}

fn_bwd_plan fn_plan_bwd(int dt, fn_ssize U, fn_ssize unit_bytes, fn_ssize total_bytes, int nth)
{
    fn_bwd_plan bp;
    fn_ssize share;
    bp.stream = fn_stream_for(dt, FN_ACT_NONE, total_bytes);
    bp.wave = unit_bytes > 0 ? (nth * fn_tune.bwd_wave_bytes) / unit_bytes : U;
    bp.wave = bp.wave < 1 ? 1 : (bp.wave > U ? U : bp.wave);
    bp.backward = (bp.wave * unit_bytes + nth - 1) / nth > fn_tune.backward_min_bytes;
    /* one thread runs its waves without barriers: fusing gains nothing there */
    bp.fused = nth > 1 && unit_bytes <= fn_tune.bwd_fused_max_bytes && fn_owns_units(U, nth, unit_bytes);
    bp.batch = unit_bytes > 0 ? fn_tune.bwd_fused_batch_bytes / unit_bytes : 1;
    share = (U + nth - 1) / nth; /* no more than a thread's share */
    bp.batch = bp.batch < 1 ? 1 : (bp.batch > share ? share : bp.batch);
    return bp;
}
