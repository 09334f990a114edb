"""A/B of two builds of the CPU engine in one process, call by call.

    python tools/ab_engines.py OLD_ROOT NEW_ROOT SHAPES [--acts none,relu] [--op backward]
        [--threads 1,2] [--isa x86-64-v3] [--rounds 9] [--reps 15]

OLD_ROOT and NEW_ROOT are checkouts whose engine was built in place
(`python setup.py build_ext --inplace`), preferably each a fresh worktree: an
incremental build of the same source can differ from a fresh one in the
kernels' code.  SHAPES is a comma list of shapes, each followed by
`:1` (channels first) or `:-1` (channels last), e.g. `1x64x256x256:1,
1x256x256x64:-1`; --dtype float16, float32 (default) or float64 in and out.

Both engines (`_engine.*.so`) are loaded into this process under other module
names and called directly (norm_cf / norm_cl) on the same input and output
buffers, at the same SIMD level.  Per round each engine runs `reps` calls in
turn (the order alternating between rounds), and the best call of each is
kept; the table gives the best time of each over all rounds and the median of
the per-round ratios new/old with their range.  On a shared VM whose
neighbours move the L3 and the memory bandwidth from one second to the next,
per-round ratios of alternating processes spread over 0.6-1.4; here an A/A
run (OLD_ROOT = NEW_ROOT) reads medians of 0.98-1.03 (benchmarks/README.md,
round 16).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ACT = {"none": 0, "relu": 1, "leaky_relu": 2, "silu": 3}
CODES = {"float16": 0, "float32": 1, "float64": 2}  # the engine's storage codes (fastnorm._codes)


def load(root: str, tag: str) -> Any:
    """The engine built in root/fastnorm/_cpu, as module `tag`._engine."""
    found = sorted(Path(root, "fastnorm", "_cpu").glob("_engine.*.so")) + sorted(
        Path(root, "fastnorm", "_cpu").glob("_engine.*.pyd")
    )
    if not found:
        raise SystemExit(f"no built engine under {root}/fastnorm/_cpu (build it in place first)")
    spec = importlib.util.spec_from_file_location(f"{tag}._engine", found[0])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("shapes")
    ap.add_argument("--acts", default="none")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtype", default="float32", choices=sorted(CODES), help="input and output dtype")
    ap.add_argument("--isa", default=None, help="SIMD level of both engines (default: the best here)")
    ap.add_argument(
        "--op",
        default="forward",
        choices=("forward", "backward"),
        help="the forward (norm_cf / norm_cl) or the backward (backward_cf / backward_cl, "
        "grad_out standard normal, no weight)",
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    old = load(a.old, "fn_ab_old")
    engines = [old, old if Path(a.old).resolve() == Path(a.new).resolve() else load(a.new, "fn_ab_new")]
    if a.isa:
        for e in engines:
            e.configure(isa=a.isa)
    print(f"level {engines[0].config()['isa']}, {a.rounds} rounds of {a.reps} calls each")
    print("| shape | activation | threads | old ms | new ms | new/old (median) | range |")
    print("|---|---|---|---|---|---|---|")
    for spec in a.shapes.split(","):
        dims, axis = spec.split(":")
        shape = tuple(int(v) for v in dims.split("x"))
        cl = axis == "-1"
        x = (1 + np.random.default_rng(0).standard_normal(shape)).astype(a.dtype)
        code = CODES[a.dtype]
        y = np.empty_like(x)
        dy = np.random.default_rng(1).standard_normal(shape).astype(a.dtype)
        N, C = shape[0], shape[-1] if cl else shape[1]
        S = x.size // (N * C)
        gw, gb = np.empty(shape[-1] if cl else shape[1]), np.empty(shape[-1] if cl else shape[1])
        for act in a.acts.split(",") if a.op == "forward" else ["none"]:
            for nt in (int(t) for t in a.threads.split(",")):

                def run(e: Any) -> None:
                    if a.op == "backward":
                        if cl:
                            e.backward_cl(x, dy, y, code, N, S, C, C, None, 1e-5, nt, gw, gb)
                        else:
                            e.backward_cf(x, dy, y, code, N, C, 1, S, None, 1e-5, nt, gw, gb)
                    elif cl:
                        e.norm_cl(x, y, code, code, N, S, C, C, None, None, 1e-5, ACT[act], 0.01, nt, None)
                    else:
                        e.norm_cf(x, y, code, code, N, C, 1, S, None, None, 1e-5, ACT[act], 0.01, nt, None)

                for e in engines:
                    run(e)
                best: list[list[float]] = [[], []]
                for r in range(a.rounds):
                    order = (0, 1) if r % 2 == 0 else (1, 0)
                    got = [1e9, 1e9]
                    for i in order:
                        for _ in range(a.reps):
                            t0 = time.perf_counter()
                            run(engines[i])
                            got[i] = min(got[i], time.perf_counter() - t0)
                    best[0].append(got[0])
                    best[1].append(got[1])
                ratios = [n / o for o, n in zip(best[0], best[1])]
                name = f"{dims} {'NHWC' if cl else 'NCHW'} {a.dtype}" + (" backward" if a.op == "backward" else "")
                print(
                    f"| {name} | {act} | {nt} | {min(best[0]) * 1e3:.3f} | {min(best[1]) * 1e3:.3f} | "
                    f"{statistics.median(ratios):.3f} | {min(ratios):.2f}-{max(ratios):.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
