#!/usr/bin/env bash
# bench/transport — FlowRuntime's flows (C ABI via ctypes) against torchdiffeq
# and flow_matching on the same weights, one thread each, one run. Writes
# bench/transport/results.md.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only, so
# OpenBLAS auto-selects its AVX-512 kernels. Threads: OPENBLAS_NUM_THREADS=1,
# torch.set_num_threads(1), FlowRuntime threads = 1 in every call.
# Environment: REPS (default 3) repetitions per timing (best is kept); QUICK=1
# for smaller batches.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release >/dev/null
bash bench/setup-venv.sh >/dev/null
bench/.venv/bin/python -c "import torchdiffeq, flow_matching, tqdm" 2>/dev/null \
  || bench/.venv/bin/pip install -q torchdiffeq flow_matching tqdm
# Workload (c) needs a trained flow: a checkerboard model from `flowrt train`
# (3,000 steps, seed 0; about a minute), made once and kept under .build/.
CHECKERBOARD_ONNX=${CHECKERBOARD_ONNX:-.build/bench-transport/checkerboard.onnx}
if [ ! -f "$CHECKERBOARD_ONNX" ]; then
  mkdir -p "$(dirname "$CHECKERBOARD_ONNX")"
  .build/release/flowrt-cli train --toy checkerboard --steps 3000 --batch 512 --seed 0 --out "$CHECKERBOARD_ONNX" >/dev/null
fi
export CHECKERBOARD_ONNX
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
{
  echo "### Transport, $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), 1 thread"
  echo
  echo "Command: \`make bench-transport\` (OPENBLAS_CORETYPE/L2_SIZE unset; best of ${REPS:-3} runs, interleaved with the peers)."
  echo
  bench/.venv/bin/python bench/transport/bench.py "$@"
} | tee bench/transport/results.md
