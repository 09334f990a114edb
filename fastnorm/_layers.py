"""A framework-free InstanceNorm layer with torch.nn.InstanceNorm semantics."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _api
from . import _validate as V
from ._backends import to_host


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_host(a))


class InstanceNorm:
    """Instance normalization layer, a drop-in for ``torch.nn.InstanceNorm{1,2,3}d``.

    Parameters
    ----------
    num_features : int
        Channel count C, >= 1.
    eps : float, default 1e-5
        Added to the variance; finite and >= 0.
    momentum : float in [0, 1] or None, default 0.1
        Running-statistics update factor; None means a cumulative average.
    affine : bool, default False
        Keep a per-channel ``weight`` (ones) and ``bias`` (zeros), float32.
    track_running_stats : bool, default False
        Keep ``running_mean`` / ``running_var`` (zeros / ones, float32) updated
        in training with the unbiased variance, and use them in evaluation.
    channel_axis : int, optional
        1 (the default, None) for channels first; -1 or ``x.ndim - 1`` for
        channels last, as in the functions (checked against each input's ndim).
    layout : str, optional
        The inputs' axes as in the functions (``"CHW"``, ``"HWC"``,
        ``"NDHWC"``...), instead of ``channel_axis``: ``InstanceNorm(3,
        layout="CHW")`` normalizes single (3, H, W) images.

    Attributes
    ----------
    weight, bias : ndarray or None
        float32 (C,) arrays when ``affine``, else None.
    running_mean, running_var : ndarray or None
        float32 (C,) arrays when ``track_running_stats``, else None.
    num_batches_tracked : ndarray or None
        A 0-d int64 array when ``track_running_stats``, else None.

    Raises
    ------
    TypeError
        ``num_features``, ``eps``, ``momentum`` or ``channel_axis`` has the
        wrong type, or ``layout`` is not a string.
    ValueError
        ``num_features`` < 1, ``eps`` negative or not finite, ``momentum``
        outside [0, 1], ``channel_axis`` 0 or below -1, a malformed ``layout``,
        or both ``layout`` and ``channel_axis``.

    Notes
    -----
    Calling ``layer(x, training=False)`` follows torch exactly: input statistics
    when training or when running statistics are not tracked; running statistics
    in evaluation when they are.  Running statistics are updated in training with
    the unbiased variance: ``r = (1 - momentum) * r + momentum * batch``.
    ``momentum=None`` gives the cumulative average that torch documents (torch's
    InstanceNorm implementation actually skips the update in that case); batches
    are then counted in ``num_batches_tracked``, which, as in torch, is otherwise
    left unchanged by InstanceNorm.  ``state_dict()`` and ``load_state_dict()``
    use torch's key names and accept NumPy arrays or torch tensors, so a trained
    torch InstanceNorm loads directly.

    Examples
    --------
    >>> import numpy as np, fastnorm
    >>> layer = fastnorm.InstanceNorm(3, affine=True, track_running_stats=True)
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    >>> y = layer(x, training=True)
    >>> layer.running_mean.shape, bool((layer.running_var != 1).all())
    ((3,), True)
    >>> sorted(layer.state_dict())
    ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """

    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool
    channel_axis: int | None
    layout: str | None
    weight: np.ndarray | None
    bias: np.ndarray | None
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        channel_axis: int | None = None,
        layout: str | None = None,
    ) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral):
            raise TypeError(f"num_features must be an int >= 1, got {num_features!r}")
        if num_features < 1:
            raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
        self.num_features = int(num_features)
        self.eps = V.check_eps(eps)
        if momentum is not None:
            if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
                raise TypeError(f"momentum must be a real number or None, got {momentum!r}")
            momentum = V.to_float(momentum, "momentum", "None or a number in [0, 1]")
            if not 0.0 <= momentum <= 1.0:  # NaN fails too
                raise ValueError(f"momentum must be None or a number in [0, 1], got {momentum!r}")
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if channel_axis is not None and (
            isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral)
        ):
            raise TypeError(f"channel_axis must be an int (1, -1 or x.ndim - 1), got {channel_axis!r}")
        if channel_axis is not None and (channel_axis == 0 or channel_axis < -1):
            # 1, -1 and ndim - 1 (>= 2) are the axes the functions accept
            raise ValueError(
                f"channel_axis must be 1 (channels first) or -1 / x.ndim - 1 (channels last), got {channel_axis!r}"
            )
        if layout is not None:
            if channel_axis is not None:
                raise ValueError(
                    f"pass layout or channel_axis, not both: got layout={layout!r} and channel_axis={channel_axis!r}"
                )
            V.check_layout(layout, (1,) * len(layout) if isinstance(layout, str) else (), "x")
            if "C" not in layout.upper() and self.num_features != 1:
                raise ValueError(
                    f"layout {layout!r} has no C axis (one channel): num_features must be 1, got {self.num_features}"
                )
        self.layout = layout
        # neither given: an integer image of 2 or 3 dimensions is ambiguous, as
        # in the functions (checked per call, where x's dtype is known)
        self._axes_given: bool = layout is not None or channel_axis is not None
        self.channel_axis = None if layout is not None else 1 if channel_axis is None else int(channel_axis)
        C = self.num_features
        self.weight = np.ones(C, np.float32) if self.affine else None
        self.bias = np.zeros(C, np.float32) if self.affine else None
        if self.track_running_stats:
            self.running_mean = np.zeros(C, np.float32)
            self.running_var = np.ones(C, np.float32)
            self.num_batches_tracked = np.array(0, np.int64)
        else:
            self.running_mean = None
            self.running_var = None
            self.num_batches_tracked = None

    def __repr__(self) -> str:
        return (
            f"InstanceNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
            + (f"layout={self.layout!r})" if self.layout is not None else f"channel_axis={self.channel_axis})")
        )

    def _check_channels(self, x: Any, shape: tuple[int, ...], ax: int) -> None:
        C = x.shape[-1] if V.channels_last(ax, x.ndim) else x.shape[1]
        if C != self.num_features:
            raise ValueError(
                f"x must have {self.num_features} channels (num_features), got shape {V._shape_str(shape)}"
            )

    def __call__(self, x: Any, training: bool = False, *, num_threads: Any = None) -> Any:
        """Normalize ``x`` as ``torch.nn.InstanceNorm*d`` would (``forward`` is the same).

        Parameters
        ----------
        x : array_like
            (N, C, *spatial) or (N, *spatial, C) as ``channel_axis`` says, or the
            constructor's ``layout``, with C = ``num_features``: any array type and
            dtype :func:`fastnorm.instance_norm` takes.
        training : bool, default False
            Use the input's statistics and, when tracked, update the running ones;
            False uses the running statistics when they are tracked.
        num_threads : int, optional
            OpenMP threads, as in :func:`fastnorm.instance_norm`.

        Returns
        -------
        ndarray
            Of x's shape and array type; its dtype is x's for floating inputs and
            float32 for integer inputs.

        Raises
        ------
        ValueError
            ``x`` does not have ``num_features`` channels, does not fit the
            layout, or has one spatial element where the input's statistics are
            used (torch's check).
        TypeError
            ``x`` has an unsupported dtype.

        Examples
        --------
        >>> import numpy as np, fastnorm
        >>> layer = fastnorm.InstanceNorm(3, layout="HWC")
        >>> y = layer(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
        >>> y.shape, y.dtype
        ((8, 8, 3), dtype('float32'))
        """
        shape = getattr(x, "shape", None)
        if shape is None:
            x = V.as_numpy(x)
            shape = x.shape
        if self.layout is None:
            assert self.channel_axis is not None
            if not self._axes_given:
                V.check_unambiguous(tuple(shape), getattr(x, "dtype", None), None, "x")
            return self._forward(x, shape, self.channel_axis, training, num_threads)
        L = V.check_layout(self.layout, tuple(shape))
        y = self._forward(x.reshape(L.canonical(shape)), shape, -1 if L.cl else 1, training, num_threads)
        return y.reshape(shape)

    def _forward(self, x: Any, user_shape: tuple[int, ...], ax: int, training: bool, num_threads: Any) -> Any:
        shape = x.shape
        if len(shape) < 3:
            V.check_x(shape, getattr(x, "dtype", np.dtype(np.float32)))
        self._check_channels(x, user_shape, ax)
        use_input_stats = training or not self.track_running_stats
        if use_input_stats and V.layout(shape, V.channels_last(ax, len(shape)))[2] == 1:
            # torch's check: the variance of one element is 0 and its unbiased
            # variance (the running_var update) 0 / 0
            raise ValueError(
                f"Expected more than 1 spatial element when training, got input size {V._shape_str(user_shape)}"
            )
        if not use_input_stats:
            return _api.normalize(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                eps=self.eps,
                channel_axis=ax,
                num_threads=num_threads,
            )
        if not (training and self.track_running_stats) or 0 in tuple(shape):
            # an empty batch leaves the running buffers as they are (torch's
            # rule for empty planes; for N = 0 torch writes NaN into them)
            return _api.instance_norm(x, self.weight, self.bias, eps=self.eps, channel_axis=ax, num_threads=num_threads)
        m = _api.instance_moments(x, channel_axis=ax, num_threads=num_threads)
        mean = _host(m.mean)
        n = _host(m.count)
        m2 = _host(m.m2)
        with np.errstate(divide="ignore", invalid="ignore"):
            unbiased = m2 / (n - 1)
        # tracked: the buffers exist (invariant of __init__ / load_state_dict)
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        if self.momentum is None:
            # cumulative average, counted as BatchNorm counts batches
            self.num_batches_tracked = np.array(int(self.num_batches_tracked) + 1, np.int64)
            f = 1.0 / float(self.num_batches_tracked)
        else:
            # torch's InstanceNorm leaves num_batches_tracked alone here
            f = self.momentum
        # in float64, rounded once to the buffers' float32
        dt = self.running_mean.dtype
        rm, rv = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        self.running_mean = ((1 - f) * rm + f * mean.mean(axis=0)).astype(dt)
        self.running_var = ((1 - f) * rv + f * unbiased.mean(axis=0)).astype(dt)
        # normalize with the batch's own (biased) statistics, as torch does
        return _api.normalize(
            x, m.mean, m.var, self.weight, self.bias, eps=self.eps, channel_axis=ax, num_threads=num_threads
        )

    forward = __call__

    def state_dict(self) -> dict[str, np.ndarray]:
        """Return the layer's arrays under torch's key names.

        Returns
        -------
        dict of str to ndarray
            ``weight`` and ``bias`` (float32, (C,)) when ``affine``;
            ``running_mean``, ``running_var`` (float32, (C,)) and
            ``num_batches_tracked`` (0-d int64) when ``track_running_stats``.
            Copies: changing them does not change the layer.

        Examples
        --------
        >>> import fastnorm
        >>> sorted(fastnorm.InstanceNorm(4, affine=True).state_dict())
        ['bias', 'weight']
        """
        names = (("weight", "bias") if self.affine else ()) + (
            ("running_mean", "running_var", "num_batches_tracked") if self.track_running_stats else ()
        )
        return {name: np.array(getattr(self, name)) for name in names}

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> InstanceNorm:
        """Load arrays (NumPy or torch tensors) saved under torch's key names.

        Every value is checked before any is applied: on an error (which names the
        key) the layer is left as it was.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            Keys as :meth:`state_dict` gives them, optionally with a module path
            prefix (``"norm1.weight"``), as torch writes them.
        strict : bool, default True
            Require exactly the layer's keys; False loads those present and ignores
            the others.

        Returns
        -------
        InstanceNorm
            The layer itself.

        Raises
        ------
        TypeError
            ``state_dict`` is not a mapping, a key is not a string, or a value is not
            an array of real numbers.
        KeyError
            With ``strict``, keys are missing or unexpected.
        ValueError
            A value has the wrong shape, ``running_var`` is negative, or
            ``num_batches_tracked`` is not one integer >= 0; two keys name the same
            array.

        Examples
        --------
        >>> import numpy as np, fastnorm
        >>> layer = fastnorm.InstanceNorm(2, affine=True)
        >>> _ = layer.load_state_dict({"norm.weight": np.array([2.0, 3.0]), "norm.bias": np.zeros(2)})
        >>> layer.weight
        array([2., 3.], dtype=float32)
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        expected = set(self.state_dict())
        # torch prefixes keys with the module path; accept a common prefix
        keys: dict[str, str] = {}
        for k in state_dict.keys():
            if not isinstance(k, str):
                raise TypeError(f"state_dict keys must be strings, got {k!r}")
            name = k.rsplit(".", 1)[-1]
            if name in keys and name in expected:
                raise ValueError(f"state_dict has two keys for {name!r}: {keys[name]!r} and {k!r}")
            keys[name] = k
        missing = expected - set(keys)
        unexpected = set(keys) - expected
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict keys do not match: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        new = {name: self._checked(name, keys[name], state_dict[keys[name]]) for name in sorted(expected & set(keys))}
        for name, val in new.items():
            setattr(self, name, val)
        return self

    def _checked(self, name: str, key: str, value: Any) -> np.ndarray:
        """The attribute value for state_dict[key] (attribute name), or a
        TypeError / ValueError naming the key."""
        where = f"state_dict[{key!r}]"
        V.refuse_mask(value, where)
        try:
            val = _host(value)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{where} must be an array of numbers, got {type(value).__name__}: {e}") from None
        if val.dtype.kind not in "biuf" and val.dtype.name != "bfloat16":
            raise TypeError(f"{where} must hold real numbers, got dtype {val.dtype}")
        if name == "num_batches_tracked":
            n = None
            if val.size == 1 and val.ndim <= 1:
                item = val.reshape(-1)[0]
                if val.dtype.kind in "biu":
                    n = int(item)  # exact, also past 2**53
                else:
                    f = float(item)
                    n = int(f) if math.isfinite(f) and f == int(f) else None
            if n is None or not 0 <= n < 2**63:  # an int64 count, as torch's buffer
                raise ValueError(f"{where} must be one integer >= 0 (an int64), got {value!r}")
            return np.array(n, np.int64)
        C = self.num_features
        if val.shape != (C,):
            raise ValueError(f"{where} must have shape ({C},), got shape {V._shape_str(val.shape)}")
        if name == "running_var" and bool((val < 0).any()):
            raise ValueError(f"{where} must be >= 0 everywhere, got a negative variance")
        with np.errstate(over="ignore"):
            out = np.array(val, dtype=np.float32)
        if name in ("running_mean", "running_var") and bool(np.isinf(out).any()):
            # normalize() refuses an infinite variance: refused here, where the key is known
            raise ValueError(
                f"{where} must be finite in float32 (the buffers' type), got {float(val[np.isinf(out)][0])!r}"
            )
        return out
