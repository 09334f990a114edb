"""One hash of fastnorm's outputs over every public function, layout, dtype and
thread count, through NumPy, torch tensors and Dask arrays.

A refactor that must not change behaviour prints the same hash before and
after:  python tools/output_hash.py   (add -v for one hash per function).

The hash covers outputs only.  A case that raises is listed (on stderr, with
its own hash) and the tool exits 1; fastnorm or its engine not importable
exits 2, and so does an expected array library that is missing: torch, dask
and ml_dtypes unless --expect names others (--expect "" for none) or
--allow-missing is given.  The line before the hash says which array libraries
the hash covers: hashes are comparable only between runs with the same line.

Options
  -v                one hash per function
  --expect LIBS     comma-separated libraries that must be importable
                    (default torch,dask,ml_dtypes)
  --allow-missing   hash without the expected libraries that are missing
  --only NAMES      comma-separated functions (as -v names them) to hash alone
  --threads LIST    comma-separated thread counts (default 1,2,3): every
                    case runs with each and must give the same bytes (a
                    difference is reported like an exception); the hash
                    does not depend on the list
  --tuning SPEC     plan thresholds to force first, KEY=VALUE,... with the
                    keywords of fastnorm._cpu._engine._tuning (for example
                    wave_bytes=4096,ct_round_bytes=1): every plan gives the
                    same hash
"""

import argparse
import hashlib
import importlib
import importlib.machinery
import os
import sys

import numpy as np

# The checkout this tool belongs to, first where its engine is built; else
# last, so an installed fastnorm (an sdist's or a wheel's tests) is the one
# hashed rather than the unbuilt sources beside the tool.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if any(
    os.path.exists(os.path.join(_ROOT, "fastnorm", "_cpu", "_engine" + ext))
    for ext in importlib.machinery.EXTENSION_SUFFIXES
):
    sys.path.insert(0, _ROOT)
else:
    sys.path.append(_ROOT)

OPTIONAL = ("torch", "dask", "ml_dtypes")


def _fail(msg):
    print(f"output_hash: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import fastnorm
    from fastnorm._cpu import _engine
except Exception as e:  # any failure to import is fatal here
    _fail(f"fastnorm cannot be imported ({type(e).__name__}: {e}); build the engine first")

DTYPES = [np.float16, np.float32, np.float64]


def _libraries(expect, allow_missing):
    """{name: version} of the optional array libraries that import; exits 2
    where an expected one does not (unless allow_missing)."""
    have, missing = {}, {}
    for name in OPTIONAL + tuple(n for n in expect if n not in OPTIONAL):
        try:
            mod = importlib.import_module(name)
            have[name] = getattr(mod, "__version__", "?")
        except Exception as e:  # a broken install counts as missing
            missing[name] = f"{type(e).__name__}: {e}"
    for name in expect:
        if name in missing and not allow_missing:
            _fail(f"expected library {name} cannot be imported ({missing[name]}); install it, or pass --allow-missing")
    return have, missing


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
                tag = f"{shape} {np.dtype(dt)} cl={cl}"
                for act in (None, "relu", "leaky_relu", "silu"):
                    yield (
                        "instance_norm",
                        tag + act.__repr__(),
                        lambda nt, xx=xx, act=act: fastnorm.instance_norm(
                            xx, w, b, channel_axis=ax, activation=act, num_threads=nt
                        ),
                    )
                yield (
                    "instance_norm",
                    tag,
                    lambda nt, xx=xx: fastnorm.instance_norm(xx, channel_axis=ax, num_threads=nt),
                )
                if C % 2 == 0:
                    yield (
                        "group_norm",
                        tag,
                        lambda nt, xx=xx: fastnorm.group_norm(
                            xx, C // 2, w, b, channel_axis=ax, num_threads=nt, activation="silu"
                        ),
                    )
                yield (
                    "instance_stats",
                    tag,
                    lambda nt, xx=xx: fastnorm.instance_stats(xx, channel_axis=ax, num_threads=nt),
                )
                yield (
                    "instance_moments",
                    tag,
                    lambda nt, xx=xx: fastnorm.instance_moments(xx, channel_axis=ax, num_threads=nt),
                )
                yield (
                    "normalize",
                    tag,
                    lambda nt, xx=xx: fastnorm.normalize(
                        xx, m, v, w, b, channel_axis=ax, num_threads=nt, activation="leaky_relu"
                    ),
                )
                yield (
                    "adain",
                    tag,
                    lambda nt, xx=xx, ss=ss: fastnorm.adain(xx, ss, channel_axis=ax, alpha=0.7, num_threads=nt),
                )
            yield (
                "InstanceNorm",
                f"{shape} {np.dtype(dt)}",
                lambda nt, x=x: fastnorm.InstanceNorm(C, affine=True, track_running_stats=True)(x, training=True),
            )


class _Hashes:
    """Per-function output hashes, and the cases that raised (kept apart)."""

    def __init__(self, only):
        self.only = only
        self.per = {}
        self.errors = []

    def wants(self, fn):
        return self.only is None or fn in self.only

    def record(self, fn, tag, call, threads=None):
        """Hash call's output; with threads, call(nt) for each count, which
        must all give the same bytes (the output is hashed once)."""
        if not self.wants(fn):
            return
        h = self.per.setdefault(fn, hashlib.sha256())
        h.update(tag.encode())
        first = None
        for nt in threads or (None,):
            try:
                out = _bytes(call() if nt is None else call(nt))
            except Exception as e:  # recorded and reported, never hashed
                self.errors.append((fn, f"{tag} nt={nt}", f"{type(e).__name__}: {e}"))
                return
            if first is None:
                first = out
            elif out != first:
                self.errors.append((fn, f"{tag} nt={nt}", f"differs from nt={threads[0]}"))
                return
        h.update(first)


def _interop(hs, have):
    """The torch tensor and Dask array cases (where the library is present)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 20, 24)).astype(np.float32) * 4 + 3
    w = rng.standard_normal(6)
    if "torch" in have and hs.wants("torch"):
        import torch

        t = torch.from_numpy(x)
        tl = t.contiguous(memory_format=torch.channels_last)
        for xt in (t, tl, t.to(torch.bfloat16), t.half()):
            calls = (
                lambda: fastnorm.instance_norm(xt, torch.from_numpy(w)),
                lambda: fastnorm.group_norm(xt, 3),
                lambda: fastnorm.instance_stats(xt),
                lambda: fastnorm.adain(xt, xt[:1]),
                lambda: fastnorm.normalize(xt, *fastnorm.instance_stats(xt)),
            )
            for call in calls:
                with torch.no_grad():
                    hs.record("torch", "", call)
    if "dask" in have and hs.wants("dask"):
        import dask
        import dask.array as da

        with dask.config.set(scheduler="synchronous"):
            for chunks in ((1, 3, 20, 24), (2, 6, 7, 24)):
                d = da.from_array(x, chunks=chunks)
                calls = (
                    lambda: fastnorm.instance_norm(d, w),
                    lambda: fastnorm.group_norm(d, 3),
                    lambda: fastnorm.instance_stats(d),
                    lambda: fastnorm.instance_moments(d),
                    lambda: fastnorm.adain(d, d[:1]),
                    lambda: fastnorm.normalize(d, *fastnorm.instance_stats(x)),
                )
                for call in calls:
                    hs.record("dask", "", call)


def _tuning(spec):
    """KEY=VALUE,... of _engine._tuning's keywords as a dict (ints; small_planes a bool)."""
    out = {}
    for item in spec.split(","):
        k, _, v = item.partition("=")
        k = k.strip()
        out[k] = v.strip().lower() in ("1", "true") if k == "small_planes" else int(v)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", action="store_true", help="one hash per function")
    ap.add_argument("--expect", default=",".join(OPTIONAL), help="libraries that must be importable")
    ap.add_argument("--allow-missing", action="store_true", help="hash without missing expected libraries")
    ap.add_argument("--only", default=None, help="comma-separated functions to hash alone")
    ap.add_argument("--threads", default="1,2,3", help="thread counts every case runs with (same bytes required)")
    ap.add_argument("--tuning", default="", help="plan thresholds to force, KEY=VALUE,... (_engine._tuning)")
    args = ap.parse_args(argv)
    expect = [n.strip() for n in args.expect.split(",") if n.strip()]
    have, missing = _libraries(expect, args.allow_missing)
    if "ml_dtypes" in have:
        import ml_dtypes

        DTYPES.append(ml_dtypes.bfloat16)
    hs = _Hashes(None if args.only is None else {n.strip() for n in args.only.split(",")})
    if args.tuning:
        _engine._tuning(**_tuning(args.tuning))
    threads = [int(t) for t in args.threads.split(",")]
    for fn, tag, call in cases():
        hs.record(fn, tag, call, threads)
    _interop(hs, have)
    if hs.only is not None and not hs.only <= set(hs.per):
        unknown = ", ".join(sorted(hs.only - set(hs.per)))
        print(f"output_hash: --only names no case: {unknown} (-v lists the functions)", file=sys.stderr)
        return 2
    print(f"fastnorm from {os.path.dirname(fastnorm.__file__)}, kernels {_engine.config()['isa']}")
    covered = ", ".join(f"{n} {v}" for n, v in sorted(have.items())) or "none"
    print(
        f"array libraries covered: numpy {np.__version__}, {covered}; missing: {', '.join(sorted(missing)) or 'none'}"
    )
    total = hashlib.sha256()
    for fn in sorted(hs.per):
        d = hs.per[fn].hexdigest()[:16]
        total.update(d.encode())
        if args.v:
            print(f"{fn:18s} {d}")
    status = 0
    if hs.errors:
        eh = hashlib.sha256()
        print(f"exceptions: {len(hs.errors)} cases raised (not in the output hash):", file=sys.stderr)
        for fn, tag, err in hs.errors:
            eh.update(f"{fn} {tag} {err}\n".encode())
            print(f"  {fn} {tag}: {err}", file=sys.stderr)
        print(f"exceptions hash {eh.hexdigest()[:16]}", file=sys.stderr)
        status = 1
    print(total.hexdigest()[:16])
    return status


if __name__ == "__main__":
    sys.exit(main())
