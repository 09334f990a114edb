"""Integer inputs and an output dtype other than the input's, at the engine
level: the CPU backend's primitives norm / apply / triples /
moments with ``ocode``, at every SIMD level of this build and CPU.

The contract (fn_base.h, "Input and output types"): the kernels that run are
the output type's, and each input element is converted on load to the value
those kernels load from their own type, float for float32 and 16-bit outputs,
double for float64 ones.  So every case here is an equality of bits with the
same call on a converted copy (what the engine never makes):

- integer -> float32 == the float32 path on x.astype(float32) (round to
  nearest even above 2^24), integer -> float64 == x.astype(float64);
- float16 / bfloat16 -> float32, float32 -> float64, float64 -> float32: the
  same, with astype to the output type;
- anything -> float16 / bfloat16: the 16-bit path on x.astype(float32), which
  is x.astype(float16) itself where float16 holds the values (uint8), and
  within float16's rounding of a float64 reference for float32 inputs;
- statistics alone: the exact values (x.astype(float64)).
"""

from __future__ import annotations

import numpy as np
import pytest
from _isa import LEVELS, UNFUSED_LEVEL, kernels

from fastnorm import _validate as V
from fastnorm._cpu import _backend as B
from fastnorm._cpu import _engine as E

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    BF16 = None

INTS = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
ACTS = [0, 1, 2, 3]  # none, relu, leaky_relu, silu
# (isa, fused) of every level here, and the unfused form where the build has one
CONFIGS = [(lv, None) for lv in LEVELS] + ([(UNFUSED_LEVEL, False)] if UNFUSED_LEVEL else [])
CONFIG_IDS = [f"{lv}{'-unfused' if f is False else ''}" for lv, f in CONFIGS]


def _code(dt):
    return V.dtype_code(np.dtype(dt))


def _ints(rng, dt, shape):
    """Values over the type's whole range, its ends included (int8 -128,
    int64 near 2^62 and its minimum, uint64 near 2^64), mixed with small ones
    so that the variance is not dominated by one end."""
    info = np.iinfo(dt)
    n = int(np.prod(shape))
    lo, hi = int(info.min), int(info.max)
    small = rng.integers(max(lo, -100), min(hi, 100) + 1, size=n)
    if np.dtype(dt).itemsize == 8:
        big = rng.integers(lo // 2, hi // 2, size=n, dtype=dt, endpoint=True).astype(object) * 2
        big = np.array([min(max(v, lo), hi) for v in big], dtype=dt)
    else:
        big = rng.integers(lo, hi, size=n, dtype=dt, endpoint=True)
    x = np.where(rng.random(n) < 0.5, small.astype(dt), big).astype(dt)
    x[0], x[-1] = info.min, info.max
    if n > 4:
        x[1] = info.max - 1
        if info.min < 0:
            x[2] = info.min + 1
    if np.dtype(dt) == np.int64 and n > 8:
        x[3:7] = [2**62, 2**62 + 1, 2**62 + 255, -(2**62) - 129]
    if np.dtype(dt) == np.uint64 and n > 8:
        x[3:7] = [2**64 - 1, 2**64 - 2, 2**63 + 1, 2**63 - 1]
    return x.reshape(shape)


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def _norm_args(rng, C, G, affine):
    w = rng.standard_normal(C) if affine else None
    b = rng.standard_normal(C) if affine else None
    return G, w, b


# channels-first (N, C, *S) and channels-last (N, *S, C) shapes: small planes,
# planes of several statistics blocks, C < 16 (virtual rows) and wide rows
SHAPES = [
    ((2, 3, 11, 13), False),
    ((1, 2, 17000), False),
    ((2, 9, 7, 3), True),
    ((1, 37, 37), True),
    ((1, 3, 2500), True),
]


def _cases(shape, cl):
    C = shape[-1] if cl else shape[1]
    out = [(C, False), (C, True)]
    if C % 3 == 0 and C > 3:
        out.append((C // 3, True))
    return out


@pytest.mark.parametrize("isa, fused", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dt", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_into_float32_and_float64_is_the_converted_copy(isa, fused, dt):
    rng = np.random.default_rng(22)
    code = _code(dt)
    with kernels(isa=isa, fused=fused):
        for shape, cl in SHAPES:
            x = _ints(rng, dt, shape)
            x32, x64 = x.astype(np.float32), x.astype(np.float64)
            for G, affine in _cases(shape, cl):
                G, w, b = _norm_args(rng, shape[-1] if cl else shape[1], G, affine)
                for act in ACTS if shape[0] == 2 else (0, 3):
                    for nt in (1, 2, 3):
                        y = B.norm(x, code, cl, G, w, b, 1e-5, act, 0.1, None, nt, ocode=V.F32)
                        _same(y, B.norm(x32, V.F32, cl, G, w, b, 1e-5, act, 0.1, None, nt))
                    y = B.norm(x, code, cl, G, w, b, 1e-5, act, 0.1, None, 2, ocode=V.F64)
                    _same(y, B.norm(x64, V.F64, cl, G, w, b, 1e-5, act, 0.1, None, 2))
            # the default output of an integer input is float32
            assert (
                B.norm(x, code, cl, shape[-1] if cl else shape[1], None, None, 1e-5, 0, 0.0, None, 1).dtype
                == np.float32
            )
            # statistics alone: the exact values (64-bit: astype's rounding)
            _same(B.triples(x, code, cl, 2), B.triples(x64, V.F64, cl, 2))


@pytest.mark.parametrize("isa, fused", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dt", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_into_16_bit_is_the_16_bit_path_on_float32_values(isa, fused, dt):
    rng = np.random.default_rng(23)
    code = _code(dt)
    outs = [(V.F16, np.float16)] + ([(V.BF16, BF16)] if BF16 is not None else [])
    with kernels(isa=isa, fused=fused):
        for shape, cl in SHAPES:
            x = _ints(rng, dt, shape)
            x32 = x.astype(np.float32)
            C = shape[-1] if cl else shape[1]
            for G, affine in _cases(shape, cl):
                G, w, b = _norm_args(rng, C, G, affine)
                for act in (0, 2, 3):
                    for oc, odt in outs:
                        y = B.norm(x, code, cl, G, w, b, 1e-5, act, 0.1, None, 1 + act % 3, ocode=oc)
                        assert y.dtype == odt
                        _same(y, B.norm(x32, V.F32, cl, G, w, b, 1e-5, act, 0.1, None, 1, ocode=oc))
                        if np.dtype(dt).itemsize == 1:
                            # float16 / bfloat16 hold every 8-bit integer: the 16-bit path itself
                            xh = x.astype(odt)
                            _same(y, B.norm(xh, oc, cl, G, w, b, 1e-5, act, 0.1, None, 2))


@pytest.mark.parametrize("isa, fused", CONFIGS, ids=CONFIG_IDS)
def test_apply_with_given_coefficients(isa, fused):
    """apply (normalize / adain's pass) reads integers the same way, into
    every output type, both layouts, every activation."""
    rng = np.random.default_rng(24)
    outs = [(V.F32, np.float32), (V.F64, np.float64), (V.F16, np.float16)]
    if BF16 is not None:
        outs.append((V.BF16, BF16))
    with kernels(isa=isa, fused=fused):
        for dt in INTS:
            code = _code(dt)
            for shape, cl in SHAPES:
                x = _ints(rng, dt, shape)
                N, C = shape[0], shape[-1] if cl else shape[1]
                mean = np.ascontiguousarray(rng.standard_normal((N, C)) * 50)
                scale = np.ascontiguousarray(rng.random((N, C)) * 1e-3)
                shift = np.ascontiguousarray(rng.standard_normal((N, C)))
                for oc, odt in outs:
                    ref_x = x.astype(np.float64) if oc == V.F64 else x.astype(np.float32)
                    ref_code = V.F64 if oc == V.F64 else V.F32
                    for act in (0, 1, 3):
                        y = B.apply(x, code, cl, mean, scale, shift, act, 0.2, None, 2, ocode=oc)
                        assert y.dtype == odt
                        want = B.apply(ref_x, ref_code, cl, mean, scale, shift, act, 0.2, None, 1, ocode=oc)
                        _same(y, want)
                        if oc in (V.F32, V.F64):
                            _same(y, B.apply(x.astype(odt), oc, cl, mean, scale, shift, act, 0.2, None, 3))


@pytest.mark.parametrize("isa, fused", CONFIGS, ids=CONFIG_IDS)
def test_floating_inputs_into_another_floating_type(isa, fused):
    rng = np.random.default_rng(25)
    halves = [(np.float16, V.F16)] + ([(BF16, V.BF16)] if BF16 is not None else [])
    with kernels(isa=isa, fused=fused):
        for shape, cl in SHAPES:
            C = shape[-1] if cl else shape[1]
            base = rng.standard_normal(shape) * 3 + 40
            for G, affine in _cases(shape, cl):
                G, w, b = _norm_args(rng, C, G, affine)
                for act in (0, 1, 3):
                    args = (cl, G, w, b, 1e-5, act, 0.05, None)
                    # 16-bit -> float32 and float64: their exact values
                    for hdt, hcode in halves:
                        xh = base.astype(hdt)
                        for oc, odt in ((V.F32, np.float32), (V.F64, np.float64)):
                            _same(B.norm(xh, hcode, *args, 2, ocode=oc), B.norm(xh.astype(odt), oc, *args, 1))
                        # into the other 16-bit type: its path on the float32 values
                        for oc2 in (V.F16, V.BF16):
                            if oc2 == hcode or (oc2 == V.BF16 and BF16 is None):
                                continue
                            _same(
                                B.norm(xh, hcode, *args, 3, ocode=oc2),
                                B.norm(xh.astype(np.float32), V.F32, *args, 1, ocode=oc2),
                            )
                    x32 = base.astype(np.float32)
                    x64 = base * 1.0000001
                    # float32 -> float64: x.astype(float64); float64 -> float32: x.astype(float32)
                    _same(B.norm(x32, V.F32, *args, 2, ocode=V.F64), B.norm(x32.astype(np.float64), V.F64, *args, 1))
                    _same(B.norm(x64, V.F64, *args, 2, ocode=V.F32), B.norm(x64.astype(np.float32), V.F32, *args, 1))
                    # float64 -> 16-bit: the 16-bit path on the float32 values
                    _same(
                        B.norm(x64, V.F64, *args, 3, ocode=V.F16),
                        B.norm(x64.astype(np.float32), V.F32, *args, 1, ocode=V.F16),
                    )
                # float32 -> float16: within float16's rounding of a float64
                # reference, plus the float arithmetic of the 16-bit path
                # (x - mean in float: a few float32 ulps of |x| / std)
                x32 = base.astype(np.float32)
                y = B.norm(x32, V.F32, cl, G, w, b, 1e-5, 0, 0.0, None, 2, ocode=V.F16)
                ref = B.norm(x32.astype(np.float64), V.F64, cl, G, w, b, 1e-5, 0, 0.0, None, 1)
                ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)
                wmax = np.abs(w).max() if w is not None else 1.0
                arith = 4 * 2.0**-24 * np.abs(x32).max() / x32.std() * wmax + 2.0**-24 * np.abs(ref)
                assert (np.abs(y.astype(np.float64) - ref) <= ulp + arith).all()


def test_out_given_and_in_place_of_the_same_size():
    """out of the output dtype is written; an int32 input normalized into
    float32 in its own buffer (same element size) is still elementwise right."""
    rng = np.random.default_rng(26)
    for cl, shape in ((False, (2, 3, 40, 41)), (True, (2, 40, 41, 3))):
        C = shape[-1] if cl else shape[1]
        x = _ints(rng, np.int32, shape)
        want = B.norm(x.astype(np.float32), V.F32, cl, C, None, None, 1e-5, 0, 0.0, None, 1)
        out = np.empty(shape, np.float32)
        y = B.norm(x, V.I32, cl, C, None, None, 1e-5, 0, 0.0, out, 2, ocode=V.F32)
        assert y is out
        _same(out, want)
        xi = x.copy()
        y = B.norm(xi, V.I32, cl, C, None, None, 1e-5, 0, 0.0, xi.view(np.float32), 2, ocode=V.F32)
        _same(y, want)


def test_moments_of_integers_are_exact():
    rng = np.random.default_rng(27)
    for dt in INTS:
        x = _ints(rng, dt, (2, 3, 50))
        got = B.moments(x, _code(dt), False, 2)
        want = B.moments(x.astype(np.float64), V.F64, False, 2)
        for g, w in zip(got, want):
            _same(g, w)


def test_large_inputs_every_plan():
    """Larger than the thresholds: waves, pipelined planes, backward passes and
    streaming stores (which change no bit)."""
    rng = np.random.default_rng(28)
    x = rng.integers(0, 256, size=(3, 3, 300, 301), dtype=np.uint8)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    old = E._tuning(stream_above_bytes=0, wave_bytes=1 << 14, backward_min_bytes=1 << 12)
    try:
        for cl, xx in ((False, x), (True, xl)):
            want = B.norm(xx.astype(np.float32), V.F32, cl, 3, None, None, 1e-5, 0, 0.0, None, 1)
            for nt in (1, 2, 3):
                _same(B.norm(xx, V.U8, cl, 3, None, None, 1e-5, 0, 0.0, None, nt, ocode=V.F32), want)
            want = B.norm(xx.astype(np.float64), V.F64, cl, 3, None, None, 1e-5, 0, 0.0, None, 1)
            _same(B.norm(xx, V.U8, cl, 3, None, None, 1e-5, 0, 0.0, None, 2, ocode=V.F64), want)
    finally:
        E._tuning(*old)


def test_plan_for_takes_integer_dtypes_and_an_output_dtype():
    p = E.plan_for((1, 2160, 3840, 3), np.uint8, channel_axis=-1, num_threads=1)
    assert (
        p["stream"]
        == E.plan_for((1, 2160, 3840, 3), np.uint8, channel_axis=-1, num_threads=1, out_dtype=np.float32)["stream"]
    )
    assert not E.plan_for((1, 2160, 3840, 3), np.uint8, channel_axis=-1, num_threads=1, out_dtype=np.float16)["stream"]
    with pytest.raises(ValueError, match="out_dtype"):
        E.plan_for((1, 3, 8, 8), np.uint8, out_dtype=np.int32)


@pytest.mark.parametrize("isa, fused", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dt", INTS, ids=lambda d: np.dtype(d).name)
def test_adain_of_integers_is_the_call_on_the_converted_copy(isa, fused, dt):
    """fastnorm.adain on integer content and style (and each with a floating
    other side) equals the call on their astype(float32) copies bit for bit,
    and with dtype=float64 / float16 the call on the copies into that type
    (values above 2^24 included: the statistics are of the loaded values)."""
    import fastnorm

    rng = np.random.default_rng(24)
    with kernels(isa=isa, fused=fused):
        for shape, cl in SHAPES:
            ax = -1 if cl else 1
            x = _ints(rng, dt, shape)
            s = _ints(rng, dt, (1,) + shape[1:])
            sf = rng.standard_normal(s.shape).astype(np.float32) * 3 + 1
            x32, s32 = x.astype(np.float32), s.astype(np.float32)
            for nt in (1, 3):
                for alpha in (1.0, 0.6):
                    kw = dict(channel_axis=ax, alpha=alpha, num_threads=nt)
                    _same(fastnorm.adain(x, s, **kw), fastnorm.adain(x32, s32, **kw))
                    _same(fastnorm.adain(x, sf, **kw), fastnorm.adain(x32, sf, **kw))
                    _same(fastnorm.adain(x32, s, **kw), fastnorm.adain(x32, s32, **kw))
            kw = dict(channel_axis=ax, num_threads=2)
            _same(
                fastnorm.adain(x, s, dtype=np.float64, **kw),
                fastnorm.adain(x.astype(np.float64), s.astype(np.float64), **kw),
            )
            _same(fastnorm.adain(x, s, dtype=np.float16, **kw), fastnorm.adain(x32, s32, dtype=np.float16, **kw))
