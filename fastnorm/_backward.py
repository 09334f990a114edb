"""Backward of instance and group normalization: the gradients of
``y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]`` with respect to x,
weight and bias, for training.  The statistics are recomputed from
x (nothing saved by the forward is needed).

NumPy arrays run on the CPU engine (fastnorm._cpu._engine.backward_cf /
backward_cl), CuPy arrays on the CUDA kernels (the compute backends'
``backward``); torch tensors, Dask arrays and ``layout=`` go through the
same dispatch line as every public function (fastnorm._api._dispatch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backends as B
from . import _validate as V
from ._api import _dispatch, _fast_vector, _prep, _same_kind
from ._backends import Array, ArrayLike

_ndarray = np.ndarray


def _backward(
    grad_out: Any, x: Any, num_groups: Any, weight: Any, eps: Any, channel_axis: Any, num_threads: Any
) -> tuple[Array, Array, Array]:
    """Validate (x first: grad_out is checked against it), then run the backend."""
    per_channel = num_groups is V.PER_CHANNEL
    r = _fast_backward(grad_out, x, num_groups, per_channel, weight, eps, channel_axis, num_threads)
    if r is not None:
        return r
    _same_kind(grad_out, "grad_out", x, "x")
    be, x = _prep(x, "x")
    code = V.check_x(x.shape, x.dtype, "x", 3 if per_channel else 2)
    if V.is_integer(code):
        raise TypeError(
            f"x must have a floating dtype ({V.FLOAT_NAMES}) for the backward: integer inputs "
            f"have no gradient, got dtype {x.dtype}"
        )
    dbe, dy = _prep(grad_out, "grad_out")
    if dbe is not be:
        raise TypeError(
            f"grad_out must be the same kind of array as x ({type(x).__name__}), got {type(grad_out).__name__}"
        )
    if dy.dtype != x.dtype:
        raise TypeError(f"grad_out must have the dtype of x ({x.dtype}), got dtype {dy.dtype}")
    if dy.shape != x.shape:
        raise ValueError(
            f"grad_out must have the shape of x {V._shape_str(x.shape)}, got shape {V._shape_str(dy.shape)}"
        )
    cl = V.channels_last(channel_axis, x.ndim)
    C = int(x.shape[-1] if cl else x.shape[1])
    G = C if per_channel else V.check_num_groups(num_groups, C)
    eps = V.check_eps(eps)
    w = V.check_vector(weight, "weight", C)
    nt = V.check_threads(num_threads)
    gx, gw, gb = be.backward(x, dy, code, cl, G, w, eps, nt)
    adt = np.float64 if code == V.F64 else np.float32
    with B.on_device(gw):
        return gx, gw.astype(adt, copy=False), gb.astype(adt, copy=False)


_F32 = np.dtype(np.float32)
_INF = float("inf")


def _fast_backward(
    grad_out: Any,
    x: Any,
    num_groups: Any,
    per_channel: bool,
    weight: Any,
    eps: Any,
    channel_axis: Any,
    num_threads: Any,
) -> tuple[Array, Array, Array] | None:
    """The common backward on the fewest steps: float32 C-contiguous
    nonempty ndarrays x and grad_out of one shape (at least 3-d), channel_axis
    None, 1 or -1, a float eps in [0, inf), num_threads None or an int >= 1,
    num_groups (group norm) an int dividing C, weight None or a float32 /
    float64 vector of length C.  The general path's checks for such values
    pass and it runs the same engine call (float32 needs no range rescue), so
    the result is the same; None: the general path checks and computes.  Its
    Python steps (backend lookups, the checks in their general form) cost
    about 10 us a call, more than the kernels of a small layer."""
    if not (
        type(x) is _ndarray
        and type(grad_out) is _ndarray
        and x.dtype == _F32
        and grad_out.dtype == _F32
        and x.ndim >= 3
        and x.shape == grad_out.shape
        and x.size > 0
        and x.flags.c_contiguous
        and grad_out.flags.c_contiguous
        and type(eps) is float
        and 0.0 <= eps < _INF
        and (channel_axis is None or (type(channel_axis) is int and channel_axis in (1, -1)))
        and (num_threads is None or (type(num_threads) is int and num_threads > 0))
    ):
        return None
    cl = channel_axis == -1
    C = x.shape[-1] if cl else x.shape[1]
    if per_channel:
        G = C
    elif type(num_groups) is int and 1 <= num_groups <= C and C % num_groups == 0:
        G = num_groups
    else:
        return None
    if weight is not None and type(weight) is not _ndarray:
        return None
    w = _fast_vector(weight, C)
    if w is False:
        return None
    from ._cpu import _backend as CB

    gx, gw, gb, _ = CB._backward_run(x, grad_out, V.F32, cl, G, w, eps, num_threads)
    return gx, gw.astype(np.float32), gb.astype(np.float32)


def instance_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    num_threads: int | None = None,
) -> tuple[Array, Array, Array]:
    """Compute the gradients of :func:`fastnorm.instance_norm` with respect to x, weight and bias.

    With ``xhat = (x - mean) * rstd`` per plane (``rstd = 1 / sqrt(var + eps)``,
    the biased variance, recomputed from ``x``) and ``gy = grad_out * weight[c]``::

        grad_x      = rstd * (gy - mean(gy) - xhat * mean(gy * xhat))   (means over the plane)
        grad_weight = sum over instances and space of grad_out * xhat
        grad_bias   = sum over instances and space of grad_out

    Parameters
    ----------
    grad_out : array_like
        The gradient of the loss with respect to the forward's output: the
        shape and dtype of ``x``.
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C)
        The forward's input: float16, float32 or float64 (bfloat16 via
        ml_dtypes).  Any strides are accepted; non-C-contiguous inputs are
        copied once.
    weight : array_like of shape (C,), optional
        The forward's weight (any real dtype, cast once to float64); None means
        ones.  The forward's bias does not enter the gradients.
    eps : float, default 1e-5
        The forward's eps; finite and >= 0.  With eps = 0 a constant plane
        (group) has no gradient: its grad_x is NaN or +-inf (the forward's
        output there is NaN).
    channel_axis : {1, -1}, default None (1)
        1 for channels first, -1 (or ``x.ndim - 1``) for channels last,
        computed natively without a transpose.
    layout : str, optional
        The axes of ``x`` and ``grad_out`` by letter, as in
        :func:`fastnorm.instance_norm` (instead of ``channel_axis``).
    num_threads : int, optional
        OpenMP threads, as in :func:`fastnorm.instance_norm`.  Results are
        bit-identical for every value and every SIMD level.

    Returns
    -------
    grad_x : ndarray
        Shape and dtype of ``x``, C-contiguous, of x's array type (torch
        tensors on x's device, lazy Dask arrays).
    grad_weight, grad_bias : ndarray, shape (C,)
        float32 for 16- and 32-bit ``x``, float64 for float64 ``x``; computed
        whether or not ``weight`` is given.

    Raises
    ------
    TypeError
        ``x`` does not have a floating dtype (integer inputs have no
        gradient), ``grad_out`` is another kind of array or has another
        dtype than ``x``, or an argument has the wrong type.
    ValueError
        ``grad_out`` has another shape than ``x``; ``x`` has fewer than 3
        dimensions or does not fit ``layout``; any value
        :func:`fastnorm.instance_norm` refuses (``eps``, ``channel_axis``,
        ``weight``'s length, ``num_threads``).

    Notes
    -----
    One pass reads ``x`` and ``grad_out`` together for the statistics and the
    sums (in double, in a fixed order), one writes ``grad_x``: in double,
    rounded once, for float32 and float64; in float32 for 16-bit storage.  A
    plane of one element has ``xhat = 0`` (its ``grad_x`` is 0).  An empty
    ``x`` gives an empty ``grad_x`` and zero ``grad_weight`` / ``grad_bias``.
    Planes whose coefficients would leave the working precision's range
    (float64 data beyond about 1e100 or below 1e-100 in magnitude, 16-bit
    data whose coefficients overflow or underflow float) are computed again,
    from a copy scaled by a power of two or in float64: the gradients are
    accurate wherever the exact ones are finite.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    >>> dy = rng.standard_normal(x.shape).astype(np.float32)
    >>> gx, gw, gb = fastnorm.instance_norm_backward(dy, x)
    >>> gx.shape, gx.dtype, gw.shape, gb.dtype
    ((2, 3, 4, 4), dtype('float32'), (3,), dtype('float32'))
    >>> bool(np.allclose(gx.sum(axis=(2, 3)), 0, atol=1e-5))   # grad_x sums to 0 per plane
    True
    >>> bool(np.allclose(gb, dy.sum(axis=(0, 2, 3)), atol=1e-5))
    True
    """
    if layout is not None or (type(grad_out) is not _ndarray and B.library(grad_out) in B.INTEROP):
        return _dispatch(instance_norm_backward, locals())
    return _backward(grad_out, x, V.PER_CHANNEL, weight, eps, channel_axis, num_threads)


def group_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    num_groups: int,
    weight: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int | None = None,
    layout: str | None = None,
    num_threads: int | None = None,
) -> tuple[Array, Array, Array]:
    """Compute the gradients of :func:`fastnorm.group_norm` with respect to x, weight and bias.

    As :func:`instance_norm_backward`, the means of ``grad_x``'s formula taken
    over each (instance, group of ``C // num_groups`` consecutive channels)
    over all its channels and spatial elements; ``grad_weight`` and
    ``grad_bias`` stay per channel.

    Parameters
    ----------
    grad_out : array_like
        The gradient of the loss with respect to the forward's output: the
        shape and dtype of ``x``.
    x : array_like, shape (N, C, *spatial) or (N, *spatial, C)
        The forward's input: float16, float32 or float64 (bfloat16 via
        ml_dtypes); (N, C) is accepted too, as in the forward.
    num_groups : int
        The forward's number of groups, >= 1, dividing C.
    weight : array_like of shape (C,), optional
        The forward's weight (any real dtype); None means ones.
    eps : float, default 1e-5
        The forward's eps; finite and >= 0.  With eps = 0 a constant plane
        (group) has no gradient: its grad_x is NaN or +-inf (the forward's
        output there is NaN).
    channel_axis : {1, -1}, optional
        1 (the default, None) for channels first, -1 (or ``x.ndim - 1``) for
        channels last.
    layout : str, optional
        The axes of ``x`` and ``grad_out`` by letter, as in
        :func:`fastnorm.instance_norm` (instead of ``channel_axis``).
    num_threads : int, optional
        OpenMP threads, as in :func:`fastnorm.instance_norm`; results are
        bit-identical for every value.

    Returns
    -------
    grad_x : ndarray
        Shape and dtype of ``x``, C-contiguous, of x's array type.
    grad_weight, grad_bias : ndarray, shape (C,)
        float32 for 16- and 32-bit ``x``, float64 for float64 ``x``.

    Raises
    ------
    TypeError
        ``x`` does not have a floating dtype, ``grad_out`` is another kind of
        array or has another dtype than ``x``, ``num_groups`` is not an int, or
        another argument has the wrong type.
    ValueError
        ``grad_out`` has another shape than ``x``; ``num_groups`` is < 1 or does
        not divide C; any value :func:`instance_norm_backward` refuses.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 6, 8))
    >>> dy = rng.standard_normal(x.shape)
    >>> gx, gw, gb = fastnorm.group_norm_backward(dy, x, 3, weight=np.full(6, 2.0))
    >>> gx.shape, gw.dtype, gw.shape
    ((2, 6, 8), dtype('float64'), (6,))
    >>> bool(np.allclose(gx.reshape(2, 3, -1).sum(-1), 0))   # per group
    True
    """
    if layout is not None or (type(grad_out) is not _ndarray and B.library(grad_out) in B.INTEROP):
        return _dispatch(group_norm_backward, locals())
    return _backward(grad_out, x, num_groups, weight, eps, channel_axis, num_threads)
