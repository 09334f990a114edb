#!/usr/bin/env bash
# Kernel portability: every kernel level gives the same bits (the determinism
# tests rerun at each level through FASTNORM_ISA), and the kernel sources
# compile warning-free with clang (the macOS compiler) for every target.
# (aarch64: tests/test_isa_builds.py::test_aarch64_neon_gives_the_same_bits
# cross-compiles the C harness and runs it under qemu-user in the main run.)
set -euo pipefail
cd "$(dirname "$0")/.."

levels="$(python -c 'import fastnorm; print(" ".join(fastnorm.show_config(mode="dicts")["simd_levels"]))')"
echo "kernel levels on this CPU: $levels"
for isa in $levels; do
    echo "== determinism tests at FASTNORM_ISA=$isa"
    FASTNORM_ISA=$isa python -m pytest -q -p no:cacheprovider \
        tests/test_concurrency.py tests/test_plans.py tests/test_streaming.py tests/test_fma.py \
        tests/test_isa_builds.py tests/test_memory.py tests/test_edge_numerics.py \
        tests/test_instance_norm.py tests/test_ops.py tests/test_half.py \
        -k "bit or thread or identical or plan or conversion" -W error::RuntimeWarning
done

if command -v clang >/dev/null; then
    K=fastnorm/_cpu
    for t in "x86_64_v4 -march=x86-64-v4" "x86_64_v3 -march=x86-64-v3" "x86_64_fma -march=x86-64 -mfma" \
             "x86_64 -march=x86-64 -DFN_FUSED=0" "generic -DFN_SIMD_SCALAR"; do
        set -- $t; name=$1; shift
        clang -O3 -fno-math-errno -fno-trapping-math -ffp-contract=off -Wall -Wextra -Werror -Wno-unused-function \
            "$@" -DFN_TARGET="$name" -I"$K" -c "$K/fn_kernels.c" -o /dev/null
    done
    clang -O3 -Wall -Wextra -Werror -Wno-unused-function -DFN_HAVE_x86_64_v4 -DFN_HAVE_x86_64_v3 \
        -DFN_HAVE_x86_64_fma -DFN_HAVE_x86_64 -I"$K" -c "$K/fn_dispatch.c" -o /dev/null
    echo "clang -Werror: kernel sources compile for every target"
else
    echo "WARNING: clang not installed; the clang build of the kernels was not checked"
fi
