#!/usr/bin/env bash
# bench/images — velocity evaluation of the three unconditional image
# fixtures (Tests/ONNXData/images/{tcfm_unet,diffusers_unet,dit}__dynamo__opdefault.onnx,
# torch's default exporter, opset 20): FlowRuntime through the Python binding
# (flowrt.Model.load + Model.velocity) against onnxruntime on the same file
# and PyTorch eager on the same network (rebuilt by make_image_fixtures.py's
# recipe: seed, build, perturb), at batch 1, 16, 64 and 1 and 2 threads.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only, so
# OpenBLAS picks its AVX-512 kernels. Threads T in {1, 2}: FLOWRT_NUM_THREADS=T
# (the binding's Model.velocity has no threads argument; libflowrt reads this
# variable once per process), ORT intra_op_num_threads=T, inter_op 1,
# sequential execution; torch.set_num_threads(T), OMP_NUM_THREADS=T;
# OPENBLAS_NUM_THREADS=1. One process per (system, threads).
# Each figure is the minimum over single calls (≥ 3 calls, ≥ BUDGET seconds).
#
# Then bench/images/scaling.py measures the 2-thread speed-ups again with 1- and
# 2-thread calls interleaved in one process (SCALING_ROUNDS, default 4).
# Environment: RUNS (default 2: the whole sweep twice, both reported),
# BUDGET (default 2 s per measurement: a U-Net at batch 64 then takes ~5
# calls, not 3, so that one neighbour's burst does not set a cell; the
# sweep takes ~4.5 min), BENCH_PYTHON (default bench/.venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-2}
BUDGET=${BUDGET:-2}
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
PY=${BENCH_PYTHON:-bench/.venv/bin/python}
if [ -z "${BENCH_PYTHON:-}" ]; then
    bash bench/setup-venv.sh >/dev/null
    # torchcfm / diffusers without their dependency trees (the fixture README's recipe)
    # (torchcfm's package __init__ needs POT; only its presence is checked, the fixture script imports its models only)
    if ! "$PY" -c "import importlib.util as u, diffusers, huggingface_hub, safetensors, regex, PIL, requests; assert u.find_spec('torchcfm')" 2>/dev/null; then
        "$PY" -m pip install -q --no-deps -r bench/images/requirements-nodeps.txt
        "$PY" -m pip install -q -r bench/images/requirements.txt
    fi
fi
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
export OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
OUT=.build/bench-images
mkdir -p "$OUT"
started=$(date -u +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
OMP_NUM_THREADS=1 "$PY" -c "
import json, sys; sys.path.insert(0, 'bench/images')
from common import MODELS, fixture, flops_per_sample
json.dump({m: flops_per_sample(fixture(m)) for m in MODELS}, open('$OUT/flops.json', 'w'), indent=1)"
runs=()
for run in $(seq 1 "$RUNS"); do
    f="$OUT/run$run.jsonl"; : > "$f"; runs+=("$f")
    for threads in 1 2; do
        for system in flowrt onnxruntime torch; do
            echo "run $run, $threads thread(s): $system" >&2
            FLOWRT_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
                "$PY" bench/images/bench_images.py "$system" "$threads" --budget "$BUDGET" >> "$f"
        done
    done
done
# The 2-thread speed-ups once more, 1- and 2-thread calls interleaved in one process
# (bench/images/scaling.py): a neighbour's burst then hits both thread counts alike.
echo "interleaved 1- and 2-thread calls" >&2
OMP_NUM_THREADS=1 "$PY" bench/images/scaling.py --rounds "${SCALING_ROUNDS:-4}" > "$OUT/scaling.txt"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date -u +%s) - started ))
versions=$("$PY" -c "
import sys, numpy, onnx, onnxruntime, torch, diffusers, flowrt
from importlib.metadata import version
print(f'Python {sys.version.split()[0]}, FlowRuntime {flowrt.__version__} (git $(git rev-parse --short HEAD)), torch {torch.__version__}, '
      f'onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, numpy {numpy.__version__}, '
      f'torchcfm {version(\"torchcfm\")}, diffusers {diffusers.__version__}')")
cpu=$(lscpu | sed -n 's/^Model name: *//p')
ncpu=$(nproc)
flags=$(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')
{
  echo "### Image velocity networks, $(date -u '+%Y-%m-%d %H:%M') UTC, $cpu ($ncpu cores; $flags), 1 and 2 threads"
  echo
  echo "Command: \`bash bench/images/run.sh\` (RUNS=$RUNS, BUDGET=$BUDGET s; OPENBLAS_CORETYPE/L2_SIZE unset for this"
  echo "command only; FLOWRT_NUM_THREADS=T, ORT intra_op_num_threads=T / inter_op 1 / ORT_SEQUENTIAL, torch.set_num_threads(T);"
  echo "one process per system and thread count). $elapsed s in all; load average $load_before before, $load_after after"
  echo "(each figure is the minimum over single calls; compare the load averages: a shared machine makes figures noisy)."
  echo
  echo "Versions: $versions."
  echo
  echo "Files: \`Tests/ONNXData/images/<model>__dynamo__opdefault.onnx\` (torch's default exporter, ai.onnx opset 20) for"
  echo "FlowRuntime and onnxruntime; PyTorch runs the same network rebuilt with make_image_fixtures.py's recipe."
  echo "FLOPs per sample (2 × multiply-adds of Conv, Gemm, MatMul and two-operand Einsum nodes, counted from the ONNX file"
  echo "by bench/images/common.py; norms, activations, softmax and element-wise ops not counted):"
  echo
  "$PY" -c "
import json; f = json.load(open('$OUT/flops.json'))
print('| model | Conv | Gemm | MatMul | Einsum | total MFLOP/sample |'); print('|---|---:|---:|---:|---:|---:|')
for m, d in f.items(): print(f'| {m} | ' + ' | '.join(f'{d[k]/1e6:.1f}' for k in ('Conv', 'Gemm', 'MatMul', 'Einsum', 'total')) + ' |')"
  echo
  echo "Ratios are time ratios: FR / ORT = FlowRuntime ms / onnxruntime ms (< 1: FlowRuntime faster)."
  echo
  echo "Threads: \`flowrt_model_velocity\` evaluates a batch in chunks (U-Nets up to four samples while two chunks per"
  echo "thread remain, \`Model.batchChunk\`; the DiT eight; on 2 threads the last ones a quarter as wide, \`TaperedChunks\`)"
  echo "spread over FLOWRT_NUM_THREADS threads; a batch of one chunk"
  echo "gives its threads to its large convolutions and fused attentions (bands of rows, blocks of query rows). Results"
  echo "do not depend on the thread count or the chunking."
  echo
  "$PY" bench/images/report.py "$OUT/flops.json" "${runs[@]}"
  echo
  echo "2-thread speed-up with 1- and 2-thread calls interleaved in one process (\`bench/images/scaling.py\`, batch 64,"
  echo "best of ${SCALING_ROUNDS:-4} rounds each). FlowRuntime: \`Flow.transport\`, one RK4 step = four velocity evaluations of"
  echo "the batch in the solver's chunks (a U-Net at batch 64: 16 of 4, without the batched call's narrower last chunks),"
  echo "\`threads=\` 1 and 2 per call; onnxruntime: two sessions, intra_op 1 and 2:"
  echo
  echo '```'
  cat "$OUT/scaling.txt"
  echo '```'
} > bench/images/results.md
cat bench/images/results.md
