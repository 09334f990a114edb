"""CuPy backend: the primitives (norm, triples, apply, moments, backward) on CUDA kernels.

Kernels live in kernels.cu (package data), templated on the input and the
output type; one module per (input type, output type) pair, compiled on
first use once per device by ``cupy.RawModule`` (NVRTC) and cached.  Integer
inputs are read directly: the output type's kernel runs, each element
converted on load to its working type (float, or double for float64
outputs), so the result is bit for bit that of ``x.astype(working type)``.  Launches go
to the current stream of the input's device.  Every scalar is cast explicitly
(``np.int64``, ``np.float64``, ``np.int32``) since a Python number arrives as a
C long or double.  ``num_threads`` is ignored on the GPU.

Imported only when a CuPy array arrives: ``import fastnorm`` imports no CuPy.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import cupy as cp
import numpy as np

from .. import _codes as K
from .. import _formulas as F
from . import _names

xp = cp
ARRAY_TYPE = cp.ndarray
ARRAY_NAME = "cupy.ndarray (x is a CuPy array)"
#: dtype code -> C++ type of the kernels' templates
TNAME = {
    K.F16: "__half",
    K.F32: "float",
    K.F64: "double",
    K.BF16: "__nv_bfloat16",
    K.U8: "unsigned char",
    K.I8: "signed char",
    K.U16: "unsigned short",
    K.I16: "short",
    K.U32: "unsigned int",
    K.I32: "int",
    K.U64: "unsigned long long",
    K.I64: "long long",
}
_NULL = np.uint64(0)  # a null device pointer for optional weight / bias


@functools.cache
def _source() -> str:
    with open(os.path.join(os.path.dirname(__file__), "kernels.cu")) as f:
        return f.read()


@functools.cache
def _module(device_id: int, m: Any) -> Any:
    """The kernels of module m (_names.modules(): (input type, output type)
    or ("backward", type)) on a device, compiled on first use: a call
    compiles its own pair only.  Same source and options every time, so CuPy's disk cache serves
    later processes."""
    with cp.cuda.Device(device_id):
        mod = cp.RawModule(code=_source(), options=_names.options(), name_expressions=_names.module(m))
        mod.compile()
    return mod


@functools.cache
def _function(device_id: int, m: Any, name: str) -> Any:
    return _module(device_id, m).get_function(name)


def _fn(name: str, m: Any) -> Any:
    """The kernel `name` of module m on the current device, looked up once
    per (device, name): a RawModule lookup per launch cost a new RawKernel
    each time."""
    return _function(cp.cuda.Device().id, m, name)


def _pair(code: int, ocode: Any) -> tuple[str, str]:
    """The module (input type, output type) of a norm / apply: ocode None is
    x's own type (float32 for integer x)."""
    if ocode is None:
        ocode = K.F32 if K.is_integer(code) else code
    return TNAME[code], TNAME[ocode]


def _stats_pair(code: int, ocode: int | None = None) -> tuple[str, str]:
    """The module whose statistics kernels serve triples / moments: x's own
    (for integer x: float64, exact values, sums in double); for an integer x,
    or a float64 x into another output type, the output code ocode's (its
    loads: x.astype(float32) for float32 and 16-bit outputs, the CPU's rule)
    where given."""
    if K.is_integer(code) or (code == K.F64 and ocode is not None and ocode != K.F64):
        return TNAME[code], TNAME[K.F64 if ocode is None else ocode]
    return TNAME[code], TNAME[code]


def _odtype(ocode: str) -> Any:
    if ocode == "__nv_bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({"__half": np.float16, "float": np.float32, "double": np.float64}[ocode])


_T = 256  # threads per block of the small grid-stride kernels


def _grid1(n: int) -> tuple[int]:
    return (max(1, min((int(n) + _T - 1) // _T, _names.MAX_GRID_X)),)


def _tiles(n: int, limit: Any) -> Any:
    """(start, count) tiles of range(n) of at most `limit`: launches stay
    within the device's grid limits (kernels take the start as an offset)."""
    for s in range(0, n, limit):
        yield s, min(limit, n - s)


def _cdiv(a: Any, b: Any) -> int:
    return (a + b - 1) // b


def _prepare(x: Any, out: Any, odtype: Any) -> tuple[Any, Any]:
    """x C-contiguous and the output array (of dtype odtype where new);
    called inside ``with x.device``, so a copy or a new output lands on x's
    device."""
    if out is not None and out.device != x.device:
        raise ValueError(f"out must be on x's device {x.device}, got {out.device}")
    if not x.flags.c_contiguous:
        x = cp.ascontiguousarray(x)
    if out is None:
        return x, cp.empty(x.shape, odtype)
    # in place (each element read before it is written) only where out
    # starts at x and has x's element size; other overlaps read a copy.
    # Bounds only: cp.shares_memory is exact, building address arrays of
    # every element of both (20 GiB of temporaries for an (8, 64, 1024, 1024) pair)
    same = out is x or (out.data.ptr == x.data.ptr and out.itemsize == x.itemsize)
    if not same and cp.may_share_memory(out, x):
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
def _cf_triples(x: Any, m: Any, P: int, L: int) -> Any:
    """(P, 3) triples of P contiguous planes of length L (chunked + ordered
    merge), as module m's output type computes them."""
    nch = _cdiv(L, _names.CHUNK)
    part = cp.empty((P * nch, 3), cp.float64)
    f = _fn(f"cf_partial<{m[0]}, {m[1]}>", m)
    for p0, pn in _tiles(P, _names.MAX_GRID_YZ):
        for k0, nk in _tiles(nch, _names.MAX_GRID_X):
            f((nk, pn), (256,), (x, np.int64(L), np.int64(nch), np.int64(p0), np.int64(k0), part))
    tri = cp.empty((P, 3), cp.float64)
    _fn("merge_chunks", m)(_grid1(P), (_T,), (part, np.int64(P), np.int64(1), np.int64(nch), tri))
    return tri


def _cl_rows(C: int) -> int:
    """Rows per channels-last statistics chunk: at least CL_ROWS, about CHUNK
    elements per 256-channel tile."""
    return max(_names.CL_ROWS, _names.CHUNK // min(C, 256))


def _cl_triples(x: Any, m: Any, N: int, S: int, C: int) -> Any:
    """(N*C, 3) triples of x viewed as (N, S, C): chunks of `rows` rows (at
    least CL_ROWS, about CHUNK elements per 256-channel tile), a block per
    (chunk, tile of 256 channels, n), merged in order."""
    rows = _cl_rows(C)
    nch = _cdiv(S, rows)
    part = cp.empty((N * nch * C, 3), cp.float64)
    f = _fn(f"cl_partial<{m[0]}, {m[1]}>", m)
    for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
        for c0, nc in _tiles(_cdiv(C, 256), _names.MAX_GRID_YZ):
            for k0, nk in _tiles(nch, _names.MAX_GRID_X):
                f(
                    (nk, nc, nn),
                    (256,),
                    (
                        x,
                        np.int64(S),
                        np.int64(C),
                        np.int64(rows),
                        np.int64(nch),
                        np.int64(k0),
                        np.int64(c0 * 256),
                        np.int64(n0),
                        part,
                    ),
                )
    tri = cp.empty((N * C, 3), cp.float64)
    _fn("merge_chunks", m)(_grid1(N * C), (_T,), (part, np.int64(N), np.int64(C), np.int64(nch), tri))
    return tri


def _coefs(tri: Any, m: Any, N: int, C: int, Cg: int, w: Any, b: Any, eps: Any) -> tuple[Any, Any, Any]:
    mean = cp.empty(N * C, cp.float64)
    scale = cp.empty(N * C, cp.float64)
    shift = cp.empty(N * C, cp.float64)
    _fn("coefs_from_triples", m)(
        _grid1(N * C), (_T,), (tri, np.int64(N), np.int64(C), np.int64(Cg), w, b, np.float64(eps), mean, scale, shift)
    )
    return mean, scale, shift


def _vec(x: Any, y: Any) -> int:
    """Elements per vector access of a kernel reading x and writing y."""
    return 16 // max(x.itemsize, y.itemsize)


def _cf_apply(
    x: Any, y: Any, m: Any, R: int, S: int, mean: Any, scale: Any, shift: Any, act: int, slope: float
) -> None:
    per_block = 256 * 8 * _vec(x, y)  # elements one block covers well
    segs = max(1, min(_cdiv(S, per_block), _names.MAX_GRID_X))
    f = _fn(f"cf_apply<{m[0]}, {m[1]}>", m)
    for r0, nr in _tiles(R, max(1, _names.MAX_GRID_X // segs)):
        f(
            (nr * segs,),
            (256,),
            (x, y, np.int64(S), np.int64(segs), np.int64(r0), mean, scale, shift, np.int32(act), np.float64(slope)),
        )


def _cl_apply(
    x: Any, y: Any, m: Any, N: int, S: int, C: int, mean: Any, scale: Any, shift: Any, act: int, slope: float
) -> None:
    vec = _vec(x, y)
    tail = (np.int32(act), np.float64(slope))
    if C <= _names.CL_CT:
        # flat: each slab's S*C elements in blocks of E (up to 4 vectors a thread)
        SC = S * C
        E = 256 * vec * max(1, min(4, SC // (256 * vec)))
        f = _fn(f"cl_apply_flat<{m[0]}, {m[1]}>", m)
        for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
            for b0, nb in _tiles(_cdiv(SC, E), _names.MAX_GRID_X):
                f(
                    (nb, 1, nn),
                    (256,),
                    (x, y, np.int64(S), np.int64(C), np.int64(E), np.int64(b0 * E), np.int64(n0), mean, scale, shift)
                    + tail,
                )
        return
    rpb = max(1, 8192 // _names.CL_CT)  # rows per block: about 8192 elements
    f = _fn(f"cl_apply_tile<{m[0]}, {m[1]}>", m)
    for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
        for c0, nc in _tiles(_cdiv(C, _names.CL_CT), _names.MAX_GRID_YZ):
            for b0, nb in _tiles(_cdiv(S, rpb), _names.MAX_GRID_X):
                f(
                    (nb, nc, nn),
                    (256,),
                    (
                        x,
                        y,
                        np.int64(S),
                        np.int64(C),
                        np.int64(rpb),
                        np.int64(b0 * rpb),
                        np.int64(c0 * _names.CL_CT),
                        np.int64(n0),
                        mean,
                        scale,
                        shift,
                    )
                    + tail,
                )


# ------------------------------------------------------------ primitives
# Each primitive runs inside ``with x.device``: outputs, temporaries and the
# coefficient arrays (moved there where they live elsewhere) are on x's device.
def norm(
    x: Any,
    code: int,
    cl: bool,
    G: int,
    weight: Any,
    bias: Any,
    eps: Any,
    act: int,
    slope: float,
    out: Any,
    nt: int | None,
    ocode: Any = None,
) -> Any:
    """Instance / group norm of x (any input code) into the output type
    (ocode; None: x's type, float32 for integer x); out, if given, has it."""
    m = _pair(code, ocode)
    with x.device:
        x, y = _prepare(x, out, _odtype(m[1]))
        N, C, S = _shape(x, cl)
        if x.size == 0:
            return y
        w = _dvec(weight)
        b = _dvec(bias)
        Cg = C // G
        if not cl:
            P, L = N * G, Cg * S

            def args(p0: Any) -> Any:
                return (
                    x,
                    y,
                    np.int64(P),
                    np.int64(p0),
                    np.int64(L),
                    np.int64(G),
                    np.int64(Cg),
                    np.int64(S),
                    w,
                    b,
                    np.float64(eps),
                    np.int32(act),
                    np.float64(slope),
                )

            if L <= 32 * _names.WARP_K:
                ppb = 8  # planes (warps) per block
                f = _fn(f"cf_fused_warp<{m[0]}, {m[1]}, {_names.WARP_K}>", m)
                for b0, nb in _tiles(_cdiv(P, ppb), _names.MAX_GRID_X):
                    f((nb,), (32 * ppb,), args(b0 * ppb))
                return y
            if L <= _names.BLOCK_THREADS * _names.BLOCK_K and Cg <= _names.FUSED_CG:
                f = _fn(f"cf_fused_block<{m[0]}, {m[1]}, {_names.BLOCK_K}>", m)
                for p0, pn in _tiles(P, _names.MAX_GRID_X):
                    f((pn,), (_names.BLOCK_THREADS,), args(p0))
                return y
            tri = _cf_triples(x, m, P, L)
            mean, scale, shift = _coefs(tri, m, N, C, Cg, w, b, eps)
            _cf_apply(x, y, m, N * C, S, mean, scale, shift, act, slope)
            return y
        tri = _cl_group_triples(x, m, N, S, C, G)
        mean, scale, shift = _coefs(tri, m, N, C, Cg, w, b, eps)
        _cl_apply(x, y, m, N, S, C, mean, scale, shift, act, slope)
    return y


def _cl_group_triples(x: Any, m: Any, N: int, S: int, C: int, G: int) -> Any:
    """(N * G, 3) triples of the groups of channels-last x: channel triples
    merged in channel order."""
    tri = _cl_triples(x, m, N, S, C)
    if G < C:
        g = cp.empty((N * G, 3), cp.float64)
        _fn("merge_groups", m)(_grid1(N * G), (_T,), (tri, np.int64(N * G), np.int64(C // G), g))
        tri = g
    return tri


def triples(x: Any, code: int, cl: bool, nt: int | None, ocode: int | None = None) -> Any:
    """(N, C, 3) float64 Welford triples; integer x: of the exact values (sums
    in double), or with ocode, as the kernels of that output code load them."""
    with x.device:
        if not x.flags.c_contiguous:
            x = cp.ascontiguousarray(x)
        N, C, S = _shape(x, cl)
        if N * C == 0:
            return cp.empty((N, C, 3), cp.float64)
        if S == 0:
            return cp.zeros((N, C, 3), cp.float64)
        m = _stats_pair(code, ocode)
        tri = _cl_triples(x, m, N, S, C) if cl else _cf_triples(x, m, N * C, S)
        return tri.reshape(N, C, 3)


def apply(
    x: Any,
    code: int,
    cl: bool,
    mean: Any,
    scale: Any,
    shift: Any,
    act: int,
    slope: float,
    out: Any,
    nt: int | None,
    ocode: Any = None,
) -> Any:
    """act((x - mean) * scale + shift) into the output type (as norm's)."""
    m = _pair(code, ocode)
    with x.device:
        x, y = _prepare(x, out, _odtype(m[1]))
        N, C, S = _shape(x, cl)
        if x.size == 0:
            return y
        mn, sc, sh = _dvec(mean), _dvec(scale), _dvec(shift)
        if cl:
            _cl_apply(x, y, m, N, S, C, mn, sc, sh, act, slope)
        else:
            _cf_apply(x, y, m, N * C, S, mn, sc, sh, act, slope)
    return y


def moments(x: Any, code: int, cl: bool, nt: int | None) -> tuple[Any, Any, Any, Any]:
    t = triples(x, code, cl, nt)
    with t.device:
        return t[..., 0].copy(), t[..., 1].copy(), t[..., 2].copy(), F.variance(t)


def backward(
    x: Any, dy: Any, code: int, cl: bool, G: int, weight: Any, eps: Any, nt: int | None
) -> tuple[Any, Any, Any]:
    """Instance / group norm backward: (grad_x, grad_weight, grad_bias).
    x and dy of one floating dtype and shape; weight None (ones) or float64
    (C,).  grad_x has x's shape and dtype, the others are float64 (C,).

    Per (n, g) unit (mean mu, r = 1/sqrt(var + eps) from the statistics
    kernels): per channel sum(dy) and sum(dy * (x - mu)) in double, in a fixed
    order (chunk blocks, chunks merged in order, n in order: the same bits
    every run); then grad_x = r * (gy - mean(gy) - xhat * mean(gy * xhat)),
    gy = dy * w, in the working type (float for float32 and the 16-bit types)."""
    if K.is_integer(code):
        raise TypeError("the backward takes floating inputs only")
    with x.device:
        if not x.flags.c_contiguous:
            x = cp.ascontiguousarray(x)
        if dy.device != x.device:
            dy = dy.copy()  # onto x's device, the current one
        if not dy.flags.c_contiguous:
            dy = cp.ascontiguousarray(dy)
        N, C, S = _shape(x, cl)
        gx = cp.empty(x.shape, x.dtype)
        gw = cp.zeros(C, cp.float64)
        gb = cp.zeros(C, cp.float64)
        if x.size == 0:
            return gx, gw, gb
        t = TNAME[code]
        m = (t, t)  # the statistics: the forward module of x's type
        mb = ("backward", t)
        w = _dvec(weight)
        Cg = C // G
        tri = _cl_group_triples(x, m, N, S, C, G) if cl else _cf_triples(x, m, N * G, Cg * S)
        mean, rstd, _ = _coefs(tri, m, N, C, Cg, _NULL, _NULL, eps)
        # per (n, c): sum(dy), sum(dy * (x - mu)), chunk partials merged in order
        if cl:
            rows = _cl_rows(C)
            nch = _cdiv(S, rows)
            part = cp.empty((N * nch * C, 2), cp.float64)
            f = _fn(f"bw_cl_partial<{t}>", mb)
            for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
                for c0, nc in _tiles(_cdiv(C, 256), _names.MAX_GRID_YZ):
                    for k0, nk in _tiles(nch, _names.MAX_GRID_X):
                        f(
                            (nk, nc, nn),
                            (256,),
                            (
                                x,
                                dy,
                                np.int64(S),
                                np.int64(C),
                                np.int64(rows),
                                np.int64(nch),
                                np.int64(k0),
                                np.int64(c0 * 256),
                                np.int64(n0),
                                mean,
                                part,
                            ),
                        )
            outer, inner = N, C
        else:
            nch = _cdiv(S, _names.CHUNK)
            part = cp.empty((N * C * nch, 2), cp.float64)
            f = _fn(f"bw_cf_partial<{t}>", mb)
            for r0, nr in _tiles(N * C, _names.MAX_GRID_YZ):
                for k0, nk in _tiles(nch, _names.MAX_GRID_X):
                    f((nk, nr), (256,), (x, dy, np.int64(S), np.int64(nch), np.int64(r0), np.int64(k0), mean, part))
            outer, inner = N * C, 1
        sums = cp.empty((N * C, 2), cp.float64)
        _fn("sum_chunks", mb)(_grid1(N * C), (_T,), (part, np.int64(outer), np.int64(inner), np.int64(nch), sums))
        cdy, cx, c0s = (cp.empty(N * C, cp.float64) for _ in range(3))
        _fn("bw_coefs", mb)(
            _grid1(N * G),
            (_T,),
            (sums, rstd, w, np.int64(N), np.int64(C), np.int64(Cg), np.float64(Cg * S), cdy, cx, c0s),
        )
        _fn("bw_affine", mb)(_grid1(C), (_T,), (sums, rstd, np.int64(N), np.int64(C), gw, gb))
        coefs = (mean, cdy, cx, c0s)
        if cl:
            ct = _names.CL_CT
            rpb = max(1, 8192 // min(C, ct))  # rows per block: about 8192 elements
            f = _fn(f"bw_cl_dx<{t}>", mb)
            for n0, nn in _tiles(N, _names.MAX_GRID_YZ):
                for c0, nc in _tiles(_cdiv(C, ct), _names.MAX_GRID_YZ):
                    for b0, nb in _tiles(_cdiv(S, rpb), _names.MAX_GRID_X):
                        f(
                            (nb, nc, nn),
                            (256,),
                            (
                                x,
                                dy,
                                gx,
                                np.int64(S),
                                np.int64(C),
                                np.int64(rpb),
                                np.int64(b0 * rpb),
                                np.int64(c0 * ct),
                                np.int64(n0),
                            )
                            + coefs,
                        )
        else:
            segs = max(1, min(_cdiv(S, 256 * 8 * (16 // x.itemsize)), _names.MAX_GRID_X))
            f = _fn(f"bw_cf_dx<{t}>", mb)
            R = N * C
            for r0, nr in _tiles(R, max(1, _names.MAX_GRID_X // segs)):
                f((nr * segs,), (256,), (x, dy, gx, np.int64(S), np.int64(segs), np.int64(r0)) + coefs)
    return gx, gw, gb


if TYPE_CHECKING:  # mypy checks this module against the protocol it serves
    from .._backends import ComputeBackend
    from . import _backend as _self

    _conforms: ComputeBackend = _self
