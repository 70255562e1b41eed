#!/usr/bin/env bash
# 2-thread scaling of training, side by side: FlowRuntime (this build, and
# optionally a baseline libflowrt.so in BASE=) and PyTorch eager, each at 1
# and 2 threads, interleaved for ROUNDS rounds of STEPS steps (the bench's
# model and recipe: flowrt_side.py / peers.py); best steps/s per cell.
# Prints the 1-minute load average before and after.
#
#   bash bench/train/scaling.sh                      # ROUNDS=3 STEPS=750
#   BASE=/path/to/old/libflowrt.so bash bench/train/scaling.sh
#
# Unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (as run.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-750}
if [ -z "${PYTHON:-}" ]; then bash bench/setup-venv.sh >/dev/null; PYTHON=bench/.venv/bin/python; fi
NEW=$PWD/.build/release/libflowrt.so
TMP=$(mktemp -d)
"$PYTHON" bench/train/heldout.py "$TMP/heldout.npy" 4096
echo "load before $(cut -d' ' -f1 /proc/loadavg)"
declare -A best
run() {  # name threads command...
    local name=$1 threads=$2; shift 2
    local r
    r=$("$@" --steps "$STEPS" --threads "$threads" --heldout "$TMP/heldout.npy" --eval-every "$STEPS" | sed -n 's/^steps\/s //p')
    local key="$name/$threads"
    if [ -z "${best[$key]:-}" ] || python3 -c "import sys; sys.exit(0 if $r > ${best[$key]} else 1)"; then best[$key]=$r; fi
    echo "round $round $key $r"
}
for round in $(seq "$ROUNDS"); do
    for threads in 1 2; do
        for lib in ${BASE:-} "$NEW"; do
            name=$([ "$lib" = "$NEW" ] && echo FlowRuntime || echo baseline)
            run "$name" "$threads" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
                PYTHONPATH="$PWD/bindings/python:$PWD/bench/train" FLOWRT_LIBRARY="$lib" "$PYTHON" bench/train/flowrt_side.py
        done
        run PyTorch "$threads" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" \
            PYTHONPATH="$PWD/bench/train" "$PYTHON" bench/train/peers.py
    done
done
echo "load after $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| system | 1 thread steps/s | 2 threads steps/s | scaling |"
echo "|---|---:|---:|---:|"
for name in baseline FlowRuntime PyTorch; do
    [ -n "${best[$name/1]:-}" ] || continue
    python3 -c "print(f'| $name | ${best[$name/1]} | ${best[$name/2]} | {${best[$name/2]} / ${best[$name/1]}:.2f}x |')"
done
python3 -c "print(f'\nFlowRuntime / PyTorch: {${best[FlowRuntime/1]} / ${best[PyTorch/1]}:.2f}x at 1 thread, {${best[FlowRuntime/2]} / ${best[PyTorch/2]}:.2f}x at 2 threads')"
rm -rf "$TMP"
