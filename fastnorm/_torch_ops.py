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
- ``fastnorm::adain(content, style, eps, alpha) -> y``;
- ``fastnorm::moments(x) -> (mean, var)``: float64 (N, C), var biased.

Every floating tensor argument is differentiable (x, weight, bias, mean,
var, content, style); an integer x (uint8 images) is refused when an input
requires grad, as integer inputs have no gradient.  The backward runs
the backward operators, which have no derivative of their own; where the
backward must be differentiable (a double backward, ``create_graph=True``;
a forward-mode tangent) it runs as float64 torch operations instead
(fastnorm._torch_func).  Forward-mode AD and torch.func transforms reach
these operators' values through fastnorm._torch_func's autograd.Functions:
an operator called directly has only torch.library's autograd (under
``torch.func.jvp`` its tangent is zero, a torch limitation).  ``moments``
has no derivative.  A fused relu keeps its output for the backward, as
``torch.relu`` keeps its result: changing that output in place before the
backward is an error there too.

Channels-first tensors whose memory is channels-last (``channels_last``,
or any rank permuted so) run natively; outputs keep the input's memory format.  Exporters: see
fastnorm.torch's onnx support (InstanceNormalization / GroupNormalization).

Imported by fastnorm.torch; importing it imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _api
from . import _torch_arrays as TA
from . import _validate as V

_ACTS = ("", "relu", "leaky_relu", "silu")

_TF_MODE = getattr(torch._C, "_is_torch_function_mode_enabled", None)
_DISPATCH_DEPTH = getattr(torch._C, "_len_torch_dispatch_stack", None)
_PROFILING = getattr(torch.autograd, "_profiler_enabled", None)


def own_kernel(op: Any) -> bool:
    """Whether the custom operator runs only its own implementation: no
    kernel registered for a device (register_kernel), none disabled (read
    from torch's CustomOpDef; an unknown layout counts as overridden)."""
    fns = getattr(op, "_backend_fns", None)
    off = getattr(op, "_disabled_kernel", None)
    return isinstance(fns, dict) and len(fns) == 1 and isinstance(off, set) and not off


_DK = torch._C.DispatchKey
_KEYS = getattr(torch._C, "_dispatch_keys", None)
#: a dense CPU / CUDA tensor's backend keys, and the keys of what the kernels
#: cannot view directly (the dispatcher resolves those first: a negative-bit
#: or conjugate view, a ZeroTensor, a torch.func or legacy vmap batched
#: tensor, which has no backend key, a Python or functional wrapper)
_DENSE_KEYS = tuple(getattr(_DK, k) for k in ("CPU", "CUDA") if hasattr(_DK, k))
_ODD_KEYS = tuple(
    getattr(_DK, k)
    for k in ("Negative", "Conjugate", "ZeroTensor", "Python", "FuncTorchBatched", "Functionalize")
    if hasattr(_DK, k)
)


def _dense(t: Tensor | None) -> bool:
    """None, or a plain strided CPU / CUDA tensor (or parameter) the kernels
    view as it is."""
    if t is None:
        return True
    if (
        (type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter)
        or t.layout != torch.strided
        or _KEYS is None
    ):
        return False
    ks = _KEYS(t)
    raw = ks.raw_repr() if _RAW else None
    v = _DENSE_SETS.get(raw) if raw is not None else None
    if v is None:
        v = any(ks.has(k) for k in _DENSE_KEYS) and not any(ks.has(k) for k in _ODD_KEYS)
        if raw is not None and len(_DENSE_SETS) < 256:
            _DENSE_SETS[raw] = v
    return v


#: _dense's answer per key set (its raw bits), read once: the eleven key
#: lookups cost about 3 us a tensor, three tensors a backward; a process sees
#: a handful of key sets
_DENSE_SETS: dict[int, bool] = {}
_RAW = _KEYS is not None and hasattr(torch._C.DispatchKeySet, "raw_repr")


def _direct_backward(ctx: Any, op: Any, grad: Tensor, x: Tensor, weight: Tensor | None) -> bool:
    """Whether a backward may run the backward operator's implementation
    itself: only the eager autograd.Functions' (EagerInstanceNorm,
    EagerGroupNorm, whose forward skipped the dispatcher), on plain dense
    tensors (the incoming gradient may be a batched one, from
    autograd.grad(is_grads_batched=True), a negative view or a ZeroTensor; a
    saved-tensors hook may give x back as anything), with no compile or
    trace, torch function or dispatch mode or profiler active and no kernel
    registered on the operator; else the operator, whose dispatch resolves
    them."""
    tf, dd, pe = _TF_MODE, _DISPATCH_DEPTH, _PROFILING
    return (
        getattr(ctx, "eager", False)
        and tf is not None
        and dd is not None
        and pe is not None
        and _dense(grad)
        and _dense(x)
        and _dense(weight)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not tf()
        and dd() == 0
        and not pe()
        and own_kernel(op)
    )


def _act(activation: str) -> str | None:
    if activation not in _ACTS:
        raise ValueError(f"activation must be one of {_ACTS[1:]} or '' (none), got {activation!r}")
    return activation or None


def _opt(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


#: dtypes the CPU kernels read as NumPy views directly (_on_host)
_HOST_X = (torch.float32, torch.float64, torch.float16)
_HOST_VEC = (torch.float32, torch.float64)


def _on_host(x: Tensor, *vecs: Tensor | None) -> tuple[Any, ...] | None:
    """The operators' short way to the CPU kernels: x as the NumPy view of its
    memory (channels-first, or channels-last memory as (N, *spatial, C)) and
    the per-channel vectors as NumPy views, plus whether x went over channels
    last; None where the general torch layer must handle the call (other
    devices or dtypes, strided memory).  The public function still validates
    every value; this skips only the tensor dispatch, with the fewest torch
    calls (TA.host_layout)."""
    if not x.is_cpu or x.dtype not in _HOST_X:
        return None
    for v in vecs:
        if v is not None and (not v.is_cpu or v.dtype not in _HOST_VEC or v.dim() != 1):
            return None
    h = TA.host_layout(TA.host_view(x))
    if h is None:
        return None
    return (h[0], *(None if v is None else TA.host_view(v) for v in vecs), h[1])


_from_host = TA.from_host


def _axis(x: Tensor) -> int | None:
    """channel_axis for the public functions: the operators' x is (N, C,
    *spatial), which the functions assume for floating x but refuse to guess
    for a 3-d integer one (an image's HWC?); None keeps floating calls on
    the functions' short path."""
    return None if x.is_floating_point() else 1


def _like_memory(x: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty tensor of x's shape in the memory the kernels write for x:
    channels-last where x's memory is (TA.is_channels_last), else contiguous."""
    if TA.is_channels_last(x, 1):
        return x.new_empty(x.movedim(1, -1).shape, dtype=dtype).movedim(-1, 1)
    return x.new_empty(x.shape, dtype=dtype)


def _one_device(op: str, x: Tensor, **others: Tensor | None) -> None:
    """RuntimeError where a tensor argument is on another device than x: the
    fakes run for real on a mix with meta tensors (a module built on the meta
    device, partly loaded), where the output they give is uninitialized
    memory on x's device.  A meta x is shape inference, which takes any
    arguments (the modules' parameters stay where they are)."""
    if x.device.type == "meta":
        return
    for name, t in others.items():
        if t is not None and t.device != x.device:
            raise RuntimeError(
                f"{op}: {name} is on device {t.device}, but the input is on {x.device}: "
                f"every tensor argument must be on the input's device"
            )


def _out_like(x: Tensor) -> Tensor:
    """The forward's output for fake tensors: x's dtype, float32 for integer
    inputs (as the kernels write), in the memory the kernels write."""
    return _like_memory(x, x.dtype if x.is_floating_point() else torch.float32)


#: Every operator takes its tensors in any strides: channels-last memory runs
#: natively, other layouts are read as they are (copied where the kernels need
#: contiguous memory), and the outputs' memory is _like_memory's.  So
#: torch.compile keeps the layout it chose for the surrounding ops (inductor
#: runs CPU convolutions channels-last) instead of converting to the eager
#: strides before each operator and back after it.
_ANY_STRIDES = (torch.Tag.flexible_layout,)


def _refuse_integer(op: str, x: Tensor, name: str = "x") -> None:
    """TypeError at the forward for an integer input under autograd: its
    backward would need a floating x."""
    if not x.is_floating_point():
        raise TypeError(
            f"fastnorm::{op}: {name} has the integer dtype {x.dtype} while an input requires grad; "
            f"integer inputs have no gradient. Convert {name} to a floating dtype ({name}.float()) "
            f"for training, or call under torch.no_grad() / torch.inference_mode()."
        )


# ----------------------------------------------------------------- forward
def group_norm_impl(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    """fastnorm::group_norm's result, also called directly by fastnorm.torch's
    eager module calls that need no dispatch (fastnorm.torch._eager)."""
    h = _on_host(x, weight, bias)
    if h is not None:
        a, w, b, cl = h
        r = _api.group_norm(
            a,
            num_groups,
            w,
            b,
            eps=eps,
            channel_axis=-1 if cl else 1,
            activation=_act(activation),
            negative_slope=negative_slope,
        )
        return _from_host(r, cl)
    with torch.no_grad():
        return _api.group_norm(
            x.detach(),
            num_groups,
            _opt(weight),
            _opt(bias),
            eps=eps,
            channel_axis=_axis(x),
            activation=_act(activation),
            negative_slope=negative_slope,
        )


@torch.library.custom_op("fastnorm::group_norm", mutates_args=(), tags=_ANY_STRIDES)
def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
) -> Tensor:
    return group_norm_impl(x, num_groups, weight, bias, eps, activation, negative_slope)


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
    _one_device("fastnorm::group_norm", x, weight=weight, bias=bias)
    return _out_like(x)


@torch.library.custom_op("fastnorm::normalize", mutates_args=(), tags=_ANY_STRIDES)
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
            channel_axis=_axis(x),
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
    _one_device("fastnorm::normalize", x, mean=mean, var=var, weight=weight, bias=bias)
    return _out_like(x)


@torch.library.custom_op("fastnorm::moments", mutates_args=(), tags=_ANY_STRIDES)
def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        m = _api.instance_moments(x.detach(), channel_axis=_axis(x))
        return m.mean.clone(), (m.m2 / m.count).clone()


@moments.register_fake
def _(x: Tensor) -> tuple[Tensor, Tensor]:
    shape = (x.shape[0], x.shape[1])
    return x.new_empty(shape, dtype=torch.float64), x.new_empty(shape, dtype=torch.float64)


# ---------------------------------------------------------------- backward
@torch.library.custom_op("fastnorm::group_norm_backward", mutates_args=(), tags=_ANY_STRIDES)
def group_norm_backward(
    grad_out: Tensor, x: Tensor, num_groups: int, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_out, x, num_groups, weight, eps)


def _backward_impl(
    grad_out: Tensor, x: Tensor, num_groups: int | None, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward kernels on the tensors' memory (channels-last natively, any
    rank); num_groups None is instance norm (one group per channel, C = 0 too)."""
    from . import _backward

    h = _backward_host(grad_out, x, weight)
    if h is not None:  # the common case on the fewest torch calls (a few us, not tens)
        ga, a, w, cl = h
        ax = -1 if cl else 1
        if num_groups is None:
            gx, gw, gb = _backward.instance_norm_backward(ga, a, w, eps=eps, channel_axis=ax)
        else:
            gx, gw, gb = _backward.group_norm_backward(ga, a, num_groups, w, eps=eps, channel_axis=ax)
        ndt = _NP_DTYPES[weight.dtype if weight is not None else x.dtype]
        return (
            TA.from_host(gx, cl),
            torch.from_numpy(gw.astype(ndt, copy=False)),
            torch.from_numpy(gb.astype(ndt, copy=False)),
        )
    with torch.no_grad():
        cl = TA.is_channels_last(x, 1)
        g, xx = grad_out.detach(), x.detach()
        if cl:  # channels-last memory (x moved to (N, *spatial, C) is contiguous): the channels-last kernels
            a, ga, ax = TA.to_array(xx.movedim(1, -1)), TA.to_array(g.movedim(1, -1).contiguous()), -1
        else:
            a, ga, ax = TA.to_array(xx.contiguous()), TA.to_array(g.contiguous()), 1
        w = (
            None
            if weight is None
            else TA.to_array(weight.detach().double().cpu() if x.device.type == "cpu" else weight.detach().double())
        )
        if num_groups is None:
            gx, gw, gb = _backward.instance_norm_backward(ga, a, w, eps=eps, channel_axis=ax)
        else:
            gx, gw, gb = _backward.group_norm_backward(ga, a, num_groups, w, eps=eps, channel_axis=ax)
        gx = TA.from_array(gx, x)
        if cl:
            gx = gx.movedim(-1, 1)
        wdt = weight.dtype if weight is not None else x.dtype
        return gx, TA.from_array(gw, x).to(wdt), TA.from_array(gb, x).to(wdt)


_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _backward_host(grad_out: Tensor, x: Tensor, weight: Tensor | None) -> tuple[Any, ...] | None:
    """_backward_impl's arrays where the kernels can view the tensors as they
    are: CPU float32 / float64 x and grad_out of x's dtype in one memory
    format (contiguous, or channels-last as (N, *spatial, C)), no negative
    bit, weight None or a CPU float32 / float64 vector; (grad_out, x, weight,
    channels_last).  None: the general path, which copies what it must.
    Each torch call of that path (detach, contiguous, double, to) costs
    microseconds, and on a small layer they were most of the backward."""
    if (
        not (x.is_cpu and grad_out.is_cpu)
        or x.dtype not in _HOST_VEC
        or grad_out.dtype != x.dtype
        or x.is_neg()
        or grad_out.is_neg()
    ):
        return None
    if weight is not None and (
        not weight.is_cpu or weight.dtype not in _HOST_VEC or weight.dim() != 1 or weight.is_neg()
    ):
        return None
    hx = TA.host_layout(TA.host_view(x))
    hg = TA.host_layout(TA.host_view(grad_out))
    if hx is None or hg is None or hx[1] != hg[1]:
        return None
    return hg[0], hx[0], None if weight is None else TA.host_view(weight), hx[1]


@group_norm_backward.register_fake
def _(grad_out: Tensor, x: Tensor, num_groups: int, weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    wdt = weight.dtype if weight is not None else x.dtype
    C = x.shape[1]
    _one_device("fastnorm::group_norm_backward", x, grad_out=grad_out, weight=weight)
    return _like_memory(x, x.dtype), x.new_empty((C,), dtype=wdt), x.new_empty((C,), dtype=wdt)


def _saved_output(activation: str, output: Tensor) -> tuple[Tensor, ...]:
    """What a forward with a fused activation keeps for its backward beside
    its inputs: the output for relu, whose derivative is read from it (y > 0
    exactly where the pre-activation is: torch's relu keeps its result the
    same way), nothing for the others (their backward recomputes the
    pre-activation output)."""
    return (output,) if activation == "relu" else ()


def _activation_grad_from(
    activation: str, slope: float, saved: tuple[Tensor, ...], grad: Tensor, recompute: Any
) -> Tensor:
    """grad through the forward's fused activation; saved is _saved_output's,
    recompute gives the pre-activation output where it is needed."""
    if not activation:
        return grad
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, saved[0], 0)
    return _activation_grad(recompute(), grad, activation, slope)


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


def _composite(*tensors: Tensor | None) -> bool:
    """Whether a backward must be differentiable itself: a double backward
    (create_graph=True: grad mode is on while the backward runs), a
    forward-mode tangent or a torch.func transform on its tensors.  The
    backward operators are not (they have no derivative), so the backward
    runs as float64 torch operations (fastnorm._torch_func) there."""
    return torch.is_grad_enabled() or TA.transform_active(*tensors)


def _composite_vjp(
    grad: Tensor, x: Tensor, G: int, weight: Tensor | None, bias: Tensor | None, eps: float, act: str, slope: float
) -> tuple[Tensor, Tensor, Tensor]:
    """group norm's backward as float64 torch operations (_composite's case),
    grad_weight and grad_bias in the backward operators' dtype."""
    from . import _torch_func

    gx, gw, gb = _torch_func.gn_vjp(grad, x, G, weight, bias, eps, act, slope)
    wdt = weight.dtype if weight is not None else x.dtype
    return gx, gw.to(wdt), gb.to(wdt)


def _gn_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, G, weight, bias, eps, activation, slope = inputs
    _refuse_integer("group_norm", x)
    ctx.save_for_backward(x, weight, bias, *_saved_output(activation, output))
    ctx.args = (G, eps, activation, slope, bias is not None)


def _gn_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x, weight, bias, *saved = ctx.saved_tensors
    G, eps, activation, slope, has_bias = ctx.args
    if _composite(grad, x, weight, bias):
        gx, gw, gb = _composite_vjp(grad, x, G, weight, bias, eps, activation, slope)
    else:
        grad = _activation_grad_from(
            activation,
            slope,
            tuple(saved),
            grad,
            lambda: torch.ops.fastnorm.group_norm(x, G, weight, bias, eps, "", 0.01),
        )
        if _direct_backward(ctx, group_norm_backward, grad, x, weight):
            gx, gw, gb = _backward_impl(grad, x, G, weight, eps)
        else:
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


class EagerGroupNorm(torch.autograd.Function):
    """fastnorm::group_norm with its registered autograd, for an eager
    module call that records autograd (fastnorm.torch._eager): the operator's
    own implementation, setup_context and backward, without torch.library's
    dispatch, which costs more than the kernels of a small input.  forward
    takes ctx (the form without setup_context binds the arguments' defaults
    through inspect.signature, tens of microseconds a call); no torch.func
    transform reaches it (_eager routes those to fastnorm._torch_func)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        num_groups: int,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        activation: str,
        negative_slope: float,
    ) -> Tensor:
        y = group_norm_impl(x, num_groups, weight, bias, eps, activation, negative_slope)
        _gn_setup(ctx, (x, num_groups, weight, bias, eps, activation, negative_slope), y)
        ctx.eager = True
        return y

    backward = staticmethod(_gn_backward)


def _norm_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, mean, var, weight, bias, eps, activation, slope = inputs
    _refuse_integer("normalize", x)
    ctx.save_for_backward(x, mean, var, weight, bias)
    ctx.args = (eps, activation, slope)


def _nc(t: Tensor, x: Tensor) -> Tensor:
    """A (N, C) or (C,) statistic as float64 broadcasting against x (N, C, *spatial)."""
    shape = (t.shape[0] if t.dim() == 2 else 1, x.shape[1]) + (1,) * (x.dim() - 2)
    return t.double().reshape(shape)


def _to_stat(g: Tensor, t: Tensor) -> Tensor:
    """The (N, C) gradient g of a statistic given as t ((N, C), or (C,)
    broadcast over the batch: summed over it), in t's dtype."""
    return (g if t.dim() == 2 else g.sum(0)).to(t.dtype)


def _norm_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x, mean, var, weight, bias = ctx.saved_tensors
    eps, activation, slope = ctx.args
    composite = _composite(grad, x, mean, var, weight, bias)

    def y_pre() -> Tensor:
        return torch.ops.fastnorm.normalize(x, mean, var, weight, bias, eps, "", 0.01)

    return normalize_vjp(
        grad, x, mean, var, weight, bias, eps, activation, slope, ctx.needs_input_grad, None if composite else y_pre
    )


def normalize_vjp(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    slope: float,
    need: Any,
    y_pre: Any = None,
) -> tuple[Any, ...]:
    """y = (x - mean) * rstd * w + b with rstd = 1 / sqrt(var + eps), the
    statistics inputs (running statistics, or learned ones): every input gets
    its gradient, mean and var summed over the batch where they broadcast.
    Torch operations in float64 throughout, so differentiable again; y_pre
    gives the pre-activation output for a fused activation (None: computed
    here in float64)."""
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    rstd = torch.rsqrt(_nc(var, x) + eps)
    xhat = (x.double() - _nc(mean, x)) * rstd
    wv = weight.double().reshape(shape) if weight is not None else None
    if activation and y_pre is not None:  # the kernels' rounded output, grad in its own dtype
        grad = _activation_grad(y_pre(), grad, activation, slope)
    g64 = grad.double()
    if activation and y_pre is None:  # differentiable again: all in float64
        pre = xhat if wv is None else xhat * wv
        pre = pre if bias is None else pre + bias.double().reshape(shape)
        g64 = _activation_grad(pre, g64, activation, slope)
    gy = g64 * wv if wv is not None else g64
    space = list(range(2, x.dim()))
    red = [0] + space
    gx = (gy * rstd).to(x.dtype) if need[0] else None
    # dy/dmean = -w * rstd; dy/dvar = -w * xhat * rstd^2 / 2 (per element, summed over the plane)
    r2 = rstd.reshape(rstd.shape[:2])
    gm = _to_stat(-(gy.sum(space) * r2), mean) if need[1] else None
    gv = _to_stat(-0.5 * (gy * xhat).sum(space) * r2 * r2, var) if need[2] else None
    gw = (g64 * xhat).sum(red).to(weight.dtype) if weight is not None and need[3] else None
    gb = g64.sum(red).to(bias.dtype) if bias is not None and need[4] else None
    return gx, gm, gv, gw, gb, None, None, None


normalize.register_autograd(_norm_backward, setup_context=_norm_setup)


# ------------------------------------------------------------ instance norm
# Its own operators (what an exporter maps to one InstanceNormalization node);
# the kernels are group norm's with one group per channel.
def instance_norm_impl(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, activation: str, negative_slope: float
) -> Tensor:
    """fastnorm::instance_norm's result, also called directly by fastnorm.torch's
    eager module calls that need no dispatch (fastnorm.torch._eager)."""
    h = _on_host(x, weight, bias)
    if h is not None:
        a, w, b, cl = h
        r = _api.instance_norm(
            a,
            w,
            b,
            eps=eps,
            channel_axis=-1 if cl else 1,
            activation=_act(activation),
            negative_slope=negative_slope,
        )
        return _from_host(r, cl)
    with torch.no_grad():
        return _api.instance_norm(
            x.detach(),
            _opt(weight),
            _opt(bias),
            eps=eps,
            channel_axis=_axis(x),
            activation=_act(activation),
            negative_slope=negative_slope,
        )


@torch.library.custom_op("fastnorm::instance_norm", mutates_args=(), tags=_ANY_STRIDES)
def instance_norm(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, activation: str, negative_slope: float
) -> Tensor:
    return instance_norm_impl(x, weight, bias, eps, activation, negative_slope)


@instance_norm.register_fake
def _(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, activation: str, negative_slope: float
) -> Tensor:
    _one_device("fastnorm::instance_norm", x, weight=weight, bias=bias)
    return _out_like(x)


@torch.library.custom_op("fastnorm::instance_norm_backward", mutates_args=(), tags=_ANY_STRIDES)
def instance_norm_backward(
    grad_out: Tensor, x: Tensor, weight: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_out, x, None, weight, eps)  # the same kernels, one group per channel


@instance_norm_backward.register_fake
def _(grad_out: Tensor, x: Tensor, weight: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    wdt = weight.dtype if weight is not None else x.dtype
    C = x.shape[1]
    _one_device("fastnorm::instance_norm_backward", x, grad_out=grad_out, weight=weight)
    return _like_memory(x, x.dtype), x.new_empty((C,), dtype=wdt), x.new_empty((C,), dtype=wdt)


def _in_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, weight, bias, eps, activation, slope = inputs
    _refuse_integer("instance_norm", x)
    ctx.save_for_backward(x, weight, bias, *_saved_output(activation, output))
    ctx.args = (eps, activation, slope, bias is not None)


def _in_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x, weight, bias, *saved = ctx.saved_tensors
    eps, activation, slope, has_bias = ctx.args
    if _composite(grad, x, weight, bias):
        gx, gw, gb = _composite_vjp(grad, x, max(x.shape[1], 1), weight, bias, eps, activation, slope)
    else:
        grad = _activation_grad_from(
            activation,
            slope,
            tuple(saved),
            grad,
            lambda: torch.ops.fastnorm.instance_norm(x, weight, bias, eps, "", 0.01),
        )
        if _direct_backward(ctx, instance_norm_backward, grad, x, weight):
            gx, gw, gb = _backward_impl(grad, x, None, weight, eps)
        else:
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


class EagerInstanceNorm(torch.autograd.Function):
    """fastnorm::instance_norm with its registered autograd, for an eager
    module call that records autograd: as EagerGroupNorm."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        activation: str,
        negative_slope: float,
    ) -> Tensor:
        y = instance_norm_impl(x, weight, bias, eps, activation, negative_slope)
        _in_setup(ctx, (x, weight, bias, eps, activation, negative_slope), y)
        ctx.eager = True
        return y

    backward = staticmethod(_in_backward)


# ------------------------------------- instance norm into a reflection-padded output
# What convert(fuse_padding=True) runs where an instance norm (and its fused
# activation) feeds an nn.ReflectionPad{1,2,3}d: the padded output written in
# the norm's own pass (float32 channels-first 4-d inputs on the CPU: the
# engine's padded driver), else the norm followed by torch's reflection pad.
# The padding is torch.nn.functional.pad's: (left, right, top, bottom, ...)
# pairs from the last axis, each smaller than its axis (reflection).


def _pad_check(x: Tensor, padding: list[int]) -> None:
    k = x.dim() - 2
    if len(padding) != 2 * k or k < 1:
        raise ValueError(
            f"fastnorm::instance_norm_pad: padding must hold one (before, after) pair per spatial axis, "
            f"{2 * k} values for a {x.dim()}-d input, got {list(padding)}"
        )
    for i in range(k):
        n = x.shape[x.dim() - 1 - i]
        for p in padding[2 * i : 2 * i + 2]:
            if not 0 <= p < n:
                raise ValueError(
                    f"fastnorm::instance_norm_pad: padding {list(padding)}: each pad must be >= 0 and smaller "
                    f"than its axis (reflection), got {p} for an axis of {n}"
                )


def _padded_shape(x: Tensor, padding: list[int]) -> list[int]:
    shape = list(x.shape)
    for i in range(len(padding) // 2):
        shape[len(shape) - 1 - i] += padding[2 * i] + padding[2 * i + 1]
    return shape


def instance_norm_pad_impl(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
    padding: list[int],
) -> Tensor:
    """fastnorm::instance_norm_pad's result: instance_norm's, reflection-padded."""
    _pad_check(x, padding)
    act = _act(activation)
    V.check_activation(act, negative_slope)  # a finite real slope, as instance_norm asks
    if (
        x.dim() == 4
        and len(padding) == 4
        and padding[0] == padding[1]
        and padding[2] == padding[3]
        and x.dtype == torch.float32
        and x.is_cpu
        and x.numel() > 0
    ):
        h = _on_host(x, weight, bias)
        if h is not None:
            a, w, b, cl = h
            C = a.shape[-1] if cl else a.shape[1]
            vec = [None if v is None else np.ascontiguousarray(v, dtype=np.float64) for v in (w, b)]
            if all(v is None or v.shape == (C,) for v in vec):
                from ._cpu import _backend as cpu

                r = cpu.norm_pad(
                    a,
                    cl,
                    vec[0],
                    vec[1],
                    V.check_eps(eps),
                    V.ACTIVATIONS[act],
                    float(negative_slope),
                    padding[2],
                    padding[0],
                    None,
                )
                return _from_host(r, cl)
    y = instance_norm_impl(x, weight, bias, eps, activation, negative_slope)
    cl = TA.is_channels_last(x, 1)
    y = torch.nn.functional.pad(y, list(padding), mode="reflect")
    return y.contiguous(memory_format=torch.channels_last) if cl and y.dim() == 4 else y.contiguous()


@torch.library.custom_op("fastnorm::instance_norm_pad", mutates_args=(), tags=_ANY_STRIDES)
def instance_norm_pad(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
    padding: list[int],
) -> Tensor:
    return instance_norm_pad_impl(x, weight, bias, eps, activation, negative_slope, padding)


@instance_norm_pad.register_fake
def _(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
    activation: str,
    negative_slope: float,
    padding: list[int],
) -> Tensor:
    _one_device("fastnorm::instance_norm_pad", x, weight=weight, bias=bias)
    _pad_check(x, padding)
    dt = x.dtype if x.is_floating_point() else torch.float32
    shape = _padded_shape(x, padding)
    if TA.is_channels_last(x, 1) and x.dim() == 4:
        return x.new_empty(shape, dtype=dt).contiguous(memory_format=torch.channels_last)
    return x.new_empty(shape, dtype=dt)


def _unpad(t: Tensor, padding: list[int]) -> Tensor:
    """The interior of a padded tensor (a view)."""
    for i in range(len(padding) // 2):
        d = t.dim() - 1 - i
        t = t.narrow(d, padding[2 * i], t.shape[d] - padding[2 * i] - padding[2 * i + 1])
    return t


def _fold_reflection(grad: Tensor, x: Tensor, padding: list[int]) -> Tensor:
    """The gradient of the unpadded output from the padded one's: each border
    element's gradient added to the interior element it mirrors (torch's
    reflection-pad backward).  A plain contiguous float32 CPU grad of a 2-d
    pad outside a differentiable backward, a trace or a mode takes the
    engine's fold: the same additions in the same order as torch's kernel
    (its bits, but for which NaN's sign and payload a sum of NaNs keeps), in
    one pass instead of torch's zero fill and scatter (about 6x faster on
    (1, 256, 66, 66))."""
    tf, dd, pe = _TF_MODE, _DISPATCH_DEPTH, _PROFILING
    if (
        len(padding) == 4
        and grad.dim() == 4
        and grad.dtype == torch.float32
        and grad.is_cpu
        and not torch.is_grad_enabled()
        and _dense(grad)
        and grad.is_contiguous()
        # no trace, mode or profiler that must see an operator (make_fx's
        # real tracing would record the result as a constant)
        and tf is not None
        and dd is not None
        and pe is not None
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not tf()
        and dd() == 0
        and not pe()
    ):
        from ._cpu import _backend as cpu

        pl, pr, pt, pb = padding
        return torch.from_numpy(cpu.fold_reflect(TA.host_view(grad), pt, pb, pl, pr, None))
    back = (
        torch.ops.aten.reflection_pad1d_backward,
        torch.ops.aten.reflection_pad2d_backward,
        torch.ops.aten.reflection_pad3d_backward,
    )[len(padding) // 2 - 1]  # one pair per spatial axis (_pad_check)
    return back(grad, _unpad(grad, padding), list(padding))


def _inp_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, weight, bias, eps, activation, slope, padding = inputs
    _refuse_integer("instance_norm_pad", x)
    # relu's mask from a copy of the interior: the padded output is the
    # caller's to change in place (torch's pad returns a tensor of its own)
    saved = tuple(t.clone() for t in _saved_output(activation, _unpad(output, list(padding))))
    ctx.save_for_backward(x, weight, bias, *saved)
    ctx.args = (eps, activation, slope, bias is not None)
    ctx.padding = list(padding)


def _inp_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    x = ctx.saved_tensors[0]
    g = _fold_reflection(grad, x, ctx.padding)
    return (*_in_backward(ctx, g), None)


instance_norm_pad.register_autograd(_inp_backward, setup_context=_inp_setup)


# -------------------------------------------------------------------- adain
@torch.library.custom_op("fastnorm::adain", mutates_args=(), tags=_ANY_STRIDES)
def adain(content: Tensor, style: Tensor, eps: float, alpha: float) -> Tensor:
    with torch.no_grad():
        return _api.adain(content.detach(), style.detach(), eps=eps, alpha=alpha, channel_axis=_axis(content))


@adain.register_fake
def _(content: Tensor, style: Tensor, eps: float, alpha: float) -> Tensor:
    _one_device("fastnorm::adain", content, style=style)
    return _out_like(content)


def _adain_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    content, style, eps, alpha = inputs
    _refuse_integer("adain", content, "content")
    _refuse_integer("adain", style, "style")
    ctx.save_for_backward(content, style)
    ctx.args = (eps, alpha)


def _adain_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    """y = alpha * (xhat * std_s + mean_s) + (1 - alpha) * content, with xhat
    the content normalized per plane (eps in its variance) and std_s =
    sqrt(var_s + eps) of the style's plane (biased variances).

    d/dcontent: alpha * std_s times instance norm's backward (per plane, std_s
    is a constant weight) plus (1 - alpha); d/dstyle through its mean and
    standard deviation: (g_mean + g_std * (s - mean_s) / std_s) / S_style,
    with g_mean = alpha * sum(grad), g_std = alpha * sum(grad * xhat) over the
    content's plane (summed over the batch for a style batch of 1)."""
    x, s = ctx.saved_tensors
    eps, alpha = ctx.args
    if _composite(grad, x, s):
        from . import _torch_func

        dc, ds = _torch_func.adain_vjp(grad, x, s, eps, alpha)
        return dc if ctx.needs_input_grad[0] else None, ds if ctx.needs_input_grad[1] else None, None, None
    N, C = x.shape[0], x.shape[1]
    xs = (N, C) + (1,) * (x.dim() - 2)
    ms, vs = torch.ops.fastnorm.moments(s)
    std_s = torch.sqrt(vs + eps)
    gx = gs = None
    if ctx.needs_input_grad[0]:
        gin = torch.ops.fastnorm.instance_norm_backward(grad, x, None, eps)[0]
        gx = (alpha * std_s.expand(N, C).reshape(xs) * gin.double() + (1.0 - alpha) * grad.double()).to(x.dtype)
    if ctx.needs_input_grad[1]:
        mc, vc = torch.ops.fastnorm.moments(x)
        xhat = (x.double() - mc.reshape(xs)) * torch.rsqrt(vc + eps).reshape(xs)
        space = list(range(2, x.dim()))
        g64 = grad.double()
        g_mean, g_std = alpha * g64.sum(space), alpha * (g64 * xhat).sum(space)
        if s.shape[0] != N:  # a style batch of 1, broadcast over the content's
            g_mean, g_std = g_mean.sum(0, keepdim=True), g_std.sum(0, keepdim=True)
        ss = tuple(s.shape[:2]) + (1,) * (s.dim() - 2)
        count = 1
        for d in s.shape[2:]:
            count *= d
        dev = (s.double() - ms.reshape(ss)) / std_s.reshape(ss)
        gs = ((g_mean.reshape(ss) + g_std.reshape(ss) * dev) / count).to(s.dtype)
    return gx, gs, None, None


adain.register_autograd(_adain_backward, setup_context=_adain_setup)
