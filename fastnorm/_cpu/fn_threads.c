/*
 * The team of a call (fn_threads.h): the last step of the thread policy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#endif

#include "fn_threads.h"

int fn_team_for(int n_threads, fn_ssize work)
{
    if (n_threads <= 1 || work < FN_SERIAL_BELOW_N) return 1;
    return fn_threads_now(n_threads, omp_get_num_procs());
}

/* The last step of the thread policy (fastnorm/_threads.py decides the
 * team a call asks for; this trims it to the cores free now).
 * A team runs at the pace of its slowest thread (static schedule, barriers):
 * a thread that shares its core with another busy process stalls all the
 * others, so on a loaded machine a small team can be many times slower than
 * one thread (benchmarks/README.md, "Threads under load").
 * Before a parallel region the engine asks how many cores are not busy with
 * other processes' runnable threads (Linux: procs_running in /proc/loadavg,
 * read at most every FN_LOAD_EVERY_NS) and starts no more threads than that.
 * This process's own runnable threads are not "other" threads: the caller,
 * and the OpenMP workers spinning after a region, ours or another library's
 * sharing the runtime (torch's convolutions run on the same libgomp pool, so
 * in a network the workers that spin after each convolution are the ones the
 * next fastnorm call runs on).  They are counted from /proc/self/task (state
 * R) with the reading.  That count is not used, and the older rule holds
 * (other threads of this process are load, except the workers of our own
 * region that ended less than FN_SPIN_NS ago), when another fastnorm call is
 * running in this process (fn_call_enter / fn_call_leave around every
 * driver call: two concurrent teams must see each other), or when the
 * process has more than FN_OWN_TASKS_MAX threads.  The count reads one small
 * file per thread (a few microseconds each), so a process of T threads
 * reads at most every (1 + T / 32) * FN_LOAD_EVERY_NS: a torch process on a
 * 64-core server (over 64 threads) pays about as much per second as a small
 * one.  A reading is one instant: the busy count is the least of the last
 * three, so a task that was runnable for a moment (a kernel worker, a
 * shell) does not cost a quiet machine a thread, while a busy process,
 * runnable in every reading, does.  Results are bit-identical for any
 * thread count. */
#define FN_LOAD_EVERY_NS 20000000LL
#define FN_SPIN_NS 20000000LL
#define FN_OWN_TASKS_MAX 1024
static int fn_own_tasks = 0;          /* this process's threads at the last count */
static int fn_dynamic = -1;           /* -1: read FASTNORM_DYNAMIC once */
static long long fn_load_at = -1;     /* when procs_running was last read */
static int fn_busy[3] = {-1, -1, -1}; /* other runnable threads, last 3 readings */
static int fn_busy_next = 0;
static int fn_in_flight = 0;       /* driver calls running in this process */
static long long fn_team_end = -1; /* when our last team finished */
static int fn_team_last = 1;

static long long fn_now_ns(void)
{
#if defined(__linux__)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#else
    return 0;
#endif
}

static int fn_read_running(void)
{
#if defined(__linux__)
    char buf[128];
    int running = 0, total = 0;
    double a, b, c;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL) return 0;
    if (fgets(buf, sizeof buf, f) == NULL ||
        sscanf(buf, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5)
        running = 0;
    fclose(f);
    return running;
#else
    return 0;
#endif
}

/* this process's runnable threads (the caller included), -1 when unknown or
 * when the process has more than FN_OWN_TASKS_MAX threads */
static int fn_own_running(void)
{
#if defined(__linux__)
    char path[64], buf[512];
    int running = 0, tasks = 0, fd;
    struct dirent *e;
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) return -1;
    while ((e = readdir(d)) != NULL) {
        ssize_t n;
        char *p;
        if (e->d_name[0] == '.') continue;
        if (++tasks > FN_OWN_TASKS_MAX) {
            running = -1;
            break;
        }
        snprintf(path, sizeof path, "/proc/self/task/%.32s/stat", e->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0) continue; /* the thread ended */
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        if (p != NULL && p[1] == ' ' && p[2] == 'R') running++;
    }
    closedir(d);
    fn_own_tasks = tasks;
    return running;
#else
    return -1;
#endif
}

void fn_call_enter(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_add_fetch(&fn_in_flight, 1, __ATOMIC_RELAXED);
#else
    fn_in_flight++;
#endif
}

void fn_call_leave(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_sub_fetch(&fn_in_flight, 1, __ATOMIC_RELAXED);
#else
    fn_in_flight--;
#endif
}

static int fn_calls_in_flight(void)
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n(&fn_in_flight, __ATOMIC_RELAXED);
#else
    return fn_in_flight;
#endif
}

int fn_busy_now(void)
{
    long long now = fn_now_ns();
    int running = fn_read_running(), own, busy;
    if (running <= 0) return -1; /* unknown */
    own = fn_calls_in_flight() > 1 ? -1 : fn_own_running();
    if (own >= 1) {
        busy = running - own;
    } else {
        busy = running - 1; /* the caller is running */
        if (fn_team_end >= 0 && now - fn_team_end < FN_SPIN_NS)
            busy -= fn_team_last - 1; /* our own spinning workers */
    }
    return busy < 0 ? 0 : busy;
}

int fn_threads_now(int want, int ncpu)
{
    long long now;
    int others, free_cpus;
    if (fn_dynamic < 0) {
        const char *e = getenv("FASTNORM_DYNAMIC");
        fn_dynamic = !(e != NULL && (strcmp(e, "0") == 0 || strcmp(e, "false") == 0 || strcmp(e, "no") == 0 ||
                                     strcmp(e, "off") == 0));
    }
    if (want <= 1 || !fn_dynamic) return want;
    now = fn_now_ns();
    if (fn_load_at < 0 || now - fn_load_at > FN_LOAD_EVERY_NS * (1 + fn_own_tasks / 32) || now < fn_load_at) {
        int busy = fn_busy_now();
        fn_load_at = now;
        if (busy < 0) return want; /* unknown: trust the request */
        fn_busy[fn_busy_next] = busy;
        fn_busy_next = (fn_busy_next + 1) % 3;
    }
    others = fn_busy[0];
    if (fn_busy[1] >= 0 && (others < 0 || fn_busy[1] < others)) others = fn_busy[1];
    if (fn_busy[2] >= 0 && (others < 0 || fn_busy[2] < others)) others = fn_busy[2];
    if (others <= 0) return want; /* a quiet machine: as asked */
    free_cpus = ncpu - others;
    if (free_cpus < 1) free_cpus = 1;
    return want < free_cpus ? want : free_cpus;
}

void fn_team_finished(int team)
{
    fn_team_end = fn_now_ns();
    fn_team_last = team;
}
