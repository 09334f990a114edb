"""The memory a call uses beyond its input and output does not grow with
N x C."""

import os
import subprocess
import sys

import pytest

_MEM_SCRIPT = r"""
import sys, numpy as np, fastnorm
def status(k):
    for l in open("/proc/self/status"):
        if l.startswith(k):
            return int(l.split()[1]) * 1024
shape, ca, dt, nt = eval(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
x = np.ones(shape, dt)
x.reshape(-1)[::7] = 3
y = np.zeros_like(x)
fastnorm.instance_norm(x[:1], channel_axis=ca, num_threads=nt)
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")      # reset the peak
fastnorm.instance_norm(x, channel_axis=ca, out=y, num_threads=nt)
print(status("VmHWM") - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize(
    "shape, channel_axis, dtype",
    [
        ((16, 1, 1000000), -1, "float32"),  # channels last, a million channels
        ((16, 1000000, 1), 1, "float32"),  # channels first, one element per plane
        # channels last, one instance of many chunks: a 1 GiB input
        pytest.param((1, 65536, 8192), -1, "float16", marks=pytest.mark.slow),
    ],
)
def test_working_memory_does_not_grow_with_n_times_c(shape, channel_axis, dtype, nt):
    """The memory a call uses beyond its input and output: working arrays per
    thread and per wave (O(threads x C) for channels last, where a row of C
    channels is the unit of work), not per (instance, channel); measured as
    the peak RSS of a fresh process."""

    C = shape[-1] if channel_axis == -1 else shape[1]
    per_unit = C if channel_axis == -1 else 0
    bound = 160 * per_unit * nt + (32 << 20)  # a row of C lanes: about 130 bytes each
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    r = subprocess.run(
        [sys.executable, "-c", _MEM_SCRIPT, repr(shape), str(channel_axis), dtype, str(nt)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    hidden = int(r.stdout.strip())
    assert hidden <= bound, (hidden / 2**20, bound / 2**20)
