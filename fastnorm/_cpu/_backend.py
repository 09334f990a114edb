"""NumPy backend: the three primitives every backend provides, on the CPU engine.

- norm:    statistics + normalize (+ affine, + activation) in one call
- triples: Welford triples (count, mean, M2) per (n, c), float64 (N, C, 3)
- apply:   normalize with given per-(n, c) mean / scale / shift

Inputs are validated by fastnorm._api; nothing here validates again.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .. import _api
from . import _engine as E

default_threads = E.default_threads


_MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
_modules = sys.modules


def _threads(nt):
    """The thread count a call runs with (nt: validated num_threads or None)."""
    if _api._forked_child:
        # OpenMP's pool did not survive fork(); one thread never enters it
        return 1
    if nt is None:
        if "dask" in _modules and _api._in_dask_task():
            return 1  # Dask runs a task per core already
        nt = E.default_threads()
    # results are identical for every count, so an absurd request (num_threads=10**6,
    # OMP_NUM_THREADS=30000) is capped instead of asking OpenMP for that many threads
    return min(nt, _MAX_THREADS)


def _prepare(x, out):
    """C-contiguous input and an output array (x may be copied, see docstrings)."""
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if out is None:
        return x, E.empty(x.shape, x.dtype)
    if out is not x and np.may_share_memory(out, x):
        # same buffer is fine (elementwise in place); any other overlap is not
        if not (out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                and out.strides == x.strides):
            x = x.copy()
    return x, out


def norm(x, code, cl, G, weight, bias, eps, act, slope, out, nt, stats=False):
    x, y = _prepare(x, out)
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    size = x.size
    S = size // (N * C) if N * C else 0
    tri = np.empty((N, C if cl else G, 3)) if stats else None
    if size == 0:
        if tri is not None:
            tri[...] = (0.0, np.nan, np.nan)
        return (y, tri) if stats else y
    if cl:
        E.norm_cl(x, y, code, N, S, C, G, weight, bias, eps, act, slope, _threads(nt), tri)
    else:
        E.norm_cf(x, y, code, N, G, C // G, S, weight, bias, eps, act, slope, _threads(nt), tri)
    return (y, tri) if stats else y


def triples(x, code, cl, nt):
    """(N, C, 3) float64 triples; count 0 rows for empty planes."""
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    out = np.empty((N, C, 3))
    if N * C == 0:
        return out
    S = x.size // (N * C)
    if cl:
        E.stats_cl(x, code, N, S, C, _threads(nt), out)
    else:
        E.stats_cf(x, code, N * C, S, _threads(nt), out)
    return out


def apply(x, code, cl, mean, scale, shift, act, slope, out, nt):
    """mean, scale, shift: float64 C-contiguous (N, C)."""
    x, y = _prepare(x, out)
    shape = x.shape
    N = shape[0]
    C = shape[-1] if cl else shape[1]
    if x.size == 0:
        return y
    S = x.size // (N * C)
    if cl:
        E.apply_cl(x, y, code, N, S, C, mean, scale, shift, act, slope, _threads(nt))
    else:
        E.apply_cf(x, y, code, N * C, S, mean, scale, shift, act, slope, _threads(nt))
    return y
