/*
 * The engine's drivers: each runs one call on a team of threads through the
 * kernels of fn_dispatch.h, split as its plan says (fn_plan.h).  The Python
 * binding (_engine.pyx) unpacks arrays, releases the GIL and calls these;
 * tests/c drives them without Python.
 *
 * Everything assumes validated input: contiguous arrays of the codes given,
 * consistent sizes, n_threads >= 1 (the team a call asks for:
 * fastnorm/_threads.py).  Arrays of statistics are (count, mean, M2) triples
 * (fn_triple: 3 doubles).  A driver that allocates returns 0, or -1 with
 * *err naming what it could not allocate (no output is written then).
 *
 * Types: x has an input code dt (any storage code), y an output code odt (a
 * floating one, osz bytes per element); the kernels that run are the output
 * type's (fn_base.h, "Input and output types").  Statistics alone pass
 * odt = FN_F64 (exact doubles), or the output code whose loads they must see.
 */
#ifndef FN_DRIVE_H
#define FN_DRIVE_H

#include "fn_base.h"

typedef struct {
    const char *what; /* NULL: no error */
    fn_ssize nbytes;
} fn_err;

/* Instance / group norm, channels first: x viewed as (N, G, Cg * S).  w, b:
 * NULL or G * Cg doubles; stats_out: NULL or N * G triples written. */
int fn_drive_norm_cf(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                     fn_ssize G, fn_ssize Cg, fn_ssize S, const double *w, const double *b, double eps,
                     int act, double slope, int n_threads, fn_triple *stats_out, fn_err *err);
/* Triples of P planes of L elements into out[P]. */
int fn_drive_stats_cf(const void *x, int dt, int odt, fn_ssize isz, fn_ssize P, fn_ssize L, int n_threads,
                      fn_triple *out, fn_err *err);
/* y[r, :] = act((x[r, :] - mean[r]) * scale[r] + shift[r]) for R rows of S. */
void fn_drive_apply_cf(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize R,
                       fn_ssize S, const double *mean, const double *scale, const double *shift, int act,
                       double slope, int n_threads);

/* Instance norm, channels first, x viewed as (N * C, H, W), into y viewed as
 * (N * C, H + 2 ph, W + 2 pw): the interior what fn_drive_norm_cf writes
 * (G = C), the border its reflection (0 <= ph < H, 0 <= pw < W, H, W >= 1).
 * w, b: NULL or C doubles. */
int fn_drive_norm_pad_cf(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                         fn_ssize C, fn_ssize H, fn_ssize W, fn_ssize ph, fn_ssize pw, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads);

/* torch's reflection_pad2d_backward of float32 channels first: g viewed as
 * (P, H + pt + pb, W + pl + pr) folded into o viewed as (P, H, W), the same
 * additions in the same order (pt, pb < H; pl, pr < W); o and g apart. */
void fn_drive_fold_reflect_f32(const float *g, float *o, fn_ssize P, fn_ssize H, fn_ssize W, fn_ssize pt,
                               fn_ssize pb, fn_ssize pl, fn_ssize pr, int n_threads);

/* Instance / group norm, channels last: x viewed as (N, S, C), G groups of
 * C / G channels; stats_out: NULL or N * C per-channel triples written. */
int fn_drive_norm_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                     fn_ssize S, fn_ssize C, fn_ssize G, const double *w, const double *b, double eps,
                     int act, double slope, int n_threads, fn_triple *stats_out, fn_err *err);
/* Per-channel triples of x viewed as (N, S, C) into out[N * C]. */
int fn_drive_stats_cl(const void *x, int dt, int odt, fn_ssize isz, fn_ssize N, fn_ssize S, fn_ssize C,
                      int n_threads, fn_triple *out, fn_err *err);
/* y[n, s, c] = act((x[n, s, c] - mean[n, c]) * scale[n, c] + shift[n, c]). */
int fn_drive_apply_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                      fn_ssize S, fn_ssize C, const double *mean, const double *scale, const double *shift,
                      int act, double slope, int n_threads, fn_err *err);

/* Instance norm, channels last, x viewed as (N, H, W, C), into y viewed as
 * (N, H + 2 ph, W + 2 pw, C): the interior what fn_drive_norm_cl writes
 * (G = C), the border its reflection (0 <= ph < H, 0 <= pw < W). */
int fn_drive_norm_pad_cl(const void *x, void *y, int dt, int odt, fn_ssize isz, fn_ssize osz, fn_ssize N,
                         fn_ssize H, fn_ssize W, fn_ssize C, fn_ssize ph, fn_ssize pw, const double *w,
                         const double *b, double eps, int act, double slope, int n_threads, fn_err *err);

/* Backward, channels first (x, dy, gx viewed as (N, G, Cg * S), S > 0,
 * N * G * Cg > 0) and channels last ((N, S, C), G groups): gx written, and
 * grad_weight, grad_bias (C doubles).  w: NULL or C doubles; eps_u: NULL or
 * N * G doubles, each unit's eps in place of eps; sums_out: NULL or
 * 2 * N * C + N * G doubles written with the per-(n, c) sum(dy), the
 * per-(n, c) sum(dy * (x - mean)) and the per-(n, g) rstd. */
int fn_drive_backward_cf(const void *x, const void *dy, void *gx, int dt, fn_ssize isz, fn_ssize N,
                         fn_ssize G, fn_ssize Cg, fn_ssize S, const double *w, double eps,
                         const double *eps_u, int n_threads, double *grad_weight, double *grad_bias,
                         double *sums_out, fn_err *err);
int fn_drive_backward_cl(const void *x, const void *dy, void *gx, int dt, fn_ssize isz, fn_ssize N,
                         fn_ssize S, fn_ssize C, fn_ssize G, const double *w, double eps, const double *eps_u,
                         int n_threads, double *grad_weight, double *grad_bias, double *sums_out,
                         fn_err *err);

#endif /* FN_DRIVE_H */
