/*
 * A NumPy memory handler that keeps freed large output buffers for reuse.
 *
 * An output of more than a few MiB is a fresh mmap on every call (glibc's
 * mmap threshold stops growing at 32 MiB), and the kernel zeroes each new
 * page on first touch: for a 32 MiB output that costs more than the whole
 * normalization.  Outputs that fastnorm allocates (only those) use this
 * handler; when NumPy frees one, its block goes back to a small pool
 * (FN_POOL_SLOTS blocks, at most fn_pool_cap bytes, FASTNORM_CACHE_BYTES,
 * fastnorm.empty_cache() releases it) and the next output of the same size
 * takes it with its pages still mapped.  Blocks below FN_POOL_MIN and any
 * calloc / realloc go straight to the C library.  The arrays own their data
 * like any np.empty result.
 */
#ifndef FN_POOL_H
#define FN_POOL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define FN_POOL_MIN ((size_t)1 << 20)
#define FN_POOL_SLOTS 8

typedef struct {
    void *p;
    size_t n;
} fn_pool_slot;
/* kept blocks, oldest first, in fn_pool[0 .. fn_pool_count) */
static fn_pool_slot fn_pool[FN_POOL_SLOTS];
static int fn_pool_count = 0;
static size_t fn_pool_bytes = 0;
static size_t fn_pool_cap = (size_t)256 << 20;
static int fn_pool_lock_ = 0;

static inline void fn_pool_lock(void)
{
#if defined(__GNUC__) || defined(__clang__)
    while (__atomic_exchange_n(&fn_pool_lock_, 1, __ATOMIC_ACQUIRE)) {}
#endif
}
static inline void fn_pool_unlock(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&fn_pool_lock_, 0, __ATOMIC_RELEASE);
#endif
}

static void fn_pool_remove(int i) /* with the lock held */
{
    fn_pool_bytes -= fn_pool[i].n;
    memmove(&fn_pool[i], &fn_pool[i + 1], (size_t)(fn_pool_count - i - 1) * sizeof fn_pool[0]);
    fn_pool_count--;
}

/* A new block of 4 MiB or more asks Linux for transparent huge pages, as
 * NumPy's own allocator does for its arrays (numpy/_core/src/multiarray/
 * alloc.c, indicate_hugepages): with THP in "madvise" mode an output without
 * the hint is mapped in 4 KiB pages, and writing it misses the TLB once a
 * page (an 8 MiB output took up to 1.6x the time of the same call writing
 * into a NumPy-allocated out=).  Errors are ignored (older kernels). */
#define FN_POOL_HUGE ((size_t)1 << 22)
static void fn_pool_hint_huge(void *p, size_t n)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p != NULL && n >= FN_POOL_HUGE) {
        const uintptr_t off = 4096u - (uintptr_t)p % 4096u;
        (void)madvise((char *)p + off, n - off, MADV_HUGEPAGE);
    }
#else
    (void)p;
    (void)n;
#endif
}

static void *fn_pool_malloc(void *ctx, size_t n)
{
    int i;
    void *p = NULL;
    (void)ctx;
    if (n >= FN_POOL_MIN) {
        fn_pool_lock();
        for (i = fn_pool_count - 1; i >= 0; i--) /* newest first */
            if (fn_pool[i].n == n) {
                p = fn_pool[i].p;
                fn_pool_remove(i);
                break;
            }
        fn_pool_unlock();
        if (p != NULL) return p;
        p = malloc(n);
        fn_pool_hint_huge(p, n);
        return p;
    }
    return malloc(n ? n : 1);
}

static void *fn_pool_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return calloc(nelem ? nelem : 1, elsize ? elsize : 1);
}

static void *fn_pool_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return realloc(p, n ? n : 1);
}

static void fn_pool_free(void *ctx, void *p, size_t n)
{
    void *evicted[FN_POOL_SLOTS];
    int ne = 0, i;
    (void)ctx;
    if (p == NULL) return;
    if (n < FN_POOL_MIN || n > fn_pool_cap) {
        free(p);
        return;
    }
    fn_pool_lock();
    while (fn_pool_count > 0 && (fn_pool_count == FN_POOL_SLOTS || fn_pool_bytes + n > fn_pool_cap)) {
        evicted[ne++] = fn_pool[0].p; /* the oldest block goes */
        fn_pool_remove(0);
    }
    fn_pool[fn_pool_count].p = p;
    fn_pool[fn_pool_count].n = n;
    fn_pool_count++;
    fn_pool_bytes += n;
    fn_pool_unlock();
    for (i = 0; i < ne; i++) free(evicted[i]);
}

/* Release every kept block; returns the bytes released. */
static size_t fn_pool_clear(void)
{
    void *ps[FN_POOL_SLOTS];
    size_t total;
    int i, n;
    fn_pool_lock();
    n = fn_pool_count;
    for (i = 0; i < n; i++) ps[i] = fn_pool[i].p;
    total = fn_pool_bytes;
    fn_pool_count = 0;
    fn_pool_bytes = 0;
    fn_pool_unlock();
    for (i = 0; i < n; i++) free(ps[i]);
    return total;
}

static size_t fn_pool_set_cap(size_t cap)
{
    size_t old = fn_pool_cap;
    fn_pool_cap = cap;
    if (fn_pool_bytes > cap) fn_pool_clear();
    return old;
}

static size_t fn_pool_held(void) { return fn_pool_bytes; }
static size_t fn_pool_get_cap(void) { return fn_pool_cap; }

/* NumPy's handler (version 1), in a capsule named "mem_handler" */
#include <numpy/arrayobject.h>
static PyDataMem_Handler fn_pool_handler = {
    "fastnorm_output_pool",
    1,
    {NULL, fn_pool_malloc, fn_pool_calloc, fn_pool_realloc, fn_pool_free},
};
static PyObject *fn_pool_capsule(void) { return PyCapsule_New(&fn_pool_handler, "mem_handler", NULL); }

#endif /* FN_POOL_H */
