// fastnorm CUDA kernels, compiled at run time by cupy.RawModule (NVRTC) and
// checked offline with nvcc (tests/test_gpu_compile.py).
//
// Forward kernels are templated on the input type I (a floating type or an
// integer type) and the output type O (float, double, __half,
// __nv_bfloat16): the kernel that runs is O's (its working type, its
// accumulators), and each input element is converted on load to O's working
// type (Ld), so an integer or float16 input gives exactly the bits of the
// same values converted to that working type first.  Backward kernels are
// templated on one floating type T.
// Statistics: shifted sums per chunk (shift = the chunk's first element, so
// |mean - shift|^2 <= count * var and the shifted second moment cannot cancel
// badly), accumulated in double for every output type (in float, the
// squares of a float32, integer or bfloat16 input above 1.8e19 would overflow
// a 16-bit output's statistics to inf), turned into Welford triples (count, mean, M2) and merged with Chan's
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

// The kernel of output type O: working type W, statistics accumulator Acc, store.
template <typename O>
struct Tr;
template <>
struct Tr<float> {
    typedef double Acc;
    typedef float W;
    static __device__ __forceinline__ float store(W v) { return v; }
};
template <>
struct Tr<double> {
    typedef double Acc;
    typedef double W;
    static __device__ __forceinline__ double store(W v) { return v; }
};
template <>
struct Tr<__half> {
    typedef double Acc;
    typedef float W;
    static __device__ __forceinline__ __half store(W v) { return __float2half_rn(v); }
};
template <>
struct Tr<__nv_bfloat16> {
    typedef double Acc;
    typedef float W;
    static __device__ __forceinline__ __nv_bfloat16 store(W v) { return __float2bfloat16_rn(v); }
};

// An input element of type I as working type W (float or double): a C
// conversion, round to nearest even (integers, double to float), exact for
// the 16-bit floats.
template <typename W, typename I>
struct Ld {
    static __device__ __forceinline__ W load(I v) { return (W)v; }
};
template <typename W>
struct Ld<W, __half> {
    static __device__ __forceinline__ W load(__half v) { return (W)__half2float(v); }
};
template <typename W>
struct Ld<W, __nv_bfloat16> {
    static __device__ __forceinline__ W load(__nv_bfloat16 v) { return (W)__bfloat162float(v); }
};

// The unsigned type of B bytes (a vector of 16 / 8 bytes): whole-vector
// loads and stores of VEC elements of either type.
template <int B>
struct Raw;
template <>
struct Raw<16> {
    typedef uint4 T;
};
template <>
struct Raw<8> {
    typedef uint2 T;
};
template <>
struct Raw<4> {
    typedef unsigned int T;
};
template <>
struct Raw<2> {
    typedef unsigned short T;
};

// Elements per vector access of a kernel reading I and writing O: 16 bytes of the wider type.
template <typename I, typename O>
struct Vec {
    static const int N = 16 / (sizeof(I) > sizeof(O) ? sizeof(I) : sizeof(O));
    typedef typename Raw<N * sizeof(I)>::T In;
    typedef typename Raw<N * sizeof(O)>::T Out;
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

template <typename I, typename O, int K, bool WARP>
__device__
__forceinline__ void fused_plane(const I *__restrict__ x, O *__restrict__ y, long long p, int L, long long G,
                                 int Cg, int S, const double *__restrict__ w, const double *__restrict__ b,
                                 double eps, int act, double slope, int tid, int nthr,
                                 typename Tr<O>::Acc *smem, typename Tr<O>::W *csc, typename Tr<O>::W *csf)
{
    typedef typename Tr<O>::Acc A;
    typedef typename Tr<O>::W Wt;
    typedef Ld<Wt, I> LD;
    const I *xp = x + p * L;
    O *yp = y + p * L;
    Wt v[K];
    A sh = (A)LD::load(xp[0]);
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int i = k * nthr + tid;
        v[k] = i < L ? LD::load(xp[i]) : Wt(0);
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
            yp[i] = Tr<O>::store(activate<Wt>(z, act, (Wt)slope));
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
template <typename I, typename O, int K>
__global__ void __launch_bounds__(256, 1)
cf_fused_warp(const I *__restrict__ x, O *__restrict__ y, long long P, long long p0, long long L, long long G,
              long long Cg, long long S, const double *__restrict__ w, const double *__restrict__ b,
              double eps, int act, double slope)
{
    long long p = p0 + (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (p >= P) return;
    fused_plane<I, O, K, true>(x, y, p, (int)L, G, (int)Cg, (int)S, w, b, eps, act, slope, threadIdx.x & 31,
                               32, nullptr, nullptr, nullptr);
}

// plane p0 + blockIdx.x
template <typename I, typename O, int K>
__global__ void __launch_bounds__(512, 1)
cf_fused_block(const I *__restrict__ x, O *__restrict__ y, long long P, long long p0, long long L,
               long long G, long long Cg, long long S, const double *__restrict__ w,
               const double *__restrict__ b, double eps, int act, double slope)
{
    __shared__ typename Tr<O>::Acc smem[32];
    __shared__ typename Tr<O>::W csc[FN_FUSED_CG];
    __shared__ typename Tr<O>::W csf[FN_FUSED_CG];
    fused_plane<I, O, K, false>(x, y, p0 + (long long)blockIdx.x, (int)L, G, (int)Cg, (int)S, w, b, eps, act,
                                slope, threadIdx.x, blockDim.x, smem, csc, csf);
}

// ------------------------------------------------------------ split planes
// grid (nchunks, planes), offset by (k0, p0): Welford triple of chunk k of plane p.
// Statistics as output type O's kernel computes them (its loads, its accumulators).
template <typename I, typename O>
__global__ void __launch_bounds__(256, 1) cf_partial(const I *__restrict__ x, long long L, long long nchunks,
                                                     long long p0, long long k0, Triple *__restrict__ part)
{
    typedef typename Tr<O>::Acc A;
    typedef Ld<typename Tr<O>::W, I> LD;
    __shared__ A smem[32];
    long long p = p0 + blockIdx.y, k = k0 + blockIdx.x;
    long long s0 = k * FN_CHUNK, s1e = s0 + FN_CHUNK < L ? s0 + FN_CHUNK : L;
    const I *xp = x + p * L;
    A sh = (A)LD::load(xp[s0]);
    A a = 0, q = 0;
    for (long long i = s0 + threadIdx.x; i < s1e; i += blockDim.x) {
        A d = (A)LD::load(xp[i]) - sh;
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

template <typename I, typename O>
__device__ __forceinline__ O apply1(I v, typename Tr<O>::W hi, typename Tr<O>::W lo, typename Tr<O>::W sc,
                                    typename Tr<O>::W sf, int act, typename Tr<O>::W sl)
{
    typedef typename Tr<O>::W Wt;
    return Tr<O>::store(activate<Wt>(((Ld<Wt, I>::load(v) - hi) - lo) * sc + sf, act, sl));
}

// Vectorized apply over R rows of S elements (channels first); per-row
// coefficients.  grid.x = rows * segs, each block a segment of one row.  VEC
// elements per access (16 bytes of the wider of I and O) where the segment
// is aligned to the vectors of both.
template <typename I, typename O>
__global__ void __launch_bounds__(256, 1)
cf_apply(const I *__restrict__ x, O *__restrict__ y, long long S, long long segs, long long r0,
         const double *__restrict__ mean, const double *__restrict__ scale, const double *__restrict__ shift,
         int act, double slope)
{
    typedef typename Tr<O>::W Wt;
    typedef Vec<I, O> V;
    const int VEC = V::N;
    long long rl = blockIdx.x / segs, sg = blockIdx.x - rl * segs, r = r0 + rl;
    long long seg = (S + segs - 1) / segs;
    seg = (seg + VEC - 1) / VEC * VEC;
    long long s0 = sg * seg, s1e = s0 + seg < S ? s0 + seg : S;
    if (s0 >= s1e) return;
    Wt hi, lo;
    split_mean<Wt>(mean[r], hi, lo);
    Wt sc = (Wt)scale[r], sf = (Wt)shift[r], sl = (Wt)slope;
    const I *xp = x + r * S;
    O *yp = y + r * S;
    bool aligned = ((((unsigned long long)(xp + s0)) & (sizeof(typename V::In) - 1)) |
                    (((unsigned long long)(yp + s0)) & (sizeof(typename V::Out) - 1))) == 0;
    long long i = s0;
    if (aligned) {
        long long nv = (s1e - s0) / VEC;
        for (long long v = threadIdx.x; v < nv; v += blockDim.x) {
            long long base = s0 + v * VEC;
            typename V::In raw = *reinterpret_cast<const typename V::In *>(xp + base);
            const I *e = reinterpret_cast<const I *>(&raw);
            typename V::Out res;
            O *o = reinterpret_cast<O *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++) o[k] = apply1<I, O>(e[k], hi, lo, sc, sf, act, sl);
            *reinterpret_cast<typename V::Out *>(yp + base) = res;
        }
        i = s0 + nv * VEC;
    }
    for (long long j = i + threadIdx.x; j < s1e; j += blockDim.x)
        yp[j] = apply1<I, O>(xp[j], hi, lo, sc, sf, act, sl);
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
template <typename I, typename O>
__global__ void __launch_bounds__(256, 1) cl_partial(const I *__restrict__ x, long long S, long long C,
                                                     long long rows, long long nchunks, long long k0,
                                                     long long c0, long long n0, Triple *__restrict__ part)
{
    typedef typename Tr<O>::Acc A;
    typedef Ld<typename Tr<O>::W, I> LD;
    __shared__ A s1s[256];
    __shared__ A s2s[256];
    long long k = k0 + blockIdx.x, n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * 256;
    int ct = C - cb < 256 ? (int)(C - cb) : 256, rl = 256 / ct;
    int t = threadIdx.x, lane = t / ct;
    long long c = cb + (t - lane * ct);
    long long r0 = k * rows, r1 = r0 + rows < S ? r0 + rows : S;
    const I *xn = x + n * S * C;
    A sh = 0, a = 0, q = 0;
    if (lane < rl) {
        sh = (A)LD::load(xn[r0 * C + c]);
        for (long long r = r0 + lane; r < r1; r += rl) {
            A d = (A)LD::load(xn[r * C + c]) - sh;
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
// blocks of E; a thread takes VEC elements per vector access (wherever the
// block's range is aligned for both arrays, any C), its channel advanced
// without division.  grid (blocks, 1, slabs), offset by (f0 elements, n0
// slabs); block 256.
template <typename I, typename O>
__global__ void __launch_bounds__(256, 1)
cl_apply_flat(const I *__restrict__ x, O *__restrict__ y, long long S, long long C, long long E, long long f0,
              long long n0, const double *__restrict__ mean, const double *__restrict__ scale,
              const double *__restrict__ shift, int act, double slope)
{
    typedef typename Tr<O>::W Wt;
    typedef Vec<I, O> V;
    const int VEC = V::N;
    __shared__ Wt chi[FN_CL_CT], clo[FN_CL_CT], csc[FN_CL_CT], csf[FN_CL_CT];
    long long n = n0 + blockIdx.z, SC = S * C;
    load_coefs<Wt>(mean, scale, shift, n, C, 0, (int)C, chi, clo, csc, csf);
    Wt sl = (Wt)slope;
    long long s0 = f0 + (long long)blockIdx.x * E, s1 = s0 + E < SC ? s0 + E : SC;
    const I *xn = x + n * SC;
    O *yn = y + n * SC;
    long long a = s1, nv = 0; // vector body [a, a + nv * VEC)
    // in element units, element j starts a vector of both arrays where (xe + j) % VEC == 0 == (ye + j) % VEC
    const unsigned long long xe = (unsigned long long)xn / sizeof(I), ye = (unsigned long long)yn / sizeof(O);
    if (((xe - ye) & (VEC - 1)) == 0) {
        a = s0 + (long long)((VEC - ((xe + s0) & (VEC - 1))) & (VEC - 1));
        if (a > s1) a = s1;
        nv = (s1 - a) / VEC;
    }
    long long v = threadIdx.x;
    if (v < nv) {
        int c = (int)((a + v * VEC) % C);
        const int step = (int)(((long long)blockDim.x * VEC) % C);
        for (; v < nv; v += blockDim.x) {
            long long base = a + v * VEC;
            typename V::In raw = *reinterpret_cast<const typename V::In *>(xn + base);
            const I *e = reinterpret_cast<const I *>(&raw);
            typename V::Out res;
            O *o = reinterpret_cast<O *>(&res);
            int cc = c;
#pragma unroll
            for (int k = 0; k < VEC; k++) {
                o[k] = apply1<I, O>(e[k], chi[cc], clo[cc], csc[cc], csf[cc], act, sl);
                if (++cc == C) cc = 0;
            }
            *reinterpret_cast<typename V::Out *>(yn + base) = res;
            c += step;
            if (c >= C) c -= (int)C;
        }
    }
    // the unaligned head [s0, a) and the tail after the vectors
    long long head = a - s0, tail0 = a + nv * VEC, nscal = head + (s1 - tail0);
    for (long long u = threadIdx.x; u < nscal; u += blockDim.x) {
        long long j = u < head ? s0 + u : tail0 + (u - head);
        int c = (int)(j % C);
        yn[j] = apply1<I, O>(xn[j], chi[c], clo[c], csc[c], csf[c], act, sl);
    }
}

// Apply, C > FN_CL_CT: grid (row blocks, channel tiles of FN_CL_CT, slabs),
// offset by (r0 rows, c0 channels, n0 slabs); block 256 over (row, channel
// vector) pairs of the block's rows_per_block rows and its channel tile;
// VEC-wide where C % VEC == 0 and both arrays are aligned to their vectors.
template <typename I, typename O>
__global__ void __launch_bounds__(256, 1)
cl_apply_tile(const I *__restrict__ x, O *__restrict__ y, long long S, long long C, long long rows_per_block,
              long long r0, long long c0, long long n0, const double *__restrict__ mean,
              const double *__restrict__ scale, const double *__restrict__ shift, int act, double slope)
{
    typedef typename Tr<O>::W Wt;
    typedef Vec<I, O> V;
    const int VEC = V::N;
    __shared__ Wt chi[FN_CL_CT], clo[FN_CL_CT], csc[FN_CL_CT], csf[FN_CL_CT];
    long long n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * FN_CL_CT;
    int cw = C - cb < FN_CL_CT ? (int)(C - cb) : FN_CL_CT;
    load_coefs<Wt>(mean, scale, shift, n, C, cb, cw, chi, clo, csc, csf);
    Wt sl = (Wt)slope;
    long long rb = r0 + (long long)blockIdx.x * rows_per_block;
    long long re = rb + rows_per_block < S ? rb + rows_per_block : S;
    if (rb >= re) return;
    const I *xn = x + n * S * C + cb;
    O *yn = y + n * S * C + cb;
    int nr = (int)(re - rb);
    if (C % VEC == 0 && ((((unsigned long long)xn) & (sizeof(typename V::In) - 1)) |
                         (((unsigned long long)yn) & (sizeof(typename V::Out) - 1))) == 0) {
        int nvt = cw / VEC;
        for (int u = threadIdx.x; u < nr * nvt; u += blockDim.x) {
            int rr = u / nvt, c = (u - rr * nvt) * VEC;
            long long base = (rb + rr) * C + c;
            typename V::In raw = *reinterpret_cast<const typename V::In *>(xn + base);
            const I *e = reinterpret_cast<const I *>(&raw);
            typename V::Out res;
            O *o = reinterpret_cast<O *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++)
                o[k] = apply1<I, O>(e[k], chi[c + k], clo[c + k], csc[c + k], csf[c + k], act, sl);
            *reinterpret_cast<typename V::Out *>(yn + base) = res;
        }
    } else {
        for (int u = threadIdx.x; u < nr * cw; u += blockDim.x) {
            int rr = u / cw, c = u - rr * cw;
            long long j = (rb + rr) * C + c;
            yn[j] = apply1<I, O>(xn[j], chi[c], clo[c], csc[c], csf[c], act, sl);
        }
    }
}

// ---------------------------------------------------------------- backward
// Instance / group norm backward for one floating type T (x, dy, grad_x).
// Per (n, g) unit with mean mu and rstd r (the statistics kernels above):
// sums[2 * (n * C + c) + {0, 1}] = sum(dy), sum(dy * (x - mu)) of channel c,
// in double, in a fixed order (block trees, chunks merged in order); then
// per (n, c) coefficients (bw_coefs), the affine gradients (bw_affine) and
// grad_x = cdy * dy - cx * (x - mu) - c0 in Bw's working type (double for
// float and double, float for the 16-bit types), rounded once.

// rows of S elements (channels first; row = n * C + c): grid (chunks, rows)
// offset by (k0, r0); mean per row.  part[2 * (row * nchunks + k) + {0, 1}].
template <typename T>
__global__ void __launch_bounds__(256, 1)
bw_cf_partial(const T *__restrict__ x, const T *__restrict__ dy, long long S, long long nchunks, long long r0,
              long long k0, const double *__restrict__ mean, double *__restrict__ part)
{
    typedef typename Tr<T>::W Wt;
    typedef Ld<Wt, T> LD;
    __shared__ double smem[32];
    long long r = r0 + blockIdx.y, k = k0 + blockIdx.x;
    long long s0 = k * FN_CHUNK, s1e = s0 + FN_CHUNK < S ? s0 + FN_CHUNK : S;
    Wt hi, lo;
    split_mean<Wt>(mean[r], hi, lo);
    const T *xp = x + r * S, *gp = dy + r * S;
    double a = 0, q = 0;
    for (long long i = s0 + threadIdx.x; i < s1e; i += blockDim.x) {
        Wt g = LD::load(gp[i]);
        a += (double)g;
        q += (double)(g * ((LD::load(xp[i]) - hi) - lo));
    }
    a = block_sum(a, smem);
    q = block_sum(q, smem);
    if (threadIdx.x == 0) {
        part[2 * (r * nchunks + k)] = a;
        part[2 * (r * nchunks + k) + 1] = q;
    }
}

// channels last, x and dy viewed as (N, S, C): the blocks of cl_partial
// (grid (chunks, tiles of 256 channels, N) offset by (k0, c0, n0), row lanes
// added in a fixed tree); mean per (n, c).  part[2 * ((n * nchunks + k) * C + c) + {0, 1}].
template <typename T>
__global__ void __launch_bounds__(256, 1)
bw_cl_partial(const T *__restrict__ x, const T *__restrict__ dy, long long S, long long C, long long rows,
              long long nchunks, long long k0, long long c0, long long n0, const double *__restrict__ mean,
              double *__restrict__ part)
{
    typedef typename Tr<T>::W Wt;
    typedef Ld<Wt, T> LD;
    __shared__ double s1s[256];
    __shared__ double s2s[256];
    long long k = k0 + blockIdx.x, n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * 256;
    int ct = C - cb < 256 ? (int)(C - cb) : 256, rl = 256 / ct;
    int t = threadIdx.x, lane = t / ct;
    long long c = cb + (t - lane * ct);
    long long r0 = k * rows, r1 = r0 + rows < S ? r0 + rows : S;
    const T *xn = x + n * S * C, *gn = dy + n * S * C;
    double a = 0, q = 0;
    if (lane < rl) {
        Wt hi, lo;
        split_mean<Wt>(mean[n * C + c], hi, lo);
        for (long long r = r0 + lane; r < r1; r += rl) {
            Wt g = LD::load(gn[r * C + c]);
            a += (double)g;
            q += (double)(g * ((LD::load(xn[r * C + c]) - hi) - lo));
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
    if (t < ct) {
        long long j = (n * nchunks + k) * C + c;
        part[2 * j] = s1s[t];
        part[2 * j + 1] = s2s[t];
    }
}

// out[o * inner + i] = the sum over k = 0..nchunks-1, in order, of the pairs
// part[(o * nchunks + k) * inner + i] (two doubles each).
__global__ void sum_chunks(const double *__restrict__ part, long long outer, long long inner,
                           long long nchunks, double *__restrict__ out)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < outer * inner;
         j += (long long)gridDim.x * blockDim.x) {
        long long o = j / inner, i = j - o * inner;
        double a = 0.0, b = 0.0;
        for (long long k = 0; k < nchunks; k++) {
            long long e = (o * nchunks + k) * inner + i;
            a += part[2 * e];
            b += part[2 * e + 1];
        }
        out[2 * j] = a;
        out[2 * j + 1] = b;
    }
}

// Per (n, g) unit of Cg channels and M = Cg * S elements: with gy = dy * w,
// ma = mean(gy), mb = mean(gy * xhat), grad_x = r * (gy - ma - xhat * mb),
// so per channel cdy = r * w[c], cx = r * r * mb, c0 = r * ma.
__global__ void bw_coefs(const double *__restrict__ sums, const double *__restrict__ rstd,
                         const double *__restrict__ w, long long N, long long C, long long Cg, double M,
                         double *__restrict__ cdy, double *__restrict__ cx, double *__restrict__ c0)
{
    long long G = C / Cg;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < N * G;
         j += (long long)gridDim.x * blockDim.x) {
        long long n = j / G, g = j - n * G, u = n * C + g * Cg;
        double r = rstd[u], sa = 0.0, sb = 0.0;
        for (long long k = 0; k < Cg; k++) {
            double wc = w ? w[g * Cg + k] : 1.0;
            sa += wc * sums[2 * (u + k)];
            sb += wc * sums[2 * (u + k) + 1];
        }
        double ma = sa / M, mb = sb * r / M;
        for (long long k = 0; k < Cg; k++) {
            cdy[u + k] = r * (w ? w[g * Cg + k] : 1.0);
            cx[u + k] = r * r * mb;
            c0[u + k] = r * ma;
        }
    }
}

// grad_bias[c] = sum over n of sum(dy); grad_weight[c] = sum over n of r * sum(dy * (x - mu)); n in order.
__global__ void bw_affine(const double *__restrict__ sums, const double *__restrict__ rstd, long long N,
                          long long C, double *__restrict__ gw, double *__restrict__ gb)
{
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < C;
         c += (long long)gridDim.x * blockDim.x) {
        double a = 0.0, b = 0.0;
        for (long long n = 0; n < N; n++) {
            a += sums[2 * (n * C + c)];
            b += sums[2 * (n * C + c) + 1] * rstd[n * C + c];
        }
        gb[c] = a;
        gw[c] = b;
    }
}

// grad_x's working type: double for float (computed in double and rounded
// once, as the CPU engine does: a 1-element plane gives exactly 0), the
// forward's working type otherwise.
template <typename T>
struct Bw {
    typedef typename Tr<T>::W W;
    static __device__ __forceinline__ T store(W v) { return Tr<T>::store(v); }
};
template <>
struct Bw<float> {
    typedef double W;
    static __device__ __forceinline__ float store(double v) { return (float)v; }
};

template <typename T>
__device__ __forceinline__ T dx1(T v, T g, typename Bw<T>::W hi, typename Bw<T>::W lo, typename Bw<T>::W a,
                                 typename Bw<T>::W b, typename Bw<T>::W c)
{
    typedef Ld<typename Bw<T>::W, T> LD;
    return Bw<T>::store(a * LD::load(g) - b * ((LD::load(v) - hi) - lo) - c);
}

// grad_x, channels first: rows of S elements with per-row coefficients, as
// cf_apply (grid.x = rows * segs from row r0; 16-byte vectors where the
// three rows' segments are aligned).
template <typename T>
__global__ void __launch_bounds__(256, 1)
bw_cf_dx(const T *__restrict__ x, const T *__restrict__ dy, T *__restrict__ gx, long long S, long long segs,
         long long r0, const double *__restrict__ mean, const double *__restrict__ cdy,
         const double *__restrict__ cx, const double *__restrict__ c0)
{
    typedef typename Bw<T>::W Wt;
    const int VEC = 16 / sizeof(T);
    long long rl = blockIdx.x / segs, sg = blockIdx.x - rl * segs, r = r0 + rl;
    long long seg = (S + segs - 1) / segs;
    seg = (seg + VEC - 1) / VEC * VEC;
    long long s0 = sg * seg, s1e = s0 + seg < S ? s0 + seg : S;
    if (s0 >= s1e) return;
    Wt hi, lo;
    split_mean<Wt>(mean[r], hi, lo);
    Wt a = (Wt)cdy[r], b = (Wt)cx[r], c = (Wt)c0[r];
    const T *xp = x + r * S, *gp = dy + r * S;
    T *op = gx + r * S;
    bool aligned = ((((unsigned long long)(xp + s0)) | ((unsigned long long)(gp + s0)) |
                     ((unsigned long long)(op + s0))) &
                    15ull) == 0;
    long long i = s0;
    if (aligned) {
        long long nv = (s1e - s0) / VEC;
        for (long long v = threadIdx.x; v < nv; v += blockDim.x) {
            long long base = s0 + v * VEC;
            uint4 rx = *reinterpret_cast<const uint4 *>(xp + base);
            uint4 rg = *reinterpret_cast<const uint4 *>(gp + base);
            const T *ex = reinterpret_cast<const T *>(&rx), *eg = reinterpret_cast<const T *>(&rg);
            uint4 res;
            T *o = reinterpret_cast<T *>(&res);
#pragma unroll
            for (int k = 0; k < VEC; k++) o[k] = dx1<T>(ex[k], eg[k], hi, lo, a, b, c);
            *reinterpret_cast<uint4 *>(op + base) = res;
        }
        i = s0 + nv * VEC;
    }
    for (long long j = i + threadIdx.x; j < s1e; j += blockDim.x)
        op[j] = dx1<T>(xp[j], gp[j], hi, lo, a, b, c);
}

// grad_x, channels last: grid (row blocks, channel tiles of FN_CL_CT, slabs)
// offset by (r0 rows, c0 channels, n0 slabs); the tile's coefficients in
// shared memory; the block's rows_per_block rows by the tile's channels,
// consecutive threads on consecutive elements.
template <typename T>
__global__ void __launch_bounds__(256, 1)
bw_cl_dx(const T *__restrict__ x, const T *__restrict__ dy, T *__restrict__ gx, long long S, long long C,
         long long rows_per_block, long long r0, long long c0, long long n0, const double *__restrict__ mean,
         const double *__restrict__ cdy, const double *__restrict__ cx, const double *__restrict__ c0s)
{
    typedef typename Bw<T>::W Wt;
    __shared__ Wt chi[FN_CL_CT], clo[FN_CL_CT], ca[FN_CL_CT], cb2[FN_CL_CT], cc[FN_CL_CT];
    long long n = n0 + blockIdx.z, cb = c0 + (long long)blockIdx.y * FN_CL_CT;
    int cw = C - cb < FN_CL_CT ? (int)(C - cb) : FN_CL_CT;
    for (int c = threadIdx.x; c < cw; c += blockDim.x) {
        long long j = n * C + cb + c;
        split_mean<Wt>(mean[j], chi[c], clo[c]);
        ca[c] = (Wt)cdy[j];
        cb2[c] = (Wt)cx[j];
        cc[c] = (Wt)c0s[j];
    }
    __syncthreads();
    long long rb = r0 + (long long)blockIdx.x * rows_per_block;
    long long re = rb + rows_per_block < S ? rb + rows_per_block : S;
    if (rb >= re) return;
    long long off = n * S * C + cb;
    const T *xn = x + off, *gn = dy + off;
    T *on = gx + off;
    int nr = (int)(re - rb);
    for (int u = threadIdx.x; u < nr * cw; u += blockDim.x) {
        int rr = u / cw, c = u - rr * cw;
        long long j = (rb + rr) * C + c;
        on[j] = dx1<T>(xn[j], gn[j], chi[c], clo[c], ca[c], cb2[c], cc[c]);
    }
}
