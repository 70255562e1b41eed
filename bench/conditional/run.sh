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
# C2ST: score.py, in the background after each configuration while the
# next one trains (a second busy core; see the load averages in results.md).
# Each configuration's result is its own file in .build/bench-conditional,
# so SYSTEMS="flowrt" re-measures one system and keeps the others' results.
#
# Environment: OBSERVATIONS (default 3), BUDGETS (default "10000 100000"),
# MAX_EPOCHS_100K (default 20), BENCH_PYTHON (default bench/.venv),
# SYSTEMS (default "flowrt fmpe npe_nsf"), REPORT_ONLY=1 (rewrite
# results.md from the last runs' files, run nothing).
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
SYSTEMS=${SYSTEMS:-"flowrt fmpe npe_nsf"}
if [ "${REPORT_ONLY:-0}" != 1 ]; then
    scorers=()
    for sims in $BUDGETS; do
        for task in gaussian_linear two_moons; do
            for system in $SYSTEMS; do
                name="${system}_${task}_${sims}"
                echo "$(date -u +%H:%M:%S) $sims simulations, $task: $system" >&2
                extra=()
                if [ "$sims" -ge 100000 ] && [ "$system" != flowrt ] && [ "$MAX_EPOCHS_100K" -gt 0 ]; then
                    extra=(--max-epochs "$MAX_EPOCHS_100K")
                fi
                load=$(cut -d' ' -f1 /proc/loadavg)
                "$PY" bench/conditional/bench_conditional.py "$system" "$task" "$sims" 1 --out "$OUT" \
                    --observations "$OBSERVATIONS" "${extra[@]}" --load-before "$load" --git "$(git rev-parse --short HEAD)" \
                    > "$OUT/$name.run.json" 2> "$OUT/$name.log"
                # C2ST in the background while the next configuration trains (a second busy core).
                "$PY" bench/conditional/score.py "$OUT/$name.run.json" > "$OUT/$name.scored.json" &
                scorers+=($!)
            done
        done
    done
    for p in "${scorers[@]}"; do wait "$p"; done
fi
scored=()
for sims in $BUDGETS; do for task in gaussian_linear two_moons; do for system in flowrt fmpe npe_nsf; do
    [ -s "$OUT/${system}_${task}_${sims}.scored.json" ] && scored+=("$OUT/${system}_${task}_${sims}.scored.json")
done; done; done
versions=$("$PY" -c "
import sys, numpy, torch, sbi, zuko, sklearn, flowrt
print(f'Python {sys.version.split()[0]}, FlowRuntime {flowrt.__version__}, '
      f'sbi {sbi.__version__}, zuko {zuko.__version__}, torch {torch.__version__}, scikit-learn {sklearn.__version__}, '
      f'numpy {numpy.__version__}')")
cpu=$(lscpu | sed -n 's/^Model name: *//p')
{
  echo "### Conditional flows for simulation-based inference, $cpu ($(nproc --all) cores), 1 thread"
  echo
  echo "Command: \`make bench-conditional\` (= \`bash bench/conditional/run.sh\`; OBSERVATIONS=$OBSERVATIONS,"
  echo "BUDGETS=\"$BUDGETS\", MAX_EPOCHS_100K=$MAX_EPOCHS_100K). OPENBLAS_CORETYPE/L2_SIZE unset for this command only;"
  echo "one thread everywhere (FlowRuntime threads=1; torch.set_num_threads(1); OMP/OPENBLAS_NUM_THREADS=1)."
  echo "When each configuration ran and the 1-minute load average as it started are in the table: a shared"
  echo "machine (other engineers' builds and a fuzzer ran alongside), so absolute times are noisy."
  echo
  echo "Versions: $versions."
  echo
  echo "Tasks (bench/conditional/tasks.py): Gaussian linear, θ ~ N(0, 0.1 I₁₀), x | θ ~ N(θ, 0.1 I₁₀), exact posterior"
  echo "N(x/2, 0.05 I); two moons as in the sbi benchmark (θ ~ U[-1, 1]²), reference posterior by rejection sampling"
  echo "from the known model. Simulations drawn with seed 0, observations from the prior predictive (seed 1000)."
  echo "Training: sbi with its defaults (FMPE: its 'mlp' vector field, batch 200, lr 5e-4, early stopping after 20"
  echo "epochs without validation improvement; NPE: density_estimator='zuko_nsf'), epochs capped at 100k simulations"
  echo "(column 'epochs'); FlowRuntime: Flow.mlp(d, context_dim=m) with the settings of FLOWRT_SETTINGS in"
  echo "bench_conditional.py (column 'epochs / steps'), a fixed step budget, Adam with cosine decay, EMA 0.999."
  echo "Sampling: 10,000 samples per observation; sbi FMPE integrates with zuko's adaptive ODE solver (atol 1e-6,"
  echo "rtol 1e-5), FlowRuntime with per-sample dopri5 (rtol = atol = 1e-4); two-moons samples outside the prior box"
  echo "are rejected and redrawn by every system (timed)."
  echo "C2ST: the sbi-benchmark classifier (MLP 10·d, 10·d, ReLU, adam, 5-fold) with one change, early stopping on"
  echo "10% of each training fold (tasks.c2st says why); 10,000 reference samples per observation, the same for"
  echo "every system. 0.5 = indistinguishable from the reference."
  echo
  echo "Load '?': rows from the first run (2026-12-01 07:34–08:05 UTC), which recorded the load average only at its"
  echo "start (4.65) and end (10.31)."
  echo
  "$PY" bench/conditional/report.py "${scored[@]}"
  superseded=("$OUT"/first_run_*.scored.json)
  if [ -e "${superseded[0]}" ]; then
      echo
      echo "#### Superseded FlowRuntime rows (first run, plain MLP on two moons; not used above)"
      echo
      "$PY" bench/conditional/report.py --rows-only "${superseded[@]}"
  fi
} > bench/conditional/results.md
cat bench/conditional/results.md
