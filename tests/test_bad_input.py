"""One table of every invalid argument of every public function: exact exception
type, a message naming the argument (and where it matters, the value or the
property that failed), and out left untouched.  (Integer inputs are valid:
the bad dtypes here are bool, complex, bytes, timedelta, object and long
double.)"""

import numpy as np
import pytest
from _optional import require

import fastnorm

X = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
M = np.zeros((2, 4))
V1 = np.ones((2, 4))


# (function name, exception, word or words the message must contain, call(out) -> None)
def cases():
    F = fastnorm
    t = []

    def add(name, exc, words, f):
        t.append((name, exc, (words,) if isinstance(words, str) else tuple(words), f))

    for fname, base in [
        ("instance_norm", lambda out, **k: F.instance_norm(k.pop("x", X), out=out, **k)),
        ("group_norm", lambda out, **k: F.group_norm(k.pop("x", X), k.pop("G", 2), out=out, **k)),
        ("normalize", lambda out, **k: F.normalize(k.pop("x", X), k.pop("mean", M), k.pop("var", V1), out=out, **k)),
    ]:
        add(fname, TypeError, "x", lambda o, b=base: b(o, x=X.astype("S4")))
        add(fname, TypeError, "x", lambda o, b=base: b(o, x=X.astype(np.complex64)))
        add(fname, TypeError, "x", lambda o, b=base: b(o, x=X > 0))
        add(fname, TypeError, "x", lambda o, b=base: b(o, x=X.astype(object)))
        add(fname, ValueError, ("x", "(5, 6)"), lambda o, b=base: b(o, x=X[0, 0]))
        add(fname, ValueError, "channel_axis", lambda o, b=base: b(o, channel_axis=2))
        add(fname, ValueError, "channel_axis", lambda o, b=base: b(o, channel_axis=0))
        add(fname, TypeError, "channel_axis", lambda o, b=base: b(o, channel_axis="1"))
        add(fname, ValueError, "eps", lambda o, b=base: b(o, eps=-1.0))
        add(fname, ValueError, "eps", lambda o, b=base: b(o, eps=float("nan")))
        add(fname, ValueError, "eps", lambda o, b=base: b(o, eps=float("inf")))
        add(fname, TypeError, "eps", lambda o, b=base: b(o, eps="small"))
        add(fname, ValueError, "num_threads", lambda o, b=base: b(o, num_threads=0))
        add(fname, TypeError, "num_threads", lambda o, b=base: b(o, num_threads=1.5))
        add(fname, ValueError, "weight", lambda o, b=base: b(o, weight=np.ones(3)))
        add(fname, ValueError, "weight", lambda o, b=base: b(o, weight=np.ones((4, 1))))
        add(fname, TypeError, "weight", lambda o, b=base: b(o, weight=np.ones(4, complex)))
        add(fname, ValueError, "bias", lambda o, b=base: b(o, bias=np.ones(5)))
        add(fname, TypeError, "bias", lambda o, b=base: b(o, bias=np.array(list("abcd"))))
        add(fname, ValueError, "activation", lambda o, b=base: b(o, activation="gelu"))
        add(fname, TypeError, "activation", lambda o, b=base: b(o, activation=1))
        add(fname, TypeError, "negative_slope", lambda o, b=base: b(o, activation="leaky_relu", negative_slope="0.1"))
        add(
            fname,
            ValueError,
            "negative_slope",
            lambda o, b=base: b(o, activation="leaky_relu", negative_slope=float("inf")),
        )
        add(fname, ValueError, ("out", "shape"), lambda o, b=base: b(np.empty((2, 4, 5, 7), np.float32)))
        add(fname, TypeError, ("out", "dtype"), lambda o, b=base: b(np.empty(X.shape, np.float64)))
        add(
            fname, ValueError, ("out", "contiguous"), lambda o, b=base: b(np.empty((2, 4, 5, 12), np.float32)[..., ::2])
        )
        add(fname, TypeError, "out", lambda o, b=base: b([0.0]))
    # instance_norm: more kinds of bad value for the arguments every function shares
    IN = F.instance_norm
    add("instance_norm", TypeError, "x", lambda o: IN(X.astype("m8[s]"), out=o))
    add("instance_norm", TypeError, "dtype", lambda o: IN(X > 0, out=o))
    add("instance_norm", TypeError, "x", lambda o: IN(X.astype(np.longdouble), out=o))
    add("instance_norm", ValueError, "x", lambda o: IN(np.zeros(5, np.float32), out=o))
    add("instance_norm", TypeError, "x", lambda o: IN("abc", out=o))
    add("instance_norm", ValueError, "channel_axis", lambda o: IN(X, channel_axis=-2, out=o))
    add("instance_norm", TypeError, "channel_axis", lambda o: IN(X, channel_axis=1.0, out=o))
    add("instance_norm", TypeError, "channel_axis", lambda o: IN(X, channel_axis="1", out=o))
    add("instance_norm", ValueError, "weight", lambda o: IN(X, np.ones(5), out=o))
    add("instance_norm", ValueError, "bias", lambda o: IN(X, bias=np.ones(3), out=o))
    add("instance_norm", ValueError, "bias", lambda o: IN(X, bias=np.ones((1, 4)), out=o))
    add("instance_norm", ValueError, "eps", lambda o: IN(X, eps=-1e-5, out=o))
    add("instance_norm", TypeError, "eps", lambda o: IN(X, eps=None, out=o))
    add("instance_norm", ValueError, "num_threads", lambda o: IN(X, num_threads=-2, out=o))
    add("instance_norm", TypeError, "num_threads", lambda o: IN(X, num_threads=2.0, out=o))
    add("instance_norm", TypeError, "num_threads", lambda o: IN(X, num_threads=True, out=o))
    add("instance_norm", TypeError, "num_threads", lambda o: IN(X, num_threads="2", out=o))
    # negative_slope is checked even when no activation uses it
    add("instance_norm", TypeError, "negative_slope", lambda o: IN(X, negative_slope="x", out=o))
    add(
        "instance_norm",
        ValueError,
        ("out", "contiguous"),
        lambda o: IN(X, out=np.asfortranarray(np.empty(X.shape, np.float32))),
    )
    add("group_norm", ValueError, "num_groups", lambda o: F.group_norm(X, 3, out=o))
    add("group_norm", ValueError, "num_groups", lambda o: F.group_norm(X, 0, out=o))
    add("group_norm", TypeError, "num_groups", lambda o: F.group_norm(X, "2", out=o))
    add("normalize", ValueError, "mean", lambda o: F.normalize(X, np.zeros(3), V1, out=o))
    add("normalize", ValueError, "var", lambda o: F.normalize(X, M, np.ones((4, 2)), out=o))
    add("normalize", ValueError, "var", lambda o: F.normalize(X, M, -V1, out=o))
    add("normalize", TypeError, "mean", lambda o: F.normalize(X, M.astype(complex), V1, out=o))
    for fname, fn in [("instance_stats", F.instance_stats), ("instance_moments", F.instance_moments)]:
        add(fname, TypeError, "x", lambda o, f=fn: f(X > 0))
        add(fname, ValueError, "x", lambda o, f=fn: f(np.zeros((3, 4), np.float32)))
        add(fname, ValueError, "channel_axis", lambda o, f=fn: f(X, channel_axis=-2))
        add(fname, ValueError, "num_threads", lambda o, f=fn: f(X, num_threads=-1))
        add(fname, TypeError, "num_threads", lambda o, f=fn: f(X, num_threads="4"))
    add("instance_stats", ValueError, "channel_axis", lambda o: F.instance_stats(X, channel_axis=0))
    add("instance_stats", TypeError, "channel_axis", lambda o: F.instance_stats(X, channel_axis="1"))
    add("instance_stats", ValueError, "num_threads", lambda o: F.instance_stats(X, num_threads=0))
    add("adain", TypeError, "content", lambda o: F.adain(X > 0, X))
    add("adain", TypeError, "style", lambda o: F.adain(X, X.astype(np.complex64)))
    add("adain", ValueError, "content", lambda o: F.adain(X[0], X))
    add("adain", ValueError, "style", lambda o: F.adain(X, X[:, :3]))
    add("adain", ValueError, "style", lambda o: F.adain(np.concatenate([X, X, X]), X))
    add("adain", ValueError, "alpha", lambda o: F.adain(X, X, alpha=-0.1))
    add("adain", TypeError, "alpha", lambda o: F.adain(X, X, alpha=None))
    add("adain", ValueError, "eps", lambda o: F.adain(X, X, eps=-1))
    add("adain", ValueError, "channel_axis", lambda o: F.adain(X, X, channel_axis=3 - 1))
    add("merge_moments", TypeError, "Moments", lambda o: F.merge_moments(F.instance_moments(X), (1, 2)))
    add("InstanceNorm", ValueError, "num_features", lambda o: F.InstanceNorm(0))
    add("InstanceNorm", ValueError, "eps", lambda o: F.InstanceNorm(4, eps=-1))
    add("InstanceNorm", TypeError, "momentum", lambda o: F.InstanceNorm(4, momentum="0.1"))
    add("InstanceNorm", TypeError, "num_features", lambda o: F.InstanceNorm("3"))
    add("InstanceNorm", ValueError, "channel_axis", lambda o: F.InstanceNorm(4, channel_axis=0))
    add("InstanceNorm", ValueError, "channel_axis", lambda o: F.InstanceNorm(4, channel_axis=-2))
    # channel_axis=2 is channels last for a 3-d input only (as for the functions)
    add("InstanceNorm", ValueError, "channel_axis", lambda o: F.InstanceNorm(4, channel_axis=2)(X))
    add("InstanceNorm", ValueError, "channels", lambda o: F.InstanceNorm(5)(X))
    return t


CASES = cases()


@pytest.mark.parametrize("name,exc,words,fn", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_argument(name, exc, words, fn):
    out = np.full(X.shape, 7.0, np.float32)
    with pytest.raises(exc) as e:
        fn(out)
    for word in words:
        assert word in str(e.value), f"message does not name {word!r}: {e.value}"
    assert (out == 7.0).all(), "out was written before validation finished"


def test_case_count():
    # the closing note reports this number
    assert len(CASES) >= 100


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
    with pytest.raises(TypeError, match="complex64"):
        fastnorm.instance_norm(X.astype(np.complex64))


def test_mixed_array_types_name_both_arguments():
    """A NumPy array where a tensor of the first argument's kind is needed
    (and the other way round): a TypeError naming both, not an AttributeError
    from deep inside."""
    torch = require("torch")
    dy = np.ones((2, 4, 5), np.float32)
    xt = torch.ones(2, 4, 5)
    for call, words in [
        (lambda: fastnorm.instance_norm_backward(dy, xt), ("grad_out", "numpy.ndarray", "x", "torch.Tensor")),
        (lambda: fastnorm.group_norm_backward(dy, xt, 2), ("grad_out", "numpy.ndarray", "x", "torch.Tensor")),
        (lambda: fastnorm.adain(dy, xt), ("content", "numpy.ndarray", "style", "torch.Tensor")),
    ]:
        with pytest.raises(TypeError, match="must be the same kind of array") as e:
            call()
        for word in words:
            assert word in str(e.value), str(e.value)
    with pytest.raises(TypeError, match="x must be a torch.Tensor like grad_out"):
        fastnorm.instance_norm_backward(xt, dy)


def test_torch_dtype_that_is_no_output_type_names_dtype():
    torch = require("torch")
    x = torch.randn(2, 4, 5)
    for d in [getattr(torch, "float8_e4m3fn", torch.complex64), torch.complex64, torch.int32, torch.bool]:
        with pytest.raises(TypeError, match=rf"dtype must be None or a floating dtype .*got {d}"):
            fastnorm.instance_norm(x, dtype=d)
    assert fastnorm.instance_norm(x, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("dt", [">i2", ">u2", ">i4", ">u8", ">i8"])
def test_big_endian_integers_are_converted_once(dt):
    """As big-endian floats are: the result of the native-order input."""
    rng = np.random.default_rng(7)
    native = rng.integers(0, 1000, (2, 3, 4, 5)).astype(np.dtype(dt).newbyteorder("="))
    big = native.astype(dt)
    assert not big.dtype.isnative
    np.testing.assert_array_equal(fastnorm.instance_norm(big), fastnorm.instance_norm(native))
    np.testing.assert_array_equal(
        fastnorm.group_norm(big, 3, activation="relu"), fastnorm.group_norm(native, 3, activation="relu")
    )
    for a, b in zip(fastnorm.instance_stats(big), fastnorm.instance_stats(native)):
        np.testing.assert_array_equal(a, b)
