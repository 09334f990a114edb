#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU, CuPy and torch (no network):
#   tools/gpu_check.sh OUTDIR
# builds fastnorm in place (no build isolation: the machine's setuptools,
# Cython and NumPy), runs the GPU tests (tests/test_gpu.py and the CUDA-tensor /
# CuPy-Dask tests), the GPU bench (standard suite; fastnorm against torch on
# CUDA and a device-to-device copy) and, last, the CPU bench at the machine's
# full core count for scaling figures past 2 threads.  Logs and tables go to
# OUTDIR; each step's exit status is in OUTDIR/status.txt.  Stops with a clear
# message where no GPU is found.
set -uo pipefail
OUT="${1:?usage: tools/gpu_check.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
: > "$OUT/status.txt"
step() {   # step NAME TIMEOUT_S COMMAND...: run, log, record the status
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/status.txt"
    return $rc
}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1; then
    echo "gpu_check: no NVIDIA GPU found (nvidia-smi -L failed); nothing run" | tee -a "$OUT/status.txt"
    exit 2
fi
if ! "$PY" -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" > "$OUT/cupy.txt" 2>&1; then
    echo "gpu_check: CuPy cannot see a GPU (see $OUT/cupy.txt); nothing run" | tee -a "$OUT/status.txt"
    exit 2
fi
cat "$OUT/nvidia-smi.txt"
"$PY" -c "import cupy, sys; print('cupy', cupy.__version__, 'python', sys.version.split()[0])" >> "$OUT/status.txt" 2>&1

step build 300 "$PY" setup.py build_ext --inplace -j "$(nproc)" || { echo "gpu_check: build failed"; exit 1; }
step show_config 60 "$PY" -m fastnorm info
step gpu_tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_torch.py tests/test_dask.py -k "gpu or cuda or cupy"
step gpu_bench 240 "$PY" -m fastnorm bench --device gpu --json "$OUT/gpu_bench.json"
step cpu_bench 240 "$PY" -m fastnorm bench --threads "$(nproc)" --repeat 5 --quiet --json "$OUT/cpu_bench.json"
echo "gpu_check: done; $OUT/status.txt"
