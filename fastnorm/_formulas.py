"""The statistics formulas of the Python layer, each written once.

Every function takes the array module ``xp`` (numpy, cupy or dask.array) and
works elementwise on (N, C) or (N, C, 3) arrays, so the NumPy and CuPy paths
and the lazy Dask graphs compute the same expressions.  The kernels have
their own copy of each formula, one per language (fn_base.h for C,
kernels.cu for CUDA).

A triple is (count, mean, m2) along the last axis: m2 is the sum of squared
deviations from the mean, the biased variance is m2 / count.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

Array = Any


def chan_merge(
    na: Array, ma: Array, qa: Array, nb: Array, mb: Array, qb: Array, xp: ModuleType = np
) -> tuple[Array, Array, Array]:
    """(count, mean, m2) of two disjoint samples merged with Chan's formula,
    elementwise; an empty side leaves the other unchanged (fn_merge in C)."""
    n = na + nb
    d = mb - ma
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # inf as the C merge gives it
        fb = nb / (n + (n == 0))
        mean = xp.where(na == 0, mb, xp.where(nb == 0, ma, ma + d * fb))
        m2 = xp.where(na == 0, qb, xp.where(nb == 0, qa, qa + qb + d * d * (na * fb)))
    return n, mean, m2


def variance(t: Array) -> Array:
    """Biased variance m2 / count of triples t (NaN for an empty plane)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return t[..., 2] / t[..., 0]


def mean_var(xp: ModuleType, count: Array, mean: Array, var: Array, rdt: Any) -> tuple[Array, Array]:
    """(mean, var) as instance_stats returns them, in dtype rdt: NaN means
    for empty planes."""
    with np.errstate(invalid="ignore"):
        mean = xp.where(count > 0, mean, np.nan)
    with np.errstate(over="ignore"):  # a float32 variance above 3.4e38 is inf
        return mean.astype(rdt), var.astype(rdt)


def stats_from_triples(t: Array, rdt: Any, xp: ModuleType = np) -> tuple[Array, Array]:
    """(mean, var) in dtype rdt from triples t (see mean_var)."""
    return mean_var(xp, t[..., 0], t[..., 1], variance(t), rdt)


def affine_coefs(
    xp: ModuleType, var: Array, eps: float, weight: Array | None, bias: Array | None, shape: tuple[int, int]
) -> tuple[Array, Array]:
    """(scale, shift) of shape (N, C) that normalize with variance var (N, C)
    and apply the per-channel affine (C,) arrays (None: 1 and 0):
    ``y = (x - mean) * scale + shift``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 1.0 / xp.sqrt(var + eps)
    if weight is not None:
        scale = scale * xp.asarray(weight)
    shift = xp.broadcast_to(xp.asarray(bias), shape) if bias is not None else xp.zeros(shape)
    return scale, shift


def adain_coefs(
    xp: ModuleType, tc: Array, ts: Array, eps: float, alpha: float, shape: tuple[int, int]
) -> tuple[Array, Array, Array]:
    """(mean, scale, shift) of shape (N, C) for adain: content triples tc
    (N, C, 3), style triples ts (N or 1, C, 3), blended with the content by
    alpha in the same affine map."""
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN or infinite planes: NaN outputs, no warning
        rstd_c = 1.0 / xp.sqrt(tc[..., 2] / tc[..., 0] + eps)
        std_s = xp.sqrt(ts[..., 2] / ts[..., 0] + eps)
        mean_c = tc[..., 1]
        mean_s = xp.broadcast_to(ts[..., 1], shape)
        scale = xp.broadcast_to(alpha * (std_s * rstd_c) + (1.0 - alpha), shape)
        shift = alpha * mean_s + (1.0 - alpha) * mean_c
    return mean_c, scale, shift


def as_output(x: Array, odtype: Any) -> Array:
    """x in the output dtype as the kernels load it (float32 first for 16-bit
    outputs): what adain(alpha=0) returns."""
    return (x.astype(np.float32) if np.dtype(odtype).itemsize == 2 else x).astype(odtype)
