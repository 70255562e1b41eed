"""Peers for bench/forward: the same 2→256×3→2 SiLU velocity MLP evaluated by
onnxruntime (on the PyTorch export in shared/fixtures, identical architecture)
and by PyTorch eager, one thread each, best of 5 repetitions per batch size.
Prints Markdown rows: | system | batch | µs per call | GFLOP/s |."""
import os, sys, time
import numpy as np

FLOPS = 2 * (3 * 256 + 256 * 256 * 2 + 256 * 2)
BATCHES = [1, 64, 1024, 16384]
ITERS = {1: 20000, 64: 2000, 1024: 100, 16384: 8}


def best_of(fn, iters, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def row(system, b, dt):
    print(f"| {system} | {b} | {dt * 1e6:.2f} | {FLOPS * b / dt / 1e9:.1f} |", flush=True)


def main(fixture):
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(fixture, so, providers=["CPUExecutionProvider"])
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(),
        torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 2)).eval()
    for b in BATCHES:
        x = np.random.default_rng(0).standard_normal((b, 2)).astype(np.float32)
        t = np.full((b, 1), 0.5, np.float32)
        feeds = {"x": x, "t": t}
        sess.run(None, feeds)
        row("onnxruntime (Python)", b, best_of(lambda: sess.run(None, feeds), ITERS[b]))
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        with torch.inference_mode():
            f = lambda: net(torch.cat([xt, tt], dim=1))
            f()
            row("PyTorch eager", b, best_of(f, ITERS[b]))


if __name__ == "__main__":
    main(sys.argv[1])
