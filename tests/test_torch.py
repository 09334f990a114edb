"""torch tensors through every public function, fastnorm.torch modules, convert()."""

import numpy as np
import pytest
from _optional import require

torch = require("torch", reason="torch is not installed (pip install torch)")

import fastnorm  # noqa: E402
import fastnorm.torch as fnt  # noqa: E402

F = torch.nn.functional

# torch's global generator (torch.randn, module initialization) seeded per test
pytestmark = pytest.mark.usefixtures("torch_seed")


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 6, 12, 10, generator=g) * 2 + 1


def test_returns_tensor_without_copy(x):
    y = fastnorm.instance_norm(x)
    assert isinstance(y, torch.Tensor) and y.dtype == x.dtype and y.device == x.device
    torch.testing.assert_close(y, F.instance_norm(x), atol=1e-5, rtol=1e-5)
    out = torch.empty_like(x)
    r = fastnorm.instance_norm(x, out=out)
    assert r is out
    torch.testing.assert_close(out, y, atol=0, rtol=0)
    xi = x.clone()
    ptr = xi.data_ptr()
    assert fastnorm.instance_norm(xi, out=xi) is xi and xi.data_ptr() == ptr
    torch.testing.assert_close(xi, y, atol=0, rtol=0)


PLAIN_CASES = [
    # (function, kwargs, takes the short path)
    ("instance_norm", {}, True),
    ("instance_norm", {"activation": "relu", "eps": 1e-3}, True),
    ("group_norm", {"num_groups": 3}, True),
    ("instance_norm", {"weight": "array"}, True),  # a NumPy weight is not a tensor
    ("instance_norm", {"weight": "tensor"}, False),
    ("instance_norm", {"channel_axis": 1}, False),
    ("instance_norm", {"dtype": torch.float64}, False),
]


@pytest.mark.parametrize("fname,kw,plain", PLAIN_CASES)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_out", [False, True])
def test_plain_tensor_calls_take_the_short_path(monkeypatch, fname, kw, plain, fmt, dtype, with_out):
    """CPU float32/float64 tensors with nothing else to convert skip the
    general path (fastnorm._torch._plain_call), with the general path's bits,
    memory format and out= semantics; anything else still takes it."""
    from fastnorm import _torch as FT

    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 6, 12, 10, generator=g, dtype=dtype) * 3 + 1
    x = {
        "contiguous": base,
        "channels_last": base.to(memory_format=torch.channels_last),
        "strided": base[..., ::2],
    }[fmt]
    kw = dict(kw)
    if kw.get("weight") == "array":
        kw["weight"] = np.linspace(0.5, 2.0, 6)
    elif kw.get("weight") == "tensor":
        kw["weight"] = torch.linspace(0.5, 2.0, 6)
    if with_out and "dtype" in kw:
        pytest.skip("dtype= with out= is another test's case")
    fn = getattr(fastnorm, fname)

    def as_np(v):
        return v.numpy() if isinstance(v, torch.Tensor) else np.float64 if v is torch.float64 else v

    nkw = {k: as_np(v) for k, v in kw.items()}
    if fmt == "channels_last":  # computed channels last, as its memory is
        nkw["channel_axis"] = -1
        want = np.moveaxis(fn(np.moveaxis(x.numpy(), 1, -1), **nkw), -1, 1)
    else:
        want = fn(np.ascontiguousarray(x.numpy()), **nkw)
    general = []
    real = FT._needs_grad
    monkeypatch.setattr(FT, "_needs_grad", lambda k: general.append(1) or real(k))
    out = torch.full_like(x, float("nan")) if with_out else None
    got = fn(x, out=out, **kw) if with_out else fn(x, **kw)
    short = plain and fmt != "strided"
    assert (not general) == short, "short path taken" if general == [] else "general path taken"
    if with_out:
        assert got is out
    assert isinstance(got, torch.Tensor) and got.shape == x.shape
    if fmt == "channels_last" and not with_out:
        assert got.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(got.contiguous().numpy(), want)


def test_plain_tensor_calls_skip_the_dispatch(monkeypatch):
    """instance_norm / group_norm of a plain tensor go from the public
    function straight to fastnorm._torch.short_call, with no signature binding
    or backend lookup (_api._dispatch) and the NumPy call's bits; every other
    tensor call still goes through _dispatch."""
    # the first tensor call imports fastnorm._torch, which registers the
    # short path: imported here, so that this test passes alone too
    import fastnorm._torch
    from fastnorm import _api

    calls = []
    real = _api._dispatch
    monkeypatch.setattr(_api, "_dispatch", lambda fn, kw: calls.append(fn.__name__) or real(fn, kw))
    x = torch.randn(2, 6, 5, 4) * 2 + 1
    y = fastnorm.instance_norm(x)
    g = fastnorm.group_norm(x, 3, activation="relu")
    o = torch.empty_like(x)
    assert fastnorm.instance_norm(x, out=o) is o
    assert calls == []
    np.testing.assert_array_equal(y.numpy(), fastnorm.instance_norm(x.numpy()))
    np.testing.assert_array_equal(g.numpy(), fastnorm.group_norm(x.numpy(), 3, activation="relu"))
    np.testing.assert_array_equal(o.numpy(), y.numpy())
    general = [
        lambda: fastnorm.instance_norm(x, layout="NCHW"),
        lambda: fastnorm.instance_norm(x, weight=torch.ones(6)),  # a tensor argument
        lambda: fastnorm.instance_norm(x.requires_grad_(True)),  # autograd
        lambda: fastnorm.instance_norm(torch.nn.Parameter(x.detach())),  # a subclass
        lambda: torch.func.vmap(fastnorm.instance_norm)(x.detach()[None]),  # a transform
    ]
    for k, f in enumerate(general):
        calls.clear()
        r = f()
        assert calls and calls[0] == "instance_norm", k
        np.testing.assert_array_equal(r.detach().reshape(x.shape).numpy(), y.numpy())
    x.requires_grad_(False)


@pytest.mark.parametrize("fname", ["instance_norm", "group_norm"])
@pytest.mark.parametrize("x_cl,out_cl", [(True, False), (False, True)])
def test_plain_path_leaves_mismatched_out_to_the_general_path(monkeypatch, fname, x_cl, out_cl):
    """x and out in different memory formats: the general path's error, with
    the arguments as they came (a channels_last x must not reach it with
    channel_axis=-1 already set, which read W as the channel axis)."""
    from fastnorm import _torch as FT

    fmt = torch.channels_last
    x = torch.randn(2, 3, 4, 5)
    out = torch.empty(2, 3, 4, 5)
    x = x.to(memory_format=fmt) if x_cl else x
    out = out.to(memory_format=fmt) if out_cl else out
    fn = getattr(fastnorm, fname)
    args = (3,) if fname == "group_norm" else ()
    with pytest.raises(ValueError) as got:
        fn(x, *args, out=out)
    monkeypatch.setattr(FT, "_plain_call", lambda *a: None)
    with pytest.raises(ValueError) as want:
        fn(x, *args, out=out)
    assert str(got.value) == str(want.value) and "out must be" in str(got.value)


def test_plain_path_keeps_autograd_and_versions():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.no_grad():  # requires grad, autograd off: the short path, on a detached view
        y = fastnorm.instance_norm(x)
    assert not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), fastnorm.instance_norm(x.detach().numpy()))
    out = torch.empty(2, 4, 8, 8)
    v = out._version
    fastnorm.instance_norm(x.detach(), out=out)
    assert out._version > v  # autograd sees the write
    y = fastnorm.instance_norm(x)  # autograd on: the general path
    assert y.requires_grad  # the operator, differentiable


@pytest.mark.parametrize("nd,fmt", [(4, torch.channels_last), (5, torch.channels_last_3d)])
def test_channels_last_tensors(nd, fmt):
    x = torch.randn((2, 5, 6, 7, 8)[:nd]).to(memory_format=fmt)
    y = fastnorm.instance_norm(x)
    assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous()
    torch.testing.assert_close(y, F.instance_norm(x.contiguous()), atol=1e-5, rtol=1e-5)
    # the NHWC memory went to the kernels as is: the result shares no transpose copy
    g = fastnorm.group_norm(x, 5, activation="relu")
    assert g.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(g, F.relu(F.group_norm(x.contiguous(), 5)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_bfloat16_tensors(x, dtype):
    if dtype == torch.bfloat16:
        require("ml_dtypes")
    xt = x.to(dtype)
    y = fastnorm.instance_norm(xt)
    assert y.dtype == dtype
    ref = F.instance_norm(xt.double()).to(dtype)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(y.double(), ref.double(), atol=tol, rtol=tol)


def test_every_function_accepts_tensors(x):
    w = torch.rand(6) + 0.5
    b = torch.randn(6)
    torch.testing.assert_close(
        fastnorm.instance_norm(x, w, b), F.instance_norm(x, weight=w, bias=b), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(fastnorm.group_norm(x, 3, w, b), F.group_norm(x, 3, w, b), atol=1e-5, rtol=1e-5)
    mean, var = fastnorm.instance_stats(x)
    assert isinstance(mean, torch.Tensor) and mean.shape == (2, 6)
    torch.testing.assert_close(mean, x.mean((2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(var, x.var((2, 3), unbiased=False), atol=1e-5, rtol=1e-5)
    m = fastnorm.instance_moments(x)
    assert isinstance(m.mean, torch.Tensor)
    m2 = fastnorm.instance_moments(x[..., :5]).merge(fastnorm.instance_moments(x[..., 5:]))
    torch.testing.assert_close(m2.var, m.var, atol=1e-10, rtol=1e-10)
    y = fastnorm.normalize(x, mean, var)
    torch.testing.assert_close(y, F.instance_norm(x), atol=1e-4, rtol=1e-4)
    a = fastnorm.adain(x, x[:1] * 3 + 2)
    assert isinstance(a, torch.Tensor) and a.shape == x.shape


def test_tensors_requiring_grad_are_differentiated(x):
    """The public functions and the modules run under autograd
    (the fastnorm:: operators); functions without a backward say so."""
    xr = x.clone().requires_grad_(True)
    w = torch.linspace(0.5, 2, 6, requires_grad=True)
    y = fastnorm.instance_norm(xr, w)
    assert y.requires_grad
    g = torch.randn_like(y)
    y.backward(g)
    xt, wt = x.clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    F.instance_norm(xt, weight=wt).backward(g)
    torch.testing.assert_close(xr.grad, xt.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w.grad, wt.grad, atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="instance_stats has no backward pass"):
        fastnorm.instance_stats(xr)
    with pytest.raises(RuntimeError, match="out= cannot be used when an input requires grad"):
        fastnorm.instance_norm(xr, out=torch.empty_like(x))
    with torch.no_grad():
        fastnorm.instance_norm(xr)
    mod = fnt.InstanceNorm2d(6, affine=True)
    mod(x).sum().backward()
    assert mod.weight.grad is not None and mod.bias.grad is not None


@pytest.mark.parametrize(
    "cls,fcls,args,shape",
    [
        (torch.nn.InstanceNorm1d, fnt.InstanceNorm1d, (4,), (2, 4, 30)),
        (torch.nn.InstanceNorm2d, fnt.InstanceNorm2d, (4,), (2, 4, 9, 10)),
        (torch.nn.InstanceNorm3d, fnt.InstanceNorm3d, (4,), (2, 4, 5, 6, 7)),
        (torch.nn.GroupNorm, fnt.GroupNorm, (2, 4), (2, 4, 9, 10)),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_modules_drop_in(cls, fcls, args, shape, affine):
    kw = {"affine": affine}
    ref = cls(*args, **kw)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 2)
            ref.bias.normal_()
    mod = fcls(*args, **kw)
    assert list(mod.state_dict()) == list(ref.state_dict())
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(shape) * 3 + 1
    with torch.inference_mode():
        torch.testing.assert_close(mod(x), ref(x), atol=1e-5, rtol=1e-5)


def test_tracked_running_stats_module():
    ref = torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    mod = fnt.InstanceNorm2d(3, affine=True, track_running_stats=True)
    mod.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for k in range(3):
            x = torch.randn(4, 3, 8, 8) * (k + 1) + k
            torch.testing.assert_close(mod(x), ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mod.running_mean, ref.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(mod.running_var, ref.running_var, atol=1e-6, rtol=1e-5)
        mod.eval()
        ref.eval()
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(mod(x), ref(x), atol=1e-5, rtol=1e-5)


def test_convert_in_place():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.InstanceNorm2d(8, affine=True),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3), torch.nn.GroupNorm(4, 8), torch.nn.SiLU()),
    )
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        ref = model(x)
        got = fnt.convert(model)
    assert got is model
    assert isinstance(model[1], fnt.InstanceNorm2d) and isinstance(model[3][1], fnt.GroupNorm)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)
        fnt.convert(model, fuse_activations=True)
        assert isinstance(model[2], torch.nn.Identity) and model[1].activation == "relu"
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


def test_convert_keeps_the_module_objects():
    """convert() swaps each norm's class in place: a norm used twice stays one
    module, its Parameter objects (and an optimizer built on them before),
    requires_grad and hooks are kept."""
    shared = torch.nn.GroupNorm(2, 4)
    frozen = torch.nn.InstanceNorm2d(4, affine=True)
    frozen.requires_grad_(False)
    model = torch.nn.Sequential(shared, torch.nn.Conv2d(4, 4, 1), shared, frozen)
    params = [id(p) for p in model.parameters()]
    seen = []
    frozen.register_forward_hook(lambda mod, inp, out: seen.append(out.shape) or out * 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 4, 6, 6)
    ref = model(x)
    assert fnt.convert(model) is model
    assert isinstance(model[0], fnt.GroupNorm) and model[0] is model[2] and isinstance(model[3], fnt.InstanceNorm2d)
    assert [id(p) for p in model.parameters()] == params
    assert not model[3].weight.requires_grad and not model[3].bias.requires_grad
    got = model(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert len(seen) == 2  # the hook ran in both calls
    before = model[0].weight.detach().clone()
    got.pow(2).sum().backward()
    opt.step()
    assert not torch.equal(model[0].weight.detach(), before)  # the optimizer trains the converted module
    one = torch.nn.InstanceNorm2d(3)
    assert fnt.convert(one) is one and isinstance(one, fnt.InstanceNorm2d) and one.activation is None


def test_convert_fuses_only_where_the_model_stays_the_same():
    """An activation is fused only after a norm used once, in a container that
    runs nn.Sequential's own forward, with no hook that would see the change."""

    class Residual(torch.nn.Sequential):  # a subclass with its own routing
        def forward(self, x):
            y = self[0](x)
            return self[1](y) + y

    hooked_relu = torch.nn.ReLU()
    hooked_relu.register_forward_hook(lambda mod, inp, out: out + 1)
    hooked_norm = torch.nn.InstanceNorm2d(4)
    hooked_norm.register_forward_hook(lambda mod, inp, out: out * 3)
    shared = torch.nn.InstanceNorm2d(4)
    model = torch.nn.ModuleDict(
        {
            "residual": Residual(torch.nn.InstanceNorm2d(4), torch.nn.ReLU()),
            "hooked_relu": torch.nn.Sequential(torch.nn.InstanceNorm2d(4), hooked_relu),
            "hooked_norm": torch.nn.Sequential(hooked_norm, torch.nn.LeakyReLU(0.2)),
            "shared_seq": torch.nn.Sequential(shared, torch.nn.SiLU()),
            "shared_plain": shared,
            "plain": torch.nn.Sequential(torch.nn.GroupNorm(2, 4), torch.nn.LeakyReLU(0.3)),
        }
    )
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        ref = {k: m(x) for k, m in model.items()}
        fnt.convert(model, fuse_activations=True)
        for k, m in model.items():
            torch.testing.assert_close(m(x), ref[k], atol=1e-5, rtol=1e-5, msg=k)
    for k in ("residual", "hooked_relu", "hooked_norm", "shared_seq"):
        assert model[k][0].activation is None and not isinstance(model[k][1], fnt.FusedActivation), k
    assert model["plain"][0].activation == "leaky_relu" and model["plain"][0].negative_slope == 0.3
    assert isinstance(model["plain"][1], fnt.FusedActivation)


def test_running_statistics_of_another_channel_count_are_refused():
    m = fnt.convert(torch.nn.InstanceNorm2d(4, track_running_stats=True))
    before = m.running_mean.clone()
    with pytest.raises(ValueError, match=r"num_features \(4\) with track_running_stats=True, but got: 1"):
        m(torch.randn(2, 1, 5, 5))
    assert torch.equal(m.running_mean, before)
    m.eval()
    with pytest.raises(ValueError, match="num_features"):
        m(torch.randn(2, 2, 5, 5))


def test_group_norm_with_one_value_is_refused_as_torch_does():
    for shape, refused in (((1, 4, 1, 1), True), ((2, 4, 1, 1), False), ((1, 4), True), ((1, 8, 1), False)):
        ref, ours = torch.nn.GroupNorm(4, shape[1]), fnt.GroupNorm(4, shape[1])
        x = torch.randn(*shape)
        if refused:
            for m in (ref, ours):
                with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                    m(x)
        else:
            torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_negative_bit_tensors(x):
    """A lazily negated view (its memory holds -x) is read by value; an out=
    of that kind cannot take the write and is refused."""

    def neg_view(t):  # conj().imag: the memory of -t, negative bit set: the values of t
        return torch.complex(torch.zeros_like(t), -t).conj().imag

    neg = neg_view(x)
    assert neg.is_neg()
    w = torch.linspace(0.5, 2, 6)
    wneg = neg_view(w)
    torch.testing.assert_close(fastnorm.instance_norm(neg, wneg), fastnorm.instance_norm(x, w), atol=0, rtol=0)
    torch.testing.assert_close(fastnorm.group_norm(neg, 3, wneg), fastnorm.group_norm(x, 3, w), atol=0, rtol=0)
    out = neg_view(torch.empty_like(x))
    with pytest.raises(ValueError, match="negative"):
        fastnorm.instance_norm(x, out=out)


def test_style_transfer_network_matches():
    from benchmarks.style_transfer import style_network

    torch.manual_seed(0)
    net = style_network(channels=(8, 16, 32), res_blocks=2).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref = net(x)
        fnt.convert(net, fuse_activations=True)
        y = net(x)
        ycl = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert (y - ref).abs().max().item() <= 1e-4
    assert (ycl - ref).abs().max().item() <= 1e-4


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for torch")


@cuda
def test_cuda_tensors_stay_on_device():
    require("cupy", reason="CUDA tensors run through CuPy")
    x = torch.randn(2, 6, 40, 30, device="cuda") * 2 + 1
    y = fastnorm.instance_norm(x)
    assert y.is_cuda and y.device == x.device
    torch.testing.assert_close(y, F.instance_norm(x), atol=1e-5, rtol=1e-5)
    xc = x.to(memory_format=torch.channels_last)
    yc = fastnorm.group_norm(xc, 3, activation="relu")
    assert yc.is_cuda and yc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yc, F.relu(F.group_norm(x, 3)), atol=1e-5, rtol=1e-5)
    h = fastnorm.instance_norm(x.half())
    assert h.dtype == torch.float16 and h.is_cuda
    mod = fnt.convert(torch.nn.Sequential(torch.nn.InstanceNorm2d(6, affine=True)).cuda())
    with torch.inference_mode():
        torch.testing.assert_close(
            mod(x), F.instance_norm(x, weight=mod[0].weight, bias=mod[0].bias), atol=1e-5, rtol=1e-5
        )


@cuda
def test_cuda_calls_run_on_torchs_stream_and_take_bfloat16():
    """Under torch.cuda.stream(s) the kernels go to s (the
    next torch op is ordered after them); bfloat16 CUDA tensors and a bfloat16
    weight with float32 input work."""
    cp = require("cupy", reason="CUDA tensors run through CuPy")
    from fastnorm._gpu import _backend as G

    seen = []
    orig = G._fn

    def spy(name, t):
        f = orig(name, t)
        return lambda *a, **k: (seen.append(cp.cuda.get_current_stream().ptr), f(*a, **k))[1]

    x = torch.randn(4, 8, 64, 64, device="cuda") * 3 + 2
    s = torch.cuda.Stream()
    G._fn = spy
    try:
        with torch.cuda.stream(s):
            y = fastnorm.instance_norm(x)
            z = y * 1.0  # ordered after the kernels on s
    finally:
        G._fn = orig
    torch.cuda.synchronize()
    assert seen and set(seen) == {s.cuda_stream}
    torch.testing.assert_close(z, F.instance_norm(x), atol=1e-5, rtol=1e-5)
    require("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    xb = x.to(torch.bfloat16)
    yb = fastnorm.instance_norm(xb)
    assert yb.dtype == torch.bfloat16 and yb.is_cuda
    torch.testing.assert_close(yb.float(), F.instance_norm(xb.float()), atol=3e-2, rtol=3e-2)
    w = torch.randn(8, device="cuda").to(torch.bfloat16)
    torch.testing.assert_close(fastnorm.instance_norm(x, w), F.instance_norm(x, weight=w.float()), atol=1e-5, rtol=1e-5)
