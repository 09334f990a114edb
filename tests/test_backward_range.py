"""instance_norm_backward / group_norm_backward at the ends of the exponent
range: every magnitude whose exact gradients are finite gives them as
accurately as ordinary data (float64 from 1e-300 to 1e300 with eps = 0 and
the default eps; float32, bfloat16 and float16 over their ranges), against an
mpmath oracle of the exact formulas; bit-identical across SIMD levels and
thread counts there too."""

import numpy as np
import pytest
from _isa import LEVELS, kernels
from _optional import require

import fastnorm

mpmath = require("mpmath", reason="mpmath is the oracle (the test extra)")

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

mp = mpmath.mp


def mp_backward(dy, x, G, weight, eps, cl):
    """(grad_x, grad_weight, grad_bias) of the stored values, computed with 60
    digits and an unbounded exponent, rounded once to float64."""
    x = np.asarray(x).astype(np.float64)
    dy = np.asarray(dy).astype(np.float64)
    if cl:
        x, dy = np.moveaxis(x, -1, 1), np.moveaxis(dy, -1, 1)
    N, C = x.shape[:2]
    S = x[0, 0].size
    Cg = C // G
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    xs = x.reshape(N, C, S)
    ds = dy.reshape(N, C, S)
    gx = np.empty((N, C, S))
    gw = [mp.mpf(0)] * C
    gb = [mp.mpf(0)] * C
    with mp.workdps(60):
        e = mp.mpf(float(eps))
        for n in range(N):
            for g in range(G):
                cs = range(g * Cg, (g + 1) * Cg)
                xv = [[mp.mpf(float(v)) for v in xs[n, c]] for c in cs]
                dv = [[mp.mpf(float(v)) for v in ds[n, c]] for c in cs]
                cnt = Cg * S
                mu = mp.fsum(v for row in xv for v in row) / cnt
                var = mp.fsum((v - mu) ** 2 for row in xv for v in row) / cnt
                r = 1 / mp.sqrt(var + e)
                xh = [[(v - mu) * r for v in row] for row in xv]
                gy = [[d * mp.mpf(float(w[c])) for d in row] for c, row in zip(cs, dv)]
                mg = mp.fsum(v for row in gy for v in row) / cnt
                mgx = mp.fsum(a * b for ra, rb in zip(gy, xh) for a, b in zip(ra, rb)) / cnt
                for k, c in enumerate(cs):
                    gx[n, c] = [float(r * (gy[k][i] - mg - xh[k][i] * mgx)) for i in range(S)]
                    gw[c] += mp.fsum(a * b for a, b in zip(dv[k], xh[k]))
                    gb[c] += mp.fsum(dv[k])
        gw = np.array([float(v) for v in gw])
        gb = np.array([float(v) for v in gb])
    gx = gx.reshape(x.shape)
    if cl:
        gx = np.moveaxis(gx, 1, -1)
    return gx, gw, gb


def _close(got, want, rtol, what):
    got = np.asarray(got, np.float64)
    assert np.isfinite(want).all(), f"{what}: the oracle is not finite"
    assert np.isfinite(got).all(), f"{what}: not finite where the exact result is"
    scale = float(np.abs(want).max(initial=0.0))
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= rtol * scale, f"{what}: relative error {err / max(scale, 1e-300):.3g} > {rtol:.3g}"


def _call(dy, x, G, w, eps, cl, **kw):
    ax = -1 if cl else None
    C = x.shape[-1] if cl else x.shape[1]
    if G == C:
        return fastnorm.instance_norm_backward(dy, x, w, eps=eps, channel_axis=ax, **kw)
    return fastnorm.group_norm_backward(dy, x, G, w, eps=eps, channel_axis=ax, **kw)


SHAPE = (2, 4, 3, 5)  # (N, C, H, W) channels first


def _data(seed, dtype, cl, mag):
    rng = np.random.default_rng(seed)
    shape = (SHAPE[0],) + SHAPE[2:] + (SHAPE[1],) if cl else SHAPE
    x = ((rng.standard_normal(shape) + 1.5) * mag).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, SHAPE[1]) * np.where(rng.random(SHAPE[1]) < 0.5, -1.0, 1.0)
    return x, dy, w


F64_EXPONENTS = sorted(set(range(-300, 301, 25)) | {-160, -103, -50, 105, 110, 153, 154, 160})


@pytest.mark.parametrize("eps", [0.0, 1e-5], ids=["eps0", "eps_default"])
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
@pytest.mark.parametrize("G", [4, 2], ids=["instance", "group"])
def test_float64_magnitude_sweep(eps, cl, G):
    for i, e in enumerate(F64_EXPONENTS):
        x, dy, w = _data(i, np.float64, cl, 10.0**e)
        want = mp_backward(dy, x, G, w, eps, cl)
        got = _call(dy, x, G, w, eps, cl)
        for name, a, b in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
            _close(a, b, 1e-12, f"1e{e} {name}")


def test_grad_x_scales_inversely_with_x_at_1e110():
    """grad_x of x * 1e110 is grad_x of x divided by 1e110 (eps = 0: exact
    scaling), within float64's rounding."""
    r = np.random.default_rng(0)
    x = r.standard_normal((1, 1, 8, 8))
    dy = r.standard_normal(x.shape)
    g = fastnorm.instance_norm_backward(dy, x, eps=0.0)
    for m in (1e-200, 1e-110, 1e110, 1e160, 1e300):
        gm = fastnorm.instance_norm_backward(dy, x * m, eps=0.0)
        _close(gm[0] * m, g[0], 1e-13, f"{m:g} grad_x")
        _close(gm[1], g[1], 1e-13, f"{m:g} grad_weight")
        _close(gm[2], g[2], 0.0, f"{m:g} grad_bias")


def _formats():
    out = [("float32", np.float32, range(-36, 37, 6), 2e-6, 1e-6)]
    out.append(("float16", np.float16, range(-4, 4), 3e-3, 1e-5))
    if ml_dtypes is not None:
        out.append(("bfloat16", ml_dtypes.bfloat16, range(-36, 37, 6), 2e-2, 1e-5))
    return out


@pytest.mark.parametrize("name,dtype,exps,rtol,artol", _formats(), ids=[f[0] for f in _formats()])
@pytest.mark.parametrize("eps", [0.0, 1e-5], ids=["eps0", "eps_default"])
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_narrow_types_magnitude_sweep(name, dtype, exps, rtol, artol, eps, cl):
    """float32 and 16-bit storage: the gradients of the stored values, grad_x
    rounded to the storage type, grad_weight and grad_bias float32."""
    for i, e in enumerate(exps):
        x, dy, w = _data(100 + i, dtype, cl, 10.0**e)
        for G in (4, 2):
            want = mp_backward(dy, x, G, w, eps, cl)
            got = _call(dy, x, G, w, eps, cl)
            assert got[0].dtype == x.dtype
            _close(got[0], want[0], rtol, f"{name} 1e{e} G={G} grad_x")
            _close(got[1], want[1], artol, f"{name} 1e{e} G={G} grad_weight")
            _close(got[2], want[2], artol, f"{name} 1e{e} G={G} grad_bias")


def _bits(r):
    return [np.asarray(a).tobytes() for a in r]


def _extreme_cases():
    cases = [(np.float64, 1e-200, 0.0), (np.float64, 1e110, 1e-5), (np.float64, 1e200, 0.0), (np.float64, 1e-120, 0.0)]
    if ml_dtypes is not None:
        cases += [(ml_dtypes.bfloat16, 1e-30, 0.0), (ml_dtypes.bfloat16, 1e30, 1e-5)]
    return cases


@pytest.mark.parametrize("dtype,mag,eps", _extreme_cases())
@pytest.mark.parametrize("cl", [False, True], ids=["cf", "cl"])
def test_extremes_bit_identical(dtype, mag, eps, cl):
    """The rescued results: the same bits at every SIMD level and thread
    count, a mix of rescued and ordinary units included."""
    rng = np.random.default_rng(7)
    shape = (3, 40, 33, 6) if cl else (3, 6, 40, 33)
    x = rng.standard_normal(shape) + 2.0
    if cl:
        x[1, ..., 2:4] *= mag  # some units far out, the others ordinary
    else:
        x[1, 2:4] *= mag
    x = x.astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(6)
    res = []
    for level in LEVELS:
        with kernels(isa=level):
            for nt in (1, 2, 3):
                for G in (6, 3):
                    res.append((level, nt, G, _bits(_call(dy, x, G, w, eps, cl, num_threads=nt))))
    for G in (6, 3):
        ref = [r for r in res if r[2] == G]
        for level, nt, _, bits in ref[1:]:
            assert bits == ref[0][3], f"{level} with {nt} threads differs (G={G})"
