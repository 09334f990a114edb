"""fork() with torch loaded: fastnorm and torch share one GNU OpenMP runtime,
whose thread pool does not survive fork.  fastnorm's own calls in the child
run on one thread and finish (tensors, autograd and the modules included);
torch's parallel work in the child needs torch.set_num_threads(1) there (or
the spawn start method), as the README says.  Each child runs in a fresh
interpreter with a timeout, so a hang fails the test instead of the suite."""

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from _optional import require

import fastnorm

require("torch", reason="torch is not installed")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))

_SCRIPT = """
import os, time
import numpy as np
import torch
import fastnorm, fastnorm.torch as fnt

x = torch.randn(2, 8, 64, 64)
xcl = x.contiguous(memory_format=torch.channels_last)
want = fastnorm.instance_norm(x, num_threads=2).numpy()  # the parent starts OpenMP's pool
torch.randn(64, 64, 256).sum()                           # and torch its parallel work
w = torch.linspace(0.5, 2, 8)
xs = x[:, :, :8, :8].clone()

def child():
    # fastnorm's own kernels; the torch operations here are views and
    # tensors too small for torch to start parallel work
    np.testing.assert_array_equal(fastnorm.instance_norm(x, num_threads=2).numpy(), want)
    np.testing.assert_array_equal(fastnorm.instance_norm(xcl).numpy(), want)
    fastnorm.group_norm(x.numpy(), 2)
    xr, wr = xs.clone().requires_grad_(), w.clone().requires_grad_()
    fastnorm.instance_norm(xr, wr).sum().backward()  # autograd: the backward kernels
    assert xr.grad is not None and wr.grad is not None
    with torch.no_grad():
        fnt.convert(torch.nn.InstanceNorm2d(8, affine=True))(x)
    torch.set_num_threads(1)  # the documented way to run torch's own work in the child
    torch.randn(64, 64, 256).sum()

pid = os.fork()
if pid == 0:
    try:
        child()
        code = 0
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 3
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
print("ok")
"""


def test_fastnorm_calls_in_a_forked_child_of_a_torch_process_finish():
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the forked child did not finish in 120 s (hang)")
    assert p.returncode == 0 and out.strip().endswith("ok"), out[-3000:] + err[-3000:]


def test_readme_documents_fork_with_torch():
    """The fork paragraph says that torch's own work hangs in a forked child
    and gives both ways out."""
    # the README of the checkout (or sdist) these tests belong to
    with open(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"), encoding="utf-8"
    ) as f:
        text = " ".join(f.read().split())
    para = re.search(r"Threads: in a child process created by `fork\(\)`.*?(?=###|$)", text)
    assert para is not None
    body = para.group(0)
    for words in ("torch", "spawn", "torch.set_num_threads(1)"):
        assert words in body, words
