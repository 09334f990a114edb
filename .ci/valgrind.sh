#!/usr/bin/env bash
# valgrind memcheck over a small subset. CPython and NumPy are not
# valgrind-clean on their own, so the verdict is: no error record whose stack
# goes through fastnorm's extension.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 0; }
LOG="$(mktemp)"
PYTHONMALLOC=malloc OMP_NUM_THREADS=2 valgrind --tool=memcheck --error-limit=no --num-callers=40 \
    --log-file="$LOG" python tests/valgrind_subset.py
python - "$LOG" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
ours = [r for r in records if "_engine" in r and re.search(r"(Invalid|uninitialised|Mismatched|overlap|Source and destination)", r)]
summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
print(f"valgrind: {summary[-1] if summary else '?'} errors in total, {len(ours)} in fastnorm's engine")
for r in ours[:5]:
    print(r)
sys.exit(1 if ours else 0)
PY
