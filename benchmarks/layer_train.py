"""A training step (forward and backward) of the norm layers of the CycleGAN
generator: torch's InstanceNorm2d + ReLU (+ ReflectionPad2d) against the
layer converted with fuse_activations and fuse_padding; ms, best of 3 medians
of 12 in alternating order.

    python benchmarks/layer_train.py THREADS
"""

import sys
import time
import warnings

import torch

import fastnorm.torch as ft

warnings.filterwarnings("ignore")


def block(C: int, pad: bool) -> torch.nn.Sequential:
    m = [torch.nn.InstanceNorm2d(C), torch.nn.ReLU(True)]
    if pad:
        m.append(torch.nn.ReflectionPad2d(1))
    return torch.nn.Sequential(*m)


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    cases = [((1, 64, 256, 256), False), ((1, 128, 128, 128), False), ((1, 256, 64, 64), True)]
    cases.append(((1, 256, 64, 64), False))
    for shape, pad in cases:
        for fmt in (torch.contiguous_format, torch.channels_last):
            tm = block(shape[1], pad)
            fm = ft.convert(block(shape[1], pad), fuse_activations=True, fuse_padding=True)
            x0 = torch.randn(*shape).contiguous(memory_format=fmt)
            res: dict[str, list[float]] = {}
            for _ in range(3):
                for name, m in (("torch", tm), ("fastnorm", fm)):
                    x = x0.clone().requires_grad_(True)
                    g = torch.randn_like(m(x))
                    ts = []
                    for _ in range(12):
                        t = time.perf_counter()
                        m(x).backward(g)
                        ts.append(time.perf_counter() - t)
                    res.setdefault(name, []).append(sorted(ts)[len(ts) // 2])
            t_, f_ = min(res["torch"]), min(res["fastnorm"])
            fmt_name = "NHWC" if fmt == torch.channels_last else "NCHW"
            print(
                shape,
                "pad" if pad else "   ",
                fmt_name,
                f"torch {t_ * 1e3:.2f} ms fastnorm {f_ * 1e3:.2f} ms  x{t_ / f_:.2f}",
            )


if __name__ == "__main__":
    main()
