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
from typing import Any

import cupy as cp
import numpy as np

from .. import _formulas as F
from .. import _validate as V
from . import _names

xp = cp
ARRAY_TYPE = cp.ndarray
TNAME = {V.F16: "__half", V.F32: "float", V.F64: "double", V.BF16: "__nv_bfloat16"}
_NULL = np.uint64(0)   # a null device pointer for optional weight / bias


@functools.lru_cache(maxsize=None)
def _source() -> str:
    with open(os.path.join(os.path.dirname(__file__), "kernels.cu")) as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def _module(device_id: int, t: Any) -> Any:
    """The kernels of storage type t (and the common ones) on a device,
    compiled on first use: a call compiles its own dtype only.  Same source
    and options every time, so CuPy's disk cache serves later processes."""
    with cp.cuda.Device(device_id):
        mod = cp.RawModule(code=_source(), options=_names.options(), name_expressions=_names.names(t))
        mod.compile()
    return mod


@functools.lru_cache(maxsize=None)
def _function(device_id: int, t: Any, name: str) -> Any:
    return _module(device_id, t).get_function(name)


def _fn(name: str, t: Any) -> Any:
    """The kernel `name` of type t's module on the current device, looked up
    once per (device, name): a RawModule lookup per launch cost a new
    RawKernel each time."""
    return _function(cp.cuda.Device().id, t, name)


_T = 256   # threads per block of the small grid-stride kernels


def _grid1(n: int) -> tuple[int]:
    return (max(1, min((int(n) + _T - 1) // _T, _names.MAX_GRID_X)),)


def _tiles(n: int, limit: Any) -> Any:
    """(start, count) tiles of range(n) of at most `limit`: launches stay
    within the device's grid limits (kernels take the start as an offset)."""
    for s in range(0, n, limit):
        yield s, min(limit, n - s)


def _cdiv(a: Any, b: Any) -> int:
    return (a + b - 1) // b


# ------------------------------------------------------------ validation
def asarray(x: Any, name: str = "x") -> Any:
    return x


def check_out(out: Any, shape: Any, dtype: Any) -> Any:
    return V.check_out(out, shape, dtype, "out", cp.ndarray, "cupy.ndarray (x is a CuPy array)")


def _prepare(x: Any, out: Any) -> tuple[Any, Any]:
    """x C-contiguous and the output array; called inside ``with x.device``,
    so a copy or a new output lands on x's device."""
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


def _dvec(a: Any) -> Any:
    """a (host or device, any real dtype) as contiguous 1-D float64 on the
    current device (x's: called inside ``with x.device``); None -> a null
    pointer.  A device array of another device is copied over (CuPy's copy()
    allocates on the current device)."""
    if a is None:
        return _NULL
    a = cp.asarray(a, dtype=cp.float64)
    if a.device != cp.cuda.Device():
        a = a.copy()
    return cp.ascontiguousarray(a).reshape(-1)


def _shape(x: Any, cl: bool) -> tuple[int, int, int]:
    N = x.shape[0]
    C = x.shape[-1] if cl else x.shape[1]
    S = x.size // (N * C) if N * C else 0
    return N, C, S


# ---------------------------------------------------------------- pieces
def _cf_triples(x: Any, t: Any, P: int, L: int) -> Any:
    """(P, 3) triples of P contiguous planes of length L (chunked + ordered merge)."""
    nch = _cdiv(L, _names.CHUNK)
    part = cp.empty((P * nch, 3), cp.float64)
    f = _fn(f"cf_partial<{t}>", t)
    for p0, pn in _tiles(P, _names.MAX_GRID_YZ):
        for k0, nk in _tiles(nch, _names.MAX_GRID_X):
            f((nk, pn), (256,), (x, np.int64(L), np.int64(nch), np.int64(p0), np.int64(k0), part))
    tri = cp.empty((P, 3), cp.float64)
    _fn("merge_chunks", t)(_grid1(P), (_T,), (part, np.int64(P), np.int64(1), np.int64(nch), tri))
    return tri


def _cl_triples(x: Any, t: Any, N: int, S: int, C: int) -> Any:
    """(N*C, 3) triples of x viewed as (N, S, C): chunks of `rows` rows (at
    least CL_ROWS, about CHUNK elements per 256-channel tile), a block per
    (chunk, tile of 256 channels, n), merged in order."""
    rows = max(_names.CL_ROWS, _names.CHUNK // min(C, 256))
    nch = _cdiv(S, rows)
    part = cp.empty((N * nch * C, 3), cp.float64)
    f = _fn(f"cl_partial<{t}>", t)
    for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
        for c0, nc in _tiles(_cdiv(C, 256), _names.MAX_GRID_YZ):
            for k0, nk in _tiles(nch, _names.MAX_GRID_X):
                f((nk, nc, nn), (256,), (x, np.int64(S), np.int64(C), np.int64(rows), np.int64(nch), np.int64(k0),
                                         np.int64(c0 * 256), np.int64(n0), part))
    tri = cp.empty((N * C, 3), cp.float64)
    _fn("merge_chunks", t)(_grid1(N * C), (_T,), (part, np.int64(N), np.int64(C), np.int64(nch), tri))
    return tri


def _coefs(tri: Any, t: Any, N: int, C: int, Cg: int, w: Any, b: Any, eps: Any) -> tuple[Any, Any, Any]:
    mean = cp.empty(N * C, cp.float64)
    scale = cp.empty(N * C, cp.float64)
    shift = cp.empty(N * C, cp.float64)
    _fn("coefs_from_triples", t)(_grid1(N * C), (_T,), (tri, np.int64(N), np.int64(C), np.int64(Cg), w, b,
                                                         np.float64(eps), mean, scale, shift))
    return mean, scale, shift


def _cf_apply(x: Any, y: Any, t: Any, R: int, S: int, mean: Any, scale: Any, shift: Any, act: int, slope: float) -> None:
    per_block = 256 * 8 * (16 // x.itemsize)   # elements one block covers well
    segs = max(1, min(_cdiv(S, per_block), _names.MAX_GRID_X))
    f = _fn(f"cf_apply<{t}>", t)
    for r0, nr in _tiles(R, max(1, _names.MAX_GRID_X // segs)):
        f((nr * segs,), (256,), (x, y, np.int64(S), np.int64(segs), np.int64(r0), mean, scale, shift,
                                 np.int32(act), np.float64(slope)))


def _cl_apply(x: Any, y: Any, t: Any, N: int, S: int, C: int, mean: Any, scale: Any, shift: Any, act: int, slope: float) -> None:
    vec = 16 // x.itemsize
    tail = (np.int32(act), np.float64(slope))
    if C <= _names.CL_CT:
        # flat: each slab's S*C elements in blocks of E (up to 4 vectors a thread)
        SC = S * C
        E = 256 * vec * max(1, min(4, SC // (256 * vec)))
        f = _fn(f"cl_apply_flat<{t}>", t)
        for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
            for b0, nb in _tiles(_cdiv(SC, E), _names.MAX_GRID_X):
                f((nb, 1, nn), (256,), (x, y, np.int64(S), np.int64(C), np.int64(E), np.int64(b0 * E),
                                        np.int64(n0), mean, scale, shift) + tail)
        return
    rpb = max(1, 8192 // _names.CL_CT)      # rows per block: about 8192 elements
    f = _fn(f"cl_apply_tile<{t}>", t)
    for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
        for c0, nc in _tiles(_cdiv(C, _names.CL_CT), _names.MAX_GRID_YZ):
            for b0, nb in _tiles(_cdiv(S, rpb), _names.MAX_GRID_X):
                f((nb, nc, nn), (256,), (x, y, np.int64(S), np.int64(C), np.int64(rpb), np.int64(b0 * rpb),
                                         np.int64(c0 * _names.CL_CT), np.int64(n0), mean, scale, shift) + tail)


# ------------------------------------------------------------ primitives
# Each primitive runs inside ``with x.device``: outputs, temporaries and the
# coefficient arrays (moved there where they live elsewhere) are on x's device.
def _one_type(code: int, ocode: Any) -> None:
    """TypeError for what the CUDA kernels do not do yet: integer inputs and
    an output dtype other than the input's (both run on the CPU)."""
    if V.is_integer(code) or (ocode is not None and ocode != code):
        raise TypeError("integer inputs and dtype= other than x's dtype run on the CPU only for now; "
                        "convert CuPy arrays with x.astype(...) first")


def norm(x: Any, code: int, cl: bool, G: int, weight: Any, bias: Any, eps: Any, act: int, slope: float, out: Any, nt: int | None, ocode: Any = None) -> Any:
    _one_type(code, ocode)
    with x.device:
        x, y = _prepare(x, out)
        N, C, S = _shape(x, cl)
        if x.size == 0:
            return y
        t = TNAME[code]
        w = _dvec(weight)
        b = _dvec(bias)
        Cg = C // G
        if not cl:
            P, L = N * G, Cg * S

            def args(p0: Any) -> Any:
                return (x, y, np.int64(P), np.int64(p0), np.int64(L), np.int64(G), np.int64(Cg), np.int64(S),
                        w, b, np.float64(eps), np.int32(act), np.float64(slope))
            if L <= 32 * _names.WARP_K:
                ppb = 8      # planes (warps) per block
                f = _fn(f"cf_fused_warp<{t}, {_names.WARP_K}>", t)
                for b0, nb in _tiles(_cdiv(P, ppb), _names.MAX_GRID_X):
                    f((nb,), (32 * ppb,), args(b0 * ppb))
                return y
            if L <= _names.BLOCK_THREADS * _names.BLOCK_K and Cg <= _names.FUSED_CG:
                f = _fn(f"cf_fused_block<{t}, {_names.BLOCK_K}>", t)
                for p0, pn in _tiles(P, _names.MAX_GRID_X):
                    f((pn,), (_names.BLOCK_THREADS,), args(p0))
                return y
            tri = _cf_triples(x, t, P, L)
            mean, scale, shift = _coefs(tri, t, N, C, Cg, w, b, eps)
            _cf_apply(x, y, t, N * C, S, mean, scale, shift, act, slope)
            return y
        tri = _cl_triples(x, t, N, S, C)
        if G < C:
            g = cp.empty((N * G, 3), cp.float64)
            _fn("merge_groups", t)(_grid1(N * G), (_T,), (tri, np.int64(N * G), np.int64(Cg), g))
            tri = g
        mean, scale, shift = _coefs(tri, t, N, C, Cg, w, b, eps)
        _cl_apply(x, y, t, N, S, C, mean, scale, shift, act, slope)
    return y


def triples(x: Any, code: int, cl: bool, nt: int | None) -> Any:
    _one_type(code, None)
    with x.device:
        if not x.flags.c_contiguous:
            x = cp.ascontiguousarray(x)
        N, C, S = _shape(x, cl)
        if N * C == 0:
            return cp.empty((N, C, 3), cp.float64)
        if S == 0:
            return cp.zeros((N, C, 3), cp.float64)
        t = TNAME[code]
        tri = _cl_triples(x, t, N, S, C) if cl else _cf_triples(x, t, N * C, S)
        return tri.reshape(N, C, 3)


def apply(x: Any, code: int, cl: bool, mean: Any, scale: Any, shift: Any, act: int, slope: float, out: Any, nt: int | None, ocode: Any = None) -> Any:
    _one_type(code, ocode)
    with x.device:
        x, y = _prepare(x, out)
        N, C, S = _shape(x, cl)
        if x.size == 0:
            return y
        t = TNAME[code]
        m, s, h = _dvec(mean), _dvec(scale), _dvec(shift)
        if cl:
            _cl_apply(x, y, t, N, S, C, m, s, h, act, slope)
        else:
            _cf_apply(x, y, t, N * C, S, m, s, h, act, slope)
    return y


def moments(x: Any, code: int, cl: bool, nt: int | None) -> tuple[Any, Any, Any, Any]:
    t = triples(x, code, cl, nt)
    with t.device:
        return t[..., 0].copy(), t[..., 1].copy(), t[..., 2].copy(), F.variance(t)
