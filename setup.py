"""Build of fastnorm's compiled engine.

The kernels (fastnorm/_cpu/fn_kernels.c, which includes the generated
fn_kernels_gen.c) are compiled once per target with that target's flags, in
parallel, and linked into the engine, which picks one target's table at
import (fn_dispatch.c; FASTNORM_ISA overrides the choice).

Environment switches
  FASTNORM_NO_OPENMP=1  serial build (no OpenMP even where the compiler has it)
  FASTNORM_NATIVE=1     one target, -march=native (this machine only)
  FASTNORM_TARGETS=a,b  only these kernel targets (suffixes of kernel_targets:
                        x86_64_v4, x86_64_v3, x86_64_fma, x86_64), e.g. the
                        ones this CPU runs, for a shorter development or
                        sanitizer build; the engine offers the levels built
  FASTNORM_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer build (gcc/clang)
  FASTNORM_DEBUG=1      keep debug information (the default build, like a
                        release wheel, compiles without it and strips it at link)
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _c_string(text):
    """text as a C string literal (for a -D value: no shell in between)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _compiler_kind(compiler):
    ctype = getattr(compiler, "compiler_type", "")
    if ctype == "msvc":
        return "msvc"
    cc = " ".join(getattr(compiler, "compiler", None) or [sysconfig.get_config_var("CC") or "cc"])
    try:
        out = subprocess.run(cc.split()[:1] + ["--version"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    if sys.platform == "darwin" and "clang" in out.lower() and "apple" in out.lower():
        return "apple-clang"
    if "clang" in out.lower():
        return "clang"
    return "gcc"


def _openmp_flags(kind):
    if kind == "msvc":
        return ["/openmp"], []
    if kind == "apple-clang":
        prefix = None
        for p in (os.environ.get("LIBOMP_PREFIX"), "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
            if p and os.path.isdir(p):
                prefix = p
                break
        cflags = ["-Xpreprocessor", "-fopenmp"]
        lflags = ["-lomp"]
        if prefix:
            cflags.append("-I" + os.path.join(prefix, "include"))
            lflags = ["-L" + os.path.join(prefix, "lib"), "-lomp"]
        return cflags, lflags
    return ["-fopenmp"], ["-fopenmp"]


_OMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
}
"""


def _probe_openmp(compiler, cflags, lflags, src=_OMP_PROBE):
    """Compile and link a small program (by default an OpenMP one) with the
    build's own compiler and these flags."""
    src = textwrap.dedent(src)
    tmp = tempfile.mkdtemp(prefix="fastnorm-omp-")
    try:
        c = os.path.join(tmp, "probe.c")
        with open(c, "w") as f:
            f.write(src)
        objs = compiler.compile([c], output_dir=tmp, extra_postargs=cflags)
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=lflags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_x86_64():
    return platform.machine().lower() in ("x86_64", "amd64")


def _is_aarch64():
    return platform.machine().lower() in ("aarch64", "arm64")


def kernel_targets(kind, native=False):
    """(suffix, level name, extra flags) of each kernel object to build.

    On x86-64 the three micro-architecture levels; the baseline twice: with
    FMA (128-bit vectors, run on CPUs that have FMA, so it gives the bits of
    the other levels) and without (CPUs without FMA: unfused multiply-adds)."""
    if native and kind != "msvc":
        return [("native", "native", ["-march=native"])]
    if _is_x86_64() and kind != "msvc":
        return [
            ("x86_64_v4", "x86-64-v4", ["-march=x86-64-v4", "-mprefer-vector-width=512"]),
            ("x86_64_v3", "x86-64-v3", ["-march=x86-64-v3"]),
            ("x86_64_fma", "x86-64", ["-march=x86-64", "-mfma"]),
            ("x86_64", "x86-64", ["-march=x86-64", "-DFN_FUSED=0"]),
        ]
    if _is_x86_64():
        return [("x86_64", "x86-64", [])]
    if _is_aarch64():
        return [("neon", "neon", [])]
    return [("generic", "generic", [])]


def selected_targets(targets, names):
    """targets restricted to the comma-separated suffixes in names
    (FASTNORM_TARGETS; unset or empty: all of them)."""
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    if not wanted:
        return targets
    have = [suffix for suffix, _, _ in targets]
    unknown = [n for n in wanted if n not in have]
    if unknown:
        raise SystemExit(f"FASTNORM_TARGETS: unknown kernel target(s) {unknown}; this build's targets: {have}")
    return [t for t in targets if t[0] in wanted]


class BuildExt(build_ext):
    def build_extensions(self):
        kind = _compiler_kind(self.compiler)
        cflags, lflags = [], []
        if kind == "msvc":
            cflags += ["/O2", "/fp:precise"]
        else:
            # -ffp-contract=off: no multiply-add is fused unless the kernels
            # write it, so every target gives the same bits.  -fno-trapping-math:
            # the activations' selects may be if-converted into vector code
            # without masks (on AVX2 and SSE2 silu's loops stay scalar without
            # it); it changes no value, only the floating-point flags
            cflags += [
                "-O3",
                "-fno-math-errno",
                "-fno-trapping-math",
                "-ffp-contract=off",
                "-Wno-unused-function",
                "-Wno-unreachable-code",
                "-Wno-psabi",
            ]
        if kind != "msvc" and not (_flag("FASTNORM_DEBUG") or _flag("FASTNORM_SANITIZE")):
            # no debug information (Python's own CFLAGS carry -g): it is most
            # of the engine's size; -S strips what the linked objects still have
            cflags += ["-g0"]
            lflags += ["-Wl,-S"]
        macros = []
        if _flag("FASTNORM_SANITIZE") and kind != "msvc":
            # -g1: the line tables a sanitizer report's stack needs, no
            # variable information (a third less compile time than -g)
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g1"]
            cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
            lflags += san
        kernel_cflags = list(cflags)

        openmp = False
        if _flag("FASTNORM_NO_OPENMP"):
            warnings.warn("fastnorm: FASTNORM_NO_OPENMP=1, building a serial (single-thread) engine", stacklevel=2)
        else:
            ocf, olf = _openmp_flags(kind)
            if _probe_openmp(self.compiler, ocf, olf):
                openmp = True
                cflags += ocf
                lflags += olf
            else:
                warnings.warn(
                    "fastnorm: the compiler could not build an OpenMP program; building a serial "
                    "engine. Install OpenMP (libgomp / libomp) for multi-threading.",
                    stacklevel=2,
                )
                print("WARNING: fastnorm built WITHOUT OpenMP (serial engine)", file=sys.stderr)
        targets = selected_targets(kernel_targets(kind, _flag("FASTNORM_NATIVE")), os.environ.get("FASTNORM_TARGETS"))
        objects = self._compile_kernels(targets, kernel_cflags)
        macros += [("FN_HAVE_" + suffix, "1") for suffix, _, _ in targets]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags
            ext.extra_link_args = list(ext.extra_link_args or []) + lflags
            ext.define_macros = list(ext.define_macros or []) + macros
            ext.extra_objects = list(ext.extra_objects or []) + objects

        cc = getattr(self.compiler, "compiler", None)
        info = {
            "openmp": openmp,
            "compiler": kind + ((" (" + " ".join(cc[:1]) + ")") if cc else ""),
            "cflags": " ".join(cflags),
            "ldflags": " ".join(lflags),
            "native": _flag("FASTNORM_NATIVE"),
            "kernel_targets": {suffix: " ".join(f) for suffix, _, f in targets},
            "sanitize": _flag("FASTNORM_SANITIZE"),
            "platform": platform.platform(),
        }
        # compiled into the engine (fastnorm._cpu._engine.build_info()), so the
        # facts travel with the binary they describe: nothing is written into
        # the source tree, and a build that leaves the extension up to date
        # cannot report flags it was not compiled with
        for ext in self.extensions:
            ext.define_macros = [m for m in ext.define_macros if m[0] != "FN_BUILD_INFO"]
            ext.define_macros.append(("FN_BUILD_INFO", _c_string(json.dumps(info))))
        super().build_extensions()

    def _compile_kernels(self, targets, cflags):
        """fn_kernels.c once per target, in parallel; returns the objects."""
        src = os.path.join("fastnorm", "_cpu", "fn_kernels.c")

        def one(target):
            suffix, level, flags = target
            return self.compiler.compile(
                [src],
                output_dir=os.path.join(self.build_temp, "fn_" + suffix),
                macros=[("FN_TARGET", suffix), ("FN_LEVEL_NAME", f'"{level}"')],
                include_dirs=[os.path.join("fastnorm", "_cpu")],
                extra_postargs=cflags + flags,
                depends=KERNEL_HEADERS,
            )

        with ThreadPoolExecutor(max_workers=max(1, min(len(targets), os.cpu_count() or 1))) as ex:
            return [obj for objs in ex.map(one, targets) for obj in objs]


# What the kernel objects are compiled from.  fn_kernels_gen.c is generated by
# tools/gen_kernels.py from the *.c.src templates and committed: the build
# compiles it as it is and never runs the generator.
KERNEL_HEADERS = [
    "fastnorm/_cpu/" + h
    for h in (
        "fn_base.h",
        "fn_half.h",
        "fn_simd.h",
        "fn_kernels_gen.c",
        "fn_dispatch.h",
        "fn_threads.h",
        "fn_plan.h",
        "fn_drive.h",
        "fn_pool.h",
        "fn_backward.h",
    )
]

extensions = [
    Extension(
        "fastnorm._cpu._engine",
        [
            "fastnorm/_cpu/_engine.pyx",
            "fastnorm/_cpu/fn_dispatch.c",
            "fastnorm/_cpu/fn_threads.c",
            "fastnorm/_cpu/fn_plan.c",
            "fastnorm/_cpu/fn_drive.c",
        ],
        include_dirs=[np.get_include(), "fastnorm/_cpu"],
        # NPY_TARGET_VERSION: the oldest NumPy the engine runs with (the
        # dependency's lower bound). It also exposes the API of that version
        # (PyDataMem_SetHandler needs 1.22) whatever the build headers' default.
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
            ("NPY_TARGET_VERSION", "NPY_1_23_API_VERSION"),
        ],
        depends=KERNEL_HEADERS + ["fastnorm/_cpu/fn_kernels.c"],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
