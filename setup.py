"""Build of fastnorm's compiled engine.

Environment switches
  FASTNORM_NO_OPENMP=1  serial build (no OpenMP even where the compiler has it)
  FASTNORM_NATIVE=1     -march=native (this machine only; no runtime ISA dispatch)
  FASTNORM_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer build (gcc/clang)
"""
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")


class BuildExt(build_ext):
    def build_extensions(self):
        kind = _compiler_kind(self.compiler)
        cflags, lflags = [], []
        if kind == "msvc":
            cflags += ["/O2", "/fp:precise"]
        else:
            # -ffp-contract=off: no fused multiply-add unless written, so the
            # x86-64-v4, -v3 and baseline clones (and other CPUs) give the same bits
            cflags += ["-O3", "-fno-math-errno", "-ffp-contract=off", "-Wno-unused-function",
                       "-Wno-unreachable-code", "-Wno-psabi"]
            if _flag("FASTNORM_NATIVE"):
                cflags += ["-march=native"]
            if _is_x86_64():
                # GCC tunes x86-64-v4 code for 256-bit vectors and then splits
                # every float->double widening into 128-bit pieces; full-width
                # AVX-512 halves the uops of the statistics and apply loops.
                cflags += ["-mprefer-vector-width=512"]
        macros = []
        if _flag("FASTNORM_NATIVE"):
            macros.append(("FN_NATIVE", "1"))
        if _flag("FASTNORM_SANITIZE") and kind != "msvc":
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
            cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
            lflags += san
            macros.append(("FN_NO_MULTIVERSION", "1"))

        openmp = False
        if _flag("FASTNORM_NO_OPENMP"):
            warnings.warn("fastnorm: FASTNORM_NO_OPENMP=1, building a serial (single-thread) engine")
        else:
            ocf, olf = _openmp_flags(kind)
            if _probe_openmp(self.compiler, ocf, olf):
                openmp = True
                cflags += ocf
                lflags += olf
            else:
                warnings.warn(
                    "fastnorm: the compiler could not build an OpenMP program; building a serial "
                    "engine. Install OpenMP (libgomp / libomp) for multi-threading."
                )
                print("WARNING: fastnorm built WITHOUT OpenMP (serial engine)", file=sys.stderr)
        if not openmp and kind != "msvc" and _probe_openmp(
                self.compiler, ["-fopenmp-simd"], [], "int main(void) { return 0; }"):
            # the kernels' `omp simd` loops (the vector fused multiply-add)
            # need no runtime, only this flag, to be vectorized
            cflags += ["-fopenmp-simd"]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + cflags
            ext.extra_link_args = list(ext.extra_link_args or []) + lflags
            ext.define_macros = list(ext.define_macros or []) + macros

        cc = getattr(self.compiler, "compiler", None)
        info = {
            "openmp": openmp,
            "compiler": kind + ((" (" + " ".join(cc[:1]) + ")") if cc else ""),
            "cflags": " ".join(cflags),
            "ldflags": " ".join(lflags),
            "native": _flag("FASTNORM_NATIVE"),
            "sanitize": _flag("FASTNORM_SANITIZE"),
            "platform": platform.platform(),
        }
        for target in (os.path.join(HERE, "fastnorm"), os.path.join(self.build_lib, "fastnorm")):
            if os.path.isdir(target):
                with open(os.path.join(target, "_build_info.py"), "w") as f:
                    f.write("# generated by setup.py at build time\nBUILD_INFO = %r\n" % (info,))
        super().build_extensions()


extensions = [
    Extension(
        "fastnorm._cpu._engine",
        ["fastnorm/_cpu/_engine.pyx"],
        include_dirs=[np.get_include(), "fastnorm/_cpu"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        depends=["fastnorm/_cpu/fn_kernels.h", "fastnorm/_cpu/fn_kernels_tmpl.h"],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
