"""torch tensors through the public functions, without copies.

CPU tensors become NumPy views (``Tensor.numpy()``), CUDA tensors CuPy views
(DLPack); the result is wrapped back as a tensor on the same device.  A
channels_last / channels_last_3d tensor is NHWC / NDHWC in memory: it is
handed to the channels-last kernels as that memory (no transposing copy) and
the result comes back as a channels_last tensor.  bfloat16 and float16 are
computed in float32.  Imported only when a tensor arrives.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _api
from . import _validate as V

INTEROP = True
ARRAY_TYPE = torch.Tensor  # other torch objects (Size, dtype, Module) are refused by _api

# tells autograd that a tensor was written in place (torch >= 2.1 has the public name)
_increment_version = getattr(torch.autograd.graph, "increment_version", None) or \
    torch._C._autograd._increment_version


def _no_grad_check(*tensors):
    if torch.is_grad_enabled():
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise RuntimeError(
                    "fastnorm has no backward pass yet: an input requires grad while autograd is "
                    "enabled. Call it under torch.no_grad() / torch.inference_mode(), or detach() "
                    "the input, for inference."
                )


def _is_cl(t, channel_axis):
    """A logically channels-first tensor whose memory is channels-last."""
    return (channel_axis == 1 and t.dim() >= 3 and not t.is_contiguous()
            and t.movedim(1, -1).is_contiguous())


def to_array(t, name="x"):
    """Zero-copy NumPy (CPU) or CuPy (CUDA) view of a tensor."""
    t = t.detach()
    if t.device.type == "cuda":
        import cupy

        if t.dtype == torch.bfloat16:
            raise TypeError(f"{name}: bfloat16 CUDA tensors are not supported yet; use float16 or float32")
        return cupy.from_dlpack(t)
    if t.device.type != "cpu":
        raise TypeError(f"{name} must be a CPU or CUDA tensor, got device {t.device}")
    if t.dtype == torch.bfloat16:
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(f"{name}: bfloat16 tensors need the ml_dtypes package (pip install ml_dtypes)") from None
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if t.dtype not in (torch.float16, torch.float32, torch.float64):
        raise TypeError(f"{name} must have a floating dtype ({V.SUPPORTED_DTYPES}), got dtype {t.dtype}")
    return t.numpy()


def from_array(a, like):
    """Tensor sharing a's memory, on like's device."""
    if type(a).__module__.partition(".")[0] == "cupy":
        return torch.from_dlpack(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _prep(x, channel_axis, out=None, name="x"):
    """(array, channel_axis for the array, was_mapped, out array)."""
    _no_grad_check(x)
    V.channels_last(channel_axis, x.dim())  # the same check as for arrays (True, 1.0 refused)
    cl = _is_cl(x, channel_axis)
    xt = x.detach().movedim(1, -1) if cl else x.detach()
    ax = -1 if cl else channel_axis
    oa = None
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"out must be None or a torch.Tensor like x, got {type(out).__name__}")
        if torch.is_grad_enabled() and out.requires_grad:
            # torch's own in-place ops refuse a leaf that requires grad; a non-leaf
            # would get a write autograd cannot differentiate (fastnorm has no backward)
            raise RuntimeError(
                "out requires grad while autograd is enabled: fastnorm writes out in place and has "
                "no backward pass. Pass an out that does not require grad, or call under "
                "torch.no_grad() / torch.inference_mode()."
            )
        if out.device != x.device:
            raise ValueError(f"out must be on x's device {x.device}, got {out.device}")
        ot = out.movedim(1, -1) if cl else out
        if not ot.is_contiguous():
            fmt = "channels_last like x" if cl else "contiguous"
            raise ValueError(f"out must be {fmt}, got a tensor with strides {tuple(out.stride())}")
        oa = to_array(ot, "out")
    return to_array(xt, name), ax, cl, oa


def _back(y, x, cl, out=None):
    """The result tensor: out (written in place, its version bumped so that
    autograd sees the write) or a tensor sharing y's memory."""
    if out is not None:
        _increment_version(out)
        return out
    t = from_array(y, x)
    return t.movedim(-1, 1) if cl else t


def _host_or_same(v, x):
    """weight / bias / stats: tensors stay on their device's array type."""
    if isinstance(v, torch.Tensor):
        _no_grad_check(v)
        if x.device.type == "cuda":
            return to_array(v.detach().to(x.device))
        return v.detach().cpu().numpy() if v.dtype != torch.bfloat16 else v.detach().float().cpu().numpy()
    return v


def instance_norm(x, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
                  negative_slope=0.01, out=None, num_threads=None):
    a, ax, cl, oa = _prep(x, channel_axis, out)
    y = _api.instance_norm(a, _host_or_same(weight, x), _host_or_same(bias, x), eps=eps,
                           channel_axis=ax, activation=activation, negative_slope=negative_slope,
                           out=oa, num_threads=num_threads)
    return _back(y, x, cl, out)


def group_norm(x, num_groups, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
               negative_slope=0.01, out=None, num_threads=None):
    a, ax, cl, oa = _prep(x, channel_axis, out)
    y = _api.group_norm(a, num_groups, _host_or_same(weight, x), _host_or_same(bias, x), eps=eps,
                        channel_axis=ax, activation=activation, negative_slope=negative_slope,
                        out=oa, num_threads=num_threads)
    return _back(y, x, cl, out)


def normalize(x, mean, var, weight=None, bias=None, *, eps=1e-5, channel_axis=1, activation=None,
              negative_slope=0.01, out=None, num_threads=None):
    a, ax, cl, oa = _prep(x, channel_axis, out)
    y = _api.normalize(a, _host_or_same(mean, x), _host_or_same(var, x), _host_or_same(weight, x),
                       _host_or_same(bias, x), eps=eps, channel_axis=ax, activation=activation,
                       negative_slope=negative_slope, out=oa, num_threads=num_threads)
    return _back(y, x, cl, out)


def instance_stats(x, *, channel_axis=1, num_threads=None):
    a, ax, cl, _ = _prep(x, channel_axis)
    mean, var = _api.instance_stats(a, channel_axis=ax, num_threads=num_threads)
    return from_array(mean, x), from_array(var, x)


def instance_moments(x, *, channel_axis=1, num_threads=None):
    a, ax, cl, _ = _prep(x, channel_axis)
    m = _api.instance_moments(a, channel_axis=ax, num_threads=num_threads)
    return _api.Moments(from_array(m.count, x), from_array(m.mean, x), from_array(m.m2, x))


def adain(content, style, *, eps=1e-5, channel_axis=1, alpha=1.0, num_threads=None):
    if not isinstance(style, torch.Tensor):
        raise TypeError(f"style must be a torch.Tensor like content, got {type(style).__name__}")
    _no_grad_check(style)
    a, ax, cl, _ = _prep(content, channel_axis, name="content")
    # style in the layout the content is handed over in (a view; style is usually small)
    s = to_array(style.detach().movedim(1, -1) if cl else style.detach(), "style")
    y = _api.adain(a, s, eps=eps, channel_axis=ax, alpha=alpha, num_threads=num_threads)
    return _back(y, content, cl)
