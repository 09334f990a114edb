"""kernels.cu through CuPy's own compile path (RawModule -> compile_with_cache
-> NVRTC), no GPU needed: CuPy's option assembly (its include paths,
-ftz=true, --device-as-default-execution-space, -arch=sm_XX) and NVRTC from
the pip packages (cupy-cuda13x, nvidia-cuda-nvrtc).  Every instantiation for
sm_80 and sm_90 with no errors and no register spills, and the first-call
compile time of one dtype's module.  Runs tests/gpu_emu/nvrtc_compile.py in a
subprocess (it answers CuPy's two device queries; nothing leaks into this
process).  Skips where CuPy or libnvrtc is missing."""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastnorm._gpu import _names

# every instantiation through NVRTC for two architectures: minutes of CPU
pytestmark = pytest.mark.slow

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_emu", "nvrtc_compile.py")


def nvrtc_report(arch, which, *extra):
    """The helper's answer (a dict), or its failure as {"error": stderr}."""
    r = subprocess.run([sys.executable, HELPER, arch, which, *extra], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return {"error": r.stderr[-4000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def checked(d):
    """d, or the test skipped (no NVRTC here) or failed (the compile's error)."""
    if "skip" in d:
        pytest.skip(f"CuPy's NVRTC path is not available (pip install cupy-cuda13x nvidia-cuda-nvrtc): {d['skip']}")
    assert "error" not in d, d["error"]
    return d


def nvrtc(arch, which, *extra):
    return checked(nvrtc_report(arch, which, *extra))


ARCHS = ["80", "90"]


@pytest.fixture(scope="module")
def every_kernel():
    """Both architectures' compiles of every instantiation, side by side (each
    is one busy core for over a minute)."""
    with ThreadPoolExecutor(max_workers=min(len(ARCHS), os.cpu_count() or 1)) as ex:
        futures = {a: ex.submit(nvrtc_report, a, "all", "-Xptxas=-v") for a in ARCHS}
        return {a: f.result() for a, f in futures.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles_without_spills(every_kernel, arch):
    d = checked(every_kernel[arch])
    opts = d["options"]
    # the options CuPy adds to ours
    assert {"-ftz=true", "--device-as-default-execution-space", f"-arch=sm_{arch}"} <= set(opts), opts
    assert any(o.startswith("-I") and o.endswith("include") for o in opts), opts
    assert set(_names.options()) <= set(opts)
    assert set(d["mapping"]) == set(_names.names())
    log = d["log"]
    assert "error" not in log.lower(), log[-4000:]
    entries = re.findall(r"Compiling entry function '(\w+)'", log)
    assert len(set(entries)) == len(_names.names()), (len(set(entries)), len(_names.names()))
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert len(spills) >= len(entries) and all(a == "0" and b == "0" for a, b in spills), log
    for block in re.split(r"Compiling entry function", log)[1:]:
        name = re.match(r" '(\w+)'", block).group(1)
        regs = int(re.search(r"Used (\d+) registers", block).group(1))
        assert regs <= (128 if "cf_fused_block" in name else 255), (name, regs)  # 512 / 256 threads a block


def test_first_call_compile_time_one_dtype(capsys, record_property):
    """What a first float32 call waits for (the module of one dtype, sm_90);
    later processes load it from CuPy's disk cache (same source, same options)."""
    d = nvrtc("90", "float32")
    assert set(d["mapping"]) == set(_names.names("float"))
    record_property("nvrtc_float32_module_seconds", round(d["seconds"], 2))
    with capsys.disabled():
        print(
            f"\n[NVRTC {'.'.join(map(str, d['nvrtc']))}] first-call compile of the float32 module for sm_90: "
            f"{d['seconds']:.2f} s, cubin {d['size'] // 1024} KiB"
        )
    assert d["seconds"] <= 10.0
