"""Drop-in torch.nn modules backed by fastnorm (inference), and convert().

``InstanceNorm1d/2d/3d`` and ``GroupNorm`` subclass torch's own classes, so
constructor arguments, parameters, buffers and ``state_dict`` keys are torch's;
only ``forward`` runs fastnorm's kernels, as the fastnorm:: custom operators
(fastnorm._torch_ops): modules train (autograd), compile, export, trace and
script.  Shapes stay symbolic in ``forward`` (no size is converted to a Python
number), so an export with dynamic dimensions takes every shape.

Importing this module imports torch; ``import fastnorm`` does not.

Examples
--------
>>> import torch, fastnorm.torch as fnt
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.InstanceNorm2d(8), torch.nn.ReLU())
>>> model = fnt.convert(model)
>>> type(model[1]).__name__
'InstanceNorm2d'
>>> with torch.inference_mode():
...     y = model(torch.randn(1, 3, 16, 16))
>>> tuple(y.shape)
(1, 8, 14, 14)
"""

from typing import Any

import torch
from torch import Tensor, nn

from . import _torch_ops  # noqa: F401  (registers the fastnorm:: operators)
from ._torch_onnx import onnx_translation_table, register_legacy_symbolics

register_legacy_symbolics()

__all__ = ["InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GroupNorm", "convert", "onnx_translation_table"]


def _spatial(x: Tensor) -> int:
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


class _FastInstanceNorm:
    """forward() shared by the InstanceNorm{1,2,3}d classes (torch semantics),
    on the fastnorm custom operators (TorchScript-compatible code)."""

    activation: str | None
    negative_slope: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation = None  # set by convert(fuse_activations=True)
        self.negative_slope = 0.01

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        unbatched = input.dim() == self._get_no_batch_dim()
        x = input.unsqueeze(0) if unbatched else input
        C = x.shape[1]
        if C != self.num_features and self.affine:
            raise ValueError(
                "expected input's size at dim=1 to match num_features ("
                + str(self.num_features)
                + "), but got: "
                + str(C)
                + "."
            )
        a = self.activation
        act = a if a is not None else ""
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats and _spatial(x) == 1:
            # torch's check (the unbiased running_var would be 0 / 0)
            raise ValueError("Expected more than 1 spatial element when training, got input size " + str(x.size()))
        if not use_input_stats:
            rm, rv = self.running_mean, self.running_var
            assert rm is not None and rv is not None
            y = torch.ops.fastnorm.normalize(x, rm, rv, self.weight, self.bias, self.eps, act, self.negative_slope)
        else:
            rm, rv = self.running_mean, self.running_var
            if self.track_running_stats and self.momentum is not None and rm is not None and rv is not None:
                with torch.no_grad():
                    # in float64 (the moments' dtype), rounded once into the buffers:
                    # in a float16 / bfloat16 buffer each step would round (and cancel)
                    mean, var = torch.ops.fastnorm.moments(x.detach())
                    n = _spatial(x)  # symbolic under torch.export: float() would specialize it
                    mom = float(self.momentum)
                    rm.copy_((1 - mom) * rm.double() + mom * mean.mean(0).to(rm.device))
                    rv.copy_((1 - mom) * rv.double() + mom * (var * (n / (n - 1))).mean(0).to(rv.device))
            y = torch.ops.fastnorm.instance_norm(x, self.weight, self.bias, self.eps, act, self.negative_slope)
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_FastInstanceNorm, nn.InstanceNorm1d):
    """torch.nn.InstanceNorm1d with fastnorm's kernels."""


class InstanceNorm2d(_FastInstanceNorm, nn.InstanceNorm2d):
    """torch.nn.InstanceNorm2d with fastnorm's kernels."""


class InstanceNorm3d(_FastInstanceNorm, nn.InstanceNorm3d):
    """torch.nn.InstanceNorm3d with fastnorm's kernels."""


class GroupNorm(nn.GroupNorm):
    """torch.nn.GroupNorm with fastnorm's kernels."""

    activation: str | None
    negative_slope: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation = None
        self.negative_slope = 0.01

    def forward(self, input: Tensor) -> Tensor:
        a = self.activation
        act = a if a is not None else ""
        return torch.ops.fastnorm.group_norm(
            input, self.num_groups, self.weight, self.bias, self.eps, act, self.negative_slope
        )


_SWAP = {
    nn.InstanceNorm1d: InstanceNorm1d,
    nn.InstanceNorm2d: InstanceNorm2d,
    nn.InstanceNorm3d: InstanceNorm3d,
    nn.GroupNorm: GroupNorm,
}
_ACTS = {nn.ReLU: ("relu", None), nn.LeakyReLU: ("leaky_relu", "negative_slope"), nn.SiLU: ("silu", None)}


def _replacement(mod: Any) -> Any:
    new_cls = _SWAP.get(type(mod))
    if new_cls is None:
        return None
    # bias=False (torch >= 2.1) is passed only when used, so older torch works too
    kw = {"bias": False} if mod.affine and getattr(mod, "bias", None) is None else {}
    if new_cls is GroupNorm:
        new: Any = GroupNorm(mod.num_groups, mod.num_channels, eps=mod.eps, affine=mod.affine, **kw)
    else:
        new = new_cls(
            mod.num_features,
            eps=mod.eps,
            momentum=mod.momentum,
            affine=mod.affine,
            track_running_stats=mod.track_running_stats,
            **kw,
        )
    p = next(iter(mod.parameters()), None)
    if p is None:
        p = next((b for b in mod.buffers() if b.is_floating_point()), None)
    if p is not None:
        new = new.to(device=p.device, dtype=p.dtype)
    new.load_state_dict(mod.state_dict())
    new.train(mod.training)
    return new


def convert(model: Any, *, fuse_activations: bool = False) -> Any:
    """Swap every nn.InstanceNorm{1,2,3}d and nn.GroupNorm in ``model`` for
    fastnorm's modules, in place, and return the model.

    With ``fuse_activations=True``, a ReLU / LeakyReLU / SiLU that directly
    follows a swapped module inside an ``nn.Sequential`` is folded into it (one
    pass over memory) and replaced by ``nn.Identity``.
    """
    if isinstance(model, nn.Module) and type(model) in _SWAP:
        return _replacement(model)
    ours = tuple(_SWAP.values())
    for parent in list(model.modules()):
        names = list(parent._modules.keys())
        for i, name in enumerate(names):
            child = parent._modules[name]
            new = _replacement(child) if child is not None else None
            if new is not None:
                parent._modules[name] = child = new
            if not (fuse_activations and isinstance(child, ours) and child.activation is None):
                continue
            if isinstance(parent, nn.Sequential) and i + 1 < len(names):
                nxt = parent._modules[names[i + 1]]
                spec = _ACTS.get(type(nxt))
                if spec is not None:
                    child.activation = spec[0]
                    if spec[1]:
                        child.negative_slope = float(getattr(nxt, spec[1]))
                    parent._modules[names[i + 1]] = nn.Identity()
    return model
