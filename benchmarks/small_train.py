"""Eager training steps of one small norm layer: torch's module against the
same module through fastnorm.torch.convert() (``y = m(x); y.backward(g)``,
us per step, best of 5 repeats of 300; also the forward alone with and
without autograd).

    python benchmarks/small_train.py
"""

import timeit
import warnings

import torch

import fastnorm.torch as ft

warnings.filterwarnings("ignore")


def _time(f, number=300):
    for _ in range(50):
        f()
    return min(timeit.repeat(f, number=number, repeat=5)) / number * 1e6


def main() -> None:
    cases = [
        ("InstanceNorm2d", (1, 4, 8, 8), lambda C: torch.nn.InstanceNorm2d(C, affine=True)),
        ("InstanceNorm2d", (1, 64, 32, 32), lambda C: torch.nn.InstanceNorm2d(C, affine=True)),
        ("GroupNorm(8)", (1, 32, 8, 8), lambda C: torch.nn.GroupNorm(8, C)),
        ("GroupNorm(8)", (1, 64, 32, 32), lambda C: torch.nn.GroupNorm(8, C)),
    ]
    for label, shape, make in cases:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)
        for name in ("torch", "fn"):
            m = make(shape[1])
            if name == "fn":
                m = ft.convert(torch.nn.Sequential(m))

            def step(m=m):
                m(x).backward(g)

            def nograd(m=m):
                with torch.no_grad():
                    m(x)

            print(label, shape, name, f"step {_time(step):.1f} us  forward {_time(lambda m=m: m(x)):.1f} us", end="")
            print(f"  forward without autograd {_time(nograd):.1f} us")


if __name__ == "__main__":
    main()
