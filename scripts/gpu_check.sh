#!/usr/bin/env bash
# The GPU path on a CUDA machine (issue 18), in under 8 minutes: every check of `benchmarks/gpu_check.py`
# (AMP bf16/fp16, channels_last, torch.compile, DDP with NCCL through torchrun, the teacher cache, exact
# resume, export parity; images/s against the CPU path), then the test suite's `gpu`-marked tests.
# Usage, from the repository root: bash scripts/gpu_check.sh [benchmark options]
# The JSON record goes to $OUT/gpu_check.json when $OUT is set, else benchmarks/results/gpu_check.json.
# Exit: 0 all passed; 1 a check or a gpu test failed; 3 no CUDA here (the CPU side ran).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"  # deterministic cuBLAS for exact resume
RECORD="${OUT:-benchmarks/results}/gpu_check.json"

timeout 350 "$PY" -m benchmarks.gpu_check --budget-s 330 --out "$RECORD" "$@"
bench=$?
timeout 120 "$PY" -m pytest tests/gpu -m gpu -q -rs
tests=$?
echo "benchmarks.gpu_check exit $bench, gpu tests exit $tests; record: $RECORD"
if [ "$bench" -eq 3 ]; then exit 3; fi
if [ "$bench" -ne 0 ] || [ "$tests" -ne 0 ]; then exit 1; fi
exit 0
