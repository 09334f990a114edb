"""torch tensors as the arrays the kernels take, and arrays back as
tensors, without copies: CPU tensors as NumPy views, CUDA tensors as CuPy
views (DLPack), bfloat16 as its 16-bit pattern viewed as
``ml_dtypes.bfloat16``.  Shared by the torch layer (fastnorm._torch) and
the operators' backward (fastnorm._torch_ops).  Importing it imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as _fwad

from . import _validate as V
from ._backends import library

_FUNCTORCH = getattr(torch._C, "_are_functorch_transforms_active", None)
_STACK = getattr(torch._C._functorch, "get_interpreter_stack", None)


def transforms() -> list[str]:
    """The active torch.func transforms, outermost first, by name ("Vmap",
    "Grad", "Jvp", "Functionalize"); empty where none is active."""
    if _FUNCTORCH is None or not _FUNCTORCH():
        return []
    stack = _STACK() if _STACK is not None else None
    return [i.key().name for i in stack] if stack else ["unknown"]


_LAYER = getattr(torch._C.DispatchKey, "FuncTorchDynamicLayerFrontMode", None)
_INCLUDED = getattr(torch._C, "_dispatch_tls_is_dispatch_key_included", None)
_EXCLUDED = getattr(torch._C, "_dispatch_tls_is_dispatch_key_excluded", None)


def _functorch_live() -> bool:
    """A torch.func transform processes the operations called here: one is
    active, and its dispatch layer is neither off (torch._C._DisableFuncTorch)
    nor below us (inside an operator's implementation)."""
    if _FUNCTORCH is None or not _FUNCTORCH():
        return False
    if _LAYER is None or _INCLUDED is None or _EXCLUDED is None:
        return True
    return _INCLUDED(_LAYER) and not _EXCLUDED(_LAYER)


def transform_route(*tensors: Any) -> str | None:
    """How a call on tensors must run: "function" under a live torch.func
    transform (vmap, grad, jvp: its tensors have no storage, even a
    constant's detach() is lifted into one, and its levels need rules) or
    where a tensor carries a forward-mode tangent
    (torch.autograd.forward_ad): the autograd.Function forms
    (fastnorm._torch_func); "operator" under functionalize alone (the custom
    operators, which it functionalizes); None otherwise.  Cheap where
    nothing is active: one C call and one attribute read."""
    if _functorch_live():
        return "operator" if all(k == "Functionalize" for k in transforms()) else "function"
    if _fwad._current_level < 0:  # no dual level entered: no tensor has a tangent
        return None
    if any(isinstance(t, torch.Tensor) and _fwad.unpack_dual(t).tangent is not None for t in tensors):
        return "function"
    return None


def transform_active(*tensors: Any) -> bool:
    """Whether a call on tensors must take the autograd.Function forms
    (transform_route's "function")."""
    return transform_route(*tensors) == "function"


def primal(t: torch.Tensor) -> torch.Tensor:
    """t's values without any torch.func wrapper or tangent: what a module's
    running statistics take under grad / jvp transforms (as torch's own
    modules update them, from the primal values).  Under vmap a ValueError:
    one buffer cannot take the mapped samples' statistics."""
    if "Vmap" in transforms():
        raise ValueError(
            "a fastnorm.torch instance norm with track_running_stats=True in training mode cannot run "
            "under torch.func.vmap: its running statistics would take every mapped sample's values. "
            "Call it in eval() mode, with track_running_stats=False, or outside vmap."
        )
    t = t.detach()
    is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    unwrap = getattr(torch._C._functorch, "get_unwrapped", None)
    if is_wrapped is not None and unwrap is not None and "Functionalize" not in transforms():
        while is_wrapped(t):
            t = unwrap(t)
    return _fwad.unpack_dual(t).primal if _fwad._current_level >= 0 else t


def is_channels_last(t: Any, channel_axis: Any) -> bool:
    """A logically channels-first tensor whose memory is channels-last."""
    return (
        (channel_axis is None or channel_axis == 1)
        and t.dim() >= 3
        and not t.is_contiguous()
        and t.movedim(1, -1).is_contiguous()
    )


#: tensor dtypes the kernels read directly: floats and integers (bool is not a number here)
_DTYPES = {
    torch.float16,
    torch.float32,
    torch.float64,
    torch.bfloat16,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
} | {getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)}


def _bf16_dtype(name: str) -> Any:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(f"{name}: bfloat16 tensors need the ml_dtypes package (pip install ml_dtypes)") from None
    return ml_dtypes.bfloat16


#: the torch output dtypes (dtype=) and their NumPy names; bfloat16 is ml_dtypes'
_OUT_DTYPES = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}


def numpy_dtype(d: Any) -> Any:
    """The NumPy dtype of a torch dtype given as dtype=: the floating output
    types (the others, float8 or integers, are refused naming the value)."""
    if d == torch.bfloat16:
        return _bf16_dtype("dtype")
    name = _OUT_DTYPES.get(d)
    if name is None:
        raise TypeError(
            f"dtype must be None or a floating dtype (torch.float16, torch.float32, torch.float64 "
            f"or torch.bfloat16), got {d}"
        )
    return np.dtype(name)


def to_array(t: Any, name: str = "x") -> Any:
    """Zero-copy NumPy (CPU) or CuPy (CUDA) view of a tensor; bfloat16 goes
    over as its 16-bit pattern viewed as ml_dtypes.bfloat16.  A lazily
    negated view (torch.neg's negative bit: its memory holds -t) goes over
    as a copy of its values."""
    t = t.detach()
    if t.is_neg():
        t = t.resolve_neg()
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name} must be a CPU or CUDA tensor, got device {t.device}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} must have a floating or integer dtype ({V.SUPPORTED_DTYPES}), got dtype {t.dtype}")
    if t.device.type == "cuda":
        import cupy

        if t.dtype == torch.bfloat16:
            return cupy.from_dlpack(t.view(torch.int16)).view(_bf16_dtype(name))
        return cupy.from_dlpack(t)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bf16_dtype(name))
    return t.numpy()


def from_array(a: Any, like: Any) -> Any:
    """Tensor sharing a's memory, on like's device."""
    if library(a) == "cupy":
        return torch.from_dlpack(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


#: per rank, the axes that take (N, C, *spatial) to (N, *spatial, C), and back
_TO_CL = {n: (0, *range(2, n), 1) for n in range(3, 9)}
_FROM_CL = {n: (0, n - 1, *range(1, n - 1)) for n in range(3, 9)}


def host_view(t: Any) -> Any:
    """The NumPy view of a CPU tensor's memory (a detached view first where
    it requires grad: Tensor.numpy refuses those)."""
    return (t.detach() if t.requires_grad else t).numpy()


def host_layout(a: Any) -> tuple[Any, bool] | None:
    """(a, False) for C-contiguous memory, (a as (N, *spatial, C), True) for
    channels-last memory, None for other strides: is_channels_last's rule,
    read from NumPy's flags.  The short paths to the CPU kernels run once
    per layer on caches a convolution has just evicted, where one torch call
    costs 10-70 us (Tensor.device 40, detach 45, movedim 70; a getter 10):
    they make the fewest torch calls and map the layout in NumPy."""
    if a.flags.c_contiguous:
        return a, False
    if a.ndim in _TO_CL:
        t = a.transpose(_TO_CL[a.ndim])
        if t.flags.c_contiguous:
            return t, True
    return None


def from_host(r: Any, cl: bool) -> Any:
    """The kernels' result as a tensor of the input's logical shape on the
    same memory (channels-last memory mapped back in NumPy: torch.from_numpy
    keeps any strides)."""
    return torch.from_numpy(r.transpose(_FROM_CL[r.ndim]) if cl else r)
