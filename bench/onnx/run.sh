#!/usr/bin/env bash
# bench/onnx — velocity throughput of a PyTorch export imported by FlowRuntime
# next to onnxruntime on the same file, one run, one thread each.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only, so
# OpenBLAS picks its AVX-512 kernels (onnxruntime uses its own MLAS kernels).
# Threads: FLOWRT_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, ORT intra/inter 1.
# Python: BENCH_PYTHON (default bench/.venv/bin/python from bench/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product flowrt >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
PY=${BENCH_PYTHON:-bench/.venv/bin/python}
[ -x "$PY" ] || { bash bench/setup-venv.sh; PY=bench/.venv/bin/python; }
cc -O2 -std=c99 -Iinclude bench/onnx/bench_onnx.c -L.build/release -lflowrt -Wl,-rpath,"$PWD/.build/release" \
   -o .build/bench_onnx
FIXTURE=${FIXTURE:-${FLOWRT_FIXTURES:-../shared/fixtures/onnx}/mlp_silu__dynamo__opdefault.onnx}
export FLOWRT_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
PEER=$("$PY" bench/onnx/ort_peer.py "$FIXTURE")
FLOPS=$(echo "$PEER" | sed -n 's/^flops //p')
{
  echo "### Imported $(basename "$FIXTURE"), $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), 1 thread"
  echo
  echo "Command: \`bash bench/onnx/run.sh\` (OPENBLAS_CORETYPE/L2_SIZE unset; $FLOPS FLOPs per sample)."
  echo
  echo "| system | batch | µs per call | GFLOP/s |"
  echo "|---|---:|---:|---:|"
  .build/bench_onnx "$FIXTURE" "$FLOPS"
  echo "$PEER" | grep '^|'
} | tee bench/onnx/results.md
