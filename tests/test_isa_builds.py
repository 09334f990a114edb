"""The kernel sources built outside the extension, once per target's flags
(tests/c/isa_bits.c): every x86-64 vector width and the scalar layer, and
NEON on aarch64 (natively or under qemu-user), hash the same.  test_isa.py
checks the levels of the installed build through FASTNORM_ISA."""

import os

import pytest

# the kernels rebuilt once per target's flags (and for aarch64): minutes of CPU
pytestmark = pytest.mark.slow


def _kernel_dir():
    """fastnorm/_cpu with the kernel sources: the imported package's (a source
    checkout), else the checkout these tests belong to (an installed wheel
    carries no C sources)."""
    import fastnorm as fnm

    for d in (
        os.path.join(os.path.dirname(fnm.__file__), "_cpu"),
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastnorm", "_cpu"),
    ):
        if os.path.exists(os.path.join(d, "fn_kernels.c")):
            return d
    return None


#: each build's line, by (name, flags, compiler, runner): the tests share builds
#: (v3 and base hash in more than one), each a compile of every kernel at -O3
_BUILT: dict = {}


def _isa_bits(tmp_path, name, flags, cc=None, runner=()):
    """Build tests/c/isa_bits.c against fastnorm/_cpu/fn_kernels.c compiled with
    these flags and return the line it prints (None if this CPU cannot run it)."""
    return _isa_bits_many(tmp_path, [(name, flags)], cc=cc, runner=runner)[0]


def _isa_bits_many(tmp_path, builds, cc=None, runner=()):
    """_isa_bits of each (name, flags) in builds, in order: the builds not
    made before run side by side, one per core (each is one compiler
    process; the results are the same in any order)."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    inc = _kernel_dir()
    cc = cc or shutil.which("gcc") or shutil.which("cc")
    if cc is None or inc is None:
        pytest.skip("needs a C compiler and the kernel sources")
    keys = [(name, tuple(flags), cc, tuple(runner)) for name, flags in builds]
    todo = list(dict.fromkeys(k for k in keys if k not in _BUILT))
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as ex:
            for k, line in zip(todo, ex.map(lambda k: _build_and_run(tmp_path, inc, *k), todo)):
                _BUILT[k] = line
    return [_BUILT[k] for k in keys]


def _build_and_run(tmp_path, inc, name, flags, cc, runner):
    import signal
    import subprocess

    src = os.path.join(os.path.dirname(__file__), "c", "isa_bits.c")
    exe = str(tmp_path / f"isa_{name}")
    # the build's flags (setup.py) and one target's
    base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-w", f"-DFN_TARGET={name}"]
    subprocess.run(
        [cc, *base, *flags, "-I", inc, os.path.join(inc, "fn_kernels.c"), src, "-o", exe, "-lm"],
        check=True,
        capture_output=True,
        text=True,
    )
    r = subprocess.run([*runner, exe], capture_output=True, text=True)
    if r.returncode == -signal.SIGILL:
        return None
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


# x86-64 kernel builds: the setup.py targets, two more vector widths' worth of
# flags, and the scalar layer; (name, flags, fused)
X86_BUILDS = [
    ("v4", ["-march=x86-64-v4", "-mprefer-vector-width=512"], True),
    ("v3", ["-march=x86-64-v3"], True),
    ("v2fma", ["-march=x86-64-v2", "-mfma"], True),
    ("base_fma", ["-march=x86-64", "-mfma"], True),
    ("scalar_fma", ["-DFN_SIMD_SCALAR", "-march=x86-64-v3"], True),
    ("base", ["-march=x86-64", "-DFN_FUSED=0"], False),
    ("scalar", ["-DFN_SIMD_SCALAR", "-DFN_FUSED=0"], False),
]


def test_every_isa_level_gives_the_same_bits(tmp_path):
    """One kernel source, every vector width: the AVX-512, AVX2, SSE2 and
    scalar layers hash the same over every kernel (statistics, apply with
    every activation and with streaming stores, small planes, channels-last
    tiles of every width, float32/64/16 and bfloat16, the half conversions)
    when fused, and the same (another hash) when unfused.  A build that lets
    the compiler contract the unfused form must differ from it, so the hash
    can see a stray fused multiply-add."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 builds")
    builds = [(name, flags) for name, flags, _ in X86_BUILDS]
    builds.append(("contract", ["-march=x86-64-v3", "-DFN_FUSED=0", "-ffp-contract=fast"]))
    lines = _isa_bits_many(tmp_path, builds)
    got = {(name, fused): h for (name, _, fused), h in zip(X86_BUILDS, lines)}
    for fused in (True, False):
        ran = {n: h for (n, f), h in got.items() if f == fused and h is not None}
        assert len(set(ran.values())) == 1, ran
    contracted = lines[-1]
    if contracted is not None:
        assert contracted != got["base", False], "the hash does not see contraction"


def test_aarch64_neon_gives_the_same_bits(tmp_path):
    """The NEON layer (aarch64), cross-compiled and run under qemu-user where
    both are installed (CI installs them), hashes as the x86-64 builds."""
    import platform
    import shutil

    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if platform.machine().lower() == "aarch64":
        cc, runner = shutil.which("gcc") or shutil.which("cc"), ()
    elif cc is None or qemu is None:
        pytest.skip("needs gcc-aarch64-linux-gnu and qemu-user")
    else:
        runner = (qemu, "-L", "/usr/aarch64-linux-gnu")
    static = ["-static"] if runner else []
    neon, neon_unfused = _isa_bits_many(
        tmp_path, [("neon", static), ("neon_unfused", ["-DFN_FUSED=0", *static])], cc=cc, runner=runner
    )
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert neon == _isa_bits(tmp_path, "v3", ["-march=x86-64-v3"])
        assert neon_unfused == _isa_bits(tmp_path, "base", ["-march=x86-64", "-DFN_FUSED=0"])
    assert neon != neon_unfused


def test_isa_bits_harness_is_clean_under_asan_ubsan(tmp_path):
    """The harness itself, built at -O1 with AddressSanitizer and
    UndefinedBehaviorSanitizer (it once read the weights past their end and
    hashed stack garbage that every -O3 build happened to share): it runs
    clean and hashes as the plain build of its target."""
    import platform
    import subprocess

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 builds")
    san = ["-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    probe = subprocess.run(
        ["gcc", "-fsanitize=address,undefined", "-x", "c", "-", "-o", str(tmp_path / "probe")],
        input="int main(void) { return 0; }",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip("gcc without the sanitizer runtimes")
    plain, sanitized = _isa_bits_many(
        tmp_path, [("base", ["-march=x86-64", "-DFN_FUSED=0"]), ("base_san", ["-march=x86-64", "-DFN_FUSED=0", *san])]
    )
    assert sanitized == plain.replace("base", "base_san")
