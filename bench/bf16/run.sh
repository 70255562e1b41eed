#!/usr/bin/env bash
# bench/bf16 — the bf16 evaluation path (issue 17): kernel, velocity and RK4
# speed against float32 and torchdiffeq, and accuracy, in one run. Writes
# bench/bf16/results.md.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only
# (torch's and numpy's OpenBLAS pick their AVX-512 kernels; FlowRuntime's MLP
# path does not use OpenBLAS). Speed runs on one thread: FLOWRT_NUM_THREADS=1,
# threads = 1 per call, OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1).
# REPS (default 3): rounds per timing, best kept, systems interleaved.
# unet.py adds the image networks: velocity speed (1 thread) on the PyTorch
# fixtures and a Fashion-MNIST U-Net trained here (FMNIST_STEPS, default 400),
# and that U-Net's sampling deviation and bits/dim change (2 threads: results
# do not depend on the thread count, only the time does).
set -euo pipefail
cd "$(dirname "$0")/../.."
make build >/dev/null
bash bench/setup-venv.sh >/dev/null
bench/.venv/bin/python -c "import torchdiffeq" 2>/dev/null || bench/.venv/bin/pip install -q torchdiffeq
# The demo's checkerboard network (2 → 256×3 → 2 SiLU), trained once and kept under .build/.
CHECKERBOARD_ONNX=${CHECKERBOARD_ONNX:-.build/bench-bf16/checkerboard.onnx}
if [ ! -f "$CHECKERBOARD_ONNX" ]; then
  mkdir -p "$(dirname "$CHECKERBOARD_ONNX")"
  .build/release/flowrt-cli train --toy checkerboard --steps 3000 --batch 512 --seed 0 --out "$CHECKERBOARD_ONNX" >/dev/null
fi
export CHECKERBOARD_ONNX
# A Fashion-MNIST U-Net (the CLI's default image network) trained for FMNIST_STEPS
# steps on 2 threads (~7 min on a busy machine), kept under .build/.
FMNIST_ONNX=${FMNIST_ONNX:-.build/bench-bf16/fmnist_unet.onnx}
if [ ! -f "$FMNIST_ONNX" ]; then
  mkdir -p "$(dirname "$FMNIST_ONNX")"
  .build/release/flowrt-cli train --images fashion-mnist --steps "${FMNIST_STEPS:-400}" --threads 2 --seed 0 \
    --out "$FMNIST_ONNX" >/dev/null
fi
export FMNIST_ONNX
mkdir -p .build/bench-bf16
clang -O2 bench/bf16/gemm_bench.c Sources/CKernels/*.c -ISources/CKernels/include -lm -o .build/bench-bf16/gemm_bench
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 FLOWRT_NUM_THREADS=1
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
{
  echo "## bf16 evaluation, $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores"
  echo
  echo "Command: \`make bench-bf16\` (OPENBLAS_CORETYPE/L2_SIZE unset; speed on 1 thread, best of ${REPS:-3} interleaved rounds)."
  echo "Versions: flowrt $(.build/release/flowrt-cli --version), $(bench/.venv/bin/python -c 'import torch, torchdiffeq, numpy; print("torch", torch.__version__, "| torchdiffeq", torchdiffeq.__version__, "| numpy", numpy.__version__)')."
  echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: ratios are measured side by side)."
  echo
  echo "### (0) Kernel: fr_gemm_bf16 vs fr_gemm_packed (float32), one layer y = xWᵀ + b, 1 thread"
  echo
  echo '```'
  .build/bench-bf16/gemm_bench "${REPS:-3}"
  echo '```'
  echo
  bench/.venv/bin/python bench/bf16/bench.py
  bench/.venv/bin/python bench/bf16/unet.py
  echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee bench/bf16/results.md
