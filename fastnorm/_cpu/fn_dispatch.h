/*
 * The engine's view of the kernels: one configuration, chosen once at import
 * (fn_select, from FASTNORM_ISA), and thin calls through its table.
 */
#ifndef FN_DISPATCH_H
#define FN_DISPATCH_H

#include "fn_base.h"
#include "fn_threads.h"

/* What the kernels run: the table of one target, and whether its streaming
 * stores may be used (tests turn them off; they change no bit). */
typedef struct {
    const fn_target *t;
    int stream;
} fn_config_t;
extern fn_config_t fn_config;

/* Select a level by name ("auto" or a level of fn_levels()); fused 0 asks
 * for the unfused form of that level where the build has one (what a CPU
 * without FMA runs).  Returns 0, -1 for a name this build does not know, -2
 * for a level this CPU cannot run, -3 when no unfused form exists. */
int fn_select(const char *name, int fused);
/* Levels this build has and this CPU runs, best first, comma-separated. */
const char *fn_levels(void);
/* Every level this build has, runnable here or not, comma-separated. */
const char *fn_built_levels(void);

void fn_parallel_copy(const char *src, char *dst, fn_ssize nbytes, int nthreads, int stream);

/* The kernels of input code dt into output code odt (statistics alone:
 * odt = FN_F64, the kind that loads exact doubles). */
#define FN_K(dt, odt) (&fn_config.t->k[dt][odt])
static inline void fn_stats(int dt, int odt, const void *x, fn_ssize n, fn_triple *t)
{
    FN_K(dt, odt)->stats(x, n, t);
}
static inline void fn_apply(int dt, int odt, const void *x, void *y, fn_ssize n, double mean, double sc,
                            double sh, int act, double slope, int stream)
{
    FN_K(dt, odt)->apply(x, y, n, mean, sc, sh, act, slope, stream);
}
static inline void fn_planes(int dt, int odt, const void *x, void *y, fn_ssize p0, fn_ssize p1, fn_ssize L,
                             fn_ssize S, fn_ssize G, fn_ssize goff, fn_ssize Cg, double eps, const double *w,
                             const double *b, int act, double slope, fn_triple *tri, double *mean,
                             double *scale, double *shift)
{
    FN_K(dt, odt)->planes(x, y, p0, p1, L, S, G, goff, Cg, eps, w, b, act, slope, tri, mean, scale, shift);
}
static inline void fn_stats_cl(int dt, int odt, const void *x, fn_ssize rows, fn_ssize C, fn_ssize m,
                               fn_ssize R, double *acc, fn_triple *out)
{
    FN_K(dt, odt)->stats_cl(x, rows, C, m, R, acc, out);
}
static inline void fn_apply_cl(int dt, int odt, const void *x, void *y, fn_ssize rows, fn_ssize C, fn_ssize m,
                               const void *coef, int act, double slope, int stream)
{
    FN_K(dt, odt)->apply_cl(x, y, rows, C, m, coef, act, slope, stream);
}
static inline void fn_stats_apply(int dt, int odt, const void *xs, fn_ssize ns, fn_triple *t, const void *xa,
                                  void *ya, fn_ssize na, double mean, double sc, double sh, int act,
                                  double slope)
{
    FN_K(dt, odt)->stats_apply(xs, ns, t, xa, ya, na, mean, sc, sh, act, slope);
}
static inline int fn_can_stream(void) { return fn_config.stream && fn_config.t->stream; }
static inline void fn_widen_f16(const uint16_t *src, float *dst, fn_ssize n)
{
    fn_config.t->widen_f16(src, dst, n);
}
static inline void fn_narrow_f16(const float *src, uint16_t *dst, fn_ssize n)
{
    fn_config.t->narrow_f16(src, dst, n);
}
static inline const char *fn_level(void) { return fn_config.t->level; }
static inline const char *fn_vector(void) { return fn_config.t->vector; }
static inline int fn_fused(void) { return fn_config.t->fused; }
static inline int fn_half_hw(void) { return fn_config.t->half_hw; }
static inline int fn_have_openmp(void) { return FN_HAVE_OPENMP; }

#endif /* FN_DISPATCH_H */
