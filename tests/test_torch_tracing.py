"""Graph capture of fastnorm in torch: torch.export with dynamic shapes of
a converted module that updates running statistics, and torch.jit.trace of
code that calls the public functions (not the modules): the trace records the
fastnorm:: operators, so it is right for new inputs, or warns where a call
has no operator form."""

import warnings

import pytest
from _optional import require

torch = require("torch", reason="torch is not installed")

import fastnorm  # noqa: E402
import fastnorm.torch as fnt  # noqa: E402


def test_export_training_running_stats_with_dynamic_spatial_size(torch_seed):
    """Exported with dynamic N, H and W, a training-mode InstanceNorm2d with
    running statistics takes every shape (it was specialized to H * W)."""
    ref = torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
        ref.bias.normal_()
    ours = fnt.convert(torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True))
    ours.load_state_dict(ref.state_dict())
    ref.train()
    ours.train()
    dims = {0: torch.export.Dim("N", min=1, max=8), 2: torch.export.Dim("H", min=2, max=64)}
    dims[3] = torch.export.Dim("W", min=2, max=64)
    ep = torch.export.export(ours, (torch.randn(2, 4, 8, 8),), dynamic_shapes=({**dims},))
    m = ep.module()
    for shape in [(1, 4, 5, 7), (3, 4, 9, 2)]:
        x = torch.randn(*shape) * 2 + 1
        torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.running_mean, ref.running_mean)
    torch.testing.assert_close(m.running_var, ref.running_var)


class _Plain(torch.nn.Module):
    """A model written with the public functions (every layout form)."""

    def forward(self, x):
        w = torch.linspace(0.5, 2.0, 4)
        y = fastnorm.instance_norm(x, w, activation="relu")
        y = fastnorm.group_norm(y, 2, None, w) + fastnorm.normalize(x, x.mean((2, 3)), x.var((2, 3)) + 1)
        z = fastnorm.instance_norm(x.permute(0, 2, 3, 1), channel_axis=-1).permute(0, 3, 1, 2)
        z = z + fastnorm.group_norm(x.permute(0, 2, 3, 1), 4, layout="NHWC").permute(0, 3, 1, 2)
        return y + z + fastnorm.adain(x, x[:, :, ::2] * 3 + 1, alpha=0.5)


def test_trace_of_the_public_functions_follows_the_operators(torch_seed):
    model = _Plain()
    with torch.no_grad():
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            tr = torch.jit.trace(model, torch.randn(2, 4, 6, 6))
        graph = str(tr.inlined_graph)
        for op in ("instance_norm", "group_norm", "normalize", "adain"):
            assert f"fastnorm::{op}" in graph, op
        x2 = torch.randn(3, 4, 5, 7) * 3 + 1  # another input, another shape
        torch.testing.assert_close(tr(x2), model(x2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: fastnorm.instance_stats(x)[0].reshape(1, -1, 1, 1) + x,
        lambda x: fastnorm.instance_norm(x, dtype=torch.float64).float(),
        lambda x: fastnorm.group_norm(x, 2, out=torch.empty_like(x)),
    ],
    ids=["instance_stats", "dtype", "out"],
)
def test_trace_of_a_call_without_operator_form_warns(call, torch_seed):
    with torch.no_grad(), pytest.warns(torch.jit.TracerWarning, match="recorded in the trace as constants"):
        torch.jit.trace(call, torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize("training", [True, False])
def test_fx_symbolic_trace_of_converted_models(training, torch_seed):
    """torch.fx.symbolic_trace records a converted instance norm as one call
    (its shape checks ran into the proxies' control flow and raised
    TraceError): the graph module gives the model's bits, keeps the running
    statistics' updates, and still checks its inputs."""

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
            torch.nn.ReLU(),
            torch.nn.GroupNorm(2, 4),
        )

    ours = fnt.convert(model(), fuse_activations=True).train(training)
    twin = fnt.convert(model(), fuse_activations=True).train(training)
    gm = torch.fx.symbolic_trace(twin)
    assert "_instance_norm_forward" in gm.code and "fastnorm.group_norm" in gm.code
    for shape in ((2, 3, 12, 12), (1, 3, 7, 9)):
        x = torch.randn(shape)
        assert torch.equal(gm(x), ours(x))
    for name in ("1.running_mean", "1.running_var"):
        assert torch.equal(dict(gm.named_buffers())[name], dict(ours.named_buffers())[name]), name
    alone = torch.fx.symbolic_trace(fnt.InstanceNorm2d(4))
    with pytest.raises(ValueError, match="expected 3D or 4D input"):
        alone(torch.randn(2, 4, 5, 5, 5))
    x = torch.randn(4, 5, 5)  # unbatched, as torch's module takes it
    assert torch.equal(alone(x), fnt.InstanceNorm2d(4)(x))
