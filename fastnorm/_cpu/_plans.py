"""plan_for: which plan the CPU engine runs for a shape (fastnorm._cpu._engine
re-exports it; the plans themselves are fn_plan.c's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastnorm._codes import _CODES, BF16, FLOAT_CODES


def _code(dt: Any) -> int | None:
    """The engine code of a dtype, or None."""
    return BF16 if dt.name == "bfloat16" else _CODES.get(dt)


def plan_for(
    shape: Any, dtype: Any, channel_axis: int = 1, num_threads: int | None = None, out_dtype: Any = None
) -> dict[str, Any]:
    """The plan instance_norm runs for an array of this shape and dtype into
    out_dtype (default: dtype for a floating dtype, float32 for an integer
    one), as a dict: layout, n_threads, parallel, fused (one thread per plane
    or instance; else waves of `wave` planes or instances shared by the
    threads), small_planes, pipelined, backward, stream, rows (channels last:
    rows wider than a register tile normalized row by row), level (fn_plan.h).
    Every plan gives the same bits; this says which one runs (tests, and
    `python -m fastnorm bench`)."""
    from fastnorm._cpu import _engine as E

    shape = tuple(int(d) for d in shape)
    if len(shape) < 3:
        raise ValueError(f"shape must have at least 3 dimensions, got {shape!r}")
    dt = np.dtype(dtype)
    if _code(dt) is None:
        names = sorted([str(d) for d in _CODES] + ["bfloat16"])
        raise ValueError(f"dtype must be one of {names}, got {dt.name!r}")
    floating = dt.kind == "f" or dt.name == "bfloat16"
    odt: Any = np.dtype(out_dtype) if out_dtype is not None else dt if floating else np.dtype(np.float32)
    if _code(odt) not in FLOAT_CODES:
        raise ValueError(f"out_dtype must be one of float16, float32, float64, bfloat16, got {odt.name!r}")
    if channel_axis not in (1, -1, len(shape) - 1):
        raise ValueError(f"channel_axis must be 1 or -1, got {channel_axis!r}")
    cl = channel_axis != 1
    n_threads = E.default_threads() if num_threads is None else int(num_threads)
    if n_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads!r}")
    N, C = shape[0], shape[-1] if cl else shape[1]
    S = int(np.prod(shape)) // (N * C) if N * C else 0
    pl = E._plan(cl, _code(dt), _code(odt), N, C, S, dt.itemsize, odt.itemsize, n_threads)
    keys = ("n_threads", "parallel", "fused", "wave", "small_planes", "pipelined", "backward", "stream", "rows")
    out: dict[str, Any] = {"layout": "channels_last" if cl else "channels_first"}
    out.update({k: pl[k] if k in ("n_threads", "wave") else bool(pl[k]) for k in keys})
    out["level"] = E.config()["isa"]
    return out
