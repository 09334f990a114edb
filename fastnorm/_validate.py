"""Argument checks shared by every backend: one place, one message style.

Every message names the argument and shows the value received.  Nothing here
writes to an output: callers validate everything first, then compute.  The
layer between the public functions (fastnorm._api) and the backends: it
checks arrays against the backend that will take them (``as_array``,
``check_out``), and hands on the kernels' vocabulary (fastnorm._codes) to
the layers above.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, NamedTuple

import numpy as np

from . import _codes
from ._backends import library, to_host

# the kernels' vocabulary, handed on to the layers above (V.F32, V.is_integer, V.layout)
from ._codes import (  # noqa: F401
    _CODES,
    BF16,
    F16,
    F32,
    F64,
    FLOAT_CODES,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    code_dtype,
    is_integer,
)

layout = _codes.layout

#: their names, for messages
FLOAT_NAMES = "float16, float32, float64 or ml_dtypes.bfloat16"

#: fused activations, in the order of the kernels' enum
ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2, "silu": 3}

SUPPORTED_DTYPES = (
    "float16, float32, float64 (and ml_dtypes.bfloat16), or an integer dtype "
    "(uint8, int8, uint16, int16, uint32, int32, uint64, int64; not bool)"
)


def _shape_str(shape: Any) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def dtype_code(dtype: Any, name: str = "x") -> int:
    """Engine code of a supported dtype (floating or integer, not bool), else TypeError."""
    code = _CODES.get(dtype)
    if code is not None:
        return code
    if getattr(dtype, "name", None) == "bfloat16":
        return BF16
    raise TypeError(f"{name} must have a supported dtype ({SUPPORTED_DTYPES}), got dtype {dtype}")


def refuse_mask(a: Any, name: str, what: str = "is a numpy.ma.MaskedArray") -> None:
    """TypeError for a numpy.ma.MaskedArray, whose mask the kernels would ignore."""
    ma = sys.modules.get("numpy.ma")  # not loaded: no masked array exists
    if ma is not None and isinstance(a, ma.MaskedArray):
        raise TypeError(
            f"{name} {what}: masks are not supported (the masked values would be "
            f"used); pass {name}.filled(value) or {name}.data"
        )


def as_numpy(x: Any, name: str = "x") -> np.ndarray:
    """numpy.asarray with a clear error for things that are not numeric arrays."""
    if type(x) is np.ndarray:
        return x
    refuse_mask(x, name)
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and friends
        raise TypeError(f"{name} must be an array or array-like of floats, got {type(x).__name__}: {e}") from None
    if a.dtype == object:
        raise TypeError(f"{name} must be an array or array-like of floats, got an object array from {type(x).__name__}")
    return a


def as_array(x: Any, xp: Any, name: str = "x") -> Any:
    """x as an array of the compute backend whose array module is xp: NumPy's
    takes array-likes (lists, objects with __array__); the arrays of another
    library arrive as they are (fastnorm._backends.for_array chose their
    backend by their type)."""
    return as_numpy(x, name) if xp is np else x


def per_channel(a: Any, name: str, N: int, C: int, xp: Any = np) -> Any:
    """(N, C) float64 from an (N, C) or (C,) array (broadcast over the batch)."""
    arr = as_real(a, name, "an array of numbers", "a real dtype", xp)
    if arr.shape == (C,):
        arr = xp.broadcast_to(arr, (N, C))
    elif arr.shape != (N, C):
        raise ValueError(f"{name} must have shape ({N}, {C}) or ({C},), got shape {_shape_str(arr.shape)}")
    return xp.ascontiguousarray(arr, dtype=xp.float64)


def check_var(v: Any) -> Any:
    """v itself; ValueError where a variance is negative or +inf (NaN passes,
    as in the formula): an infinite variance would silently give zeros."""
    if bool((v < 0).any()):
        raise ValueError("var must be >= 0 everywhere, got a negative variance")
    if bool((v == np.inf).any()):
        raise ValueError(
            "var must be finite, got inf (a float32 variance overflows for data "
            "above ~1.8e19: compute the statistics of x.astype(np.float64))"
        )
    return v


def check_x(shape: Any, dtype: Any, name: str = "x", min_ndim: int = 3) -> int:
    """ndim >= min_ndim (3; 2 for group norm, as torch) and a supported dtype;
    returns the dtype code."""
    code = dtype_code(dtype, name)
    if len(shape) < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions (N, C, *spatial), got shape {_shape_str(shape)}"
        )
    return code


def _integer_dtype(dtype: Any) -> bool:
    """Whether dtype (NumPy's, or a torch.dtype) is an integer type other than bool."""
    kind = getattr(dtype, "kind", None)
    if isinstance(kind, str):  # NumPy, CuPy and Dask arrays
        return kind in "iu"
    # torch.dtype: no kind; integers are neither floating nor complex
    return (
        getattr(dtype, "is_floating_point", True) is False
        and getattr(dtype, "is_complex", True) is False
        and str(dtype) != "torch.bool"
    )


def check_unambiguous(shape: Any, dtype: Any, channel_axis: Any, name: str = "x") -> None:
    """ValueError for an integer array of 2 or 3 dimensions given with neither
    ``layout=`` nor ``channel_axis=``.

    Integer pixels of 2 or 3 dimensions are almost always one image ((H, W),
    (H, W, C) or (C, H, W)), which the default channels-first reading takes as
    a batch (N=H, C=W, L=C for an (H, W, C) photo): every pixel's channels
    would be normalized against each other, without an error.  The caller must
    say which axes are which.  Callers run this only where layout= is None
    (a layout is mapped to channel_axis before the check)."""
    if channel_axis is not None or len(shape) not in (2, 3) or not _integer_dtype(dtype):
        return
    dt = str(dtype).replace("torch.", "")
    dims = tuple(int(d) if d == d else d for d in shape)  # a Dask array's unknown sizes are NaN
    if len(shape) == 3:
        hint = (
            'layout="HWC" (one image, channels last, as PIL and OpenCV give it), '
            'layout="CHW" (one image, channels first, as torchvision gives it) '
            'or layout="NCL" (a batch of 1-d signals)'
        )
    else:
        hint = (
            'layout="HW" (one single-channel image) or channel_axis=1 for a batch of shape (N, C); '
            'an image with channels has 3 dimensions and takes layout="HWC", layout="CHW" or layout="NCL"'
        )
    raise ValueError(
        f"{name} of shape {dims} and dtype {dt} is ambiguous without layout= or channel_axis=: "
        f"an integer array of {len(shape)} dimensions is usually an image, which the default "
        f"channels-first reading would take as a batch of {dims[0]}; pass {hint}"
    )


def channels_last(channel_axis: Any, ndim: int) -> bool:
    """True for channels-last (-1 or ndim-1), False for channels-first (1 or
    None, the default)."""
    if channel_axis is None:
        return False
    if type(channel_axis) is int:
        if channel_axis == 1:
            return False
        if channel_axis == -1:
            return True
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be an int (1 or -1), got {channel_axis!r}")
    ax = int(channel_axis)
    if ax == 1:
        return False
    if ax == -1 or ax == ndim - 1:
        return True
    raise ValueError(
        f"channel_axis must be 1 (channels first) or -1 / {ndim - 1} (channels last) "
        f"for a {ndim}-d input, got {channel_axis!r}"
    )


def _big_repr(v: Any) -> str:
    """repr(v), shortened for an int too long to print whole."""
    try:
        r = repr(v)
    except ValueError:  # beyond Python's int-to-str digit limit
        return f"an int of {v.bit_length()} bits"
    return r if len(r) <= 40 else f"{r[:20]}...{r[-8:]} ({len(r)} characters)"


def to_float(v: Any, name: str, rule: str) -> float:
    """float(v) of a real number v; an int beyond float's range is a
    ValueError naming the argument (float() says OverflowError)."""
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{name} must be {rule}, got {_big_repr(v)}") from None


def check_eps(eps: Any, name: str = "eps") -> float:
    if type(eps) is float and 0.0 <= eps < math.inf:
        return eps
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {eps!r}")
    e = to_float(eps, name, "finite and >= 0")
    if not math.isfinite(e) or e < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {eps!r}")
    return e


def check_threads(num_threads: Any) -> int | None:
    """None (OpenMP default) or an int >= 1."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    n = int(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be None or an int >= 1, got {num_threads!r}")
    return n


def check_vector(a: Any, name: str, C: int) -> np.ndarray | None:
    """None or a 1-D real array of length C, returned as contiguous float64
    host memory (a CuPy array or a torch tensor is copied to the host)."""
    if a is None:
        return None
    if type(a) is np.ndarray and a.dtype == np.float64 and a.shape == (C,) and a.flags.c_contiguous:
        return a
    arr = as_real(a, name, f"an array of {C} numbers", "a real (float or int) dtype")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of length C={C}, got shape {_shape_str(arr.shape)}")
    if arr.shape[0] != C:
        raise ValueError(f"{name} must have length C={C} (the channel count), got length {arr.shape[0]}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_real(a: Any, name: str, what: str, kind: str, xp: Any = np) -> Any:
    """a as an array of xp (a torch tensor, or a CuPy array for NumPy, copied
    to the host) with a real dtype; TypeError naming what it must be."""
    refuse_mask(a, name)
    lib = library(a)
    if lib == "torch" and getattr(a, "requires_grad", False) and _grad_enabled():
        raise TypeError(
            f"{name} is a torch.Tensor that requires grad, but the input is not a torch.Tensor: "
            f"fastnorm differentiates calls on tensors only. Pass the input as a tensor "
            f"(torch.from_numpy(x)), or {name}.detach()."
        )
    if lib == "torch" or (xp is np and (lib == "cupy" or hasattr(a, "__cuda_array_interface__"))):
        a = to_host(a)
    try:
        arr = xp.asarray(a)
    except (TypeError, ValueError) as e:  # ragged lists
        raise TypeError(f"{name} must be {what}, got {type(a).__name__}: {e}") from None
    if arr.dtype.kind not in "fiu" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{name} must have {kind}, got dtype {arr.dtype}")
    return arr


def _grad_enabled() -> bool:
    """torch's grad mode (torch is loaded: one of its tensors is at hand)."""
    return bool(sys.modules["torch"].is_grad_enabled())


#: output dtype codes (dtype=): the floating types
_OUT_NAMES = FLOAT_NAMES


def out_dtype(dtype: Any, x_dtype: Any, code: int) -> tuple[Any, int]:
    """(output dtype, its code) for dtype= (None: x's dtype for floating
    inputs, float32 for integer inputs)."""
    if dtype is None:
        if is_integer(code):
            return np.dtype(np.float32), F32
        return x_dtype, code
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be None or a floating dtype ({_OUT_NAMES}), got {dtype!r}") from None
    oc = _CODES.get(d) if d.kind == "f" else (BF16 if d.name == "bfloat16" else None)
    if oc is None:
        raise TypeError(f"dtype must be None or a floating dtype ({_OUT_NAMES}), got {dtype!r}")
    return d, oc


def check_out(
    out: Any, shape: Any, dtype: Any, name: str = "out", array_type: Any = np.ndarray, type_name: str = "numpy.ndarray"
) -> Any:
    """out itself if it is a writeable C-contiguous array of the backend's type
    (array_type, named type_name in messages) with x's shape and dtype, else
    TypeError / ValueError."""
    refuse_mask(out, name)
    if not isinstance(out, array_type):
        raise TypeError(f"{name} must be None or a {type_name}, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the dtype of x), got dtype {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(
            f"{name} must have shape {_shape_str(shape)} (the shape of x), got shape {_shape_str(out.shape)}"
        )
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got an array with strides {out.strides}")
    if not getattr(out.flags, "writeable", True):
        raise ValueError(f"{name} must be writeable, got a read-only array")
    return out


def check_activation(activation: Any, negative_slope: Any) -> tuple[int, float]:
    if activation is None and type(negative_slope) is float and math.isfinite(negative_slope):
        return 0, negative_slope
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be None or one of {sorted(k for k in ACTIVATIONS if k)}, got {activation!r}")
    code = ACTIVATIONS.get(activation)
    if code is None and activation is not None:
        raise ValueError(f"activation must be None or one of {sorted(k for k in ACTIVATIONS if k)}, got {activation!r}")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"negative_slope must be a real number, got {negative_slope!r}")
    s = to_float(negative_slope, "negative_slope", "finite")
    if not math.isfinite(s):
        raise ValueError(f"negative_slope must be finite, got {negative_slope!r}")
    return code or 0, s


def check_num_groups(num_groups: Any, C: int) -> int:
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"num_groups must be an int, got {num_groups!r}")
    g = int(num_groups)
    if g < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups!r}")
    if C % g != 0:
        raise ValueError(f"num_groups must divide the channel count C={C}, got num_groups={num_groups!r}")
    return g


def check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {alpha!r}")
    a = to_float(alpha, "alpha", "in [0, 1]")
    if not (0.0 <= a <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return a


#: validate_norm's num_groups for instance norm: one group per channel
#: (None is a bad num_groups of group_norm)
PER_CHANNEL: Any = object()


class NormArgs(NamedTuple):
    """The validated arguments of a norm (instance_norm, group_norm), as the
    backends take them."""

    code: int  #: dtype code of x
    cl: bool  #: channels last
    C: int  #: channels
    G: int  #: groups (C for instance norm)
    weight: np.ndarray | None  #: float64 (C,) host array
    bias: np.ndarray | None  #: float64 (C,) host array
    eps: float
    act: int  #: activation code (ACTIVATIONS)
    slope: float  #: leaky_relu's negative slope
    nt: int | None  #: num_threads
    odtype: Any  #: output dtype
    ocode: int  #: its code


def validate_norm(
    x: Any,
    num_groups: Any,
    weight: Any,
    bias: Any,
    eps: Any,
    channel_axis: Any,
    activation: Any,
    negative_slope: Any,
    num_threads: Any,
    dtype: Any = None,
    name: str = "x",
) -> NormArgs:
    """Every argument of instance_norm / group_norm but ``out``, checked in
    the order of the signature: one place for the eager path and for Dask.
    ``x`` needs only ``shape`` and ``dtype`` (native byte order): a NumPy,
    CuPy or Dask array.  num_groups is PER_CHANNEL for instance norm; group
    norm also takes (N, C) inputs (a spatial size of one), as torch does."""
    per_channel = num_groups is PER_CHANNEL
    check_unambiguous(x.shape, x.dtype, channel_axis, name)
    code = check_x(x.shape, x.dtype, name, 3 if per_channel else 2)
    cl = channels_last(channel_axis, len(x.shape))
    C = int(x.shape[-1] if cl else x.shape[1])
    G = C if per_channel else check_num_groups(num_groups, C)
    eps = check_eps(eps)
    act, slope = check_activation(activation, negative_slope)
    nt = check_threads(num_threads)
    w = check_vector(weight, "weight", C)
    b = check_vector(bias, "bias", C)
    odtype, ocode = out_dtype(dtype, x.dtype, code)
    return NormArgs(code, cl, C, G, w, b, eps, act, slope, nt, odtype, ocode)


#: the letters of a layout's spatial axes
SPATIAL_LETTERS = "DHWL"


class Layout(NamedTuple):
    """A validated ``layout=`` string, and the views it maps to: x gets a
    unit batch axis where the layout has no N and a unit channel axis where
    it has no C, which makes it (N, C, *spatial) or (N, *spatial, C)."""

    layout: str
    has_n: bool
    has_c: bool
    cl: bool  #: C is the last letter (channels last)

    def canonical(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(shape)
        if not self.has_n:
            shape = (1,) + shape
        if not self.has_c:
            shape = shape[:1] + (1,) + shape[1:]
        return shape

    def stats_in(self, a: Any, name: str = "mean", n: int | None = None) -> Any:
        """Statistics given in the layout's shape ((N, C), (C,), (N,) or ())
        as the (N, C) or (C,) arrays the functions take; a ValueError naming
        the argument where a layout without C gets another shape (n: x's batch)."""
        if self.has_c or a is None:
            return a
        if not hasattr(a, "reshape"):
            a = np.asarray(a)
        shape = tuple(getattr(a, "shape", ()))
        # (N,) or (N, 1) -> (N, 1); () or (1,) -> (1,): one channel
        fits = shape in ((), (1,)) or (
            self.has_n and (len(shape) == 1 or shape[1:] == (1,)) and (n is None or shape[0] == n)
        )
        if not fits:
            want = f"({n},) or ()" if self.has_n and n is not None else "(N,) or ()" if self.has_n else "()"
            raise ValueError(
                f"{name} must have shape {want} for layout={self.layout!r} (no C axis: one channel), "
                f"got shape {_shape_str(shape)}"
            )
        return a.reshape((-1, 1)) if self.has_n and shape not in ((), (1,)) else a.reshape((1,))

    def stats_out(self, a: Any, shape: tuple[int, ...]) -> Any:
        """(N, C) statistics in the layout's shape: (N, C), (C,), (N,) or ()."""
        out = ((int(shape[0]),) if self.has_n else ()) + (
            (int(shape[-1] if self.cl else shape[1 if self.has_n else 0]),) if self.has_c else ()
        )
        return a.reshape(out)


def check_layout(layout: Any, shape: tuple[int, ...], name: str = "x") -> Layout:
    """The Layout of a layout string for an array of this shape: x.ndim
    distinct letters; N (batch) optional and first; C (channels) optional,
    right after N (or first without N) or last; every other letter a spatial
    axis (D, H, W, L), at least one."""
    if not isinstance(layout, str):
        raise TypeError(f"layout must be None or a string such as 'NCHW', 'HWC' or 'HW', got {layout!r}")

    def bad(why: str) -> ValueError:
        return ValueError(f"layout={layout!r} does not fit {name} of shape {_shape_str(shape)}: {why}")

    if len(layout) != len(shape):
        raise bad(f"it has {len(layout)} letters for {len(shape)} dimensions")
    if len(set(layout)) != len(layout):
        raise bad("a letter repeats")
    has_n = layout.startswith("N")
    rest = layout[1:] if has_n else layout
    if "N" in rest:
        raise bad("N (the batch axis) must come first")
    has_c = "C" in rest
    cl = has_c and rest.endswith("C") and len(rest) > 1
    if has_c and not (rest.startswith("C") or cl):
        raise bad("C (the channel axis) must come right after N (or first) or last")
    spatial = rest.replace("C", "")
    if not spatial:
        raise bad(f"it needs at least one spatial axis ({', '.join(SPATIAL_LETTERS)})")
    other = [ch for ch in spatial if ch not in SPATIAL_LETTERS]
    if other:
        raise bad(f"{other[0]!r} is not an axis letter (N, C, or a spatial {', '.join(SPATIAL_LETTERS)})")
    return Layout(layout, has_n, has_c, cl)
