"""Arguments outside the contract that the table of test_bad_input.py does
not hold: num_groups=None, masked arrays, big-endian input, ragged
coefficients, objects of array libraries that are not arrays, Dask arrays
of unknown chunk sizes or with a negative variance."""

import numpy as np
import pytest
from _optional import require

import fastnorm


def test_group_norm_num_groups_none(rng):
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    out = np.full_like(x, 7.0)
    with pytest.raises(TypeError, match=r"num_groups must be an int, got None"):
        fastnorm.group_norm(x, None)
    with pytest.raises(TypeError, match=r"num_groups must be an int, got None"):
        fastnorm.group_norm(x, None, out=out)
    assert (out == 7.0).all()
    torch = require("torch")
    with pytest.raises(TypeError, match=r"num_groups must be an int, got None"):
        fastnorm.group_norm(torch.from_numpy(x), None)
    da = require("dask.array")
    with pytest.raises(TypeError, match=r"num_groups must be an int, got None"):
        fastnorm.group_norm(da.from_array(x), None)


def test_masked_arrays_are_refused(rng):
    x = rng.random((2, 3, 8, 8))
    mx = np.ma.masked_greater(x, 0.9)
    m, v = fastnorm.instance_stats(x)
    msg = r"is a numpy\.ma\.MaskedArray: masks are not supported"
    for call, name in [
        (lambda: fastnorm.instance_stats(mx), "x"),
        (lambda: fastnorm.instance_norm(mx), "x"),
        (lambda: fastnorm.instance_moments(mx), "x"),
        (lambda: fastnorm.group_norm(mx, 3), "x"),
        (lambda: fastnorm.adain(mx, x), "content"),
        (lambda: fastnorm.adain(x, mx), "style"),
        (lambda: fastnorm.instance_norm(x, np.ma.masked_less(np.ones(3), 0)), "weight"),
        (lambda: fastnorm.instance_norm(x, None, np.ma.masked_equal(np.zeros(3), 0)), "bias"),
        (lambda: fastnorm.normalize(x, np.ma.masked_greater(m, 0.5), v), "mean"),
        (lambda: fastnorm.normalize(x, m, np.ma.masked_greater(v, 0.05)), "var"),
        (lambda: fastnorm.InstanceNorm(3)(mx), "x"),
    ]:
        with pytest.raises(TypeError, match=rf"^{name} {msg}"):
            call()
    out = np.ma.masked_array(np.zeros_like(x), mask=np.zeros(x.shape, bool))
    with pytest.raises(TypeError, match=rf"^out {msg}"):
        fastnorm.instance_norm(x, out=out)
    assert (out.data == 0).all()
    layer = fastnorm.InstanceNorm(3, affine=True)
    with pytest.raises(TypeError, match=rf"state_dict\['weight'\] {msg}"):
        layer.load_state_dict({"weight": np.ma.masked_greater(np.ones(3), 2), "bias": np.zeros(3)})


def test_dask_masked_arrays_are_refused(rng):
    da = require("dask.array")
    x = da.from_array(rng.random((2, 3, 8, 8)), chunks=(1, 3, 4, 8))
    mx = da.ma.masked_greater(x, 0.9)
    msg = r"is a Dask array of numpy\.ma\.MaskedArray chunks: masks are not supported"
    with pytest.raises(TypeError, match=rf"^x {msg}"):
        fastnorm.instance_stats(mx)
    with pytest.raises(TypeError, match=rf"^x {msg}"):
        fastnorm.instance_norm(mx)
    with pytest.raises(TypeError, match=rf"^style {msg}"):
        fastnorm.adain(x, mx)
    m, v = fastnorm.instance_stats(x)
    with pytest.raises(TypeError, match=rf"^var {msg}"):
        fastnorm.normalize(x, m, da.ma.masked_greater(v, 0.05))


def test_big_endian_input_is_converted_once(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    xb = x.astype(">f4")
    assert not xb.dtype.isnative
    w = np.linspace(0.5, 2, 3).astype(">f8")
    want = fastnorm.instance_norm(x, w.astype(np.float64))
    got = fastnorm.instance_norm(xb, w)
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fastnorm.group_norm(xb, 3), fastnorm.group_norm(x, 3))
    for a, b in zip(fastnorm.instance_stats(xb.astype(">f8")), fastnorm.instance_stats(x.astype(np.float64))):
        np.testing.assert_array_equal(a, b)
    m, v = fastnorm.instance_stats(x)
    np.testing.assert_array_equal(fastnorm.normalize(xb, m.astype(">f4"), v.astype(">f4")), fastnorm.normalize(x, m, v))
    np.testing.assert_array_equal(fastnorm.adain(xb, xb[:1]), fastnorm.adain(x, x[:1]))
    np.testing.assert_array_equal(fastnorm.instance_moments(xb).m2, fastnorm.instance_moments(x).m2)
    da = require("dask.array")
    np.testing.assert_array_equal(
        fastnorm.instance_norm(da.from_array(xb, chunks=(1, 3, 4, 8))).compute(), fastnorm.instance_norm(x)
    )


def test_ragged_coefficients_name_the_argument(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    out = np.full_like(x, 5.0)
    for kw, name in [(dict(weight=[[1.0, 2.0], [3.0], [4.0]]), "weight"), (dict(bias=[1.0, [2.0, 3.0], 4.0]), "bias")]:
        with pytest.raises(TypeError, match=rf"^{name} must be an array of 3 numbers, got list"):
            fastnorm.instance_norm(x, out=out, **kw)
    with pytest.raises(TypeError, match=r"^mean must be an array of numbers, got list"):
        fastnorm.normalize(x, [[1.0, 2.0], [3.0]], np.ones(3), out=out)
    with pytest.raises(TypeError, match=r"^var must be an array of numbers, got list"):
        fastnorm.normalize(x, np.zeros(3), [[1.0, 2.0], [3.0]], out=out)
    assert (out == 5.0).all()


def test_non_array_objects_from_torch_and_dask():
    torch = require("torch")
    things = [torch.Size([2, 3, 4, 4]), torch.nn.Conv2d(3, 3, 1), torch.float32, torch.device("cpu")]
    try:
        import dask.bag as db
    except ImportError:
        db = None
    if db is not None:
        things.append(db.from_sequence([1.0, 2.0, 3.0]))
    calls = [
        lambda a: fastnorm.instance_norm(a),
        lambda a: fastnorm.group_norm(a, 1),
        lambda a: fastnorm.instance_stats(a),
        lambda a: fastnorm.instance_moments(a),
        lambda a: fastnorm.normalize(a, np.zeros(3), np.ones(3)),
    ]
    for thing in things:
        qual = f"{type(thing).__module__}.{type(thing).__qualname__}"
        for call in calls:
            with pytest.raises(TypeError, match=r"^x must be an array of floats .* got " + qual.replace(".", r"\.")):
                call(thing)
        with pytest.raises(TypeError, match=r"^content must be an array of floats"):
            fastnorm.adain(thing, np.zeros((1, 3, 4, 4)))


def test_dask_unknown_chunk_sizes(rng):
    da = require("dask.array")
    x = rng.standard_normal((4, 3, 4, 4))
    dx = da.from_array(x, chunks=(2, 3, 2, 4))
    u = dx[da.from_array(np.array([True, False, True, True]), chunks=2)]
    msg = r"x has unknown chunk sizes \(shape \(nan, 3, 4, 4\)\); call x\.compute_chunk_sizes\(\) first"
    for call in [
        lambda: fastnorm.instance_norm(u),
        lambda: fastnorm.group_norm(u, 3),
        lambda: fastnorm.normalize(u, np.zeros(3), np.ones(3)),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match=msg.replace("x", "content")):
        fastnorm.adain(u, x)
    with pytest.raises(ValueError, match=msg.replace("x", "style")):
        fastnorm.adain(dx, u)
    uc = dx[:, da.from_array(np.array([True, False, True]))]
    for call in [
        lambda: fastnorm.instance_norm(uc),
        lambda: fastnorm.instance_stats(uc),
        lambda: fastnorm.group_norm(uc, 1),
    ]:
        with pytest.raises(ValueError, match=msg.replace("nan, 3", "4, nan")):
            call()
    # what works on unknown batch sizes keeps working
    ref = x[[0, 2, 3]]
    # (the same spatial chunks merged in the same order: the same bits)
    np.testing.assert_array_equal(
        fastnorm.instance_stats(u)[1].compute(), fastnorm.instance_stats(dx)[1].compute()[[0, 2, 3]]
    )
    np.testing.assert_array_equal(fastnorm.instance_norm(u.rechunk({2: -1})).compute(), fastnorm.instance_norm(ref))


def test_dask_normalize_negative_var(rng):
    da = require("dask.array")
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 3, 8, 16))
    mean = np.zeros((2, 3))
    var = np.ones((2, 3))
    var[1, 2] = -0.5
    with pytest.raises(ValueError, match="var must be >= 0"):
        fastnorm.normalize(x, mean, var)  # NumPy, the reference behaviour
    with pytest.raises(ValueError, match="var must be >= 0"):
        fastnorm.normalize(dx, mean, var)
    with pytest.raises(ValueError, match="var must be >= 0"):
        fastnorm.normalize(dx, mean, var[1])  # (C,) broadcast
    # a lazy var is checked in the graph: the compute fails with the same message
    y = fastnorm.normalize(dx, da.from_array(mean), da.from_array(var, chunks=(1, 3)))
    with pytest.raises(ValueError, match="var must be >= 0"):
        y.compute(scheduler="sync")
    # a valid lazy var still gives NumPy's answer
    ok = np.abs(var)
    np.testing.assert_array_equal(
        fastnorm.normalize(dx, da.from_array(mean), da.from_array(ok, chunks=(1, 3))).compute(scheduler="sync"),
        fastnorm.normalize(x, mean, ok),
    )
