#!/usr/bin/env bash
# bench/scaling — 1- and 2-thread throughput of every FlowRuntime workload
# (velocity, RK4 and dopri5 transport, exact and Hutchinson log-densities,
# SDE sampling, image-network velocity, training) next to PyTorch's and
# onnxruntime's 2-thread scaling, in one command (~4–6 min on a quiet
# machine). Writes bench/scaling/results.md; the raw JSON lines go to
# .build/bench-scaling/raw.jsonl.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only (the
# report says so); OPENBLAS_NUM_THREADS=1 (FlowRuntime's GEMMs are its own;
# PyTorch uses its own threads). Sizes: see bench.py (REPS, TORCH_REPS,
# ROUNDS, N_FORWARD, N_ODE, N_WIDE, N_EXACT64, RK4_STEPS, SDE_STEPS,
# IMAGE_BATCH, IMAGE_BUDGET, TRAIN_STEPS; SKIP=images,training,torch,solvers
# leaves parts out).
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
PY=${BENCH_PYTHON:-bench/.venv/bin/python}
if [ -z "${BENCH_PYTHON:-}" ]; then
    bash bench/setup-venv.sh >/dev/null
    "$PY" -c "import torchdiffeq" 2>/dev/null || "$PY" -m pip install -q torchdiffeq
    # PyTorch's image networks (torchcfm, diffusers; bench/images' recipe). Without them
    # the PyTorch image rows are reported as skipped.
    if ! "$PY" -c "import importlib.util as u, diffusers; assert u.find_spec('torchcfm')" 2>/dev/null; then
        { "$PY" -m pip install -q --no-deps -r bench/images/requirements-nodeps.txt \
          && "$PY" -m pip install -q -r bench/images/requirements.txt; } >/dev/null 2>&1 \
          || echo "bench/scaling: torchcfm/diffusers not installed; PyTorch image rows will be skipped" >&2
    fi
fi
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
export OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE FLOWRT_NUM_THREADS
OUT=.build/bench-scaling
mkdir -p "$OUT"
started=$(date -u +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$PY" bench/scaling/bench.py | tee "$OUT/raw.jsonl" >&2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date -u +%s) - started ))
versions=$("$PY" -c "
import numpy, onnxruntime, torch, torchdiffeq, flowrt
print(f'FlowRuntime {flowrt.__version__} ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources || echo ', uncommitted changes')), torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}')")
header="### 2-thread scaling, $(date -u '+%Y-%m-%d %H:%M') UTC, $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores

Command: \`make bench-scaling\` ($versions; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this command only, OPENBLAS_NUM_THREADS=1; ${elapsed} s). 1-minute load average $load_before before, $load_after after (load1 load5 load15).

Throughput = batch / best time of REPS=${REPS:-3} calls (PyTorch ${TORCH_REPS:-2}; velocity and image rows: best over ${ROUNDS:-2} alternating processes per system and thread count). Scaling = 2-thread throughput / 1-thread throughput of the same system. FlowRuntime: Python binding, \`threads=\` per call (velocity: FLOWRT_NUM_THREADS per process). PyTorch: \`torch.set_num_threads\`, torchdiffeq for the ODEs, autograd for the divergence. onnxruntime: \`intra_op_num_threads\`, FlowRuntime's ONNX export of the same network.
"
"$PY" bench/scaling/bench.py report "$OUT/raw.jsonl" "$header" > bench/scaling/results.md
cat bench/scaling/results.md
