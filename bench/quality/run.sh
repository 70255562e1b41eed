#!/usr/bin/env bash
# bench/quality: builds the FlowRuntime runner (release), sets up the venv
# (torch from the local CPU wheel, torchdiffeq, zuko, scikit-learn, numpy,
# matplotlib), then runs every system on every dataset (run.py).
#   bash bench/quality/run.sh [full|tiny] [extra run.py arguments]
set -euo pipefail
cd "$(dirname "$0")"
SCALE=${1:-full}; shift || true
(cd runner && swift build -c release 2>&1 | tail -1)
if [ ! -f .venv/.ok ] || [ requirements.txt -nt .venv/.ok ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -r requirements.txt
  touch .venv/.ok
fi
exec .venv/bin/python run.py --scale "$SCALE" "$@"
