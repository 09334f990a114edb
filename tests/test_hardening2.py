"""Issue 18, "Hardening, round two": one test or more per item, named after it."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _optional import require

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def _run_script(code, timeout=60, env=None):
    """Run code in a fresh interpreter from the repository root; a hang is a failure
    (the script and every process it forked are killed)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"the script did not finish in {timeout} s (hang)")
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    return out


# ------------------------------------------------------------- item 1: fork
_FORK_SCRIPT = """
import multiprocessing as mp
import os
import numpy as np
import fastnorm
from fastnorm import _threads
from fastnorm._cpu import _engine

def child_calls(x):
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = np.linspace(0.5, 2.0, x.shape[1])
    m = fastnorm.instance_moments(x, num_threads=2)
    return (_threads.team(None), _threads.team(8),
            fastnorm.instance_norm(x, num_threads=2), fastnorm.instance_norm(x, w, w),
            fastnorm.instance_norm(cl, channel_axis=-1, num_threads=4), fastnorm.group_norm(x, 2),
            fastnorm.instance_stats(x)[1], fastnorm.normalize(x, m.mean, m.var),
            fastnorm.adain(x, x[:, :, ::2]))

if __name__ == "__main__":
    x = np.random.default_rng(0).random((1, 4, 256, 256)).astype(np.float32)
    # the parent starts OpenMP's thread pool (explicitly 2 threads, whatever the CPU count)
    want = fastnorm.instance_norm(x, num_threads=2)
    ref = child_calls(x)
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.map(fastnorm.instance_norm, [x])[0]      # the issue's call (fast path)
        more = pool.apply(child_calls, (x,))
    np.testing.assert_array_equal(got, want)
    assert more[:2] == (1, 1), more[:2]
    for a, b in zip(more[2:], ref[2:]):
        np.testing.assert_array_equal(a, b)
    # a child of a fork started directly
    pid = os.fork()
    if pid == 0:
        y = fastnorm.instance_norm(x, num_threads=2)
        os._exit(0 if np.array_equal(y, want) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, status
    # the parent keeps its threads
    assert _threads.team(None) == min(_engine.default_threads(), _threads.MAX_THREADS)
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_item1_forked_child_does_not_hang():
    # in a fresh interpreter: what a user script does (not a fork of pytest's process)
    assert _run_script(_FORK_SCRIPT).strip().endswith("ok")


# ------------------------------------------------- item 2: aliasing with out
def _wb(C):
    return np.linspace(0.5, 2.0, C), np.linspace(-1.0, 1.0, C)


@pytest.mark.parametrize("nt", [1, 2, 4])
def test_item2_weight_bias_sharing_memory_with_out(rng, nt):
    x = rng.standard_normal((4, 8, 20000)) * 3 + 1
    w0, b0 = _wb(8)
    want = fastnorm.instance_norm(x, w0.copy(), b0.copy())
    for where in ("head", "tail"):
        out = np.zeros_like(x)
        flat = out.reshape(-1)
        w, b = (flat[:8], flat[8:16]) if where == "head" else (flat[-8:], flat[-16:-8])
        w[:], b[:] = w0, b0
        y = fastnorm.instance_norm(x, weight=w, bias=b, out=out, num_threads=nt)
        assert y is out
        np.testing.assert_array_equal(y, want, err_msg=where)
    # group_norm, same rule
    want = fastnorm.group_norm(x, 2, w0.copy(), b0.copy())
    out = np.zeros_like(x)
    w, b = out.reshape(-1)[-8:], out.reshape(-1)[:8]
    w[:], b[:] = w0, b0
    np.testing.assert_array_equal(fastnorm.group_norm(x, 2, w, b, out=out, num_threads=nt), want)


@pytest.mark.parametrize("nt", [1, 2])
def test_item2_weight_bias_sharing_memory_with_x_in_place(rng, nt):
    x = rng.standard_normal((4, 8, 20000)) * 3 + 1
    w0, b0 = _wb(8)
    x.reshape(-1)[-8:] = w0
    x.reshape(-1)[:8] = b0
    want = fastnorm.instance_norm(x.copy(), w0.copy(), b0.copy())
    y = fastnorm.instance_norm(x, x.reshape(-1)[-8:], x.reshape(-1)[:8], out=x, num_threads=nt)
    assert y is x
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("nt", [1, 2])
def test_item2_normalize_mean_var_bias_sharing_memory_with_out(rng, nt):
    x = rng.standard_normal((1, 8, 40000)) * 3 + 1
    m = fastnorm.instance_moments(x)
    w0, b0 = _wb(8)
    want = fastnorm.normalize(x, m.mean.copy(), m.var.copy(), w0.copy(), b0.copy())
    out = np.zeros_like(x)
    flat = out.reshape(-1)
    mean, var, w, b = flat[:8].reshape(1, 8), flat[-8:].reshape(1, 8), flat[8:16], flat[-16:-8]
    mean[:], var[:], w[:], b[:] = m.mean, m.var, w0, b0
    y = fastnorm.normalize(x, mean, var, w, b, out=out, num_threads=nt)
    np.testing.assert_array_equal(y, want)
    # in place, the statistics stored in x itself
    x2 = x.copy()
    x2.reshape(-1)[:8] = m.mean.ravel()
    x2.reshape(-1)[-8:] = m.var.ravel()
    want = fastnorm.normalize(x2.copy(), m.mean, m.var)
    y = fastnorm.normalize(x2, x2.reshape(-1)[:8], x2.reshape(-1)[-8:], out=x2, num_threads=nt)
    np.testing.assert_array_equal(y, want)


def test_item2_torch_weight_sharing_memory_with_out(rng):
    torch = require("torch")
    x = torch.from_numpy(rng.standard_normal((4, 8, 20000)) * 3 + 1)
    w0, b0 = (torch.from_numpy(a) for a in _wb(8))
    want = fastnorm.instance_norm(x, w0.clone(), b0.clone())
    out = torch.zeros_like(x)
    w, b = out.view(-1)[-8:], out.view(-1)[:8]
    w.copy_(w0)
    b.copy_(b0)
    y = fastnorm.instance_norm(x, w, b, out=out, num_threads=2)
    assert y is out
    assert torch.equal(y, want)


# ------------------------------------------------- item 3: torch out= and autograd
def test_item3_torch_out_requiring_grad_is_refused(rng, torch_seed):
    torch = require("torch")
    t = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    a = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = a.exp()
    before = b.detach().clone()
    leaf = torch.zeros(2, 3, 8, 8, requires_grad=True)
    calls = [
        lambda o: fastnorm.instance_norm(t, out=o),
        lambda o: fastnorm.group_norm(t, 3, out=o),
        lambda o: fastnorm.normalize(t, torch.zeros(3), torch.ones(3), out=o),
    ]
    for call in calls:
        for o in (b, leaf):
            with pytest.raises(RuntimeError, match=r"out requires grad"):
                call(o)
    assert torch.equal(b.detach(), before) and not leaf.detach().any()
    # without grad mode it is a plain write, as torch's own copy_ allows
    with torch.no_grad():
        fastnorm.instance_norm(t, out=leaf)
    assert torch.equal(leaf.detach(), fastnorm.instance_norm(t))


def test_item3_torch_out_write_is_seen_by_autograd(rng, torch_seed):
    torch = require("torch")
    t = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    out = torch.empty_like(t)
    v = out._version
    fastnorm.instance_norm(t, out=out)
    assert out._version > v
    a = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = a.exp()  # exp's backward uses its output b
    with torch.no_grad():
        fastnorm.instance_norm(t, out=b)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()
    # channels_last out too
    x = t.contiguous(memory_format=torch.channels_last)
    o = torch.empty_like(x)
    v = o._version
    fastnorm.group_norm(x, 3, out=o)
    assert o._version > v


# ------------------------------------------- item 5: one spatial element in training
@pytest.mark.parametrize("shape, axis", [((2, 3, 1), 1), ((2, 3, 1, 1), 1), ((2, 1, 1, 3), -1)])
def test_item5_instancenorm_one_spatial_element_training_raises(rng, shape, axis):
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


def test_item5_torch_instancenorm_one_spatial_element_training_raises(torch_seed):
    torch = require("torch")
    import fastnorm.torch as fnt

    x = torch.rand(2, 3, 1)
    for tracked in (True, False):
        ref = torch.nn.InstanceNorm1d(3, track_running_stats=tracked)
        mod = fnt.InstanceNorm1d(3, track_running_stats=tracked)
        with torch.no_grad():
            with pytest.raises(ValueError) as want:
                ref(x)
            with pytest.raises(ValueError) as got:
                mod(x)
            assert str(got.value) == str(want.value)
            with pytest.raises(ValueError, match="more than 1 spatial element"):
                mod(x[0])  # no batch dimension
        if tracked:
            assert torch.equal(mod.running_var, torch.ones(3))
            mod.eval()
            with torch.no_grad():
                assert torch.isfinite(mod(x)).all()


# ------------------------------------------- item 6: Dask normalize with a negative var
def test_item6_dask_normalize_negative_var(rng):
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


# ------------------------------------------- item 9: load_state_dict is all or nothing
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
    "num_batches_tracked": [np.array([1, 2]), np.array(1.5), np.array(-1), "seven", np.array(np.nan), np.array(np.inf)],
}


@pytest.mark.parametrize("bad_key", sorted(_BAD_VALUES))
def test_item9_load_state_dict_applies_nothing_on_error(bad_key):
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


def test_item9_load_state_dict_ambiguous_prefixed_keys():
    layer = fastnorm.InstanceNorm(3, affine=True)
    sd = {"a.weight": np.full(3, 2.0), "b.weight": np.full(3, 3.0), "a.bias": np.zeros(3)}
    with pytest.raises(ValueError, match=r"'a.weight' and 'b.weight'"):
        layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer.weight, np.ones(3, np.float32))
    layer.load_state_dict({"net.0.weight": np.full(3, 2.0), "net.0.bias": np.zeros(3)})
    np.testing.assert_array_equal(layer.weight, np.full(3, 2.0, np.float32))


# ------------------------------------------- item 10: group_norm(x, None)
def test_item10_group_norm_num_groups_none(rng):
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


# ------------------------------------------- item 11: numpy.ma.MaskedArray
def test_item11_masked_arrays_are_refused(rng):
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


def test_item11_dask_masked_arrays_are_refused(rng):
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


# ------------------------------------------- item 12: torch parity
def test_item12_group_norm_2d_inputs(rng):
    x = rng.standard_normal((4, 12)).astype(np.float32)
    w, b = np.linspace(0.5, 2, 12), np.linspace(-1, 1, 12)
    # a spatial size of one: the same as a trailing axis of length 1, in either layout
    want = fastnorm.group_norm(x[:, :, None], 3, w, b, eps=1e-3)[:, :, 0]
    np.testing.assert_array_equal(fastnorm.group_norm(x, 3, w, b, eps=1e-3), want)
    np.testing.assert_array_equal(fastnorm.group_norm(x, 3, w, b, eps=1e-3, channel_axis=-1), want)
    out = np.empty_like(x)
    assert fastnorm.group_norm(x, 3, w, b, eps=1e-3, out=out) is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match=r"x must have at least 2 dimensions \(N, C, \*spatial\), got shape \(12,\)"):
        fastnorm.group_norm(x[0], 3)
    # instance norm still needs a spatial axis
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        fastnorm.instance_norm(x)
    da = require("dask.array")
    np.testing.assert_array_equal(
        fastnorm.group_norm(da.from_array(x, chunks=(2, 6)), 3, w, b, eps=1e-3).compute(scheduler="sync"), want
    )


def test_item12_torch_group_norm_module_2d_inputs():
    torch = require("torch")
    import fastnorm.torch as fnt

    torch.manual_seed(0)
    ref = torch.nn.GroupNorm(3, 12, 1e-3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
        ref.bias.uniform_(-1, 1)
    mod = fnt.convert(ref)
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), ref(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            fastnorm.group_norm(x, 3, ref.weight, ref.bias, eps=1e-3),
            torch.nn.functional.group_norm(x, 3, ref.weight, ref.bias, 1e-3),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda nn: nn.GroupNorm(3, 6, 1e-3, bias=False),
        lambda nn: nn.InstanceNorm2d(6, affine=True, bias=False),
        lambda nn: nn.InstanceNorm1d(6, affine=True, bias=False, track_running_stats=True),
    ],
)
def test_item12_convert_bias_false(make, torch_seed):
    torch = require("torch")
    import fastnorm.torch as fnt

    ref = make(torch.nn)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
    model = torch.nn.Sequential(ref).eval()
    x = torch.randn(2, 6, 5, 7) if not isinstance(ref, torch.nn.InstanceNorm1d) else torch.randn(2, 6, 9)
    with torch.no_grad():
        want = model(x)
        fnt.convert(model)
        assert type(model[0]).__module__ == "fastnorm.torch"
        assert model[0].bias is None and model[0].state_dict().keys() == ref.state_dict().keys()
        torch.testing.assert_close(model[0](x), want, rtol=1e-5, atol=1e-5)


def _ulps16(a, b):
    """Distance in units of the last place of a's float16 / bfloat16 grid."""
    import torch

    mag = a.abs()  # the ulp away from zero (the larger one at a power of two)
    ulp = torch.nextafter(mag, torch.full_like(mag, float("inf"))).double() - mag.double()
    return ((a.double() - b.double()).abs() / ulp).max().item()


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_item12_running_stats_update_rounds_once(dtype_name):
    torch = require("torch")
    import fastnorm.torch as fnt

    if dtype_name == "bfloat16":
        require("ml_dtypes")
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(1)
    mod = fnt.InstanceNorm1d(64, momentum=-1.2, track_running_stats=True).to(dtype).train()
    worst = 0.0
    with torch.no_grad():
        for _ in range(4):
            x = (torch.randn(3, 64, 50) * 3 + torch.linspace(-20, 20, 64)[:, None]).to(dtype)
            rm, rv = mod.running_mean.double(), mod.running_var.double()
            xd = x.double()
            bm = xd.mean(2).mean(0)
            bv = xd.var(2, unbiased=True).mean(0)
            mod(x)
            exact_m = (1 + 1.2) * rm - 1.2 * bm
            exact_v = (1 + 1.2) * rv - 1.2 * bv
            worst = max(worst, _ulps16(mod.running_mean, exact_m), _ulps16(mod.running_var, exact_v))
    # one rounding of the float64 update: at most half an ulp (plus the mean's own rounding)
    assert worst <= 0.51, worst


def test_item12_numpy_layer_running_stats_update_rounds_once(rng):
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


# ------------------------------------------- item 13: errors that miss the contract
def test_item13_big_endian_input_is_converted_once(rng):
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


def test_item13_ragged_coefficients_name_the_argument(rng):
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


def test_item13_torch_adain_names_content():
    torch = require("torch")
    with pytest.raises(TypeError, match=r"^content must have a floating or integer dtype"):
        fastnorm.adain(torch.zeros(2, 3, 4, 4, dtype=torch.bool), torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match=r"^style must have a floating or integer dtype"):
        fastnorm.adain(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.complex64))


def test_item13_non_array_objects_from_torch_and_dask():
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


def test_item13_dask_unknown_chunk_sizes(rng):
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


def test_item13_torch_channel_axis_bool_or_float(torch_seed):
    torch = require("torch")
    x = torch.rand(2, 3, 4, 4)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        for ax in (True, 1.0, np.float64(1)):
            with pytest.raises(TypeError, match=r"channel_axis must be an int \(1 or -1\), got"):
                fastnorm.instance_norm(t, channel_axis=ax)
            with pytest.raises(TypeError, match=r"channel_axis must be an int"):
                fastnorm.instance_stats(t, channel_axis=ax)
        torch.testing.assert_close(fastnorm.instance_norm(t, channel_axis=np.int64(1)), fastnorm.instance_norm(x))


def test_item13_instancenorm_momentum_and_channel_axis():
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
    # x.ndim - 1 is channels last, as in the functions (issue 20)
    x = np.random.default_rng(5).standard_normal((2, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        fastnorm.InstanceNorm(3, channel_axis=2)(x), fastnorm.instance_norm(x, channel_axis=-1)
    )
    with pytest.raises(ValueError, match="channel_axis"):
        fastnorm.InstanceNorm(3, channel_axis=2)(x[:, :, None, :])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts threads in /proc")
def test_item13_omp_num_threads_is_capped():
    from fastnorm import _threads

    cap = _threads.MAX_THREADS
    code = """
    import numpy as np, fastnorm
    from fastnorm import _threads
    from fastnorm._cpu import _engine

    def threads():
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("Threads:")).split()[1])

    x = np.random.default_rng(0).random((1, 4, 256, 256)).astype(np.float32)
    fastnorm.instance_norm(x)                          # the fast path
    fastnorm.instance_norm(x, np.ones(4))              # the general path
    fastnorm.instance_stats(x)
    print(_engine.default_threads(), _threads.team(None), threads())
    """
    out = _run_script(code, env={"OMP_NUM_THREADS": str(cap + 64)})
    omp, used, threads = map(int, out.split())
    assert omp == cap + 64
    assert used == cap
    assert threads <= cap + 4, threads


# ------------------------------------------- item 15: one thread inside Dask tasks
@pytest.fixture
def thread_log(monkeypatch):
    """Every thread count a CPU engine call gets ("fast" for instance_norm's fast
    path, which takes OpenMP's default)."""
    from fastnorm import _api, _threads
    from fastnorm._cpu import _engine

    log = []
    threads = _threads.team

    def logged(nt):
        log.append(threads(nt))
        return log[-1]

    class Fast:
        def fast_norm_cf(self, *a):
            log.append("fast")
            return _engine.fast_norm_cf(*a)

    monkeypatch.setattr(_threads, "team", logged)
    monkeypatch.setattr(_api, "_engine", Fast())
    return log


def test_item15_one_thread_inside_dask_threaded_tasks(rng, thread_log):
    dask = require("dask")
    da = require("dask.array")
    from concurrent.futures import ThreadPoolExecutor

    from fastnorm import _threads
    from fastnorm._cpu import _engine

    default = min(_engine.default_threads(), _threads.MAX_THREADS)
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 3, 64, 64))
    ds = da.from_array(x, chunks=(2, 3, 32, 64))
    want, want_g = fastnorm.instance_norm(x), fastnorm.group_norm(x, 3)
    for graph, exact, ref in [
        (fastnorm.instance_norm(dx), True, want),  # whole planes
        (dx.map_blocks(fastnorm.instance_norm), True, want),  # a user's blocks
        (fastnorm.instance_norm(ds), False, want),  # spatial chunks
        (fastnorm.group_norm(ds, 3), False, want_g),
    ]:
        thread_log.clear()
        y = graph.compute(scheduler="threads")
        assert thread_log and set(thread_log) == {1}, thread_log
        if exact:
            np.testing.assert_array_equal(y, ref)
        else:  # merged statistics: equal to rounding
            np.testing.assert_allclose(y, ref, atol=2e-6, rtol=1e-6)
    # an explicit num_threads is honoured
    thread_log.clear()
    fastnorm.instance_norm(dx, num_threads=2).compute(scheduler="threads")
    assert set(thread_log) == {2}, thread_log
    # a pool given through dask.config
    thread_log.clear()
    with ThreadPoolExecutor(2) as pool, dask.config.set(pool=pool):
        fastnorm.instance_norm(ds).compute(scheduler="threads")
    assert set(thread_log) == {1}, thread_log
    # the synchronous scheduler runs one task at a time: the default count
    thread_log.clear()
    fastnorm.instance_norm(ds).compute(scheduler="sync")
    assert set(thread_log) == {default}, thread_log
    # and outside Dask nothing changes
    thread_log.clear()
    fastnorm.instance_norm(x, np.ones(3))
    assert thread_log == [default]


def test_item15_one_thread_inside_distributed_tasks(rng, thread_log):
    require("dask.array")
    distributed = require("distributed")
    import dask.array as da

    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 3, 32, 64))
    # (spatial chunks: fastnorm's graph merges statistics; the user's normalizes each block)
    graphs = [fastnorm.instance_norm(dx), dx.map_blocks(fastnorm.instance_norm)]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        results = []
        for graph in graphs:
            thread_log.clear()
            results.append(client.compute(graph).result())
            assert thread_log and set(thread_log) == {1}, thread_log
    np.testing.assert_allclose(results[0], fastnorm.instance_norm(x), atol=2e-6, rtol=1e-6)
    np.testing.assert_array_equal(results[1][:, :, :32], fastnorm.instance_norm(x[:, :, :32]))


# ------------------------------------------- item 14: documentation
def test_item14_docs_promise_what_merge_delivers():
    from fastnorm import _api

    def words(text):
        return " ".join(text.split())

    readme = words(open(os.path.join(ROOT, "README.md")).read())
    moments_doc = words(_api.Moments.__doc__)
    for text in (moments_doc, words(_api.merge_moments.__doc__), readme):
        assert "merge exactly" not in text and "exactly as if" not in text
    for text in (moments_doc, readme):
        assert "not bit for bit" in text
        assert "2e-15" in text and "1e-13 + 3e-16" in text
    assert "Ctrl-C" in readme and "takes effect when the call returns" in readme


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mu", [0.0, 1e3, 1e6])
def test_item14_merge_within_the_documented_bound(rng, dtype, mu):
    # the bound the docs state: mean within 2e-15 (|mean| + std), m2 within a
    # relative 1e-13 + 3e-16 |mean| / std of the whole array's moments
    for _ in range(40):
        H, W = int(rng.integers(2, 1500)), int(rng.integers(1, 120))
        x = ((rng.standard_normal((1, 2, H, W)) + mu) * 10.0 ** rng.uniform(-3, 3)).astype(dtype)
        cuts = np.sort(rng.choice(np.arange(1, H), size=min(int(rng.integers(1, 10)), H - 1), replace=False))
        m = None
        for part in np.split(x, cuts, axis=2):
            mp = fastnorm.instance_moments(part)
            m = mp if m is None else m.merge(mp)
        w = fastnorm.instance_moments(x)
        std = np.sqrt(w.m2 / w.count)
        assert (np.abs(m.mean - w.mean) <= 2e-15 * (np.abs(w.mean) + std)).all()
        assert (np.abs(m.m2 - w.m2) <= (1e-13 + 3e-16 * np.abs(w.mean) / std) * w.m2).all()
        np.testing.assert_array_equal(m.count, w.count)


# ---------------------------------------------------------------- item 4
@pytest.mark.parametrize("channel_axis", [1, -1])
@pytest.mark.parametrize("scale", [1e154, 1e200, 1e300, 1e-300, 1e-160])
def test_item4_float64_extreme_magnitudes_give_finite_results(scale, channel_axis):
    """float64 data whose squared deviations overflow (|x| > ~1e154) or
    underflow (|x| < ~1e-154) double: the normalized output is the exact
    result's rounding wherever that is finite (it came back NaN, 0 or inf)."""
    base = np.array([1.0, -1.0, 2.0, -2.0, 0.5, 3.0, -0.25, 1.5])
    x = np.stack([base * scale, base + 7.0, base[::-1] * scale]).reshape(1, 3, 8)
    want = fastnorm.instance_norm(np.stack([base, base + 7.0, base[::-1]]).reshape(1, 3, 8), eps=0.0)
    if channel_axis == -1:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        want = np.moveaxis(want, 1, -1)
    for nt in (1, 2):
        y = fastnorm.instance_norm(x, eps=0.0, channel_axis=channel_axis, num_threads=nt)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-13)
        g = fastnorm.group_norm(x, 3, eps=0.0, channel_axis=channel_axis, num_threads=nt)
        np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-13)
    # in place, and with an affine and an activation
    xi = x.copy()
    w, b = np.array([2.0, -1.0, 0.5]), np.array([0.1, 0.2, 0.3])
    fastnorm.instance_norm(xi, w, b, eps=0.0, channel_axis=channel_axis, out=xi)
    ref = want * w + b if channel_axis == -1 else want * w[:, None] + b[:, None]
    np.testing.assert_allclose(xi, ref, rtol=1e-13, atol=1e-13)
    r = fastnorm.instance_norm(x, w, b, eps=0.0, channel_axis=channel_axis, activation="relu")
    np.testing.assert_allclose(r, np.maximum(ref, 0), rtol=1e-13, atol=1e-13)


def test_item4_issue_example_and_moments():
    x = np.array([[[1.0, -1, 2, -2]]]) * 1e154
    y = fastnorm.instance_norm(x)
    np.testing.assert_allclose(y.ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-8)
    m = fastnorm.instance_moments(x)
    assert m.mean[0, 0] == 0.0 and m.m2[0, 0] == np.inf  # 1e309 does not fit a double
    mean, var = fastnorm.instance_stats(x)
    assert var[0, 0] == np.inf  # 2.5e308 neither
    x2 = np.array([[[1.0, -1, 2, -2]]]) * 1e150
    mean, var = fastnorm.instance_stats(x2)
    np.testing.assert_allclose(var, [[2.5e300]], rtol=1e-14)
    m = fastnorm.instance_moments(x2 * 1e-450)
    np.testing.assert_allclose(m.m2, [[10.0 * 1e-600]], rtol=1e-13)  # underflow kept
    tiny = np.array([[[1.0, -1, 2, -2]]]) * 1e-300
    y = fastnorm.instance_norm(tiny, eps=0.0)
    np.testing.assert_allclose(y.ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-8)
    # NaN data keep their NaN; ordinary planes are unaffected
    z = np.array([[[1.0, np.nan, 2, -2], [1.0, 2.0, 3.0, 4.0]]])
    yz = fastnorm.instance_norm(z)
    assert np.isnan(yz[0, 0]).all() and np.isfinite(yz[0, 1]).all()


def test_item4_float32_variance_overflow_is_not_silent():
    """float32 statistics of data above ~1.8e19 overflow (their variance is
    inf, the rounding of the exact value); normalize refuses an infinite
    variance instead of returning zeros."""
    x = (np.array([[[1.0, -1, 2, -2]]]) * 1e20).astype(np.float32)
    mean, var = fastnorm.instance_stats(x)
    assert var.dtype == np.float32 and var[0, 0] == np.inf
    with pytest.raises(ValueError, match="var must be finite, got inf"):
        fastnorm.normalize(x, mean, var)
    np.testing.assert_allclose(
        fastnorm.instance_norm(x).ravel(), [0.632455532, -0.632455532, 1.264911064, -1.264911064], rtol=1e-6
    )


# ---------------------------------------------------------------- item 8
def test_item8_silu_extremes():
    x = np.array([[[1.0, -1, 2, -2, 0]]], np.float32)
    y = fastnorm.instance_norm(x, weight=[-1e38], activation="silu")
    assert np.all(y[0, 0, [0, 2]] == 0) and np.all(np.signbit(y[0, 0, [0, 2]]))  # -0
    assert np.all(y[0, 0, [1, 3]] > 1e37)
    y = fastnorm.instance_norm(x, weight=[-1e39], activation="silu")  # > FLT_MAX
    assert not np.isnan(y).any()
    assert y[0, 0, 4] == 0 and np.all(y[0, 0, [0, 2]] == 0) and np.all(np.isinf(y[0, 0, [1, 3]]))
    for dt in (np.float16,) + ((__import__("ml_dtypes").bfloat16,) if _has("ml_dtypes") else ()):
        xh = x.astype(dt)
        for act in (None, "silu", "relu"):
            yh = fastnorm.instance_norm(xh, weight=[-1e300], activation=act)
            assert not np.isnan(yh.astype(np.float32)).any(), (dt, act)
            assert float(yh[0, 0, 4]) == 0.0  # x == mean: the bias
        for cl_x in (np.ascontiguousarray(np.moveaxis(xh, 1, -1)),):
            yh = fastnorm.instance_norm(cl_x, weight=[-1e300], channel_axis=-1, activation="silu")
            assert not np.isnan(yh.astype(np.float32)).any()
    s = fastnorm.normalize(
        np.array([[[-np.inf, np.inf, np.nan, -1e300, 1e300]]]),
        np.zeros((1, 1)),
        np.ones((1, 1)),
        eps=0.0,
        activation="silu",
    )
    assert s[0, 0, 0] == 0 and np.signbit(s[0, 0, 0]) and s[0, 0, 1] == np.inf
    assert np.isnan(s[0, 0, 2]) and s[0, 0, 3] == 0 and s[0, 0, 4] == 1e300


def _has(mod):
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_item8_float32_silu_within_one_ulp(channel_axis):
    """float32 silu is the exact silu of the double normalized value rounded
    to float32 within 1 ulp (it was up to 2.2 ulp with float exp and sigmoid)."""
    from fractions import Fraction  # noqa: F401  (the exact check below uses float64 + a margin)

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((2, 3, 4000)) * 4).astype(np.float32)
    x.flat[::97] = rng.uniform(-90, 90, x.size // 97 + 1).astype(np.float32)[: x.flat[::97].size]
    mean, var = fastnorm.instance_stats(x.astype(np.float64))
    xx = x if channel_axis == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    mm, vv = mean.astype(np.float64), var.astype(np.float64)
    y = fastnorm.normalize(xx, mm, vv, eps=1e-5, activation="silu", channel_axis=channel_axis)
    if channel_axis == -1:
        y = np.moveaxis(y, -1, 1)
    v = np.array((x.astype(np.float64) - mm[..., None]) * (1.0 / np.sqrt(vv[..., None] + 1e-5)))
    with np.errstate(over="ignore"):
        exact = v / (1.0 + np.exp(-v))  # float64: ~1e-16 relative
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    err = np.abs(y.astype(np.float64) - exact) / ulp
    assert err.max() <= 1.0, err.max()


# ---------------------------------------------------------------- item 7
_MEM_SCRIPT = r"""
import sys, numpy as np, fastnorm
def status(k):
    for l in open("/proc/self/status"):
        if l.startswith(k):
            return int(l.split()[1]) * 1024
shape, ca, dt, nt = eval(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
x = np.ones(shape, dt)
x.reshape(-1)[::7] = 3
y = np.zeros_like(x)
fastnorm.instance_norm(x[:1], channel_axis=ca, num_threads=nt)
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")      # reset the peak
fastnorm.instance_norm(x, channel_axis=ca, out=y, num_threads=nt)
print(status("VmHWM") - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize(
    "shape, channel_axis, dtype",
    [
        ((16, 1, 1000000), -1, "float32"),  # channels last, a million channels
        ((16, 1000000, 1), 1, "float32"),  # channels first, one element per plane
        ((1, 65536, 8192), -1, "float16"),  # channels last, one instance of many chunks
    ],
)
def test_item7_working_memory_does_not_grow_with_n_times_c(shape, channel_axis, dtype, nt):
    """The memory a call uses beyond its input and output: working arrays per
    thread and per wave (O(threads x C) for channels last, where a row of C
    channels is the unit of work), not per (instance, channel): it was
    1.6 GiB for the first shape (61 MiB input), 733 MiB for the second and
    769 MiB for the third; measured as the peak RSS of a fresh process."""
    import subprocess

    C = shape[-1] if channel_axis == -1 else shape[1]
    per_unit = C if channel_axis == -1 else 0
    bound = 160 * per_unit * nt + (32 << 20)  # a row of C lanes: about 130 bytes each
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    r = subprocess.run(
        [sys.executable, "-c", _MEM_SCRIPT, repr(shape), str(channel_axis), dtype, str(nt)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    hidden = int(r.stdout.strip())
    assert hidden <= bound, (hidden / 2**20, bound / 2**20)
