"""The float64 NumPy oracle every test compares against (slow and obviously right)."""

import numpy as np


def to_cf(x, channel_axis):
    """Move channels to axis 1."""
    return x if channel_axis == 1 else np.moveaxis(x, -1, 1)


def from_cf(y, channel_axis):
    return y if channel_axis == 1 else np.moveaxis(y, 1, -1)


def act(y, activation, slope=0.01):
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "leaky_relu":
        return np.where(y >= 0, y, y * slope)
    if activation == "silu":
        return y / (1 + np.exp(-y))
    raise ValueError(activation)


def stats(x, channel_axis=1):
    """float64 mean and biased variance per (n, c)."""
    x = to_cf(np.asarray(x).astype(np.float64), channel_axis)
    ax = tuple(range(2, x.ndim))
    return x.mean(axis=ax), x.var(axis=ax)


def group_norm(x, G, weight=None, bias=None, eps=1e-5, channel_axis=1, activation=None, slope=0.01):
    x64 = to_cf(np.asarray(x).astype(np.float64), channel_axis)
    N, C = x64.shape[:2]
    if x64.size == 0:
        return from_cf(x64.copy(), channel_axis)
    g = x64.reshape(N, G, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x64.shape)
    return from_cf(act(_affine(y, weight, bias), activation, slope), channel_axis)


def _affine(y, weight, bias):
    """y * weight[c] + bias[c] on a channels-first y."""
    bshape = (1, y.shape[1]) + (1,) * (y.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(bshape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(bshape)
    return y


def instance_norm(x, weight=None, bias=None, eps=1e-5, channel_axis=1, activation=None, slope=0.01):
    C = np.asarray(x).shape[channel_axis]
    return group_norm(x, C, weight, bias, eps, channel_axis, activation, slope)


def normalize(x, mean, var, weight=None, bias=None, eps=1e-5, channel_axis=1, activation=None, slope=0.01):
    x64 = to_cf(np.asarray(x).astype(np.float64), channel_axis)
    N, C = x64.shape[:2]
    sh = (N, C) + (1,) * (x64.ndim - 2)
    mean = np.broadcast_to(np.asarray(mean, np.float64), (N, C)).reshape(sh)
    var = np.broadcast_to(np.asarray(var, np.float64), (N, C)).reshape(sh)
    y = (x64 - mean) / np.sqrt(var + eps)
    return from_cf(act(_affine(y, weight, bias), activation, slope), channel_axis)


def adain(content, style, eps=1e-5, channel_axis=1, alpha=1.0):
    c = to_cf(np.asarray(content).astype(np.float64), channel_axis)
    s = to_cf(np.asarray(style).astype(np.float64), channel_axis)
    axc = tuple(range(2, c.ndim))
    axs = tuple(range(2, s.ndim))
    cm, cv = c.mean(axis=axc), c.var(axis=axc)
    sm, sv = s.mean(axis=axs), s.var(axis=axs)
    sh = cm.shape + (1,) * (c.ndim - 2)
    sm = np.broadcast_to(sm, cm.shape).reshape(sh)
    sv = np.broadcast_to(sv, cm.shape).reshape(sh)
    y = (c - cm.reshape(sh)) / np.sqrt(cv.reshape(sh) + eps) * np.sqrt(sv + eps) + sm
    y = alpha * y + (1 - alpha) * c
    return from_cf(y, channel_axis)


def tol(dtype):
    """(atol, rtol) for comparing a result of this dtype with the float64 oracle."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return 1e-12, 1e-12
    if dtype == np.float32:
        return 1e-6, 1e-6
    if dtype == np.float16:
        return 2e-3, 1e-3
    return 2e-2, 8e-3  # bfloat16


def assert_close(y, ref, dtype=None):
    dtype = np.dtype(dtype or y.dtype)
    atol, rtol = tol(dtype)
    y64 = np.asarray(y).astype(np.float64)
    ref = np.asarray(ref, np.float64)
    assert y64.shape == ref.shape, (y64.shape, ref.shape)
    bad = ~(np.abs(y64 - ref) <= atol + rtol * np.abs(ref))
    bad &= ~(np.isnan(y64) & np.isnan(ref))
    bad &= ~(np.isinf(ref) & (y64 == ref))
    if bad.any():
        i = np.argmax(bad.ravel())
        raise AssertionError(
            f"{bad.sum()} of {bad.size} elements differ ({dtype}); worst abs err "
            f"{np.nanmax(np.abs(y64 - ref))}; first at flat {i}: got {y64.ravel()[i]}, want {ref.ravel()[i]}"
        )
