"""C2ST of each result line's posterior samples against the reference posterior.

    score.py RESULTS.jsonl [--recipe] [--first K] > SCORED.jsonl

Reads the JSON lines of bench_conditional.py, and for each observation
draws 10,000 reference samples (seeded by the observation's index, the same
for every system) and computes tasks.c2st(reference, samples). Adds
"c2st" (per observation) to each line; --recipe: the sbi-benchmark recipe
without early stopping (slow), as "c2st_recipe"; --first K: only the first K
observations. One thread (OMP_NUM_THREADS=1 in
run.sh); scoring is not part of any system's timings.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tasks import c2st, reference  # noqa: E402


def main():
    recipe = "--recipe" in sys.argv[2:]
    first = int(sys.argv[sys.argv.index("--first") + 1]) if "--first" in sys.argv else None
    for line in open(sys.argv[1]):
        if "{" not in line:
            continue
        r = json.loads(line[line.index("{"):])  # sbi prints a message on the same stdout line first
        data = np.load(r["samples_file"])
        scores = []
        for k, (samples, x_obs) in enumerate(zip(data["samples"][:first], data["x_obs"][:first])):
            ref = reference(r["task"], x_obs, len(samples), seed=10_000 + k)
            scores.append(c2st(ref, samples, early_stopping=not recipe))
        r["c2st_recipe" if recipe else "c2st"] = scores
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
