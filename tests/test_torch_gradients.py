"""Gradients through fastnorm's torch interop.

torch.autograd.gradcheck (float64, small shapes) of every differentiable
argument of every public function (instance_norm, group_norm, normalize,
adain), every fastnorm:: forward operator and every module, in both layouts
(channels first; channels last as memory, as channel_axis=-1 and as
layout=), ranks 3 to 5; the backward on channels-last memory of any rank;
and what has no gradient says so at the forward instead of training wrong.
"""

import numpy as np
import pytest
from _optional import require

torch = require("torch", reason="torch is not installed")
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call  # noqa: E402

import fastnorm  # noqa: E402
import fastnorm.torch as fnt  # noqa: E402

gradcheck = torch.autograd.gradcheck
C = 4
SPATIAL = {3: (5,), 4: (3, 4), 5: (2, 3, 2)}
CL_LAYOUT = {3: "NLC", 4: "NHWC", 5: "NDHWC"}
RANKS = [3, 4, 5]
#: channels first (contiguous), channels first with channels-last memory,
#: an (N, *spatial, C) tensor with channel_axis=-1, and the same with layout=
HOWS = ["first", "memory", "axis", "layout"]


def _f64(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _x(rank, how, N=2, spatial=None):
    """(x requiring grad, the keywords that say its layout)."""
    sp = spatial or SPATIAL[rank]
    if how == "first":
        return _f64(N, C, *sp).requires_grad_(), {}
    if how == "memory":
        x = _f64(N, *sp, C).movedim(-1, 1)
        assert not x.is_contiguous() and x.movedim(1, -1).is_contiguous()
        return x.requires_grad_(), {}
    kw = {"channel_axis": -1} if how == "axis" else {"layout": CL_LAYOUT[rank]}
    return _f64(N, *sp, C).requires_grad_(), kw


def _affine():
    w = (torch.rand(C, dtype=torch.float64) + 0.5).requires_grad_()
    return w, _f64(C).requires_grad_()


# ----------------------------------------------------------- public functions
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("how", HOWS)
def test_gradcheck_instance_norm(rank, how, torch_seed):
    x, kw = _x(rank, how)
    w, b = _affine()
    assert gradcheck(lambda x, w, b: fastnorm.instance_norm(x, w, b, activation="silu", **kw), (x, w, b))
    assert gradcheck(lambda x: fastnorm.instance_norm(x, **kw), (x,))


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("how", HOWS)
def test_gradcheck_group_norm(rank, how, torch_seed):
    x, kw = _x(rank, how)
    w, b = _affine()
    assert gradcheck(lambda x, w, b: fastnorm.group_norm(x, 2, w, b, activation="silu", **kw), (x, w, b))


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("per_instance", [True, False])
def test_gradcheck_normalize(rank, how, per_instance, torch_seed):
    """mean and var, (N, C) or (C,) broadcast over the batch, get their
    gradients as x, weight and bias do."""
    x, kw = _x(rank, how)
    w, b = _affine()
    shape = (2, C) if per_instance else (C,)
    mean = _f64(*shape).requires_grad_()
    var = (torch.rand(*shape, dtype=torch.float64) + 0.5).requires_grad_()
    assert gradcheck(
        lambda x, m, v, w, b: fastnorm.normalize(x, m, v, w, b, activation="silu", **kw), (x, mean, var, w, b)
    )


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("style_batch,alpha", [(2, 1.0), (1, 0.6)])
def test_gradcheck_adain(rank, how, style_batch, alpha, torch_seed):
    """content and style (another spatial size; a batch of N or 1) both get
    their gradients."""
    content, kw = _x(rank, how)
    style, _ = _x(rank, how, N=style_batch, spatial=tuple(s + 1 for s in SPATIAL[rank]))
    with torch.no_grad():
        style.mul_(2).add_(1)
    assert gradcheck(lambda c, s: fastnorm.adain(c, s, alpha=alpha, **kw), (content, style))


def test_adain_gradients_equal_torch_formula(torch_seed):
    """The gradients of AdaIN written with torch's own operations (float32)."""
    c = torch.randn(2, 3, 6, 5, requires_grad=True)
    s = (torch.randn(1, 3, 4, 7) * 2 + 1).requires_grad_()
    g = torch.randn(2, 3, 6, 5)
    fastnorm.adain(c, s, alpha=0.7).backward(g)
    c2, s2 = c.detach().clone().requires_grad_(), s.detach().clone().requires_grad_()
    vc, mc = torch.var_mean(c2, (2, 3), correction=0, keepdim=True)
    vs, ms = torch.var_mean(s2, (2, 3), correction=0, keepdim=True)
    ref = 0.7 * ((c2 - mc) / torch.sqrt(vc + 1e-5) * torch.sqrt(vs + 1e-5) + ms) + 0.3 * c2
    ref.backward(g)
    torch.testing.assert_close(c.grad, c2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s.grad, s2.grad, atol=1e-5, rtol=1e-4)


def test_normalize_mean_and_var_get_gradients(torch_seed):
    """The conditional-norm call: statistics that require grad get torch's
    gradients (they were dropped, silently)."""
    m = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    v = (torch.rand(2, 3, dtype=torch.float64) + 0.5).requires_grad_()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    fastnorm.normalize(x, m, v).sum().backward()
    m2, v2 = m.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    ((x - m2[:, :, None, None]) / torch.sqrt(v2[:, :, None, None] + 1e-5)).sum().backward()
    assert m.grad is not None and v.grad is not None
    torch.testing.assert_close(m.grad, m2.grad)
    torch.testing.assert_close(v.grad, v2.grad)


# ------------------------------------------------------------------ operators
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("how", ["first", "memory"])
def test_gradcheck_operators(rank, how, torch_seed):
    """Every tensor argument of every fastnorm:: forward operator."""
    ops = torch.ops.fastnorm
    x, _ = _x(rank, how)
    w, b = _affine()
    mean = _f64(2, C).requires_grad_()
    var = (torch.rand(C, dtype=torch.float64) + 0.5).requires_grad_()
    style, _ = _x(rank, how, N=1, spatial=tuple(s + 2 for s in SPATIAL[rank]))
    assert gradcheck(lambda x, w, b: ops.instance_norm(x, w, b, 1e-5, "leaky_relu", 0.2), (x, w, b))
    assert gradcheck(lambda x, w, b: ops.group_norm(x, 2, w, b, 1e-5, "silu", 0.01), (x, w, b))
    assert gradcheck(lambda x, m, v, w, b: ops.normalize(x, m, v, w, b, 1e-5, "silu", 0.01), (x, mean, var, w, b))
    assert gradcheck(lambda c, s: ops.adain(c, s, 1e-5, 0.8), (x, style))


@pytest.mark.parametrize("op", ["instance_norm", "group_norm"])
@pytest.mark.parametrize("how", ["first", "memory"])
def test_fused_relu_backward_reads_the_output(op, how, torch_seed):
    """A fused relu's backward takes its mask from the saved output (as
    torch's relu does from its result): gradcheck holds, the gradients equal
    torch's relu after the unfused operator, and the backward runs no
    forward operator again."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops = torch.ops.fastnorm
    x, _ = _x(4, how)
    w, b = _affine()

    def fused(x, w, b):
        if op == "instance_norm":
            return ops.instance_norm(x, w, b, 1e-5, "relu", 0.01)
        return ops.group_norm(x, 2, w, b, 1e-5, "relu", 0.01)

    def unfused(x, w, b):
        if op == "instance_norm":
            return torch.relu(ops.instance_norm(x, w, b, 1e-5, "", 0.01))
        return torch.relu(ops.group_norm(x, 2, w, b, 1e-5, "", 0.01))

    assert gradcheck(fused, (x, w, b))
    g = torch.randn_like(x)
    ref = torch.autograd.grad(unfused(x, w, b), (x, w, b), g)

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    y = fused(x, w, b)
    with Log() as log:
        got = torch.autograd.grad(y, (x, w, b), g)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, rtol=0, atol=0)
    assert not [f for f in log.ops if f.startswith(f"fastnorm.{op}.")], log.ops


# -------------------------------------------------------------------- modules
MODULES = [
    (torch.nn.InstanceNorm1d, (C,), 3),
    (torch.nn.InstanceNorm2d, (C,), 4),
    (torch.nn.InstanceNorm3d, (C,), 5),
    (torch.nn.GroupNorm, (2, C), 3),
    (torch.nn.GroupNorm, (2, C), 4),
    (torch.nn.GroupNorm, (2, C), 5),
]


@pytest.mark.parametrize("cls,args,rank", MODULES)
@pytest.mark.parametrize("how", ["first", "memory"])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_modules(cls, args, rank, how, training, torch_seed):
    """The input and both parameters, training and evaluation (running
    statistics), channels-first and channels-last memory."""
    kw = {} if cls is torch.nn.GroupNorm else {"track_running_stats": True}
    mod = fnt.convert(cls(*args, affine=True, **kw).double()).train(training)
    with torch.no_grad():
        mod.weight.uniform_(0.5, 2)
        mod.bias.normal_()
        if getattr(mod, "running_var", None) is not None:
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
        mod.momentum = 0.0  # the running statistics stay put while gradcheck evaluates
    x, _ = _x(rank, how)
    w, b = (mod.weight.detach().clone().requires_grad_(), mod.bias.detach().clone().requires_grad_())
    assert gradcheck(lambda x, w, b: functional_call(mod, {"weight": w, "bias": b}, (x,)), (x, w, b))


# ------------------------------------------- backward on channels-last memory
def _torch_grads(fn, g, x, *params):
    """The gradients of x and params of fn(x, *params) (torch's own ops)
    backward from g."""
    leaves = [x.detach().clone().requires_grad_()] + [p.detach().clone().requires_grad_() for p in params]
    fn(*leaves).backward(g)
    return [t.grad for t in leaves]


def test_backward_group_norm_module_on_transposed_3d(torch_seed):
    """A 3-D channels-last tensor (a transposed (N, L, C) sequence) trains."""
    h = torch.randn(2, 50, 8, requires_grad=True)
    ours, ref = fnt.GroupNorm(4, 8), torch.nn.GroupNorm(4, 8)
    g = torch.randn(2, 8, 50)
    ours(h.transpose(1, 2)).backward(g)
    h2 = h.detach().clone().requires_grad_()
    ref(h2.transpose(1, 2)).backward(g)
    torch.testing.assert_close(h.grad, h2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)


def test_backward_instance_norm_1d_and_channel_axis_last(torch_seed):
    x = torch.randn(3, 9, 5)  # (N, L, C)
    w = torch.rand(5) + 0.5
    g = torch.randn(3, 9, 5)
    gx, gw = _torch_grads(lambda x, w: F.instance_norm(x.transpose(1, 2), weight=w).transpose(1, 2), g, x, w)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    fastnorm.instance_norm(xr, wr, channel_axis=-1).backward(g)
    torch.testing.assert_close(xr.grad, gx, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wr.grad, gw, atol=1e-4, rtol=1e-4)
    mod = fnt.InstanceNorm1d(5, affine=True)
    with torch.no_grad():
        mod.weight.copy_(w)
    xr = x.clone().requires_grad_()
    mod(xr.transpose(1, 2)).backward(g.transpose(1, 2))
    torch.testing.assert_close(xr.grad, gx, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rank", [3, 6])
def test_backward_channels_last_memory_beyond_4d_and_5d(rank, torch_seed):
    """Permuted tensors of ranks that have no torch memory format."""
    sp = (3, 2, 4, 3)[: rank - 2]
    x = torch.randn(2, *sp, 6).movedim(-1, 1)  # channels-last memory
    w, b = torch.rand(6) + 0.5, torch.randn(6)
    g = torch.randn(x.shape)
    gx, gw, gb = _torch_grads(lambda x, w, b: F.group_norm(x, 3, w, b), g, x, w, b)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    fastnorm.group_norm(xr, 3, wr, br).backward(g)
    torch.testing.assert_close(xr.grad, gx, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(wr.grad, gw, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(br.grad, gb, atol=1e-4, rtol=1e-4)
    xr = x.clone().requires_grad_()
    fastnorm.instance_norm(xr).backward(g)
    (gi,) = _torch_grads(lambda x: F.group_norm(x, 6), g, x)
    torch.testing.assert_close(xr.grad, gi, atol=1e-5, rtol=1e-4)


# ------------------------------------------------ what has no gradient says so
def test_integer_input_under_autograd_is_refused_at_the_forward():
    """A uint8 image with a weight that requires grad: refused at the call
    (integer inputs have no gradient), not in backward() with a message that
    contradicts itself."""
    x = torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8)
    w = torch.ones(3, requires_grad=True)
    for call in (
        lambda: fastnorm.instance_norm(x, w),
        lambda: fastnorm.group_norm(x, 3, w),
        lambda: fastnorm.normalize(x, torch.zeros(3), torch.ones(3), w),
        lambda: torch.ops.fastnorm.instance_norm(x, w, None, 1e-5, "", 0.01),
        lambda: fnt.InstanceNorm2d(3, affine=True)(x),
    ):
        with pytest.raises(TypeError, match=r"integer dtype torch\.uint8.*no gradient"):
            call()
    with pytest.raises(TypeError, match=r"style has the integer dtype.*no gradient"):
        fastnorm.adain(torch.randn(2, 3, 4, 4, requires_grad=True), x)
    with torch.no_grad():  # inference on integer images is what they are for
        assert fastnorm.instance_norm(x, w).dtype == torch.float32
    # the NumPy backward's message no longer lists integers as supported
    with pytest.raises(TypeError, match=r"x must have a floating dtype \(float16, float32, float64") as e:
        fastnorm.instance_norm_backward(np.ones((2, 3, 4), np.float32), np.ones((2, 3, 4), np.uint8))
    assert "uint8, int8" not in str(e.value) and "no gradient" in str(e.value)


def test_instance_norm_zero_channels_backward(torch_seed):
    """C = 0 under autograd: the backward runs as the NumPy backward does."""
    x = torch.randn(2, 0, 5, requires_grad=True)
    w = torch.ones(0, requires_grad=True)
    fastnorm.instance_norm(x, w).sum().backward()
    assert x.grad.shape == (2, 0, 5) and w.grad.shape == (0,)
    gx, gw, gb = fastnorm.instance_norm_backward(np.zeros((2, 0, 5)), np.zeros((2, 0, 5)))
    assert gx.shape == (2, 0, 5) and gw.shape == (0,)


def test_tensor_requiring_grad_with_numpy_input_is_refused():
    """weight / mean that require grad next to a NumPy x would be detached
    silently: refused, naming the argument."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(TypeError, match="weight is a torch.Tensor that requires grad"):
        fastnorm.instance_norm(x, w)
    with pytest.raises(TypeError, match="mean is a torch.Tensor that requires grad"):
        fastnorm.normalize(x, torch.zeros(3, requires_grad=True), np.ones(3))
    with torch.no_grad():
        fastnorm.instance_norm(x, w)  # nothing to differentiate: accepted


def test_functions_without_backward_raise_when_an_input_requires_grad():
    x = torch.randn(2, 3, 4, requires_grad=True)
    for call in (
        lambda: fastnorm.instance_stats(x),
        lambda: fastnorm.instance_moments(x),
        lambda: fastnorm.instance_norm_backward(torch.randn(2, 3, 4), x),
        lambda: fastnorm.group_norm_backward(torch.randn(2, 3, 4), x, 3),
    ):
        with pytest.raises(RuntimeError, match="has no backward pass"):
            call()
    with pytest.raises(RuntimeError, match="no autograd formula"):
        torch.ops.fastnorm.moments(x)[0].sum().backward()
