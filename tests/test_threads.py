"""The thread policy at work (fastnorm._threads): calls in a forked child
finish on one thread, an absurd OpenMP default is capped, and tasks that
Dask runs get one thread each."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _optional import require

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def _run_script(code, timeout=60, env=None):
    """Run code in a fresh interpreter from the repository root; a hang is a failure
    (the script and every process it forked are killed)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"the script did not finish in {timeout} s (hang)")
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    return out


_FORK_SCRIPT = """
import multiprocessing as mp
import os
import numpy as np
import fastnorm
from fastnorm import _threads
from fastnorm._cpu import _engine

def child_calls(x):
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = np.linspace(0.5, 2.0, x.shape[1])
    m = fastnorm.instance_moments(x, num_threads=2)
    return (_threads.team(None), _threads.team(8),
            fastnorm.instance_norm(x, num_threads=2), fastnorm.instance_norm(x, w, w),
            fastnorm.instance_norm(cl, channel_axis=-1, num_threads=4), fastnorm.group_norm(x, 2),
            fastnorm.instance_stats(x)[1], fastnorm.normalize(x, m.mean, m.var),
            fastnorm.adain(x, x[:, :, ::2]))

if __name__ == "__main__":
    x = np.random.default_rng(0).random((1, 4, 256, 256)).astype(np.float32)
    # the parent starts OpenMP's thread pool (explicitly 2 threads, whatever the CPU count)
    want = fastnorm.instance_norm(x, num_threads=2)
    ref = child_calls(x)
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.map(fastnorm.instance_norm, [x])[0]      # the plain call (fast path)
        more = pool.apply(child_calls, (x,))
    np.testing.assert_array_equal(got, want)
    assert more[:2] == (1, 1), more[:2]
    for a, b in zip(more[2:], ref[2:]):
        np.testing.assert_array_equal(a, b)
    # a child of a fork started directly
    pid = os.fork()
    if pid == 0:
        y = fastnorm.instance_norm(x, num_threads=2)
        os._exit(0 if np.array_equal(y, want) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, status
    # the parent keeps its threads
    assert _threads.team(None) == min(_engine.default_threads(), _threads.MAX_THREADS)
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_does_not_hang():
    # in a fresh interpreter: what a user script does (not a fork of pytest's process)
    assert _run_script(_FORK_SCRIPT).strip().endswith("ok")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts threads in /proc")
def test_omp_num_threads_is_capped():
    from fastnorm import _threads

    cap = _threads.MAX_THREADS
    code = """
    import numpy as np, fastnorm
    from fastnorm import _threads
    from fastnorm._cpu import _engine

    def threads():
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("Threads:")).split()[1])

    x = np.random.default_rng(0).random((1, 4, 256, 256)).astype(np.float32)
    fastnorm.instance_norm(x)                          # the fast path
    fastnorm.instance_norm(x, np.ones(4))              # the general path
    fastnorm.instance_stats(x)
    print(_engine.default_threads(), _threads.team(None), threads())
    """
    out = _run_script(code, env={"OMP_NUM_THREADS": str(cap + 64)})
    omp, used, threads = map(int, out.split())
    assert omp == cap + 64
    assert used == cap
    assert threads <= cap + 4, threads


@pytest.fixture
def thread_log(monkeypatch):
    """Every thread count a CPU engine call gets ("fast" for the fast path
    with OpenMP's default; the fast path's explicit num_threads, capped, is
    the policy's answer without asking it, so it is logged as passed)."""
    from fastnorm import _api, _threads
    from fastnorm._cpu import _engine

    log = []
    threads = _threads.team

    def logged(nt):
        log.append(threads(nt))
        return log[-1]

    class Fast:
        def fast_norm_cf(self, *a, **k):
            log.append(k.get("nt") or "fast")
            return _engine.fast_norm_cf(*a, **k)

    monkeypatch.setattr(_threads, "team", logged)
    monkeypatch.setattr(_api, "_engine", Fast())
    return log


def test_one_thread_inside_dask_threaded_tasks(rng, thread_log):
    dask = require("dask")
    da = require("dask.array")
    from concurrent.futures import ThreadPoolExecutor

    from fastnorm import _threads
    from fastnorm._cpu import _engine

    default = min(_engine.default_threads(), _threads.MAX_THREADS)
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 3, 64, 64))
    ds = da.from_array(x, chunks=(2, 3, 32, 64))
    want, want_g = fastnorm.instance_norm(x), fastnorm.group_norm(x, 3)
    for graph, exact, ref in [
        (fastnorm.instance_norm(dx), True, want),  # whole planes
        (dx.map_blocks(fastnorm.instance_norm), True, want),  # a user's blocks
        (fastnorm.instance_norm(ds), False, want),  # spatial chunks
        (fastnorm.group_norm(ds, 3), False, want_g),
    ]:
        thread_log.clear()
        y = graph.compute(scheduler="threads")
        assert thread_log and set(thread_log) == {1}, thread_log
        if exact:
            np.testing.assert_array_equal(y, ref)
        else:  # merged statistics: equal to rounding
            np.testing.assert_allclose(y, ref, atol=2e-6, rtol=1e-6)
    # an explicit num_threads is honoured
    thread_log.clear()
    fastnorm.instance_norm(dx, num_threads=2).compute(scheduler="threads")
    assert set(thread_log) == {2}, thread_log
    # a pool given through dask.config
    thread_log.clear()
    with ThreadPoolExecutor(2) as pool, dask.config.set(pool=pool):
        fastnorm.instance_norm(ds).compute(scheduler="threads")
    assert set(thread_log) == {1}, thread_log
    # the synchronous scheduler runs one task at a time: the default count
    thread_log.clear()
    fastnorm.instance_norm(ds).compute(scheduler="sync")
    assert set(thread_log) == {default}, thread_log
    # and outside Dask nothing changes
    thread_log.clear()
    fastnorm.instance_norm(x.astype(np.float64), np.ones(3))  # the general path
    assert thread_log == [default]
    thread_log.clear()
    fastnorm.instance_norm(x, np.ones(3))  # the fast path, OpenMP's default
    fastnorm.group_norm(x, 3, np.ones(3))
    assert thread_log == ["fast", "fast"]


def test_one_thread_inside_distributed_tasks(rng, thread_log):
    require("dask.array")
    distributed = require("distributed")
    import dask.array as da

    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 3, 32, 64))
    # (spatial chunks: fastnorm's graph merges statistics; the user's normalizes each block)
    graphs = [fastnorm.instance_norm(dx), dx.map_blocks(fastnorm.instance_norm)]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        results = []
        for graph in graphs:
            thread_log.clear()
            results.append(client.compute(graph).result())
            assert thread_log and set(thread_log) == {1}, thread_log
    np.testing.assert_allclose(results[0], fastnorm.instance_norm(x), atol=2e-6, rtol=1e-6)
    np.testing.assert_array_equal(results[1][:, :, :32], fastnorm.instance_norm(x[:, :, :32]))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="the load check reads Linux's /proc")
def test_load_check_does_not_count_this_process_own_threads():
    """The team cap counts other processes' runnable threads only: this
    process's own busy threads (OpenMP workers spinning after another
    library's region, here plain threads in GIL-free NumPy loops) are not
    load, while the same work in another process is, and so are this
    process's threads while another fastnorm call is running in it.  Readings are compared
    with a baseline taken in the same run, so steady load on the machine
    moves both sides."""
    from fastnorm._cpu import _engine as E

    code = """
        import threading, time, subprocess, sys
        import numpy as np
        from fastnorm._cpu import _engine as E

        def readings(n=30, concurrent_calls=0):
            r = []
            for _ in range(n):
                r.append(E._busy_others(concurrent_calls))
                time.sleep(0.002)
            return r

        base = readings()
        stop = threading.Event()
        def spin():
            a = np.ones(1 << 22); b = np.empty_like(a)
            while not stop.is_set():
                np.multiply(a, 1.000001, out=b)
        ts = [threading.Thread(target=spin) for _ in range(2)]
        for t in ts: t.start()
        time.sleep(0.05)
        own = readings()
        conc = readings(concurrent_calls=1)
        stop.set()
        for t in ts: t.join()
        p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)
        other = readings()
        p.kill(); p.wait()
        print(min(base), max(base), min(own), max(own), min(other), max(other), min(conc), max(conc))
    """
    if E._busy_others() < 0:
        pytest.skip("no load reading on this system")
    # a reading is one instant of the whole machine: other processes that
    # start or stop between the phases move it, so the run is repeated (a
    # rule broken in the engine fails every attempt)
    for _ in range(3):
        b0, b1, o0, o1, x0, x1, c0, c1 = map(int, _run_script(code).split())
        if o0 <= b1 and x1 >= b0 + 1 and c1 >= b0 + 1:
            break
    assert o0 <= b1, f"own threads counted as load: baseline {b0}-{b1}, with own busy threads {o0}-{o1}"
    assert x1 >= b0 + 1, f"another process's busy thread not seen: baseline {b0}-{b1}, with it {x0}-{x1}"
    # while another fastnorm call runs in this process, its team must count
    assert c1 >= b0 + 1, f"a concurrent call's threads not seen: baseline {b0}-{b1}, with it {c0}-{c1}"
