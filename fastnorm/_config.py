"""show_config(): what this build of fastnorm is and what it runs on this CPU."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def config() -> dict[str, Any]:
    """The build and runtime facts as a dict (what show_config prints)."""
    from . import __version__
    from ._cpu import _engine as E

    BUILD_INFO = E.build_info()  # {} when built without setup.py's build_ext
    backends = {"numpy": True}
    for name in ("cupy", "torch", "dask", "onnxruntime", "matplotlib"):
        backends[name] = importlib.util.find_spec(name) is not None
    k = E.config()
    streaming, above = E.streaming_stores()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "openmp": E.have_openmp(),
        "default_threads": E.default_threads(),
        "compiler": BUILD_INFO.get("compiler", "unknown"),
        "cflags": BUILD_INFO.get("cflags", "unknown"),
        "ldflags": BUILD_INFO.get("ldflags", "unknown"),
        "simd_level": k["isa"],
        "simd_levels": E.simd_levels(),
        "simd_levels_built": E.built_levels(),
        "simd": E.build_isa(),
        "fma": E.fused_multiply_add(),
        "streaming": (streaming, above),
        "half": E.half_impl(),
        "block": E.BLOCK,
        "backends": backends,
    }


def show_config(mode: str = "stdout", file: Any = None) -> Any:
    """Print (or return) this build's configuration.

    The version, OpenMP, threads, compiler and flags, the SIMD level the
    kernels run at and the levels available, and which array backends are
    importable.

    Parameters
    ----------
    mode : {"stdout", "dicts"}
        ``"stdout"`` prints the configuration; ``"dicts"`` returns it as a
        dict instead (NumPy's convention), with at least ``simd_level`` (the
        active level) and ``simd_levels`` (the levels this build has and this
        CPU runs, best first; ``FASTNORM_ISA`` selects one at import).
    file : file-like, optional
        Where ``"stdout"`` prints (default ``sys.stdout``).

    Returns
    -------
    dict or None
        With ``mode="dicts"`` a dict of str keys (``version``, ``openmp``,
        ``default_threads``, ``compiler``, ``cflags``, ``simd_level``,
        ``simd_levels``, ``backends``...); None with ``"stdout"``.

    Raises
    ------
    ValueError
        ``mode`` is neither ``"stdout"`` nor ``"dicts"``.

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.show_config()  # doctest: +ELLIPSIS
    fastnorm ...
    >>> fastnorm.show_config(mode="dicts")["simd_level"] in fastnorm.show_config(mode="dicts")["simd_levels"]
    True
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    c = config()
    if mode == "dicts":
        return c
    out = file or sys.stdout
    omp = "yes" if c["openmp"] else "NO (serial build: one thread)"
    streaming, above = c["streaming"]
    serial = "" if c["openmp"] else ": SERIAL BUILD, no OpenMP, every call runs on one thread"
    lines = [
        f"fastnorm {c['version']} (Python {c['python']}){serial}",
        f"  OpenMP          : {omp}",
        f"  default threads : {c['default_threads']}",
        f"  compiler        : {c['compiler']}",
        f"  compile flags   : {c['cflags']}",
        f"  link flags      : {c['ldflags']}",
        f"  SIMD level      : {c['simd_level']} (FASTNORM_ISA; available here: {', '.join(c['simd_levels'])})",
        f"  SIMD            : {c['simd']}",
        "  multiply-add    : "
        + ("fused (rounded once; the same bits at every level)" if c["fma"] else "unfused (no FMA on this CPU)"),
        "  output stores   : "
        + (
            f"non-temporal for float32/float64 outputs over {above >> 20} MiB without "
            f"activation (channels last: rows of <= 64 lanes)"
            if streaming
            else "normal (no streaming stores at this level)"
        ),
        f"  float16         : {c['half']}",
        f"  stats block     : {c['block']} elements",
        "  array backends  : " + ", ".join(f"{k} ({'yes' if v else 'no'})" for k, v in c["backends"].items()),
    ]
    print("\n".join(lines), file=out)
