"""Property tests (hypothesis) over every public function: random shapes (zero-size
axes, one-element planes, C up to 4096, 1 to 3 spatial axes), dtypes, both layouts,
strided views, affine, eps, out= and in place, against the float64 oracle."""

import numpy as np
from _optional import require

hypothesis = require("hypothesis")
import _reference as R  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnorm  # noqa: E402

DTYPES = [np.float32, np.float64, np.float16]
MAX_ELEMS = 6000


@st.composite
def cases(draw, zero_ok=True):
    nsp = draw(st.integers(1, 3))
    wide = draw(st.integers(0, 9)) == 0  # sometimes a very wide C with tiny planes
    C = draw(st.integers(1, 4096)) if wide else draw(st.integers(0 if zero_ok else 1, 9))
    N = draw(st.integers(0 if zero_ok else 1, 3))
    lo = 0 if zero_ok else 1
    sp = [draw(st.integers(lo, 12)) for _ in range(nsp)]
    if wide:
        sp = [draw(st.integers(lo, 2)) for _ in range(nsp)]
    while N * C * int(np.prod(sp)) > MAX_ELEMS and max(sp) > 1:
        sp[int(np.argmax(sp))] //= 2
    dtype = draw(st.sampled_from(DTYPES))
    channel_axis = draw(st.sampled_from([1, -1]))
    seed = draw(st.integers(0, 2**32 - 1))
    loc = draw(st.sampled_from([0.0, 1.0, -30.0, 100.0]))
    scale = draw(st.sampled_from([1.0, 0.1, 10.0]))
    view = draw(st.sampled_from(["contiguous", "sliced", "negative", "transposed", "fortran"]))
    return dict(N=N, C=C, sp=sp, dtype=dtype, channel_axis=channel_axis, seed=seed, loc=loc, scale=scale, view=view)


def build(c):
    rng = np.random.default_rng(c["seed"])
    cf = (c["N"], c["C"], *c["sp"])
    shape = cf if c["channel_axis"] == 1 else (c["N"], *c["sp"], c["C"])
    v = c["view"]
    if v == "sliced":  # a strided view into a larger buffer
        big = (c["loc"] + c["scale"] * rng.standard_normal([2 * s + 1 for s in shape])).astype(c["dtype"])
        x = big[tuple(slice(1, 1 + 2 * s, 2) for s in shape)]
    elif v == "negative":
        x = (c["loc"] + c["scale"] * rng.standard_normal(shape)).astype(c["dtype"])[::-1, ..., ::-1]
    elif v == "transposed":
        base = (c["loc"] + c["scale"] * rng.standard_normal(shape[::-1])).astype(c["dtype"])
        x = base.transpose(*range(len(shape) - 1, -1, -1))
    elif v == "fortran":
        x = np.asfortranarray((c["loc"] + c["scale"] * rng.standard_normal(shape)).astype(c["dtype"]))
    else:
        x = (c["loc"] + c["scale"] * rng.standard_normal(shape)).astype(c["dtype"])
    assert x.shape == shape
    return x, rng


def affine(rng, C, which):
    w = rng.uniform(0.25, 2.0, C) if which in ("w", "wb") else None
    b = rng.standard_normal(C) if which in ("b", "wb") else None
    return w, b


EPS = st.sampled_from([1e-5, 1e-3, 0.5, 0.0])
OUTMODE = st.sampled_from(["new", "out", "inplace"])


def run_out(fn, x, mode):
    if mode == "out":
        out = np.full(x.shape, 123, x.dtype)
        r = fn(x, out)
        assert r is out
        return r
    if mode == "inplace":
        xc = np.ascontiguousarray(x).copy()
        r = fn(xc, xc)
        assert r is xc
        return r
    return fn(x, None)


@given(
    cases(), st.sampled_from(["", "w", "b", "wb"]), EPS, OUTMODE, st.sampled_from([None, "relu", "leaky_relu", "silu"])
)
def test_instance_norm_property(c, aff, eps, mode, act):
    x, rng = build(c)
    w, b = affine(rng, c["C"], aff)
    ax = c["channel_axis"]
    ref = R.instance_norm(x, w, b, eps, ax, act, 0.1)
    y = run_out(
        lambda a, o: fastnorm.instance_norm(
            a, w, b, eps=eps, channel_axis=ax, activation=act, negative_slope=0.1, out=o
        ),
        x,
        mode,
    )
    assert y.dtype == x.dtype and y.shape == x.shape and y.flags.c_contiguous
    R.assert_close(y, ref)


@given(cases(zero_ok=False), st.data(), EPS, OUTMODE)
def test_group_norm_property(c, data, eps, mode):
    x, rng = build(c)
    C = c["C"]
    G = data.draw(st.sampled_from([g for g in range(1, min(C, 64) + 1) if C % g == 0] + [C]))
    w, b = affine(rng, C, "wb")
    ax = c["channel_axis"]
    y = run_out(lambda a, o: fastnorm.group_norm(a, G, w, b, eps=eps, channel_axis=ax, out=o), x, mode)
    R.assert_close(y, R.group_norm(x, G, w, b, eps, ax))


@given(cases())
def test_stats_and_moments_property(c):
    x, _ = build(c)
    ax = c["channel_axis"]
    mean, var = fastnorm.instance_stats(x, channel_axis=ax)
    N, C = c["N"], c["C"]
    assert mean.shape == (N, C) == var.shape
    assert mean.dtype == (np.float64 if c["dtype"] == np.float64 else np.float32)
    if x.size:
        rm, rv = R.stats(x, ax)
        np.testing.assert_allclose(mean, rm, rtol=1e-6, atol=1e-6 * (abs(c["loc"]) + c["scale"]))
        np.testing.assert_allclose(var, rv, rtol=1e-5, atol=1e-12)
        m = fastnorm.instance_moments(x, channel_axis=ax)
        np.testing.assert_allclose(m.mean, rm, rtol=1e-13, atol=1e-13 * (abs(c["loc"]) + c["scale"]))
        np.testing.assert_allclose(m.var, rv, rtol=1e-11, atol=1e-13 * c["scale"] ** 2)
        # tiles along the first spatial axis merge to the whole
        spa = 2 if ax == 1 else 1
        n = x.shape[spa]
        if n >= 2:
            k = n // 2
            a = fastnorm.instance_moments(np.take(x, np.arange(k), axis=spa), channel_axis=ax)
            b = fastnorm.instance_moments(np.take(x, np.arange(k, n), axis=spa), channel_axis=ax)
            mm = a.merge(b)
            np.testing.assert_allclose(mm.mean, m.mean, rtol=1e-13, atol=1e-13 * (abs(c["loc"]) + c["scale"]))
            np.testing.assert_allclose(mm.m2, m.m2, rtol=1e-10, atol=1e-10 * c["scale"] ** 2)


@given(cases(), st.booleans(), EPS, OUTMODE)
def test_normalize_property(c, per_batch, eps, mode):
    x, rng = build(c)
    N, C = c["N"], c["C"]
    shape = (N, C) if per_batch else (C,)
    mean = c["loc"] + rng.standard_normal(shape)
    var = rng.uniform(0.1, 3.0, shape) * c["scale"] ** 2
    w, b = affine(rng, C, "wb")
    ax = c["channel_axis"]
    y = run_out(lambda a, o: fastnorm.normalize(a, mean, var, w, b, eps=eps, channel_axis=ax, out=o), x, mode)
    R.assert_close(y, R.normalize(x, mean, var, w, b, eps, ax))


@given(cases(zero_ok=False), st.booleans(), st.sampled_from([1.0, 0.5, 0.0]))
def test_adain_property(c, style_one, alpha):
    x, rng = build(c)
    ax = c["channel_axis"]
    Ns = 1 if style_one else c["N"]
    sp = [int(s) for s in rng.integers(1, 6, len(c["sp"]))]
    sshape = (Ns, c["C"], *sp) if ax == 1 else (Ns, *sp, c["C"])
    style = (rng.standard_normal(sshape) * 2 - 1).astype(c["dtype"])
    y = fastnorm.adain(x, style, channel_axis=ax, alpha=alpha)
    R.assert_close(y, R.adain(x, style, 1e-5, ax, alpha), c["dtype"])


@given(cases(zero_ok=False), st.sampled_from([1, 2, 3, 5, 8]))
def test_threads_bit_identical_property(c, nt):
    x, rng = build(c)
    ax = c["channel_axis"]
    a = fastnorm.instance_norm(x, channel_axis=ax, num_threads=1)
    b = fastnorm.instance_norm(x, channel_axis=ax, num_threads=nt)
    np.testing.assert_array_equal(a, b)
