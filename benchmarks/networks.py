"""Whole networks on CPU: torch's own norm layers against fastnorm.torch.convert(),
in eager inference, a training step and torch.compile(fullgraph=True) inference,
both memory formats, on the two networks instance norm is used in most:

- ``style``: the Johnson et al. style-transfer network (benchmarks/style_transfer.py);
- ``cyclegan``: a CycleGAN ResNet generator (Zhu et al. 2017: reflection padding,
  InstanceNorm2d without affine, ReLU, 9 residual blocks, transposed convolutions).

    python benchmarks/networks.py --net cyclegan --size 256 --batch 1 [--modes eager,train,compiled]

Each row times torch's configuration and convert()'s (with its activations
and reflection pads fused, the way a deployer would use it; --no-fuse-padding:
activations only) in alternating order, median of
--repeat, in one process; the last lines compare the best configuration of
each side (any mode of the row's kind, either format).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastnorm.torch as fnt
from benchmarks.style_transfer import style_network


def cyclegan_generator(ngf=64, n_blocks=9, in_ch=3, out_ch=3):
    """The ResNet generator of CycleGAN (pytorch-CycleGAN-and-pix2pix's
    ResnetGenerator with norm='instance': affine False, no running stats)."""

    def norm(c):
        return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(
                nn.ReflectionPad2d(1),
                nn.Conv2d(c, c, 3, bias=True),
                norm(c),
                nn.ReLU(True),
                nn.ReflectionPad2d(1),
                nn.Conv2d(c, c, 3, bias=True),
                norm(c),
            )

        def forward(self, x):
            return x + self.body(x)

    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=True), norm(ngf), nn.ReLU(True)]
    for i in range(2):  # downsampling
        m = 2**i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), norm(ngf * m * 2), nn.ReLU(True)]
    layers += [Block(ngf * 4) for _ in range(n_blocks)]
    for i in range(2):  # upsampling
        m = 2 ** (2 - i)
        layers += [
            nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
            norm(ngf * m // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
    return nn.Sequential(*layers)


NETWORKS = {"style": style_network, "cyclegan": cyclegan_generator}
FORMATS = (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last))


def _time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _eager(net, x):
    def run():
        with torch.inference_mode():
            return net(x)

    return run


def _train(net, x):
    target = torch.rand_like(x)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        torch.nn.functional.mse_loss(out, target).backward()
        opt.step()

    return step


def _compiled(net, x):
    c = torch.compile(net.eval(), fullgraph=True)
    return _eager(c, x)


MODES = {"eager": _eager, "train": _train, "compiled": _compiled}


def run(net_name, size, batch, modes, repeat, threads=None, fuse_padding=True):
    """Rows (mode, format, torch s, convert() s, max abs diff of the two sides'
    outputs in that mode; NaN for a training step)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = NETWORKS[net_name]().eval()
    x = torch.rand(batch, 3, size, size)
    rows = []
    for mode in modes:
        for fmt_name, fmt in FORMATS:
            xin = x.to(memory_format=fmt)
            ref = copy.deepcopy(base).to(memory_format=fmt)
            fast = fnt.convert(copy.deepcopy(base), fuse_activations=True, fuse_padding=fuse_padding)
            fast = fast.to(memory_format=fmt)
            f_ref = MODES[mode](ref, xin)
            f_fast = MODES[mode](fast, xin)
            diff = float("nan")  # a training step returns no output
            if mode != "train":
                diff = (f_ref() - f_fast()).abs().max().item()
            t_ref = t_fast = float("inf")
            for _ in range(2):  # alternate: drift hits both sides alike
                t_ref = min(t_ref, _time(f_ref, repeat))
                t_fast = min(t_fast, _time(f_fast, repeat))
            rows.append((mode, fmt_name, t_ref, t_fast, diff))
    return rows


def table(net_name, size, batch, rows):
    lines = [
        f"{net_name}, {batch}x3x{size}x{size}, {torch.get_num_threads()} threads",
        "| mode | memory format | torch ms | convert() ms | convert() speed-up | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for mode, fmt, tr, tf, d in rows:
        ds = "-" if d != d else f"{d:.1e}"
        lines.append(f"| {mode} | {fmt} | {tr * 1e3:.1f} | {tf * 1e3:.1f} | {tr / tf:.2f}x | {ds} |")
    for kind in ("inference", "train"):
        sel = [r for r in rows if (r[0] == "train") == (kind == "train")]
        if sel:
            br = min(sel, key=lambda r: r[2])
            bf = min(sel, key=lambda r: r[3])
            lines.append(
                f"best {kind}: torch {br[0]} {br[1]} {br[2] * 1e3:.1f} ms, fastnorm {bf[0]} {bf[1]} "
                f"{bf[3] * 1e3:.1f} ms: {br[2] / bf[3]:.2f}x"
            )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="style", choices=sorted(NETWORKS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--modes", default="eager,train,compiled", help="comma list of eager, train, compiled")
    p.add_argument("--no-fuse-padding", action="store_true", help="convert() without fuse_padding (activations only)")
    a = p.parse_args(argv)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"--modes: unknown {bad}; choose from {sorted(MODES)}")
    print(table(a.net, a.size, a.batch, run(a.net, a.size, a.batch, modes, a.repeat, a.threads, not a.no_fuse_padding)))


if __name__ == "__main__":
    main()
