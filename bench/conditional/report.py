"""The results table of bench/conditional from score.py's JSON lines.

    report.py SCORED.jsonl [...]

Per task and budget: training seconds, seconds per 10,000 posterior samples
(mean over observations), C2ST (mean ± spread over observations), and
FlowRuntime's ratios to each sbi estimator (their time / FlowRuntime's).
"""
from __future__ import annotations

import json
import sys

import numpy as np

NAMES = {"flowrt": "FlowRuntime", "fmpe": "sbi FMPE", "npe_nsf": "sbi NPE (zuko NSF)"}


def ratio(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def main():
    rows_only = "--rows-only" in sys.argv
    rows = [json.loads(line) for path in sys.argv[1:] if path != "--rows-only" for line in open(path) if line.strip()]
    print("| task | simulations | estimator | training s | sampling s / 10k | C2ST (mean, min–max) | epochs / steps | "
          "run at (UTC), git, load |")
    print("|---|---:|---|---:|---:|---|---|---|")
    by_key = {}
    for r in rows:
        by_key[(r["task"], r["simulations"], r["system"])] = r
        c = np.asarray(r["c2st"])
        if r["system"] == "flowrt":
            s = r["settings"]
            how = (f'{s["steps"]} steps × batch {s["batch_size"]}, {s["depth"]}×{s["hidden"]}'
                   + (" residual" if s.get("residual") else ""))
        else:
            how = f'{r["epochs"]} epochs' + (f' (cap {r["max_epochs"]})' if r.get("max_epochs") else "")
        print(f'| {r["task"]} | {r["simulations"]:,} | {NAMES[r["system"]]} | {r["train_seconds"]:.1f} | '
              f'{np.mean(r["sample_seconds"]):.2f} | {c.mean():.3f} ({c.min():.3f}–{c.max():.3f}) | {how} | '
              f'{r.get("measured_at", "?")}, {r.get("git", "?")}, {r.get("load_before") or "?"} |')
    if rows_only:
        return
    print()
    print("FlowRuntime against each sbi estimator (training and sampling: sbi's seconds / FlowRuntime's;"
          " C2ST: FlowRuntime's minus sbi's, negative = FlowRuntime closer to the reference):")
    print()
    print("| task | simulations | against | training × | sampling × | ΔC2ST |")
    print("|---|---:|---|---:|---:|---:|")
    for (task, sims, system), r in by_key.items():
        if system == "flowrt" or (task, sims, "flowrt") not in by_key:
            continue
        f = by_key[(task, sims, "flowrt")]
        print(f'| {task} | {sims:,} | {NAMES[system]} | {ratio(r["train_seconds"] / f["train_seconds"])} | '
              f'{ratio(np.mean(r["sample_seconds"]) / np.mean(f["sample_seconds"]))} | '
              f'{np.mean(f["c2st"]) - np.mean(r["c2st"]):+.3f} |')


if __name__ == "__main__":
    main()
