#!/usr/bin/env bash
# Training throughput and time-to-quality: FlowRuntime (`flowrt train`)
# against PyTorch eager (peers.py) on the same model, loss, optimiser,
# schedule, clipping and EMA, batch 1024, the same thread count, in one run.
#
# Unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for both commands so that
# OpenBLAS uses its AVX-512 kernels (PyTorch uses MKL either way).
#
#   bash bench/train/run.sh            # THREADS=2 STEPS=3000 THRESHOLD=-4.8
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-3000}
THRESHOLD=${THRESHOLD:--4.8}
OUT=bench/train/results.md
# PYTHON: an interpreter with torch (default: bench/.venv, created by bench/setup-venv.sh).
if [ -z "${PYTHON:-}" ]; then bash bench/setup-venv.sh >/dev/null; PYTHON=bench/.venv/bin/python; fi
swift build -c release --product flowrt-cli >/dev/null
CLI=.build/release/flowrt-cli
VERSIONS=$("$PYTHON" -c "import torch; print('torch', torch.__version__)")
TMP=$(mktemp -d)
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$CLI" train --toy checkerboard --steps "$STEPS" --threads "$THREADS" \
    --lr 2e-3 --warmup 200 --held-out 32768 --log-interval 250 > "$TMP/flowrt.log"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$THREADS" \
    "$PYTHON" bench/train/peers.py --steps "$STEPS" --threads "$THREADS" --heldout 32768 > "$TMP/torch.log"
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$TMP" "$STEPS" "$THREADS" "$THRESHOLD" "$VERSIONS" "$LOAD_BEFORE" "$LOAD_AFTER" > "$OUT" <<'PY'
import re, sys
tmp, steps, threads, threshold, versions = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
load = f"1-minute load average {sys.argv[6]} before, {sys.argv[7]} after"
def parse(path):
    evals, rate = [], None
    for line in open(path):
        m = re.match(r"step (\d+) elapsed ([\d.]+) (?:loss \S+ )?heldout (\S+)", line)
        if m: evals.append((int(m[1]), float(m[2]), float(m[3])))
        m = re.search(r"steps/s ([\d.]+)$", line.strip())
        if m: rate = float(m[1])
    reach = next(((s, e) for s, e, h in evals if h <= threshold), None)
    return evals, rate, reach
fr, tr = parse(f"{tmp}/flowrt.log"), parse(f"{tmp}/torch.log")
# FlowRuntime's figure: steps/s over the whole run, from the last line.
print(f"### Training, {threads} threads, batch 1024, {steps} steps\n")
print(f"Command: `THREADS={threads} STEPS={steps} bash bench/train/run.sh` ({versions}; OPENBLAS_CORETYPE/L2_SIZE unset; {load}).\n")
print("| system | steps/s | held-out G at end | time to held-out G ≤ %.2f |" % threshold)
print("|---|---:|---:|---:|")
for name, (ev, rate, reach) in [("FlowRuntime", fr), ("PyTorch eager", tr)]:
    r = f"{reach[1]:.1f} s (step {reach[0]})" if reach else "not reached"
    print(f"| {name} | {rate:.1f} | {ev[-1][2]:.4f} | {r} |")
print(f"\nSpeed-up: {fr[1] / tr[1]:.2f}x steps/s.")
PY
cat "$OUT"
