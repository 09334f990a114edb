"""An instance norm, its ReLU and the next convolution's reflection pad, three
ways, each torch.compile(fullgraph=True)'d, on the padded layers of the
benchmark networks (benchmarks/networks.py), both memory formats:

- torch: ``F.pad(F.relu(F.instance_norm(x)), mode="reflect")`` (inductor's code);
- unfused: fastnorm's operator with the fused ReLU, then torch's pad (what
  ``convert(fuse_activations=True)`` runs);
- fused: ``fastnorm::instance_norm_pad`` (``convert(fuse_padding=True)``).

    python benchmarks/pad_fusion.py --threads 2      # FASTNORM_ISA=x86-64 for another level

Prints ms (best of 3 medians of 25, the three forms in alternating order)
and the ratios unfused / fused and torch / fused.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import fastnorm.torch  # noqa: F401  (registers the operators)
from fastnorm._cpu import _engine as E

SHAPES = (((1, 256, 64, 64), 1), ((1, 64, 256, 256), 3), ((1, 128, 128, 128), 1), ((4, 256, 64, 64), 1))


def _median_ms(f, x, rep=25):
    f(x)
    f(x)
    ts = []
    for _ in range(rep):
        t0 = time.perf_counter()
        f(x)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def forms(p):
    pad = [p] * 4

    def torch_form(x):
        return F.pad(F.relu(F.instance_norm(x)), pad, mode="reflect")

    def unfused(x):
        return F.pad(torch.ops.fastnorm.instance_norm(x, None, None, 1e-5, "relu", 0.01), pad, mode="reflect")

    def fused(x):
        return torch.ops.fastnorm.instance_norm_pad(x, None, None, 1e-5, "relu", 0.01, pad)

    return {
        k: torch.compile(f, fullgraph=True) for k, f in (("torch", torch_form), ("unfused", unfused), ("fused", fused))
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}, level {E.config()['isa']}")
    print("| shape | format | torch ms | unfused ms | fused ms | unfused / fused | torch / fused |")
    print("|---|---|---|---|---|---|---|")
    for shape, p in SHAPES:
        for name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            x = torch.randn(*shape).to(memory_format=fmt)
            fs = forms(p)
            with torch.inference_mode():
                r = {k: [] for k in fs}
                for _ in range(3):
                    for k, f in fs.items():
                        r[k].append(_median_ms(f, x))
            m = {k: min(v) for k, v in r.items()}
            print(
                f"| {shape} pad {p} | {name} | {m['torch']:.3f} | {m['unfused']:.3f} | {m['fused']:.3f} | "
                f"{m['unfused'] / m['fused']:.2f} | {m['torch'] / m['fused']:.2f} |"
            )


if __name__ == "__main__":
    main()
