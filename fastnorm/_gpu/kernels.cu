// fastnorm CUDA kernels, compiled at run time by cupy.RawModule (NVRTC) and
// checked offline with nvcc (tests/test_gpu_compile.py).
//
// Templated on the storage type T (float, double, __half, __nv_bfloat16).
// Statistics: shifted sums per chunk (shift = the chunk's first element, so
// |mean - shift|^2 <= count * var and the shifted second moment cannot cancel
// badly), accumulated in double for float/double and in float for the half
// types, turned into Welford triples (count, mean, M2) and merged with Chan's
// formula in double, in chunk order (deterministic).
// Apply: y = act(((x - hi) - lo) * scale + shift) with the mean split into a
// high part and a low correction in the working precision.
// All offsets are 64-bit.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#ifndef FN_CHUNK                // the backend passes both (from _names.py)
#define FN_CHUNK 16384          // elements per statistics chunk (channels first)
#endif
#ifndef FN_CL_ROWS
#define FN_CL_ROWS 256          // rows per statistics chunk (channels last)
#endif

template <typename T> struct Tr;
template <> struct Tr<float> {
    typedef double Acc; typedef float W;
    static __device__ __forceinline__ W load(float v) { return v; }
    static __device__ __forceinline__ float store(W v) { return v; }
};
template <> struct Tr<double> {
    typedef double Acc; typedef double W;
    static __device__ __forceinline__ W load(double v) { return v; }
    static __device__ __forceinline__ double store(W v) { return v; }
};
template <> struct Tr<__half> {
    typedef float Acc; typedef float W;
    static __device__ __forceinline__ W load(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half store(W v) { return __float2half_rn(v); }
};
template <> struct Tr<__nv_bfloat16> {
    typedef float Acc; typedef float W;
    static __device__ __forceinline__ W load(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 store(W v) { return __float2bfloat16_rn(v); }
};

struct Triple { double n, mean, m2; };

__device__ __forceinline__ void merge(Triple &a, const Triple &b) {
    if (b.n == 0.0) return;
    if (a.n == 0.0) { a = b; return; }
    double n = a.n + b.n, d = b.mean - a.mean, fb = b.n / n;
    a.mean += d * fb;
    a.m2 += b.m2 + d * d * (a.n * fb);
    a.n = n;
}

__device__ __forceinline__ Triple finish(double cnt, double shift, double s1, double s2) {
    Triple t;
    t.n = cnt;
    if (cnt == 0.0) { t.mean = 0.0; t.m2 = 0.0; return t; }
    double q = s1 / cnt, m2 = s2 - s1 * q;
    t.mean = shift + q;
    t.m2 = m2 < 0.0 ? 0.0 : m2;
    return t;
}

__device__ __forceinline__ float fn_exp(float v) { return expf(v); }
__device__ __forceinline__ double fn_exp(double v) { return exp(v); }

template <typename W>
__device__ __forceinline__ W activate(W v, int act, W slope) {
    if (act == 1) return v < W(0) ? W(0) : v;             // relu (NaN stays NaN)
    if (act == 2) return v >= W(0) ? v : v * slope;       // leaky_relu
    if (act == 3) return v / (W(1) + fn_exp(-v));         // silu
    return v;
}

template <typename W>
__device__ __forceinline__ void split_mean(double mean, W &hi, W &lo) {
    hi = (W)mean;
    lo = (W)(mean - (double)hi);
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); result in every thread.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A *smem) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) smem[wid] = v;
    __syncthreads();
    A r = (threadIdx.x < nw) ? smem[threadIdx.x] : A(0);
    if (wid == 0) r = warp_sum(r);
    if (threadIdx.x == 0) smem[0] = r;
    __syncthreads();
    return smem[0];
}

// Per-channel affine of (plane p, element i of the plane): plane = (n, g) of Cg*S.
__device__ __forceinline__ long long chan_of(long long p, long long i, long long G, long long Cg,
                                             long long S) {
    return (p % G) * Cg + (Cg == 1 ? 0 : i / S);
}

// ---------------------------------------------------------------- fused CF
// One plane held in registers, read once and written once.  WARP=true: one
// warp per plane (blockDim.x = 32 * planes_per_block); else one block per plane.
template <typename T, int K, bool WARP>
__device__ __forceinline__ void fused_plane(const T *__restrict__ x, T *__restrict__ y, long long p,
                                            long long L, long long G, long long Cg, long long S,
                                            const double *__restrict__ w, const double *__restrict__ b,
                                            double eps, int act, double slope, int tid, int nthr,
                                            typename Tr<T>::Acc *smem) {
    typedef typename Tr<T>::Acc A;
    typedef typename Tr<T>::W Wt;
    const T *xp = x + p * L;
    T *yp = y + p * L;
    Wt v[K];
    A sh = (A)Tr<T>::load(xp[0]);
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        long long i = (long long)k * nthr + tid;
        v[k] = i < L ? Tr<T>::load(xp[i]) : Wt(0);
        A d = i < L ? (A)v[k] - sh : A(0);
        s1 += d;
        s2 += d * d;
    }
    if (WARP) {
        s1 = warp_sum(s1);
        s2 = warp_sum(s2);
    } else {
        s1 = block_sum(s1, smem);
        s2 = block_sum(s2, smem);
    }
    Triple t = finish((double)L, (double)sh, (double)s1, (double)s2);
    double rstd = 1.0 / sqrt(t.m2 / t.n + eps);
    Wt hi, lo;
    split_mean<Wt>(t.mean, hi, lo);
#pragma unroll
    for (int k = 0; k < K; k++) {
        long long i = (long long)k * nthr + tid;
        if (i < L) {
            long long c = chan_of(p, i, G, Cg, S);
            Wt sc = (Wt)(w ? rstd * w[c] : rstd);
            Wt sf = (Wt)(b ? b[c] : 0.0);
            Wt r = ((v[k] - hi) - lo) * sc + sf;
            yp[i] = Tr<T>::store(activate<Wt>(r, act, (Wt)slope));
        }
    }
}

template <typename T, int K>
__global__ void __launch_bounds__(256, 1) cf_fused_warp(const T *__restrict__ x, T *__restrict__ y, long long P, long long L,
                              long long G, long long Cg, long long S, const double *__restrict__ w,
                              const double *__restrict__ b, double eps, int act, double slope) {
    long long p = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (p >= P) return;
    fused_plane<T, K, true>(x, y, p, L, G, Cg, S, w, b, eps, act, slope, threadIdx.x & 31, 32, nullptr);
}

template <typename T, int K>
__global__ void __launch_bounds__(512, 1) cf_fused_block(const T *__restrict__ x, T *__restrict__ y, long long P, long long L,
                               long long G, long long Cg, long long S, const double *__restrict__ w,
                               const double *__restrict__ b, double eps, int act, double slope) {
    __shared__ typename Tr<T>::Acc smem[32];
    fused_plane<T, K, false>(x, y, (long long)blockIdx.x, L, G, Cg, S, w, b, eps, act, slope,
                             threadIdx.x, blockDim.x, smem);
}

// ------------------------------------------------------------ split planes
// grid (nchunks, P): Welford triple of chunk k of plane p.
template <typename T>
__global__ void __launch_bounds__(256, 1) cf_partial(const T *__restrict__ x, long long P, long long L, long long nchunks,
                           Triple *__restrict__ part) {
    typedef typename Tr<T>::Acc A;
    __shared__ A smem[32];
    long long p = blockIdx.y, k = blockIdx.x;
    long long s0 = k * FN_CHUNK, s1e = s0 + FN_CHUNK < L ? s0 + FN_CHUNK : L;
    const T *xp = x + p * L;
    A sh = (A)Tr<T>::load(xp[s0]);
    A a = 0, q = 0;
    for (long long i = s0 + threadIdx.x; i < s1e; i += blockDim.x) {
        A d = (A)Tr<T>::load(xp[i]) - sh;
        a += d;
        q += d * d;
    }
    a = block_sum(a, smem);
    q = block_sum(q, smem);
    if (threadIdx.x == 0) part[p * nchunks + k] = finish((double)(s1e - s0), (double)sh, (double)a, (double)q);
}

// out[o * inner + i] = chunks k = 0..nchunks-1 of part[(o * nchunks + k) * inner + i], merged in order.
__global__ void merge_chunks(const Triple *__restrict__ part, long long outer, long long inner,
                             long long nchunks, Triple *__restrict__ out) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= outer * inner) return;
    long long o = j / inner, i = j - o * inner;
    Triple t = {0.0, 0.0, 0.0};
    for (long long k = 0; k < nchunks; k++) merge(t, part[(o * nchunks + k) * inner + i]);
    out[j] = t;
}

// Channel triples (N, C) -> group triples (N, G): Cg consecutive channels merged in order.
__global__ void merge_groups(const Triple *__restrict__ tri, long long NG, long long Cg,
                             Triple *__restrict__ out) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= NG) return;
    Triple t = {0.0, 0.0, 0.0};
    for (long long k = 0; k < Cg; k++) merge(t, tri[j * Cg + k]);
    out[j] = t;
}

// Per-(n, c) coefficients from per-(n, g) triples: mean, scale, shift (double).
__global__ void coefs_from_triples(const Triple *__restrict__ tri, long long N, long long C,
                                   long long Cg, const double *__restrict__ w,
                                   const double *__restrict__ b, double eps,
                                   double *__restrict__ mean, double *__restrict__ scale,
                                   double *__restrict__ shift) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N * C) return;
    long long n = j / C, c = j - n * C;
    Triple t = tri[n * (C / Cg) + c / Cg];
    double rstd = 1.0 / sqrt(t.m2 / t.n + eps);
    mean[j] = t.mean;
    scale[j] = w ? rstd * w[c] : rstd;
    shift[j] = b ? b[c] : 0.0;
}

// Vectorized apply over R rows of S elements (channels first); per-row
// coefficients.  grid.x = R * segs, each block a segment of one row.  VEC
// elements per 16-byte access where the row is 16-byte aligned.
template <typename T>
__global__ void __launch_bounds__(256, 1) cf_apply(const T *__restrict__ x, T *__restrict__ y, long long R, long long S,
                         long long segs, const double *__restrict__ mean,
                         const double *__restrict__ scale, const double *__restrict__ shift, int act,
                         double slope) {
    typedef typename Tr<T>::W Wt;
    const int VEC = 16 / sizeof(T);
    long long r = blockIdx.x / segs, sg = blockIdx.x - r * segs;
    long long seg = (S + segs - 1) / segs;
    seg = (seg + VEC - 1) / VEC * VEC;
    long long s0 = sg * seg, s1e = s0 + seg < S ? s0 + seg : S;
    if (s0 >= s1e) return;
    Wt hi, lo;
    split_mean<Wt>(mean[r], hi, lo);
    Wt sc = (Wt)scale[r], sf = (Wt)shift[r], sl = (Wt)slope;
    const T *xp = x + r * S;
    T *yp = y + r * S;
    bool aligned = ((((unsigned long long)(xp + s0)) | ((unsigned long long)(yp + s0))) & 15ull) == 0;
    long long i = s0;
    if (aligned) {
        long long nv = (s1e - s0) / VEC;
        for (long long v = threadIdx.x; v < nv; v += blockDim.x) {
            long long base = s0 + v * VEC;
            uint4 raw = *reinterpret_cast<const uint4 *>(xp + base);
            const T *e = reinterpret_cast<const T *>(&raw);
            uint4 res;
            T *o = reinterpret_cast<T *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++)
                o[k] = Tr<T>::store(activate<Wt>(((Tr<T>::load(e[k]) - hi) - lo) * sc + sf, act, sl));
            *reinterpret_cast<uint4 *>(yp + base) = res;
        }
        i = s0 + nv * VEC;
    }
    for (long long j = i + threadIdx.x; j < s1e; j += blockDim.x)
        yp[j] = Tr<T>::store(activate<Wt>(((Tr<T>::load(xp[j]) - hi) - lo) * sc + sf, act, sl));
}

// ---------------------------------------------------------- channels last
// grid (nchunks, ceil(C / 32), N), block (32, 8): threads across channels
// (coalesced), 8 row lanes; triples per (n, chunk, c).
template <typename T>
__global__ void __launch_bounds__(256, 1) cl_partial(const T *__restrict__ x, long long N, long long S, long long C,
                           long long nchunks, Triple *__restrict__ part) {
    typedef typename Tr<T>::Acc A;
    __shared__ A s1s[8][33];
    __shared__ A s2s[8][33];
    long long c = (long long)blockIdx.y * 32 + threadIdx.x;
    long long k = blockIdx.x, n = blockIdx.z;
    long long r0 = k * FN_CL_ROWS, r1 = r0 + FN_CL_ROWS < S ? r0 + FN_CL_ROWS : S;
    const T *xn = x + n * S * C;
    A sh = 0, a = 0, q = 0;
    if (c < C) {
        sh = (A)Tr<T>::load(xn[r0 * C + c]);
        for (long long r = r0 + threadIdx.y; r < r1; r += 8) {
            A d = (A)Tr<T>::load(xn[r * C + c]) - sh;
            a += d;
            q += d * d;
        }
    }
    s1s[threadIdx.y][threadIdx.x] = a;
    s2s[threadIdx.y][threadIdx.x] = q;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int j = 1; j < 8; j++) { a += s1s[j][threadIdx.x]; q += s2s[j][threadIdx.x]; }
        part[(n * nchunks + k) * C + c] = finish((double)(r1 - r0), (double)sh, (double)a, (double)q);
    }
}

// grid (ceil(S / rows_per_block), ceil(C / (32 * VEC)), N), block (32, 8).
template <typename T, int VEC>
__global__ void __launch_bounds__(256, 1) cl_apply(const T *__restrict__ x, T *__restrict__ y, long long N, long long S,
                         long long C, long long rows_per_block, const double *__restrict__ mean,
                         const double *__restrict__ scale, const double *__restrict__ shift, int act,
                         double slope) {
    typedef typename Tr<T>::W Wt;
    long long c0 = ((long long)blockIdx.y * 32 + threadIdx.x) * VEC;
    long long n = blockIdx.z;
    if (c0 >= C) return;
    Wt hi[VEC], lo[VEC], sc[VEC], sf[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        long long c = c0 + k < C ? c0 + k : C - 1;
        split_mean<Wt>(mean[n * C + c], hi[k], lo[k]);
        sc[k] = (Wt)scale[n * C + c];
        sf[k] = (Wt)shift[n * C + c];
    }
    Wt sl = (Wt)slope;
    long long r0 = (long long)blockIdx.x * rows_per_block;
    long long r1 = r0 + rows_per_block < S ? r0 + rows_per_block : S;
    const T *xn = x + n * S * C;
    T *yn = y + n * S * C;
    for (long long r = r0 + threadIdx.y; r < r1; r += 8) {
        long long base = r * C + c0;
        if (VEC > 1) {  // host guarantees C % VEC == 0 and 16-byte alignment
            uint4 raw = *reinterpret_cast<const uint4 *>(xn + base);
            const T *e = reinterpret_cast<const T *>(&raw);
            uint4 res;
            T *o = reinterpret_cast<T *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++)
                o[k] = Tr<T>::store(activate<Wt>(((Tr<T>::load(e[k]) - hi[k]) - lo[k]) * sc[k] + sf[k], act, sl));
            *reinterpret_cast<uint4 *>(yn + base) = res;
        } else {
            yn[base] = Tr<T>::store(activate<Wt>(((Tr<T>::load(xn[base]) - hi[0]) - lo[0]) * sc[0] + sf[0], act, sl));
        }
    }
}
