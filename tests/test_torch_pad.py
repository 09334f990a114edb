"""convert(fuse_padding=True) and the padded operator fastnorm::instance_norm_pad:
the output of an instance norm (and its fused activation) written already
reflection-padded, in the norm's own pass.  Its interior has the unpadded
operator's bits at every kernel level and thread count, both memory formats;
its border is torch's reflection pad; gradients, torch.compile and
TorchScript follow; convert() folds only the pads it may."""

import copy

import numpy as np
import pytest
from _isa import LEVELS, kernels
from _optional import require

torch = require("torch", reason="torch is not installed")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import fastnorm.torch as fnt  # noqa: E402
from fastnorm._cpu import _backend as cpu  # noqa: E402

ACTS = ["", "relu", "leaky_relu", "silu"]
CASES = [
    ((1, 8, 16, 16), [1, 1, 1, 1]),
    ((2, 3, 7, 5), [3, 3, 2, 2]),
    ((1, 4, 9, 9), [0, 0, 3, 3]),
    ((1, 2, 1, 4), [1, 1, 0, 0]),
    ((3, 17, 33, 9), [2, 2, 4, 4]),
    ((1, 64, 64, 64), [3, 3, 3, 3]),  # planes past the small-plane batches, channels-last chunks
]


def _ref(x, w, b, act, slope, pad):
    return F.pad(torch.ops.fastnorm.instance_norm(x, w, b, 1e-5, act, slope), pad, mode="reflect")


@pytest.mark.parametrize("cl", [False, True], ids=["NCHW", "NHWC"])
@pytest.mark.parametrize("shape,pad", CASES)
def test_padded_output_is_the_norm_then_torch_pad_bit_for_bit(shape, pad, cl, torch_seed):
    x = torch.randn(*shape) * 3 + 1
    if cl:
        x = x.to(memory_format=torch.channels_last)
    w, b = torch.rand(shape[1]) + 0.5, torch.randn(shape[1])
    fmt = torch.channels_last if cl else torch.contiguous_format
    for act in ACTS:
        for wb in ((None, None), (w, b)):
            ref = _ref(x, *wb, act, 0.2, pad)
            y = torch.ops.fastnorm.instance_norm_pad(x, *wb, 1e-5, act, 0.2, pad)
            assert y.shape == ref.shape and y.dtype == torch.float32
            assert y.is_contiguous(memory_format=fmt)
            assert torch.equal(y, ref), (act, wb[0] is None)


@pytest.mark.parametrize("cl", [False, True], ids=["NCHW", "NHWC"])
def test_every_level_and_thread_count_gives_the_same_bits(cl, torch_seed):
    # the engine entry itself, at each level this CPU runs and 1 / 2 threads
    x = (np.random.default_rng(3).standard_normal((2, 24, 40, 36)) * 5 + 2).astype(np.float32)
    a = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if cl else x
    w = np.linspace(0.5, 1.5, 24)
    outs = []
    for level in LEVELS:
        with kernels(isa=level):
            for nt in (1, 2):
                outs.append(cpu.norm_pad(a, cl, w, None, 1e-5, 1, 0.01, 2, 3, nt))
    ref = _ref(torch.from_numpy(x), torch.from_numpy(w), None, "relu", 0.01, [3, 3, 2, 2])
    ref = ref.permute(0, 2, 3, 1).numpy() if cl else ref.numpy()
    for y in outs:
        assert y.tobytes() == outs[0].tobytes()
    assert np.array_equal(outs[0], ref)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes_and_strides_take_the_norm_then_torch_pad(dtype, torch_seed):
    x = torch.randn(2, 3, 8, 10, dtype=dtype)
    y = torch.ops.fastnorm.instance_norm_pad(x, None, None, 1e-5, "relu", 0.01, [2, 1, 0, 3])
    assert y.dtype == dtype and torch.equal(y, _ref(x, None, None, "relu", 0.01, [2, 1, 0, 3]))
    xs = torch.randn(2, 3, 8, 20)[..., ::2]  # strided
    assert torch.equal(
        torch.ops.fastnorm.instance_norm_pad(xs, None, None, 1e-5, "", 0.01, [1, 1, 1, 1]),
        _ref(xs, None, None, "", 0.01, [1, 1, 1, 1]),
    )
    x3 = torch.randn(2, 3, 9)  # a 1-d pad of a 3-d input
    assert torch.equal(
        torch.ops.fastnorm.instance_norm_pad(x3, None, None, 1e-5, "", 0.01, [2, 2]),
        _ref(x3, None, None, "", 0.01, [2, 2]),
    )


@pytest.mark.parametrize(
    "pad,match",
    [
        ([1, 1, 1], "per spatial axis"),
        ([], "per spatial axis"),
        ([1, 1], "per spatial axis"),  # torch's reflect pad of a 4-d input takes two pairs
        ([1, 1, 1, 1, 1, 1], "per spatial axis"),
        ([4, 4, 0, 0], "smaller"),
        ([-1, 0, 0, 0], ">= 0"),
    ],
)
def test_bad_padding_is_a_value_error_naming_it(pad, match):
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=match):
        torch.ops.fastnorm.instance_norm_pad(x, None, None, 1e-5, "", 0.01, pad)
    # the fake refuses it too: compile and export see the same error
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode, pytest.raises(ValueError, match=match):
        torch.ops.fastnorm.instance_norm_pad(mode.from_tensor(x), None, None, 1e-5, "", 0.01, pad)


@pytest.mark.parametrize("slope", [float("nan"), float("inf")])
def test_a_slope_that_is_not_finite_is_refused_as_by_instance_norm(slope):
    x = torch.randn(1, 2, 5, 5)
    for act in ("leaky_relu", ""):
        with pytest.raises(ValueError, match="negative_slope must be finite"):
            torch.ops.fastnorm.instance_norm_pad(x, None, None, 1e-5, act, slope, [1, 1, 1, 1])


@pytest.mark.parametrize("act", ACTS)
def test_gradients(act, torch_seed):
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: torch.ops.fastnorm.instance_norm_pad(x, w, b, 1e-5, act, 0.1, [2, 1, 1, 3]), (x, w, b)
    )
    # float32 through the engine's padded kernels: torch's own norm, activation and pad
    xf = torch.randn(2, 4, 9, 8, requires_grad=True)
    wf = torch.rand(4, requires_grad=True)
    g = torch.randn(2, 4, 11, 12)
    y = torch.ops.fastnorm.instance_norm_pad(xf, wf, None, 1e-5, act, 0.1, [2, 2, 1, 1])
    gx, gw = torch.autograd.grad(y, (xf, wf), g)
    yr = F.instance_norm(xf, weight=wf, eps=1e-5)
    yr = {"": yr, "relu": F.relu(yr), "leaky_relu": F.leaky_relu(yr, 0.1), "silu": F.silu(yr)}[act]
    rx, rw = torch.autograd.grad(F.pad(yr, [2, 2, 1, 1], mode="reflect"), (xf, wf), g)
    assert torch.allclose(gx, rx, atol=1e-4) and torch.allclose(gw, rw, atol=1e-3)


def _net():
    def conv(ci, co):
        return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ci, co, 3))

    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.InstanceNorm2d(8, affine=True),
        nn.ReLU(),
        conv(8, 8),  # the pad first in the next Sequential
        nn.InstanceNorm2d(8),
        nn.ReflectionPad2d(2),  # directly after the norm
        nn.Conv2d(8, 8, 3),
        nn.InstanceNorm2d(8),
        nn.LeakyReLU(0.2),
        nn.ReflectionPad2d((1, 2, 0, 1)),  # asymmetric: the norm, then torch's pad, in the operator
        nn.Conv2d(8, 3, 3),
    ).eval()


def test_convert_folds_the_pads_and_keeps_the_model(torch_seed):
    base = _net()
    fused = fnt.convert(copy.deepcopy(base), fuse_activations=True, fuse_padding=True)
    kept = fnt.convert(copy.deepcopy(base), fuse_activations=True)
    assert [m.padding for m in fused.modules() if isinstance(m, fnt.InstanceNorm2d)] == [
        [1, 1, 1, 1],
        [2, 2, 2, 2],
        [1, 2, 0, 1],
    ]
    assert isinstance(fused[3][0], fnt.FusedPad) and isinstance(fused[5], fnt.FusedPad)
    assert "padding=[2, 2, 2, 2]" in repr(fused[4])
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(2, 3, 20, 18).to(memory_format=fmt)
        with torch.no_grad():
            assert torch.equal(fused.to(memory_format=fmt)(x), kept.to(memory_format=fmt)(x))
            assert torch.allclose(fused(x), base.to(memory_format=fmt)(x), atol=1e-4)
        # a training step: the same gradients as the model converted without the pads
        f, k = copy.deepcopy(fused).train(), copy.deepcopy(kept).train()
        f(x).square().sum().backward()
        k(x).square().sum().backward()
        for p, q in zip(f.parameters(), k.parameters()):
            assert torch.equal(p.grad, q.grad)
    # an unbatched input
    with torch.no_grad():
        x1 = torch.rand(3, 12, 12)
        assert torch.equal(fused(x1), kept(x1))


def test_convert_leaves_pads_it_may_not_fold(torch_seed):
    shared_pad = nn.ReflectionPad2d(1)
    hooked_pad = nn.ReflectionPad2d(1)
    hooked_pad.register_forward_pre_hook(lambda m, i: None)
    model = nn.Sequential(
        nn.InstanceNorm2d(4),
        nn.ReLU(),  # not fused (fuse_activations=False): the pad does not follow the norm
        nn.ReflectionPad2d(1),
        nn.InstanceNorm2d(4),
        shared_pad,
        nn.InstanceNorm2d(4),
        shared_pad,  # used twice
        nn.InstanceNorm2d(4),
        hooked_pad,  # a hook would see another input
        nn.GroupNorm(2, 4),
        nn.ReflectionPad2d(1),  # group norm: not folded
        nn.InstanceNorm2d(4),
        nn.ZeroPad2d(1),  # not a reflection
        nn.InstanceNorm2d(4),
        nn.ReflectionPad2d(1),  # the one pad folded
    )
    fnt.convert(model, fuse_padding=True)
    assert [i for i, m in enumerate(model) if isinstance(m, fnt.FusedPad)] == [len(model) - 1]
    assert [m.padding for m in model.modules() if isinstance(m, fnt.InstanceNorm2d)] == [[]] * 5 + [[1, 1, 1, 1]]


def test_a_cropping_pad_is_not_folded(torch_seed):
    # torch's reflection pad takes negative pads (a crop); the norm writes no such output
    base = nn.Sequential(nn.InstanceNorm2d(2), nn.ReflectionPad2d((-1, -1, 1, 1)))
    m = fnt.convert(copy.deepcopy(base), fuse_padding=True)
    assert isinstance(m[1], nn.ReflectionPad2d) and m[0].padding == []
    x = torch.randn(1, 2, 6, 6)
    assert torch.equal(m(x), fnt.convert(copy.deepcopy(base))(x))


def test_the_padded_output_may_be_changed_in_place_before_backward(torch_seed):
    # the fused relu keeps its mask in a tensor of its own, as torch's pad
    # leaves relu's output untouched by what follows
    base = nn.Sequential(nn.InstanceNorm2d(2), nn.ReLU(), nn.ReflectionPad2d(1), nn.Hardtanh(inplace=True))
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    grads = []
    for fuse in (False, True):
        m = fnt.convert(copy.deepcopy(base), fuse_activations=True, fuse_padding=fuse)
        (g,) = torch.autograd.grad(m(x).square().sum(), x)
        grads.append(g)
    assert torch.equal(grads[0], grads[1])


def test_a_module_pickled_before_padding_existed_still_runs(torch_seed):
    import pickle

    m = fnt.convert(nn.Sequential(nn.InstanceNorm2d(2)))
    del m[0].__dict__["padding"]  # what an older fastnorm pickled
    old = pickle.loads(pickle.dumps(m))
    x = torch.randn(1, 2, 4, 4)
    assert old[0].padding == [] and torch.equal(old(x), m[0].__class__(2)(x))
    assert "padding" not in repr(old)


def test_torch_compile_and_script_of_a_converted_model(torch_seed):
    base = _net()
    fused = fnt.convert(copy.deepcopy(base), fuse_activations=True, fuse_padding=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = fused(x)
        assert torch.equal(torch.jit.script(copy.deepcopy(fused))(x), want)
        for fmt in (torch.contiguous_format, torch.channels_last):
            m = copy.deepcopy(fused).to(memory_format=fmt)
            got = torch.compile(m, fullgraph=True, backend="aot_eager")(x.to(memory_format=fmt))
            assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True])
def test_export_records_the_norm_and_a_standard_pad(dynamo, tmp_path, torch_seed):
    """While a model converted with fuse_padding is exported, the norm and a
    standard reflection pad are recorded (the padded operator has no ONNX
    translation): torch.export's graph has no instance_norm_pad, and both
    ONNX exporters write a model ONNX Runtime runs without fastnorm."""
    import importlib.util

    fused = fnt.convert(_net(), fuse_activations=True, fuse_padding=True).eval()
    assert any(m.padding for m in fused.modules() if isinstance(m, fnt.InstanceNorm2d))
    x = torch.randn(1, 3, 20, 18)
    if not dynamo:
        for strict in (False, True):
            graph = torch.export.export(fused, (x,), strict=strict).graph
            targets = {str(n.target) for n in graph.nodes if n.op == "call_function"}
            assert "fastnorm.instance_norm.default" in targets
            assert not any("instance_norm_pad" in t for t in targets)
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx and onnxruntime are not installed")
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo exporter needs onnxscript")
    import onnx
    import onnxruntime as ort

    path = str(tmp_path / "m.onnx")
    kw = {"custom_translation_table": fnt.onnx_translation_table()} if dynamo else {}
    torch.onnx.export(fused, (x,), path, dynamo=dynamo, **kw)
    model = onnx.load(path)
    assert not any(n.domain.startswith("fastnorm") for n in model.graph.node)
    assert {"InstanceNormalization", "Pad"} <= {n.op_type for n in model.graph.node}
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x2 = torch.randn(1, 3, 20, 18) * 2 + 1
    with torch.no_grad():
        want = fused(x2).numpy()
    got = s.run(None, {s.get_inputs()[0].name: x2.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    # after the export the model runs its padded operator again
    assert not fnt._pad_composed(x2, None, None)


def test_torch_compile_keeps_the_padded_operator(torch_seed):
    """torch.compile is no export: its graph holds the padded operator (the
    export check must not read as true while Dynamo traces)."""
    fused = fnt.convert(_net(), fuse_activations=True, fuse_padding=True).eval()
    seen = []

    def capture(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    x = torch.randn(1, 3, 20, 18)
    with torch.no_grad():
        y = torch.compile(fused, backend=capture, fullgraph=True)(x)
        assert torch.equal(y, fused(x))
    assert any("instance_norm_pad" in t for t in seen), seen


@pytest.mark.parametrize(
    "shape,pad",
    [
        ((1, 8, 18, 18), [1, 1, 1, 1]),
        ((2, 3, 9, 7), [2, 1, 0, 3]),
        ((1, 2, 7, 12), [0, 0, 2, 2]),
        ((3, 5, 9, 8), [3, 0, 0, 4]),
    ],
)
def test_the_reflection_fold_is_torchs_bit_for_bit(shape, pad, torch_seed):
    """The engine's fold of a padded gradient adds what torch's
    reflection_pad2d_backward adds in the same order: the same bits, on
    values spread over 2^58 (an order of additions that differed would
    show); a differentiable backward (create_graph) takes torch's."""
    from fastnorm import _torch_ops as O

    g = torch.randn(*shape) * torch.exp(torch.empty(*shape).uniform_(-20, 20))
    N, C, Hp, Wp = shape
    x = torch.zeros(N, C, Hp - pad[2] - pad[3], Wp - pad[0] - pad[1])
    want = torch.ops.aten.reflection_pad2d_backward(g, x, pad)
    got = torch.from_numpy(cpu.fold_reflect(g.numpy(), pad[2], pad[3], pad[0], pad[1], None))
    assert got.numpy().tobytes() == want.numpy().tobytes()
    with torch.no_grad():
        assert O._fold_reflection(g, x, pad).numpy().tobytes() == want.numpy().tobytes()
    for nt in (1, 2):
        assert cpu.fold_reflect(g.numpy(), pad[2], pad[3], pad[0], pad[1], nt).tobytes() == want.numpy().tobytes()
    # a grad that needs a graph: torch's op, differentiable
    gg = g.clone().requires_grad_(True)
    with torch.enable_grad():
        r = O._fold_reflection(gg, x, pad)
    assert r.requires_grad and torch.equal(r.detach(), want)


def test_double_backward_through_a_fused_pad(torch_seed):
    """create_graph=True through the padded operator: the first gradient is
    the one without a graph, and it can be differentiated again."""
    m = fnt.convert(_net(), fuse_activations=True, fuse_padding=True)
    x = torch.rand(1, 3, 20, 18, requires_grad=True)
    y = m(x)
    g = torch.randn_like(y)
    (plain,) = torch.autograd.grad(y, x, g, retain_graph=True)
    (first,) = torch.autograd.grad(y, x, g, create_graph=True)
    assert first.requires_grad
    torch.testing.assert_close(first, plain, rtol=1e-4, atol=1e-5)
    (second,) = torch.autograd.grad(first.square().sum(), x)
    assert torch.isfinite(second).all()


def test_the_fold_under_a_real_make_fx_trace_is_an_operator(torch_seed):
    """make_fx traces with real tensors and grad mode off: the backward must
    record an operator for the fold, not the engine's result as a constant
    (replaying the graph with another gradient must give its gradient)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def step(x, g):
        y = torch.ops.fastnorm.instance_norm_pad(x, None, None, 1e-5, "", 0.01, [1, 1, 1, 1])
        return torch.autograd.grad(y, x, g)[0]

    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    gm = make_fx(step)(x, torch.randn(1, 2, 7, 7))
    g2 = torch.randn(1, 2, 7, 7)
    assert torch.equal(gm(x, g2), step(x, g2))


def test_the_fold_refuses_what_does_not_fit():
    g = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        cpu.fold_reflect(g, 2, 1, 0, 0, None)
    from fastnorm._cpu import _engine as E

    with pytest.raises(ValueError, match="inconsistent sizes"):
        E.fold_reflect(np.zeros(0, np.float32), np.zeros(0, np.float32), 2**62, 2, 2, 0, 0, 0, 0, 1)
    with pytest.raises(ValueError, match="separate memory"):
        E.fold_reflect(g.reshape(-1), g.reshape(-1), 1, 3, 3, 0, 0, 0, 0, 1)
    with pytest.raises(TypeError):
        E.fold_reflect(None, g, 1, 3, 3, 0, 0, 0, 0, 1)
