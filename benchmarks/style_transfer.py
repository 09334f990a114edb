"""End-to-end: a Johnson et al. style-transfer network on CPU, torch's own
InstanceNorm2d vs fastnorm.torch.convert(), both memory formats.

    python benchmarks/style_transfer.py [--size 256] [--threads N] [--repeat 7]

style_network() is also the network of tests/test_torch.py (imported from
here, as benchmarks.style_transfer, with the repository root on sys.path).
"""

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

import fastnorm.torch as fnt


# A style-transfer network of the Johnson et al. (2016) kind: conv + instance
# norm + ReLU, residual blocks, upsampling; random weights.
def style_network(channels=(32, 64, 128), res_blocks=5):
    c1, c2, c3 = channels

    def conv(ci, co, k, s=1):
        return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(ci, co, k, s))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(
                conv(c, c, 3),
                nn.InstanceNorm2d(c, affine=True),
                nn.ReLU(),
                conv(c, c, 3),
                nn.InstanceNorm2d(c, affine=True),
            )

        def forward(self, x):
            return x + self.body(x)

    class Up(nn.Module):
        def __init__(self, ci, co):
            super().__init__()
            self.conv = conv(ci, co, 3)

        def forward(self, x):
            return self.conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))

    layers = [
        conv(3, c1, 9),
        nn.InstanceNorm2d(c1, affine=True),
        nn.ReLU(),
        conv(c1, c2, 3, 2),
        nn.InstanceNorm2d(c2, affine=True),
        nn.ReLU(),
        conv(c2, c3, 3, 2),
        nn.InstanceNorm2d(c3, affine=True),
        nn.ReLU(),
    ]
    layers += [Res(c3) for _ in range(res_blocks)]
    layers += [
        Up(c3, c2),
        nn.InstanceNorm2d(c2, affine=True),
        nn.ReLU(),
        Up(c2, c1),
        nn.InstanceNorm2d(c1, affine=True),
        nn.ReLU(),
        conv(c1, 3, 9),
    ]
    net = nn.Sequential(*layers)
    with torch.no_grad():  # random affine so the norm layers matter
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net


def bench(net, x, repeat):
    with torch.inference_mode():
        net(x)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            net(x)
            ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_train(net, x, target, repeat):
    """Median seconds of one training step: forward, MSE loss, backward, SGD."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), target).backward()
        opt.step()

    step()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def train_and_compile(base, x, repeat):
    """Training step and torch.compile'd inference, torch vs convert(), both memory formats."""
    target = torch.rand_like(x)
    rows = []
    for fmt_name, fmt in (
        ("contiguous (NCHW)", torch.contiguous_format),
        ("channels_last (NHWC)", torch.channels_last),
    ):
        xin, tin = x.to(memory_format=fmt), target.to(memory_format=fmt)
        ref_net = copy.deepcopy(base).to(memory_format=fmt)
        fast = fnt.convert(copy.deepcopy(base)).to(memory_format=fmt)
        t_ref = bench_train(ref_net, xin, tin, repeat)
        t_fast = bench_train(fast, xin, tin, repeat)
        cref = torch.compile(copy.deepcopy(base).eval().to(memory_format=fmt), fullgraph=True)
        cfast = torch.compile(fnt.convert(copy.deepcopy(base).eval()).to(memory_format=fmt), fullgraph=True)
        c_ref = bench(cref, xin, repeat)
        c_fast = bench(cfast, xin, repeat)
        rows.append((fmt_name, t_ref, t_fast, c_ref, c_fast))
    print(
        "| memory format | train step torch ms | convert() ms | speed-up | compiled inference torch ms | "
        "convert() ms | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, tr, tf, cr, cf in rows:
        print(
            f"| {name} | {tr * 1e3:.1f} | {tf * 1e3:.1f} | {tr / tf:.2f}x | {cr * 1e3:.1f} | {cf * 1e3:.1f} | "
            f"{cr / cf:.2f}x |"
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument(
        "--train", action="store_true", help="also time a training step and torch.compile(fullgraph=True) inference"
    )
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = style_network().eval()
    x = torch.rand(1, 3, a.size, a.size)
    rows = []
    for fmt_name, fmt in (
        ("contiguous (NCHW)", torch.contiguous_format),
        ("channels_last (NHWC)", torch.channels_last),
    ):
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
        print(
            f"| {name} | {tr * 1e3:.1f} | {tf * 1e3:.1f} | {tr / tf:.2f}x | {tu * 1e3:.1f} | {tr / tu:.2f}x | {e:.1e} |"
        )
    if a.train:
        print()
        train_and_compile(base, x, a.repeat)


if __name__ == "__main__":
    main()
