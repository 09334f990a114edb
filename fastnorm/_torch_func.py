"""fastnorm's differentiable operators under torch.func transforms and
forward-mode AD.

torch's custom operators (fastnorm._torch_ops) have a backward only: under
``torch.func.jvp`` / ``jacfwd`` their tangent is silently zero, under
``forward_ad`` they raise, ``torch.func.grad`` / ``vjp`` / ``jacrev`` refuse
them (the autograd.Function torch.library generates has no setup_context),
``vmap`` runs them one sample at a time, and their backward has no backward
of its own.  So while a transform is live or an input carries a tangent
(fastnorm._torch_arrays.transform_route), the public torch functions and
fastnorm.torch's modules call the :class:`torch.autograd.Function` forms
below instead (functionalize alone keeps the operators, which it
functionalizes):

- the values are the kernels' (the operators run inside ``forward``), the
  same bits as outside a transform;
- ``jvp`` (tangents) and ``backward`` (cotangents) are composed of torch
  operations in float64 and rounded once to the output's dtype, so every
  transform composes with them: ``jacfwd(jacrev(f))``, ``hessian``,
  ``vmap(grad(f))`` (per-sample gradients), double backward;
- ``vmap`` folds the mapped dimension into the batch (one kernel call) where
  only the input is mapped, and maps sample by sample where a weight, bias
  or statistic is (a model ensemble's stacked parameters).

Outside transforms nothing here runs: the operators and their kernel
backward keep their speed.  ``torch.compile`` keeps the operators too (it
inlines an autograd.Function's forward and drops its jvp, a torch
limitation).  Gradients of a channels-last input come back contiguous here.

Imported by fastnorm._torch and fastnorm.torch when a transform is active.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from . import _torch_ops as ops
from ._torch_ops import _activation_grad

# -------------------------------------------------------------- composites
# The derivatives in float64 torch operations on views grouped (N, G, C/G, S)
# (instance norm: G = C); statistics are biased, eps inside the square root,
# as the kernels compute them.  Every function here is differentiable by
# torch itself, so the rules compose under any transform.
_RED = (2, 3)


def _grouped(t: Tensor, G: int) -> Tensor:
    N, C = t.shape[0], t.shape[1]
    return t.double().reshape(N, G, C // G, -1)


def _per_channel(v: Any, G: int) -> Any:
    """per-channel v (C,) as float64 (1, G, C/G, 1); None stays None."""
    return None if v is None else v.double().reshape(1, G, -1, 1)


def _standardized(xg: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(xhat, rstd) of grouped float64 x, per group."""
    d = xg - xg.mean(_RED, keepdim=True)
    r = torch.rsqrt((d * d).mean(_RED, keepdim=True) + eps)
    return d * r, r


def _affine(xhat: Tensor, wg: Tensor | None, bg: Tensor | None) -> Tensor:
    y = xhat if wg is None else xhat * wg
    return y if bg is None else y + bg


def _xhat_tangent(xhat: Tensor, r: Tensor, tg: Tensor) -> Tensor:
    """d xhat for a tangent tg of grouped x: r (t - mean(t) - xhat mean(xhat t)).
    The map is self-adjoint, so it also gives x's cotangent from xhat's."""
    return r * (tg - tg.mean(_RED, keepdim=True) - xhat * (xhat * tg).mean(_RED, keepdim=True))


def _activation_tangent(y_pre: Tensor, t: Tensor, act: str, slope: float) -> Tensor:
    """the fused activation's tangent: its derivative at y_pre times t (the
    backward's own rule, _torch_ops._activation_grad)."""
    return _activation_grad(y_pre, t, act, slope) if act else t


def _out_dtype(x: Tensor) -> torch.dtype:
    """the forward's output dtype: x's, float32 for integer x (the kernels')."""
    return x.dtype if x.is_floating_point() else torch.float32


def _empty_like_tangent(x: Tensor) -> Tensor:
    return torch.zeros_like(x, dtype=_out_dtype(x))


def _channel_sum(t: Tensor, C: int) -> Tensor:
    """(N, G, C/G, S) summed to C channels."""
    return t.sum((0, 3)).reshape(C)


def gn_jvp(
    x: Tensor, G: int, w: Tensor | None, b: Tensor | None, eps: float, act: str, slope: float, tx: Any, tw: Any, tb: Any
) -> Tensor:
    """group norm's tangent for tangents tx (of x), tw, tb (None: zero)."""
    if x.numel() == 0:
        return _empty_like_tangent(x)
    xg = _grouped(x, G)
    xhat, r = _standardized(xg, eps)
    wg, bg = _per_channel(w, G), _per_channel(b, G)
    t = torch.zeros_like(xhat)
    if tx is not None:
        dx = _xhat_tangent(xhat, r, _grouped(tx, G))
        t = t + (dx if wg is None else dx * wg)
    if tw is not None:
        t = t + xhat * _per_channel(tw, G)
    if tb is not None:
        t = t + _per_channel(tb, G)
    t = _activation_tangent(_affine(xhat, wg, bg), t, act, slope)
    return t.reshape(x.shape).to(_out_dtype(x))


def gn_vjp(
    g: Tensor, x: Tensor, G: int, w: Tensor | None, b: Tensor | None, eps: float, act: str, slope: float
) -> tuple[Tensor, Tensor, Tensor]:
    """group norm's cotangents (grad_x in x's dtype; grad_weight and grad_bias
    in float64, (C,)) for the output's cotangent g."""
    C = x.shape[1]
    if x.numel() == 0:
        z = x.new_zeros((C,), dtype=torch.float64)
        return torch.zeros_like(x), z, z
    xg = _grouped(x, G)
    xhat, r = _standardized(xg, eps)
    wg = _per_channel(w, G)
    gg = _activation_tangent(_affine(xhat, wg, _per_channel(b, G)), _grouped(g, G), act, slope)
    gx = _xhat_tangent(xhat, r, gg if wg is None else gg * wg)
    return gx.reshape(x.shape).to(x.dtype), _channel_sum(gg * xhat, C), _channel_sum(gg, C)


def _vec(v: Any, x: Tensor) -> Any:
    """per-channel v (C,) as float64 broadcasting against x; None stays None."""
    return None if v is None else v.double().reshape((1, x.shape[1]) + (1,) * (x.dim() - 2))


def norm_jvp(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    w: Tensor | None,
    b: Tensor | None,
    eps: float,
    act: str,
    slope: float,
    tangents: tuple[Any, ...],
) -> Tensor:
    """normalize's tangent: y = (x - mean) rstd w + b, rstd = 1 / sqrt(var + eps)."""
    tx, tm, tv, tw, tb = tangents
    r = torch.rsqrt(ops._nc(var, x) + eps)
    xhat = (x.double() - ops._nc(mean, x)) * r
    wv, bv = _vec(w, x), _vec(b, x)
    t = torch.zeros_like(xhat)
    if tx is not None:
        t = t + tx.double() * r
    if tm is not None:
        t = t - ops._nc(tm, x) * r
    if tv is not None:
        t = t - 0.5 * xhat * r * r * ops._nc(tv, x)
    if wv is not None:
        t = t * wv
    if tw is not None:
        t = t + xhat * _vec(tw, x)
    if tb is not None:
        t = t + _vec(tb, x)
    return _activation_tangent(_affine(xhat, wv, bv), t, act, slope).to(_out_dtype(x))


def adain_jvp(c: Tensor, s: Tensor, eps: float, alpha: float, tc: Any, ts: Any) -> Tensor:
    """adain's tangent: y = alpha (xhat_c std_s + mean_s) + (1 - alpha) c."""
    if c.numel() == 0:
        return _empty_like_tangent(c)
    C = c.shape[1]
    cg = _grouped(c, C)
    xhat, r = _standardized(cg, eps)
    sg = _grouped(s, C)
    ds = sg - sg.mean(_RED, keepdim=True)
    std_s = torch.sqrt((ds * ds).mean(_RED, keepdim=True) + eps)
    t = torch.zeros_like(xhat)
    if tc is not None:
        tcg = _grouped(tc, C)
        t = t + alpha * std_s * _xhat_tangent(xhat, r, tcg) + (1.0 - alpha) * tcg
    if ts is not None:
        tsg = _grouped(ts, C)
        t = t + alpha * (xhat * (ds * tsg).mean(_RED, keepdim=True) / std_s + tsg.mean(_RED, keepdim=True))
    return t.reshape(c.shape).to(_out_dtype(c))


def adain_vjp(g: Tensor, c: Tensor, s: Tensor, eps: float, alpha: float) -> tuple[Tensor, Tensor]:
    """adain's cotangents for content and style."""
    if c.numel() == 0:
        return torch.zeros_like(c), torch.zeros_like(s)
    C = c.shape[1]
    cg = _grouped(c, C)
    xhat, r = _standardized(cg, eps)
    sg = _grouped(s, C)
    ds = sg - sg.mean(_RED, keepdim=True)
    std_s = torch.sqrt((ds * ds).mean(_RED, keepdim=True) + eps)
    gg = _grouped(g, C)
    gc = alpha * std_s * _xhat_tangent(xhat, r, gg) + (1.0 - alpha) * gg
    g_mean = alpha * gg.sum(_RED, keepdim=True)
    g_std = alpha * (gg * xhat).sum(_RED, keepdim=True)
    if s.shape[0] != c.shape[0]:  # a style batch of 1, broadcast over the content's
        g_mean, g_std = g_mean.sum(0, keepdim=True), g_std.sum(0, keepdim=True)
    gs = (g_mean + g_std * ds / std_s) / sg.shape[3]
    return gc.reshape(c.shape).to(c.dtype), gs.reshape(s.shape).to(s.dtype)


# ------------------------------------------------------------------- vmap
def _mapped(t: Any, d: int | None, B: int) -> Any:
    """t with its mapped dimension first, or broadcast to B there."""
    if not isinstance(t, Tensor):
        return t
    return t.movedim(d, 0) if d is not None else t.expand((B,) + tuple(t.shape))


def _per_sample(fn: Any, info: Any, in_dims: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Tensor, int]:
    """vmap by mapping fn over the samples: each its own call (its own weights)."""
    B = info.batch_size
    cols = [_mapped(a, d, B) if isinstance(a, Tensor) else a for a, d in zip(args, in_dims)]
    ys = [fn(*[c[i] if isinstance(c, Tensor) else c for c in cols]) for i in range(B)]
    if not ys:  # a batch of 0: the output of one sample's shape (computed on the first of none)
        one = fn(*[c.new_zeros(c.shape[1:]) if isinstance(c, Tensor) else c for c in cols])
        return one.new_empty((0,) + tuple(one.shape)), 0
    return torch.stack(ys), 0


def _fold(x: Tensor, d: int | None, B: int) -> Tensor:
    """mapped x (B, N, ...) as one batch (B * N, ...)."""
    xb = _mapped(x, d, B)
    return xb.reshape((B * xb.shape[1],) + tuple(xb.shape[2:]))


def _unfold(y: Tensor, B: int, N: int) -> tuple[Tensor, int]:
    """one batch (B * N, ...) back as (B, N, ...), mapped along dim 0."""
    return y.reshape((B, N) + tuple(y.shape[1:])), 0


def _batch(x: Tensor, d: int | None) -> int:
    """N of one sample of mapped x."""
    return x.shape[1] if d is None else x.movedim(d, 0).shape[1]


# --------------------------------------------------------------- functions
class GroupNorm(torch.autograd.Function):
    """fastnorm::group_norm with forward-mode, functorch and double-backward rules."""

    @staticmethod
    def forward(x: Tensor, G: int, w: Any, b: Any, eps: float, act: str, slope: float) -> Tensor:
        return torch.ops.fastnorm.group_norm(x, G, w, b, eps, act, slope)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, G, w, b, eps, act, slope = inputs
        ctx.save_for_backward(x, w, b)
        ctx.save_for_forward(x, w, b)
        ctx.args = (G, eps, act, slope)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        x, w, b = ctx.saved_tensors
        G, eps, act, slope = ctx.args
        gx, gw, gb = gn_vjp(g, x, G, w, b, eps, act, slope)
        need = ctx.needs_input_grad
        return (
            gx if need[0] else None,
            None,
            gw.to(w.dtype) if w is not None and need[2] else None,
            gb.to(b.dtype) if b is not None and need[3] else None,
            None,
            None,
            None,
        )

    @staticmethod
    def jvp(ctx: Any, tx: Any, _g: Any, tw: Any, tb: Any, *_rest: Any) -> Tensor:
        x, w, b = ctx.saved_tensors
        G, eps, act, slope = ctx.args
        return gn_jvp(x, G, w, b, eps, act, slope, tx, tw, tb)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, G: int, w: Any, b: Any, *rest: Any) -> tuple[Tensor, int]:
        B = info.batch_size
        if in_dims[2] is None and in_dims[3] is None:  # only x mapped: one call on (B * N, C, ...)
            return _unfold(GroupNorm.apply(_fold(x, in_dims[0], B), G, w, b, *rest), B, _batch(x, in_dims[0]))
        return _per_sample(GroupNorm.apply, info, in_dims, (x, G, w, b, *rest))


class InstanceNorm(torch.autograd.Function):
    """fastnorm::instance_norm with forward-mode, functorch and double-backward rules."""

    @staticmethod
    def forward(x: Tensor, w: Any, b: Any, eps: float, act: str, slope: float) -> Tensor:
        return torch.ops.fastnorm.instance_norm(x, w, b, eps, act, slope)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, w, b, eps, act, slope = inputs
        ctx.save_for_backward(x, w, b)
        ctx.save_for_forward(x, w, b)
        ctx.args = (eps, act, slope)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        x, w, b = ctx.saved_tensors
        eps, act, slope = ctx.args
        gx, gw, gb = gn_vjp(g, x, max(x.shape[1], 1), w, b, eps, act, slope)
        need = ctx.needs_input_grad
        return (
            gx if need[0] else None,
            gw.to(w.dtype) if w is not None and need[1] else None,
            gb.to(b.dtype) if b is not None and need[2] else None,
            None,
            None,
            None,
        )

    @staticmethod
    def jvp(ctx: Any, tx: Any, tw: Any, tb: Any, *_rest: Any) -> Tensor:
        x, w, b = ctx.saved_tensors
        eps, act, slope = ctx.args
        return gn_jvp(x, max(x.shape[1], 1), w, b, eps, act, slope, tx, tw, tb)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, w: Any, b: Any, *rest: Any) -> tuple[Tensor, int]:
        B = info.batch_size
        if in_dims[1] is None and in_dims[2] is None:
            return _unfold(InstanceNorm.apply(_fold(x, in_dims[0], B), w, b, *rest), B, _batch(x, in_dims[0]))
        return _per_sample(InstanceNorm.apply, info, in_dims, (x, w, b, *rest))


class Normalize(torch.autograd.Function):
    """fastnorm::normalize (given statistics) with forward-mode, functorch and
    double-backward rules."""

    @staticmethod
    def forward(x: Tensor, mean: Tensor, var: Tensor, w: Any, b: Any, eps: float, act: str, slope: float) -> Tensor:
        return torch.ops.fastnorm.normalize(x, mean, var, w, b, eps, act, slope)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, mean, var, w, b, eps, act, slope = inputs
        ctx.save_for_backward(x, mean, var, w, b)
        ctx.save_for_forward(x, mean, var, w, b)
        ctx.args = (eps, act, slope)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        x, mean, var, w, b = ctx.saved_tensors
        eps, act, slope = ctx.args
        return ops.normalize_vjp(g, x, mean, var, w, b, eps, act, slope, ctx.needs_input_grad)

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Tensor:
        x, mean, var, w, b = ctx.saved_tensors
        eps, act, slope = ctx.args
        return norm_jvp(x, mean, var, w, b, eps, act, slope, tangents[:5])

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], *args: Any) -> tuple[Tensor, int]:
        x, mean, var, w, b, *rest = args
        if all(d is None for d in in_dims[1:]):  # only x mapped: one call, (N, C) statistics repeated
            B, N = info.batch_size, _batch(x, in_dims[0])
            if mean.dim() == 2:
                mean, var = mean.repeat(B, 1), var.repeat(B, 1)
            return _unfold(Normalize.apply(_fold(x, in_dims[0], B), mean, var, w, b, *rest), B, N)
        return _per_sample(Normalize.apply, info, in_dims, args)


class Adain(torch.autograd.Function):
    """fastnorm::adain with forward-mode, functorch and double-backward rules."""

    @staticmethod
    def forward(c: Tensor, s: Tensor, eps: float, alpha: float) -> Tensor:
        return torch.ops.fastnorm.adain(c, s, eps, alpha)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        c, s, eps, alpha = inputs
        ctx.save_for_backward(c, s)
        ctx.save_for_forward(c, s)
        ctx.args = (eps, alpha)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        c, s = ctx.saved_tensors
        eps, alpha = ctx.args
        gc, gs = adain_vjp(g, c, s, eps, alpha)
        need = ctx.needs_input_grad
        return (gc if need[0] else None, gs if need[1] else None, None, None)

    @staticmethod
    def jvp(ctx: Any, tc: Any, ts: Any, *_rest: Any) -> Tensor:
        c, s = ctx.saved_tensors
        eps, alpha = ctx.args
        return adain_jvp(c, s, eps, alpha, tc, ts)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], c: Tensor, s: Tensor, eps: float, alpha: float) -> tuple[Tensor, int]:
        B = info.batch_size
        if in_dims[1] is None and s.shape[0] == 1:  # one style for every content: one call on (B * N, C, ...)
            return _unfold(Adain.apply(_fold(c, in_dims[0], B), s, eps, alpha), B, _batch(c, in_dims[0]))
        return _per_sample(Adain.apply, info, in_dims, (c, s, eps, alpha))


#: the operators' signatures (torch.ops.fastnorm.*), run as the Functions above
FUNCTIONS = SimpleNamespace(
    group_norm=GroupNorm.apply,
    instance_norm=InstanceNorm.apply,
    normalize=Normalize.apply,
    adain=Adain.apply,
)
