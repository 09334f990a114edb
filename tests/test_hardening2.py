"""Issue 18, "Hardening, round two": one test or more per item, named after it."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))


def _run_script(code, timeout=60, env=None):
    """Run code in a fresh interpreter from the repository root; a hang is a failure
    (the script and every process it forked are killed)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"the script did not finish in {timeout} s (hang)")
    assert p.returncode == 0, out[-3000:] + err[-3000:]
    return out


# ------------------------------------------------------------- item 1: fork
_FORK_SCRIPT = """
import multiprocessing as mp
import os
import numpy as np
import fastnorm
from fastnorm._cpu import _backend

def child_calls(x):
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = np.linspace(0.5, 2.0, x.shape[1])
    m = fastnorm.instance_moments(x, num_threads=2)
    return (_backend._threads(None), _backend._threads(8),
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
        got = pool.map(fastnorm.instance_norm, [x])[0]      # the issue's call (fast path)
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
    assert _backend._threads(None) == min(_backend.default_threads(), _backend._MAX_THREADS)
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_item1_forked_child_does_not_hang():
    # in a fresh interpreter: what a user script does (not a fork of pytest's process)
    assert _run_script(_FORK_SCRIPT).strip().endswith("ok")
