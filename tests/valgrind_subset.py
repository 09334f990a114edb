"""A small workload for `valgrind --tool=memcheck` (see .ci/valgrind.sh):
every public function, both layouts, every dtype, odd sizes and tails."""

import numpy as np

import fastnorm

rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64, np.float16):
    for shape in [(2, 3, 5, 7), (1, 17, 33), (3, 2, 40, 41), (1, 1, 70001)]:
        x = (rng.standard_normal(shape) + 2).astype(dtype)
        for ax in (1, -1):
            xx = x if ax == 1 else np.ascontiguousarray(np.moveaxis(x, 1, -1))
            C = xx.shape[ax]
            w = np.linspace(0.5, 2, C)
            for nt in (1, 2):
                fastnorm.instance_norm(xx, w, w, channel_axis=ax, activation="silu", num_threads=nt)
                fastnorm.group_norm(xx, 1, channel_axis=ax, num_threads=nt)
                fastnorm.instance_stats(xx, channel_axis=ax, num_threads=nt)
                m = fastnorm.instance_moments(xx, channel_axis=ax, num_threads=nt)
                fastnorm.normalize(xx, m.mean, m.var, channel_axis=ax, num_threads=nt)
                fastnorm.adain(xx, xx[:1], channel_axis=ax, alpha=0.5, num_threads=nt)
            y = xx.copy()
            fastnorm.instance_norm(y, out=y, channel_axis=ax)
            fastnorm.instance_norm(xx[..., ::-1], channel_axis=ax)
print("valgrind subset done")
