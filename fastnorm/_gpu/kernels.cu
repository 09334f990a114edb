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

#ifndef FN_CHUNK       // the backend passes both (from _names.py)
#define FN_CHUNK 16384 // elements per statistics chunk (channels first)
#endif
#ifndef FN_CL_ROWS
#define FN_CL_ROWS 256 // rows per statistics chunk (channels last)
#endif

template <typename T>
struct Tr;
template <>
struct Tr<float> {
    typedef double Acc;
    typedef float W;
    static __device__ __forceinline__ W load(float v) { return v; }
    static __device__ __forceinline__ float store(W v) { return v; }
};
template <>
struct Tr<double> {
    typedef double Acc;
    typedef double W;
    static __device__ __forceinline__ W load(double v) { return v; }
    static __device__ __forceinline__ double store(W v) { return v; }
};
template <>
struct Tr<__half> {
    typedef float Acc;
    typedef float W;
    static __device__ __forceinline__ W load(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half store(W v) { return __float2half_rn(v); }
};
template <>
struct Tr<__nv_bfloat16> {
    typedef float Acc;
    typedef float W;
    static __device__ __forceinline__ W load(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 store(W v) { return __float2bfloat16_rn(v); }
};

struct Triple { double n, mean, m2; };

__device__ __forceinline__ void merge(Triple &a, const Triple &b)
{
    if (b.n == 0.0) return;
    if (a.n == 0.0) {
        a = b;
        return;
    }
    double n = a.n + b.n, d = b.mean - a.mean, fb = b.n / n;
    a.mean += d * fb;
    a.m2 += b.m2 + d * d * (a.n * fb);
    a.n = n;
}

__device__ __forceinline__ Triple finish(double cnt, double shift, double s1, double s2)
{
    Triple t;
    t.n = cnt;
    if (cnt == 0.0) {
        t.mean = 0.0;
        t.m2 = 0.0;
        return t;
    }
    double q = s1 / cnt, m2 = s2 - s1 * q;
    t.mean = shift + q;
    t.m2 = m2 < 0.0 ? 0.0 : m2;
    return t;
}

__device__ __forceinline__ float fn_exp(float v) { return expf(v); }
__device__ __forceinline__ double fn_exp(double v) { return exp(v); }

template <typename W>
__device__ __forceinline__ W activate(W v, int act, W slope)
{
    if (act == 1) return v < W(0) ? W(0) : v;       // relu (NaN stays NaN)
    if (act == 2) return v >= W(0) ? v : v * slope; // leaky_relu
    if (act == 3) return v / (W(1) + fn_exp(-v));   // silu
    return v;
}

template <typename W>
__device__ __forceinline__ void split_mean(double mean, W &hi, W &lo)
{
    hi = (W)mean;
    lo = (W)(mean - (double)hi);
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); result in every thread.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A *smem)
{
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

// ---------------------------------------------------------------- fused CF
// One plane held in registers, read once and written once.  WARP=true: one
// warp per plane (blockDim.x = 32 * planes_per_block); else one block per
// plane.  A plane is (n, g): Cg channels of S elements, Cg * S = L <= 8192,
// so element and channel indices fit an int.  The channel of element i is
// tracked incrementally (no division per element): with Cg == 1 it never
// changes and the coefficients are computed once per plane.  The block path
// computes the plane's Cg coefficients once into shared memory (csc, csf:
// Cg <= FN_FUSED_CG, checked by the host); the warp path reloads them where
// a lane's channel changes.
#ifndef FN_FUSED_CG
#define FN_FUSED_CG 512
#endif

template <typename T, int K, bool WARP>
__device__
__forceinline__ void fused_plane(const T *__restrict__ x, T *__restrict__ y, long long p, int L, long long G,
                                 int Cg, int S, const double *__restrict__ w, const double *__restrict__ b,
                                 double eps, int act, double slope, int tid, int nthr,
                                 typename Tr<T>::Acc *smem, typename Tr<T>::W *csc, typename Tr<T>::W *csf)
{
    typedef typename Tr<T>::Acc A;
    typedef typename Tr<T>::W Wt;
    const T *xp = x + p * L;
    T *yp = y + p * L;
    Wt v[K];
    A sh = (A)Tr<T>::load(xp[0]);
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int i = k * nthr + tid;
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
    const long long c0 = (p % G) * Cg; // the plane's first channel
    if (!WARP) {
        for (int c = tid; c < Cg; c += nthr) {
            csc[c] = (Wt)(w ? rstd * w[c0 + c] : rstd);
            csf[c] = (Wt)(b ? b[c0 + c] : 0.0);
        }
        __syncthreads();
    }
    // (q, r): channel within the plane and offset within it of element i
    int q = tid / S, r = tid - q * S;
    const int dq = nthr / S, dr = nthr - dq * S;
    int qc = -1;
    Wt sc = Wt(0), sf = Wt(0);
#pragma unroll
    for (int k = 0; k < K; k++) {
        int i = k * nthr + tid;
        if (i < L) {
            if (WARP) {
                if (q != qc) {
                    qc = q;
                    sc = (Wt)(w ? rstd * w[c0 + q] : rstd);
                    sf = (Wt)(b ? b[c0 + q] : 0.0);
                }
            } else {
                sc = csc[q];
                sf = csf[q];
            }
            Wt z = ((v[k] - hi) - lo) * sc + sf;
            yp[i] = Tr<T>::store(activate<Wt>(z, act, (Wt)slope));
        }
        q += dq;
        r += dr;
        if (r >= S) {
            r -= S;
            q++;
        }
    }
}

// planes p0 + blockIdx.x * (blockDim.x / 32) + warp, below P
template <typename T, int K>
__global__ void __launch_bounds__(256, 1)
cf_fused_warp(const T *__restrict__ x, T *__restrict__ y, long long P, long long p0, long long L, long long G,
              long long Cg, long long S, const double *__restrict__ w, const double *__restrict__ b,
              double eps, int act, double slope)
{
    long long p = p0 + (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (p >= P) return;
    fused_plane<T, K, true>(x, y, p, (int)L, G, (int)Cg, (int)S, w, b, eps, act, slope, threadIdx.x & 31, 32,
                            nullptr, nullptr, nullptr);
}

// plane p0 + blockIdx.x
template <typename T, int K>
__global__ void __launch_bounds__(512, 1)
cf_fused_block(const T *__restrict__ x, T *__restrict__ y, long long P, long long p0, long long L,
               long long G, long long Cg, long long S, const double *__restrict__ w,
               const double *__restrict__ b, double eps, int act, double slope)
{
    __shared__ typename Tr<T>::Acc smem[32];
    __shared__ typename Tr<T>::W csc[FN_FUSED_CG];
    __shared__ typename Tr<T>::W csf[FN_FUSED_CG];
    fused_plane<T, K, false>(x, y, p0 + (long long)blockIdx.x, (int)L, G, (int)Cg, (int)S, w, b, eps, act,
                             slope, threadIdx.x, blockDim.x, smem, csc, csf);
}

// ------------------------------------------------------------ split planes
// grid (nchunks, planes), offset by (k0, p0): Welford triple of chunk k of plane p.
template <typename T>
__global__ void __launch_bounds__(256, 1) cf_partial(const T *__restrict__ x, long long L, long long nchunks,
                                                     long long p0, long long k0, Triple *__restrict__ part)
{
    typedef typename Tr<T>::Acc A;
    __shared__ A smem[32];
    long long p = p0 + blockIdx.y, k = k0 + blockIdx.x;
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
    if (threadIdx.x == 0)
        part[p * nchunks + k] = finish((double)(s1e - s0), (double)sh, (double)a, (double)q);
}

// The three small kernels below loop over their items (grid-stride), so the
// host may launch any grid up to the device limit.

// out[o * inner + i] = chunks k = 0..nchunks-1 of part[(o * nchunks + k) * inner + i], merged in order.
__global__ void merge_chunks(const Triple *__restrict__ part, long long outer, long long inner,
                             long long nchunks, Triple *__restrict__ out)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < outer * inner;
         j += (long long)gridDim.x * blockDim.x) {
        long long o = j / inner, i = j - o * inner;
        Triple t = {0.0, 0.0, 0.0};
        for (long long k = 0; k < nchunks; k++) merge(t, part[(o * nchunks + k) * inner + i]);
        out[j] = t;
    }
}

// Channel triples (N, C) -> group triples (N, G): Cg consecutive channels merged in order.
__global__ void merge_groups(const Triple *__restrict__ tri, long long NG, long long Cg,
                             Triple *__restrict__ out)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < NG;
         j += (long long)gridDim.x * blockDim.x) {
        Triple t = {0.0, 0.0, 0.0};
        for (long long k = 0; k < Cg; k++) merge(t, tri[j * Cg + k]);
        out[j] = t;
    }
}

// Per-(n, c) coefficients from per-(n, g) triples: mean, scale, shift (double).
__global__ void coefs_from_triples(const Triple *__restrict__ tri, long long N, long long C, long long Cg,
                                   const double *__restrict__ w, const double *__restrict__ b, double eps,
                                   double *__restrict__ mean, double *__restrict__ scale,
                                   double *__restrict__ shift)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < N * C;
         j += (long long)gridDim.x * blockDim.x) {
        long long n = j / C, c = j - n * C;
        Triple t = tri[n * (C / Cg) + c / Cg];
        double rstd = 1.0 / sqrt(t.m2 / t.n + eps);
        mean[j] = t.mean;
        scale[j] = w ? rstd * w[c] : rstd;
        shift[j] = b ? b[c] : 0.0;
    }
}

template <typename T>
__device__ __forceinline__ T apply1(T v, typename Tr<T>::W hi, typename Tr<T>::W lo, typename Tr<T>::W sc,
                                    typename Tr<T>::W sf, int act, typename Tr<T>::W sl)
{
    return Tr<T>::store(activate<typename Tr<T>::W>(((Tr<T>::load(v) - hi) - lo) * sc + sf, act, sl));
}

// Vectorized apply over R rows of S elements (channels first); per-row
// coefficients.  grid.x = rows * segs, each block a segment of one row.  VEC
// elements per 16-byte access where the row is 16-byte aligned.
template <typename T>
__global__ void __launch_bounds__(256, 1)
cf_apply(const T *__restrict__ x, T *__restrict__ y, long long S, long long segs, long long r0,
         const double *__restrict__ mean, const double *__restrict__ scale, const double *__restrict__ shift,
         int act, double slope)
{
    typedef typename Tr<T>::W Wt;
    const int VEC = 16 / sizeof(T);
    long long rl = blockIdx.x / segs, sg = blockIdx.x - rl * segs, r = r0 + rl;
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
            for (int k = 0; k < VEC; k++) o[k] = apply1<T>(e[k], hi, lo, sc, sf, act, sl);
            *reinterpret_cast<uint4 *>(yp + base) = res;
        }
        i = s0 + nv * VEC;
    }
    for (long long j = i + threadIdx.x; j < s1e; j += blockDim.x)
        yp[j] = apply1<T>(xp[j], hi, lo, sc, sf, act, sl);
}

// ---------------------------------------------------------- channels last
// x viewed as N slabs of S rows of C channels.  Threads of a block are spread
// over (row, channel) pairs, so small C keeps every lane busy.
//
// Statistics: grid (nchunks, ceil(C / 256), N), offset by (k0, c0, n0); block
// 256.  A block takes a chunk of `rows` rows and a tile of ct = min(256, C - cb)
// channels: thread t reads channel t % ct of rows t / ct, t / ct + rl, ...
// (rl = 256 / ct row lanes: consecutive threads read consecutive addresses);
// the row lanes' sums are added in a fixed tree.  Triples per (n, chunk, c).
template <typename T>
__global__ void __launch_bounds__(256, 1) cl_partial(const T *__restrict__ x, long long S, long long C,
                                                     long long rows, long long nchunks, long long k0,
                                                     long long c0, long long n0, Triple *__restrict__ part)
{
    typedef typename Tr<T>::Acc A;
    __shared__ A s1s[256];
    __shared__ A s2s[256];
    long long k = k0 + blockIdx.x, n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * 256;
    int ct = C - cb < 256 ? (int)(C - cb) : 256, rl = 256 / ct;
    int t = threadIdx.x, lane = t / ct;
    long long c = cb + (t - lane * ct);
    long long r0 = k * rows, r1 = r0 + rows < S ? r0 + rows : S;
    const T *xn = x + n * S * C;
    A sh = 0, a = 0, q = 0;
    if (lane < rl) {
        sh = (A)Tr<T>::load(xn[r0 * C + c]);
        for (long long r = r0 + lane; r < r1; r += rl) {
            A d = (A)Tr<T>::load(xn[r * C + c]) - sh;
            a += d;
            q += d * d;
        }
    }
    s1s[t] = a;
    s2s[t] = q;
    __syncthreads();
    for (int m = rl; m > 1;) { // lanes [h, m) added onto lanes [0, m - h)
        int h = (m + 1) >> 1;
        if (lane < m - h) {
            s1s[t] += s1s[t + h * ct];
            s2s[t] += s2s[t + h * ct];
        }
        __syncthreads();
        m = h;
    }
    if (t < ct)
        part[(n * nchunks + k) * C + c] =
            finish((double)(r1 - r0), (double)sh, (double)s1s[t], (double)s2s[t]);
}

// The coefficients of channels [cb, cb + cw) of slab n in shared memory.
template <typename W>
__device__ __forceinline__ void load_coefs(const double *__restrict__ mean, const double *__restrict__ scale,
                                           const double *__restrict__ shift, long long n, long long C,
                                           long long cb, int cw, W *chi, W *clo, W *csc, W *csf)
{
    for (int c = threadIdx.x; c < cw; c += blockDim.x) {
        long long j = n * C + cb + c;
        split_mean<W>(mean[j], chi[c], clo[c]);
        csc[c] = (W)scale[j];
        csf[c] = (W)shift[j];
    }
    __syncthreads();
}

#ifndef FN_CL_CT
#define FN_CL_CT 1024 // channels whose coefficients a channels-last apply block holds
#endif
static_assert(FN_CL_CT % 8 == 0, "channel tiles must keep 16-byte vectors whole");

// Apply, C <= FN_CL_CT: each slab is one flat range of S * C elements, cut in
// blocks of E; a thread takes VEC elements per 16-byte access (wherever the
// block's range is aligned, any C), its channel advanced without division.
// grid (blocks, 1, slabs), offset by (f0 elements, n0 slabs); block 256.
template <typename T>
__global__ void __launch_bounds__(256, 1)
cl_apply_flat(const T *__restrict__ x, T *__restrict__ y, long long S, long long C, long long E, long long f0,
              long long n0, const double *__restrict__ mean, const double *__restrict__ scale,
              const double *__restrict__ shift, int act, double slope)
{
    typedef typename Tr<T>::W Wt;
    const int VEC = 16 / sizeof(T);
    __shared__ Wt chi[FN_CL_CT], clo[FN_CL_CT], csc[FN_CL_CT], csf[FN_CL_CT];
    long long n = n0 + blockIdx.z, SC = S * C;
    load_coefs<Wt>(mean, scale, shift, n, C, 0, (int)C, chi, clo, csc, csf);
    Wt sl = (Wt)slope;
    long long s0 = f0 + (long long)blockIdx.x * E, s1 = s0 + E < SC ? s0 + E : SC;
    const T *xn = x + n * SC;
    T *yn = y + n * SC;
    long long a = s1, nv = 0; // vector body [a, a + nv * VEC)
    if (((((unsigned long long)xn) ^ ((unsigned long long)yn)) & 15ull) == 0) {
        a = s0 + (long long)(((16ull - (((unsigned long long)(xn + s0)) & 15ull)) & 15ull) / sizeof(T));
        if (a > s1) a = s1;
        nv = (s1 - a) / VEC;
    }
    long long v = threadIdx.x;
    if (v < nv) {
        int c = (int)((a + v * VEC) % C);
        const int step = (int)(((long long)blockDim.x * VEC) % C);
        for (; v < nv; v += blockDim.x) {
            long long base = a + v * VEC;
            uint4 raw = *reinterpret_cast<const uint4 *>(xn + base);
            const T *e = reinterpret_cast<const T *>(&raw);
            uint4 res;
            T *o = reinterpret_cast<T *>(&res);
            int cc = c;
#pragma unroll
            for (int k = 0; k < VEC; k++) {
                o[k] = apply1<T>(e[k], chi[cc], clo[cc], csc[cc], csf[cc], act, sl);
                if (++cc == C) cc = 0;
            }
            *reinterpret_cast<uint4 *>(yn + base) = res;
            c += step;
            if (c >= C) c -= (int)C;
        }
    }
    // the unaligned head [s0, a) and the tail after the vectors
    long long head = a - s0, tail0 = a + nv * VEC, nscal = head + (s1 - tail0);
    for (long long u = threadIdx.x; u < nscal; u += blockDim.x) {
        long long j = u < head ? s0 + u : tail0 + (u - head);
        int c = (int)(j % C);
        yn[j] = apply1<T>(xn[j], chi[c], clo[c], csc[c], csf[c], act, sl);
    }
}

// Apply, C > FN_CL_CT: grid (row blocks, channel tiles of FN_CL_CT, slabs),
// offset by (r0 rows, c0 channels, n0 slabs); block 256 over (row, channel
// vector) pairs of the block's rows_per_block rows and its channel tile;
// VEC-wide where C % VEC == 0 and both arrays are 16-byte aligned.
template <typename T>
__global__ void __launch_bounds__(256, 1)
cl_apply_tile(const T *__restrict__ x, T *__restrict__ y, long long S, long long C, long long rows_per_block,
              long long r0, long long c0, long long n0, const double *__restrict__ mean,
              const double *__restrict__ scale, const double *__restrict__ shift, int act, double slope)
{
    typedef typename Tr<T>::W Wt;
    const int VEC = 16 / sizeof(T);
    __shared__ Wt chi[FN_CL_CT], clo[FN_CL_CT], csc[FN_CL_CT], csf[FN_CL_CT];
    long long n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * FN_CL_CT;
    int cw = C - cb < FN_CL_CT ? (int)(C - cb) : FN_CL_CT;
    load_coefs<Wt>(mean, scale, shift, n, C, cb, cw, chi, clo, csc, csf);
    Wt sl = (Wt)slope;
    long long rb = r0 + (long long)blockIdx.x * rows_per_block;
    long long re = rb + rows_per_block < S ? rb + rows_per_block : S;
    if (rb >= re) return;
    const T *xn = x + n * S * C + cb;
    T *yn = y + n * S * C + cb;
    int nr = (int)(re - rb);
    if (C % VEC == 0 && ((((unsigned long long)xn) | ((unsigned long long)yn)) & 15ull) == 0) {
        int nvt = cw / VEC;
        for (int u = threadIdx.x; u < nr * nvt; u += blockDim.x) {
            int rr = u / nvt, c = (u - rr * nvt) * VEC;
            long long base = (rb + rr) * C + c;
            uint4 raw = *reinterpret_cast<const uint4 *>(xn + base);
            const T *e = reinterpret_cast<const T *>(&raw);
            uint4 res;
            T *o = reinterpret_cast<T *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++)
                o[k] = apply1<T>(e[k], chi[c + k], clo[c + k], csc[c + k], csf[c + k], act, sl);
            *reinterpret_cast<uint4 *>(yn + base) = res;
        }
    } else {
        for (int u = threadIdx.x; u < nr * cw; u += blockDim.x) {
            int rr = u / cw, c = u - rr * cw;
            long long j = (rb + rr) * C + c;
            yn[j] = apply1<T>(xn[j], chi[c], clo[c], csc[c], csf[c], act, sl);
        }
    }
}
