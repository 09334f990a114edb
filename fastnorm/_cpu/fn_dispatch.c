/*
 * The dispatch table: which per-target kernel objects this build has
 * (setup.py passes -DFN_HAVE_<suffix> for each one it compiled), which of
 * them this CPU runs, and the one configuration the engine calls through.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fn_dispatch.h"

#define FN_DECL(suffix) extern const fn_target fn_target_##suffix;
#if defined(FN_HAVE_x86_64_v4)
FN_DECL(x86_64_v4)
#endif
#if defined(FN_HAVE_x86_64_v3)
FN_DECL(x86_64_v3)
#endif
#if defined(FN_HAVE_x86_64_fma)
FN_DECL(x86_64_fma)
#endif
#if defined(FN_HAVE_x86_64)
FN_DECL(x86_64)
#endif
#if defined(FN_HAVE_neon)
FN_DECL(neon)
#endif
#if defined(FN_HAVE_native)
FN_DECL(native)
#endif
#if defined(FN_HAVE_generic) ||                                                                  \
    !(defined(FN_HAVE_x86_64_v4) || defined(FN_HAVE_x86_64_v3) || defined(FN_HAVE_x86_64_fma) || \
      defined(FN_HAVE_x86_64) || defined(FN_HAVE_neon) || defined(FN_HAVE_native))
#define FN_HAVE_generic_ 1
FN_DECL(generic)
#endif

/* x86 features from cpuid, with the OS's consent (xgetbv) for the AVX and
 * AVX-512 register state; the same code for GCC and clang */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define FN_X86 1
typedef struct { int done, v3, v4, fma; } fn_caps_t;
static fn_caps_t fn_caps;

static void fn_cpu_probe(void)
{
    unsigned a, b, c, d, c1, b7 = 0, e81 = 0, xcr0 = 0;
    int avx_os, avx512_os, fma, f16c, movbe, avx2, bmi1, bmi2, lzcnt;
    if (fn_caps.done) return;
    fn_caps.done = 1;
    if (!__get_cpuid(1, &a, &b, &c1, &d)) return;
    if (c1 & (1u << 27)) { /* OSXSAVE */
        __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
        xcr0 = a;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) b7 = b;
    if (__get_cpuid(0x80000001u, &a, &b, &c, &d)) e81 = c;
    avx_os = (c1 & (1u << 28)) && (xcr0 & 0x6u) == 0x6u;
    avx512_os = avx_os && (xcr0 & 0xe0u) == 0xe0u;
    fma = avx_os && (c1 & (1u << 12));
    f16c = avx_os && (c1 & (1u << 29));
    movbe = (c1 & (1u << 22)) != 0;
    avx2 = avx_os && (b7 & (1u << 5));
    bmi1 = (b7 & (1u << 3)) != 0;
    bmi2 = (b7 & (1u << 8)) != 0;
    lzcnt = (e81 & (1u << 5)) != 0;
    fn_caps.fma = fma;
    /* the features -march=x86-64-v3 / -v4 may use */
    fn_caps.v3 = fma && f16c && movbe && avx2 && bmi1 && bmi2 && lzcnt;
    fn_caps.v4 = fn_caps.v3 && avx512_os && (b7 & (1u << 16)) && (b7 & (1u << 17)) && (b7 & (1u << 28)) &&
                 (b7 & (1u << 30)) && (b7 & (1u << 31));
}
static int fn_cpu_v3(void)
{
    fn_cpu_probe();
    return fn_caps.v3;
}
static int fn_cpu_v4(void)
{
    fn_cpu_probe();
    return fn_caps.v4;
}
static int fn_cpu_fma(void)
{
    fn_cpu_probe();
    return fn_caps.fma;
}
#else
static int fn_cpu_v3(void) { return 0; }
static int fn_cpu_v4(void) { return 0; }
static int fn_cpu_fma(void) { return 0; }
#endif

typedef struct {
    const fn_target *t;
    int (*runs)(void); /* NULL: every CPU of the architecture */
} fn_entry;

/* best first; a level may appear twice (fused, then its unfused form) */
static const fn_entry fn_entries[] = {
#if defined(FN_HAVE_native)
    {&fn_target_native, NULL},
#endif
#if defined(FN_HAVE_x86_64_v4)
    {&fn_target_x86_64_v4, fn_cpu_v4},
#endif
#if defined(FN_HAVE_x86_64_v3)
    {&fn_target_x86_64_v3, fn_cpu_v3},
#endif
#if defined(FN_HAVE_x86_64_fma)
    {&fn_target_x86_64_fma, fn_cpu_fma},
#endif
#if defined(FN_HAVE_x86_64)
    {&fn_target_x86_64, NULL},
#endif
#if defined(FN_HAVE_neon)
    {&fn_target_neon, NULL},
#endif
#if defined(FN_HAVE_generic_)
    {&fn_target_generic, NULL},
#endif
};
#define FN_NENTRIES ((int)(sizeof fn_entries / sizeof fn_entries[0]))

fn_config_t fn_config = {NULL, 1}; /* set by fn_select at import */

static int fn_runs(int i) { return fn_entries[i].runs == NULL || fn_entries[i].runs(); }

int fn_select(const char *name, int fused)
{
    int i, known = 0, runs = 0;
    for (i = 0; i < FN_NENTRIES; i++) {
        const fn_target *t = fn_entries[i].t;
        if (strcmp(name, "auto") != 0 && strcmp(name, t->level) != 0) continue;
        known = 1;
        if (!fn_runs(i)) continue;
        runs = 1;
        if (fused >= 0 && t->fused != fused) continue;
        fn_config.t = t;
        return 0;
    }
    return !known ? -1 : !runs ? -2 : -3;
}

static void fn_join(char *out, size_t size, int only_running)
{
    int i, j;
    out[0] = '\0';
    for (i = 0; i < FN_NENTRIES; i++) {
        int dup = 0;
        if (only_running && !fn_runs(i)) continue;
        for (j = 0; j < i; j++)
            if (strcmp(fn_entries[j].t->level, fn_entries[i].t->level) == 0 && (!only_running || fn_runs(j)))
                dup = 1;
        if (dup) continue;
        if (out[0]) strncat(out, ",", size - strlen(out) - 1);
        strncat(out, fn_entries[i].t->level, size - strlen(out) - 1);
    }
}

const char *fn_levels(void)
{
    static char buf[256];
    fn_join(buf, sizeof buf, 1);
    return buf;
}

const char *fn_built_levels(void)
{
    static char buf[256];
    fn_join(buf, sizeof buf, 0);
    return buf;
}

/* src copied into dst in 64 KiB pieces over nthreads OpenMP threads: the
 * bench's bandwidth ceiling (stream: the active target's non-temporal stores) */
void fn_parallel_copy(const char *src, char *dst, fn_ssize nbytes, int nthreads, int stream)
{
    const fn_ssize chunk = 1 << 16;
    fn_ssize nchunks = (nbytes + chunk - 1) / chunk, i;
    void (*copy)(const char *, char *, fn_ssize, int) = fn_config.t->copy;
    stream = stream && fn_can_stream();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads)
#endif
    for (i = 0; i < nchunks; i++) {
        fn_ssize off = i * chunk;
        fn_ssize len = nbytes - off < chunk ? nbytes - off : chunk;
        copy(src + off, dst + off, len, stream);
    }
    (void)nthreads;
}
