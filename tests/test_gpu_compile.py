"""Compile every CUDA kernel instantiation for sm_80 and sm_90 with nvcc, no GPU
needed: no errors, no register spills, and register counts that allow the
launch configurations the backend uses.  Where CuPy's NVRTC loads, the same
checks run through it (tests/test_gpu_nvrtc.py) and this one skips."""

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastnorm._gpu import _names

NVCC = shutil.which("nvcc") or (
    os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None
)
pytestmark = [
    # every instantiation compiled by nvcc for two architectures: minutes of CPU
    pytest.mark.slow,
    pytest.mark.skipif(not NVCC or not os.path.exists(NVCC), reason="no CUDA compiler (nvcc) found on this machine"),
]
KERNELS = os.path.join(os.path.dirname(_names.__file__), "kernels.cu")


def compile_report(tmp_path, arch):
    src = open(KERNELS).read()
    refs = "\n".join(f"  (void *)&{n}," for n in _names.names())
    unit = tmp_path / "all_kernels.cu"
    unit.write_text(src + "\nstatic void *fn_all[] = {\n" + refs + "\n};\nvoid *fn_keep(int i) { return fn_all[i]; }\n")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # e.g. a sanitizer run
    defines = [o for o in _names.options() if o.startswith("-D")]  # as the backend compiles
    r = subprocess.run(
        [
            NVCC,
            "-c",
            "-std=c++17",
            f"-arch={arch}",
            "-Xptxas",
            "-v",
            *defines,
            str(unit),
            "-o",
            str(tmp_path / "all.o"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    return r.returncode, r.stdout + r.stderr


ARCHS = ["sm_80", "sm_90"]


def nvrtc_available():
    """Whether CuPy's NVRTC path loads here (tests/gpu_emu/nvrtc_compile.py's probe)."""
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_emu", "nvrtc_compile.py")
    r = subprocess.run([sys.executable, helper, "90", "probe"], capture_output=True, text=True, timeout=300)
    return r.returncode == 0 and '"nvrtc"' in r.stdout


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Both architectures' nvcc reports, compiled side by side (each nvcc is
    one busy core for over a minute; one after the other doubled the wait).
    Where CuPy's NVRTC loads, tests/test_gpu_nvrtc.py makes the same checks
    on the compile the backend runs (CuPy's options): this one, minutes of
    CPU for the same instantiations, is the check where CuPy is missing."""
    if nvrtc_available() and not os.environ.get("FASTNORM_TEST_NVCC"):
        pytest.skip(
            "the same checks run through CuPy's NVRTC, the backend's own compile (tests/test_gpu_nvrtc.py); "
            "FASTNORM_TEST_NVCC=1 runs nvcc too"
        )
    dirs = {a: tmp_path_factory.mktemp(a) for a in ARCHS}
    with ThreadPoolExecutor(max_workers=min(len(ARCHS), os.cpu_count() or 1)) as ex:
        futures = {a: ex.submit(compile_report, dirs[a], a) for a in ARCHS}
        return {a: f.result() for a, f in futures.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_compile_without_spills(reports, arch):
    rc, out = reports[arch]
    assert rc == 0, out[-4000:]
    assert "error" not in out.lower(), out[-4000:]
    funcs = re.findall(r"Compiling entry function '(\w+)'", out)
    assert len(set(funcs)) == len(_names.names()), (len(set(funcs)), len(_names.names()))
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    assert spills and all(a == "0" and b == "0" for a, b in spills), out
    # registers: each entry must fit the block size it is launched with
    for block in re.split(r"Compiling entry function", out)[1:]:
        name = re.match(r" '(\w+)'", block).group(1)
        regs = int(re.search(r"Used (\d+) registers", block).group(1))
        limit = 128 if "cf_fused_block" in name else 255
        assert regs <= limit, (name, regs)
