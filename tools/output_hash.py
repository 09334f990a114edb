"""One hash of fastnorm's outputs over every public function, layout, dtype and
thread count, through NumPy, torch tensors and Dask arrays (where installed).

A refactor that must not change behaviour prints the same hash before and
after:  python tools/output_hash.py   (add -v for one hash per function).
"""

import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastnorm

try:
    import ml_dtypes

    DTYPES = [np.float16, np.float32, np.float64, ml_dtypes.bfloat16]
except ImportError:
    DTYPES = [np.float16, np.float32, np.float64]


def _bytes(a):
    if isinstance(a, (tuple, list)):
        return b"".join(_bytes(v) for v in a)
    if isinstance(a, fastnorm.Moments):
        return _bytes((a.count, a.mean, a.m2))
    if hasattr(a, "compute"):
        a = a.compute()
    if hasattr(a, "detach"):
        import torch

        t = a.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        a = t.contiguous().numpy()
    a = np.asarray(a)
    return str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def cases():
    rng = np.random.default_rng(20261129)
    shapes = [(2, 4, 7, 9), (3, 6, 40, 33), (1, 8, 300, 70), (2, 2, 5000), (4, 64, 3, 3), (1, 1, 17)]
    for shape in shapes:
        C = shape[1]
        w = rng.standard_normal(C)
        b = rng.standard_normal(C)
        m = rng.standard_normal((shape[0], C))
        v = rng.random((shape[0], C)) + 0.1
        for dt in DTYPES:
            x = (rng.standard_normal(shape) * 3 + 50).astype(dt)
            style = (rng.standard_normal((1,) + shape[1:]) * 2 - 7).astype(dt)
            for cl in (False, True):
                ax = -1 if cl else 1
                xx = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x
                ss = np.ascontiguousarray(np.moveaxis(style, 1, -1)) if cl else style
                for nt in (1, 2, 3):
                    tag = f"{shape} {np.dtype(dt)} cl={cl} nt={nt}"
                    for act in (None, "relu", "leaky_relu", "silu"):
                        yield (
                            "instance_norm",
                            tag + act.__repr__(),
                            lambda xx=xx, act=act: fastnorm.instance_norm(
                                xx, w, b, channel_axis=ax, activation=act, num_threads=nt
                            ),
                        )
                    yield (
                        "instance_norm",
                        tag,
                        lambda xx=xx: fastnorm.instance_norm(xx, channel_axis=ax, num_threads=nt),
                    )
                    if C % 2 == 0:
                        yield (
                            "group_norm",
                            tag,
                            lambda xx=xx: fastnorm.group_norm(
                                xx, C // 2, w, b, channel_axis=ax, num_threads=nt, activation="silu"
                            ),
                        )
                    yield (
                        "instance_stats",
                        tag,
                        lambda xx=xx: fastnorm.instance_stats(xx, channel_axis=ax, num_threads=nt),
                    )
                    yield (
                        "instance_moments",
                        tag,
                        lambda xx=xx: fastnorm.instance_moments(xx, channel_axis=ax, num_threads=nt),
                    )
                    yield (
                        "normalize",
                        tag,
                        lambda xx=xx: fastnorm.normalize(
                            xx, m, v, w, b, channel_axis=ax, num_threads=nt, activation="leaky_relu"
                        ),
                    )
                    yield (
                        "adain",
                        tag,
                        lambda xx=xx, ss=ss: fastnorm.adain(xx, ss, channel_axis=ax, alpha=0.7, num_threads=nt),
                    )
            yield (
                "InstanceNorm",
                f"{shape} {np.dtype(dt)}",
                lambda x=x: fastnorm.InstanceNorm(C, affine=True, track_running_stats=True)(x, training=True),
            )


def main():
    verbose = "-v" in sys.argv
    per = {}
    for fn, tag, call in cases():
        h = per.setdefault(fn, hashlib.sha256())
        h.update(tag.encode())
        try:
            h.update(_bytes(call()))
        except Exception as e:  # an error is an output too
            h.update(f"{type(e).__name__}: {e}".encode())
    # through the interop layers: torch tensors and Dask arrays
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 20, 24)).astype(np.float32) * 4 + 3
    w = rng.standard_normal(6)
    try:
        import torch

        t = torch.from_numpy(x)
        tl = t.contiguous(memory_format=torch.channels_last)
        h = per.setdefault("torch", hashlib.sha256())
        for xt in (t, tl, t.to(torch.bfloat16), t.half()):
            with torch.no_grad():
                for out in (
                    fastnorm.instance_norm(xt, torch.from_numpy(w)),
                    fastnorm.group_norm(xt, 3),
                    fastnorm.instance_stats(xt),
                    fastnorm.adain(xt, xt[:1]),
                    fastnorm.normalize(xt, *fastnorm.instance_stats(xt)),
                ):
                    h.update(_bytes(out))
    except ImportError:
        pass
    try:
        import dask
        import dask.array as da

        h = per.setdefault("dask", hashlib.sha256())
        with dask.config.set(scheduler="synchronous"):
            for chunks in ((1, 3, 20, 24), (2, 6, 7, 24)):
                d = da.from_array(x, chunks=chunks)
                for out in (
                    fastnorm.instance_norm(d, w),
                    fastnorm.group_norm(d, 3),
                    fastnorm.instance_stats(d),
                    fastnorm.instance_moments(d),
                    fastnorm.adain(d, d[:1]),
                    fastnorm.normalize(d, *fastnorm.instance_stats(x)),
                ):
                    h.update(_bytes(out))
    except ImportError:
        pass
    total = hashlib.sha256()
    for fn in sorted(per):
        d = per[fn].hexdigest()[:16]
        total.update(d.encode())
        if verbose:
            print(f"{fn:18s} {d}")
    print(total.hexdigest()[:16])


if __name__ == "__main__":
    main()
