"""fastnorm's kernels as torch custom operators (namespace ``fastnorm``).

``torch.compile`` (fullgraph), ``torch.export``, ``torch.jit.trace`` and
TorchScript see one opaque operator per norm instead of a NumPy round trip,
so a traced or exported model keeps calling fastnorm and is right for every
input; ``register_autograd`` connects the backward kernels, so models train.

Operators (all tensors on one device; CPU tensors run the CPU engine, CUDA
tensors the CuPy kernels):

- ``fastnorm::instance_norm(x, weight?, bias?, eps, activation, negative_slope) -> y``
  and ``fastnorm::group_norm(x, num_groups, weight?, bias?, eps, activation,
  negative_slope) -> y`` (``activation`` is "", "relu", "leaky_relu" or "silu");
- ``fastnorm::instance_norm_backward(grad_out, x, weight?, eps)`` and
  ``fastnorm::group_norm_backward(grad_out, x, num_groups, weight?, eps)``,
  each ``-> (grad_x, grad_weight, grad_bias)``;
- ``fastnorm::normalize(x, mean, var, weight?, bias?, eps, activation, negative_slope) -> y``
  (given statistics: running statistics in evaluation);
- ``fastnorm::moments(x) -> (mean, var)``: float64 (N, C), var biased.

Channels-first tensors whose memory is channels-last (``channels_last``)
run natively; outputs keep the input's memory format.  Exporters: see
fastnorm.torch's onnx support (InstanceNormalization / GroupNormalization).

Imported by fastnorm.torch; importing it imports torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _api
from . import _torch as T

_ACTS = ("", "relu", "leaky_relu", "silu")


def _act(activation: str) -> str | None:
    if activation not in _ACTS:
        raise ValueError(f"activation must be one of {_ACTS[1:]} or '' (none), got {activation!r}")
    return activation or None


def _opt(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


# ----------------------------------------------------------------- forward
@torch.library.custom_op("fastnorm::group_norm", mutates_args=())
def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    with torch.no_grad():
        return _api.group_norm(
            x.detach(),
            num_groups,
            _opt(weight),
            _opt(bias),
            eps=eps,
            activation=_act(activation),
            negative_slope=negative_slope,
        )


@group_norm.register_fake
def _(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("fastnorm::normalize", mutates_args=())
def normalize(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    with torch.no_grad():
        return _api.normalize(
            x.detach(),
            mean.detach(),
            var.detach(),
            _opt(weight),
            _opt(bias),
            eps=eps,
            activation=_act(activation),
            negative_slope=negative_slope,
        )


@normalize.register_fake
def _(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("fastnorm::moments", mutates_args=())
def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        m = _api.instance_moments(x.detach())
        return m.mean.clone(), (m.m2 / m.count).clone()


@moments.register_fake
def _(x: Tensor) -> tuple[Tensor, Tensor]:
    shape = (x.shape[0], x.shape[1])
    return x.new_empty(shape, dtype=torch.float64), x.new_empty(shape, dtype=torch.float64)


# ---------------------------------------------------------------- backward
@torch.library.custom_op("fastnorm::group_norm_backward", mutates_args=())
def group_norm_backward(
    grad_out: Tensor, x: Tensor, num_groups: int, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_out, x, num_groups, weight, eps)


def _backward_impl(
    grad_out: Tensor, x: Tensor, num_groups: int, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward kernels on the tensors' memory (channels_last natively)."""
    from . import _backward

    with torch.no_grad():
        cl = T._is_cl(x, 1)
        g, xx = grad_out.detach(), x.detach()
        if cl:  # channels-last memory: run the channels-last kernels on it
            g = g.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
            a, ga, ax = T.to_array(xx.movedim(1, -1)), T.to_array(g.movedim(1, -1)), -1
        else:
            a, ga, ax = T.to_array(xx.contiguous()), T.to_array(g.contiguous()), 1
        w = (
            None
            if weight is None
            else T.to_array(weight.detach().double().cpu() if x.device.type == "cpu" else weight.detach().double())
        )
        gx, gw, gb = _backward.group_norm_backward(ga, a, num_groups, w, eps=eps, channel_axis=ax)
        gx = T.from_array(gx, x)
        if cl:
            gx = gx.movedim(-1, 1)
        wdt = weight.dtype if weight is not None else x.dtype
        return gx, T.from_array(gw, x).to(wdt), T.from_array(gb, x).to(wdt)


@group_norm_backward.register_fake
def _(grad_out: Tensor, x: Tensor, num_groups: int, weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    wdt = weight.dtype if weight is not None else x.dtype
    C = x.shape[1]
    return torch.empty_like(x), x.new_empty((C,), dtype=wdt), x.new_empty((C,), dtype=wdt)


def _activation_grad(y_pre: Tensor, g: Tensor, activation: str, slope: float) -> Tensor:
    """g times the activation's derivative at the pre-activation output."""
    if activation == "relu":
        return g * (y_pre > 0).to(g.dtype)
    if activation == "leaky_relu":
        return torch.where(y_pre >= 0, g, g * slope)
    if activation == "silu":
        s = torch.sigmoid(y_pre)
        return g * (s * (1 + y_pre * (1 - s)))
    return g


def _gn_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, G, weight, bias, eps, activation, slope = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.args = (G, eps, activation, slope, bias is not None)


def _gn_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x, weight, bias = ctx.saved_tensors
    G, eps, activation, slope, has_bias = ctx.args
    if activation:
        y_pre = torch.ops.fastnorm.group_norm(x, G, weight, bias, eps, "", 0.01)
        grad = _activation_grad(y_pre, grad, activation, slope)
    gx, gw, gb = torch.ops.fastnorm.group_norm_backward(grad, x, G, weight, eps)
    return (
        gx if ctx.needs_input_grad[0] else None,
        None,
        gw if weight is not None and ctx.needs_input_grad[2] else None,
        gb if has_bias and ctx.needs_input_grad[3] else None,
        None,
        None,
        None,
    )


group_norm.register_autograd(_gn_backward, setup_context=_gn_setup)


def _norm_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, mean, var, weight, bias, eps, activation, slope = inputs
    ctx.save_for_backward(x, mean, var, weight, bias)
    ctx.args = (eps, activation, slope)


def _norm_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    """normalize is affine in x given the statistics (treated as constants,
    as running statistics are): y = (x - mean) * rstd * w + b."""
    x, mean, var, weight, bias = ctx.saved_tensors
    eps, activation, slope = ctx.args
    if activation:
        y_pre = torch.ops.fastnorm.normalize(x, mean, var, weight, bias, eps, "", 0.01)
        grad = _activation_grad(y_pre, grad, activation, slope)
    N, C = x.shape[0], x.shape[1]
    shape = (N if mean.dim() == 2 else 1, C) + (1,) * (x.dim() - 2)
    rstd = torch.rsqrt(var.double() + eps).reshape(shape)
    g64 = grad.double()
    xhat = (x.double() - mean.double().reshape(shape)) * rstd
    wv = weight.double().reshape((1, C) + (1,) * (x.dim() - 2)) if weight is not None else 1.0
    gx = (g64 * wv * rstd).to(x.dtype) if ctx.needs_input_grad[0] else None
    red = [0] + list(range(2, x.dim()))
    gw = (g64 * xhat).sum(red).to(weight.dtype) if weight is not None and ctx.needs_input_grad[3] else None
    gb = g64.sum(red).to(bias.dtype) if bias is not None and ctx.needs_input_grad[4] else None
    return gx, None, None, gw, gb, None, None, None


normalize.register_autograd(_norm_backward, setup_context=_norm_setup)


# ------------------------------------------------------------ instance norm
# Its own operators (what an exporter maps to one InstanceNormalization node);
# the kernels are group norm's with one group per channel.
@torch.library.custom_op("fastnorm::instance_norm", mutates_args=())
def instance_norm(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, activation: str, negative_slope: float
) -> Tensor:
    with torch.no_grad():
        return _api.instance_norm(
            x.detach(), _opt(weight), _opt(bias), eps=eps, activation=_act(activation), negative_slope=negative_slope
        )


@instance_norm.register_fake
def _(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, activation: str, negative_slope: float
) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("fastnorm::instance_norm_backward", mutates_args=())
def instance_norm_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_out, x, x.shape[1], weight, eps)  # the same kernels, G = C


@instance_norm_backward.register_fake
def _(grad_out: Tensor, x: Tensor, weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    wdt = weight.dtype if weight is not None else x.dtype
    C = x.shape[1]
    return torch.empty_like(x), x.new_empty((C,), dtype=wdt), x.new_empty((C,), dtype=wdt)


def _in_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, weight, bias, eps, activation, slope = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.args = (eps, activation, slope, bias is not None)


def _in_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x, weight, bias = ctx.saved_tensors
    eps, activation, slope, has_bias = ctx.args
    if activation:
        y_pre = torch.ops.fastnorm.instance_norm(x, weight, bias, eps, "", 0.01)
        grad = _activation_grad(y_pre, grad, activation, slope)
    gx, gw, gb = torch.ops.fastnorm.instance_norm_backward(grad, x, weight, eps)
    return (
        gx if ctx.needs_input_grad[0] else None,
        gw if weight is not None and ctx.needs_input_grad[1] else None,
        gb if has_bias and ctx.needs_input_grad[2] else None,
        None,
        None,
        None,
    )


instance_norm.register_autograd(_in_backward, setup_context=_in_setup)
