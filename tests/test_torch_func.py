"""Forward-mode AD, torch.func transforms and double backward through
fastnorm's torch functions and modules (fastnorm._torch_func).

Every derivative is compared with the same function written in plain torch
operations (float64), which torch differentiates itself; every value with
fastnorm's own call outside the transform, bit for bit."""

from __future__ import annotations

import itertools

import pytest
from _optional import require

torch = require("torch", reason="torch is not installed (pip install torch)")

import torch.autograd.forward_ad as fwAD  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, stack_module_state, vjp, vmap  # noqa: E402

import fastnorm  # noqa: E402
import fastnorm.torch as fnt  # noqa: E402

EPS = 1e-5
ACTS = [None, "relu", "leaky_relu", "silu"]


def _act(y, a, slope=0.01):
    if a is None:
        return y
    return {"relu": F.relu, "silu": F.silu}.get(a, lambda v: F.leaky_relu(v, slope))(y)


def _ref_gn(x, G, w, b, eps=EPS):
    """group norm in torch operations (torch's own group_norm has no jvp for channels_last memory)"""
    xg = x.reshape(x.shape[0], G, -1)
    y = ((xg - xg.mean(2, keepdim=True)) * torch.rsqrt(xg.var(2, unbiased=False, keepdim=True) + eps)).reshape(x.shape)
    sh = (1, -1) + (1,) * (x.dim() - 2)
    y = y if w is None else y * w.reshape(sh)
    return y if b is None else y + b.reshape(sh)


def _ref_normalize(x, mean, var, w, b, eps=EPS):
    sh = tuple(mean.shape) + (1,) * (x.dim() - 2)
    csh = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.reshape(sh)) * torch.rsqrt(var.reshape(sh) + eps) * w.reshape(csh) + b.reshape(csh)


def _ref_adain(c, s, alpha, eps=EPS):
    r = tuple(range(2, c.dim()))
    mc, vc = c.mean(r, keepdim=True), c.var(r, unbiased=False, keepdim=True)
    ms, vs = s.mean(r, keepdim=True), s.var(r, unbiased=False, keepdim=True)
    return alpha * ((c - mc) * torch.rsqrt(vc + eps) * torch.sqrt(vs + eps) + ms) + (1 - alpha) * c


def _close(a, b, tol=1e-10):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.dtype == q.dtype and p.shape == q.shape
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


def _data(cl=False, N=2, C=4, shape=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((N, C) + shape, generator=g, dtype=torch.float64)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randn(x.shape, generator=g, dtype=torch.float64)
    w = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(C, generator=g, dtype=torch.float64)
    return (
        x,
        t,
        w,
        b,
        torch.randn(C, generator=g, dtype=torch.float64),
        torch.randn(C, generator=g, dtype=torch.float64),
    )


def _pairs(act):
    """(fastnorm, reference) for each differentiable function, as f(x, w, b)."""
    mean = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 4)
    var = torch.linspace(0.2, 2, 8, dtype=torch.float64).reshape(2, 4)
    return {
        "instance_norm": (
            lambda x, w, b: fastnorm.instance_norm(x, w, b, activation=act),
            lambda x, w, b: _act(_ref_gn(x, x.shape[1], w, b), act),
        ),
        "group_norm": (
            lambda x, w, b: fastnorm.group_norm(x, 2, w, b, activation=act),
            lambda x, w, b: _act(_ref_gn(x, 2, w, b), act),
        ),
        "normalize": (
            lambda x, w, b: fastnorm.normalize(x, mean, var, w, b, activation=act),
            lambda x, w, b: _act(_ref_normalize(x, mean, var, w, b), act),
        ),
    }


CASES = list(itertools.product(ACTS, [False, True], ["instance_norm", "group_norm", "normalize"]))


@pytest.mark.parametrize("act,cl,name", CASES)
def test_jvp_and_forward_ad_match_torch(act, cl, name):
    x, t, w, b, tw, tb = _data(cl)
    f, r = _pairs(act)[name]
    yf, tf = jvp(f, (x, w, b), (t, tw, tb))
    yr, tr = jvp(r, (x, w, b), (t, tw, tb))
    assert torch.equal(yf, f(x, w, b))  # the kernels' value, bit for bit
    _close(tf, tr)
    with fwAD.dual_level():
        y = f(fwAD.make_dual(x, t), w, fwAD.make_dual(b, tb))
        tf2 = fwAD.unpack_dual(y).tangent
        tr2 = fwAD.unpack_dual(r(fwAD.make_dual(x, t), w, fwAD.make_dual(b, tb))).tangent
    assert tf2 is not None  # a tangent, never silently dropped
    _close(tf2, tr2)


@pytest.mark.parametrize("act,cl,name", CASES)
def test_vjp_forward_over_reverse_and_vmap_match_torch(act, cl, name):
    x, t, w, b, _, _ = _data(cl)
    f, r = _pairs(act)[name]
    _close(vjp(f, x, w, b)[1](t), vjp(r, x, w, b)[1](t))

    def gf(x):
        return grad(lambda x: (f(x, w, b) ** 2 * t).sum())(x)

    def gr(x):
        return grad(lambda x: (r(x, w, b) ** 2 * t).sum())(x)

    _close(jvp(gf, (x,), (t,)), jvp(gr, (x,), (t,)))
    xs = torch.stack([x, 2 * x, x - 1])
    ys = vmap(f, in_dims=(0, None, None))(xs, w, b)
    assert torch.equal(ys, torch.stack([f(v, w, b) for v in xs]))  # folded into one call: the same bits
    ws, bs = torch.stack([w, 2 * w, w + 1]), torch.stack([b, -b, 0 * b])
    ys = vmap(f, in_dims=(None, 0, 0))(x, ws, bs)
    assert torch.equal(ys, torch.stack([f(x, ws[i], bs[i]) for i in range(3)]))
    _close(ys, vmap(r, in_dims=(None, 0, 0))(x, ws, bs))


@pytest.mark.parametrize("name", ["instance_norm", "group_norm", "normalize"])
def test_jacobians_hessian_and_double_backward_match_torch(name):
    x, t, w, b, _, _ = _data(N=2, C=4, shape=(2, 3))
    f, r = _pairs("silu")[name]
    _close(jacrev(f)(x, w, b), jacrev(r)(x, w, b))
    _close(jacfwd(f, argnums=(0, 1))(x, w, b), jacfwd(r, argnums=(0, 1))(x, w, b))
    _close(
        hessian(lambda x: (f(x, w, b) ** 3 * t).sum())(x),
        hessian(lambda x: (r(x, w, b) ** 3 * t).sum())(x),
        tol=1e-9,
    )
    outs = []
    for fn in (f, r):  # a gradient penalty: the backward differentiated again
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        gx, gw = torch.autograd.grad((fn(xr, wr, b) ** 3 * t).sum(), (xr, wr), create_graph=True)
        outs.append(torch.autograd.grad((gx**2).sum() + gw.sum(), (xr, wr)))
    _close(outs[0], outs[1], tol=1e-9)


def test_normalize_statistics_tangents_and_second_derivatives():
    x, t, w, b, _, _ = _data()
    mean = torch.randn(2, 4, dtype=torch.float64)
    var = torch.rand(2, 4, dtype=torch.float64) + 0.1
    tm, tv = torch.randn_like(mean), torch.randn_like(var)
    for shared in (False, True):  # (N, C) statistics and (C,) ones broadcast over the batch
        m, v, dm, dv = (mean[0], var[0], tm[0], tv[0]) if shared else (mean, var, tm, tv)

        def f(x, m, v):
            return fastnorm.normalize(x, m, v, w, b, activation="leaky_relu", negative_slope=0.2)

        def r(x, m, v):
            return F.leaky_relu(_ref_normalize(x, m.expand(2, 4), v.expand(2, 4), w, b), 0.2)

        _close(jvp(f, (x, m, v), (t, dm, dv)), jvp(r, (x, m, v), (t, dm, dv)))
        _close(vjp(f, x, m, v)[1](t), vjp(r, x, m, v)[1](t))
        _close(
            jacrev(jacrev(lambda v, m=m: f(x, m, v).sum()))(v),
            jacrev(jacrev(lambda v, m=m: r(x, m, v).sum()))(v),
        )


@pytest.mark.parametrize("style_batch", [1, 2])
def test_adain_tangents_batching_and_double_backward(style_batch):
    c, t, _, _, _, _ = _data()
    g = torch.Generator().manual_seed(5)
    s = torch.randn(style_batch, 4, 4, 4, generator=g, dtype=torch.float64)
    ts = torch.randn(s.shape, generator=g, dtype=torch.float64)

    def f(c, s):
        return fastnorm.adain(c, s, alpha=0.7)

    def r(c, s):
        return _ref_adain(c, s, 0.7)

    _close(jvp(f, (c, s), (t, ts)), jvp(r, (c, s), (t, ts)))
    _close(vjp(f, c, s)[1](t), vjp(r, c, s)[1](t))
    cs = torch.stack([c, 3 * c])
    assert torch.equal(vmap(f, in_dims=(0, None))(cs, s), torch.stack([f(c, s), f(3 * c, s)]))
    ss = torch.stack([s, s + 1])
    _close(vmap(f)(cs, ss), vmap(r)(cs, ss))
    outs = []
    for fn in (f, r):
        cr, sr = c.clone().requires_grad_(), s.clone().requires_grad_()
        gc, gs = torch.autograd.grad((fn(cr, sr) ** 3).sum(), (cr, sr), create_graph=True)
        outs.append(torch.autograd.grad(gc.sum() + (gs**2).sum(), (cr, sr)))
    _close(outs[0], outs[1], tol=1e-9)


def _module_pairs():
    """(fastnorm.torch module, torch's own) with the same state: affine instance
    norm, group norm, plain instance norm, and evaluation on running statistics."""
    torch.manual_seed(0)
    ev = dict(affine=True, track_running_stats=True)
    pairs = [
        (fnt.InstanceNorm2d(4, affine=True), torch.nn.InstanceNorm2d(4, affine=True)),
        (fnt.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)),
        (fnt.InstanceNorm2d(4), torch.nn.InstanceNorm2d(4)),
        (fnt.InstanceNorm2d(4, **ev), torch.nn.InstanceNorm2d(4, **ev)),
    ]
    for ours, theirs in pairs:
        with torch.no_grad():
            if getattr(ours, "weight", None) is not None:
                ours.weight.uniform_(0.5, 1.5)
                ours.bias.normal_()
            if getattr(ours, "running_mean", None) is not None:
                ours.running_mean.normal_()
                ours.running_var.uniform_(0.5, 2)
        theirs.load_state_dict(ours.state_dict())
    pairs[-1][0].eval()
    pairs[-1][1].eval()
    return [(a.double(), b.double()) for a, b in pairs]


@pytest.mark.parametrize("k", range(4))
def test_modules_under_transforms_match_torch(k):
    x, t, _, _, _, _ = _data(cl=True)
    ours, theirs = _module_pairs()[k]
    xc = x.contiguous()  # torch's group_norm has no jvp on channels_last memory; ours reads it natively
    yf, tf = jvp(ours, (x,), (t,))
    _close(tf, jvp(theirs, (xc,), (t,))[1])
    assert torch.equal(yf, ours(x))
    _close(vjp(ours, x)[1](t), vjp(theirs, xc)[1](t))
    xs = torch.stack([x, x * 2])
    assert torch.equal(vmap(ours)(xs), torch.stack([ours(x), ours(2 * x)]))
    if getattr(ours, "weight", None) is not None:  # per-sample parameter gradients
        p = {n: v.detach() for n, v in ours.named_parameters()}

        def grads(m):
            def loss(p, xi):
                return (functional_call(m, p, (xi[None],)) ** 2 * t[0]).sum()

            return vmap(grad(loss), in_dims=(None, 0))(p, x)

        gf, gr = grads(ours), grads(theirs)
        for n in p:
            _close(gf[n], gr[n])


def test_stacked_module_ensemble():
    models = [fnt.InstanceNorm2d(4, affine=True).double() for _ in range(3)]
    with torch.no_grad():
        for i, m in enumerate(models):
            m.weight.fill_(i + 1.0)
            m.bias.fill_(-i)
    params, buffers = stack_module_state(models)
    x, _, _, _, _, _ = _data()

    def run(p, bu, x):
        return functional_call(models[0], (p, bu), (x,))

    ys = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
    assert torch.equal(ys, torch.stack([m(x) for m in models]))


def test_float32_tangent_dtype_and_accuracy():
    x, t, w, b, tw, tb = _data()
    f = lambda x, w: fastnorm.instance_norm(x, w, None, activation="silu")  # noqa: E731
    r = lambda x, w: F.silu(_ref_gn(x, 4, w, None))  # noqa: E731
    y, tf = jvp(f, (x.float(), w.float()), (t.float(), tw.float()))
    assert y.dtype == tf.dtype == torch.float32
    _, tr = jvp(r, (x, w), (t, tw))
    torch.testing.assert_close(tf, tr.float(), rtol=1e-6, atol=1e-6)  # float64 inside, one rounding


def test_empty_inputs_under_transforms():
    x = torch.zeros(0, 4, 3, 3, dtype=torch.float64)
    y, t = jvp(fastnorm.instance_norm, (x,), (torch.zeros_like(x),))
    assert y.shape == t.shape == x.shape
    assert vmap(fastnorm.instance_norm)(torch.zeros(3, 2, 0, 5, dtype=torch.float64)).shape == (3, 2, 0, 5)


def test_functions_without_rules_and_out_refused_clearly():
    x, t, _, _, _, _ = _data()
    with pytest.raises(RuntimeError, match="instance_moments cannot run under torch.func"):
        vmap(lambda v: fastnorm.instance_moments(v).mean)(torch.stack([x, x]))
    with pytest.raises(RuntimeError, match="out= cannot be used under torch.func"):
        jvp(lambda v: fastnorm.instance_norm(v, out=torch.empty_like(x)), (x,), (t,))
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="dtype= cannot be used"):
        fastnorm.instance_norm(fwAD.make_dual(x, t), dtype=torch.float32)


def test_plain_calls_do_not_take_the_function_forms(monkeypatch):
    """Outside transforms (a dual level entered but no tangent on the inputs
    included) the operators and their kernel backward run, not the forms."""
    import fastnorm._torch_func as TF

    def refuse(*a, **k):
        raise AssertionError("the autograd.Function form ran outside a transform")

    for name in ("group_norm", "instance_norm", "normalize", "adain"):
        monkeypatch.setattr(TF.FUNCTIONS, name, refuse)
    monkeypatch.setattr(TF, "gn_vjp", refuse)
    x, t, w, b, _, _ = _data()
    m = fnt.InstanceNorm2d(4, affine=True).double()
    with fwAD.dual_level():
        fastnorm.instance_norm(x, w, b)
        m(x)
    xr = x.clone().requires_grad_()
    m(xr).sum().backward()
    fastnorm.group_norm(xr, 2).sum().backward()


def test_integer_input_with_parameter_tangents():
    """uint8 x with a tangent on weight / bias: the tangent takes the output's
    dtype (float32, as the kernels write), never the input's integer dtype."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=g, dtype=torch.uint8)
    w, tw = torch.rand(3, dtype=torch.float32) + 0.5, torch.randn(3, generator=g)
    y, t = jvp(lambda w: fastnorm.instance_norm(x, w), (w,), (tw,))
    assert y.dtype == t.dtype == torch.float32
    _, tr = jvp(lambda w: _ref_gn(x.double(), 3, w, None), (w.double(),), (tw.double(),))
    torch.testing.assert_close(t, tr.float(), rtol=1e-6, atol=1e-6)
    s, ts = torch.rand(1, 3, 4, 4), torch.randn(1, 3, 4, 4, generator=g)
    assert jvp(lambda s: fastnorm.adain(x, s), (s,), (ts,))[1].dtype == torch.float32


def test_functionalize_runs_the_operators():
    x, _, w, b, _, _ = _data()
    m = fnt.GroupNorm(2, 4).double()
    ev = fnt.InstanceNorm2d(4, track_running_stats=True).double().eval()
    for f in (lambda v: fastnorm.group_norm(v, 2, w, b), lambda v: fastnorm.adain(v, v[:1] * 2 + 1), m, ev):
        assert torch.equal(torch.func.functionalize(f)(x), f(x))


def test_running_statistics_under_grad_and_jvp_and_refused_under_vmap():
    """torch's own modules update their running statistics from the primal
    values under grad and jvp; so do fastnorm's, and under vmap (where one
    buffer would take every sample's statistics) they refuse clearly."""
    x, t, _, _, _, _ = _data()
    for transform in (
        lambda m: jvp(m, (x,), (t,)),
        lambda m: grad(lambda v: (m(v) ** 3).sum())(x),
        lambda m: torch.func.vjp(m, x),
    ):
        ours = fnt.InstanceNorm2d(4, track_running_stats=True).double()
        theirs = torch.nn.InstanceNorm2d(4, track_running_stats=True).double()
        transform(ours)
        transform(theirs)
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-12, atol=1e-15)
    with fwAD.dual_level():
        ours = fnt.InstanceNorm2d(4, track_running_stats=True).double()
        ours(fwAD.make_dual(x, t))
    plain = fnt.InstanceNorm2d(4, track_running_stats=True).double()
    plain(x)
    assert torch.equal(ours.running_mean, plain.running_mean) and torch.equal(ours.running_var, plain.running_var)
    with pytest.raises(ValueError, match="cannot run under torch.func.vmap"):
        vmap(fnt.InstanceNorm2d(4, track_running_stats=True).double())(torch.stack([x, x]))


def test_vmap_over_an_empty_batch_keeps_the_sample_shape():
    x = torch.zeros(0, 2, 4, 3, 3, dtype=torch.float64)
    assert vmap(fastnorm.instance_norm)(x).shape == x.shape
    assert vmap(lambda v: fastnorm.group_norm(v, 2))(x).shape == x.shape
    mean, var = torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64)
    assert vmap(lambda v: fastnorm.normalize(v, mean, var))(x).shape == x.shape


def test_plain_constants_inside_a_transform_take_the_plain_path():
    """A tensor the transform does not map or track (a closure's constant)
    is computed as outside it."""
    x, _, w, _, _, _ = _data()
    a = torch.tensor(2.0, dtype=torch.float64)
    g = grad(lambda a: (fastnorm.instance_norm(x, w) * a).sum())(a)
    assert torch.equal(g, fastnorm.instance_norm(x, w).sum())
