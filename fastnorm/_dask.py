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

import numpy as np
import dask.array as da

from . import _api
from . import _validate as V

INTEROP = True
ARRAY_TYPE = da.Array  # other Dask collections (Bag, DataFrame) are refused by _api


def _check(x, channel_axis, out=None, name="x", min_ndim=3):
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


def _native(x):
    """Big-endian data ('>f4') converted once (lazily) to native byte order."""
    return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))


def _known(x, name="x"):
    """ValueError for unknown chunk sizes (after boolean indexing), which the
    normalize pass needs."""
    if any(s != s for s in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {tuple(x.shape)}); "
                         f"call {name}.compute_chunk_sizes() first")


def _spatial_axes(ndim, cl):
    return tuple(range(1, ndim - 1)) if cl else tuple(range(2, ndim))


def _caxis(ndim, cl):
    return ndim - 1 if cl else 1


def _whole_planes(x, cl):
    return all(len(x.chunks[a]) == 1 for a in _spatial_axes(x.ndim, cl))


# ------------------------------------------------------------- statistics
def _block_triples(block, cl, ndim):
    """(n_b, c_b, 3) triples of one block, laid out keepdims for the block grid."""
    ax = -1 if cl else 1
    m = _api.instance_moments(block, channel_axis=ax)
    xp = _api._array_module(m.mean)
    t = xp.stack([m.count, m.mean, m.m2], axis=-1)  # (n, c, 3)
    if cl:
        shape = (t.shape[0],) + (1,) * (ndim - 2) + (t.shape[1], 3)
    else:
        shape = (t.shape[0], t.shape[1]) + (1,) * (ndim - 2) + (3,)
    return t.reshape(shape)


def _merge_along(t, axis, keepdims=True):
    """Chan-merge triples (last axis: count, mean, m2) along `axis`, in index order."""
    if isinstance(axis, int):
        axis = (axis,)
    axis = tuple(a % t.ndim for a in axis)
    xp = _api._array_module(t)
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


def _chunk(t, axis=None, keepdims=True, **kw):
    return _merge_along(t, axis, keepdims=True)


def _agg(t, axis=None, keepdims=False, **kw):
    return _merge_along(t, axis, keepdims=keepdims)


def triples(x, cl):
    """Lazy (N, C, 3) float64 triples of a dask array."""
    ndim = x.ndim
    sp = _spatial_axes(ndim, cl)
    chunks = tuple((1,) * len(x.chunks[a]) if a in sp else x.chunks[a] for a in range(ndim)) + ((3,),)
    meta = x._meta
    xp_meta = np.empty((0,) * (ndim + 1), np.float64) if type(meta).__module__.split(".")[0] != "cupy" else \
        __import__("cupy").empty((0,) * (ndim + 1), np.float64)
    t = x.map_blocks(_block_triples, cl, ndim, new_axis=ndim, chunks=chunks, dtype=np.float64, meta=xp_meta)
    # the spatial block axes reduce away: (N, C, 3) in either layout
    return da.reduction(t, _chunk, _agg, combine=_chunk, axis=sp, keepdims=False, dtype=np.float64,
                        concatenate=True)


def _group_expand(t, Cg):
    """Merge the channel triples of each group (whole groups per block) and give
    every channel its group's triple."""
    n, c = t.shape[:2]
    g = _merge_along(t.reshape(n, c // Cg, Cg, 3), 2, keepdims=True)
    xp = _api._array_module(t)
    return xp.broadcast_to(g, (n, c // Cg, Cg, 3)).reshape(n, c, 3)


# ------------------------------------------------------------------ apply
def _kd(a, x, cl):
    """(N, C) dask array -> keepdims shape aligned with x's N and C chunks."""
    a = a.rechunk((x.chunks[0], x.chunks[_caxis(x.ndim, cl)]))
    if cl:
        return a.reshape((a.shape[0],) + (1,) * (x.ndim - 2) + (a.shape[1],))
    return a.reshape(a.shape + (1,) * (x.ndim - 2))


def _apply_block(block, mean, scale, shift, cl, activation, slope):
    ax = -1 if cl else 1
    n = block.shape[0]
    c = block.shape[ax]
    return _api._apply_coefs(block, mean.reshape(n, c), scale.reshape(n, c), shift.reshape(n, c),
                             channel_axis=ax, activation=activation, negative_slope=slope)


def _apply(x, cl, mean, scale, shift, activation, slope):
    """Lazy act((x - mean) * scale + shift); mean/scale/shift: (N, C) dask arrays."""
    _known(x)
    return da.map_blocks(_apply_block, x, _kd(mean, x, cl), _kd(scale, x, cl), _kd(shift, x, cl),
                         cl, activation, slope, dtype=x.dtype, meta=x._meta)


def _affine_coefs(t, eps, weight, bias, C):
    mean = t[..., 1]
    var = t[..., 2] / t[..., 0]
    rstd = 1.0 / da.sqrt(var + eps)
    scale = rstd * (weight if weight is not None else 1.0)
    shift = da.zeros_like(mean) + (bias if bias is not None else 0.0)
    return mean, scale, shift


def _sliced_block(block, block_info, fn, cl, weight, bias, kw):
    ax = -1 if cl else 1
    c0, c1 = block_info[0]["array-location"][_caxis(block.ndim, cl)]
    w = None if weight is None else weight[c0:c1]
    b = None if bias is None else bias[c0:c1]
    return fn(block, w, b, channel_axis=ax, **kw)


# --------------------------------------------------------------- functions
def instance_norm(x, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
                  negative_slope=0.01, out=None, num_threads=None):
    x, cl = _check(x, channel_axis, out)
    C = x.shape[_caxis(x.ndim, cl)]
    eps = V.check_eps(eps)
    V.check_activation(activation, negative_slope)
    V.check_threads(num_threads)
    w = V.check_vector(weight, "weight", C)
    b = V.check_vector(bias, "bias", C)
    kw = dict(eps=eps, activation=activation, negative_slope=negative_slope, num_threads=num_threads)
    if _whole_planes(x, cl):
        return x.map_blocks(lambda blk, block_info=None: _sliced_block(
            blk, block_info, _api.instance_norm, cl, w, b, kw), dtype=x.dtype, meta=x._meta)
    t = triples(x, cl)
    mean, scale, shift = _affine_coefs(t, eps, w, b, C)
    return _apply(x, cl, mean, scale, shift, activation, negative_slope)


def group_norm(x, num_groups, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
               negative_slope=0.01, out=None, num_threads=None):
    x, cl = _check(x, channel_axis, out, min_ndim=2)
    cax = _caxis(x.ndim, cl)
    C = x.shape[cax]
    G = V.check_num_groups(num_groups, C)
    eps = V.check_eps(eps)
    V.check_activation(activation, negative_slope)
    V.check_threads(num_threads)
    w = V.check_vector(weight, "weight", C)
    b = V.check_vector(bias, "bias", C)
    Cg = C // G
    if any(c % Cg for c in x.chunks[cax]):  # keep groups whole inside channel chunks
        x = x.rechunk({cax: max(Cg, (max(x.chunks[cax]) // Cg) * Cg)})
    kw = dict(eps=eps, activation=activation, negative_slope=negative_slope, num_threads=num_threads)
    if _whole_planes(x, cl):
        def fn(blk, block_info=None):
            c0, c1 = block_info[0]["array-location"][cax]
            return _api.group_norm(blk, (c1 - c0) // Cg, None if w is None else w[c0:c1],
                                   None if b is None else b[c0:c1], channel_axis=-1 if cl else 1, **kw)
        return x.map_blocks(fn, dtype=x.dtype, meta=x._meta)
    t = triples(x, cl)
    t = t.map_blocks(_group_expand, Cg, dtype=np.float64)
    mean, scale, shift = _affine_coefs(t, eps, w, b, C)
    return _apply(x, cl, mean, scale, shift, activation, negative_slope)


def instance_stats(x, *, channel_axis=1, num_threads=None):
    x, cl = _check(x, channel_axis)
    V.check_threads(num_threads)
    t = triples(x, cl)
    rdt = np.float64 if x.dtype == np.float64 else np.float32
    return t[..., 1].astype(rdt), (t[..., 2] / t[..., 0]).astype(rdt)


def instance_moments(x, *, channel_axis=1, num_threads=None):
    x, cl = _check(x, channel_axis)
    V.check_threads(num_threads)
    t = triples(x, cl)
    return _api.Moments(t[..., 0], t[..., 1], t[..., 2])


def _as_nc(a, name, N, C):
    if isinstance(a, da.Array):
        V.refuse_mask(a._meta, name, "is a Dask array of numpy.ma.MaskedArray chunks")
        if a.shape == (C,):
            a = da.broadcast_to(a, (N, C))
        elif a.shape != (N, C):
            raise ValueError(f"{name} must have shape ({N}, {C}) or ({C},), got shape {V._shape_str(a.shape)}")
        return a.astype(np.float64)
    return da.from_array(_api._per_channel(a, name, N, C), chunks=-1)


def normalize(x, mean, var, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
              negative_slope=0.01, out=None, num_threads=None):
    x, cl = _check(x, channel_axis, out)
    _known(x)
    N, C, _ = V.layout(x.shape, cl)
    m = _as_nc(mean, "mean", N, C)
    if isinstance(var, da.Array):
        # checked where it is known: in the graph, failing the compute
        v = _as_nc(var, "var", N, C).map_blocks(_api._check_var, dtype=np.float64)
    else:
        v = da.from_array(_api._check_var(_api._per_channel(var, "var", N, C)), chunks=-1)
    eps = V.check_eps(eps)
    V.check_activation(activation, negative_slope)
    V.check_threads(num_threads)
    w = V.check_vector(weight, "weight", C)
    b = V.check_vector(bias, "bias", C)
    scale = 1.0 / da.sqrt(v + eps) * (w if w is not None else 1.0)
    shift = da.zeros_like(m) + (b if b is not None else 0.0)
    return _apply(x, cl, m, scale, shift, activation, negative_slope)


def adain(content, style, *, eps=1e-5, channel_axis=1, alpha=1.0, num_threads=None):
    content, cl = _check(content, channel_axis, name="content")
    _known(content, "content")
    N, C, _ = V.layout(content.shape, cl)
    eps = V.check_eps(eps)
    alpha = V.check_alpha(alpha)
    V.check_threads(num_threads)
    if not isinstance(style, da.Array):
        style = da.from_array(V.as_numpy(style, "style"), chunks=-1)
    V.refuse_mask(style._meta, "style", "is a Dask array of numpy.ma.MaskedArray chunks")
    style = _native(style)
    V.check_x(style.shape, style.dtype, "style")
    _known(style, "style")
    scl = V.channels_last(channel_axis, style.ndim)
    Ns, Cs, _ = V.layout(style.shape, scl)
    if Cs != C:
        raise ValueError(f"style must have C={C} channels like content, got {Cs}")
    if Ns not in (1, N):
        raise ValueError(f"style must have a batch of {N} or 1, got {Ns}")
    tc = triples(content, cl)
    ts = triples(style, scl)
    rstd_c = 1.0 / da.sqrt(tc[..., 2] / tc[..., 0] + eps)
    std_s = da.broadcast_to(da.sqrt(ts[..., 2] / ts[..., 0] + eps), (N, C))
    mean_c = tc[..., 1]
    mean_s = da.broadcast_to(ts[..., 1], (N, C))
    scale = alpha * (std_s * rstd_c) + (1.0 - alpha)
    shift = alpha * mean_s + (1.0 - alpha) * mean_c
    return _apply(content, cl, mean_c, scale, shift, None, 0.0)
