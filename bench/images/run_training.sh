#!/usr/bin/env bash
# bench/images training, sampling and likelihood, side by side (issue 14):
#   1. training speed: torchcfm's MNIST U-Net trained in PyTorch eager and in
#      FlowRuntime (the same initial weights through ONNX), same loss, Adam,
#      batch 32, seed (train_bench.py); steps/s at 1 and 2 threads;
#   2. a race: both trained at once for BUDGET seconds of wall time at one
#      thread each (one core each), the loss curve of each, then test
#      bits/dim of both evaluated by FlowRuntime (TEST_IMAGES images);
#   3. sampling and likelihood of PyTorch's trained network: FlowRuntime
#      (its ONNX export) against flow_matching's ODESolver (torchdiffeq) on
#      the module itself, 64 images, dopri5 rtol 1e-5 and 20-step midpoint,
#      Hutchinson log-densities (sample_bench.py), at 1 and 2 threads;
#   4. scikit-learn's 8×8 digits with the native U-Net, exact bits/dim next
#      to bench/quality's MLP flow on the same data (digits.py).
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this command only;
# OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=T, torch.set_num_threads(T).
# Results: .build/bench-train/*.jsonl and bench/images/results-training.md.
# Environment: BUDGET (default 600 s), TEST_IMAGES (default 256),
# BENCH_PYTHON (default bench/.venv), SKIP_RACE=1 to reuse the last race,
# SKIP_DIGITS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-600}
TEST_IMAGES=${TEST_IMAGES:-256}
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
PY=${BENCH_PYTHON:-bench/.venv/bin/python}
if [ -z "${BENCH_PYTHON:-}" ]; then
    bash bench/setup-venv.sh >/dev/null
    if ! "$PY" -c "import importlib.util as u, torchdiffeq; assert u.find_spec('torchcfm') and u.find_spec('flow_matching')" 2>/dev/null; then
        "$PY" -m pip install -q --no-deps -r bench/images/requirements-nodeps.txt
        "$PY" -m pip install -q -r bench/images/requirements.txt
    fi
fi
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
export OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
OUT=.build/bench-train
mkdir -p "$OUT"
started=$(date -u +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$OUT/speed.jsonl"
for threads in 1 2; do
    for system in flowrt torch; do
        echo "training speed: $system, $threads thread(s)" >&2
        OMP_NUM_THREADS=$threads "$PY" bench/images/train_bench.py speed "$system" "$threads" --steps 20 --out "$OUT" \
            2>>"$OUT/errors.log" >> "$OUT/speed.jsonl"
    done
done
if [ -z "${SKIP_RACE:-}" ]; then
    echo "race: $BUDGET s each, at once, one thread each" >&2
    OMP_NUM_THREADS=1 "$PY" bench/images/train_bench.py race torch "$BUDGET" --out "$OUT" 2>>"$OUT/errors.log" > "$OUT/race-torch.jsonl" &
    OMP_NUM_THREADS=1 "$PY" bench/images/train_bench.py race flowrt "$BUDGET" --out "$OUT" 2>>"$OUT/errors.log" > "$OUT/race-flowrt.jsonl"
    wait
    echo "bits/dim of both on $TEST_IMAGES test images" >&2
    "$PY" bench/images/train_bench.py bpd "$OUT" --images "$TEST_IMAGES" > "$OUT/bpd.jsonl"
fi
: > "$OUT/sample.jsonl"
for threads in 1 2; do
    for system in flowrt torch; do
        echo "sampling and likelihood: $system, $threads thread(s)" >&2
        OMP_NUM_THREADS=$threads "$PY" bench/images/sample_bench.py "$OUT" "$system" "$threads" 2>>"$OUT/errors.log" >> "$OUT/sample.jsonl"
    done
done
if [ -z "${SKIP_DIGITS:-}" ]; then
    echo "8x8 digits: the U-Net flow on bench/quality's data" >&2
    OMP_NUM_THREADS=2 "$PY" bench/images/digits.py --threads 2 2>>"$OUT/errors.log" > "$OUT/digits.jsonl"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date -u +%s) - started ))
"$PY" bench/images/train_report.py "$OUT" --elapsed "$elapsed" --load "$load_before / $load_after" \
    --budget "$BUDGET" --git "$(git rev-parse --short HEAD)" | tee bench/images/results-training.md
