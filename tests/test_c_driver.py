"""The engine without Python: tests/c/drive.c links fastnorm/_cpu's C sources
(the baseline target's kernels, the dispatch, the plans, the drivers) into a
plain C program; what it computes must be the extension's bits on the same
data, and the same on one thread and on two with the wave plans forced."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnorm as fnm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = os.path.join(ROOT, "fastnorm", "_cpu")
SOURCES = ["fn_kernels.c", "fn_dispatch.c", "fn_threads.c", "fn_plan.c", "fn_drive.c"]
N, C, S = 2, 3, 6001  # tests/c/drive.c's shape


def _build(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("needs a C compiler (gcc or cc)")
    if not all(os.path.exists(os.path.join(CPU, f)) for f in SOURCES):
        pytest.skip("needs the engine's C sources (a source checkout or an sdist)")
    exe = str(tmp_path / "drive")
    # the baseline x86-64 target without fused multiply-adds: setup.py's
    # flags for it, and the level the extension is then set to
    flags = ["-march=x86-64", "-DFN_FUSED=0"] if _x86() else ["-DFN_FUSED=0"]
    target = ["-DFN_TARGET=x86_64", '-DFN_LEVEL_NAME="x86-64"', "-DFN_HAVE_x86_64=1"] if _x86() else []
    cmd = [cc, "-O1", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp", *flags, *target]
    cmd += ["-I", CPU, *(os.path.join(CPU, f) for f in SOURCES), os.path.join(ROOT, "tests", "c", "drive.c")]
    r = subprocess.run([*cmd, "-o", exe, "-lm"], capture_output=True, text=True)
    if r.returncode != 0 and "fopenmp" in r.stderr:
        r = subprocess.run([c for c in cmd if c != "-fopenmp"] + ["-o", exe, "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _x86():
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def test_the_c_drivers_alone_give_the_extensions_bits(tmp_path):
    from fastnorm._cpu import _engine as E

    if not _x86():
        pytest.skip("compares with the extension's x86-64 unfused level")
    exe = _build(tmp_path)
    out = tmp_path / "out.bin"
    env = dict(os.environ, FASTNORM_DYNAMIC="0")
    r = subprocess.run([exe, str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["x86-64"]
    raw = out.read_bytes()
    e = N * C * S
    f = np.frombuffer(raw, np.float32, count=5 * e)
    x, dy, y_cf, y_cl, gx = (f[k * e : (k + 1) * e] for k in range(5))
    g = np.frombuffer(raw, np.float64, offset=5 * e * 4)
    assert g.size == 2 * C

    old = E.configure(isa="x86-64", fused=False)
    try:
        want_cf = fnm.instance_norm(x.reshape(N, C, S), eps=1e-5)
        want_cl = fnm.instance_norm(x.reshape(N, S, C), eps=1e-5, channel_axis=-1)
        gx_want, gw_want, gb_want = fnm.instance_norm_backward(
            dy.reshape(N, C, S), x.reshape(N, C, S), np.ones(C, np.float32), eps=1e-5
        )
    finally:
        E.configure(**old)
    assert y_cf.tobytes() == want_cf.tobytes()
    assert y_cl.tobytes() == want_cl.tobytes()
    assert gx.tobytes() == np.asarray(gx_want).tobytes()
    # the public function rounds the float64 sums to x's dtype
    assert g[:C].astype(np.float32).tobytes() == np.asarray(gw_want).tobytes()
    assert g[C:].astype(np.float32).tobytes() == np.asarray(gb_want).tobytes()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
