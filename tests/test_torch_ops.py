"""torch, done properly: the fastnorm:: custom operators under
autograd (gradcheck in float64), a training step against torch's gradients in
both memory formats, torch.compile(fullgraph) in inference_mode / no_grad /
training, torch.export, torch.jit.trace with a second input that differs,
torch.jit.script, and both ONNX exporters on the style network, run in ONNX
Runtime without fastnorm."""

import copy
import importlib.util

import numpy as np
import pytest
from _optional import require

torch = require("torch", reason="torch is not installed")
import torch.nn.functional as F  # noqa: E402

import fastnorm  # noqa: E402
import fastnorm.torch as fnt  # noqa: E402
from benchmarks.style_transfer import style_network  # noqa: E402


@pytest.fixture
def net(torch_seed):
    return style_network(channels=(8, 16, 32), res_blocks=2)


def _gn(x, G, w, b, act=""):
    return torch.ops.fastnorm.group_norm(x, G, w, b, 1e-5, act, 0.01)


@pytest.mark.parametrize("G", [1, 3, 6])
@pytest.mark.parametrize("act", ["", "relu", "leaky_relu", "silu"])
@pytest.mark.parametrize("cl", [False, True])
def test_gradcheck_group_norm_operator(G, act, cl, torch_seed):
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: _gn(x, G, w, b, act), (x, w, b))
    assert torch.autograd.gradcheck(lambda x: _gn(x, G, None, None, act), (x,))


@pytest.mark.parametrize("act", ["", "leaky_relu", "silu"])
def test_gradcheck_instance_norm_operators(act, torch_seed):
    """fastnorm::instance_norm and its backward operator."""
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: torch.ops.fastnorm.instance_norm(x, w, b, 1e-5, act, 0.01), (x, w, b)
    )
    g = torch.randn_like(x)
    gx, gw, gb = torch.ops.fastnorm.instance_norm_backward(g, x.detach(), w.detach(), 1e-5)
    hx, hw, hb = torch.ops.fastnorm.group_norm_backward(g, x.detach(), 4, w.detach(), 1e-5)
    assert torch.equal(gx, hx) and torch.equal(gw, hw) and torch.equal(gb, hb)


def test_gradcheck_normalize_and_public_functions(torch_seed):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda x, w, b: torch.ops.fastnorm.normalize(x, rm, rv, w, b, 1e-5, "silu", 0.01), (x, w, b)
    )
    assert torch.autograd.gradcheck(lambda x, w, b: fastnorm.instance_norm(x, w, b), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: fastnorm.group_norm(x, 2, w, b, activation="relu"), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: fastnorm.normalize(x, rm, rv, w), (x, w))
    xl = torch.randn(2, 5, 6, 4, dtype=torch.float64, requires_grad=True)  # NHWC arrays, channel_axis=-1
    assert torch.autograd.gradcheck(lambda x, w: fastnorm.instance_norm(x, w, channel_axis=-1), (xl, w))


@pytest.mark.parametrize(
    "cls,shape",
    [
        (torch.nn.InstanceNorm1d, (2, 4, 9)),
        (torch.nn.InstanceNorm2d, (2, 4, 5, 6)),
        (torch.nn.InstanceNorm3d, (2, 4, 3, 4, 5)),
    ],
)
@pytest.mark.parametrize("track", [False, True])
def test_gradcheck_modules(cls, shape, track, torch_seed):
    ref = cls(4, affine=True, track_running_stats=track).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
        ref.bias.normal_()
    mod = fnt.convert(copy.deepcopy(ref))
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    for m in (mod.train(), mod.eval()):
        assert torch.autograd.gradcheck(lambda x, m=m: m(x), (x,))
    gn = fnt.convert(torch.nn.GroupNorm(2, 4).double())
    assert torch.autograd.gradcheck(lambda x: gn(x), (x,))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_training_step_equals_torch(net, memory_format):
    """One SGD step of the style network: every parameter's gradient equals
    torch's within float32 rounding, in both memory formats."""
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=memory_format)
    target = torch.randn(2, 3, 32, 32)
    ref = net.to(memory_format=memory_format)
    ours = fnt.convert(copy.deepcopy(ref))
    for m in (ref, ours):
        m.train()
        F.mse_loss(m(x), target).backward()
    # a conv bias right before an instance norm has a zero gradient in exact
    # arithmetic (the norm removes the mean): there both are rounding noise,
    # so the bound also has a part relative to the largest gradient of all
    top = max(p.grad.abs().max().item() for p in ref.parameters())
    for (name, p), q in zip(ref.named_parameters(), ours.parameters()):
        scale = p.grad.abs().max().item()
        assert (p.grad - q.grad).abs().max().item() <= 2e-4 * scale + 1e-6 * top, name
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt.step()


@pytest.mark.slow  # inductor compiles two graphs
def test_compile_fullgraph_inference_and_training(net):
    ours = fnt.convert(copy.deepcopy(net)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = net.eval()(x)
    c = torch.compile(ours, fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(c(x), ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(c(x), ref, atol=1e-4, rtol=1e-4)
    ours.train()
    net.train()
    ct = torch.compile(ours, fullgraph=True)
    y = ct(x)
    y.square().mean().backward()
    net(x).square().mean().backward()
    p, q = next(net.parameters()), next(ours.parameters())
    torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.slow  # inductor compiles a graph
def test_compile_keeps_inductors_channels_last_around_the_operator(monkeypatch):
    """Inductor runs CPU convolutions channels-last even for an NCHW model;
    the operators take any strides (Tag.flexible_layout), so the compiled
    graph hands the convolution's channels-last output to fastnorm as it is
    and gets channels-last back, with no conversion on either side, and the
    result is eager torch's."""
    from torch._inductor import config
    from torch._inductor.utils import run_and_get_code

    monkeypatch.setattr(config, "force_disable_caches", True)  # a graph compiled before the tags lacked them
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.InstanceNorm2d(8, affine=True),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
    ).eval()
    ours = fnt.convert(copy.deepcopy(net), fuse_activations=True)
    x = torch.randn(2, 8, 16, 16)
    torch._dynamo.reset()
    with torch.inference_mode():
        y, (code, *_) = run_and_get_code(torch.compile(ours, fullgraph=True), x)
        torch.testing.assert_close(y, net(x), atol=1e-4, rtol=1e-4)
    call = next(line for line in code.splitlines() if "torch.ops.fastnorm.instance_norm.default(" in line)
    arg = call.split("default(")[1].split(",")[0]
    # the operator's input is the convolution's own output, not a converted copy
    assert f"{arg} = extern_kernels.convolution(" in code, code
    assert "(2, 8, 16, 16), (2048, 1, 128, 8)" in code  # channels-last strides asserted for its output


def test_export_trace_script_keep_calling_fastnorm(net, tmp_path):
    ours = fnt.convert(copy.deepcopy(net)).eval()
    net.eval()
    x, x2 = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32) * 3 + 1
    with torch.no_grad():
        want = net(x2)
        ep = torch.export.export(ours, (x,))
        assert "fastnorm.instance_norm" in str(ep.graph)
        torch.testing.assert_close(ep.module()(x2), want, atol=1e-4, rtol=1e-4)
        tr = torch.jit.trace(ours, x)
        assert "fastnorm::instance_norm" in str(tr.inlined_graph)
        torch.testing.assert_close(tr(x2), want, atol=1e-4, rtol=1e-4)  # not a baked constant
        path = str(tmp_path / "traced.pt")
        tr.save(path)
        torch.testing.assert_close(torch.jit.load(path)(x2), want, atol=1e-4, rtol=1e-4)
    m = fnt.convert(
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.InstanceNorm2d(4, affine=True), torch.nn.ReLU(), torch.nn.GroupNorm(2, 4)
        ),
        fuse_activations=True,
    )
    sc = torch.jit.script(m)
    torch.testing.assert_close(sc(x2), m(x2))


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_runs_in_onnxruntime_without_fastnorm(net, tmp_path, dynamo):
    import onnx
    import onnxruntime as ort

    if dynamo and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo exporter needs onnxscript")
    ours = fnt.convert(copy.deepcopy(net)).eval()
    net.eval()
    x = torch.randn(1, 3, 32, 32)
    path = str(tmp_path / "m.onnx")
    kw = {"custom_translation_table": fnt.onnx_translation_table()} if dynamo else {}
    torch.onnx.export(ours, (x,), path, dynamo=dynamo, **kw)
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert "InstanceNormalization" in ops and not any(n.domain.startswith("fastnorm") for n in model.graph.node)
    assert len(model.graph.input) == 1
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x2 = torch.randn(1, 3, 32, 32) * 2 + 1  # another input: nothing baked in
    with torch.no_grad():
        want = net(x2).numpy()
    got = s.run(None, {s.get_inputs()[0].name: x2.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


def test_operator_bad_input():
    x = torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match="activation"):
        torch.ops.fastnorm.group_norm(x, 2, None, None, 1e-5, "tanh", 0.01)
    with pytest.raises(ValueError, match="num_groups"):
        torch.ops.fastnorm.group_norm(x, 3, None, None, 1e-5, "", 0.01)
    with pytest.raises(ValueError, match="eps"):
        torch.ops.fastnorm.group_norm(x, 2, None, None, -1.0, "", 0.01)


def test_networks_bench_rows_compare_outputs():
    """benchmarks/networks.py runs both networks eager and a training step,
    in both formats, and its table gives the outputs' difference (a '-' for
    the training step, which has none)."""
    from benchmarks import networks

    for net in ("style", "cyclegan"):
        rows = networks.run(net, 32, 1, ["eager", "train"], 1)
        assert [(m, f) for m, f, *_ in rows] == [
            ("eager", "NCHW"),
            ("eager", "NHWC"),
            ("train", "NCHW"),
            ("train", "NHWC"),
        ]
        for mode, _, tr, tf, d in rows:
            assert tr > 0 and tf > 0
            if mode == "eager":
                assert d < 1e-4, (net, d)
        text = networks.table(net, 32, 1, rows)
        assert "| train | NCHW |" in text and text.count(" | - |") == 2


def _counting(monkeypatch):
    """Counts the modules' direct calls of the operators' implementations
    (fastnorm.torch's names for them; the operators call them by their own)."""
    calls = []
    for name in ("_instance_norm_impl", "_group_norm_impl"):
        impl = getattr(fnt, name)

        def counted(*a, _impl=impl, _name=name):
            calls.append(_name.strip("_"))
            return _impl(*a)

        monkeypatch.setattr(fnt, name, counted)
    return calls


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_modules_eager_calls_skip_the_operator_dispatch_and_give_its_bits(monkeypatch, cl, affine, torch_seed):
    """Without autograd to record, an eager module call runs the operator's
    implementation directly (torch.library's dispatch costs more than the
    kernels of a small input): the operator's bits, x's memory format kept,
    under no_grad, inference_mode and on inputs that need no grad."""
    calls = _counting(monkeypatch)
    x = torch.randn(2, 6, 5, 7)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    m = fnt.InstanceNorm2d(6, affine=affine)
    g = fnt.GroupNorm(3, 6, affine=affine)
    if affine:
        with torch.no_grad():
            for p in (*m.parameters(), *g.parameters()):
                p.normal_()
    want_in = torch.ops.fastnorm.instance_norm(x, m.weight, m.bias, m.eps, "", 0.01).detach()
    want_gn = torch.ops.fastnorm.group_norm(x, 3, g.weight, g.bias, g.eps, "", 0.01).detach()
    assert calls == []
    for ctx in (torch.no_grad, torch.inference_mode) + (() if affine else (torch.enable_grad,)):
        calls.clear()
        with ctx():
            y, z = m(x), g(x)
        assert calls == ["instance_norm_impl", "group_norm_impl"], ctx
        assert torch.equal(y, want_in) and torch.equal(z, want_gn)
        assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("act", ["", "relu", "silu"])
def test_modules_eager_calls_that_record_autograd_give_the_operators_bits(monkeypatch, cl, act, torch_seed):
    """Where autograd records, an eager module call runs the operator's
    implementation and registered backward as an autograd.Function, without
    torch.library's dispatch (which costs more than the kernels of a small
    input), and its backward calls the backward operator's implementation
    directly: the operator's bits forward and backward, for instance and
    group norm, fused activations and both memory formats."""
    from fastnorm import _torch_ops as TO

    direct = []
    real = TO._direct_backward
    monkeypatch.setattr(TO, "_direct_backward", lambda *a: direct.append(real(*a)) or direct[-1])
    x0 = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    if cl:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    for m in (fnt.InstanceNorm2d(6, affine=True), fnt.GroupNorm(3, 6)):
        m.activation = act or None
        with torch.no_grad():
            m.double()
            m.weight.normal_()
            m.bias.normal_()
        g = torch.randn(2, 6, 5, 7, dtype=torch.float64)
        outs = []
        for eager in (True, False):
            x = x0.clone().requires_grad_(True)
            m.zero_grad()
            direct.clear()
            if eager:
                y = m(x)
            elif isinstance(m, fnt.GroupNorm):
                y = torch.ops.fastnorm.group_norm(x, 3, m.weight, m.bias, m.eps, act, 0.01)
            else:
                y = torch.ops.fastnorm.instance_norm(x, m.weight, m.bias, m.eps, act, 0.01)
            assert type(y.grad_fn).__name__.startswith("Eager") == eager
            y.backward(g)
            assert direct == ([True] if eager else [False])
            outs.append((y.detach(), x.grad, m.weight.grad.clone(), m.bias.grad.clone()))
            if cl:
                assert y.is_contiguous(memory_format=torch.channels_last)
        for a, b in zip(*outs):
            assert torch.equal(a, b)
    # a double backward takes the composite rules, differentiable
    m = fnt.InstanceNorm2d(6, affine=True).double()
    x = x0.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
    assert gx.requires_grad
    gx.sum().backward()
    assert m.weight.grad is not None


@pytest.mark.parametrize("kind", ["batched", "negative", "zero", "hook"])
def test_eager_backward_leaves_what_it_cannot_view_to_the_operator(kind, torch_seed):
    """The eager Functions' backward runs the backward operator (whose
    dispatch resolves them) for batched gradients
    (autograd.grad(is_grads_batched=True)), a negative-bit view or a
    ZeroTensor as the incoming gradient, and a saved x that a saved-tensors
    hook gives back as a negative view: the same gradients as a plain one."""
    for m in (fnt.InstanceNorm2d(6, affine=True), fnt.GroupNorm(3, 6)):
        x = torch.randn(2, 6, 5, 4, requires_grad=True)
        g = torch.randn(2, 6, 5, 4)
        if kind == "batched":
            y = m(x)
            gs = torch.randn(3, 2, 6, 5, 4)
            (got,) = torch.autograd.grad(y, [x], gs, is_grads_batched=True, retain_graph=True)
            want = torch.stack([torch.autograd.grad(y, x, gi, retain_graph=True)[0] for gi in gs])
        elif kind == "negative":
            y = m(x)
            (got,) = torch.autograd.grad(y, x, (-g)._neg_view(), retain_graph=True)
            (want,) = torch.autograd.grad(y, x, g.clone())
        elif kind == "zero":
            y = m(x)
            (got,) = torch.autograd.grad(y, x, torch._efficientzerotensor(y.shape), retain_graph=True)
            (want,) = torch.autograd.grad(y, x, torch.zeros(y.shape))
        else:  # every saved tensor unpacked as a negative view of its negation: the same values
            with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: (-t)._neg_view()):
                y = m(x)
            (got,) = torch.autograd.grad(y, x, g)
            (want,) = torch.autograd.grad(m(x), x, g)
        assert torch.equal(got, want), kind


def test_modules_keep_the_operator_where_it_is_needed(monkeypatch, torch_seed):
    """The operator runs (and is seen) under a dispatch or torch function
    mode, jit.trace, torch.func.vmap, the profiler and torch.compile, and for
    tensor subclasses and meta tensors; where autograd records, an eager call
    runs the operator's implementation and autograd as an autograd.Function
    (test_modules_eager_calls_that_record_autograd_...)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = _counting(monkeypatch)
    m = fnt.InstanceNorm2d(4, affine=True)
    x = torch.randn(1, 4, 6, 6)
    y = m(x)  # the weight requires grad: autograd records
    assert calls == [] and type(y.grad_fn).__name__ == "EagerInstanceNormBackward"
    y.sum().backward()
    assert m.weight.grad is not None
    xg = torch.randn(1, 4, 6, 6, requires_grad=True)
    with torch.no_grad():
        fnt.InstanceNorm2d(4)(xg)  # no_grad: nothing to record
    assert calls == ["instance_norm_impl"]
    calls.clear()
    assert fnt.InstanceNorm2d(4)(xg).grad_fn is not None and calls == []
    with torch.profiler.profile() as prof:  # the profiler sees the operator where autograd records too
        y = m(x)
    assert type(y.grad_fn).__name__ != "EagerInstanceNormBackward"
    assert any(e.name == "fastnorm::instance_norm" for e in prof.events())

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Record():
        fnt.InstanceNorm2d(4)(x)
    assert calls == [] and any("fastnorm.instance_norm" in s for s in seen), seen

    with torch.no_grad():
        traced = torch.jit.trace(fnt.InstanceNorm2d(4), x, check_trace=False)  # the check reruns it eagerly
    assert "fastnorm::instance_norm" in str(traced.graph) and calls == []

    class Sub(torch.Tensor):
        pass

    with torch.no_grad():
        fnt.InstanceNorm2d(4)(x.as_subclass(Sub))
    assert calls == []

    xs = torch.randn(3, 1, 4, 5, 5)
    with torch.no_grad():
        ys = torch.func.vmap(fnt.InstanceNorm2d(4))(xs)  # batched tensors have no storage
    assert calls == []
    calls.clear()
    for i in range(3):
        with torch.no_grad():
            assert torch.equal(ys[i], fnt.InstanceNorm2d(4)(xs[i]))
    calls.clear()

    with torch.no_grad():
        assert fnt.InstanceNorm2d(4)(torch.empty(1, 4, 6, 6, device="meta")).device.type == "meta"
        assert fnt.GroupNorm(2, 4)(torch.empty(1, 4, 6, 6, device="meta")).device.type == "meta"
    assert calls == []

    with torch.no_grad(), torch.profiler.profile() as prof:
        fnt.InstanceNorm2d(4)(x)
    assert calls == [] and any(e.name == "fastnorm::instance_norm" for e in prof.events())

    with torch.no_grad():
        c = torch.compile(fnt.InstanceNorm2d(4), fullgraph=True, backend="eager")
        torch.testing.assert_close(c(x), fnt.InstanceNorm2d(4)(x), rtol=0, atol=0)
    assert calls == ["instance_norm_impl"]  # the eager reference call only


def test_modules_keep_the_operator_for_what_its_dispatch_resolves(monkeypatch, torch_seed):
    """The operator also runs for parameters that are tensor subclasses, a
    negative-bit view, attributes of other types than the module's own
    (the operator's schema coerces or refuses them), a GroupNorm whose
    num_groups was set to 0 afterwards, and under autocast."""
    calls = _counting(monkeypatch)
    x = torch.randn(2, 4, 6, 6)

    class Sub(torch.Tensor):
        pass

    with torch.no_grad():
        m = fnt.InstanceNorm2d(4, affine=True)
        del m.weight
        m.weight = torch.ones(4).as_subclass(Sub)
        m(x)
        z = torch.complex(x, x.flip(0))
        torch.testing.assert_close(fnt.InstanceNorm2d(4)(z.conj().imag), fnt.InstanceNorm2d(4)(-x.flip(0)))
        m = fnt.InstanceNorm2d(4)
        m.eps = torch.tensor(1e-3)
        m(x)
        g = fnt.GroupNorm(2, 4, affine=False)
        g.num_groups = 0
        with pytest.raises(ValueError, match="num_groups"):
            g(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fnt.InstanceNorm2d(4)(x.bfloat16())
    assert calls == ["instance_norm_impl"]  # the negative-bit case's reference call only


def test_meta_arguments_beside_a_real_input_are_refused():
    """A weight, statistic or style on the meta device (a model built there,
    partly loaded) beside a CPU input: the dispatcher runs the fake, which
    gave uninitialized memory; now a RuntimeError naming the argument."""
    x = torch.randn(2, 4, 5, 5)
    meta4 = torch.ones(4, device="meta")
    ops = torch.ops.fastnorm
    cases = [
        ("weight", lambda: ops.group_norm(x, 2, meta4, None, 1e-5, "", 0.01)),
        ("bias", lambda: ops.instance_norm(x, None, meta4, 1e-5, "relu", 0.01)),
        ("mean", lambda: ops.normalize(x, meta4, torch.ones(4), None, None, 1e-5, "", 0.01)),
        ("style", lambda: ops.adain(x, torch.randn(2, 4, 5, 5, device="meta"), 1e-5, 1.0)),
        ("grad_out", lambda: ops.instance_norm_backward(torch.ones_like(x, device="meta"), x, None, 1e-5)),
        ("weight", lambda: ops.group_norm_backward(torch.ones_like(x), x, 2, meta4, 1e-5)),
        ("running_mean|mean", lambda: fnt.InstanceNorm2d(4, track_running_stats=True, device="meta").eval()(x)),
    ]
    for name, call in cases:
        with pytest.raises(RuntimeError, match=rf"({name}) is on device meta, but the input is on cpu"):
            call()
    # all on meta: the fakes give shapes, as before
    assert ops.instance_norm(x.to("meta"), meta4, meta4, 1e-5, "", 0.01).shape == x.shape


def test_operators_take_3d_integer_inputs_as_n_c_l():
    """The operators' x is (N, C, *spatial): a 3-d integer tensor is one,
    not an image whose layout must be named (the public functions' check)."""
    xi = torch.randint(0, 255, (2, 4, 7), dtype=torch.uint8)
    xf = xi.float()
    ops = torch.ops.fastnorm
    pairs = [
        (ops.instance_norm(xi, None, None, 1e-5, "", 0.01), ops.instance_norm(xf, None, None, 1e-5, "", 0.01)),
        (ops.group_norm(xi, 2, None, None, 1e-5, "", 0.01), ops.group_norm(xf, 2, None, None, 1e-5, "", 0.01)),
        (ops.adain(xi, xf, 1e-5, 1.0), ops.adain(xf, xf, 1e-5, 1.0)),
        (fnt.InstanceNorm1d(4)(xi), fnt.InstanceNorm1d(4)(xf)),
    ]
    m, v = torch.rand(4), torch.rand(4) + 0.5
    pairs.append(
        (ops.normalize(xi, m, v, None, None, 1e-5, "", 0.01), ops.normalize(xf, m, v, None, None, 1e-5, "", 0.01))
    )
    for got, ref in pairs:
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, atol=0, rtol=0)
    for got, ref in zip(ops.moments(xi), ops.moments(xf)):
        torch.testing.assert_close(got, ref, atol=0, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
@pytest.mark.parametrize("dynamo", [False, True])
def test_onnx_export_stops_where_no_translation_is_right(tmp_path, dynamo):
    """Per-sample (N, C) statistics of normalize: the export stops (it wrote a
    BatchNormalization that ONNX Runtime refuses to load); adain: the
    failure's note says no exporter translates it (it suggested the table or
    dynamo=False, neither of which helps)."""
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo exporter needs onnxscript")
    kw = {"custom_translation_table": fnt.onnx_translation_table()} if dynamo else {}

    class Normalize(torch.nn.Module):
        def forward(self, x, m, v):
            return torch.ops.fastnorm.normalize(x, m, v, None, None, 1e-5, "", 0.01)

    class Adain(torch.nn.Module):
        def forward(self, x, s):
            return torch.ops.fastnorm.adain(x, s, 1e-5, 1.0)

    x = torch.randn(2, 4, 5, 5)
    with pytest.raises(Exception) as info:
        torch.onnx.export(
            Normalize(), (x, torch.randn(2, 4), torch.rand(2, 4) + 0.5), str(tmp_path / "n.onnx"), dynamo=dynamo, **kw
        )
    chain, e = [], info.value
    while e is not None and len(chain) < 16:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("per-channel (C,)" in m for m in chain), chain
    # (C,) statistics still export
    torch.onnx.export(
        Normalize(), (x, torch.randn(4), torch.rand(4) + 0.5), str(tmp_path / "c.onnx"), dynamo=dynamo, **kw
    )
    with pytest.raises(Exception) as info:
        torch.onnx.export(Adain(), (x, torch.randn(2, 4, 5, 5)), str(tmp_path / "a.onnx"), dynamo=dynamo, **kw)
    notes = getattr(info.value, "__notes__", None) or [str(info.value)]
    assert any("fastnorm::adain has no ONNX translation in either exporter" in n for n in notes), notes
