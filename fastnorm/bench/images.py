"""``python -m fastnorm bench --suite images``: per-image, per-channel
normalization of image data as image code holds it.

Cases: a 4K photo (2160, 3840, 3) uint8 HWC, a batch (64, 512, 512, 3) uint8
NHWC, a microscopy stack (16, 2048, 2048) uint16 NHW, and the same three as
float32.  Columns: fastnorm (``instance_norm(x, layout=...)``, float32 out),
albumentations ``Normalize(normalization="image_per_channel")`` (optional),
NumPy, and the ceiling: a parallel conversion copy of the same input into the
output dtype on the same threads, measured in the same run: the fastest of
NumPy's cast in L2-sized tiles on as many threads, NumPy's astype (1 thread),
and for float32 input the engine's parallel copies (memcpy and streaming).
Where a statistics unit (one image, all its channels, for an interleaved
layout; one plane for NHW) exceeds a core's L2, x must be read
twice, so the limit is the copy's bandwidth times (in + out) / (2 in + out).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from . import harness as H

#: name -> (shape, layout); each runs as uint8 / uint16 and as float32
CASES = {
    "4K photo": ((2160, 3840, 3), "HWC", np.uint8),
    "batch": ((64, 512, 512, 3), "NHWC", np.uint8),
    "microscopy stack": ((16, 2048, 2048), "NHW", np.uint16),
}


def _unit_elems(shape: tuple[int, ...], layout: str) -> int:
    """Elements of one statistics unit: one image (channels interleaved: all of
    it is read to get its channels' statistics) or one plane."""
    sp = 1
    for d, ch in zip(shape, layout):
        if ch in "DHWL":
            sp *= d
    c = shape[layout.index("C")] if "C" in layout else 1
    return sp * c


def _convert(x: np.ndarray, y: np.ndarray, nt: int) -> Callable[[], Any]:
    """A parallel conversion copy x -> y (y's dtype), tiled over nt threads."""
    from concurrent.futures import ThreadPoolExecutor

    xf, yf = x.reshape(-1), y.reshape(-1)
    n = xf.size
    bounds = [(n * i // nt, n * (i + 1) // nt) for i in range(nt)]
    pool = ThreadPoolExecutor(nt) if nt > 1 else None

    def part(b: tuple[int, int]) -> None:
        step = 1 << 16  # tiles that stay in L2 between NumPy's read and write
        for s in range(b[0], b[1], step):
            e = min(s + step, b[1])
            yf[s:e] = xf[s:e]

    def run() -> None:
        if pool is None:
            part(bounds[0])
        else:
            list(pool.map(part, bounds))

    return run


def _numpy_norm(x: np.ndarray, layout: str) -> Callable[[], Any]:
    """What NumPy code writes: per image and channel, in float32."""
    sp = tuple(i for i, ch in enumerate(layout) if ch in "DHWL")

    def run() -> np.ndarray:
        xf = x.astype(np.float32)
        m = xf.mean(axis=sp, keepdims=True)
        s = xf.std(axis=sp, keepdims=True)
        return (xf - m) / np.sqrt(s * s + 1e-5)

    return run


def _albumentations(x: np.ndarray, layout: str) -> Callable[[], Any] | None:
    if importlib.util.find_spec("albumentations") is None:
        return None
    import albumentations as A

    t = A.Normalize(normalization="image_per_channel")
    if layout.startswith("N"):
        return lambda: [t(image=img)["image"] for img in x]
    return lambda: t(image=x)["image"]


def run_images(
    nt: int,
    repeat: int = 5,
    min_time: float = 0.05,
    l2_bytes: int | None = None,
    cases: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per (case, input dtype): median seconds of every column."""
    import fastnorm

    if l2_bytes is None:
        l2_bytes = H.l2_cache_bytes()[0]
    rng = np.random.default_rng(0)
    rows = []
    for name, (shape, layout, idt) in (cases or CASES).items():
        hi = np.iinfo(idt).max
        base = rng.integers(0, hi // 2, size=shape, dtype=idt, endpoint=True) + (hi // 4)
        for dt in (idt, np.float32):
            x = base.astype(dt)
            y = np.empty(shape, np.float32)
            fns: dict[str, Callable[[], Any]] = {
                "fastnorm": lambda x=x: fastnorm.instance_norm(x, layout=layout, num_threads=nt),
                "copy": _convert(x, y, nt),
                "numpy": _numpy_norm(x, layout),
            }
            if x.dtype != np.float32:
                fns["astype"] = lambda x=x: x.astype(np.float32)
            else:  # float32 into float32 is a copy: the engine's parallel copies (memcpy, streaming)
                from .._cpu import _engine as E

                fns["copy_engine"] = lambda x=x, y=y: E.parallel_copy(x, y, nt, 0)
                fns["copy_nt"] = lambda x=x, y=y: E.parallel_copy(x, y, nt, 1)
            alb = _albumentations(x, layout)
            if alb is not None:
                fns["albumentations"] = alb
            times, errors = H.timeit_rounds(fns, repeat=repeat, min_time=min_time)
            if "astype" in times and nt == 1:  # the faster conversion is the ceiling
                times["copy"] = min(times["copy"], times.pop("astype"))
            times.pop("astype", None)
            i, o = x.itemsize, 4
            unit = _unit_elems(shape, layout) * i
            frac = 1.0 if unit <= l2_bytes else (i + o) / (2 * i + o)
            rows.append(
                {
                    "case": name,
                    "shape": list(shape),
                    "layout": layout,
                    "dtype": str(x.dtype),
                    "threads": nt,
                    "bytes": x.size * (i + o),
                    "times": times,
                    "errors": errors,
                    "unit_bytes": unit,
                    "limit_fraction": frac,
                }
            )
            if progress:
                print(f"  {name} {x.dtype}: done", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "case",
        "shape",
        "layout",
        "dtype",
        "threads",
        "fastnorm ms",
        "GB/s",
        "of limit",
        "x albumentations",
        "x numpy",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["times"]
        tf, tc = t.get("fastnorm"), t.get("copy")
        lim = (tc / tf / r["limit_fraction"]) if tf and tc else None
        cells = [
            r["case"],
            "x".join(map(str, r["shape"])),
            r["layout"],
            r["dtype"],
            str(r["threads"]),
            f"{tf * 1e3:.2f}" if tf else "-",
            f"{r['bytes'] / tf / 1e9:.1f}" if tf else "-",
            f"{lim:.2f}" if lim else "-",
        ]
        for p in ("albumentations", "numpy"):
            tp = t.get(p)
            cells.append(f"{tp / tf:.1f}" if tp and tf else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "fastnorm: instance_norm(x, layout=...) into a new float32 array; of limit: its GB/s over a "
        "parallel conversion copy's (x into float32, same threads; the fastest of NumPy's tiled cast, "
        "astype and, for float32, the engine's parallel copies), times (in + out) / (2 in + out) "
        "where one image (NHW: one plane) exceeds a core's L2; x PEER: PEER's time over fastnorm's "
        '(albumentations: Normalize(normalization="image_per_channel"), per image, float64 out; '
        "numpy: float32 per-image code)."
    )
    return "\n".join(lines)
