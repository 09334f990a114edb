"""A/B timing of one build (the tree on PYTHONPATH): fraction of the faster
parallel copy, for the standard shapes, both layouts, allocating call and out=.
usage: ab.py THREADS [dtype] ; prints one JSON line."""

import json
import sys
import time

import numpy as np

import fastnorm
from fastnorm._cpu import _engine as E

nt = int(sys.argv[1])
dt = np.dtype(sys.argv[2] if len(sys.argv) > 2 else "float32")
S = {
    "S1": (1, 64, 256, 256),
    "S2": (8, 128, 64, 64),
    "S3": (32, 256, 16, 16),
    "S4": (1, 3, 1080, 1920),
    "S5": (2, 16, 64, 64, 64),
    "S6": (1, 32, 512, 512),
}


def med(fn, reps=7, mt=0.03):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    k = max(1, int(mt / max(one, 1e-9)))
    out = []
    for _ in range(reps):
        for _ in range(min(k, 8)):
            fn()
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        out.append((time.perf_counter() - t0) / k)
    return float(np.median(out))


res = {}
for name, sh in S.items():
    for lay in ("cf", "cl"):
        x = (np.random.default_rng(0).standard_normal(sh) * 3 + 5).astype(dt)
        ca = 1
        if lay == "cl":
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
            ca = -1
        y = np.empty_like(x)
        d = np.empty_like(x)
        tc = min(med(lambda: E.parallel_copy(x, d, nt, 0)), med(lambda: E.parallel_copy(x, d, nt, 1)))
        to = med(lambda: fastnorm.instance_norm(x, channel_axis=ca, out=y, num_threads=nt))
        ta = med(lambda: fastnorm.instance_norm(x, channel_axis=ca, num_threads=nt))
        res[f"{name} {lay}"] = (round(tc / to, 3), round(tc / ta, 3))
print(json.dumps(res))
