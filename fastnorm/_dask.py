"""Dask arrays through the public functions: lazy results, any chunking.

- Blocks that hold every spatial element of their planes (chunks only along N
  and C) are normalized block by block, weight and bias sliced to the block's
  channels.
- Spatial chunks: each block yields Welford triples per (n, c); the triples of
  the spatial blocks are merged with Chan's formula in a tree reduction
  (``dask.array.reduction``); the normalize pass then runs block-wise with the
  merged statistics.  Results equal one in-memory call to float rounding.
- Blocks are NumPy or CuPy arrays; CuPy blocks run on the GPU kernels.

Imported only when a Dask array arrives.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from . import _api
from . import _backends as B
from . import _formulas as F
from . import _validate as V

ARRAY_TYPE = da.Array  # other Dask collections (Bag, DataFrame) are refused by _api


def _check(x: Any, channel_axis: Any, out: Any = None, name: str = "x", min_ndim: int = 3) -> tuple[Any, bool]:
    """(x with native byte order, channels_last)."""
    if out is not None:
        raise TypeError("out= is not supported for dask arrays (results are lazy); got an out array")
    V.refuse_mask(x._meta, name, "is a Dask array of numpy.ma.MaskedArray chunks")
    x = _native(x)
    V.check_x(x.shape, x.dtype, name, min_ndim)
    cl = V.channels_last(channel_axis, x.ndim)
    if x.shape[_caxis(x.ndim, cl)] != x.shape[_caxis(x.ndim, cl)]:
        _known(x, name)  # the channel count is always needed
    return x, cl


def _native(x: Any) -> Any:
    """Big-endian data ('>f4') converted once (lazily) to native byte order."""
    return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))


def _known(x: Any, name: str = "x") -> None:
    """ValueError for unknown chunk sizes (after boolean indexing), which the
    normalize pass needs."""
    if any(s != s for s in x.shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {tuple(x.shape)}); call {name}.compute_chunk_sizes() first"
        )


def _spatial_axes(ndim: int, cl: bool) -> tuple[int, ...]:
    return tuple(range(1, ndim - 1)) if cl else tuple(range(2, ndim))


def _caxis(ndim: int, cl: bool) -> int:
    return ndim - 1 if cl else 1


def _whole_planes(x: Any, cl: bool) -> bool:
    return all(len(x.chunks[a]) == 1 for a in _spatial_axes(x.ndim, cl))


# ------------------------------------------------------------- statistics
def _block_triples(block: Any, cl: bool, ndim: int) -> Any:
    """(n_b, c_b, 3) triples of one block, laid out keepdims for the block grid."""
    ax = -1 if cl else 1
    m = _api.instance_moments(block, channel_axis=ax)
    xp = B.array_module(m.mean)
    t = xp.stack([m.count, m.mean, m.m2], axis=-1)  # (n, c, 3)
    if cl:
        shape = (t.shape[0],) + (1,) * (ndim - 2) + (t.shape[1], 3)
    else:
        shape = (t.shape[0], t.shape[1]) + (1,) * (ndim - 2) + (3,)
    return t.reshape(shape)


def _merge_along(t: Any, axis: Any, keepdims: bool = True) -> Any:
    """Chan-merge triples (last axis: count, mean, m2) along `axis`, in index order."""
    if isinstance(axis, int):
        axis = (axis,)
    axis = tuple(a % t.ndim for a in axis)
    xp = B.array_module(t)
    keep = [a for a in range(t.ndim) if a not in axis]
    tt = xp.transpose(t, keep[:-1] + list(axis) + [t.ndim - 1])
    lead = tt.shape[: len(keep) - 1]
    tt = tt.reshape(lead + (-1, 3))
    acc = _api.Moments(tt[..., 0, 0], tt[..., 0, 1], tt[..., 0, 2])
    for k in range(1, tt.shape[-2]):
        acc = _api.merge_moments(acc, _api.Moments(tt[..., k, 0], tt[..., k, 1], tt[..., k, 2]))
    r = xp.stack([acc.count, acc.mean, acc.m2], axis=-1)
    if keepdims:
        shape = list(t.shape)
        for a in axis:
            shape[a] = 1
        r = r.reshape(shape)
    return r


def _chunk(t: Any, axis: Any = None, keepdims: bool = True, **kw: dict[str, Any]) -> Any:
    return _merge_along(t, axis, keepdims=True)


def _agg(t: Any, axis: Any = None, keepdims: bool = False, **kw: dict[str, Any]) -> Any:
    return _merge_along(t, axis, keepdims=keepdims)


def triples(x: Any, cl: bool) -> Any:
    """Lazy (N, C, 3) float64 triples of a dask array."""
    ndim = x.ndim
    N, C = x.shape[0], x.shape[_caxis(ndim, cl)]
    if N == 0 or C == 0:  # no planes: no blocks to reduce
        return da.zeros((N, C, 3), dtype=np.float64)
    sp = _spatial_axes(ndim, cl)
    chunks = tuple((1,) * len(x.chunks[a]) if a in sp else x.chunks[a] for a in range(ndim)) + ((3,),)
    xp_meta = B.array_module(x._meta).empty((0,) * (ndim + 1), np.float64)
    t = x.map_blocks(_block_triples, cl, ndim, new_axis=ndim, chunks=chunks, dtype=np.float64, meta=xp_meta)
    # the spatial block axes reduce away: (N, C, 3) in either layout
    return da.reduction(t, _chunk, _agg, combine=_chunk, axis=sp, keepdims=False, dtype=np.float64, concatenate=True)


def _loaded(x: Any, odtype: Any) -> Any:
    """x as the kernels of the output dtype load it (fastnorm/_cpu/fn_base.h):
    a float64 or a 32/64-bit integer x normalized into float32 or a 16-bit
    type is read as x.astype(float32), so the statistics of planes split
    over blocks are those the eager call takes of a whole plane (narrower
    inputs convert exactly)."""
    inexact = x.dtype == np.float64 or (x.dtype.kind in "iu" and x.dtype.itemsize >= 4)
    return x.astype(np.float32) if inexact and np.dtype(odtype) != np.float64 else x


def _group_expand(t: Any, Cg: int) -> Any:
    """Merge the channel triples of each group (whole groups per block) and give
    every channel its group's triple."""
    n, c = t.shape[:2]
    g = _merge_along(t.reshape(n, c // Cg, Cg, 3), 2, keepdims=True)
    xp = B.array_module(t)
    return xp.broadcast_to(g, (n, c // Cg, Cg, 3)).reshape(n, c, 3)


# ------------------------------------------------------------------ apply
def _kd(a: Any, x: Any, cl: bool) -> Any:
    """(N, C) dask array -> keepdims shape aligned with x's N and C chunks."""
    a = a.rechunk((x.chunks[0], x.chunks[_caxis(x.ndim, cl)]))
    if cl:
        return a.reshape((a.shape[0],) + (1,) * (x.ndim - 2) + (a.shape[1],))
    return a.reshape(a.shape + (1,) * (x.ndim - 2))


def _apply_block(block: Any, mean: Any, scale: Any, shift: Any, cl: bool, rest: dict[str, Any]) -> Any:
    ax = -1 if cl else 1
    n = block.shape[0]
    c = block.shape[ax]
    return _api.apply_coefs(
        block, mean.reshape(n, c), scale.reshape(n, c), shift.reshape(n, c), channel_axis=ax, **rest
    )


def _apply(x: Any, cl: bool, mean: Any, scale: Any, shift: Any, rest: dict[str, Any]) -> Any:
    """Lazy act((x - mean) * scale + shift); mean/scale/shift: (N, C) dask
    arrays; rest: the apply keywords of the public function (activation,
    negative_slope, dtype, num_threads), passed through to each block."""
    _known(x)
    odtype, _ = V.out_dtype(rest.get("dtype"), x.dtype, V.dtype_code(x.dtype))
    return da.map_blocks(
        _apply_block,
        x,
        _kd(mean, x, cl),
        _kd(scale, x, cl),
        _kd(shift, x, cl),
        cl,
        rest,
        dtype=odtype,
        meta=x._meta.astype(odtype),
    )


def _affine_coefs(t: Any, eps: Any, weight: Any, bias: Any) -> Any:
    """(mean, scale, shift) lazy (N, C) from lazy (N, C, 3) triples; weight and
    bias (host arrays) go over to the triples' array library (CuPy chunks)."""
    scale, shift = F.affine_coefs(da, F.variance(t), eps, _like(weight, t), _like(bias, t), t.shape[:2])
    return t[..., 1], scale, shift


def _like(a: Any, t: Any) -> Any:
    """a (a host array or None) as a Dask array of t's chunk type."""
    if a is None:
        return None
    return da.from_array(B.array_module(t._meta).asarray(a), chunks=-1, asarray=False)


# --------------------------------------------------------------- functions
# Each takes the bound arguments of the public function of the same name
# (defaults applied) and validates them as the eager path does.


def _norm_args(x: Any, kw: dict[str, Any], num_groups: Any = V.PER_CHANNEL) -> tuple[Any, V.NormArgs]:
    """(x in native byte order, NormArgs) of a norm's bound arguments."""
    x, _ = _check(x, kw["channel_axis"], kw["out"], min_ndim=3 if num_groups is V.PER_CHANNEL else 2)
    a = V.validate_norm(
        x,
        num_groups,
        kw["weight"],
        kw["bias"],
        kw["eps"],
        kw["channel_axis"],
        kw["activation"],
        kw["negative_slope"],
        kw["num_threads"],
        kw["dtype"],
    )
    return x, a


def _rest(kw: dict[str, Any], *names: Any) -> dict[str, Any]:
    """The keywords of kw other than names: passed through to the eager call
    on each block, so a new keyword of a public function reaches the blocks."""
    return {k: v for k, v in kw.items() if k not in names}


def _map_planes(x: Any, a: Any, fn: Callable[..., Any], kw: dict[str, Any], Cg: int = 1) -> Any:
    """fn (the public function) on every block holding whole planes, weight
    and bias sliced to the block's channels (groups: num_groups per block)."""
    cax = _caxis(x.ndim, a.cl)
    rest = _rest(kw, "x", "num_groups", "weight", "bias", "channel_axis", "out")

    def block(blk: Any, block_info: Any = None) -> Any:
        c0, c1 = block_info[0]["array-location"][cax]
        w = None if a.weight is None else a.weight[c0:c1]
        b = None if a.bias is None else a.bias[c0:c1]
        groups = () if fn is _api.instance_norm else ((c1 - c0) // Cg,)
        return fn(blk, *groups, w, b, channel_axis=-1 if a.cl else 1, **rest)

    return x.map_blocks(block, dtype=a.odtype, meta=x._meta.astype(a.odtype))


#: the keywords the normalize pass does not take (they are consumed before it)
_NOT_APPLY = (
    "x",
    "content",
    "style",
    "num_groups",
    "weight",
    "bias",
    "mean",
    "var",
    "eps",
    "alpha",
    "channel_axis",
    "layout",
    "out",
)


def _split_norm(x: Any, a: Any, t: Any, kw: dict[str, Any]) -> Any:
    """The normalize pass with merged statistics t (N, C, 3)."""
    _known(x)
    mean, scale, shift = _affine_coefs(t, a.eps, a.weight, a.bias)
    return _apply(x, a.cl, mean, scale, shift, _rest(kw, *_NOT_APPLY))


def instance_norm(kw: dict[str, Any]) -> Any:
    x, a = _norm_args(kw["x"], kw)
    if _whole_planes(x, a.cl):
        return _map_planes(x, a, _api.instance_norm, kw)
    return _split_norm(x, a, triples(_loaded(x, a.odtype), a.cl), kw)


def group_norm(kw: dict[str, Any]) -> Any:
    x, a = _norm_args(kw["x"], kw, kw["num_groups"])
    cax = _caxis(x.ndim, a.cl)
    Cg = a.C // a.G
    if any(c % Cg for c in x.chunks[cax]):  # keep groups whole inside channel chunks
        x = x.rechunk({cax: max(Cg, (max(x.chunks[cax]) // Cg) * Cg)})
    if _whole_planes(x, a.cl):
        return _map_planes(x, a, _api.group_norm, kw, Cg)
    t = triples(_loaded(x, a.odtype), a.cl).map_blocks(_group_expand, Cg, dtype=np.float64)
    return _split_norm(x, a, t, kw)


def instance_stats(kw: dict[str, Any]) -> Any:
    x, cl = _check(kw["x"], kw["channel_axis"])
    V.check_threads(kw["num_threads"])
    rdt = np.float64 if x.dtype == np.float64 or x.dtype.kind in "iu" else np.float32
    return F.stats_from_triples(triples(x, cl), rdt, da)


def instance_moments(kw: dict[str, Any]) -> Any:
    x, cl = _check(kw["x"], kw["channel_axis"])
    V.check_threads(kw["num_threads"])
    t = triples(x, cl)
    return _api.Moments(t[..., 0], t[..., 1], t[..., 2])


def _as_nc(a: Any, name: str, N: int, C: int) -> Any:
    if isinstance(a, da.Array):
        V.refuse_mask(a._meta, name, "is a Dask array of numpy.ma.MaskedArray chunks")
        if a.dtype.kind not in "fiu" and a.dtype.name != "bfloat16":  # as V.per_channel's arrays
            raise TypeError(f"{name} must have a real dtype, got dtype {a.dtype}")
        _known(a, name)
        if a.shape == (C,):
            a = da.broadcast_to(a, (N, C))
        elif a.shape != (N, C):
            raise ValueError(f"{name} must have shape ({N}, {C}) or ({C},), got shape {V._shape_str(a.shape)}")
        return a.astype(np.float64)
    return da.from_array(V.per_channel(a, name, N, C), chunks=-1)


def normalize(kw: dict[str, Any]) -> Any:
    x, cl = _check(kw["x"], kw["channel_axis"], kw["out"])
    _known(x)
    N, C, _ = V.layout(x.shape, cl)
    m = _as_nc(kw["mean"], "mean", N, C)
    var = kw["var"]
    if isinstance(var, da.Array):
        # checked where it is known: in the graph, failing the compute
        v = _as_nc(var, "var", N, C).map_blocks(V.check_var, dtype=np.float64)
    else:
        v = da.from_array(V.check_var(V.per_channel(var, "var", N, C)), chunks=-1)
    eps = V.check_eps(kw["eps"])
    V.check_activation(kw["activation"], kw["negative_slope"])
    V.check_threads(kw["num_threads"])
    w = V.check_vector(kw["weight"], "weight", C)
    b = V.check_vector(kw["bias"], "bias", C)
    scale, shift = F.affine_coefs(da, v, eps, _like(w, v), _like(b, v), (N, C))
    return _apply(x, cl, m, scale, shift, _rest(kw, *_NOT_APPLY))


def adain(kw: dict[str, Any]) -> Any:
    content, cl = _check(kw["content"], kw["channel_axis"], name="content")
    _known(content, "content")
    N, C, _ = V.layout(content.shape, cl)
    eps = V.check_eps(kw["eps"])
    alpha = V.check_alpha(kw["alpha"])
    V.check_threads(kw["num_threads"])
    style = kw["style"]
    if not isinstance(style, da.Array):
        style = da.from_array(
            style if B.library(style) == "cupy" else V.as_numpy(style, "style"), chunks=-1, asarray=False
        )
    V.refuse_mask(style._meta, "style", "is a Dask array of numpy.ma.MaskedArray chunks")
    style = _native(style)
    V.check_x(style.shape, style.dtype, "style")
    _known(style, "style")
    scl = V.channels_last(kw["channel_axis"], style.ndim)
    Ns, Cs, _ = V.layout(style.shape, scl)
    if Cs != C:
        raise ValueError(f"style must have C={C} channels like content, got {Cs}")
    if Ns not in (1, N):
        batch = f"{N} or 1" if N != 1 else "1, like content"
        raise ValueError(f"style must have a batch of {batch}, got {Ns}")
    odtype, _ = V.out_dtype(kw["dtype"], content.dtype, V.dtype_code(content.dtype, "content"))
    if alpha == 0.0:  # the content itself, as the NumPy function returns it (float32 first for 16 bits)
        return F.as_output(content, odtype)
    tc, ts = triples(_loaded(content, odtype), cl), triples(_loaded(style, odtype), scl)
    mean, scale, shift = F.adain_coefs(da, tc, ts, eps, alpha, (N, C))
    return _apply(content, cl, mean, scale, shift, _rest(kw, *_NOT_APPLY))


def _backward(kw: dict[str, Any], num_groups: Any) -> tuple[Any, Any, Any]:
    """Lazy (grad_x, grad_weight, grad_bias): x and grad_out rechunked so every
    block holds whole (instance, group) units (spatial axes whole), one eager
    backward call per block, the per-block weight and bias gradients summed
    over the batch blocks in order."""
    import dask

    per_channel = num_groups is V.PER_CHANNEL
    if not isinstance(kw["x"], da.Array):
        raise TypeError(f"x must be the same kind of array as grad_out (a Dask array), got {type(kw['x']).__name__}")
    x, cl = _check(kw["x"], kw["channel_axis"], min_ndim=3 if per_channel else 2)
    if V.is_integer(V.dtype_code(x.dtype)):
        raise TypeError(
            f"x must have a floating dtype ({V.FLOAT_NAMES}) for the backward: integer inputs "
            f"have no gradient, got dtype {x.dtype}"
        )
    dy = kw["grad_out"]
    if not isinstance(dy, da.Array):
        dy = da.from_array(V.as_numpy(dy, "grad_out"), chunks=-1)
    dy = _native(dy)
    if dy.dtype != x.dtype:
        raise TypeError(f"grad_out must have the dtype of x ({x.dtype}), got dtype {dy.dtype}")
    if dy.shape != x.shape:
        raise ValueError(
            f"grad_out must have the shape of x {V._shape_str(x.shape)}, got shape {V._shape_str(dy.shape)}"
        )
    _known(x)
    cax = _caxis(x.ndim, cl)
    C = int(x.shape[cax])
    G = C if per_channel else V.check_num_groups(num_groups, C)
    eps = V.check_eps(kw["eps"])
    w = V.check_vector(kw["weight"], "weight", C)
    V.check_threads(kw["num_threads"])
    adt = np.float64 if x.dtype == np.float64 else np.float32
    if x.size == 0:  # no units: the eager call's empty grad_x and zero sums
        return x.astype(x.dtype, copy=True), da.zeros((C,), dtype=adt), da.zeros((C,), dtype=adt)
    Cg = C // G
    cchunk = max(Cg, (max(x.chunks[cax]) // Cg) * Cg)
    x = x.rechunk({**dict.fromkeys(_spatial_axes(x.ndim, cl), -1), cax: cchunk})
    dy = dy.rechunk(x.chunks)
    ax = -1 if cl else 1
    c_starts = np.cumsum((0,) + x.chunks[cax])

    def block(g: Any, xb: Any, c0: int, c1: int) -> Any:
        wb = None if w is None else w[c0:c1]
        return _api_backward((c1 - c0) // Cg, g, xb, wb, eps, ax, kw["num_threads"])

    xd, gd = x.to_delayed(), dy.to_delayed()
    gx_blocks = np.empty(xd.shape, dtype=object)
    gws, gbs = [], []
    for idx in np.ndindex(*xd.shape):
        ci = idx[cax]
        c0, c1 = int(c_starts[ci]), int(c_starts[ci + 1])
        r = dask.delayed(block, nout=3)(gd[idx], xd[idx], c0, c1)
        shape = tuple(x.chunks[a][i] for a, i in enumerate(idx))
        gx_blocks[idx] = da.from_delayed(r[0], shape, dtype=x.dtype, meta=x._meta)
        gws.append((ci, r[1]))
        gbs.append((ci, r[2]))
    gx = da.block(gx_blocks.tolist())

    def total(parts: list[tuple[int, Any]]) -> Any:
        per_c = []
        for ci in range(len(x.chunks[cax])):
            acc = None
            for cj, p in parts:  # the batch blocks of this channel block, in order
                if cj == ci:
                    acc = p if acc is None else dask.delayed(np.add)(acc, p)
            per_c.append(da.from_delayed(acc, (x.chunks[cax][ci],), dtype=adt))
        return da.concatenate(per_c)

    return gx, total(gws), total(gbs)


def _api_backward(G: int, g: Any, xb: Any, wb: Any, eps: float, ax: int, nt: Any) -> Any:
    from ._backward import group_norm_backward

    return group_norm_backward(g, xb, G, wb, eps=eps, channel_axis=ax, num_threads=nt)


def instance_norm_backward(kw: dict[str, Any]) -> Any:
    return _backward(kw, V.PER_CHANNEL)


def group_norm_backward(kw: dict[str, Any]) -> Any:
    return _backward(kw, kw["num_groups"])


_IMPL = {
    f.__name__: f
    for f in (
        instance_norm,
        group_norm,
        instance_stats,
        instance_moments,
        normalize,
        adain,
        instance_norm_backward,
        group_norm_backward,
    )
}


def call(fn: Callable[..., Any], args: inspect.BoundArguments) -> Any:
    """The lazy counterpart of the public function fn on args' Dask arrays."""
    return _IMPL[fn.__name__](dict(args.arguments))


if TYPE_CHECKING:  # mypy checks this module against the protocol it serves
    from . import _dask as _self
    from ._backends import InteropBackend

    _conforms: InteropBackend = _self
