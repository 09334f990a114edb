"""End-to-end: a Johnson et al. style-transfer network on CPU, torch's own
InstanceNorm2d vs fastnorm.torch.convert(), both memory formats.

    python benchmarks/style_transfer.py [--size 256] [--threads N] [--repeat 7]
"""
import argparse
import copy
import time

import numpy as np
import torch

import fastnorm.torch as fnt
from fastnorm._demo import style_network


def bench(net, x, repeat):
    with torch.inference_mode():
        net(x)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            net(x)
            ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = style_network().eval()
    x = torch.rand(1, 3, a.size, a.size)
    rows = []
    for fmt_name, fmt in (("contiguous (NCHW)", torch.contiguous_format), ("channels_last (NHWC)", torch.channels_last)):
        ref_net = copy.deepcopy(base).to(memory_format=fmt)
        xin = x.to(memory_format=fmt)
        fast = fnt.convert(copy.deepcopy(base), fuse_activations=False).to(memory_format=fmt)
        fused = fnt.convert(copy.deepcopy(base), fuse_activations=True).to(memory_format=fmt)
        with torch.inference_mode():
            ref = ref_net(xin)
            err = max((fast(xin) - ref).abs().max().item(), (fused(xin) - ref).abs().max().item())
        t_ref = bench(ref_net, xin, a.repeat)
        t_fast = bench(fast, xin, a.repeat)
        t_fused = bench(fused, xin, a.repeat)
        rows.append((fmt_name, t_ref, t_fast, t_fused, err))
    print(f"style network, 1x3x{a.size}x{a.size}, {torch.get_num_threads()} threads, median of {a.repeat}")
    print("| memory format | torch ms | fastnorm convert() ms | speed-up | + fused ReLU ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name, tr, tf, tu, e in rows:
        print(f"| {name} | {tr * 1e3:.1f} | {tf * 1e3:.1f} | {tr / tf:.2f}x | {tu * 1e3:.1f} | {tr / tu:.2f}x | {e:.1e} |")


if __name__ == "__main__":
    main()
