#!/usr/bin/env bash
# bench/conditional — simulation-based inference, FlowRuntime against sbi
# (issue 15): a conditional MLP flow (flowrt.Flow.mlp(..., context_dim=m),
# Flow.fit(θ, context=x), Flow.sample(context=x_obs)) against sbi's
# flow-matching posterior estimator (FMPE) and sbi's NPE with zuko's neural
# spline flow, on the Gaussian-linear task (10-d) and two moons, with 10k
# and 100k simulations. For each: training seconds, seconds to draw 10,000
# posterior samples per observation, and C2ST accuracy against the reference
# posterior (exact for Gaussian linear, rejection sampling from the known
# model for two moons; bench/conditional/tasks.py), averaged over
# OBSERVATIONS observations from the prior predictive.
#
# One thread for every system: FLOWRT threads=1 (fit and sample),
# torch.set_num_threads(1) and set_num_interop_threads(1),
# OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1. OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE are UNSET for this command only (OpenBLAS picks its own
# kernels); nothing else is set. One process per (system, task, budget).
#
# sbi trains with its defaults (batch 200, lr 5e-4, stop after 20 epochs
# without validation improvement), except at 100k simulations, where
# MAX_EPOCHS_100K (default 20; 0 = no cap) caps its epochs so that the
# command fits in about an hour on a shared 2-core machine; results.md
# reports the epochs run. FlowRuntime's settings are fixed per task and
# budget in bench_conditional.py (FLOWRT_SETTINGS).
#
# C2ST: score.py, after each budget's runs (the 10k scoring runs in the
# background while the 100k runs train: a second busy core; see the load
# averages in results.md).
#
# Environment: OBSERVATIONS (default 3), BUDGETS (default "10000 100000"),
# MAX_EPOCHS_100K (default 20), BENCH_PYTHON (default bench/.venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
OBSERVATIONS=${OBSERVATIONS:-3}
BUDGETS=${BUDGETS:-"10000 100000"}
MAX_EPOCHS_100K=${MAX_EPOCHS_100K:-20}
swift build -c release --static-swift-stdlib >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
PY=${BENCH_PYTHON:-bench/.venv/bin/python}
if [ -z "${BENCH_PYTHON:-}" ]; then
    bash bench/setup-venv.sh >/dev/null
    if ! "$PY" -c "import sbi, zuko, nflows, sklearn, tensorboard, matplotlib" 2>/dev/null; then
        "$PY" -m pip install -q --no-deps -r bench/conditional/requirements-nodeps.txt
        "$PY" -m pip install -q -r bench/conditional/requirements.txt
    fi
fi
export FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" PYTHONPATH="$PWD/bindings/python"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
OUT=$PWD/.build/bench-conditional
mkdir -p "$OUT"
started=$(date -u +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
scorers=()
scored=()
for sims in $BUDGETS; do
    f="$OUT/runs_$sims.jsonl"; : > "$f"
    for task in gaussian_linear two_moons; do
        for system in flowrt fmpe npe_nsf; do
            echo "$(date -u +%H:%M:%S) $sims simulations, $task: $system" >&2
            extra=()
            if [ "$sims" -ge 100000 ] && [ "$system" != flowrt ] && [ "$MAX_EPOCHS_100K" -gt 0 ]; then
                extra=(--max-epochs "$MAX_EPOCHS_100K")
            fi
            "$PY" bench/conditional/bench_conditional.py "$system" "$task" "$sims" 1 --out "$OUT" \
                --observations "$OBSERVATIONS" "${extra[@]}" >> "$f" 2> "$OUT/$system-$task-$sims.log"
        done
    done
    "$PY" bench/conditional/score.py "$f" > "$OUT/scored_$sims.jsonl" &
    scorers+=($!)
    scored+=("$OUT/scored_$sims.jsonl")
    echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) after the $sims-simulation runs" >&2
done
for p in "${scorers[@]}"; do wait "$p"; done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date -u +%s) - started ))
versions=$("$PY" -c "
import sys, numpy, torch, sbi, zuko, sklearn, flowrt
print(f'Python {sys.version.split()[0]}, FlowRuntime {flowrt.__version__} (git $(git rev-parse --short HEAD)), '
      f'sbi {sbi.__version__}, zuko {zuko.__version__}, torch {torch.__version__}, scikit-learn {sklearn.__version__}, '
      f'numpy {numpy.__version__}')")
cpu=$(lscpu | sed -n 's/^Model name: *//p')
{
  echo "### Conditional flows for simulation-based inference, $(date -u '+%Y-%m-%d %H:%M') UTC, $cpu ($(nproc) cores), 1 thread"
  echo
  echo "Command: \`make bench-conditional\` (= \`bash bench/conditional/run.sh\`; OBSERVATIONS=$OBSERVATIONS,"
  echo "BUDGETS=\"$BUDGETS\", MAX_EPOCHS_100K=$MAX_EPOCHS_100K). OPENBLAS_CORETYPE/L2_SIZE unset for this command only;"
  echo "one thread everywhere (FlowRuntime threads=1; torch.set_num_threads(1); OMP/OPENBLAS_NUM_THREADS=1)."
  echo "$elapsed s in all; load average $load_before before, $load_after after (a shared machine: other"
  echo "engineers' builds and a fuzzer ran alongside, so absolute times are noisy; ratios were measured in the same run)."
  echo
  echo "Versions: $versions."
  echo
  "$PY" bench/conditional/report.py "${scored[@]}"
} > "$OUT/results-table.md"
cat "$OUT/results-table.md"
