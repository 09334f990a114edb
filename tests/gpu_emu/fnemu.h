// fnemu.h: just enough of CUDA to run fastnorm's kernels.cu on the host CPU
// (tests only; included ahead of kernels.cu with g++ -include).
//
// Blocks run one after another; the threads of a block are fibers (ucontext)
// of one OS thread, switched only at __syncthreads and at warp shuffles, the
// lowest runnable thread first (so warps run ahead of one another as far as
// the barriers allow, which is what exposes a missing barrier).  A barrier or
// shuffle that cannot complete (a lane that exited, or threads waiting at
// different barriers) is reported as a deadlock instead of hanging.  Static
// __shared__ memory is poisoned with 0xff bytes (NaN in every float type) at
// the start of each block, so a read before a write shows up as NaN.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// Several of these libraries live in one process (one per module and set of
// -D options): everything is hidden (-fvisibility=hidden, -fno-gnu-unique,
// so a template's static __shared__ array is not merged with another
// library's of a different size); only the entry points are exported.
#define FNEMU_EXPORT extern "C" __attribute__((visibility("default")))

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// every static __shared__ variable lands in one section, poisoned per block
#define __shared__ __attribute__((section("fnemu_shared"))) static

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

// ------------------------------------------------------------- 16-bit floats
struct __half { unsigned short __x; };
struct __nv_bfloat16 { unsigned short __x; };

// counts the 16-bit loads of the running thread (lane activity of 16-bit kernels)
static long long *fnemu_load_counter = nullptr;

static inline uint32_t fnemu_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float fnemu_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float __half2float(__half h)
{
    if (fnemu_load_counter) ++*fnemu_load_counter;
    uint32_t s = (uint32_t)(h.__x & 0x8000u) << 16, e = (h.__x >> 10) & 0x1fu, m = h.__x & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-08f;
        return s ? -v : v;
    } // m * 2^-24, exact
    if (e == 31) return fnemu_float(s | 0x7f800000u | (m << 13));
    return fnemu_float(s | ((e + 112u) << 23) | (m << 13));
}

static inline __half __float2half_rn(float f)
{ // round to nearest even
    uint32_t x = fnemu_bits(f), sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    __half h;
    if (x >= 0x7f800000u) {
        h.__x = (unsigned short)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
        return h;
    }
    if (x >= 0x477ff000u) { // >= 65520: inf
        h.__x = (unsigned short)(sign | 0x7c00u);
        return h;
    }
    if (x < 0x38800000u) { // below 2^-14: a subnormal half (or 0), in units of 2^-24
        h.__x = (unsigned short)(sign | (uint32_t)nearbyintf(fnemu_float(x) * 16777216.0f));
        return h;
    }
    uint32_t m = x & 0x7fffffu, r = (((x >> 23) - 112u) << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    h.__x = (unsigned short)(sign | r);
    return h;
}

static inline float __bfloat162float(__nv_bfloat16 b)
{
    if (fnemu_load_counter) ++*fnemu_load_counter;
    return fnemu_float((uint32_t)b.__x << 16);
}

static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    uint32_t x = fnemu_bits(f);
    __nv_bfloat16 b;
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        b.__x = (unsigned short)((x >> 16) | 0x40u);
        return b;
    }
    x += 0x7fffu + ((x >> 16) & 1u);
    b.__x = (unsigned short)(x >> 16);
    return b;
}

// ------------------------------------------------------------------ threads
namespace fnemu
{

enum { RUN, AT_BAR, AT_WARP, DONE };

struct Fiber {
    ucontext_t ctx;
    uint3 idx;
    int lin, state;
    long long loads;
};

struct Warp {
    int arrived;
    unsigned mask;
    unsigned long long slot[32];
};

struct Grid {
    dim3 grid, block, blockIdx;
    int nthreads, cur, live, bar_arrived;
    std::vector<Fiber> f;
    std::vector<Warp> warps;
    std::set<int> runnable;
    ucontext_t sched;
    std::function<void()> body;
    std::string err;
    unsigned char *dyn_smem;
    long long threads_run, threads_loading; // per launch
};

static Grid G;
static std::vector<char *> stacks;
static const size_t STACK = 256 * 1024;

static inline void fail(const std::string &msg)
{
    if (G.err.empty()) G.err = msg;
}

static inline Fiber &me() { return G.f[G.cur]; }

static inline void yield() { swapcontext(&me().ctx, &G.sched); }

static inline void release_bar()
{
    for (auto &t : G.f)
        if (t.state == AT_BAR) {
            t.state = RUN;
            G.runnable.insert(t.lin);
        }
    G.bar_arrived = 0;
}

static inline void syncthreads()
{
    Fiber &t = me();
    t.state = AT_BAR;
    G.runnable.erase(t.lin);
    if (++G.bar_arrived == G.live) release_bar();
    yield();
}

// All lanes of `mask` in this warp meet here (a shuffle's exchange point).
static inline void warp_sync(unsigned mask)
{
    Fiber &t = me();
    int w = t.lin >> 5, lane = t.lin & 31;
    Warp &W = G.warps[w];
    int width = G.nthreads - (w << 5) < 32 ? G.nthreads - (w << 5) : 32;
    if (!((mask >> lane) & 1u)) fail("a shuffle's mask does not include the calling lane");
    if (width < 32 && (mask >> width)) fail("a shuffle's mask names lanes that do not exist");
    if (W.arrived == 0) W.mask = mask;
    else if (W.mask != mask) fail("lanes of one warp meet at shuffles with different masks");
    t.state = AT_WARP;
    G.runnable.erase(t.lin);
    if (++W.arrived == __builtin_popcount(mask)) {
        for (int l = 0; l < 32; l++) {
            if (!((mask >> l) & 1u)) continue;
            Fiber &o = G.f[(w << 5) + l];
            if (o.state == AT_WARP) {
                o.state = RUN;
                G.runnable.insert(o.lin);
            }
        }
        W.arrived = 0;
    }
    yield();
}

template <typename T>
static inline T shfl(unsigned mask, T v, int src_in_warp)
{
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    Fiber &t = me();
    int w = t.lin >> 5;
    unsigned long long u = 0;
    memcpy(&u, &v, sizeof(T));
    G.warps[w].slot[t.lin & 31] = u;
    warp_sync(mask);
    if (src_in_warp < 0 || src_in_warp > 31 || !((mask >> src_in_warp) & 1u))
        fail("a shuffle reads a lane outside its mask");
    T r;
    u = G.warps[w].slot[src_in_warp & 31];
    memcpy(&r, &u, sizeof(T));
    warp_sync(mask); // nobody overwrites a slot before every lane has read
    return r;
}

static void trampoline()
{
    G.body();
    Fiber &t = me();
    t.state = DONE;
    G.runnable.erase(t.lin);
    G.live--;
    if (G.bar_arrived > 0 && G.bar_arrived == G.live) release_bar();
    // uc_link returns to the scheduler
}

extern "C" char __start_fnemu_shared[] __attribute__((weak));
extern "C" char __stop_fnemu_shared[] __attribute__((weak));

static std::string describe()
{
    std::string s;
    int n[4] = {0, 0, 0, 0};
    for (auto &t : G.f) n[t.state]++;
    char buf[200];
    snprintf(buf, sizeof buf,
             "block (%u, %u, %u): %d threads at __syncthreads, %d at a warp shuffle, %d exited", G.blockIdx.x,
             G.blockIdx.y, G.blockIdx.z, n[AT_BAR], n[AT_WARP], n[DONE]);
    return buf;
}

static int run_block()
{
    int n = G.nthreads;
    while ((int)stacks.size() < n) stacks.push_back((char *)malloc(STACK));
    G.f.assign(n, Fiber());
    G.warps.assign((n + 31) / 32, Warp());
    G.runnable.clear();
    G.live = n;
    G.bar_arrived = 0;
    if (__start_fnemu_shared && __stop_fnemu_shared > __start_fnemu_shared)
        memset(__start_fnemu_shared, 0xff, __stop_fnemu_shared - __start_fnemu_shared);
    for (int i = 0; i < n; i++) {
        Fiber &t = G.f[i];
        t.lin = i;
        t.idx.x = i % G.block.x;
        t.idx.y = (i / G.block.x) % G.block.y;
        t.idx.z = i / (G.block.x * G.block.y);
        t.state = RUN;
        t.loads = 0;
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = stacks[i];
        t.ctx.uc_stack.ss_size = STACK;
        t.ctx.uc_link = &G.sched;
        makecontext(&t.ctx, trampoline, 0);
        G.runnable.insert(i);
    }
    while (!G.runnable.empty() && G.err.empty()) {
        G.cur = *G.runnable.begin();
        fnemu_load_counter = &G.f[G.cur].loads;
        swapcontext(&G.sched, &G.f[G.cur].ctx);
    }
    fnemu_load_counter = nullptr;
    for (auto &t : G.f) {
        G.threads_run++;
        G.threads_loading += t.loads > 0;
    }
    if (!G.err.empty()) return 1;
    if (G.live > 0) {
        fail("deadlock: " + describe());
        return 1;
    }
    return 0;
}

static int run_grid(const unsigned *grid, const unsigned *block, size_t smem, char *errbuf, size_t errlen)
{
    G.grid = {grid[0], grid[1], grid[2]};
    G.block = {block[0], block[1], block[2]};
    G.nthreads = (int)(block[0] * block[1] * block[2]);
    G.err.clear();
    G.threads_run = G.threads_loading = 0;
    std::vector<unsigned char> dyn(smem + 16, 0xff);
    G.dyn_smem = dyn.data();
    int rc = 0;
    for (unsigned z = 0; z < grid[2] && !rc; z++)
        for (unsigned y = 0; y < grid[1] && !rc; y++)
            for (unsigned x = 0; x < grid[0] && !rc; x++) {
                G.blockIdx = {x, y, z};
                rc = run_block();
            }
    if (!G.err.empty() && !rc) rc = 1;
    if (rc) snprintf(errbuf, errlen, "%s", G.err.c_str());
    return rc;
}

// ------------------------------------------------------- launch signatures
template <typename X>
struct Name {
    static std::string s() { return "?" + std::to_string(sizeof(X)); }
};
template <>
struct Name<float> {
    static std::string s() { return "f32"; }
};
template <>
struct Name<double> {
    static std::string s() { return "f64"; }
};
template <>
struct Name<int> {
    static std::string s() { return "i32"; }
};
template <>
struct Name<unsigned char> {
    static std::string s() { return "u8"; }
};
template <>
struct Name<signed char> {
    static std::string s() { return "i8"; }
};
template <>
struct Name<unsigned short> {
    static std::string s() { return "u16"; }
};
template <>
struct Name<short> {
    static std::string s() { return "i16"; }
};
template <>
struct Name<unsigned int> {
    static std::string s() { return "u32"; }
};
template <>
struct Name<long long> {
    static std::string s() { return "i64"; }
};
template <>
struct Name<unsigned long long> {
    static std::string s() { return "u64"; }
};
template <>
struct Name<__half> {
    static std::string s() { return "f16"; }
};
template <>
struct Name<__nv_bfloat16> {
    static std::string s() { return "bf16"; }
};
template <typename X>
struct Name<X *> {
    static std::string s()
    {
        return std::string(std::is_const<X>::value ? "cp:" : "p:") +
               Name<typename std::remove_cv<X>::type>::s();
    }
};

template <typename... A>
static const char *sig(void (*)(A...))
{
    static std::string s;
    s.clear();
    int unused[] = {0, (s += (s.empty() ? "" : ",") + Name<typename std::decay<A>::type>::s(), 0)...};
    (void)unused;
    return s.c_str();
}

template <typename... A, size_t... I>
static void call(void (*k)(A...), void **args, std::index_sequence<I...>)
{
    k(*static_cast<typename std::decay<A>::type *>(args[I])...);
}

template <typename... A>
static int launch(void (*k)(A...), const unsigned *grid, const unsigned *block, size_t smem, void **args,
                  char *errbuf, size_t errlen)
{
    G.body = [=] { call(k, args, std::index_sequence_for<A...>{}); };
    return run_grid(grid, block, smem, errbuf, errlen);
}

} // namespace fnemu

// 16-byte vector: a copy from or an assignment to memory checks the address
// is 16-byte aligned (as the GPU requires) and moves the bytes with memcpy:
// an aligned SSE move would crash the process instead of failing the launch.
struct alignas(8) uint4 {
    unsigned x, y, z, w;
    uint4() = default;
    uint4(const uint4 &o)
    {
        check(&o);
        memcpy(this, &o, 16);
    }
    uint4 &operator=(const uint4 &o)
    {
        check(this);
        memcpy(this, &o, 16);
        return *this;
    }
    static void check(const void *p)
    {
        if ((uintptr_t)p & 15u) {
            char b[96];
            snprintf(b, sizeof b, "misaligned 16-byte access at %p", p);
            fnemu::fail(b);
        }
    }
};

// 8-byte vector, checked the same way
struct alignas(4) uint2 {
    unsigned x, y;
    uint2() = default;
    uint2(const uint2 &o)
    {
        check(&o);
        memcpy(this, &o, 8);
    }
    uint2 &operator=(const uint2 &o)
    {
        check(this);
        memcpy(this, &o, 8);
        return *this;
    }
    static void check(const void *p)
    {
        if ((uintptr_t)p & 7u) {
            char b[96];
            snprintf(b, sizeof b, "misaligned 8-byte access at %p", p);
            fnemu::fail(b);
        }
    }
};

#define threadIdx (fnemu::me().idx)
#define blockIdx (fnemu::G.blockIdx)
#define blockDim (fnemu::G.block)
#define gridDim (fnemu::G.grid)

static inline void __syncthreads() { fnemu::syncthreads(); }
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    int lane = fnemu::me().lin & 31;
    return fnemu::shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32)
{
    int lane = fnemu::me().lin & 31, src = lane ^ lm;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return fnemu::shfl(mask, v, src);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    int lane = fnemu::me().lin & 31, src = lane + (int)d;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return fnemu::shfl(mask, v, src);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    int lane = fnemu::me().lin & 31, src = lane - (int)d;
    if (src < (lane & ~(width - 1))) src = lane;
    return fnemu::shfl(mask, v, src);
}

// ------------------------------------------- misaligned vector accesses
// kernels compiled with -fsanitize=alignment report here (not through
// libubsan, which is not linked): the launch fails with the message.
extern "C" void __ubsan_handle_type_mismatch_v1(void *, void *ptr)
{
    char b[96];
    snprintf(b, sizeof b, "misaligned or null access at %p", ptr);
    fnemu::fail(b);
}

// threads run by the last launch, and those of them that loaded a 16-bit value
FNEMU_EXPORT void fnemu_stats(long long *out)
{
    out[0] = fnemu::G.threads_run;
    out[1] = fnemu::G.threads_loading;
}

// ------------------------------------------------- conversion test hooks
FNEMU_EXPORT void fnemu_f2h(const float *a, unsigned short *o, long n)
{
    for (long i = 0; i < n; i++) o[i] = __float2half_rn(a[i]).__x;
}
FNEMU_EXPORT void fnemu_h2f(const unsigned short *a, float *o, long n)
{
    for (long i = 0; i < n; i++) {
        __half h;
        h.__x = a[i];
        o[i] = __half2float(h);
    }
}
FNEMU_EXPORT void fnemu_f2b(const float *a, unsigned short *o, long n)
{
    for (long i = 0; i < n; i++) o[i] = __float2bfloat16_rn(a[i]).__x;
}
FNEMU_EXPORT void fnemu_b2f(const unsigned short *a, float *o, long n)
{
    for (long i = 0; i < n; i++) {
        __nv_bfloat16 h;
        h.__x = a[i];
        o[i] = __bfloat162float(h);
    }
}
