"""Drop-in torch.nn modules backed by fastnorm (inference), and convert().

``InstanceNorm1d/2d/3d`` and ``GroupNorm`` subclass torch's own classes, so
constructor arguments, parameters, buffers and ``state_dict`` keys are torch's;
only ``forward`` runs fastnorm's kernels.  There is no backward pass yet: a
forward that needs gradients raises a clear error (run inference under
``torch.inference_mode()`` or ``torch.no_grad()``).

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
from __future__ import annotations

import torch
from torch import nn

from . import _api

__all__ = ["InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GroupNorm", "convert"]


def _check_grad(module, x):
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters())):
        raise RuntimeError(
            f"fastnorm.torch.{type(module).__name__} has no backward pass yet and this forward needs "
            "gradients. For inference, run it under torch.inference_mode() or torch.no_grad() "
            "(or call requires_grad_(False) on the model)."
        )


def _param(p):
    return None if p is None else p.detach()


class _FastInstanceNorm:
    """forward() shared by the InstanceNorm{1,2,3}d classes (torch semantics)."""

    activation = None
    negative_slope = 0.01

    def forward(self, input):
        _check_grad(self, input)
        self._check_input_dim(input)
        if input.dim() == self._get_no_batch_dim():
            return self.forward(input.unsqueeze(0)).squeeze(0)
        C = input.shape[1]
        if C != self.num_features and self.affine:
            raise ValueError(f"expected input's size at dim=1 to match num_features ({self.num_features}), "
                             f"but got: {C}.")
        if self.training or not self.track_running_stats:
            spatial = 1
            for s in input.shape[2:]:
                spatial *= s
            if spatial == 1:  # torch's check (the unbiased running_var would be 0 / 0)
                raise ValueError(f"Expected more than 1 spatial element when training, got input "
                                 f"size {input.size()}")
        w, b = _param(self.weight), _param(self.bias)
        kw = dict(eps=self.eps, activation=self.activation, negative_slope=self.negative_slope)
        if self.track_running_stats and not self.training:
            return _api.normalize(input, self.running_mean, self.running_var, w, b, **kw)
        if self.track_running_stats and self.training and self.momentum:
            m = _api.instance_moments(input)
            n = m.count
            with torch.no_grad():
                # in float64 (the moments' dtype), rounded once into the buffers:
                # in a float16 / bfloat16 buffer each step would round (and cancel)
                mom = self.momentum
                for buf, batch in ((self.running_mean, m.mean.mean(0)),
                                   (self.running_var, (m.m2 / (n - 1)).mean(0))):
                    buf.copy_((1 - mom) * buf.double() + mom * batch.to(buf.device))
            return _api.normalize(input, m.mean, m.m2 / n, w, b, **kw)
        return _api.instance_norm(input, w, b, **kw)


class InstanceNorm1d(_FastInstanceNorm, nn.InstanceNorm1d):
    """torch.nn.InstanceNorm1d with fastnorm's forward."""


class InstanceNorm2d(_FastInstanceNorm, nn.InstanceNorm2d):
    """torch.nn.InstanceNorm2d with fastnorm's forward."""


class InstanceNorm3d(_FastInstanceNorm, nn.InstanceNorm3d):
    """torch.nn.InstanceNorm3d with fastnorm's forward."""


class GroupNorm(nn.GroupNorm):
    """torch.nn.GroupNorm with fastnorm's forward."""

    activation = None
    negative_slope = 0.01

    def forward(self, input):
        _check_grad(self, input)
        return _api.group_norm(input, self.num_groups, _param(self.weight), _param(self.bias), eps=self.eps,
                             activation=self.activation, negative_slope=self.negative_slope)


_SWAP = {
    nn.InstanceNorm1d: InstanceNorm1d,
    nn.InstanceNorm2d: InstanceNorm2d,
    nn.InstanceNorm3d: InstanceNorm3d,
    nn.GroupNorm: GroupNorm,
}
_ACTS = {nn.ReLU: ("relu", None), nn.LeakyReLU: ("leaky_relu", "negative_slope"), nn.SiLU: ("silu", None)}


def _replacement(mod):
    new_cls = _SWAP.get(type(mod))
    if new_cls is None:
        return None
    # bias=False (torch >= 2.1) is passed only when used, so older torch works too
    kw = {"bias": False} if mod.affine and getattr(mod, "bias", None) is None else {}
    if new_cls is GroupNorm:
        new = GroupNorm(mod.num_groups, mod.num_channels, eps=mod.eps, affine=mod.affine, **kw)
    else:
        new = new_cls(mod.num_features, eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                      track_running_stats=mod.track_running_stats, **kw)
    p = next(iter(mod.parameters()), None)
    if p is None:
        p = next((b for b in mod.buffers() if b.is_floating_point()), None)
    if p is not None:
        new = new.to(device=p.device, dtype=p.dtype)
    new.load_state_dict(mod.state_dict())
    new.train(mod.training)
    return new


def convert(model, *, fuse_activations=False):
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
