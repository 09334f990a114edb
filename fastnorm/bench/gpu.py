"""``python -m fastnorm bench --device gpu``: CUDA-event timings of fastnorm, torch
instance_norm / group_norm on CUDA (when torch is installed) and a
device-to-device copy of the same bytes, over the standard and the large suite."""

from __future__ import annotations

import cupy as cp
import numpy as np

from .harness import STANDARD, TINY, _cl_shape

LARGE = {"L1": (64, 64, 256, 256), "L2": (8, 64, 1024, 1024)}


def gpu_time(fn, repeat=20, warmup=3):
    """Median milliseconds per call, CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    ts = []
    for _ in range(repeat):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ts.append(cp.cuda.get_elapsed_time(start, stop))
    return float(np.median(ts))


def _torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def run(shapes, dtypes, layouts, repeat=20):
    import fastnorm

    torch = _torch()
    rows = []
    for name, shape in shapes.items():
        for lay in layouts:
            for dt in dtypes:
                full = shape if lay == "cf" else _cl_shape(shape)
                x = (cp.random.standard_normal(full, dtype=cp.float32) + 1).astype(dt)
                y = cp.empty_like(x)
                ax = 1 if lay == "cf" else -1
                t = {
                    "fastnorm": gpu_time(lambda: fastnorm.instance_norm(x, channel_axis=ax, out=y), repeat),
                    "copy": gpu_time(
                        lambda: cp.cuda.runtime.memcpyAsync(
                            y.data.ptr,
                            x.data.ptr,
                            x.nbytes,
                            cp.cuda.runtime.memcpyDeviceToDevice,
                            cp.cuda.get_current_stream().ptr,
                        ),
                        repeat,
                    ),
                }
                if torch is not None:
                    tx = torch.from_dlpack(x)
                    if lay == "cl":
                        tx = tx.movedim(-1, 1)
                    F = torch.nn.functional
                    with torch.inference_mode():
                        t["torch_in"] = gpu_time(lambda: F.instance_norm(tx), repeat)
                        t["torch_gn"] = gpu_time(lambda: F.group_norm(tx, tx.shape[1]), repeat)
                rows.append(
                    {"shape": name, "layout": lay, "dtype": np.dtype(dt).name, "bytes": 2 * x.nbytes, "times_ms": t}
                )
    return rows


def table(rows):
    peers = [p for p in ("torch_in", "torch_gn") if any(p in r["times_ms"] for r in rows)]
    head = ["shape", "layout", "dtype", "fastnorm ms", "GB/s", "copy GB/s", "of copy"] + [f"x {p}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["times_ms"]
        gb = lambda ms: r["bytes"] / (ms * 1e-3) / 1e9  # noqa: E731
        cells = [
            r["shape"],
            r["layout"],
            r["dtype"],
            f"{t['fastnorm']:.3f}",
            f"{gb(t['fastnorm']):.0f}",
            f"{gb(t['copy']):.0f}",
            f"{t['copy'] / t['fastnorm']:.2f}",
        ]
        cells += [f"{t[p] / t['fastnorm']:.2f}" if p in t else "-" for p in peers]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(args):
    import json

    import fastnorm

    dts = {"float32": cp.float32, "float16": cp.float16, "float64": cp.float64}
    dtypes = [dts[d.strip()] for d in args.dtype.split(",") if d.strip()]
    layouts = [s.strip() for s in args.layout.split(",") if s.strip()]
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    print(f"fastnorm GPU bench on {dev['name'].decode()}")
    rows = run(STANDARD, dtypes, layouts, args.repeat * 3)
    rows += run(LARGE, [cp.float16, cp.float32], ["cf", "cl"], args.repeat * 3)
    print(table(rows))
    x = cp.random.standard_normal(TINY, dtype=cp.float32)
    tiny_ms = gpu_time(lambda: fastnorm.instance_norm(x), 50)
    import time

    t0 = time.perf_counter()
    for _ in range(200):
        fastnorm.instance_norm(x)
    cp.cuda.get_current_stream().synchronize()
    wall_us = (time.perf_counter() - t0) / 200 * 1e6
    print(f"\ntiny input {TINY}: {tiny_ms * 1e3:.1f} us (CUDA events), {wall_us:.1f} us wall per call")
    for lay in ("cf", "cl"):
        sp = [
            r["times_ms"]["torch_in"] / r["times_ms"]["fastnorm"]
            for r in rows
            if r["layout"] == lay and "torch_in" in r["times_ms"]
        ]
        if sp:
            print(f"{lay}: median speed-up over torch instance_norm {np.median(sp):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "tiny_us": tiny_ms * 1e3, "tiny_wall_us": wall_us}, f, indent=1)
    return 0
