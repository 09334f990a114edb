"""Every invalid argument gives TypeError/ValueError naming it, before out is touched."""
import numpy as np
import pytest

import fastnorm

X = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)

CASES = [
    # (kwargs overriding the call, exception, word the message must contain)
    (dict(x=X.astype(np.int32)), TypeError, "x"),
    (dict(x=X.astype(np.int64)), TypeError, "dtype"),
    (dict(x=X > 0), TypeError, "x"),
    (dict(x=X.astype(np.complex64)), TypeError, "x"),
    (dict(x=X.astype(object)), TypeError, "x"),
    (dict(x=X.astype(np.longdouble)), TypeError, "x"),
    (dict(x=np.zeros((4, 5), np.float32)), ValueError, "(4, 5)"),
    (dict(x=np.zeros(5, np.float32)), ValueError, "x"),
    (dict(x="abc"), TypeError, "x"),
    (dict(channel_axis=0), ValueError, "channel_axis"),
    (dict(channel_axis=2), ValueError, "channel_axis"),
    (dict(channel_axis=-2), ValueError, "channel_axis"),
    (dict(channel_axis=1.0), TypeError, "channel_axis"),
    (dict(channel_axis="1"), TypeError, "channel_axis"),
    (dict(weight=np.ones(4)), ValueError, "weight"),
    (dict(weight=np.ones((3, 1))), ValueError, "weight"),
    (dict(weight=np.ones(3, complex)), TypeError, "weight"),
    (dict(bias=np.ones(2)), ValueError, "bias"),
    (dict(bias=np.ones((1, 3))), ValueError, "bias"),
    (dict(bias=np.array(["a", "b", "c"])), TypeError, "bias"),
    (dict(eps=-1e-5), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps=float("inf")), ValueError, "eps"),
    (dict(eps="1e-5"), TypeError, "eps"),
    (dict(eps=None), TypeError, "eps"),
    (dict(num_threads=0), ValueError, "num_threads"),
    (dict(num_threads=-2), ValueError, "num_threads"),
    (dict(num_threads=2.0), TypeError, "num_threads"),
    (dict(num_threads=True), TypeError, "num_threads"),
    (dict(num_threads="2"), TypeError, "num_threads"),
    (dict(activation="gelu"), ValueError, "activation"),
    (dict(activation=3), TypeError, "activation"),
    (dict(negative_slope="x"), TypeError, "negative_slope"),
]


@pytest.mark.parametrize("kw,exc,word", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_instance_norm_bad_input(kw, exc, word):
    kw = dict(kw)
    x = kw.pop("x", X)
    out = np.full(X.shape, 42.0, np.float32)
    with pytest.raises(exc) as e:
        fastnorm.instance_norm(x, out=out, **kw)
    assert word in str(e.value)
    assert (out == 42.0).all(), "out written before validation"


OUT_CASES = [
    (np.empty((2, 3, 4, 6), np.float32), ValueError, "shape"),
    (np.empty((2, 3, 4, 5), np.float64), TypeError, "dtype"),
    (np.empty((2, 3, 4, 10), np.float32)[..., ::2], ValueError, "contiguous"),
    (np.asfortranarray(np.empty((2, 3, 4, 5), np.float32)), ValueError, "contiguous"),
    ([[0.0]], TypeError, "out"),
]


@pytest.mark.parametrize("out,exc,word", OUT_CASES, ids=[str(i) for i in range(len(OUT_CASES))])
def test_bad_out(out, exc, word):
    with pytest.raises(exc) as e:
        fastnorm.instance_norm(X, out=out)
    assert word in str(e.value) and "out" in str(e.value)


def test_read_only_out():
    out = np.full(X.shape, 42.0, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out.*writeable"):
        fastnorm.instance_norm(X, out=out)
    assert (out == 42.0).all()


def test_message_shows_value():
    with pytest.raises(ValueError, match=r"x must have at least 3 dimensions \(N, C, \*spatial\), got shape \(4, 5\)"):
        fastnorm.instance_norm(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="got -0.5"):
        fastnorm.instance_norm(X, eps=-0.5)
    with pytest.raises(TypeError, match="int32"):
        fastnorm.instance_norm(X.astype(np.int32))


@pytest.mark.parametrize("kw,exc", [
    (dict(channel_axis=0), ValueError), (dict(num_threads=0), ValueError), (dict(channel_axis=None), TypeError)])
def test_instance_stats_bad_input(kw, exc):
    with pytest.raises(exc):
        fastnorm.instance_stats(X, **kw)
    with pytest.raises(TypeError):
        fastnorm.instance_stats(X.astype(np.int16))
    with pytest.raises(ValueError):
        fastnorm.instance_stats(X[0, 0])
