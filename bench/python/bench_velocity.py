"""bench/python: per-call cost of flowrt's Python `velocity` against the C
call it wraps (bench/forward's C driver, same machine, same run), 2→256×3→2
SiLU MLP, one thread. Prints a Markdown table."""
import os
import re
import subprocess
import sys
import time

import numpy as np

import flowrt

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "forward"))
from peers import best_of  # noqa: E402  (one timing helper for both benches)

ITERS = {1: 20000, 64: 2000, 1024: 100, 16384: 8}


def main(c_driver):
    c_rows = subprocess.run([c_driver], capture_output=True, text=True, check=True).stdout
    c_us = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^\| (\d+) \| ([\d.]+) \|", c_rows, re.M)}
    model = flowrt.Model.mlp(2, seed=0)
    print("| batch | C call (µs) | Python `model.velocity` (µs) | Python overhead (µs) | Python / C |")
    print("|---:|---:|---:|---:|---:|")
    for b, iters in ITERS.items():
        x = np.random.default_rng(0).standard_normal((b, 2)).astype(np.float32)
        t = np.full(b, 0.5)
        model.velocity(t, x)
        py = best_of(lambda: model.velocity(t, x), iters) * 1e6
        print(f"| {b} | {c_us[b]:.2f} | {py:.2f} | {py - c_us[b]:.2f} | {py / c_us[b]:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
