"""What a fused activation costs: instance_norm with none, relu and silu fused,
against the plain norm followed by torch's own SiLU in place (float32, S1 and
S3; ms, best of 3 medians of 15 in alternating order; ratio to the plain norm).

    python benchmarks/activation_cost.py THREADS     (FASTNORM_ISA=... for a level)
"""

import sys
import time
import warnings

import torch

import fastnorm as fn

warnings.filterwarnings("ignore")


def main() -> None:
    nt = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(nt)
    for shape in [(1, 64, 256, 256), (32, 256, 16, 16)]:
        x = torch.randn(*shape)
        o = torch.empty_like(x)
        forms = {
            "norm": lambda: fn.instance_norm(x, out=o, num_threads=nt),
            "norm+relu fused": lambda: fn.instance_norm(x, out=o, activation="relu", num_threads=nt),
            "norm+silu fused": lambda: fn.instance_norm(x, out=o, activation="silu", num_threads=nt),
            "norm, then torch silu_": lambda: torch.nn.functional.silu(
                fn.instance_norm(x, out=o, num_threads=nt), inplace=True
            ),
        }
        best = dict.fromkeys(forms, float("inf"))
        for _ in range(3):
            for k, f in forms.items():
                f()
                ts = []
                for _ in range(15):
                    t = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t)
                best[k] = min(best[k], sorted(ts)[len(ts) // 2])
        base = best["norm"]
        print(shape, f"{nt}T", "  ".join(f"{k} {v * 1e3:.3f} ms ({v / base:.2f})" for k, v in best.items()))


if __name__ == "__main__":
    main()
