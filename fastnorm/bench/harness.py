"""Benchmark harness behind ``python -m fastnorm bench`` and benchmarks/: the
machine, the timing, the runs and their tables (the peers: fastnorm.bench.peers).

Effective bandwidth = (bytes of x read once + bytes of y written once) / median
time.  The ceiling is a parallel copy of the same bytes on the same number of
OpenMP threads (fastnorm._cpu._engine.parallel_copy), measured in the same run,
so ratios hold on any machine even when absolute times drift; within a case the
copies, fastnorm and the peers are sampled in interleaved rounds, so a burst
of noise slows all of them alike.  The limit is that copy when a statistics
unit fits in one core's L2 and 2/3 of it when it does not (limit_fraction).
fastnorm is timed as users call it, allocating its output like the peers;
the call into a preallocated out= is timed beside it (fastnorm_out).
"""

from __future__ import annotations

import contextlib
import glob
import io
import math
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

from .peers import OURS, PEER_NAMES, PEER_TITLES, peers_available

STANDARD = {
    "S1": (1, 64, 256, 256),
    "S2": (8, 128, 64, 64),
    "S3": (32, 256, 16, 16),
    "S4": (1, 3, 1080, 1920),
    "S5": (2, 16, 64, 64, 64),
    "S6": (1, 32, 512, 512),
}
TINY = (1, 4, 8, 8)
DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16}


def _cl_shape(shape):
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


DEFAULT_L2 = 1 << 20  # bytes per core when the cache size cannot be read
L2_DIR = "/sys/devices/system/cpu/cpu0/cache"


# ---------------------------------------------------------------- machine
def _simd_info():
    """(active SIMD level, levels this CPU and build can run), from
    ``fastnorm.show_config(mode="dicts")``; ("unknown", []) from a build whose
    show_config has no such mode."""
    import fastnorm

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            d = fastnorm.show_config(mode="dicts")
        return str(d["simd_level"]), [str(v) for v in d["simd_levels"]]
    except Exception:  # an older show_config: TypeError (no mode), or no such keys
        return "unknown", []


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name: /proc/cpuinfo's "model name" on Linux,
    platform.processor() elsewhere (or the machine type when that is empty)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and val.strip():
                    return val.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def parse_size(text):
    """Bytes in a cache size as sysfs writes it ("1024K", "2M", "512 KiB",
    "65536"); None when it is not a size."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", text.upper())
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def l2_cache_bytes(cache_dir=L2_DIR):
    """(bytes of one core's L2, where that came from): the level-2 data or
    unified cache in cache_dir/index*/ (Linux sysfs), else DEFAULT_L2 and
    "assumed"."""
    for d in sorted(glob.glob(os.path.join(cache_dir, "index*"))):
        try:
            with open(os.path.join(d, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(d, "size")) as f:
                size = parse_size(f.read())
            kind = ""
            if os.path.exists(os.path.join(d, "type")):
                with open(os.path.join(d, "type")) as f:
                    kind = f.read().strip()
        except OSError:
            continue
        if level == "2" and kind != "Instruction" and size:
            return size, d
    return DEFAULT_L2, "assumed"


BACKWARD_OPS = ("instance_norm_backward", "group_norm_backward")


def arrays_moved(op):
    """Arrays of x's size one call moves once: x in and y out for a forward;
    x and grad_out in, grad_x out for a backward (the copy limit moves as many
    bytes)."""
    return 3 if op in BACKWARD_OPS else 2


def unit_bytes(dims, layout, itemsize, op="instance_norm", groups=None):
    """Bytes of one statistics unit, the data one mean and variance are taken
    over: channels first, one plane (a group's C/G planes for group_norm);
    channels last, one whole instance, whose channels' sums advance together
    along it.  ``dims`` is the channels-first shape."""
    spatial = math.prod(dims[2:])
    if layout == "cl":
        n = spatial * dims[1]
    elif op in ("group_norm", "group_norm_backward"):
        n = spatial * (dims[1] // groups)
    else:
        n = spatial
    # a backward unit holds x and grad_out
    return n * itemsize * (2 if op in BACKWARD_OPS else 1)


def limit_fraction(unit_bytes, l2_bytes, op="instance_norm"):
    """The most fastnorm can reach, as a fraction of a parallel copy of the
    same bytes: a unit that fits in one core's L2 is read from memory once
    (the second pass over it hits the cache), the copy's own traffic, so
    1.0; a larger one is read twice and written once against the copy's one
    read and one write, so 2/3.  A backward reads x and grad_out twice and
    writes grad_x once past L2, against the copy's three: 3/5."""
    if unit_bytes <= l2_bytes:
        return 1.0
    return 3.0 / 5.0 if op in BACKWARD_OPS else 2.0 / 3.0


def machine():
    """What the header reports about this machine: CPU model, the active and
    the available SIMD levels, one core's L2 and where that size came from."""
    level, levels = _simd_info()
    l2, src = l2_cache_bytes()
    return {
        "cpu": cpu_model(),
        "simd_level": level,
        "simd_levels": levels,
        "isa_env": os.environ.get("FASTNORM_ISA"),
        "l2_bytes": l2,
        "l2_source": src,
    }


def machine_line(m):
    """One header line from machine(): CPU, SIMD level, L2 per core."""
    simd = m["simd_level"]
    if simd == "unknown":
        from .._config import config

        simd = f"unknown (this build reports: {config()['simd']})"
    if m.get("isa_env"):
        simd += f", FASTNORM_ISA={m['isa_env']}"
    l2 = f"{m['l2_bytes'] >> 10} KiB per core"
    l2 += " (assumed: no cache size found)" if m["l2_source"] == "assumed" else ""
    return f"CPU: {m['cpu']}; SIMD level: {simd}; L2: {l2}"


_SPATIAL = {1: "L", 2: "HW", 3: "DHW"}


def layout_words(ndim, layout):
    """The layout of an ndim array in letters: NCHW / NHWC for 4-D, NCL / NLC
    for 3-D, NCDHW / NDHWC for 5-D; other ranks in words."""
    sp = _SPATIAL.get(ndim - 2)
    if sp is None:
        return "channels first" if layout == "cf" else "channels last"
    return "NC" + sp if layout == "cf" else "N" + sp + "C"


def case_label(name, dims, layout):
    """A table row's case in words, e.g. "S1 (1, 64, 256, 256) NCHW": the
    array's own shape (channels last for cl) and its layout.  ``dims`` is the
    channels-first shape; a shape given as NxCxHxW is not named twice."""
    full = tuple(dims) if layout == "cf" else _cl_shape(tuple(dims))
    words = f"{full} {layout_words(len(full), layout)}"
    return words if name == "x".join(str(d) for d in dims) else f"{name} {words}"


def _error_text(e):
    """How a peer's failure is reported in a row's "errors"."""
    return f"{type(e).__name__}: {e}"


def _batch(fn, min_time):
    """Calls per sample so that one sample lasts >= min_time (from one timed
    call, after one warm-up call)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(min_time / max(one, 1e-9)))


def _sample(fn, k):
    """Seconds per call over k calls, after min(k, 8) untimed ones: after
    other callables ran, the caches take several calls, not one, to hold
    this one's data again (measured: S1 channels first ran 2.1x, 2.0x, 1.4x,
    1.3x, 1.1x its steady time in its first five calls after the copies)."""
    for _ in range(min(k, 8)):
        fn()
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def timeit(fn, repeat=7, min_time=0.02):
    """Median seconds per call; calls are batched so one sample lasts >= min_time."""
    k = _batch(fn, min_time)
    return float(np.median([_sample(fn, k) for _ in range(repeat)]))


def timeit_rounds(fns, repeat=7, min_time=0.02, on_round=None, samples=None):
    """Median seconds per call of each callable in ``fns`` (name -> callable),
    sampled in interleaved rounds: one sample of each callable per round.  On
    a shared machine a burst from the neighbours then slows one round of
    every callable alike, instead of every sample of one of them, so the
    ratios between them (fraction of copy, speed-ups) stay fair.  A callable
    that raises gets None and its error in the second returned dict.  A dict
    given as ``samples`` receives every callable's seconds per call, one per
    round (what spread() reads)."""
    times, errors, ks = {}, {}, {}
    if samples is None:
        samples = {}
    for name, fn in fns.items():
        try:
            ks[name] = _batch(fn, min_time)
            samples[name] = []
        except Exception as e:  # a peer that fails a case is reported, not fatal
            times[name] = None
            errors[name] = _error_text(e)
    for r in range(repeat):
        if on_round is not None:
            on_round(r)
        for name in list(samples):
            try:
                samples[name].append(_sample(fns[name], ks[name]))
            except Exception as e:  # reported, not fatal
                del samples[name]
                times[name] = None
                errors[name] = _error_text(e)
    for name, s in samples.items():
        times[name] = float(np.median(s))
    for name in times:
        if times[name] is None:
            samples.pop(name, None)
    return {name: times[name] for name in fns}, errors


def spread(samples):
    """The slowest sample over the fastest (1.0 for one sample or none)."""
    s = [v for v in samples if v and v > 0]
    return max(s) / min(s) if len(s) > 1 else 1.0


# ------------------------------------------------------------ load and noise
#: the copy is a plain stream of loads and stores: on a quiet machine its
#: samples within one case agree closely; a slowest sample this many times
#: the fastest means the ceiling itself was not measured
COPY_SPREAD_MAX = 1.5
#: cores that other processes may keep busy, on average over a case, before
#: the case counts as measured under load
OTHERS_BUSY_MAX = 0.5
#: fastnorm reads and writes at least the bytes the copy does, so its
#: bandwidth cannot exceed the copy's limit; a ratio above this (rounding
#: and the medians' own noise allowed) is a measuring error
OF_LIMIT_MAX = 1.1


def _cpu_busy_seconds(stat="/proc/stat"):
    """Seconds all CPUs have spent busy (not idle or waiting for I/O) since
    boot, from the first line of /proc/stat; None where it cannot be read."""
    try:
        with open(stat) as f:
            fields = f.readline().split()
        ticks = [int(v) for v in fields[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if fields[0] != "cpu" or len(ticks) < 5:
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait
    # guest time is already counted in user time
    busy = sum(ticks[:8]) - idle if len(ticks) >= 8 else sum(ticks) - idle
    return busy / hz


class OthersBusy:
    """Measures how many cores other processes kept busy while the block ran:
    all CPUs' busy time (/proc/stat) less this process's own CPU time (every
    thread of it), over the wall time.  ``cores`` is None where /proc/stat
    cannot be read (not Linux)."""

    def __init__(self, stat="/proc/stat"):
        self.stat = stat
        self.cores = None

    def __enter__(self):
        self._busy = _cpu_busy_seconds(self.stat)
        self._own = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = _cpu_busy_seconds(self.stat)
        wall = time.perf_counter() - self._wall
        if busy is not None and self._busy is not None and wall > 0:
            own = time.process_time() - self._own
            self.cores = max(0.0, (busy - self._busy - own) / wall)
        return False


def noise(row):
    """Why a row's ratios cannot be trusted, as phrases (empty when they can):
    the copy's samples spread more than COPY_SPREAD_MAX, other processes kept
    more than OTHERS_BUSY_MAX cores busy beyond a --contention run's own busy
    processes, or fastnorm beat the copy's limit by more than OF_LIMIT_MAX."""
    why = []
    sp = row.get("spread", {}).get("copy")
    if sp is not None and sp > COPY_SPREAD_MAX:
        why.append(f"the copy's samples varied {sp:.1f}x")
    busy = row.get("others_busy")
    if busy is not None and busy - row.get("contention", 0) > OTHERS_BUSY_MAX:
        why.append(f"other processes kept {busy:.1f} cores busy")
    ol = of_limit(row)
    if ol is not None and ol > OF_LIMIT_MAX:
        why.append(f"of limit {ol:.2f} is above the copy's ceiling")
    return why


def load_warning(rows):
    """Lines warning that the ratios were measured under load or with an
    unstable ceiling, naming the cases and suggesting a quiet rerun; [] when
    every row is clean.  table() appends them, footer() repeats the gist."""
    bad = [(r, noise(r)) for r in rows]
    bad = [(r, why) for r, why in bad if why]
    if not bad:
        return []
    lines = [
        f"warning: {len(bad)} of {len(rows)} cases (ratios marked !) were measured under load or with an "
        "unstable copy ceiling; their ratios (of copy, of limit, x PEER) are not fastnorm's and "
        "can exceed what the hardware allows:"
    ]
    for r, why in bad:
        lines.append(f"  {case_label(r['shape'], r['dims'], r['layout'])} {r['dtype']}: {'; '.join(why)}")
    lines.append(
        "Rerun on a quiet machine (no other busy processes; fewer --threads than cores if "
        "others must run) for numbers to quote."
    )
    return lines


# -------------------------------------------------------------- contention
BUSY_SECONDS = 300  # a busy process exits by itself after this, whatever its parent does

# One core's worth of work for --contention: a Python loop that says "ready"
# once it runs, then spins until its deadline passes or its parent is gone
# (os.getppid() changes when the parent dies), checking both every 2**18 turns.
_BUSY_CODE = """\
import os, sys, time
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
sys.stdout.write("ready\\n")
sys.stdout.flush()
n = 0
while True:
    n += 1
    if not n & 0x3FFFF and (time.monotonic() > deadline or os.getppid() != parent):
        break
"""


@contextlib.contextmanager
def busy_processes(n, seconds=BUSY_SECONDS):
    """Start ``n`` busy processes (a spinning Python loop each), wait until
    every one runs, yield their Popen objects, and terminate and reap them on
    the way out, however the block ends.  Each also exits by itself after
    ``seconds`` or when this process dies."""
    procs = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-S", "-c", _BUSY_CODE, str(os.getpid()), str(seconds)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                )
            )
        for p in procs:
            p.stdout.readline()  # "ready": the run starts under the full load
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()


# -------------------------------------------------------------------- runs
def run_suite(
    shapes,
    dtypes=("float32",),
    layouts=("cf", "cl"),
    threads=None,
    repeat=7,
    peers=None,
    op="instance_norm",
    groups=None,
    activation=None,
    progress=True,
    min_time=0.02,
    l2_bytes=None,
    contention=0,
):
    """Measure every (shape, layout, dtype) for fastnorm, the copies and each
    peer, in interleaved rounds (timeit_rounds): ``repeat`` samples of each.
    Each row also carries its statistics unit's bytes and the limit_fraction
    that follows from them and ``l2_bytes`` (default: l2_cache_bytes()), the
    spread of each callable's samples (``spread``), the cores other processes
    kept busy meanwhile (``others_busy``) and ``contention``, the busy
    processes the bench itself started (noise() reads these three).
    ``progress`` draws a bar on stderr, only when stderr is a terminal."""
    from .._cpu import _engine as E

    if l2_bytes is None:
        l2_bytes = l2_cache_bytes()[0]
    progress = progress and _isatty(sys.stderr)  # a bar in a log or a pipe is noise

    nt = threads or E.default_threads()
    peers = peers or peers_available()
    cases = [(sn, sh, lay, dt) for sn, sh in shapes.items() for lay in layouts for dt in dtypes]
    rows = []
    total = len(cases) * repeat
    rng = np.random.default_rng(0)
    for ci, (sn, shape, lay, dt) in enumerate(cases):
        full = shape if lay == "cf" else _cl_shape(shape)
        x = (1.0 + rng.standard_normal(full)).astype(DTYPES[dt])
        row = {
            "shape": sn,
            "dims": list(shape),
            "layout": lay,
            "dtype": dt,
            "threads": nt,
            "bytes": arrays_moved(op) * x.nbytes,
            "op": op,
            "times": {},
        }
        row["unit_bytes"] = unit_bytes(shape, lay, x.itemsize, op, groups)
        row["limit_fraction"] = limit_fraction(row["unit_bytes"], l2_bytes, op)
        fns = {}
        if progress:
            _progress(ci * repeat, total, f"{sn} {lay} {dt} setting up")
        for p in peers:
            try:
                fn = p.make(x, lay, nt, op=op, groups=groups, activation=activation)
            except Exception as e:  # a peer that cannot build this case is reported, not fatal
                fn = None
                row.setdefault("errors", {})[p.name] = _error_text(e)
            if fn is not None:
                fns[p.name] = fn

        def on_round(r, ci=ci, label=f"{sn} {lay} {dt}"):
            _progress(ci * repeat + r, total, f"{label} round {r + 1}/{repeat}")

        samples = {}
        with OthersBusy() as load:
            times, errors = timeit_rounds(
                fns, repeat=repeat, min_time=min_time, on_round=on_round if progress else None, samples=samples
            )
        row["times"].update(times)
        row["spread"] = {name: spread(v) for name, v in samples.items()}
        row["others_busy"] = load.cores
        row["contention"] = contention
        if errors:
            row.setdefault("errors", {}).update(errors)
        del fns  # the peers' output buffers go before the next case allocates its own
        _best_copy(row["times"], row["spread"])
        rows.append(row)
    if progress:
        _progress(total, total, "done")
        sys.stderr.write("\n")
    return rows


def _best_copy(times, spreads=None):
    """The ceiling is the faster of the two copies: times["copy"] becomes that
    one; the memcpy one is kept as "copy_memcpy" (the streaming one stays
    "copy_nt").  ``spreads`` (name -> spread) follows the same renaming."""
    tm, tn = times.get("copy"), times.get("copy_nt")
    if tm is not None and tn is not None:
        times["copy_memcpy"] = tm
        times["copy"] = min(tm, tn)
        if spreads is not None and "copy" in spreads and "copy_nt" in spreads:
            spreads["copy_memcpy"] = spreads["copy"]
            if tn < tm:
                spreads["copy"] = spreads["copy_nt"]


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _progress(i, n, label):
    """Redraw the progress bar on stderr (run_suite calls it only on a terminal)."""
    w = 30
    f = int(w * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * f}{'.' * (w - f)}] {i}/{n} {label:<40.40}")
    sys.stderr.flush()


def tiny_call_us(repeat=7):
    import fastnorm

    x = np.random.default_rng(0).standard_normal(TINY).astype(np.float32)
    out = {"fastnorm": timeit(lambda: fastnorm.instance_norm(x), repeat=repeat, min_time=0.05) * 1e6}
    return out


def of_copy(row):
    """fastnorm's effective bandwidth over the copy's (None when either is missing)."""
    tf, tc = row["times"].get("fastnorm"), row["times"].get("copy")
    return tc / tf if tf and tc else None


def of_limit(row):
    """fastnorm's effective bandwidth over the limit's: the copy's times the
    row's limit_fraction (None when any of them is missing)."""
    oc, lf = of_copy(row), row.get("limit_fraction")
    return oc / lf if oc is not None and lf else None


def table(rows, peers=None):
    """Markdown table: time, GB/s, fraction of copy, speed-up over each peer."""
    names = []
    for r in rows:
        for k in r["times"]:
            if k not in OURS and not k.startswith("copy") and k not in names:
                names.append(k)
    if peers:
        names = [n for n in names if n in peers]
    head = ["shape and layout", "dtype", "fastnorm ms", "out= ms", "GB/s", "copy GB/s", "of copy", "of limit"]
    head += [f"x {n}" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["times"]
        tf = t.get("fastnorm")
        to = t.get("fastnorm_out")
        tc = t.get("copy")
        gbs = lambda s: r["bytes"] / s / 1e9 if s else float("nan")  # noqa: E731
        mark = " !" if noise(r) else ""  # load_warning() below says why
        cells = [
            case_label(r["shape"], r["dims"], r["layout"]),
            r["dtype"],
            f"{tf * 1e3:.3f}" if tf else "-",
            f"{to * 1e3:.3f}" if to else "-",
            f"{gbs(tf):.1f}" if tf else "-",
            f"{gbs(tc):.1f}" if tc else "-",
            f"{tc / tf:.2f}{mark}" if tf and tc else "-",
            f"{of_limit(r):.2f}{mark}" if of_limit(r) is not None else "-",
        ]
        for n in names:
            tp = t.get(n)
            cells.append(f"{tp / tf:.1f} ({gbs(tp):.1f})" if tp and tf else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    op = rows[0].get("op", "instance_norm") if rows else "instance_norm"
    if op in BACKWARD_OPS:
        lines.append(
            f"fastnorm ms: grad_x, grad_weight, grad_bias = fastnorm.{op}(grad_out, x), "
            "allocating grad_x; the torch peers: the backward alone of their op with weight "
            "and bias requiring grad (autograd.grad of a retained graph)."
        )
        lines.append(
            "of copy: fastnorm's GB/s over a parallel copy's of the same bytes (x and grad_out "
            "in, grad_x out); of limit: over the copy's when a unit's x and grad_out fit in one "
            "core's L2, else over 3/5 of it (x and grad_out read twice, grad_x written once)."
        )
    else:
        lines.append(
            f"fastnorm ms: y = fastnorm.{op}(x), allocating y as the peers do; "
            "out= ms: the same call writing into a preallocated out=."
        )
        lines.append(
            "of copy: fastnorm's GB/s over a parallel copy's of the same bytes; of limit: over "
            "the copy's when a statistics unit (a plane channels first, an instance channels "
            "last) fits in one core's L2, else over 2/3 of it (x read twice, y written once)."
        )
    lines.append(
        "x PEER = PEER's time / fastnorm's time (PEER's GB/s in brackets); GB/s = (bytes in + bytes out) / median time."
    )
    warn = load_warning(rows)
    if warn:
        lines += [""] + warn
    return "\n".join(lines)


def summary(rows):
    """Per layout: the fraction of copy and of limit (min, median, max) and
    each peer's speed-up x PEER (min, median, max, number of cases), all from
    the allocating fastnorm call.  The numbers behind footer() and --json."""
    out = {}
    for lay in ("cf", "cl"):
        rs = [r for r in rows if r["layout"] == lay and r["times"].get("fastnorm")]
        if not rs:
            continue
        fr = [v for v in map(of_copy, rs) if v is not None]
        fl = [v for v in map(of_limit, rs) if v is not None]
        s = out[lay] = {"cases": len(rs), "min_copy_fraction": min(fr) if fr else math.nan}
        s["noisy_cases"] = sum(1 for r in rs if noise(r))
        if fr:
            s["median_copy_fraction"], s["max_copy_fraction"] = float(np.median(fr)), max(fr)
        if fl:
            s["min_of_limit"], s["median_of_limit"], s["max_of_limit"] = min(fl), float(np.median(fl)), max(fl)
        for p in PEER_NAMES:
            sp = [r["times"][p] / r["times"]["fastnorm"] for r in rs if r["times"].get(p)]
            if sp:
                s[f"median_x_{p}"] = float(np.median(sp))
                s[f"min_x_{p}"] = float(min(sp))
                s[f"max_x_{p}"] = float(max(sp))
                s[f"cases_x_{p}"] = len(sp)
    return out


def _times(v):
    return f"{v:.1f}x" if v >= 0.95 else f"{v:.2f}x"


def _span(s, key):
    """ "0.58-0.85 (median 0.74)" from summary keys min_/median_/max_KEY; one value if they agree."""
    lo, med, hi = (s[f"{k}_{key}"] for k in ("min", "median", "max"))
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f} (median {med:.2f})"


def footer(summ):
    """The summary in sentences: per layout, one per peer (median speed-up and
    its range over the cases) and one for the fractions of copy and limit."""
    lines = []
    for lay, s in summ.items():
        lines.append(("Channels first" if lay == "cf" else "Channels last") + ":")
        for p in PEER_NAMES:
            if f"median_x_{p}" not in s:
                continue
            med, lo, hi, n = (s[f"{k}_x_{p}"] for k in ("median", "min", "max", "cases"))
            if med >= 1.05:
                speed = f"{med:.1f}x faster than"
            elif med <= 1 / 1.05:
                speed = f"{1 / med:.1f}x slower than"
            else:
                speed = "as fast as"
            span = f"median of {n} cases, x {p} from {_times(lo)} to {_times(hi)}" if n > 1 else "1 case"
            lines.append(f"  fastnorm is {speed} {PEER_TITLES[p]} ({span}).")
        if "median_copy_fraction" in s:
            text = f"  fastnorm reaches {_span(s, 'copy_fraction')} of a parallel copy"
            if "median_of_limit" in s:
                text += f" and {_span(s, 'of_limit')} of its limit"
            lines.append(text + ".")
        if s.get("noisy_cases"):
            lines.append(
                f"  ({s['noisy_cases']} of these {s['cases']} cases were measured under load or with an "
                "unstable copy: see the warning under the table, and rerun on a quiet machine.)"
            )
    return lines


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for r in rows:
        for k in r["times"]:
            if k not in names and k not in ("copy_memcpy", "copy_nt", "fastnorm_out"):
                names.append(k)
    labels = [f"{r['shape']}\n{r['layout']} {r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(rows)), 4.5))
    w = 0.8 / max(len(names), 1)
    for i, n in enumerate(names):
        vals = [r["bytes"] / r["times"][n] / 1e9 if r["times"].get(n) else 0 for r in rows]
        ax.bar(
            np.arange(len(rows)) + (i - (len(names) - 1) / 2) * w,
            vals,
            w,
            label=n,
            color="black" if n == "copy" else None,
            alpha=0.35 if n == "copy" else 1.0,
        )
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("effective GB/s (read x + write y)")
    nt = rows[0]["threads"] if rows else "?"
    ax.set_title(f"Instance norm on CPU, {nt} thread(s): fastnorm vs peers vs a parallel copy")
    top = max((r["bytes"] / t / 1e9 for r in rows for n, t in r["times"].items() if t and n in names), default=1.0)
    ax.set_ylim(0, top * 1.3)  # headroom: the legend sits above the bars
    ax.legend(fontsize=8, ncol=len(names), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
