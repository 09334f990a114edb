#!/usr/bin/env bash
# Lint, format and type checks; nothing is rewritten.  Needs clang-format (the
# version the sources were formatted with: 23, `pip install clang-format==23.*`;
# other majors may format differently), cython-lint, ruff and mypy
# (`pip install clang-format==23.* cython-lint ruff mypy`).
# Configuration: .clang-format, pyproject.toml [tool.cython-lint], [tool.ruff], [tool.mypy].
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
need() { command -v "$1" >/dev/null || { echo "lint: $1 not found ($2)"; exit 1; }; }

# ---- C and CUDA: clang-format
need clang-format "pip install clang-format==23.*"
major="$(clang-format --version | sed -n 's/.*version \([0-9]*\).*/\1/p')"
[ "${major:-0}" -ge 23 ] || echo "lint: WARNING: clang-format $major; the sources were formatted with 23"
C_FILES=(fastnorm/_cpu/fn_*.c fastnorm/_cpu/fn_*.h fastnorm/_gpu/kernels.cu tests/c/*.c tests/gpu_emu/*.h)
clang-format --dry-run -Werror "${C_FILES[@]}" || { echo "lint: clang-format: run clang-format -i on the files above"; fail=1; }
# the generated kernel variants (fn_kernels_gen.c, clang-format off) are what
# tools/gen_kernels.py writes from the templates
python tools/gen_kernels.py --check || fail=1

# ---- Cython: cython-lint
need cython-lint "pip install cython-lint"
cython-lint fastnorm/_cpu/_engine.pyx || fail=1

# ---- Python: ruff (lint, format --check) and mypy
need ruff "pip install ruff"
ruff check . || fail=1
ruff format --check . || { echo "lint: ruff format: run ruff format ."; fail=1; }
need mypy "pip install mypy"
mypy || fail=1

[ "$fail" -eq 0 ] && echo "lint: clean"
exit "$fail"
