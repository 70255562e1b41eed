#!/usr/bin/env bash
# Training throughput and time-to-quality: FlowRuntime (Python binding over
# the C ABI, flowrt_side.py) against PyTorch eager (peers.py) on the same
# model (2->256x3->2 SiLU on [x, t]), loss, optimiser, schedule, clipping and
# EMA, batch 1024, the same thread count, in one run. Both score their EMA
# weights on ONE held-out file (heldout.py: numpy-seeded (t, x0, x1) rows)
# outside their timed regions, so "time to threshold" compares like with like.
#
# Unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for both commands so that
# OpenBLAS uses its AVX-512 kernels (PyTorch uses its own either way).
#
#   bash bench/train/run.sh            # THREADS=2 STEPS=3000 THRESHOLD=-4.8 HELDOUT=32768
#   PLAIN=1 bash bench/train/run.sh    # Adam at a constant rate only (no warmup, decay, clip, EMA) on both sides
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-3000}
THRESHOLD=${THRESHOLD:--4.8}
HELDOUT=${HELDOUT:-32768}
OUT=bench/train/results${PLAIN:+-plain}.md
EXTRA=${PLAIN:+--plain}
# PYTHON: an interpreter with torch (default: bench/.venv, created by bench/setup-venv.sh).
if [ -z "${PYTHON:-}" ]; then bash bench/setup-venv.sh >/dev/null; PYTHON=bench/.venv/bin/python; fi
swift build -c release --product flowrt >/dev/null
ln -sf libflowrt.so .build/release/libflowrt.so.0
VERSIONS=$("$PYTHON" -c "import torch, numpy; print('torch', torch.__version__ + ', numpy', numpy.__version__)")
TMP=$(mktemp -d)
"$PYTHON" bench/train/heldout.py "$TMP/heldout.npy" "$HELDOUT"
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 PYTHONPATH="$PWD/bindings/python:$PWD/bench/train" \
    FLOWRT_LIBRARY="$PWD/.build/release/libflowrt.so" \
    "$PYTHON" bench/train/flowrt_side.py --steps "$STEPS" --threads "$THREADS" --heldout "$TMP/heldout.npy" $EXTRA > "$TMP/flowrt.log"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$THREADS" PYTHONPATH="$PWD/bench/train" \
    "$PYTHON" bench/train/peers.py --steps "$STEPS" --threads "$THREADS" --heldout "$TMP/heldout.npy" $EXTRA > "$TMP/torch.log"
LOAD_AFTER=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$TMP" "$STEPS" "$THREADS" "$THRESHOLD" "$VERSIONS" "$LOAD_BEFORE" "$LOAD_AFTER" "$HELDOUT" "${PLAIN:-}" > "$OUT" <<'PY'
import re, sys
tmp, steps, threads, threshold, versions = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
heldout, plain = sys.argv[8], sys.argv[9] == "1"
load = f"1-minute load average {sys.argv[6]} before, {sys.argv[7]} after"
def parse(path):
    evals, rate = [], None
    for line in open(path):
        m = re.match(r"step (\d+) train_seconds ([\d.]+) heldout (\S+)", line)
        if m: evals.append((int(m[1]), float(m[2]), float(m[3])))
        m = re.search(r"steps/s ([\d.]+)$", line.strip())
        if m: rate = float(m[1])
    reach = next(((s, e) for s, e, h in evals if h <= threshold), None)
    return evals, rate, reach
fr, tr = parse(f"{tmp}/flowrt.log"), parse(f"{tmp}/torch.log")
recipe = "Adam at a constant rate only" if plain else "Adam, warmup + cosine, clip 1, EMA 0.999"
print(f"### Training, {threads} threads, batch 1024, {steps} steps, {recipe}\n")
print(f"Command: `{'PLAIN=1 ' if plain else ''}THREADS={threads} STEPS={steps} bash bench/train/run.sh` ({versions}; OPENBLAS_CORETYPE/L2_SIZE unset; {load}).\n")
print(f"Held-out G of the {'raw' if plain else 'EMA'} weights on one shared file of {heldout} (t, x0, x1) rows, scored every 250 steps outside the timed region; times are training time only.\n")
print("| system | steps/s | held-out G at end | training time to held-out G ≤ %.2f |" % threshold)
print("|---|---:|---:|---:|")
for name, (ev, rate, reach) in [("FlowRuntime", fr), ("PyTorch eager", tr)]:
    r = f"{reach[1]:.1f} s (step {reach[0]})" if reach else "not reached"
    print(f"| {name} | {rate:.1f} | {ev[-1][2]:.4f} | {r} |")
print(f"\nSpeed-up: {fr[1] / tr[1]:.2f}x steps/s.\n")
print("| step | FlowRuntime: training s | held-out G | PyTorch: training s | held-out G |")
print("|---:|---:|---:|---:|---:|")
for (s, fe, fg), (_, te, tg) in zip(fr[0], tr[0]):
    print(f"| {s} | {fe:.1f} | {fg:.4f} | {te:.1f} | {tg:.4f} |")
PY
cat "$OUT"
