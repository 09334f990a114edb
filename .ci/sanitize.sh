#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
# Builds a sanitized copy of the extension in a scratch tree (so the normal
# build is untouched) and runs the CPU tests against it with the ASan runtime
# preloaded into the (uninstrumented) Python interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
# the kernel targets this CPU runs (the others are never executed here)
TARGETS="$(python - <<'PY'
from fastnorm._cpu import _engine as E

suffixes = {"x86-64-v4": ["x86_64_v4"], "x86-64-v3": ["x86_64_v3"], "x86-64": ["x86_64_fma", "x86_64"]}
print(",".join(s for level in E.simd_levels() for s in suffixes.get(level, [level])))
PY
)"
echo "sanitized kernel targets (the ones this CPU runs): $TARGETS"
SAN="$(mktemp -d)"
trap 'rm -rf "$SAN"' EXIT
cp -r fastnorm tests tools setup.py pyproject.toml README.md LICENSE MANIFEST.in "$SAN"/
rm -f "$SAN"/fastnorm/_cpu/*.so "$SAN"/fastnorm/_cpu/_engine.c
cd "$SAN"
# the build requirements (pip's build isolation kept them out of this venv)
python -m pip install -q "setuptools>=68" "Cython>=3.1" "numpy>=2"
FASTNORM_SANITIZE=1 FASTNORM_TARGETS="$TARGETS" python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -40 build.log; exit 1; }
ASAN_LIB="$(${CC:-gcc} -print-file-name=libasan.so)"
UBSAN_LIB="$(${CC:-gcc} -print-file-name=libubsan.so)"
export LD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc
export FASTNORM_UNDER_ASAN=1
python -c "import fastnorm, sys; c = fastnorm._config.config(); assert 'sanitize' in c['cflags'] or 'fsanitize' in c['cflags'], c['cflags']; print('sanitized build:', c['cflags']); from fastnorm._cpu import _engine as E; print('levels built:', E.built_levels())"
# torch / dask bring their own runtimes and allocators; the engine is what is checked here
# (the GPU emulator switches stacks with ucontext, which ASan does not follow;
# the torch operator tests need benchmarks/, not copied here)
python -m pytest tests -q -x -p no:cacheprovider -m "not bigmem and not slow" \
    --ignore=tests/test_torch.py --ignore=tests/test_dask.py --ignore=tests/test_gpu_compile.py \
    --ignore=tests/test_torch_ops.py --ignore=tests/test_gpu_emulated.py \
    --ignore=tests/test_gpu_emulated_types.py --ignore=tests/test_gpu_nvrtc.py
