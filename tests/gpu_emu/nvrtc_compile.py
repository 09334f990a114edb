"""Compile kernels.cu through CuPy's own RawModule path (cupy._core.core.
compile_with_cache, as cupy/_core/raw.pyx calls it) on a machine without a
GPU: only the two device queries (the architecture) are answered here, and
the module load that follows the compile (it needs a driver) is skipped.

Run as a script (a separate process: the patches stay out of the caller):
    python nvrtc_compile.py ARCH DTYPE|IN:OUT|backward:DTYPE|all [extra NVRTC option ...]
(DTYPE: that dtype's own forward module; IN:OUT: the forward module reading
IN, writing OUT; backward:DTYPE: the backward module; dtype names as numpy's)
prints one JSON object: options (as NVRTC received them), seconds, the NVRTC
log, the mangled names, cubin size; or {"skip": reason}.
"""

import io
import json
import os
import sys
import time


def main():
    arch, which, extra = sys.argv[1], sys.argv[2], tuple(sys.argv[3:])
    os.environ["CUPY_CACHE_IN_MEMORY"] = "1"  # compile every time, write no cache
    try:
        import cupy  # noqa: F401
        from cupy._core import core
        from cupy.cuda import compiler, nvrtc

        version = nvrtc.getVersion()
    except Exception as e:  # no cupy, or no libnvrtc
        print(json.dumps({"skip": f"{type(e).__name__}: {e}"[:300]}))
        return
    if which == "probe":  # only whether CuPy's NVRTC path loads
        print(json.dumps({"nvrtc": list(version)}))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", ".."))
    from fastnorm._gpu import _names

    with open(os.path.join(here, "..", "..", "fastnorm", "_gpu", "kernels.cu")) as f:
        code = f.read()
    if which == "all":
        names = tuple(_names.names())
    elif which.startswith("backward:"):
        names = tuple(_names.module(("backward", _names.TYPES[which.split(":")[1]])))
    else:
        i, o = (which.split(":") + [which])[:2]
        names = tuple(_names.names(_names.INPUTS[i], _names.TYPES[o]))
    # the device queries of a compile: the architecture (memoized per device in CuPy)
    compiler._get_arch = lambda: arch
    compiler._get_arch_for_options_for_nvrtc = lambda a=None: (f"-arch=sm_{a or arch}", "cubin")
    seen = {}
    orig = compiler._NVRTCProgram.compile

    def compile_(self, options=(), log_stream=None):
        t = time.perf_counter()
        obj, mapping = orig(self, options, log_stream)
        if self.name_expressions:
            seen.update(
                options=list(options), seconds=time.perf_counter() - t, size=len(obj), mapping=dict(mapping or {})
            )
        return obj, mapping

    compiler._NVRTCProgram.compile = compile_
    log = io.StringIO()
    options = _names.options() + extra
    try:
        core.compile_with_cache(
            code,
            options,
            prepend_cupy_headers=False,
            backend="nvrtc",
            translate_cucomplex=False,
            enable_cooperative_groups=False,
            name_expressions=names,
            log_stream=log,
            jitify=False,
        )
    except compiler.CompileException as e:
        print(json.dumps({"error": str(e)[-6000:], "options": list(options)}))
        return
    except Exception as e:  # loading the module needs a driver: the compile is done
        if "options" not in seen:
            print(json.dumps({"error": f"{type(e).__name__}: {e}"[-3000:]}))
            return
    seen.update(log=log.getvalue(), nvrtc=list(version), names=list(names))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
