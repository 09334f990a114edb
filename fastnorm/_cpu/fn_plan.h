/*
 * Plans: how a call's work is split, decided from the shape, the types and
 * the team alone.  Every plan gives the same bits (fn_base.h, "Numerics":
 * block boundaries and merge orders depend only on the shape); a plan
 * changes only the speed and the working memory.
 *
 * Channels first, P planes of L elements:
 *   fused         one thread owns whole planes (statistics, then the
 *                 normalize pass while the plane is in L2);
 *     small_planes  planes of one statistics block: one kernel call per thread;
 *     pipelined     the next plane's statistics read while this one is written;
 *   else waves    pl.wave planes at a time shared by the team (fn_drive.c).
 * Channels last, N instances of S rows of C: fused (one thread per instance)
 * or waves of instances; the statistics of an instance are read in chunks
 * of rows (fn_cl_geom).
 * backward: the normalize pass of a unit or share larger than the caches
 * runs from its end (it then hits what the statistics read last).
 * stream: non-temporal output stores for large outputs.
 */
#ifndef FN_PLAN_H
#define FN_PLAN_H

#include "fn_base.h"

/* The thresholds of the plans (tests and experiments set them through
 * _engine._tuning; every setting gives the same bits). */
typedef struct {
    /* planes up to this size are pipelined: the two planes in flight and the
     * output fit a 1 MiB L2 */
    fn_ssize pipeline_max_bytes;
    /* planes (instances) larger than this are normalized in waves shared by
     * the team, each thread holding about this much of the wave in its L2 */
    fn_ssize wave_bytes;
    /* a plane, instance or share larger than this is normalized from its end:
     * with LRU-like caches a forward second pass over more than L2 misses on
     * every line, a backward one hits on the part the statistics read last */
    fn_ssize backward_min_bytes;
    /* planes of one statistics block run through one kernel call per thread */
    int small_planes;
    /* a thread normalizes its planes this many at a time (the pipeline
     * restarts once per batch; the working arrays hold a batch) */
    fn_ssize plane_batch;
    /* the channels-last wave plan holds the triples of at most about this
     * many bytes of chunks at once */
    fn_ssize ct_round_bytes;
    /* float32/float64 outputs without activation or with relu / leaky relu
     * (channels first: the vector loops) larger than this are written with
     * non-temporal stores where the target has them: past the last-level
     * cache a normal store first reads the line it writes */
    fn_ssize stream_above_bytes;
    /* channels-last float32/float64 outputs (none, relu, leaky relu) larger than
     * this, in rows wider than a register tile, are normalized row by row
     * (coefficients read from L1) instead of tile by tile: past the caches
     * whole rows stream better than the tiles' column strips (a line or two
     * of each row at a time); in cache the tiles are faster (benchmarks/
     * README.md, round 15) */
    fn_ssize cl_rows_above_bytes;
    /* x and dy bytes of a backward wave per thread (the grad pass re-reads
     * them from L2, where grad_x's lines are written too) */
    fn_ssize bwd_wave_bytes;
    /* channels-first backward units whose x and dy fit L1 (up to this many
     * bytes) are fused on a team of two or more: each thread owns whole
     * units, summed then written while cached, with no waves and no barriers
     * (the waves' barriers dominate small planes; one thread has none) */
    fn_ssize bwd_fused_max_bytes;
    /* a fused backward thread sums about this many bytes of whole units
     * (at least one), then writes them */
    fn_ssize bwd_fused_batch_bytes;
} fn_tunables;
extern fn_tunables fn_tune;

typedef struct {
    int dt;           /* input code */
    int odt;          /* output code (the kernels that run) */
    fn_ssize isz;     /* bytes of an input element */
    fn_ssize osz;     /* bytes of an output element */
    int act;          /* activation (FN_ACT_*) */
    double slope;     /* leaky_relu's negative slope */
    int n_threads;    /* threads of the team (1: serial, no parallel region) */
    int parallel;     /* n_threads > 1 */
    int fused;        /* one thread owns whole planes / instances; else waves */
    int small_planes; /* channels first, fused, planes of one block */
    int pipelined;    /* channels first, fused, plane p+1 read while p is written */
    int backward;     /* the normalize pass of a large unit / share from its end */
    int stream;       /* non-temporal output stores */
    int rows;         /* channels last: wide rows normalized row by row (cl_rows_above_bytes) */
    fn_ssize wave;    /* planes (instances) per wave when not fused */
} fn_plan;

/* Channels-last geometry of S rows of C, fixed by the shape: lanes of m rows
 * per virtual row (W = C * m lanes, W % 16 == 0 for C < 16), blocks of R rows
 * (about CL_BLOCK elements, L1-resident across register tiles), chunks of RC
 * rows (about CL_CHUNK elements: the unit of parallel work, one triple per
 * channel per chunk, chunks merged in order), nch chunks, and the bytes of
 * per-thread scratch (3 * W + 2 * C doubles, whole cache lines). */
typedef struct { fn_ssize m, W, R, RC, nch, stride; } fn_cl_geom;

/* The backward's split: units (planes of a group, or instances) per wave,
 * whether the grad pass runs from the end of a share, streaming stores;
 * fused (channels first, units of at most bwd_fused_max_bytes): each thread
 * owns a contiguous range of whole units and runs both passes of one unit
 * before the next. */
typedef struct {
    fn_ssize wave;
    fn_ssize batch; /* fused: units summed, then written, at a time (bwd_fused_batch_bytes) */
    int fused;
    int backward;
    int stream;
} fn_bwd_plan;

int fn_stream_for(int odt, int act, fn_ssize out_bytes);
int fn_owns_units(fn_ssize units, int n_threads, fn_ssize unit_bytes);
fn_plan fn_plan_cf(int dt, int odt, fn_ssize P, fn_ssize L, fn_ssize isz, fn_ssize osz, int n_threads,
                   int act, double slope);
fn_cl_geom fn_cl_geometry(fn_ssize S, fn_ssize C);
fn_plan fn_plan_cl(int dt, int odt, fn_ssize N, fn_ssize S, fn_ssize C, fn_ssize isz, fn_ssize osz,
                   const fn_cl_geom *q, int n_threads, int act, double slope);
/* Chunks whose statistics a wave holds at once: enough for every thread, at
 * most about ct_round_bytes of records of rec_bytes per channel. */
fn_ssize fn_cl_round_chunks(fn_ssize C, fn_ssize rec_bytes, int nth, fn_ssize items);
/* The backward of U units of unit_bytes (x and dy) each, total_bytes of
 * grad_x, on nth threads. */
fn_bwd_plan fn_plan_bwd(int dt, fn_ssize U, fn_ssize unit_bytes, fn_ssize total_bytes, int nth);

#endif /* FN_PLAN_H */
