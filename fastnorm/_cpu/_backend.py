"""NumPy backend: the compute backend (fastnorm._backends.ComputeBackend) on
the CPU engine.

- norm:    statistics + normalize (+ affine, + activation) in one call
- triples: Welford triples (count, mean, M2) per (n, c), float64 (N, C, 3)
- moments: the triples and the variance, exact at the ends of float64's range
- apply:   normalize with given per-(n, c) mean / scale / shift

x may have any storage code (fastnorm._validate: floating or integer); norm
and apply write an output of code ``ocode`` (a floating one; None: x's code
for a floating x, float32 for an integer x), reading x converted on load by
the output type's kernels (fn_base.h, "Input and output types"): never a
converted copy of x.  triples and moments read the exact values (double).

Inputs are validated by fastnorm._api and fastnorm._validate (which also
checks ``out`` against ARRAY_TYPE); nothing here validates again.  norm
and moments keep results that leave the kernels' range exact (float64 data
near the ends of the exponent range, 16-bit data with huge affine
coefficients): fastnorm._range.  The thread count of every engine call is
fastnorm._threads's (``T.team``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _codes as K
from .. import _formulas as F
from .. import _range
from .. import _threads as T
from . import _engine as E

xp = np
ARRAY_TYPE = np.ndarray
ARRAY_NAME = "numpy.ndarray"


def _out_code(code: int, ocode: int | None) -> int:
    """The output code: ocode, else x's code (floating) or float32 (integer)."""
    if ocode is not None:
        return ocode
    return code if code in K.FLOAT_CODES else K.F32


def _out_dtype(x: np.ndarray, code: int, ocode: int) -> Any:
    return x.dtype if ocode == code else K.code_dtype(ocode)


def _prepare(x: Any, out: Any, dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous input and an output array of dtype (default x's; x may be
    copied, see docstrings)."""
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if out is None:
        return x, E.empty(x.shape, x.dtype if dtype is None else dtype)
    if out is not x and np.may_share_memory(out, x):
        # same buffer is fine (elementwise in place, elements of one size); any
        # other overlap is not
        if not (out.__array_interface__["data"][0] == x.__array_interface__["data"][0] and out.strides == x.strides):
            x = x.copy()
    return x, out


def norm(
    x: np.ndarray,
    code: int,
    cl: bool,
    G: int,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    act: int,
    slope: float,
    out: np.ndarray | None,
    nt: int | None,
    ocode: int | None = None,
) -> np.ndarray:
    ocode = _out_code(code, ocode)
    if ocode == K.F32:  # float32 data and float32 coefficients stay in range
        return _norm(x, code, cl, G, weight, bias, eps, act, slope, out, nt, ocode=ocode)
    return _norm_checked(x, code, cl, G, weight, bias, eps, act, slope, out, nt, ocode)


def _norm(
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
    stats: bool = False,
    ocode: int | None = None,
) -> Any:
    """The engine's norm; stats=True returns the (N, C or G, 3) triples too."""
    ocode = _out_code(code, ocode)
    x, y = _prepare(x, out, _out_dtype(x, code, ocode))
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    size = x.size
    S = size // (N * C) if N * C else 0
    tri = np.empty((N, C if cl else G, 3)) if stats else None
    if size == 0:
        if tri is not None:
            tri[...] = (0.0, np.nan, np.nan)
        return (y, tri) if stats else y
    if cl:
        E.norm_cl(x, y, code, ocode, N, S, C, G, weight, bias, eps, act, slope, T.team(nt), tri)
    else:
        E.norm_cf(x, y, code, ocode, N, G, C // G, S, weight, bias, eps, act, slope, T.team(nt), tri)
    return (y, tri) if stats else y


def norm_pad(
    x: np.ndarray,
    cl: bool,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    act: int,
    slope: float,
    ph: int,
    pw: int,
    nt: int | None,
) -> np.ndarray:
    """Instance norm of a C-contiguous float32 (N, C, H, W) x (cl: (N, H, W,
    C)) into a new float32 array of (H + 2 ph, W + 2 pw) planes whose border
    is the reflection of their interior (numpy.pad's 'reflect'), the interior
    the bits norm() gives: one pass over memory instead of a norm and then a
    pad.  Float32 data and coefficients need no range rescue.  The caller
    checks 0 <= ph < H, 0 <= pw < W, weight / bias (C,) float64 or None."""
    if cl:
        N, H, W, C = x.shape
        y = E.empty((N, H + 2 * ph, W + 2 * pw, C), np.float32)
    else:
        N, C, H, W = x.shape
        y = E.empty((N, C, H + 2 * ph, W + 2 * pw), np.float32)
    if y.size:
        E.norm_pad(x, y, K.F32, K.F32, cl, N, C, H, W, ph, pw, weight, bias, eps, act, slope, T.team(nt))
    return y


_FLT_MAX = float(np.finfo(np.float32).max)


def _norm_checked(
    x: Any,
    code: int,
    cl: bool,
    G: int,
    w: Any,
    b: Any,
    eps: Any,
    act: int,
    slope: float,
    out: Any,
    nt: int | None,
    ocode: int,
) -> np.ndarray:
    """The engine's norm on an array whose result can leave the kernels' range:
    float64 units whose squared deviations overflow or underflow double
    (fastnorm._range), and 16-bit outputs whose scale or shift overflow float,
    the type the 16-bit kernels apply in (a weight of 1e300 gave NaN where
    x == mean).  Ordinary data pay one look at the (N, G) statistics; in
    place, the statistics come first (x must be read before it is written).
    Integer inputs into float64 need no rescue: their squares (< 2^128) stay
    far inside double's range and their variance is 0 or at least 1/4."""
    C = x.shape[-1] if cl else x.shape[1]
    if x.size == 0 or (ocode == K.F64 and code not in K.FLOAT_CODES):
        return _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, ocode=ocode)
    if ocode != K.F64:
        wmax = float(np.abs(w).max()) if w is not None and len(w) else 1.0
        bmax = float(np.abs(b).max()) if b is not None and len(b) else 0.0
        if bmax <= _FLT_MAX and eps > 0 and wmax / math.sqrt(eps) <= _FLT_MAX:
            return _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, ocode=ocode)  # cannot overflow
        tg = _range.group_triples(triples(x, code, cl, nt), G)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rs = 1.0 / np.sqrt(tg[..., 2] / tg[..., 0] + eps)
            big = bmax > _FLT_MAX or float(np.nanmax(rs, initial=0.0)) * wmax > _FLT_MAX
        if not big:
            return _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, ocode=ocode)
        # in float64, rounded once to the 16-bit type: of the values the
        # 16-bit kernels load (_float_loads), with float64's range rescue
        xf, cf = _float_loads(x, code)
        y64 = _norm_checked(xf, cf, cl, G, w, b, eps, act, slope, None, nt, K.F64)
        return _round_into(y64, out, _out_dtype(x, code, ocode))
    if out is not None and np.may_share_memory(out, x):
        tg = _range.group_triples(triples(x, code, cl, nt), G)
        bad = _range.out_of_range(tg, eps)
        if not bad.any():
            return _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, ocode=ocode)
        y = None
    else:
        y, tri = _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, stats=True, ocode=ocode)
        tg = _range.group_triples(tri, G) if cl else tri
        bad = _range.out_of_range(tg, eps)
        if not bad.any():
            return y
    k = _range.unit_exponents(x, cl, G, bad)
    if not (k != 0).any():
        return y if y is not None else _norm(x, code, cl, G, w, b, eps, act, slope, out, nt, ocode=ocode)
    # float64 data (code F64 here: float32 and 16-bit values squared stay in range)
    xs = _range.scaled(x, cl, G, k)
    ts = _range.group_triples(triples(xs, code, cl, nt), G)
    mean, scale, shift = _range.norm_coefs(ts, k, eps, w, b, G, C)
    return apply(xs, code, cl, mean, scale, shift, act, slope, y if y is not None else out, nt, ocode)


def _float_loads(x: np.ndarray, code: int) -> tuple[np.ndarray, int]:
    """x as the kernels of float32 and 16-bit outputs load it (float:
    x.astype(float32), exact for float32 and 16-bit data), and its code: the
    input of a float64 computation that stands in for a 16-bit output's
    kernels, so that it computes their function."""
    if code in (K.F32, K.F16, K.BF16):
        return x, code
    return np.ascontiguousarray(x, dtype=np.float32), K.F32


def _round_into(y64: np.ndarray, out: np.ndarray | None, odtype: Any) -> np.ndarray:
    """y64 rounded once into out (or a new array of odtype)."""
    y = out if out is not None else np.empty(y64.shape, odtype)
    with np.errstate(over="ignore"):
        y[...] = y64.astype(odtype)
    return y


def triples(x: np.ndarray, code: int, cl: bool, nt: int | None, ocode: int | None = None) -> np.ndarray:
    """(N, C, 3) float64 triples of the exact values (any storage code);
    count 0 rows for empty planes.  ocode, for an integer or float64 x: of
    the values the kernels of that output code load instead (x.astype(float32)
    for float32 and 16-bit outputs), the statistics of the call on the
    converted copy."""
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    out = np.empty((N, C, 3))
    if N * C == 0:
        return out
    S = x.size // (N * C)
    odt = ocode if ocode is not None and (K.is_integer(code) or (code == K.F64 and ocode != K.F64)) else -1
    if cl:
        E.stats_cl(x, code, N, S, C, T.team(nt), out, odt)
    else:
        E.stats_cf(x, code, N * C, S, T.team(nt), out, odt)
    return out


def moments(
    x: np.ndarray, code: int, cl: bool, nt: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = triples(x, code, cl, nt)
    if code == K.F64 and _range.out_of_range(t, None).any():
        return _range.rescaled_triples(triples, x, code, cl, nt, t)
    return t[..., 0].copy(), t[..., 1].copy(), t[..., 2].copy(), F.variance(t)


def apply(
    x: np.ndarray,
    code: int,
    cl: bool,
    mean: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    act: int,
    slope: float,
    out: np.ndarray | None,
    nt: int | None,
    ocode: int | None = None,
) -> np.ndarray:
    """mean, scale, shift: float64 C-contiguous (N, C); the output of code
    ocode (None: x's for a floating x, float32 for an integer one)."""
    ocode = _out_code(code, ocode)
    if ocode in (K.F16, K.BF16) and x.size and _float_overflow(mean, scale, shift):
        # the 16-bit kernels apply in float, where these coefficients are
        # infinite (x == mean gave 0 * inf = NaN): in float64 instead, of the
        # values those kernels load, rounded once
        xf, cf = _float_loads(x, code)
        y64 = apply(xf, cf, cl, mean, scale, shift, act, slope, None, nt, K.F64)
        return _round_into(y64, out, _out_dtype(x, code, ocode))
    x, y = _prepare(x, out, _out_dtype(x, code, ocode))
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    if x.size == 0:
        return y
    S = x.size // (N * C)
    if cl:
        E.apply_cl(x, y, code, ocode, N, S, C, mean, scale, shift, act, slope, T.team(nt))
    else:
        E.apply_cf(x, y, code, ocode, N * C, S, mean, scale, shift, act, slope, T.team(nt))
    return y


def fold_reflect(g: np.ndarray, pt: int, pb: int, pl: int, pr: int, nt: int | None) -> np.ndarray:
    """torch's reflection_pad2d_backward of a C-contiguous float32 (N, C, Hp,
    Wp) g with pads (pt, pb) on H and (pl, pr) on W, bit for bit: a new
    float32 (N, C, Hp - pt - pb, Wp - pl - pr); each pad smaller than its
    unpadded axis (else ValueError)."""
    N, C, Hp, Wp = g.shape
    H, W = Hp - pt - pb, Wp - pl - pr
    if not (0 <= pt < H and 0 <= pb < H and 0 <= pl < W and 0 <= pr < W):
        raise ValueError(f"fold_reflect: pads ({pt}, {pb}, {pl}, {pr}) do not fit a padded plane of {Hp}x{Wp}")
    o = E.empty((N, C, H, W), np.float32)
    if o.size:
        E.fold_reflect(g, o, N * C, H, W, pt, pb, pl, pr, T.team(nt))
    return o


def _float_overflow(*coefs: np.ndarray) -> bool:
    """Some finite coefficient is beyond float's range (infinite once rounded
    to float; NaN and infinite ones stay what they are in float)."""
    with np.errstate(invalid="ignore"):
        return any(bool((np.isfinite(c) & (np.abs(c) > _FLT_MAX)).any()) for c in coefs)


def _backward_run(
    x: np.ndarray,
    dy: np.ndarray,
    code: int,
    cl: bool,
    G: int,
    weight: np.ndarray | None,
    eps: float,
    nt: int | None,
    eps_units: np.ndarray | None = None,
    sums: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """The engine's backward of C-contiguous nonempty x and dy: (grad_x,
    grad_weight, grad_bias, sums); eps_units: float64 (N, G) eps per unit;
    sums: also return the per-(n, c) sum(dy), sum(dy * (x - mean)) and the
    per-(n, g) rstd, one float64 array (2*N*C + N*G,)."""
    N, C, S = K.layout(x.shape, cl)
    gx = E.empty(x.shape, x.dtype)
    gw = np.zeros(C)
    gb = np.zeros(C)
    su = np.empty(2 * N * C + N * G) if sums else None
    eu = None if eps_units is None else np.ascontiguousarray(eps_units, dtype=np.float64).reshape(-1)
    if cl:
        E.backward_cl(x, dy, gx, code, N, S, C, G, weight, eps, T.team(nt), gw, gb, eu, su)
    else:
        E.backward_cf(x, dy, gx, code, N, G, C // G, S, weight, eps, T.team(nt), gw, gb, eu, su)
    return gx, gw, gb, su


def backward(
    x: np.ndarray, dy: np.ndarray, code: int, cl: bool, G: int, weight: np.ndarray | None, eps: float, nt: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance / group norm backward: (grad_x, grad_weight, grad_bias), grad_x
    of x's shape and dtype, the others float64 (C,).  x and dy validated, of
    one shape and dtype; weight None (ones) or float64 (C,).

    Units (instance, group) whose coefficients leave the kernels' range are
    computed again: float64 ones from data scaled by a power of two
    (fastnorm._range), 16-bit ones in float64 (the type their coefficients
    overflow or underflow in is float).  float32 data need neither: their
    coefficients stay far inside double's range."""
    if K.is_integer(code):
        raise TypeError("the backward takes floating inputs only")
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if not dy.flags.c_contiguous:
        dy = np.ascontiguousarray(dy)
    N, C, S = K.layout(x.shape, cl)
    if x.size == 0:
        return E.empty(x.shape, x.dtype), np.zeros(C), np.zeros(C)
    gx, gw, gb, sums = _backward_run(x, dy, code, cl, G, weight, eps, nt, sums=code != K.F32)
    if code == K.F64:
        return _backward_f64_range(x, dy, cl, G, weight, eps, nt, gx, gw, gb, sums)
    if code != K.F32:
        return _backward_16_range(x, dy, cl, G, weight, eps, nt, gx, gw, gb, sums)
    return gx, gw, gb


def _affine_sums(psdy: np.ndarray, contrib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """grad_weight and grad_bias from the per-(n, c) terms (N, C), added over n
    in order from zero, as the engine adds them."""
    C = psdy.shape[1]
    gw = np.zeros(C)
    gb = np.zeros(C)
    for n in range(psdy.shape[0]):
        np.add(gb, psdy[n], out=gb)
        np.add(gw, contrib[n], out=gw)
    return gw, gb


def _backward_f64_range(
    x: np.ndarray,
    dy: np.ndarray,
    cl: bool,
    G: int,
    weight: np.ndarray | None,
    eps: float,
    nt: int | None,
    gx: np.ndarray,
    gw: np.ndarray,
    gb: np.ndarray,
    sums: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 units whose rstd**3 left double's range, computed again from
    x * 2**-k with eps * 2**-2k per unit (the same xhat, exact: a power of two
    changes only the exponent): grad_x is the scaled run's times 2**-k,
    grad_weight's terms sum(dy * xhat) and grad_bias's sum(dy) are unchanged
    by the scaling.  A unit is taken from the scaled run only where that run's
    rstd is in range; grad_weight and grad_bias are then added again from the
    per-(n, c) terms in the engine's order."""
    N, C, S = K.layout(x.shape, cl)
    NC = N * C
    r = sums[2 * NC :].reshape(N, G)
    bad = _range.backward_out_of_range(r)
    if not bad.any():
        return gx, gw, gb
    k, redo = _range.backward_exponents(x, cl, G, bad, eps)
    if not redo.any():
        return gx, gw, gb
    xs = _range.scaled(x, cl, G, k)
    with np.errstate(under="ignore", over="ignore"):
        eps_u = np.ldexp(float(eps), -2 * k)
    gxs, _, _, sums2 = _backward_run(xs, dy, K.F64, cl, G, weight, eps, nt, eps_units=eps_u, sums=True)
    r2 = sums2[2 * NC :].reshape(N, G)
    use = redo & ~_range.backward_out_of_range(r2)
    if not use.any():
        return gx, gw, gb
    ub = _range.unit_broadcast(use, cl)
    gv = _range._unit_view(gx, cl, G)  # a view: gx is C-contiguous
    with np.errstate(under="ignore", over="ignore"):
        gv[...] = np.where(ub, np.ldexp(_range._unit_view(gxs, cl, G), -_range.unit_broadcast(k, cl)), gv)
    Cg = C // G
    contrib = np.repeat(r, Cg, axis=1) * sums[NC : 2 * NC].reshape(N, C)
    contrib2 = np.repeat(r2, Cg, axis=1) * sums2[NC : 2 * NC].reshape(N, C)
    contrib = np.where(np.repeat(use, Cg, axis=1), contrib2, contrib)
    gw, gb = _affine_sums(sums[:NC].reshape(N, C), contrib)
    return gx, gw, gb


# 16-bit grad_x is computed in float from double coefficients rounded to float:
# coefficients of magnitude in [2**-100, 2**100] (or 0) keep float's full
# precision and leave room for the products with 16-bit data
_F_COEF_LO = 2.0**-100
_F_COEF_HI = 2.0**100


def _float_safe(a: Any) -> Any:
    with np.errstate(invalid="ignore"):
        m = np.abs(a)
        return (m == 0) | ((m >= _F_COEF_LO) & (m <= _F_COEF_HI))


def _backward_16_range(
    x: np.ndarray,
    dy: np.ndarray,
    cl: bool,
    G: int,
    weight: np.ndarray | None,
    eps: float,
    nt: int | None,
    gx: np.ndarray,
    gw: np.ndarray,
    gb: np.ndarray,
    sums: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """16-bit units whose coefficients (a1 = r * w, a0 = -r * mean(gy),
    a2 = -r**3 * mean(gy * (x - mean)), from the engine's sums) are not float
    safe: grad_x of those units computed in float64 (x and dy converted
    exactly) and rounded once.  grad_weight and grad_bias are sums in double
    already, kept."""
    N, C, S = K.layout(x.shape, cl)
    NC = N * C
    Cg = C // G
    r = sums[2 * NC :].reshape(N, G, 1)
    wg = (weight if weight is not None else np.ones(C)).reshape(G, Cg)
    cnt = float(Cg * S)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        a = (sums[:NC].reshape(N, G, Cg) * wg).sum(-1, keepdims=True) / cnt
        b = (sums[NC : 2 * NC].reshape(N, G, Cg) * wg).sum(-1, keepdims=True) / cnt
        ok = _float_safe(r * wg).all(-1) & _float_safe(-r * a)[..., 0] & _float_safe(-(r * r * r) * b)[..., 0]
    if ok.all():
        return gx, gw, gb
    gx64 = backward(x.astype(np.float64), dy.astype(np.float64), K.F64, cl, G, weight, eps, nt)[0]
    ub = _range.unit_broadcast(~ok, cl)
    gv = _range._unit_view(gx, cl, G)
    with np.errstate(over="ignore", under="ignore"):
        gv[...] = np.where(ub, _range._unit_view(gx64, cl, G).astype(x.dtype), gv)
    return gx, gw, gb


if TYPE_CHECKING:  # mypy checks this module against the protocol it serves
    from .._backends import ComputeBackend
    from . import _backend as _self

    _conforms: ComputeBackend = _self


def adain_range(
    x: np.ndarray,
    code: int,
    cl: bool,
    s: np.ndarray,
    scode: int,
    scl: bool,
    tc: np.ndarray,
    ts: np.ndarray,
    eps: float,
    alpha: float,
    nt: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """adain of float64 data whose statistics (tc content, ts style triples)
    left double's safe range (fastnorm._range): (xs, mean, scale, shift) for
    apply() on the content scaled per plane, or None where none did."""
    # only float64 data can leave the range (the squares of other types fit a double)
    badc = _range.out_of_range(tc, eps) & (code == K.F64)
    bads = _range.out_of_range(ts, eps) & (scode == K.F64)
    if not (badc.any() or bads.any()):
        return None
    C = tc.shape[1]
    k = _range.unit_exponents(x, cl, C, badc)
    ks = _range.unit_exponents(s, scl, C, bads)
    xs = _range.scaled(x, cl, C, k) if k.any() else x
    ss = _range.scaled(s, scl, C, ks) if ks.any() else s
    tcs = triples(xs, K.F64, cl, nt) if k.any() else tc
    tss = triples(ss, K.F64, scl, nt) if ks.any() else ts
    mean, scale, shift = _range.adain_coefs(tcs, k, tss, ks, eps, alpha, (tc.shape[0], C))
    return xs, mean, scale, shift
