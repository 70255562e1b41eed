"""How fast PyTorch + torchdiffeq can possibly run workload (a) at batch 16:
RK4, 100 steps, 2->256x3->2 SiLU, at 1 and 2 threads (the weights do not
matter for timing). Prints ms per solve and µs per network evaluation, best
of 20. Used in BENCHMARKS.md to bound the batch-16 speed-up any runtime can
reach on this machine.

    bench/.venv/bin/python bench/transport/torch_rk4_threads.py"""
import time

import torch
import torchdiffeq
from torch import nn


def main():
    net = nn.Sequential(nn.Linear(3, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                        nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2))

    def field(t, x):
        return net(torch.cat([x, t.expand(x.shape[0], 1)], 1))

    x0, span = torch.randn(16, 2), torch.tensor([0.0, 1.0])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        best = float("inf")
        with torch.no_grad():
            for _ in range(20):
                t0 = time.perf_counter()
                torchdiffeq.odeint(field, x0, span, method="rk4", options=dict(step_size=0.01))
                best = min(best, time.perf_counter() - t0)
        print(f"{threads} thread(s): {best * 1e3:.1f} ms per solve, {best / 400 * 1e6:.0f} µs per evaluation")


if __name__ == "__main__":
    main()
