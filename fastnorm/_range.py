"""float64 data at the ends of the exponent range (NumPy backend).

The kernels sum squared deviations in double: deviations above ~1.3e154
overflow (m2 = inf, and the output comes back NaN or 0), deviations below
~1e-154 lose their bits or underflow (with eps = 0 the output comes back
inf).  Whenever the exact result is finite it must be, so the units (planes,
or groups of planes) whose statistics left the safe range are computed again
from a copy scaled by a power of two per unit (exact: a power of two changes
only the exponent), and their output from the scaled statistics:

    (x - mean) / sqrt(var + eps) = (xs - ms) / sqrt(vs + eps * 2**-2k)
    with xs = x * 2**-k, ms = mean * 2**-k, vs = var * 2**-2k.

Only float64 can get there (float32 and 16-bit values squared stay within
double's range), and only NaN-free units are redone: a NaN or an infinity
in the data keeps its NaN result.  The check costs nothing on ordinary data
(it reads the (N, C) statistics); the redo costs two more passes over x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._formulas import chan_merge, variance

# m2 / n below this, with eps too small to dominate it, has lost bits
_TINY_VAR = 2.0**-900
_SMALL_EPS = 1e-250


def out_of_range(t: Any, eps: Any) -> Any:
    """Bool (N, U): the units of triples t (N, U, 3) whose statistics left the
    range where the double sums are exact enough: m2 or the mean not finite,
    or a variance so small (and eps smaller still) that its squares lost bits."""
    n, mean, m2 = t[..., 0], t[..., 1], t[..., 2]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        bad = ~np.isfinite(m2) | ~np.isfinite(mean)
        if eps is None or eps < _SMALL_EPS:
            bad |= (n > 1) & (m2 < _TINY_VAR * n)
    return bad & (n > 0)  # an empty unit has nothing to redo


def _unit_view(x: Any, cl: bool, G: int) -> Any:
    """x as (N, G, elements of the unit) for channels first, (N, rows, G, Cg)
    for channels last: a view or a copy, for reductions only."""
    N = x.shape[0]
    if cl:
        C = x.shape[-1]
        return x.reshape(N, -1, G, C // G)
    return x.reshape(N, G, -1)


def unit_exponents(x: Any, cl: bool, G: int, bad: Any) -> Any:
    """(N, G) int: k with max|x| of the unit in [2**(k-1), 2**k) for the bad
    units whose data are finite and not all zero; 0 elsewhere."""
    v = _unit_view(np.abs(x), cl, G)
    amax = v.max(axis=(1, 3)) if cl else v.max(axis=2)
    with np.errstate(invalid="ignore"):
        ok = bad & np.isfinite(amax) & (amax > 0)
    _, k = np.frexp(np.where(ok, amax, 1.0))
    return np.where(ok, k, 0).astype(np.int64)


def scaled(x: Any, cl: bool, G: int, k: Any) -> Any:
    """x * 2**-k per unit (exact; ldexp, as 2**-k alone can overflow), C-contiguous."""
    N = x.shape[0]
    if cl:
        C = x.shape[-1]
        s = np.ldexp(x.reshape(N, -1, G, C // G), -k[:, None, :, None])
    else:
        s = np.ldexp(x.reshape(N, G, -1), -k[:, :, None])
    return np.ascontiguousarray(s.reshape(x.shape))


def group_triples(t: Any, G: int) -> Any:
    """(N, C, 3) channel triples merged in channel order into (N, G, 3) group
    triples (Chan's formula, as the kernels merge them)."""
    N, C, _ = t.shape
    if G == C:
        return t
    Cg = C // G
    out = t[:, ::Cg, :].copy()
    for j in range(1, Cg):
        b = t[:, j::Cg, :]
        n, mean, m2 = chan_merge(out[..., 0], out[..., 1], out[..., 2], b[..., 0], b[..., 1], b[..., 2])
        out[..., 0], out[..., 1], out[..., 2] = n, mean, m2
    return out


def _scaled_rstd(vs: Any, k: Any, eps: float) -> Any:
    """1 / sqrt(var + eps) of the scaled data (variance vs = var * 2**-2k)."""
    eps_s = np.ldexp(float(eps), -2 * k)
    # eps scaled past 2**600 dominates the variance: then 1 / sqrt(var + eps)
    # is safe unscaled (var underflowed to about 0 beside it), times 2**k
    return np.where(eps_s <= 2.0**600, 1.0 / np.sqrt(vs + eps_s), np.ldexp(1.0 / np.sqrt(np.ldexp(vs, 2 * k) + eps), k))


def norm_coefs(ts: Any, k: Any, eps: Any, w: Any, b: Any, G: int, C: int) -> tuple[Any, Any, Any]:
    """Per-channel (mean, scale, shift) (N, C) for the scaled data from the
    scaled group triples ts (N, G, 3) and exponents k (N, G)."""
    N = ts.shape[0]
    Cg = C // G
    n, ms, m2s = ts[..., 0], ts[..., 1], ts[..., 2]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        rs = _scaled_rstd(m2s / n, k, float(eps))
    mean = np.repeat(ms, Cg, axis=1)
    scale = np.repeat(rs, Cg, axis=1)
    if w is not None:
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0: NaN, as the engine's product
            scale = scale * np.asarray(w, dtype=np.float64)[None, :]
    shift = np.broadcast_to(np.asarray(b, dtype=np.float64) if b is not None else 0.0, (N, C))
    # NaN statistics: the engine's rule (fn_group_coefs), so NaN outputs keep
    # the same bits whether or not another unit of the call was rescaled
    nan = np.repeat(np.isnan(ms) | np.isnan(m2s), Cg, axis=1)
    if nan.any():
        mean = np.where(nan, np.nan, mean)
        scale = np.where(nan, 1.0, scale)
        shift = np.where(nan, 0.0, shift)
    return (np.ascontiguousarray(mean), np.ascontiguousarray(scale), np.ascontiguousarray(shift, dtype=np.float64))


def rescaled_triples(
    triples: Callable[..., Any], x: Any, code: int, cl: bool, nt: int | None, t: Any
) -> tuple[Any, Any, Any, Any]:
    """t with its out-of-range units (per channel) recomputed from scaled
    data: (count, mean, m2, var) float64 (N, C) arrays, m2 and var scaled
    back (so they overflow to inf only where the exact value does)."""
    C = x.shape[-1] if cl else x.shape[1]
    bad = out_of_range(t, None)
    count, mean, m2 = t[..., 0].copy(), t[..., 1].copy(), t[..., 2].copy()
    var = variance(t)
    if not bad.any():
        return count, mean, m2, var
    k = unit_exponents(x, cl, C, bad)
    redo = k != 0
    if not redo.any():
        return count, mean, m2, var
    ts = triples(scaled(x, cl, C, k), code, cl, nt)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(redo, np.ldexp(ts[..., 1], k), mean)
        m2 = np.where(redo, np.ldexp(ts[..., 2], 2 * k), m2)
        var = np.where(redo, np.ldexp(ts[..., 2] / ts[..., 0], 2 * k), var)
    return count, mean, m2, var


# ---------------------------------------------------------------- backward
# The backward's coefficient of (x - mean) is -rstd**3 * mean(gy * (x - mean)):
# rstd**3 stays a normal double with room to spare while rstd is in
# [2**-300, 2**300], i.e. var + eps in [2**-600, 2**600]
_BWD_R_LO = 2.0**-300
_BWD_R_HI = 2.0**300
# eps scaled past this dominates the scaled variance (at most 1): the unit is
# scaled by eps instead of by its data
_BWD_EPS_HI = 2.0**600


def backward_out_of_range(r: Any) -> Any:
    """Bool (N, G): the units whose backward rstd r (N, G) is outside
    [2**-300, 2**300] or NaN (rstd**3 near or past the ends of double)."""
    with np.errstate(invalid="ignore"):
        return ~((r >= _BWD_R_LO) & (r <= _BWD_R_HI))


def backward_exponents(x: Any, cl: bool, G: int, bad: Any, eps: float) -> tuple[Any, Any]:
    """(k, redo) for the bad units (N, G) of float64 x: k the power of two
    whose scaling x * 2**-k, eps * 2**-2k brings rstd**3 back into range: the
    exponent of max|x| of the unit (the scaled data below 1 in magnitude), or
    of sqrt(eps) where eps would dominate the scaled variance or the unit is
    all zeros.  redo: the bad units with finite data and such a k != 0 (a NaN
    or an infinity in the data keeps its NaN result)."""
    v = _unit_view(np.abs(x), cl, G)
    amax = v.max(axis=(1, 3)) if cl else v.max(axis=2)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(amax)
        _, kx = np.frexp(np.where(finite & (amax > 0), amax, 1.0))
        if eps > 0:
            ke = (int(np.frexp(eps)[1]) + 1) // 2  # eps * 2**-2ke in [1/4, 1)
            by_eps = (amax == 0) | (np.ldexp(float(eps), -2 * kx) > _BWD_EPS_HI)
            k = np.where(by_eps, ke, kx)
            redo = bad & finite
        else:
            k = kx
            redo = bad & finite & (amax > 0)
    redo &= k != 0
    return np.where(redo, k, 0).astype(np.int64), redo


def unit_broadcast(a: Any, cl: bool) -> Any:
    """(N, G) per-unit values shaped to broadcast against _unit_view's
    (N, G, L) or (N, rows, G, Cg)."""
    return a[:, None, :, None] if cl else a[:, :, None]


# ------------------------------------------------------------------- adain


def adain_coefs(
    tc: Any, k: Any, ts: Any, ks: Any, eps: float, alpha: float, shape: tuple[int, int]
) -> tuple[Any, Any, Any]:
    """adain's (mean, scale, shift) (N, C) for the content scaled by 2**-k per
    plane, from its scaled triples tc and the style's scaled triples ts
    (exponents ks): (xs - ms) * scale + shift equals
    alpha * ((x - mc) / std_c * std_s + ms_style) + (1 - alpha) * x."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        rs = _scaled_rstd(tc[..., 2] / tc[..., 0], k, eps)
        # the style's sqrt(var + eps), from its scaled variance
        vss = ts[..., 2] / ts[..., 0]
        eps_ss = np.ldexp(float(eps), -2 * ks)
        std_s = np.where(eps_ss <= 2.0**600, np.ldexp(np.sqrt(vss + eps_ss), ks), np.sqrt(np.ldexp(vss, 2 * ks) + eps))
        std_s = np.broadcast_to(std_s, shape)
        mean_s = np.broadcast_to(np.ldexp(ts[..., 1], ks), shape)
        ms = tc[..., 1]
        scale = alpha * (std_s * rs) + (1.0 - alpha) * np.ldexp(1.0, k)
        shift = alpha * mean_s + (1.0 - alpha) * np.ldexp(ms, k)
    return np.ascontiguousarray(ms), np.ascontiguousarray(scale), np.ascontiguousarray(shift)
