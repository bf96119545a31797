#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA device: every GPU test and the GPU benchmark, in
# under 8 minutes (time limits: 90 s, 150 s and 210 s for the three stages).
#
#   bash scripts/gpu_check.sh [--overwrite]
#
# 1. `pytest -m gpu`: the tests marked for a CUDA device (CuPy kernels, device placement);
# 2. `pytest -k triton` without TRITON_INTERPRET: the Triton operators' tests, on CUDA tensors;
# 3. `bench gpu`: BPSN (method triton / cupy / chunked) vs SpikingJelly 2.0 LIFNode (cuda and
#    triton implementations) vs a copy_ floor at T = 512, 2048, 8192, the S4D scan (Triton,
#    CuPy) vs the FFT form, peak memory.
#
# Writes $GPU_CHECK_OUT/gpu.json and gpu.txt (the benchmark's JSON and table, kept unless
# --overwrite) and gpu_tests.log (both test runs).  Exit status: non-zero if a stage failed.
# Variables: PYTHON (default .envs/sj2/bin/python when it exists, else python3: an environment
# with a CUDA build of torch, which brings triton; CuPy and SpikingJelly 2.0 for their rows),
# GPU_CHECK_OUT (default benchmarks/results).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-}
[[ -n $PY ]] || { [[ -x .envs/sj2/bin/python ]] && PY=.envs/sj2/bin/python || PY=python3; }
OUT=${GPU_CHECK_OUT:-benchmarks/results}
OVERWRITE=()
for arg in "$@"; do
  case $arg in
    --overwrite) OVERWRITE=(--overwrite) ;;
    *) echo "gpu_check: unknown argument '$arg' (expected --overwrite)" >&2; exit 2 ;;
  esac
done

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: $PY has no CUDA device (torch.cuda.is_available() is False)" >&2
  exit 2
fi
if [[ -z ${OVERWRITE[*]} ]]; then
  for f in "$OUT/gpu.json" "$OUT/gpu.txt"; do
    [[ -e $f ]] && { echo "gpu_check: $f exists; pass --overwrite to replace it" >&2; exit 2; }
  done
fi
mkdir -p "$OUT"
unset TRITON_INTERPRET  # the Triton tests run the compiled kernels on the device
status=0
LOG=$OUT/gpu_tests.log
: > "$LOG"

echo "== pytest -m gpu" | tee -a "$LOG"
timeout 90 "$PY" -m pytest -q -m gpu tests 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}; [[ $rc -eq 0 || $rc -eq 5 ]] || status=1  # 5: none selected

echo "== pytest -k triton (compiled, on CUDA)" | tee -a "$LOG"
timeout 150 "$PY" -m pytest -q -k triton tests 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}; [[ $rc -eq 0 ]] || status=1

echo "== bench gpu"
timeout 210 "$PY" -m bpsn_ext bench gpu --device cuda --json "$OUT/gpu.json" \
  --table "$OUT/gpu.txt" "${OVERWRITE[@]}" || status=1

echo "gpu_check: tests in $LOG, results in $OUT/gpu.json and $OUT/gpu.txt (status $status)"
exit $status
