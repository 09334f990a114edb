"""The torch layer's contract beyond the kernels: out= under autograd,
training checks of the modules, parity with torch.nn (2-D group norm,
bias=False, running statistics rounded once) and its argument errors."""

import numpy as np
import pytest
from _optional import require

import fastnorm


def test_torch_out_requiring_grad_is_refused(rng, torch_seed):
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


def test_torch_out_write_is_seen_by_autograd(rng, torch_seed):
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


def test_torch_instancenorm_one_spatial_element_training_raises(torch_seed):
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


def test_group_norm_2d_inputs(rng):
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


def test_torch_group_norm_module_2d_inputs():
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
def test_convert_bias_false(make, torch_seed):
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
def test_running_stats_update_rounds_once(dtype_name):
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


def test_torch_adain_names_content():
    torch = require("torch")
    with pytest.raises(TypeError, match=r"^content must have a floating or integer dtype"):
        fastnorm.adain(torch.zeros(2, 3, 4, 4, dtype=torch.bool), torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match=r"^style must have a floating or integer dtype"):
        fastnorm.adain(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.complex64))


def test_torch_channel_axis_bool_or_float(torch_seed):
    torch = require("torch")
    x = torch.rand(2, 3, 4, 4)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        for ax in (True, 1.0, np.float64(1)):
            with pytest.raises(TypeError, match=r"channel_axis must be an int \(1 or -1\), got"):
                fastnorm.instance_norm(t, channel_axis=ax)
            with pytest.raises(TypeError, match=r"channel_axis must be an int"):
                fastnorm.instance_stats(t, channel_axis=ax)
        torch.testing.assert_close(fastnorm.instance_norm(t, channel_axis=np.int64(1)), fastnorm.instance_norm(x))
