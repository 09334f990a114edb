"""The backend contract: which module serves an array, and what it must provide.

Two kinds of backend, each a module that satisfies one of the protocols below
with every hook (nothing is probed with ``hasattr``; ``tests/test_backends.py``
and mypy check the modules against the protocols):

- a **compute backend** runs the kernels on arrays of its own library
  (NumPy -> ``fastnorm._cpu._backend``, CuPy -> ``fastnorm._gpu._backend``).
  The public functions of ``fastnorm._api`` are written once on top of its
  primitives, after validating every argument once;
- an **interop backend** adapts another array type (torch tensors ->
  ``fastnorm._torch``, Dask arrays -> ``fastnorm._dask``): it receives the
  public function and its bound arguments, unwraps the arrays, calls the
  public function (eagerly, or per block in a lazy graph) and wraps the result.

A backend module is imported only when an array of its library arrives, so
``import fastnorm`` imports none of the optional libraries; this module
names them by string (MODULES) and imports none of them.  Each one states
at its end, for mypy, the protocol it satisfies.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: An array: numpy.ndarray, cupy.ndarray, torch.Tensor or dask.array.Array
#: (Any: the optional libraries are not imported to name their types).
Array = Any
#: What the public functions take as data: an Array, or for NumPy anything
#: numpy.asarray accepts (nested lists, objects with __array__).
ArrayLike = Any


@runtime_checkable
class ComputeBackend(Protocol):
    """Kernels for one array library.  Inputs arrive validated (``_api``, by
    ``_validate``): ``x`` is the backend's array with a supported dtype
    (``code``, see ``_codes``), ``cl`` says channels last, coefficient arrays
    are float64 (N, C) of the backend's library.  Outputs are new C-contiguous
    arrays, or ``out`` (already checked by ``_validate.check_out`` against
    ARRAY_TYPE) written and returned."""

    @property
    def xp(self) -> ModuleType:
        """The array module: numpy or cupy."""
        ...

    @property
    def ARRAY_TYPE(self) -> type:
        """The arrays it serves (anything else from its library is refused)."""
        ...

    @property
    def ARRAY_NAME(self) -> str:
        """How messages name its arrays ("numpy.ndarray")."""
        ...

    def norm(
        self,
        x: Array,
        code: int,
        cl: bool,
        G: int,
        weight: Array | None,
        bias: Array | None,
        eps: float,
        act: int,
        slope: float,
        out: Array | None,
        nt: int | None,
        ocode: int | None = None,
    ) -> Array:
        """Statistics per (instance, group of C // G channels), then the
        normalized, affine, activated output, as ``_api.instance_norm``
        documents it; weight and bias are float64 (C,) host arrays or None.
        ocode: the output's dtype code (None: x's; required for integer x)."""
        ...

    def triples(self, x: Array, code: int, cl: bool, nt: int | None, ocode: int | None = None) -> Array:
        """Welford triples (count, mean, m2) per (instance, channel): float64
        (N, C, 3); count 0 (mean and m2 unspecified) for empty planes.  Of
        the exact values, or for an integer x with ocode given, of the values
        the kernels of output code ocode load (what a norm into ocode uses)."""
        ...

    def moments(self, x: Array, code: int, cl: bool, nt: int | None) -> tuple[Array, Array, Array, Array]:
        """(count, mean, m2, var) float64 (N, C): the triples, and the biased
        variance, exact where the triples would overflow or lose bits."""
        ...

    def apply(
        self,
        x: Array,
        code: int,
        cl: bool,
        mean: Array,
        scale: Array,
        shift: Array,
        act: int,
        slope: float,
        out: Array | None,
        nt: int | None,
        ocode: int | None = None,
    ) -> Array:
        """``act((x - mean) * scale + shift)`` per (instance, channel), in the
        dtype of ocode (None: x's)."""
        ...

    def backward(
        self, x: Array, dy: Array, code: int, cl: bool, G: int, weight: Array | None, eps: float, nt: int | None
    ) -> tuple[Array, Array, Array]:
        """(grad_x, grad_weight, grad_bias) of the norm with G groups: grad_x in
        x's dtype and shape, the others float64 (C,) arrays of the backend's
        library; statistics recomputed from x."""
        ...


@runtime_checkable
class InteropBackend(Protocol):
    """An adapter for an array type the kernels do not take directly."""

    @property
    def ARRAY_TYPE(self) -> type:
        """The arrays it serves (anything else from its library is refused)."""
        ...

    def call(self, fn: Callable[..., Any], args: inspect.BoundArguments) -> Any:
        """``fn`` (a public function of fastnorm) applied to ``args`` (bound to
        fn's signature, defaults applied), whose array arguments are of this
        backend's type: the result in this backend's type."""
        ...


Backend = ComputeBackend | InteropBackend

#: array library (the top-level module of an array's type) -> backend module
MODULES = {
    "numpy": "fastnorm._cpu._backend",
    "cupy": "fastnorm._gpu._backend",
    "torch": "fastnorm._torch",
    "dask": "fastnorm._dask",
}
#: the interop backends among them
INTEROP = frozenset({"torch", "dask"})
_loaded: dict[str, Any] = {}


def library(a: object) -> str:
    """The array library a belongs to: the top-level module of its type
    ("numpy", "cupy", "torch", "dask", or another name for other objects)."""
    t = type(a)
    if t is np.ndarray:
        return "numpy"
    return t.__module__.partition(".")[0]


def type_name(a: object) -> str:
    """The full name of a's type, for messages ("torch.Tensor")."""
    t = type(a)
    return f"{t.__module__}.{t.__qualname__}"


def module(lib: str) -> Any:
    """The backend module of a library in MODULES, imported on first use."""
    be = _loaded.get(lib)
    if be is None:
        be = _loaded[lib] = importlib.import_module(MODULES[lib])
    return be


def for_array(x: object, name: str = "x") -> tuple[str, Any]:
    """(library, backend module) serving x: NumPy's for ndarrays and for
    array-likes of other origins (lists, objects with __array__); TypeError
    for an object of a known library that is not one of its arrays
    (torch.Size, a dtype, a Dask Bag)."""
    lib = library(x)
    if lib not in MODULES:
        lib = "numpy"
    be = module(lib)
    if lib != "numpy" and not isinstance(x, be.ARRAY_TYPE):
        raise TypeError(
            f"{name} must be an array of floats (NumPy, CuPy, torch.Tensor or Dask array), got {type_name(x)}"
        )
    return lib, be


def array_module(a: object) -> ModuleType:
    """The array module that operates on a: numpy, cupy, torch or dask.array."""
    lib = library(a)
    if lib == "cupy":
        return importlib.import_module("cupy")
    if lib == "torch":
        return importlib.import_module("torch")
    if lib == "dask":
        return importlib.import_module("dask.array")
    return np


def to_host(a: Any) -> Any:
    """A NumPy array from a torch tensor (any device; 16-bit floats widened to
    float32, as NumPy has no bfloat16) or a CuPy array; anything else as it is."""
    lib = library(a)
    if lib == "torch":
        t = a.detach().cpu()
        if t.dtype.is_floating_point and t.element_size() < 4:
            t = t.float()
        return t.numpy()
    if lib == "cupy" or hasattr(a, "__cuda_array_interface__"):
        return a.get()
    return a


def on_device(a: Any) -> Any:
    """A context in which new arrays go where a lives: a CuPy array's device
    (CuPy allocates on the current device), nothing to enter otherwise."""
    return a.device if library(a) == "cupy" else contextlib.nullcontext()
