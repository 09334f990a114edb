"""torch tensors through the public functions, without copies.

CPU tensors become NumPy views (``Tensor.numpy()``), CUDA tensors CuPy views
(DLPack); the result is wrapped back as a tensor on the same device.  A
channels_last / channels_last_3d tensor is NHWC / NDHWC in memory: it is
handed to the channels-last kernels as that memory (no transposing copy) and
the result comes back as a channels_last tensor.  bfloat16 and float16 are
computed in float32.  Imported only when a tensor arrives.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.autograd.forward_ad as _fwad

from . import _api
from . import _threads as T
from . import _validate as V
from ._torch_arrays import (
    from_array,
    from_host,
    host_layout,
    host_view,
    is_channels_last,
    numpy_dtype,
    to_array,
    transform_route,
)

_FUNCTORCH = getattr(torch._C, "_are_functorch_transforms_active", None)

ARRAY_TYPE = torch.Tensor  # other torch objects (Size, dtype, Module) are refused by _api

# tells autograd that a tensor was written in place (torch >= 2.1 has the public name)
_increment_version = getattr(torch.autograd.graph, "increment_version", None) or torch._C._autograd._increment_version  # type: ignore[attr-defined]


def _needs_grad(kw: dict[str, Any]) -> bool:
    """Autograd is on and an input (not out) requires grad."""
    return torch.is_grad_enabled() and any(
        isinstance(v, torch.Tensor) and v.requires_grad for k, v in kw.items() if k != "out"
    )


#: the public functions that run as fastnorm:: custom operators (fastnorm._torch_ops)
#: under autograd and under torch.jit.trace, so both follow them
_OPERATORS = ("instance_norm", "group_norm", "normalize", "adain")


def _autograd_call(fn: Callable[..., Any], kw: dict[str, Any]) -> Any:
    """fn on tensors that require grad: the fastnorm:: custom operators, which
    autograd differentiates; functions without one raise."""
    name = fn.__name__
    if name not in _OPERATORS:
        raise RuntimeError(
            f"fastnorm.{name} has no backward pass: an input requires grad while autograd is enabled. "
            f"Call it under torch.no_grad() / torch.inference_mode(), or detach() the input "
            f"(instance_norm, group_norm, normalize and adain are differentiable)."
        )
    if kw.get("out") is not None:
        raise RuntimeError(
            "out= cannot be used when an input requires grad (autograd does not track "
            "writes into out); call without out="
        )
    if kw.get("dtype") is not None:
        raise RuntimeError("dtype= cannot be used when an input requires grad; cast the result instead")
    return _op_call(name, kw)


def _transform_call(fn: Callable[..., Any], kw: dict[str, Any], operator: bool = False) -> Any:
    """fn under a torch.func transform or on tensors with a forward-mode
    tangent: the operators' autograd.Function forms (fastnorm._torch_func),
    whose rules give tangents, batching and derivatives of derivatives; the
    operators themselves where operator (functionalize alone); functions
    without one raise."""
    name = fn.__name__
    if name not in _OPERATORS:
        raise RuntimeError(
            f"fastnorm.{name} cannot run under torch.func transforms (vmap, grad, jvp, functionalize, ...) "
            f"or on tensors with a forward-mode tangent: it has no rules for them. instance_norm, group_norm, "
            f"normalize and adain have; otherwise call it outside the transform, or on detached tensors."
        )
    for arg in ("out", "dtype"):
        if kw.get(arg) is not None:
            raise RuntimeError(
                f"{arg}= cannot be used under torch.func transforms or with forward-mode tangents "
                f"(they do not follow writes into out or casts); call without {arg}="
            )
    return _op_call(name, kw, transform=not operator)


def _traced_call(fn: Callable[..., Any], kw: dict[str, Any]) -> Any:
    """fn under torch.jit.trace: the operator where there is one (the trace
    records it, and replays it on new inputs); otherwise None after a
    TracerWarning, and the caller computes the values the trace then holds as
    constants."""
    name = fn.__name__
    if name in _OPERATORS and kw.get("out") is None and kw.get("dtype") is None:
        return _op_call(name, kw)
    why = "out= and dtype= have no operator form" if name in _OPERATORS else "it has no operator form"
    warnings.warn(
        f"fastnorm.{name} is recorded in the trace as constants ({why}): the traced function "
        f"returns this input's result for every input. Call it without out= / dtype=, use "
        f"fastnorm.torch's modules, or torch.export.",
        torch.jit.TracerWarning,
        stacklevel=T.user_stacklevel(),
    )
    return None


def _op_call(name: str, kw: dict[str, Any], transform: bool = False) -> Any:
    """The fastnorm:: operator of public function name (transform: its
    autograd.Function form, fastnorm._torch_func).  The channel axis moves
    to dim 1 as a view; weight, bias and statistics become tensors on x's
    device (tensors keep their autograd history)."""
    from . import _torch_ops  # noqa: F401  (registers the operators)

    ops: Any = torch.ops.fastnorm
    if transform:
        from ._torch_func import FUNCTIONS as ops

    first = "content" if name == "adain" else "x"
    x = kw[first]
    cl = V.channels_last(kw["channel_axis"], x.dim())

    def view(t: Any, arg: str) -> Any:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{arg} must be a torch.Tensor like {first}, got {type(t).__name__}")
        if cl:
            V.channels_last(kw["channel_axis"], t.dim())  # style: the same layout, checked as for arrays
        return t.movedim(-1, 1) if cl else t

    def vec(v: Any) -> Any:
        if v is None or isinstance(v, torch.Tensor):
            return None if v is None else v.to(x.device)
        return torch.as_tensor(np.asarray(v, np.float64), device=x.device)

    xv = view(x, first)
    eps = V.check_eps(kw["eps"])
    if name == "adain":
        y = ops.adain(xv, view(kw["style"], "style"), eps, V.check_alpha(kw["alpha"]))
        return y.movedim(1, -1) if cl else y
    act = kw["activation"] or ""
    _, slope = V.check_activation(kw["activation"], kw["negative_slope"])
    if name == "normalize":
        y = ops.normalize(xv, vec(kw["mean"]), vec(kw["var"]), vec(kw["weight"]), vec(kw["bias"]), eps, act, slope)
    elif name == "instance_norm":
        y = ops.instance_norm(xv, vec(kw["weight"]), vec(kw["bias"]), eps, act, slope)
    else:
        with warnings.catch_warnings():
            # under torch.jit.trace sizes are tensors: this value only validates
            # num_groups here (the operator checks it again on every input)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            G = V.check_num_groups(kw["num_groups"], int(xv.shape[1]))
        y = ops.group_norm(xv, G, vec(kw["weight"]), vec(kw["bias"]), eps, act, slope)
    return y.movedim(1, -1) if cl else y


def _out_array(out: Any, x: Any, cl: bool) -> Any:
    """The array view of a torch out= tensor, checked against x."""
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
    if out.is_neg() or out.is_conj():
        # a lazily negated (or conjugated) view: its memory holds -y, and a
        # materialized copy would take the write instead of out
        raise ValueError(
            "out is a tensor with its negative (or conjugate) bit set (a view from torch.neg / "
            ".conj().imag): it cannot be written in place; pass a plain tensor (torch.empty_like(out))"
        )
    ot = out.movedim(1, -1) if cl else out
    if not ot.is_contiguous():
        fmt = "channels_last like x" if cl else "contiguous"
        raise ValueError(f"out must be {fmt}, got a tensor with strides {tuple(out.stride())}")
    return to_array(ot, "out")


def _host_or_same(v: Any, x: Any) -> Any:
    """weight / bias / stats: tensors go over as arrays on x's device, 16-bit
    floats widened to float32 (exact; they are cast to float64 anyway)."""
    if isinstance(v, torch.Tensor):
        v = v.detach()
        if v.dtype.is_floating_point and v.element_size() < 4:
            v = v.float()
        return to_array(v.to(x.device) if x.device.type == "cuda" else v.cpu(), "weight")
    return v


def _wrap(r: Any, x: Any, cl: bool) -> Any:
    """A public function's result as tensors on x's device: the output array
    (x's layout, mapped back from channels last), a tuple of statistics or of
    the backward's (grad_x, grad_weight, grad_bias), or Moments of tensors."""
    if isinstance(r, tuple):
        return tuple(_wrap(a, x, cl) if a.ndim == x.dim() else from_array(a, x) for a in r)
    if isinstance(r, _api.Moments):
        return _api.Moments(from_array(r.count, x), from_array(r.mean, x), from_array(r.m2, x))
    t = from_array(r, x)
    return t.movedim(-1, 1) if cl else t


#: the functions _plain_call serves (one array result) and the dtypes it takes
_PLAIN_FUNCTIONS = (_api.instance_norm, _api.group_norm)
_PLAIN_DTYPES = (torch.float32, torch.float64)
#: the types of the arguments that are no tensor (None, scalars, strings)
_NOT_TENSORS = frozenset({type(None), float, int, bool, str})


def _plain_call(fn: Callable[..., Any], kw: dict[str, Any], first: str, x: Any) -> Any:
    """The common call on the fewest steps: instance_norm / group_norm of a
    CPU float32 / float64 tensor, contiguous or channels_last in memory, with
    channel_axis and dtype unset, out unset or a CPU tensor of x's memory
    format that does not require grad, no other tensor argument, autograd
    not needed and no trace running: the NumPy function on x's view, its
    result a tensor on the same memory.  None: the call is not of that kind
    (call() takes the general path, which gives the same result or the
    error).  After a large kernel the interpreter and torch's C++ run on cold
    caches, where each step of the general path costs several times its warm
    price (a Tensor.detach() tens of microseconds)."""
    if fn not in _PLAIN_FUNCTIONS:
        return None
    out = kw["out"]
    if (
        type(x) is not torch.Tensor
        or x.dtype not in _PLAIN_DTYPES
        or not x.is_cpu
        or kw["channel_axis"] is not None
        or kw["dtype"] is not None
        or (x.requires_grad and torch.is_grad_enabled())
        or x.is_neg()
    ):
        return None
    if out is not None and (
        type(out) is not torch.Tensor
        or out.dtype not in _PLAIN_DTYPES
        or not out.is_cpu
        or out.requires_grad
        or out.is_neg()
    ):
        return None
    for name, v in kw.items():
        # isinstance(v, torch.Tensor) costs about 0.2 us (torch's metaclass):
        # asked only of values that are not None or a plain scalar or string
        if type(v) not in _NOT_TENSORS and name != first and name != "out" and isinstance(v, torch.Tensor):
            return None
    if torch.jit.is_tracing():
        return None
    h = host_layout(host_view(x))  # autograd is off here: x may still require grad
    if h is None:
        return None
    a, cl = h
    o = None
    if out is not None:
        o = host_layout(out.numpy())
        if o is None or o[1] != cl:  # not x's memory format: the general path's error
            return None
    # every check passed: only now is kw changed (the general path takes it as it came)
    if o is not None:
        kw["out"] = o[0]
    if cl:
        kw["channel_axis"] = -1
    kw[first] = a
    r = fn(**kw)
    if out is not None:
        _increment_version(out)
        return out
    return from_host(r, cl)


def call(fn: Callable[..., Any], args: inspect.BoundArguments) -> Any:
    """fn on the arrays viewing args' tensors; the result wrapped back.

    The first argument (x, content) is the input; ``style`` (adain) must be a
    tensor like it, in the same layout; ``out`` a tensor written in place
    (its version bumped, so autograd sees the write); every other tensor
    argument (weight, bias, mean, var) goes over as an array on x's device.
    A logically channels-first tensor whose memory is channels-last goes
    over as that memory with channel_axis=-1 (no transposing copy)."""
    kw = dict(args.arguments)
    first = next(iter(kw))
    x = kw[first]
    if (_FUNCTORCH is not None and _FUNCTORCH()) or _fwad._current_level >= 0:
        route = transform_route(*kw.values())
        if route is not None:  # "operator": functionalize's tensors (no storage), which it functionalizes
            return _transform_call(fn, kw, operator=route == "operator")
    r = _plain_call(fn, kw, first, x)
    if r is not None:
        return r
    if _needs_grad(kw):
        return _autograd_call(fn, kw)
    if torch.jit.is_tracing():
        r = _traced_call(fn, kw)
        if r is not None:
            return r
    channel_axis = kw["channel_axis"]
    V.channels_last(channel_axis, x.dim())  # the same check as for arrays (True, 1.0 refused)
    cl = is_channels_last(x, channel_axis)
    out = kw.get("out")
    for name, v in kw.items():
        if name == first:
            kw[name] = to_array(x.detach().movedim(1, -1) if cl else x.detach(), name)
        elif name in ("style", "x"):  # in the first argument's layout (adain's style, the backward's x)
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor like {first}, got {type(v).__name__}")
            kw[name] = to_array(v.detach().movedim(1, -1) if cl else v.detach(), name)
        elif name == "out":
            kw[name] = None if v is None else _out_array(v, x, cl)
        elif isinstance(v, torch.Tensor):
            kw[name] = _host_or_same(v, x)
    if cl:
        kw["channel_axis"] = -1
    if isinstance(kw.get("dtype"), torch.dtype):  # dtype=torch.float32 means numpy's
        kw["dtype"] = numpy_dtype(kw["dtype"])
    if x.device.type == "cuda":
        # on x's device and torch's current stream there: the next torch op
        # is ordered after the kernels, and torch's allocator sees the use
        import cupy

        with (
            cupy.cuda.Device(x.device.index),
            cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream),
        ):
            r = fn(**kw)
    else:
        r = fn(**kw)
    if out is not None:
        _increment_version(out)
        return out
    return _wrap(r, x, cl)


if TYPE_CHECKING:  # mypy checks this module against the protocol it serves
    from . import _torch as _self
    from ._backends import InteropBackend

    _conforms: InteropBackend = _self


def short_call(fn: Callable[..., Any], kw: dict[str, Any]) -> Any:
    """instance_norm / group_norm of a torch.Tensor without ``layout=``, from
    the public function itself (its locals() as kw): _plain_call's case with
    no signature binding and no backend lookup (about half the cost of a
    small call).  None for any other call, or one under a torch.func
    transform or forward-mode AD: the API then dispatches it as before, which
    gives the same result or the error."""
    if (_FUNCTORCH is not None and _FUNCTORCH()) or _fwad._current_level >= 0:
        return None
    return _plain_call(fn, kw, "x", kw["x"])


_api.set_tensor_short_path(torch.Tensor, short_call)
