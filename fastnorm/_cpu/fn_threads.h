/*
 * The engine's half of the thread policy (fastnorm/_threads.py decides the
 * team a call asks for: serial build, fork, num_threads, a Dask task, the
 * cap).  Here a call's request becomes the team that runs (fn_team_for):
 * one thread below FN_SERIAL_BELOW_N elements, else no more threads than
 * the cores other processes leave free (fn_threads_now).  Results are the
 * same bits for every team size.
 *
 * Also the OpenMP shims every driver uses: a serial build (no OpenMP) sees
 * one thread and no-op barriers.
 */
#ifndef FN_THREADS_H
#define FN_THREADS_H

#include "fn_base.h"

#ifdef _OPENMP
#include <omp.h>
#define FN_HAVE_OPENMP 1
#else
#define FN_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

/* Below this many elements one thread does it all: a parallel region costs
 * more than the work. */
#define FN_SERIAL_BELOW_N ((fn_ssize)1 << 15)

/* Size and barrier of the enclosing parallel region (a team runs its wave
 * drivers in lockstep: every thread reaches every barrier). */
static inline int fn_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
static inline int fn_team_id(void) { return omp_get_thread_num(); }
/* inside an active parallel region (a team of more than one thread) */
static inline int fn_in_parallel(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}
static inline void fn_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

/* Thread tid's contiguous share [*a, *e) of the items [i0, i0 + cnt): the
 * same share for the statistics and the normalize pass of a wave, so a
 * thread's second read hits its own L2. */
static inline void fn_team_share(fn_ssize i0, fn_ssize cnt, int tid, int team, fn_ssize *a, fn_ssize *e)
{
    *a = i0 + (cnt * tid) / team;
    *e = i0 + (cnt * (tid + 1)) / team;
}

/* The team of a call of `work` elements that asked for n_threads: 1 below
 * FN_SERIAL_BELOW_N, else at most n_threads and no more than the cores free
 * now (fn_threads_now). */
int fn_team_for(int n_threads, fn_ssize work);

/* Threads to start for a parallel region: at most want, no more than the
 * ncpu cores minus those busy with other processes (FASTNORM_DYNAMIC=0 turns
 * this off); fn_team_finished records a region's end.  fn_busy_now is one
 * reading: the runnable threads of other processes (this process's own, its
 * spinning OpenMP workers included, are not counted), -1 when unknown. */
int fn_threads_now(int want, int ncpu);
int fn_busy_now(void);
/* Around every driver call (the binding's): while two run at once, each
 * counts the other's threads as load. */
void fn_call_enter(void);
void fn_call_leave(void);
void fn_team_finished(int team);

#endif /* FN_THREADS_H */
