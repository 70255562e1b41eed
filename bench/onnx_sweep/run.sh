#!/usr/bin/env bash
# bench/onnx_sweep — import robustness over 80 unseen image networks, both exporters
# (see sweep.py). One thread: OPENBLAS_CORETYPE is left as the machine sets it (this
# checks values, not speed). Arguments go to sweep.py; with none, the whole sweep runs
# and bench/onnx_sweep/results.md is rewritten.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
V=Tests/ONNXData/images/.venv/bin
if ! "$V/python" -c "import torch, onnx, onnxruntime, onnxscript, diffusers, importlib.util as u; assert u.find_spec('torchcfm')" 2>/dev/null; then
    python3 -m venv Tests/ONNXData/images/.venv
    "$V/pip" install -q torch==2.13.0+cpu onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 numpy
    "$V/pip" install -q --no-deps torchcfm==1.0.7 diffusers==0.42.1
    "$V/pip" install -q huggingface_hub safetensors regex importlib_metadata Pillow requests
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 FLOWRT_NUM_THREADS=1
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
if [ $# -gt 0 ]; then exec "$V/python" -W ignore bench/onnx_sweep/sweep.py "$@"; fi
rm -rf .build/onnx-sweep
started=$(date -u '+%Y-%m-%d %H:%M')
"$V/python" -W ignore bench/onnx_sweep/sweep.py > .build/onnx-sweep.log 2>&1
{
  echo "### ONNX import sweep, $started UTC (git $(git rev-parse --short HEAD))"
  echo
  echo "Command: \`bash bench/onnx_sweep/run.sh\`. Each variant exported by torch's legacy exporter (opset 17) and"
  echo "dynamo exporter (default opset), loaded in FlowRuntime and compared with onnxruntime at batch 2 (OK: relative"
  echo "error <= 1e-4). Versions: $("$V/python" -c "import torch, onnx, onnxruntime, onnxscript; print(f'torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, onnxscript {onnxscript.__version__}')")."
  echo
  "$V/python" -W ignore bench/onnx_sweep/sweep.py --table
} > bench/onnx_sweep/results.md
cat bench/onnx_sweep/results.md
