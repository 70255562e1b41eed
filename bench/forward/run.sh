#!/usr/bin/env bash
# bench/forward — velocity evaluation of a 2→256×3→2 SiLU MLP: FlowRuntime's
# C call vs onnxruntime and PyTorch eager, one thread each, one run.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only, so
# OpenBLAS auto-selects its AVX-512 kernels (the corename is printed). Threads:
# FLOWRT_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, ORT and torch set to 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
bash bench/setup-venv.sh
cc -O2 -std=c99 -Iinclude $(pkg-config --cflags openblas) bench/forward/bench_forward.c \
   -L.build/release -lflowrt -Wl,-rpath,"$PWD/.build/release" $(pkg-config --libs openblas) -o .build/bench_forward
FIXTURE=${FLOWRT_FIXTURES:-../shared/fixtures/onnx}/mlp_silu__legacy__op17.onnx
export FLOWRT_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
{
  echo "### Forward pass, $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), 1 thread"
  echo
  echo "Command: \`make bench-forward\` ($(bench/.venv/bin/python -c 'import torch, onnxruntime; print("torch", torch.__version__, ", onnxruntime", onnxruntime.__version__)'); OPENBLAS_CORETYPE/L2_SIZE unset)."
  echo
  .build/bench_forward | sed -n '1p'
  echo
  echo "| system | batch | µs per call | GFLOP/s |"
  echo "|---|---:|---:|---:|"
  .build/bench_forward | awk -F'|' '/^\| [0-9]/ {printf "| FlowRuntime (C call) |%s|%s|%s|\n", $2, $3, $4}'
  bench/.venv/bin/python bench/forward/peers.py "$FIXTURE"
} | tee bench/forward/results.md
