"""show_config(): what this build of fastnorm is and what it can use."""
from __future__ import annotations

import importlib.util
import sys


def config():
    """The build and runtime facts as a dict (what show_config prints)."""
    from . import __version__
    from ._cpu import _engine as E

    try:
        from ._build_info import BUILD_INFO
    except ImportError:  # built by a tool that skipped setup.py's hook
        BUILD_INFO = {}
    backends = {"numpy": True}
    for name in ("cupy", "torch", "dask", "onnxruntime", "matplotlib"):
        backends[name] = importlib.util.find_spec(name) is not None
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "openmp": E.have_openmp(),
        "default_threads": E.default_threads(),
        "compiler": BUILD_INFO.get("compiler", "unknown"),
        "cflags": BUILD_INFO.get("cflags", "unknown"),
        "ldflags": BUILD_INFO.get("ldflags", "unknown"),
        "simd": E.build_isa(),
        "fma": E.fused_multiply_add(),
        "streaming": E.streaming_stores(),
        "half": E.half_impl(),
        "block": E.BLOCK,
        "backends": backends,
    }


def show_config(file=None):
    """Print the version, OpenMP, threads, compiler and flags, SIMD baseline and
    which array backends are importable.

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.show_config()  # doctest: +ELLIPSIS
    fastnorm ...
    """
    c = config()
    out = file or sys.stdout
    omp = "yes" if c["openmp"] else "NO (serial build: one thread)"
    lines = [
        f"fastnorm {c['version']} (Python {c['python']})",
        f"  OpenMP          : {omp}",
        f"  default threads : {c['default_threads']}",
        f"  compiler        : {c['compiler']}",
        f"  compile flags   : {c['cflags']}",
        f"  link flags      : {c['ldflags']}",
        f"  SIMD            : {c['simd']}",
        "  multiply-add    : " + ("fused (rounded once; the same bits on every FMA CPU)"
                                  if c["fma"] else "unfused (no FMA on this CPU or in this build)"),
        "  output stores   : " + (
            f"non-temporal ({('AVX-512F', 'AVX2')[2 - c['streaming'][0]]}) for channels-first "
            f"float32/float64 and channels-last float32/float64 (rows of <= 64 lanes) outputs over "
            f"{c['streaming'][1] >> 20} MiB without activation"
            if c["streaming"][0] else "normal (no streaming-store kernels for this CPU or build)"),
        f"  float16         : {c['half']}",
        f"  stats block     : {c['block']} elements",
        "  array backends  : " + ", ".join(
            f"{k} ({'yes' if v else 'no'})" for k, v in c["backends"].items()),
    ]
    print("\n".join(lines), file=out)
