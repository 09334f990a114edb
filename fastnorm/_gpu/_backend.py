"""CuPy backend: the three primitives (norm, triples, apply) on CUDA kernels.

Kernels live in kernels.cu (package data), templated on dtype; they are
compiled once per device by ``cupy.RawModule`` (NVRTC) and cached.  Launches go
to the current stream of the input's device.  Every scalar is cast explicitly
(``np.int64``, ``np.float64``, ``np.int32``) since a Python number arrives as a
C long or double.  ``num_threads`` is ignored on the GPU.

Imported only when a CuPy array arrives: ``import fastnorm`` imports no CuPy.
"""
from __future__ import annotations

import functools
import os

import cupy as cp
import numpy as np

from .. import _validate as V
from . import _names

xp = cp
TNAME = {V.F16: "__half", V.F32: "float", V.F64: "double", V.BF16: "__nv_bfloat16"}
_NULL = np.uint64(0)   # a null device pointer for optional weight / bias


@functools.lru_cache(maxsize=None)
def _source():
    with open(os.path.join(os.path.dirname(__file__), "kernels.cu")) as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def _module(device_id):
    with cp.cuda.Device(device_id):
        mod = cp.RawModule(code=_source(), options=_names.options(), name_expressions=_names.names())
        mod.compile()
    return mod


@functools.lru_cache(maxsize=None)
def _function(device_id, name):
    return _module(device_id).get_function(name)


def _fn(name):
    """The kernel `name` of the current device's module, looked up once per
    (device, name): a RawModule lookup per launch cost a new RawKernel each time."""
    return _function(cp.cuda.Device().id, name)


def _grid1(n, block=256):
    return (max(1, (int(n) + block - 1) // block),)


# ------------------------------------------------------------ validation
def asarray(x, name="x"):
    return x


def check_out(out, shape, dtype, name="out"):
    return V.check_out(out, shape, dtype, name, cp.ndarray, "cupy.ndarray (x is a CuPy array)")


def _prepare(x, out):
    if out is not None and out.device != x.device:
        raise ValueError(f"out must be on x's device {x.device}, got {out.device}")
    if not x.flags.c_contiguous:
        x = cp.ascontiguousarray(x)
    if out is None:
        return x, cp.empty(x.shape, x.dtype)
    # bounds only: cp.shares_memory is exact, building address arrays of every
    # element of both (20 GiB of temporaries for an (8, 64, 1024, 1024) pair)
    if out is not x and out.data.ptr != x.data.ptr and cp.may_share_memory(out, x):
        x = x.copy()
    return x, out


def _dvec(a):
    return _NULL if a is None else cp.asarray(a, dtype=cp.float64)


def _shape(x, cl):
    N = x.shape[0]
    C = x.shape[-1] if cl else x.shape[1]
    S = x.size // (N * C) if N * C else 0
    return N, C, S


# ---------------------------------------------------------------- pieces
def _cf_triples(x, t, P, L):
    """(P,) triples of P contiguous planes of length L (chunked + ordered merge)."""
    nch = (L + _names.CHUNK - 1) // _names.CHUNK
    part = cp.empty((P * nch, 3), cp.float64)
    for p0 in range(0, P, _names.MAX_GRID_YZ):
        pn = min(_names.MAX_GRID_YZ, P - p0)
        _fn(f"cf_partial<{t}>")((nch, pn), (256,),
                                (x.reshape(-1)[p0 * L:], np.int64(pn), np.int64(L), np.int64(nch),
                                 part[p0 * nch:]))
    tri = cp.empty((P, 3), cp.float64)
    _fn("merge_chunks")(_grid1(P), (256,), (part, np.int64(P), np.int64(1), np.int64(nch), tri))
    return tri


def _cl_triples(x, t, N, S, C):
    """(N*C,) triples of x viewed as (N, S, C)."""
    nch = (S + _names.CL_ROWS - 1) // _names.CL_ROWS
    part = cp.empty((N * nch * C, 3), cp.float64)
    for n0 in range(0, N, _names.MAX_GRID_YZ):
        nn = min(_names.MAX_GRID_YZ, N - n0)
        _fn(f"cl_partial<{t}>")((nch, (C + 31) // 32, nn), (32, 8),
                                (x.reshape(-1)[n0 * S * C:], np.int64(nn), np.int64(S), np.int64(C),
                                 np.int64(nch), part[n0 * nch * C:]))
    tri = cp.empty((N * C, 3), cp.float64)
    _fn("merge_chunks")(_grid1(N * C), (256,), (part, np.int64(N), np.int64(C), np.int64(nch), tri))
    return tri


def _coefs(tri, N, C, Cg, w, b, eps):
    mean = cp.empty(N * C, cp.float64)
    scale = cp.empty(N * C, cp.float64)
    shift = cp.empty(N * C, cp.float64)
    _fn("coefs_from_triples")(_grid1(N * C), (256,), (tri, np.int64(N), np.int64(C), np.int64(Cg), w, b,
                                                       np.float64(eps), mean, scale, shift))
    return mean, scale, shift


def _cf_apply(x, y, t, R, S, mean, scale, shift, act, slope):
    per_block = 256 * 8 * (16 // x.itemsize)   # elements one block covers well
    segs = max(1, min((S + per_block - 1) // per_block, 2**31 // max(R, 1) - 1))
    _fn(f"cf_apply<{t}>")((R * segs,), (256,), (x, y, np.int64(R), np.int64(S), np.int64(segs), mean, scale,
                                                 shift, np.int32(act), np.float64(slope)))


def _cl_apply(x, y, t, N, S, C, mean, scale, shift, act, slope):
    vec = 16 // x.itemsize
    if C % vec or x.data.ptr % 16 or y.data.ptr % 16:
        vec = 1
    rpb = 64
    for n0 in range(0, N, _names.MAX_GRID_YZ):
        nn = min(_names.MAX_GRID_YZ, N - n0)
        off = n0 * S * C
        _fn(f"cl_apply<{t}, {vec}>")(((S + rpb - 1) // rpb, (C + 32 * vec - 1) // (32 * vec), nn), (32, 8),
                                     (x.reshape(-1)[off:], y.reshape(-1)[off:], np.int64(nn), np.int64(S),
                                      np.int64(C), np.int64(rpb), mean[n0 * C:], scale[n0 * C:],
                                      shift[n0 * C:], np.int32(act), np.float64(slope)))


# ------------------------------------------------------------ primitives
def norm(x, code, cl, G, weight, bias, eps, act, slope, out, nt, stats=False):
    x, y = _prepare(x, out)
    N, C, S = _shape(x, cl)
    if x.size == 0:
        return y
    t = TNAME[code]
    w = _dvec(weight)
    b = _dvec(bias)
    Cg = C // G
    with x.device:
        if not cl:
            P, L = N * G, Cg * S
            if L <= 32 * _names.WARP_K:
                ppb = 8
                _fn(f"cf_fused_warp<{t}, {_names.WARP_K}>")(
                    ((P + ppb - 1) // ppb,), (32 * ppb,),
                    (x, y, np.int64(P), np.int64(L), np.int64(G), np.int64(Cg), np.int64(S), w, b,
                     np.float64(eps), np.int32(act), np.float64(slope)))
                return y
            if L <= _names.BLOCK_THREADS * _names.BLOCK_K and P <= 2**31 - 1:
                _fn(f"cf_fused_block<{t}, {_names.BLOCK_K}>")(
                    (P,), (_names.BLOCK_THREADS,),
                    (x, y, np.int64(P), np.int64(L), np.int64(G), np.int64(Cg), np.int64(S), w, b,
                     np.float64(eps), np.int32(act), np.float64(slope)))
                return y
            tri = _cf_triples(x, t, P, L)
            mean, scale, shift = _coefs(tri, N, C, Cg, w, b, eps)
            _cf_apply(x, y, t, N * C, S, mean, scale, shift, act, slope)
            return y
        tri = _cl_triples(x, t, N, S, C)
        if G < C:
            g = cp.empty((N * G, 3), cp.float64)
            _fn("merge_groups")(_grid1(N * G), (256,), (tri, np.int64(N * G), np.int64(Cg), g))
            tri = g
        mean, scale, shift = _coefs(tri, N, C, Cg, w, b, eps)
        _cl_apply(x, y, t, N, S, C, mean, scale, shift, act, slope)
    return y


def triples(x, code, cl, nt):
    if not x.flags.c_contiguous:
        x = cp.ascontiguousarray(x)
    N, C, S = _shape(x, cl)
    if N * C == 0:
        return cp.empty((N, C, 3), cp.float64)
    if S == 0:
        t = cp.zeros((N, C, 3), cp.float64)
        return t
    t = TNAME[code]
    with x.device:
        tri = _cl_triples(x, t, N, S, C) if cl else _cf_triples(x, t, N * C, S)
    return tri.reshape(N, C, 3)


def apply(x, code, cl, mean, scale, shift, act, slope, out, nt):
    x, y = _prepare(x, out)
    N, C, S = _shape(x, cl)
    if x.size == 0:
        return y
    t = TNAME[code]
    m = cp.ascontiguousarray(cp.asarray(mean, cp.float64)).reshape(-1)
    s = cp.ascontiguousarray(cp.asarray(scale, cp.float64)).reshape(-1)
    h = cp.ascontiguousarray(cp.asarray(shift, cp.float64)).reshape(-1)
    with x.device:
        if cl:
            _cl_apply(x, y, t, N, S, C, m, s, h, act, slope)
        else:
            _cf_apply(x, y, t, N * C, S, m, s, h, act, slope)
    return y


def stats_from_triples(t, rdt):
    n = t[..., 0]
    mean = cp.where(n > 0, t[..., 1], cp.nan)
    var = t[..., 2] / n
    return mean.astype(rdt), var.astype(rdt)
