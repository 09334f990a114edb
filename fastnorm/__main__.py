"""``python -m fastnorm bench | info`` (also the ``fastnorm`` console script)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

SHAPES_DEFAULT = "S1,S2,S3,S4,S5,S6"


def _parser():
    from . import __version__

    p = argparse.ArgumentParser(prog="fastnorm", description="fastnorm command line")
    p.add_argument("--version", action="version", version=f"fastnorm {__version__}")
    sub = p.add_subparsers(dest="cmd")
    b = sub.add_parser("bench", help="time fastnorm against a parallel copy and the installed peers")
    _bench_options(b)
    sub.add_parser("info", help="print the build configuration (show_config)")
    return p


def _bench_options(b):
    b.add_argument(
        "--suite",
        default="standard",
        choices=["standard", "images"],
        help="standard: the shapes below against the peers; images: uint8/uint16/float32 photos, "
        "batches and microscopy stacks with layout= (fastnorm.bench.images)",
    )
    b.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: OpenMP default)")
    b.add_argument("--dtype", default="float32", help="comma list of float32,float64,float16 (default float32)")
    b.add_argument("--layout", default="cf,cl", help="comma list of cf (channels first), cl (channels last)")
    b.add_argument(
        "--shapes",
        default=SHAPES_DEFAULT,
        help="comma list of S1..S6 or explicit shapes like 1x64x256x256 (channels-first order)",
    )
    b.add_argument("--repeat", type=int, default=7, help="timed samples per case (median reported)")
    b.add_argument(
        "--peers",
        default=None,
        help="comma list of numpy, torch_in (torch instance_norm), torch_gn (torch group_norm), "
        "torch_compile (torch.compile's generated instance_norm, compiled per case: seconds each), "
        "onnxruntime; or none (default: every installed one)",
    )
    b.add_argument(
        "--op",
        default="instance_norm",
        choices=["instance_norm", "group_norm", "instance_norm_backward", "group_norm_backward"],
        help="the forward, or the backward (grad_x, grad_weight, grad_bias from grad_out and x; "
        "the torch peers: their autograd backward)",
    )
    b.add_argument("--groups", type=int, default=32, help="num_groups for --op group_norm / group_norm_backward")
    b.add_argument("--activation", default=None, choices=["relu", "leaky_relu", "silu"])
    b.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    b.add_argument("--json", metavar="FILE", help="write the raw numbers as JSON")
    b.add_argument("--plot", metavar="FILE.png", help="draw GB/s per shape (needs matplotlib)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument(
        "--contention",
        action="store_true",
        help="measure with one busy process per core running (started and stopped "
        "by the bench; each also exits by itself within minutes)",
    )
    b.add_argument(
        "--isa",
        metavar="LEVEL[,LEVEL...]",
        help="run the whole bench once per SIMD level, each in a child process with "
        "FASTNORM_ISA=LEVEL (auto, or a level show_config lists for this CPU); "
        "--json then holds one entry per level, --plot writes FILE-LEVEL.png",
    )


def _shapes(spec):
    from .bench.harness import STANDARD

    out = {}
    for tok in spec.split(","):
        tok = tok.strip()
        if not tok:
            continue
        if tok.upper() in STANDARD:
            out[tok.upper()] = STANDARD[tok.upper()]
        else:
            try:
                dims = tuple(int(d) for d in tok.lower().split("x"))
            except ValueError:
                raise SystemExit(f"--shapes: cannot read {tok!r} (use S1..S6 or NxCxHxW)") from None
            if len(dims) < 3:
                raise SystemExit(f"--shapes: {tok!r} needs at least 3 dimensions")
            if min(dims) < 1:
                raise SystemExit(f"--shapes: {tok!r} has a dimension below 1")
            if math.prod(dims) > 2**40:
                raise SystemExit(f"--shapes: {tok!r} has {math.prod(dims)} elements, more than a bench can hold")
            out[tok] = dims
    if not out:
        raise SystemExit(f"--shapes: no shape in {spec!r}")
    return out


def _writable(opt, path):
    """Fail before the run, not after it, where an output file cannot be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SystemExit(f"{opt}: the folder {folder!r} does not exist; nothing was run")
    if not os.access(folder, os.W_OK):
        raise SystemExit(f"{opt}: the folder {folder!r} is not writable; nothing was run")


def _need_matplotlib():
    """--plot draws after the whole run: fail before it, not after."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--plot: needs matplotlib, which is not installed (pip install matplotlib); nothing was run"
        ) from None


def _peers(spec):
    """(peers to run, notes for the header) from --peers.  Unknown names are
    an error; a known peer that is not installed is named in a note, with how
    to install it.  Without --peers every installed peer runs and the note
    says how to add the missing ones; "none" runs fastnorm and the copies."""
    from .bench import peers as P

    installed = {p.name for p in P.PEERS if p.available()}
    if spec is None:
        missing = [n for n in P.PEER_NAMES if n not in installed]
        them = "them" if len(missing) > 1 else "it"
        notes = (
            [f"not installed: {', '.join(missing)}; {P.install_hint(missing)} to compare against {them}"]
            if missing
            else []
        )
        return P.peers_available(), notes
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        names = []
    for n in names:
        if n not in P.PEER_NAMES:
            raise SystemExit(f"--peers: unknown peer {n!r}; valid peers: {', '.join(P.PEER_NAMES)} (or none)")
    notes = [f"{n} is not installed; {P.install_hint([n])} to compare against it" for n in names if n not in installed]
    return P.peers_available(names), notes


def _isa_levels(spec):
    """The levels of --isa, checked against the ones this CPU and build can
    run (from _simd_info) before anything runs; "auto" is always valid."""
    from .bench import harness as B

    levels = [s.strip() for s in spec.split(",") if s.strip()]
    _, valid = B._simd_info()
    if not levels:
        raise SystemExit(f"--isa: no level in {spec!r}; valid levels: {', '.join(['auto'] + valid)}")
    for lev in levels:
        if levels.count(lev) > 1:
            raise SystemExit(f"--isa: {lev!r} is given twice")
        if lev == "auto" or lev in valid:
            continue
        if not valid:
            raise SystemExit(
                f"--isa: cannot run {lev!r}: this build of fastnorm does not list its "
                'SIMD levels (show_config(mode="dicts")), so only auto is valid'
            )
        raise SystemExit(f"--isa: unknown level {lev!r}; valid levels on this machine: {', '.join(['auto'] + valid)}")
    return levels


def _child_argv(args, json_path, plot_path):
    """The bench's arguments for one --isa child: every option as parsed,
    without --isa, with the child's own --json and --plot files."""
    b = argparse.ArgumentParser(add_help=False)
    _bench_options(b)
    argv = ["bench"]
    for a in b._actions:
        val = {"isa": None, "json": json_path, "plot": plot_path}.get(a.dest, getattr(args, a.dest))
        if a.nargs == 0:  # a flag
            argv += [a.option_strings[0]] if val else []
        elif val is not None:
            argv += [a.option_strings[0], str(val)]
    return argv


def _bench_per_isa(args, levels):
    """--isa: the engine picks its SIMD level once, at import, from
    FASTNORM_ISA, so each level runs the whole bench in its own child process
    (the same Python and the same fastnorm); their outputs are printed in
    turn, and with --json their numbers are merged into one file keyed by
    level.  --plot draws one file per level (FILE-LEVEL.png)."""
    import fastnorm

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))
    merged = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, lev in enumerate(levels):
            jpath = os.path.join(tmp, f"{i}.json") if args.json else None
            ppath = None
            if args.plot:
                stem, ext = os.path.splitext(args.plot)
                ppath = f"{stem}-{lev}{ext}"
            env = dict(
                os.environ,
                FASTNORM_ISA=lev,
                PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
            )
            if i:
                print()
            print(f"=== FASTNORM_ISA={lev} ===", flush=True)
            cmd = [sys.executable, "-m", "fastnorm"] + _child_argv(args, jpath, ppath)
            with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as child:
                try:
                    for line in child.stdout:
                        if jpath is None or line.rstrip("\n") != f"wrote {jpath}":
                            sys.stdout.write(line)
                    rc = child.wait()
                except BaseException:  # Ctrl-C or a broken pipe: no orphaned run
                    child.kill()
                    raise
            sys.stdout.flush()
            if rc != 0:
                raise SystemExit(f"--isa: the run with FASTNORM_ISA={lev} failed (exit status {rc})")
            if jpath:
                with open(jpath) as f:
                    merged[lev] = json.load(f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(merged, f, indent=1)
        print(f"\nwrote {args.json} (one entry per level: {', '.join(levels)})")
    return 0


def bench(args):
    from . import _threads as T
    from ._cpu import _engine as E
    from .bench import harness as B
    from .bench import peers as P

    if args.device == "gpu":
        for opt, val in (("--isa", args.isa), ("--contention", args.contention)):
            if val:
                raise SystemExit(f"{opt}: applies to the CPU bench only, not --device gpu")
        try:
            from .bench import gpu as gpu_bench
        except ImportError as e:
            raise SystemExit(f"--device gpu needs CuPy and a CUDA GPU: {e}") from None
        return gpu_bench.main(args)
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    for d in dtypes:
        if d not in B.DTYPES:
            raise SystemExit(f"--dtype: {d!r} is not one of {sorted(B.DTYPES)}")
    layouts = [d.strip() for d in args.layout.split(",") if d.strip()]
    for lay in layouts:
        if lay not in ("cf", "cl"):
            raise SystemExit(f"--layout: {lay!r} is not cf or cl")
    if not dtypes:
        raise SystemExit(f"--dtype: no dtype in {args.dtype!r}")
    if not layouts:
        raise SystemExit(f"--layout: no layout in {args.layout!r}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads: must be >= 1, got {args.threads}")
    if args.threads is not None and args.threads > T.MAX_THREADS:
        raise SystemExit(f"--threads: fastnorm uses at most {T.MAX_THREADS} threads here, got {args.threads}")
    if args.op in ("group_norm", "group_norm_backward") and args.groups < 1:
        raise SystemExit(f"--groups: must be >= 1, got {args.groups}")
    _writable("--json", args.json)
    _writable("--plot", args.plot)
    if args.repeat < 1:
        raise SystemExit(f"--repeat: must be >= 1, got {args.repeat}")
    if args.activation and args.op.endswith("_backward"):
        raise SystemExit(f"--activation: the backward ops have no fused activation (--op {args.op})")
    if args.suite == "images":
        return _bench_images(args)
    if args.plot:
        _need_matplotlib()
    peers, peer_notes = _peers(args.peers)
    shapes = _shapes(args.shapes)
    if args.op in ("group_norm", "group_norm_backward") and args.shapes != SHAPES_DEFAULT:
        # shapes the user named must fit; of the standard suite, those that do not show "-"
        for name, dims in shapes.items():
            if dims[1] % args.groups:
                raise SystemExit(f"--groups: {args.groups} does not divide the {dims[1]} channels of {name}")
    if args.isa is not None:
        return _bench_per_isa(args, _isa_levels(args.isa))
    nt = args.threads or E.default_threads()
    mach = B.machine()
    print(
        f"fastnorm bench: op={args.op}"
        + (f" (groups={args.groups})" if args.op in ("group_norm", "group_norm_backward") else "")
        + (f", activation={args.activation}" if args.activation else "")
        + f", {nt} thread(s)"
    )
    print(B.machine_line(mach))
    if mach["isa_env"] not in (None, "auto") and mach["simd_level"] not in ("unknown", mach["isa_env"]):
        print(f"warning: FASTNORM_ISA={mach['isa_env']} but the engine runs {mach['simd_level']}")
    print(f"peers: {', '.join(p.name for p in peers if p.name in P.PEER_NAMES) or 'none'}")
    for note in peer_notes:
        print(f"  {note}")
    busy = (os.cpu_count() or 1) if args.contention else 0
    if busy:
        print(
            f"under contention: {busy} busy process{'es' if busy > 1 else ''} (one per core) "
            "spinning while everything below is measured"
        )
    with B.busy_processes(busy) as procs:
        rows = B.run_suite(
            shapes,
            dtypes,
            layouts,
            nt,
            args.repeat,
            peers,
            op=args.op,
            groups=args.groups,
            activation=args.activation,
            progress=not args.quiet,
            l2_bytes=mach["l2_bytes"],
            contention=busy,
        )
        tiny = B.tiny_call_us()
        ended = sum(p.poll() is not None for p in procs)
    print(B.table(rows))
    if ended:
        print(
            f"\nwarning: {ended} of {busy} busy processes ended before the run did (each stops "
            f"after {B.BUSY_SECONDS} s); the later cases ran under less contention"
        )
    print(f"\ntiny input {B.TINY}: fastnorm {tiny['fastnorm']:.2f} us per call")
    summ = B.summary(rows)
    print("\n" + "\n".join(B.footer(summ)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"threads": nt, "machine": mach, "contention": busy, "rows": rows, "tiny_us": tiny, "summary": summ},
                f,
                indent=1,
            )
        print(f"wrote {args.json}")
    if args.plot:
        B.plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _bench_images(args):
    from ._cpu import _engine as E
    from .bench import harness as B
    from .bench import images as I

    threads = [args.threads] if args.threads else sorted({1, E.default_threads()})
    mach = B.machine()
    print("fastnorm bench --suite images: per-image, per-channel normalization, float32 out")
    print(B.machine_line(mach))
    rows = []
    for nt in threads:
        rows += I.run_images(nt, repeat=args.repeat, l2_bytes=mach["l2_bytes"], progress=not args.quiet)
    print(I.table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": mach, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def main(argv=None):
    try:
        rc = _main(argv)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could not be caught
        return rc
    except BrokenPipeError:
        # the reader went away (fastnorm info | head): stop quietly, as other
        # command-line tools do.  stdout is pointed at devnull so that the
        # interpreter's final flush of the unwritten rest does not raise again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # no real file behind stdout
            pass
        return 1


def _main(argv):
    args = _parser().parse_args(argv)
    if args.cmd == "bench":
        return bench(args)
    if args.cmd == "info" or args.cmd is None:
        from . import show_config

        show_config()
        if args.cmd is None:
            print("\nusage: python -m fastnorm bench [--help] | info")
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
