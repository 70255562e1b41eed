#!/usr/bin/env bash
# bench/python — the Python binding's per-call cost against the C call.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for this command only
# (AVX-512 kernels); FLOWRT_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
make build >/dev/null
make venv >/dev/null
cc -O2 -std=c99 -Iinclude $(pkg-config --cflags openblas) bench/forward/bench_forward.c \
   -L.build/release -lflowrt -Wl,-rpath,"$PWD/.build/release" $(pkg-config --libs openblas) -o .build/bench_forward
export FLOWRT_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
{
  echo "### Python binding overhead, $(date -u +%Y-%m-%d), 1 thread"
  echo
  echo "Command: \`make bench-python\` (Python $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])'), numpy $(.venv/bin/python -c 'import numpy; print(numpy.__version__)'); OPENBLAS_CORETYPE/L2_SIZE unset)."
  echo
  .venv/bin/python bench/python/bench_velocity.py .build/bench_forward
} | tee bench/python/results.md
