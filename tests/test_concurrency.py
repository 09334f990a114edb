"""Python threads calling fastnorm at once (the same results as serial calls,
separate out buffers) and the GIL released while the kernels run."""

import sys
import threading
import time

import numpy as np

import fastnorm


def _work(rng_seed):
    rng = np.random.default_rng(rng_seed)
    shape = [(1, 3, 300, 200), (4, 8, 32, 32), (2, 50, 40, 6)][rng_seed % 3]
    return (rng.standard_normal(shape) + rng_seed).astype(np.float32)


def test_eight_threads_match_serial():
    inputs = [_work(i) for i in range(8)]
    shared = _work(99)
    serial = [
        (fastnorm.instance_norm(x), fastnorm.group_norm(x, 1, channel_axis=-1), fastnorm.instance_stats(x))
        for x in inputs
    ]
    serial_shared = fastnorm.instance_norm(shared)
    results = [None] * 8
    errors = []
    barrier = threading.Barrier(8)

    def run(i):
        try:
            barrier.wait()
            for rep in range(5):
                nt = (i + rep) % 4 + 1
                x = inputs[i]
                r = (
                    fastnorm.instance_norm(x, num_threads=nt),
                    fastnorm.group_norm(x, 1, channel_axis=-1, num_threads=nt),
                    fastnorm.instance_stats(x, num_threads=nt),
                )
                s = fastnorm.instance_norm(shared, num_threads=nt)
                np.testing.assert_array_equal(s, serial_shared)
            results[i] = r
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2][0], want[2][0])
        np.testing.assert_array_equal(got[2][1], want[2][1])


def test_shared_out_buffers_separate_threads():
    x = _work(3)
    want = fastnorm.instance_norm(x)
    outs = [np.empty_like(x) for _ in range(8)]
    ts = [threading.Thread(target=fastnorm.instance_norm, args=(x,), kwargs={"out": o, "num_threads": 2}) for o in outs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o in outs:
        np.testing.assert_array_equal(o, want)


def test_gil_is_released_during_compute():
    x = np.random.default_rng(0).standard_normal((1, 8, 2048, 1024)).astype(np.float32)  # 64 MiB
    y = np.empty_like(x)
    fastnorm.instance_norm(x, out=y, num_threads=1)
    t0 = time.perf_counter()
    fastnorm.instance_norm(x, out=y, num_threads=1)
    one = time.perf_counter() - t0
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.01)
        reps = max(3, int(0.3 / max(one, 1e-3)))
        before = ticks[0]
        t0 = time.perf_counter()
        for _ in range(reps):
            fastnorm.instance_norm(x, out=y, num_threads=1)
        elapsed = time.perf_counter() - t0
        during = ticks[0] - before
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    # the spinning thread ran throughout: far more ticks than GIL hand-offs alone would allow
    assert during > 1000 * elapsed, (during, elapsed)
