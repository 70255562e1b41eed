#!/usr/bin/env bash
# Creates bench/.venv with PyTorch (CPU wheel), onnx and onnxruntime.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import torch, onnxruntime, numpy" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q numpy onnx onnxruntime
    .venv/bin/pip install -q torch==2.13.0+cpu
fi
.venv/bin/python -c "import torch, onnxruntime, numpy; print('torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| numpy', numpy.__version__)"
