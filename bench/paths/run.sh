#!/usr/bin/env bash
# Beyond the ODE: schedules (trig, linear, path-length-optimised Fourier) and
# the linear schedule with mini-batch OT coupling, on checkerboard and
# 8 gaussians. Appends a dated table to BENCHMARKS.md (section
# "## Beyond the ODE"). Runs a few minutes per dataset.
#
# Usage: bash bench/paths/run.sh [steps] (default 4000 updates per variant)
# Unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only, so
# OpenBLAS picks its native kernels (tests never do this).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${1:-4000}"
swift build -c release --product flowrt-cli >/dev/null
CLI=.build/release/flowrt-cli
OUT=$(mktemp)
{
  echo
  echo "### Beyond the ODE, $(date -u +%Y-%m-%d), $(nproc) threads"
  echo
  echo "Command: \`bash bench/paths/run.sh $STEPS\` (OPENBLAS_CORETYPE/L2_SIZE unset). Network 2→128×3→2 SiLU,"
  echo "$STEPS updates of batch 512 per variant (Adam 2e-3, cosine decay, EMA 0.999), N(0, I) base."
  echo "Kinetic energy: E ∫|v̂(t, X_t)|² dt along RK4 trajectories (100 steps, 2000 samples ± s.e.);"
  echo "NFE: mean network evaluations per sample of dopri5 at rtol = atol = 1e-5 (2000 samples);"
  echo "NLL: exact log-likelihood of 2000 fresh samples (dopri5 1e-5); NLL − H is the excess over the true entropy."
  echo "fourier: \`PathLengthOptimizer\` (ascent on G over K = 4 sine coefficients, 8 network updates per schedule update, Adam step 0.001)"
  echo "for 60% of the updates after a 20% warmup, then the network alone on the learned schedule."
  echo "linear-ot: exact mini-batch OT pairing (Hungarian) inside each chunk of 128."
  echo
} > "$OUT"
first=1
for toy in checkerboard 8gaussians; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$CLI" paths --toy "$toy" --steps "$STEPS" | \
    if [ $first = 1 ]; then cat; else tail -n +3; fi >> "$OUT"
  first=0
done
cat "$OUT"
if ! grep -q "^## Beyond the ODE" BENCHMARKS.md; then
  printf '\n## Beyond the ODE (issue: score, SDE, path length, couplings)\n\nSchedule or coupling × (kinetic energy, NFE, held-out NLL); produced by `bench/paths/run.sh`.\n' >> BENCHMARKS.md
fi
cat "$OUT" >> BENCHMARKS.md
rm -f "$OUT"
