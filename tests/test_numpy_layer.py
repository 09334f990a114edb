"""fastnorm.InstanceNorm, the framework-free layer: training checks,
load_state_dict all or nothing, running statistics, its arguments."""

import numpy as np
import pytest

import fastnorm


@pytest.mark.parametrize("shape, axis", [((2, 3, 1), 1), ((2, 3, 1, 1), 1), ((2, 1, 1, 3), -1)])
def test_instancenorm_one_spatial_element_training_raises(rng, shape, axis):
    x = rng.random(shape).astype(np.float32)
    layer = fastnorm.InstanceNorm(3, track_running_stats=True, affine=True, channel_axis=axis)
    with pytest.raises(
        ValueError,
        match=r"Expected more than 1 spatial element when training, "
        r"got input size \(" + ", ".join(map(str, shape)) + r"\)",
    ):
        layer(x, training=True)
    np.testing.assert_array_equal(layer.running_var, np.ones(3, np.float32))
    np.testing.assert_array_equal(layer.running_mean, np.zeros(3, np.float32))
    # evaluation with running statistics is well defined on one element
    y = layer(x, training=False)
    assert np.isfinite(y).all()
    # torch also refuses batch statistics of one element when nothing is tracked
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        fastnorm.InstanceNorm(3, channel_axis=axis)(x)


def _layer_state(layer):
    return {k: np.array(v, copy=True) for k, v in layer.state_dict().items()}


_GOOD_STATE = {
    "weight": np.full(3, 2.0),
    "bias": np.full(3, 0.5),
    "running_mean": np.full(3, 0.25),
    "running_var": np.full(3, 4.0),
    "num_batches_tracked": np.array(7),
}


_BAD_VALUES = {
    "weight": [np.ones(4), np.array(["a", "b", "c"]), [[1.0, 2.0], [3.0]], np.ones(3, complex)],
    "bias": [np.ones((1, 3)), None, "abc"],
    "running_mean": [np.zeros(2), np.array([object(), 1, 2], dtype=object)],
    "running_var": [np.ones(5), np.array([1.0, -1.0, 1.0])],
    "num_batches_tracked": [
        np.array([1, 2]),
        np.array(1.5),
        np.array(-1),
        "seven",
        np.array(np.nan),
        np.array(np.inf),
        np.array(1e300),  # an int beyond int64 (OverflowError once)
        np.array(2**63, np.uint64),
    ],
}


def test_num_batches_tracked_loads_exactly():
    layer = fastnorm.InstanceNorm(3, track_running_stats=True)
    layer.load_state_dict({"num_batches_tracked": np.array(2**62 + 1, np.uint64)}, strict=False)
    assert int(layer.num_batches_tracked) == 2**62 + 1  # not through float
    layer.load_state_dict({"num_batches_tracked": np.array(7.0)}, strict=False)
    assert int(layer.num_batches_tracked) == 7


@pytest.mark.parametrize("bad_key", sorted(_BAD_VALUES))
def test_load_state_dict_applies_nothing_on_error(bad_key):
    for bad in _BAD_VALUES[bad_key]:
        layer = fastnorm.InstanceNorm(3, affine=True, track_running_stats=True)
        before = _layer_state(layer)
        sd = dict(_GOOD_STATE)
        sd[bad_key] = bad
        with pytest.raises((TypeError, ValueError), match=rf"state_dict\['{bad_key}'\]"):
            layer.load_state_dict(sd)
        after = _layer_state(layer)
        assert after.keys() == before.keys()
        for k in before:
            np.testing.assert_array_equal(after[k], before[k], err_msg=f"{k} changed ({bad_key}={bad!r})")
    # and the good one loads completely
    layer.load_state_dict(_GOOD_STATE)
    for k, v in _GOOD_STATE.items():
        np.testing.assert_array_equal(layer.state_dict()[k], v)


def test_load_state_dict_ambiguous_prefixed_keys():
    layer = fastnorm.InstanceNorm(3, affine=True)
    sd = {"a.weight": np.full(3, 2.0), "b.weight": np.full(3, 3.0), "a.bias": np.zeros(3)}
    with pytest.raises(ValueError, match=r"'a.weight' and 'b.weight'"):
        layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer.weight, np.ones(3, np.float32))
    layer.load_state_dict({"net.0.weight": np.full(3, 2.0), "net.0.bias": np.zeros(3)})
    np.testing.assert_array_equal(layer.weight, np.full(3, 2.0, np.float32))


def test_numpy_layer_running_stats_update_rounds_once(rng):
    layer = fastnorm.InstanceNorm(64, momentum=0.7, track_running_stats=True)
    worst = 0.0
    for _ in range(6):
        x = (rng.standard_normal((3, 64, 50)) * 3 + np.linspace(-20, 20, 64)[:, None]).astype(np.float32)
        rm, rv = layer.running_mean.astype(np.float64), layer.running_var.astype(np.float64)
        xd = x.astype(np.float64)
        layer(x, training=True)
        exact_m = 0.3 * rm + 0.7 * xd.mean(2).mean(0)
        exact_v = 0.3 * rv + 0.7 * xd.var(2, ddof=1).mean(0)
        for got, exact in ((layer.running_mean, exact_m), (layer.running_var, exact_v)):
            worst = max(worst, float((np.abs(got - exact) / np.spacing(np.abs(got))).max()))
    assert worst <= 0.51, worst


def test_instancenorm_momentum_and_channel_axis():
    for m in (float("nan"), float("inf"), -5, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"momentum must be None or a number in \[0, 1\], got"):
            fastnorm.InstanceNorm(3, momentum=m)
    for m in (0, 0.0, 1, 0.5, None):
        assert fastnorm.InstanceNorm(3, momentum=m).momentum == m
    for ax in (True, 1.0):
        with pytest.raises(TypeError, match=r"channel_axis must be an int \(1, -1 or x.ndim - 1\), got"):
            fastnorm.InstanceNorm(3, channel_axis=ax)
    with pytest.raises(
        ValueError,
        match=r"channel_axis must be 1 \(channels first\) or -1 / x.ndim - 1 "
        r"\(channels last\), got 0",
    ):
        fastnorm.InstanceNorm(3, channel_axis=0)
    # x.ndim - 1 is channels last, as in the functions
    x = np.random.default_rng(5).standard_normal((2, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        fastnorm.InstanceNorm(3, channel_axis=2)(x), fastnorm.instance_norm(x, channel_axis=-1)
    )
    with pytest.raises(ValueError, match="channel_axis"):
        fastnorm.InstanceNorm(3, channel_axis=2)(x[:, :, None, :])


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (0, 3, 4, 4)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_an_empty_batch_leaves_the_running_buffers(shape, momentum):
    # torch leaves them for empty planes (and writes NaN for N = 0)
    layer = fastnorm.InstanceNorm(3, track_running_stats=True, momentum=momentum)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer(x, training=True)
    rm, rv, nb = layer.running_mean.copy(), layer.running_var.copy(), int(layer.num_batches_tracked)
    with np.errstate(all="raise"):
        y = layer(np.zeros(shape, np.float32), training=True)
    assert y.shape == shape and y.dtype == np.float32
    assert np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)
    assert int(layer.num_batches_tracked) == nb


def test_a_layout_without_c_needs_one_feature():
    with pytest.raises(ValueError, match=r"layout 'NHW' has no C axis \(one channel\): num_features must be 1, got 3"):
        fastnorm.InstanceNorm(3, layout="NHW")
    y = fastnorm.InstanceNorm(1, layout="NHW")(np.random.default_rng(0).random((2, 4, 5), np.float32))
    assert y.shape == (2, 4, 5)


@pytest.mark.parametrize("value", [np.inf, 1e300, -np.inf])
@pytest.mark.parametrize("key", ["running_mean", "running_var"])
def test_load_state_dict_refuses_buffers_infinite_in_float32(key, value):
    layer = fastnorm.InstanceNorm(3, track_running_stats=True)
    state = {"running_mean": np.zeros(3), "running_var": np.ones(3), "num_batches_tracked": 0}
    state[key] = np.array([1.0, abs(value) if key == "running_var" else value, 1.0])
    with pytest.raises(ValueError, match=rf"state_dict\['{key}'\] must be finite in float32"):
        layer.load_state_dict(state)
    assert np.array_equal(layer.running_var, np.ones(3, np.float32))  # unchanged
