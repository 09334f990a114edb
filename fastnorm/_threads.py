"""How many threads a CPU engine call runs with: the one policy, and the
process state it reads.

The team of a call is decided in this order (``team``):

1. a serial engine (built without OpenMP) runs one thread, and says so once
   per process the first time a call asks for more or would have had more
   by default;
2. in a child process created by fork(): one thread.  GNU libgomp's thread
   pool does not survive fork(): the child inherits the parent's pool
   bookkeeping but not its threads, and its first parallel region waits for
   them forever; a call with one thread never enters the pool.  This holds
   for an explicit ``num_threads`` too;
3. ``num_threads`` when given, else one thread inside a task that Dask's
   threaded scheduler or a distributed worker runs (Dask already runs a task
   per core; BLAS libraries are limited the same way), else OpenMP's default
   (``OMP_NUM_THREADS``, threadpoolctl limits);
4. capped at ``MAX_THREADS``: results are identical for every count, so an
   absurd request (``num_threads=10**6``, ``OMP_NUM_THREADS=30000``) is
   capped instead of asking OpenMP for that many threads;
5. inside the engine, per call (``fn_team_for`` in ``_cpu/fn_threads.c``):
   one thread below a minimum of work, and no more threads than the cores
   other processes leave free (``fn_threads_now``, which reads the run
   queue; ``FASTNORM_DYNAMIC=0`` turns it off).  The plan may
   use fewer threads than the team; it never uses more.

``instance_norm``'s fast path skips steps 1-4 (the engine takes OpenMP's
default itself): ``fast_path_engine`` allows it only where that default is
what ``team(None)`` would give, and the fast path checks ``in_dask_task``
per call.

Nothing here imports the compiled engine at ``import fastnorm``: it is
loaded with the first CPU call (``engine``).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

#: the largest team of a call: results are the same for every count
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))

#: True in a child process created by fork() from a process that imported fastnorm
forked_child = False
#: callbacks run in a forked child (callers' caches of this policy's answers)
_fork_callbacks: list[Callable[[], None]] = []

#: the compiled engine, once loaded (``engine``)
_E: Any = None
#: a serial engine (built without OpenMP): set when the engine is loaded
SERIAL = False
_serial_warned = False

_modules = sys.modules


def _after_fork_in_child() -> None:
    global forked_child
    forked_child = True
    for fn in _fork_callbacks:
        fn()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def at_fork_in_child(fn: Callable[[], None]) -> None:
    """Run fn in every child process created by fork() (to drop a cache of
    an answer of this policy, which the child must ask again)."""
    _fork_callbacks.append(fn)


def engine() -> Any:
    """The compiled CPU engine, imported on first use; ``SERIAL`` is known
    from then on."""
    global _E, SERIAL
    if _E is None:
        from ._cpu import _engine as E

        SERIAL = not E.have_openmp()
        _E = E
    return _E


def in_dask_task() -> bool:
    """True in a task that Dask's threaded scheduler or a distributed worker runs.

    Nothing is imported: without Dask loaded this is one dictionary lookup.
    The synchronous scheduler runs one task at a time in the calling thread,
    which keeps the default.
    """
    if "dask" not in _modules:
        return False
    th = threading.current_thread()
    if th is threading.main_thread():  # both schedulers run tasks in pool threads
        return False
    worker = _modules.get("distributed.worker")
    if worker is not None:
        try:
            worker.get_worker()  # set for the duration of a task (a context variable)
            return True
        except ValueError:
            pass
    threaded = _modules.get("dask.threaded")
    if threaded is None:
        return False
    # the threaded scheduler's pools: its default, one per (thread, num_workers),
    # and a pool given through dask.config.set(pool=...)
    pools = [threaded.default_pool]
    for by_workers in list(threaded.pools.values()):
        pools.extend(list(by_workers.values()))
    config = _modules.get("dask.config")
    if config is not None:
        pools.append(config.get("pool", None))
    return any(_pool_thread(th, p) for p in pools if p is not None)


def _pool_thread(th: threading.Thread, pool: Any) -> bool:
    """Whether thread th belongs to a concurrent.futures.ThreadPoolExecutor: by the
    name the executor gives its threads (set before a thread starts) or, where the
    executor has no such prefix, by its set of threads (a new thread joins that
    set only after it has started, and may already be running a task)."""
    prefix = getattr(pool, "_thread_name_prefix", None)
    if prefix:
        return th.name.startswith(prefix + "_")
    return th in getattr(pool, "_threads", ())


def openmp_default() -> int:
    """The team an OpenMP build would start by default: OMP_NUM_THREADS's
    first entry, else the CPUs this process may run on (what a serial
    engine's warning compares with)."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def user_stacklevel() -> int:
    """The warnings.warn stacklevel, for a warning issued by the function that
    calls this, that names the first frame outside fastnorm (the user's line)."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    f: FrameType | None = sys._getframe(1)
    level = 1
    while f is not None:
        name = os.path.abspath(f.f_code.co_filename)
        if not (name.startswith(pkg + os.sep) or f.f_code.co_filename.startswith("<frozen importlib")):
            return level
        f = f.f_back
        level += 1
    return level


def _warn_serial(nt: int | None) -> None:
    global _serial_warned
    want = openmp_default() if nt is None else nt
    if want > 1 and not _serial_warned:
        _serial_warned = True
        asked = f"num_threads={nt}" if nt is not None else f"a default of {want} threads"
        warnings.warn(
            f"fastnorm was built without OpenMP (a serial engine): calls run on one thread, not "
            f"{asked}. Rebuild with a compiler that has OpenMP (gcc's libgomp; with clang, libomp: "
            f"'brew install libomp' on macOS) to use every core; fastnorm.show_config() describes the build.",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )


def team(nt: int | None) -> int:
    """The thread count a CPU engine call runs with (nt: validated
    num_threads or None): steps 1-4 of the policy in this module's docstring."""
    E = _E or engine()
    if SERIAL:
        _warn_serial(nt)
        return 1
    if forked_child:
        return 1
    if nt is None:
        if "dask" in _modules and in_dask_task():
            return 1
        nt = E.default_threads()
    return min(nt, MAX_THREADS)


def fast_path_engine() -> Any:
    """The engine for instance_norm's fast path, or None where the fast path
    must not run for the rest of the process: it takes OpenMP's default count
    as it is, which is team(None)'s answer except in a serial engine, in a
    forked child and where the default is above MAX_THREADS."""
    E = _E or engine()
    if SERIAL or forked_child or E.default_threads() > MAX_THREADS:
        return None
    return E
