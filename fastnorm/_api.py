"""Public functions: validate once, normalize the layout, dispatch by array type.

Each public function is written once here, on the primitives of a compute
backend (NumPy -> fastnorm._cpu, CuPy -> fastnorm._gpu; the contract is in
fastnorm._backends).  Its first line sends a torch tensor or a Dask array to
its interop backend with the function and its arguments (``_interop``); the
interop backend unwraps the arrays and calls the same public function again.
A keyword added to a public function's signature here therefore reaches every
array type without another change.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from . import _backends as B
from . import _codes as K
from . import _formulas as F
from . import _threads as T
from . import _validate as V
from ._backends import Array, ArrayLike

_ndarray = np.ndarray
# the dtypes of the fast path (float64 goes through _norm's range check);
# emptied for good where the thread policy turns the fast path off
_INF = math.inf
_FAST_CODES = {np.dtype(np.float32): V.F32, np.dtype(np.float16): V.F16}
#: the least eps whose 1 / sqrt(eps) is at most float's largest value: the
#: float16 fast path's bound (the 16-bit kernels apply in float)
_F16_MIN_EPS = 1.0 / float(np.finfo(np.float32).max) ** 2
# the activations of the fast path, by name (fastnorm._validate.ACTIVATIONS)
_FAST_ACTS = {a: V.ACTIVATIONS[a] for a in (None, "relu", "leaky_relu", "silu")}
_FAST_VECTOR_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _fast_vector(a: Any, C: int) -> Any:
    """The fast path's weight or bias: None, a contiguous float64 copy or
    view of a 1-D float32 / float64 array of length C (check_vector's
    result for such an array), or False (the general path checks it)."""
    if a is None:
        return None
    if a.ndim != 1 or a.shape[0] != C or a.dtype not in _FAST_VECTOR_DTYPES:
        return False
    return np.ascontiguousarray(a, dtype=np.float64)


# the fast path's engine, once the thread policy has allowed it (fastnorm._threads)
_engine = None
_modules = sys.modules
_MAX_THREADS = T.MAX_THREADS


def _fast_engine() -> Any:
    """The engine for instance_norm's fast path, or None where it must not
    run (fastnorm._threads.fast_path_engine decides); None turns the fast
    path off for the rest of the process."""
    global _engine, _FAST_CODES
    E = T.fast_path_engine()
    if E is None:
        _FAST_CODES = {}
        return None
    _engine = E
    return E


def _drop_fast_engine() -> None:
    """In a forked child: forget the parent's answer, ask the policy again."""
    global _engine
    _engine = None


T.at_fork_in_child(_drop_fast_engine)


class _NoTensor:
    """No value has this type: _TENSOR until the torch backend loads."""


# instance_norm's and group_norm's short path for torch tensors: once
# fastnorm._torch is imported (the first torch call) _TENSOR is torch.Tensor
# and _torch_short its short call, which takes (fn, fn's locals()) and
# returns the result, or None where the short path does not apply
_TENSOR: type = _NoTensor
_torch_short: Callable[[Callable[..., Any], dict[str, Any]], Any] = lambda fn, kw: None  # noqa: E731


def set_tensor_short_path(tensor_type: type, short: Callable[[Callable[..., Any], dict[str, Any]], Any]) -> None:
    """Called by fastnorm._torch when it loads: calls whose x is exactly of
    tensor_type (and layout None) try short(fn, kw) first."""
    global _TENSOR, _torch_short
    _TENSOR, _torch_short = tensor_type, short


def _short_or_dispatch(fn: Callable[..., Any], kw: dict[str, Any]) -> Any:
    """The tensor short path's result, or _dispatch's where it does not apply."""
    r = _torch_short(fn, kw)
    return r if r is not None else _dispatch(fn, kw)


#: the public functions' signatures, read once (inspect.signature costs microseconds a call)
_SIGNATURES: dict[Callable[..., Any], inspect.Signature] = {}


def _dispatch(fn: Callable[..., Any], args: dict[str, Any]) -> Any:
    """fn (a public function) called with ``layout=`` or with an array of an
    interop library (torch, Dask).  Each public function starts with::

        if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
            return _dispatch(fn, locals())

    where ``locals()`` holds exactly its arguments, so a keyword added to the
    signature reaches the layout mapping and the interop backends with no
    other change (and a plain NumPy call pays two comparisons).  A layout is
    mapped to channel_axis on views with unit axes inserted (never a copy),
    then fn runs again on them; the results get the layout's shapes back."""
    sig = _SIGNATURES.get(fn)
    if sig is None:
        sig = _SIGNATURES[fn] = inspect.signature(fn)
    first = next(iter(sig.parameters))
    if args["layout"] is not None:
        return _with_layout(fn, first, args)
    x = args[first]
    # before a tensor's memory format picks an axis; adain's style is an image too
    for name in (first, "style"):
        a: Any = args.get(name)
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            V.check_unambiguous(tuple(a.shape), a.dtype, args.get("channel_axis"), name)
    _, be = B.for_array(x, first)
    # args is the function's own locals(): exactly its parameters, in order,
    # already bound by the call (sig.bind would check them again, slowly)
    return be.call(fn, inspect.BoundArguments(sig, dict(args)))


def _reshaped(a: Any, shape: tuple[int, ...]) -> Any:
    """a.reshape(shape); an ndarray subclass that keeps its own rank
    (np.matrix stays 2-d) goes over as the ndarray of its memory."""
    r = a.reshape(shape)
    if isinstance(a, np.ndarray) and type(a) is not np.ndarray and r.shape != tuple(shape):
        r = np.asarray(a).reshape(shape)
    return r


def _with_layout(fn: Callable[..., Any], first: str, args: dict[str, Any]) -> Any:
    x = args[first]
    layout = args["layout"]
    if args["channel_axis"] is not None:
        raise ValueError(
            f"pass layout or channel_axis, not both: got layout={layout!r} and channel_axis={args['channel_axis']!r}"
        )
    if not hasattr(x, "shape"):
        x = V.as_numpy(x, first)
    if any(isinstance(s, float) and s != s for s in x.shape):  # a Dask array after boolean indexing
        raise ValueError(
            f"{first} has unknown chunk sizes (shape {tuple(x.shape)}); call {first}.compute_chunk_sizes() first"
        )
    L = V.check_layout(layout, tuple(x.shape), first)
    new = dict(args, layout=None, channel_axis=-1 if L.cl else 1)
    new[first] = _reshaped(x, L.canonical(x.shape))
    for name in ("style", "x"):  # arrays in the same layout (adain's style, the backward's x)
        a = args.get(name) if name != first else None
        if a is not None:
            if not hasattr(a, "shape"):
                a = V.as_numpy(a, name)
            new[name] = _reshaped(a, V.check_layout(layout, tuple(a.shape), name).canonical(a.shape))
    out = args.get("out")
    if out is not None and hasattr(out, "shape"):
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(
                f"out must have shape {V._shape_str(x.shape)} (the shape of {first}), "
                f"got shape {V._shape_str(out.shape)}"
            )
        new["out"] = _reshaped(out, L.canonical(out.shape))
    for name in ("mean", "var"):
        if name in args:
            new[name] = L.stats_in(args[name], name, int(x.shape[0]) if L.has_n else None)
    r = fn(**new)
    if out is not None:
        return out
    if isinstance(r, tuple):  # statistics (N, C), or the backward's (grad_x, grad_weight, grad_bias)
        canon = tuple(new[first].shape)
        return tuple(
            a.reshape(x.shape) if tuple(a.shape) == canon else L.stats_out(a, x.shape) if a.ndim == 2 else a for a in r
        )
    if isinstance(r, Moments):
        return Moments(*(L.stats_out(a, x.shape) for a in (r.count, r.mean, r.m2)))
    return r.reshape(x.shape)


def _same_kind(a: Any, a_name: str, b: Any, b_name: str) -> None:
    """TypeError naming both arguments where two arrays that must be of one
    library are not (a NumPy array with a torch tensor, a CuPy array with a
    NumPy array); array-likes (lists) count as NumPy."""
    la, lb = B.for_array(a, a_name)[0], B.for_array(b, b_name)[0]
    if la != lb:
        raise TypeError(
            f"{a_name} and {b_name} must be the same kind of array, got {a_name} "
            f"{B.type_name(a)} and {b_name} {B.type_name(b)}"
        )


def _prep(x: Any, name: str = "x") -> tuple[Any, Any]:
    """(compute backend, x as its array in native byte order)."""
    _, be = B.for_array(x, name)
    x = V.as_array(x, be.xp, name)
    if not x.dtype.isnative and x.dtype.kind in "fiu":
        # big-endian data ('>f4', '>i2'): converted once to native byte order
        x = x.astype(x.dtype.newbyteorder("="))
    return be, x


def _out(be: Any, out: Any, x: Any, odtype: Any, dtype: Any) -> Any:
    """out checked by the backend: x's shape, the output dtype (odtype, from
    dtype=), C-contiguous and writeable."""
    if out is None:
        return None
    if odtype != x.dtype and getattr(out, "dtype", odtype) != odtype:
        raise TypeError(f"out must have dtype {odtype} (the output dtype, dtype={dtype!r}), got dtype {out.dtype}")
    return V.check_out(out, x.shape, odtype, "out", be.ARRAY_TYPE, be.ARRAY_NAME)


def _unshared(a: Any, out: Any, xp: ModuleType = np) -> Any:
    """a, or a copy of it where it may share memory with out: the kernels read
    the coefficients while (other threads) write out."""
    if a is None or out is None or not xp.may_share_memory(a, out):
        return a
    return a.copy()


def _fast_norm(
    x: Any,
    G: int,
    weight: Any,
    bias: Any,
    eps: Any,
    channel_axis: Any,
    activation: Any,
    negative_slope: Any,
    dtype: Any,
    out: Any,
    num_threads: Any,
) -> Any:
    """The fast path of instance_norm with weight / bias or an activation
    (G = 0; the bare call has its own inline check) and of group_norm (G
    groups) on a plain ndarray: the general path's checks in a cheaper form,
    or None (the general path then checks everything and computes, or says
    why not).  The engine takes a call only when x is C-contiguous, at least
    3-d and not empty and out is a plain fit.  float32 data only (float32
    coefficients cannot leave range, so the engine cannot fail after it
    started writing out; float16 takes the general path's range check);
    weight / bias float32 or float64 arrays of length C.  An explicit
    num_threads holds inside a Dask task too (fastnorm._threads.team);
    without one a Dask task takes the general path (one thread)."""
    if not (
        (weight is None or type(weight) is _ndarray)
        and (bias is None or type(bias) is _ndarray)
        and (activation is None or (type(activation) is str and activation in _FAST_ACTS))
        and type(negative_slope) is float  # checked even when no activation reads it
        and -_INF < negative_slope < _INF
        and dtype is None
        and (channel_axis is None or (type(channel_axis) is int and channel_axis == 1))
        and type(eps) is float
        and 0.0 <= eps < _INF
        and (num_threads is None or (type(num_threads) is int and num_threads > 0))
        and (out is None or type(out) is _ndarray)
    ):
        return None
    code = _FAST_CODES.get(x.dtype)
    if code != V.F32 or (num_threads is None and "dask" in _modules and T.in_dask_task()):
        return None
    E = _engine or _fast_engine()
    if E is None:
        return None
    nt = 0 if num_threads is None else min(num_threads, _MAX_THREADS)  # as in instance_norm's fast path
    if x.ndim < 3:
        return None
    C = x.shape[1]
    if G != 0 and (G > C or C % G != 0):
        return None
    w = _fast_vector(weight, C)
    b = _fast_vector(bias, C)
    if w is False or b is False:
        return None
    # a weight or bias in out's memory would be overwritten while the engine
    # reads it: the general path reads copies (_unshared)
    if out is not None and any(v is not None and np.may_share_memory(v, out) for v in (w, b)):
        return None
    act = _FAST_ACTS[activation]
    return E.fast_norm_cf(x, code, eps, out=out, nt=nt, weight=w, bias=b, act=act, slope=negative_slope, groups=G)


def instance_norm(
    x: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    activation: str | None = None,
    negative_slope: float = 0.01,
    dtype: Any = None,
    out: Array | None = None,
    num_threads: int | None = None,
) -> Array:
    """Instance normalization over the spatial axes of every (instance, channel).

    ``y = act((x - mean) / sqrt(var + eps) * weight[c] + bias[c])`` with the mean and
    the biased variance of each plane ``x[n, c, ...]`` (channels first) or
    ``x[n, ..., c]`` (channels last).

    Parameters
    ----------
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input: float16, float32, float64, ``ml_dtypes.bfloat16``, or an
        integer dtype (uint8, int8, uint16, int16, uint32, int32, uint64, int64),
        read directly by the kernels without a converted copy; at least one
        spatial axis.  An integer array of 2 or 3 dimensions needs ``layout`` or
        ``channel_axis`` (an (H, W, 3) photo is not a batch of H instances).
        Any strides are accepted; a non-C-contiguous input is copied once into
        a contiguous buffer, and big-endian data (``'>f4'``) is converted once
        to native byte order (so is an integer one, ``'>i2'``).  NumPy arrays run on the CPU engine, CuPy arrays
        on the GPU, torch tensors and Dask arrays through their interop layers.
    weight, bias : array_like of shape (C,), optional
        Per-channel affine, any real dtype (cast once to float64); None means
        ones and zeros.
    eps : float, default 1e-5
        Added to the variance; finite and >= 0.  With ``eps=0`` a constant plane
        gives NaN (0 / 0), as the formula says.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first (NCL, NCHW, NCDHW); -1 (or
        ``x.ndim - 1``) for channels last (NLC, NHWC, NDHWC), computed natively
        without a transpose.
    layout : str, optional
        The axes of ``x`` by letter, instead of ``channel_axis``: ``x.ndim``
        distinct letters, ``N`` (batch) optional and first, ``C`` (channels)
        optional, right after ``N`` (or first) or last, every other letter a
        spatial axis (``D``, ``H``, ``W``, ``L``), at least one: ``"NCHW"``,
        ``"NHWC"``, ``"CHW"``, ``"HWC"``, ``"HW"``, ``"NHW"``, ``"DHW"``...
        Without ``N`` the input is one instance; without ``C``, one channel.
    activation : {None, "relu", "leaky_relu", "silu"}, optional
        Applied in the same pass over memory.
    negative_slope : float, default 0.01
        Slope of "leaky_relu" for negative inputs.
    dtype : dtype, optional
        The output dtype: float16, float32, float64 or ``ml_dtypes.bfloat16``
        (a torch dtype for tensors).  None: x's dtype for floating inputs,
        float32 for integer inputs.
        x is read as that type's kernels load it: for float32 and 16-bit outputs
        as ``x.astype(float32)`` (so float64 data into float32 are the call on
        their float32 copy: a spread below float32's resolution normalizes to
        0), for float64 outputs exactly.  For float64 statistics of float64
        data, normalize in float64 and convert the result.
    out : ndarray, optional
        Where to write the result: x's shape, the output dtype, C-contiguous and
        writeable; may be ``x`` itself (in place).  Returned.
    num_threads : int, optional
        OpenMP threads; None uses the OpenMP default (``OMP_NUM_THREADS``,
        threadpoolctl limits).  Either is capped at max(64, 4 x the CPU count).
        None means one thread inside a task run by Dask's threaded scheduler
        or a distributed worker (Dask already runs a task per core), and every
        call in a child process created by fork() runs on one thread (OpenMP's
        pool does not survive fork).  Results are bit-identical for every value.

    Returns
    -------
    ndarray
        The normalized array, of x's shape (and type: a CuPy array, a torch
        tensor on x's device, a lazy Dask array), C-contiguous (a channels_last
        tensor stays channels_last).  Its dtype is ``dtype``, by default x's for
        floating inputs (native byte order) and float32 for integer inputs.
        ``out`` when given.

    Raises
    ------
    TypeError
        ``x`` is not an array of a supported dtype (bool, complex, object), or
        an argument has the wrong type (``eps`` not a real number,
        ``channel_axis`` not an int, ``dtype`` not a floating dtype, ``out`` not
        an array of the output dtype); the message names the argument and the
        value received.
    ValueError
        ``x`` has fewer than 3 dimensions, is an integer array of 2 or 3
        dimensions without ``layout`` or ``channel_axis``, or does not fit
        ``layout``; both ``layout`` and ``channel_axis`` are given;
        ``channel_axis`` is not 1 or -1; ``eps`` is negative or not finite;
        ``weight`` or ``bias`` does not have length C; ``activation`` is
        unknown; ``num_threads`` < 1; ``out`` has the wrong shape, is not
        C-contiguous or is read-only.

    See Also
    --------
    group_norm : Statistics over groups of channels.
    instance_stats : The mean and variance alone.
    normalize : Apply given statistics.

    Notes
    -----
    Statistics are Welford triples per block of 16384 elements, merged with Chan's
    formula in double precision; float16 and bfloat16 are computed in float32 and
    rounded once.  The mean is applied as a float32 high part plus a low
    correction, so inputs whose mean is 1e6 times their standard deviation keep
    full float32 accuracy.  Integer inputs give bit for bit the result of
    normalizing ``x.astype(np.float32)``.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    >>> y = fastnorm.instance_norm(x)
    >>> bool(np.allclose(y.mean(axis=(2, 3)), 0, atol=1e-6))
    True
    >>> y.shape, y.dtype
    ((1, 2, 3, 4), dtype('float32'))
    >>> photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    >>> fastnorm.instance_norm(photo, layout="HWC").dtype  # integer input: float32
    dtype('float32')
    >>> fastnorm.instance_norm(photo, layout="HWC", dtype=np.float16).dtype
    dtype('float16')
    """
    if type(x) is _TENSOR and layout is None:
        return _short_or_dispatch(instance_norm, locals())
    if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
        return _dispatch(instance_norm, locals())
    # fast path: the common call on a plain ndarray, with or without out= and
    # num_threads= (same checks, cheaper form; the engine takes it only when x
    # is C-contiguous, at least 3-d and not empty and out is a plain fit, else
    # it answers None)
    if (
        type(x) is _ndarray
        and weight is None
        and bias is None
        and activation is None
        and type(negative_slope) is float  # checked even when no activation reads it
        and -_INF < negative_slope < _INF
        and dtype is None
        and (channel_axis is None or (type(channel_axis) is int and channel_axis == 1))
        and type(eps) is float
        and 0.0 <= eps < _INF
        and (num_threads is None or (type(num_threads) is int and num_threads > 0))
        and (out is None or type(out) is _ndarray)
    ):
        code = _FAST_CODES.get(x.dtype)
        # out=: float32 only (its coefficients cannot leave range, so the
        # engine cannot fail after it started writing out); float16 only
        # where 1 / sqrt(eps), the largest scale, is a float (the general
        # path's range check, _norm_checked); an explicit num_threads holds
        # inside a Dask task too (fastnorm._threads.team)
        if (
            code is not None
            and (code == V.F32 or (out is None and eps >= _F16_MIN_EPS))
            and (num_threads is not None or "dask" not in _modules or not T.in_dask_task())
        ):
            E = _engine or _fast_engine()
            if E is not None:
                # an engine here means no serial build and no forked child:
                # team(num_threads) is then num_threads capped at MAX_THREADS
                nt = 0 if num_threads is None else min(num_threads, _MAX_THREADS)
                y = E.fast_norm_cf(x, code, eps, out=out, nt=nt)
                if y is not None:
                    return y
    if type(x) is _ndarray and not (weight is None and bias is None and activation is None):
        # weight, bias, an activation: the fast path's general form
        y = _fast_norm(x, 0, weight, bias, eps, channel_axis, activation, negative_slope, dtype, out, num_threads)
        if y is not None:
            return y
    return _norm(x, V.PER_CHANNEL, weight, bias, eps, channel_axis, activation, negative_slope, dtype, out, num_threads)


def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    activation: str | None = None,
    negative_slope: float = 0.01,
    dtype: Any = None,
    out: Array | None = None,
    num_threads: int | None = None,
) -> Array:
    """Group normalization (``torch.nn.functional.group_norm`` semantics).

    Statistics per (instance, group of ``C // num_groups`` consecutive channels)
    over the group's channels and all spatial axes; per-channel affine.
    ``num_groups == C`` is instance norm; ``num_groups == 1`` normalizes each
    instance over (C, *spatial).

    Parameters
    ----------
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input, of the dtypes :func:`instance_norm` takes (floating or
        integer); (N, C) is accepted too, a spatial size of one, as in torch.
        An integer array of 2 or 3 dimensions needs ``layout`` or
        ``channel_axis``.
    num_groups : int
        Number of groups, >= 1, dividing C.
    weight, bias : array_like of shape (C,), optional
        Per-channel affine, any real dtype (cast once to float64); None means
        ones and zeros.
    eps : float, default 1e-5
        Added to the variance; finite and >= 0.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first; -1 (or ``x.ndim - 1``) for
        channels last, computed natively without a transpose.
    layout : str, optional
        The axes of ``x`` by letter (``"NCHW"``, ``"HWC"``...), instead of
        ``channel_axis``, as in :func:`instance_norm`.
    activation : {None, "relu", "leaky_relu", "silu"}, optional
        Applied in the same pass over memory.
    negative_slope : float, default 0.01
        Slope of "leaky_relu" for negative inputs.
    dtype : dtype, optional
        The output dtype: float16, float32, float64 or ``ml_dtypes.bfloat16``.
        None: x's dtype for floating inputs, float32 for integer inputs.
        x is read as that type's kernels load it, as in :func:`instance_norm`
        (``x.astype(float32)`` for float32 and 16-bit outputs).
    out : ndarray, optional
        Where to write the result: x's shape, the output dtype, C-contiguous and
        writeable; may be ``x`` itself.  Returned.
    num_threads : int, optional
        OpenMP threads, as in :func:`instance_norm`; results are bit-identical
        for every value.

    Returns
    -------
    ndarray
        The normalized array, of x's shape and array type, C-contiguous; its
        dtype is ``dtype``, by default x's for floating inputs and float32 for
        integer inputs.  ``out`` when given.

    Raises
    ------
    TypeError
        ``x`` has an unsupported dtype, ``num_groups`` is not an int, or another
        argument has the wrong type (as in :func:`instance_norm`).
    ValueError
        ``x`` has fewer than 2 dimensions, is an integer array of 2 or 3
        dimensions without ``layout`` or ``channel_axis``, or does not fit
        ``layout``; ``num_groups`` is < 1 or does not divide C; any other value
        :func:`instance_norm` refuses.

    See Also
    --------
    instance_norm : One group per channel.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.random.default_rng(0).standard_normal((2, 6, 4, 4)).astype(np.float32)
    >>> y = fastnorm.group_norm(x, 3)
    >>> y.shape, y.dtype
    ((2, 6, 4, 4), dtype('float32'))
    >>> g = y.reshape(2, 3, -1)
    >>> bool(np.allclose(g.mean(-1), 0, atol=1e-5) and np.allclose(g.std(-1), 1, atol=1e-3))
    True
    """
    if type(x) is _TENSOR and layout is None:
        return _short_or_dispatch(group_norm, locals())
    if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
        return _dispatch(group_norm, locals())
    if type(x) is _ndarray and type(num_groups) is int and num_groups > 0:  # the fast path (_fast_norm), else None
        y = _fast_norm(
            x, num_groups, weight, bias, eps, channel_axis, activation, negative_slope, dtype, out, num_threads
        )
        if y is not None:
            return y
    return _norm(x, num_groups, weight, bias, eps, channel_axis, activation, negative_slope, dtype, out, num_threads)


def _norm(
    x: ArrayLike,
    num_groups: Any,
    weight: Any,
    bias: Any,
    eps: Any,
    channel_axis: Any,
    activation: Any,
    negative_slope: Any,
    dtype: Any,
    out: Any,
    num_threads: Any,
) -> Array:
    """Validate once (in the order of the signature) and run the backend's norm;
    num_groups is V.PER_CHANNEL for instance norm."""
    be, x = _prep(x)
    a = V.validate_norm(x, num_groups, weight, bias, eps, channel_axis, activation, negative_slope, num_threads, dtype)
    out = _out(be, out, x, a.odtype, dtype)
    w, b = a.weight, a.bias
    if isinstance(out, np.ndarray):  # weight and bias are host arrays (copied to a GPU)
        w, b = _unshared(w, out), _unshared(b, out)
    return be.norm(x, a.code, a.cl, a.G, w, b, a.eps, a.act, a.slope, out, a.nt, a.ocode)


def _moments(x: ArrayLike, channel_axis: Any, num_threads: Any) -> tuple[Any, ...]:
    """(code, count, mean, m2, var) of x's planes, float64 (N, C) arrays."""
    be, x = _prep(x)
    V.check_unambiguous(x.shape, x.dtype, channel_axis)
    code = V.check_x(x.shape, x.dtype)
    cl = V.channels_last(channel_axis, x.ndim)
    nt = V.check_threads(num_threads)
    return (code,) + tuple(be.moments(x, code, cl, nt))


def instance_stats(
    x: ArrayLike, *, channel_axis: int | None = None, layout: str | None = None, num_threads: int | None = None
) -> tuple[Array, Array]:
    """Mean and biased variance of every (instance, channel) plane.

    Parameters
    ----------
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input, of the dtypes :func:`instance_norm` takes (floating or
        integer), at least 3 dimensions (fewer with ``layout``).  An integer
        array of 2 or 3 dimensions needs ``layout`` or ``channel_axis``.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first; -1 (or ``x.ndim - 1``) for
        channels last.
    layout : str, optional
        The axes of ``x`` by letter, instead of ``channel_axis``, as in
        :func:`instance_norm`; the statistics then follow it.
    num_threads : int, optional
        OpenMP threads, as in :func:`instance_norm`.

    Returns
    -------
    mean : ndarray
        The mean of each plane, of shape (N, C); with ``layout``, the
        layout's: (C,) without ``N``, (N,) without ``C``, () without either.
        float64 for float64 and integer inputs, float32 for float32, float16
        and bfloat16 inputs (computed in double either way).  Of x's array
        type (torch tensors on x's device, lazy Dask arrays).  Planes with no
        elements give NaN.
    var : ndarray
        The biased variance of each plane: the shape, dtype and array type of
        ``mean``.

    Raises
    ------
    TypeError
        ``x`` has an unsupported dtype or ``channel_axis`` / ``num_threads`` the
        wrong type.
    ValueError
        ``x`` has fewer than 3 dimensions, is an integer array of 2 or 3
        dimensions without ``layout`` or ``channel_axis``, or does not fit
        ``layout``; ``channel_axis`` is not 1 or -1; ``num_threads`` < 1.

    See Also
    --------
    instance_moments : Mergeable statistics, for data taken tile by tile.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.arange(8, dtype=np.float64).reshape(1, 2, 4)
    >>> mean, var = fastnorm.instance_stats(x)
    >>> mean.tolist(), var.tolist()
    ([[1.5, 5.5]], [[1.25, 1.25]])
    >>> photo = np.zeros((4, 4, 3), np.uint8)
    >>> mean, var = fastnorm.instance_stats(photo, layout="HWC")
    >>> mean.shape, mean.dtype
    ((3,), dtype('float64'))
    """
    if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
        return _dispatch(instance_stats, locals())
    code, count, mean, _, var = _moments(x, channel_axis, num_threads)
    rdt = np.float64 if code == V.F64 or V.is_integer(code) else np.float32
    with B.on_device(mean):
        return F.mean_var(B.array_module(mean), count, mean, var, rdt)


class Moments:
    """Welford triple per (instance, channel): ``count``, ``mean``, ``m2``.

    Moments of disjoint pieces of the same planes combine with :meth:`merge`
    (Chan et al.) into those of the whole array up to double-precision rounding,
    not bit for bit (the sums are grouped differently): the mean within
    2e-15 * (|mean| + std), ``m2`` within a relative 1e-13 + 3e-16 * |mean| / std
    (about 1e-10 at a mean of 10**6 standard deviations).  ``count`` is exact.
    :func:`instance_moments` makes them.

    Parameters
    ----------
    count : ndarray
        Elements per plane, float64, of ``mean``'s shape or broadcasting to it
        (a scalar works too).
    mean : ndarray
        Mean per plane, float64, shape (N, C) (or a layout's shape).
    m2 : ndarray
        Sum of squared deviations from the mean per plane, float64, of
        ``mean``'s shape.

    Attributes
    ----------
    count, mean, m2 : ndarray
        As given.
    var : ndarray
        The biased variance ``m2 / count``.
    shape : tuple of int
        The shape of ``mean``.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.random.default_rng(1).standard_normal((1, 3, 64, 64))
    >>> top, bottom = x[:, :, :40], x[:, :, 40:]
    >>> m = fastnorm.instance_moments(top).merge(fastnorm.instance_moments(bottom))
    >>> bool(np.allclose(m.var, x.var(axis=(2, 3))))
    True
    """

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count: Array, mean: Array, m2: Array) -> None:
        self.count = count
        self.mean = mean
        self.m2 = m2

    @property
    def var(self) -> Array:
        """Biased variance, ``m2 / count``: float64, of ``mean``'s shape.

        Planes with no elements give NaN.

        Examples
        --------
        >>> import numpy as np, fastnorm
        >>> fastnorm.instance_moments(np.arange(4.0).reshape(1, 1, 4)).var
        array([[1.25]])
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.m2 / self.count

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``mean`` (and of ``var``): (N, C), or a layout's shape.

        Examples
        --------
        >>> import numpy as np, fastnorm
        >>> fastnorm.instance_moments(np.ones((2, 3, 4))).shape
        (2, 3)
        """
        return tuple(self.mean.shape)

    def merge(self, other: Moments) -> Moments:
        """Merge with the moments of another piece of the same planes.

        The same as :func:`merge_moments` ``(self, other)``.

        Parameters
        ----------
        other : Moments
            Moments of a disjoint piece of the same planes, of the same shape.

        Returns
        -------
        Moments
            Those of the union (float64 ``count``, ``mean``, ``m2``), up to
            double-precision rounding.

        Raises
        ------
        TypeError
            ``other`` is not a Moments.
        ValueError
            The shapes differ.

        Examples
        --------
        >>> import numpy as np, fastnorm
        >>> x = np.arange(10.0).reshape(1, 1, 10)
        >>> m = fastnorm.instance_moments(x[..., :3]).merge(fastnorm.instance_moments(x[..., 3:]))
        >>> float(m.mean[0, 0]), float(m.var[0, 0])
        (4.5, 8.25)
        """
        return merge_moments(self, other)

    def __repr__(self) -> str:
        return f"Moments(shape={self.shape}, count={self.count!r})"


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Merge two :class:`Moments` of disjoint samples of the same planes.

    Equal to the moments of the union up to rounding (see :class:`Moments`).

    Parameters
    ----------
    a, b : Moments
        Moments of the same shape, of disjoint pieces of the same planes (for
        example two tiles of one image).

    Returns
    -------
    Moments
        Those of the union: float64 ``count``, ``mean`` and ``m2`` of the
        common shape (Chan's pairwise formula).

    Raises
    ------
    TypeError
        ``a`` or ``b`` is not a Moments.
    ValueError
        Their shapes differ.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.arange(12.0).reshape(1, 1, 12)
    >>> m = fastnorm.merge_moments(fastnorm.instance_moments(x[..., :5]),
    ...                            fastnorm.instance_moments(x[..., 5:]))
    >>> float(m.mean[0, 0]), float(m.var[0, 0])
    (5.5, 11.916666666666666)
    """
    if not isinstance(a, Moments) or not isinstance(b, Moments):
        raise TypeError(f"merge_moments takes two Moments, got {type(a).__name__} and {type(b).__name__}")
    if tuple(a.mean.shape) != tuple(b.mean.shape):
        raise ValueError(f"cannot merge Moments of shapes {tuple(a.mean.shape)} and {tuple(b.mean.shape)}")
    la, lb = B.library(a.mean), B.library(b.mean)
    if la != lb and {la, lb} != {"numpy", "dask"}:  # Dask takes NumPy operands, nothing else mixes
        raise TypeError(f"merge_moments takes Moments of one array type, got {la} (a) and {lb} (b)")
    xp = B.array_module(a.mean)
    n, mean, m2 = F.chan_merge(a.count, a.mean, a.m2, b.count, b.mean, b.m2, xp)
    # the count broadcast to the mean's shape (0 * mean would be NaN where a mean is inf or NaN)
    return Moments(n + xp.zeros_like(mean), mean, m2)


def instance_moments(
    x: ArrayLike, *, channel_axis: int | None = None, layout: str | None = None, num_threads: int | None = None
) -> Moments:
    """Welford triples (count, mean, M2) of every (instance, channel) plane.

    Use with :meth:`Moments.merge` to compute statistics of data too large to
    hold at once, tile by tile, then :func:`normalize` each tile.

    Parameters
    ----------
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input, of the dtypes :func:`instance_norm` takes (floating or
        integer).  An integer array of 2 or 3 dimensions needs ``layout`` or
        ``channel_axis``.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first; -1 (or ``x.ndim - 1``) for
        channels last.
    layout : str, optional
        The axes of ``x`` by letter, instead of ``channel_axis``, as in
        :func:`instance_norm`; the moments then have the layout's shape.
    num_threads : int, optional
        OpenMP threads, as in :func:`instance_norm`.

    Returns
    -------
    Moments
        ``count``, ``mean`` and ``m2``: float64 arrays of shape (N, C) (with
        ``layout``, the layout's shape, as :func:`instance_stats`), of x's
        array type.

    Raises
    ------
    TypeError
        ``x`` has an unsupported dtype or an argument the wrong type.
    ValueError
        As :func:`instance_stats`.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> m = fastnorm.instance_moments(np.ones((2, 3, 5, 5), np.float32))
    >>> m.count[0, 0], m.mean[0, 0], m.m2[0, 0]
    (np.float64(25.0), np.float64(1.0), np.float64(0.0))
    >>> m.mean.shape, m.mean.dtype
    ((2, 3), dtype('float64'))
    """
    if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
        return _dispatch(instance_moments, locals())
    _, count, mean, m2, _ = _moments(x, channel_axis, num_threads)
    return Moments(count, mean, m2)


def _apply_prep(x: ArrayLike, channel_axis: Any) -> tuple[Any, Array, int, bool, int, int]:
    """(backend, x, dtype code, channels last, N, C) of an apply's input."""
    be, x = _prep(x)
    V.check_unambiguous(x.shape, x.dtype, channel_axis)
    code = V.check_x(x.shape, x.dtype)
    cl = V.channels_last(channel_axis, x.ndim)
    N, C, _ = V.layout(x.shape, cl)
    return be, x, code, cl, N, C


def normalize(
    x: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    activation: str | None = None,
    negative_slope: float = 0.01,
    dtype: Any = None,
    out: Array | None = None,
    num_threads: int | None = None,
) -> Array:
    """Normalize with given statistics: ``act((x - mean) / sqrt(var + eps) * weight + bias)``.

    With :func:`instance_moments` this normalizes an image too large for memory
    tile by tile with the result of one :func:`instance_norm` call, to rounding
    (the merged statistics are not bit for bit those of the whole image).

    Parameters
    ----------
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input, of the dtypes :func:`instance_norm` takes (floating or
        integer).  An integer array of 2 or 3 dimensions needs ``layout`` or
        ``channel_axis``.
    mean, var : array_like
        The statistics, any real dtype: shape (N, C), or (C,) to broadcast over
        the batch (running statistics); with ``layout``, also the layout's shape
        of :func:`instance_stats` ((N,) without ``C``, () without either).
        ``var`` must be >= 0 and finite (NaN passes, as in the formula).
    weight, bias : array_like of shape (C,), optional
        Per-channel affine, any real dtype; None means ones and zeros.
    eps : float, default 1e-5
        Added to the variance; finite and >= 0.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first; -1 (or ``x.ndim - 1``) for
        channels last.
    layout : str, optional
        The axes of ``x`` by letter, instead of ``channel_axis``, as in
        :func:`instance_norm`.
    activation : {None, "relu", "leaky_relu", "silu"}, optional
        Applied in the same pass over memory.
    negative_slope : float, default 0.01
        Slope of "leaky_relu" for negative inputs.
    dtype : dtype, optional
        The output dtype: float16, float32, float64 or ``ml_dtypes.bfloat16``.
        None: x's dtype for floating inputs, float32 for integer inputs.
        x is read as that type's kernels load it, as in :func:`instance_norm`
        (``x.astype(float32)`` for float32 and 16-bit outputs).
    out : ndarray, optional
        Where to write the result: x's shape, the output dtype, C-contiguous and
        writeable; may be ``x`` itself.  Returned.
    num_threads : int, optional
        OpenMP threads, as in :func:`instance_norm`.

    Returns
    -------
    ndarray
        The normalized array, of x's shape and array type, C-contiguous; its
        dtype is ``dtype``, by default x's for floating inputs and float32 for
        integer inputs.  ``out`` when given.

    Raises
    ------
    TypeError
        ``x``, ``mean`` or ``var`` is not an array of real numbers, or another
        argument has the wrong type (as in :func:`instance_norm`).
    ValueError
        ``mean`` or ``var`` has neither shape (N, C) nor (C,); ``var`` is
        negative or infinite somewhere; any value :func:`instance_norm` refuses.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> x = np.random.default_rng(2).standard_normal((1, 2, 100, 10)).astype(np.float32)
    >>> m = fastnorm.instance_moments(x[:, :, :50]).merge(fastnorm.instance_moments(x[:, :, 50:]))
    >>> tiles = [fastnorm.normalize(x[:, :, i:i + 50], m.mean, m.var) for i in (0, 50)]
    >>> bool(np.allclose(np.concatenate(tiles, axis=2), fastnorm.instance_norm(x), atol=1e-6))
    True
    >>> tiles[0].dtype
    dtype('float32')
    """
    if layout is not None or (type(x) is not _ndarray and B.library(x) in B.INTEROP):
        return _dispatch(normalize, locals())
    be, x, code, cl, N, C = _apply_prep(x, channel_axis)
    xp = be.xp
    m = V.per_channel(mean, "mean", N, C, xp)
    v = V.check_var(V.per_channel(var, "var", N, C, xp))
    eps = V.check_eps(eps)
    act, slope = V.check_activation(activation, negative_slope)
    nt = V.check_threads(num_threads)
    w = V.check_vector(weight, "weight", C)
    b = V.check_vector(bias, "bias", C)
    odtype, ocode = V.out_dtype(dtype, x.dtype, code)
    out = _out(be, out, x, odtype, dtype)
    scale, shift = F.affine_coefs(xp, v, eps, w, b, (N, C))
    coefs = (m, xp.ascontiguousarray(scale), xp.ascontiguousarray(shift, dtype=xp.float64))
    mean_, scale, shift = (_unshared(a, out, xp) for a in coefs)
    return be.apply(x, code, cl, mean_, scale, shift, act, slope, out, nt, ocode)


def adain(
    content: ArrayLike,
    style: ArrayLike,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    alpha: float = 1.0,
    dtype: Any = None,
    num_threads: int | None = None,
) -> Array:
    """Adaptive instance normalization (Huang and Belongie, 2017).

    ``content`` normalized per (instance, channel), then scaled by the style's
    ``sqrt(var + eps)`` and shifted by the style's mean (biased variances);
    ``alpha`` blends ``alpha * adain + (1 - alpha) * content`` in the same
    single pass.

    Parameters
    ----------
    content : array_like, shape (N, C, *spatial) or (N, *spatial, C), or as ``layout`` says
        The input, of the dtypes :func:`instance_norm` takes (floating or
        integer).  An integer array of 2 or 3 dimensions needs ``layout`` or
        ``channel_axis``.
    style : array_like
        The same kind of array as ``content``, in the same layout, with the same
        channel count, a batch of N or 1 (broadcast) and any spatial size.
    eps : float, default 1e-5
        Added to both variances; finite and >= 0.
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first; -1 (or ``ndim - 1``) for
        channels last; applies to both arrays.
    layout : str, optional
        The axes of both arrays by letter, instead of ``channel_axis``, as in
        :func:`instance_norm`.
    alpha : float, default 1.0
        The style's weight, in [0, 1]; 0 returns the content (in the output
        dtype).
    dtype : dtype, optional
        The output dtype: float16, float32, float64 or ``ml_dtypes.bfloat16``.
        None: content's dtype for floating inputs, float32 for integer inputs.
        content and style are read as that type's kernels load them (see
        :func:`instance_norm`'s ``dtype``).
    num_threads : int, optional
        OpenMP threads, as in :func:`instance_norm`.

    Returns
    -------
    ndarray
        Of content's shape and array type, C-contiguous; its dtype is ``dtype``,
        by default content's for floating inputs and float32 for integer inputs.

    Raises
    ------
    TypeError
        ``content`` or ``style`` has an unsupported dtype, ``style`` is not the
        same kind of array as ``content``, or another argument has the wrong
        type.
    ValueError
        ``style`` has another layout, channel count or batch (other than 1 and
        N); ``alpha`` is outside [0, 1]; ``content`` is an integer array of 2 or
        3 dimensions without ``layout`` or ``channel_axis``; any value
        :func:`instance_norm` refuses.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> rng = np.random.default_rng(3)
    >>> content = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    >>> style = (5 + 2 * rng.standard_normal((1, 3, 16, 16))).astype(np.float32)
    >>> y = fastnorm.adain(content, style)
    >>> y.shape, y.dtype
    ((2, 3, 32, 32), dtype('float32'))
    >>> smean, svar = fastnorm.instance_stats(style)
    >>> ymean, yvar = fastnorm.instance_stats(y)
    >>> bool(np.allclose(ymean, smean, atol=1e-4) and np.allclose(yvar, svar + 1e-5, rtol=1e-3))
    True
    """
    if layout is not None or (type(content) is not _ndarray and B.library(content) in B.INTEROP):
        return _dispatch(adain, locals())
    _same_kind(content, "content", style, "style")
    be, x = _prep(content, "content")
    V.check_unambiguous(x.shape, x.dtype, channel_axis, "content")
    code = V.check_x(x.shape, x.dtype, "content")
    cl = V.channels_last(channel_axis, x.ndim)
    N, C, _ = V.layout(x.shape, cl)
    sbe, s = _prep(style, "style")
    if sbe is not be:
        raise TypeError(
            f"style must be the same kind of array as content ({type(x).__name__}), got {type(style).__name__}"
        )
    V.check_unambiguous(s.shape, s.dtype, channel_axis, "style")
    scode = V.check_x(s.shape, s.dtype, "style")
    try:
        scl = V.channels_last(channel_axis, s.ndim)
    except ValueError:
        raise ValueError(
            f"style must have the layout of content (channel_axis={channel_axis}), got shape {V._shape_str(s.shape)}"
        ) from None
    Ns, Cs, _ = V.layout(s.shape, scl)
    if Cs != C:
        raise ValueError(f"style must have C={C} channels like content, got {Cs} (shape {V._shape_str(s.shape)})")
    if Ns not in (1, N):
        batch = f"{N} or 1" if N != 1 else "1, like content"
        raise ValueError(f"style must have a batch of {batch}, got {Ns} (shape {V._shape_str(s.shape)})")
    eps = V.check_eps(eps)
    alpha = V.check_alpha(alpha)
    odtype, ocode = V.out_dtype(dtype, x.dtype, code)
    nt = V.check_threads(num_threads)
    xp = be.xp
    # an integer or float64 input's statistics are those of the values the
    # output type's kernels load: into float32 or a 16-bit type the call
    # equals the one on x.astype(float32) bit for bit
    if alpha == 0.0:  # the content itself in the output dtype, as its kernels load it (float32 first for 16 bits)
        return xp.ascontiguousarray(F.as_output(x, odtype))
    tc = be.triples(x, code, cl, nt, ocode)
    ts = be.triples(s, scode, scl, nt, ocode)
    rescued = None
    if ocode == K.F64 and K.F64 in (code, scode) and hasattr(be, "adain_range"):
        # float64 beyond double's safe range for squares: from copies scaled by
        # powers of two (fastnorm._range; the CPU engine's, as for instance_norm)
        rescued = be.adain_range(x, code, cl, s, scode, scl, tc, ts, eps, alpha, nt)
    if rescued is not None:
        x, mean_c, scale, shift = rescued
    else:
        mean_c, scale, shift = F.adain_coefs(xp, tc, ts, eps, alpha, (N, C))
    return be.apply(
        x,
        code,
        cl,
        xp.ascontiguousarray(mean_c),
        xp.ascontiguousarray(scale),
        xp.ascontiguousarray(shift),
        0,
        0.0,
        None,
        nt,
        ocode,
    )


def apply_coefs(
    x: ArrayLike,
    mean: Any,
    scale: Any,
    shift: Any,
    *,
    channel_axis: int | None = None,
    activation: str | None = None,
    negative_slope: float = 0.01,
    dtype: Any = None,
    num_threads: int | None = None,
) -> Array:
    """``act((x - mean) * scale + shift)`` with per-(n, c) coefficients of
    shape (N, C), validated as the public functions validate.  Not a public
    function of fastnorm: the entry of the interop layers whose coefficients
    are computed outside (Dask's normalize pass, block by block)."""
    be, x, code, cl, N, C = _apply_prep(x, channel_axis)
    xp = be.xp
    m = V.per_channel(mean, "mean", N, C, xp)
    s = V.per_channel(scale, "scale", N, C, xp)
    h = V.per_channel(shift, "shift", N, C, xp)
    act, slope = V.check_activation(activation, negative_slope)
    _, ocode = V.out_dtype(dtype, x.dtype, code)
    nt = V.check_threads(num_threads)
    return be.apply(x, code, cl, m, s, h, act, slope, None, nt, ocode)
