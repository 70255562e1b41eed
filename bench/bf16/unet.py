"""bench/bf16/unet.py: the bf16 path on image networks (issue 17) — speed of
velocity evaluation against float32 (1 thread) on the PyTorch exports of
Tests/ONNXData/images and a Fashion-MNIST U-Net trained here, then that
U-Net's accuracy: per-pixel endpoint deviation of sampling and the change
in test bits/dim, for RK4 and dopri5. Prints Markdown (run by run.sh).

The U-Net (`FMNIST_ONNX`) is trained by run.sh with `flowrt train --images
fashion-mnist` for a fixed number of steps: accuracy of the bf16 path is a
property of the network's arithmetic, measured here on a partly trained
network (its bits/dim are printed next to the differences).

Likelihoods: Hutchinson with the same probes (same probe seed) in both
precisions, so the difference is the precision's alone; `likelihood_precision`
is set explicitly (the default stays float32).
"""
import os
import sys
import time

import numpy as np

import flowrt
from flowrt import images as fimages

REPS = int(os.environ.get("REPS", "3"))
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ONNXData", "images")
FMNIST = os.environ["FMNIST_ONNX"]
TEST_IMAGES = int(os.environ.get("TEST_IMAGES", "64"))


def speed_table():
    print("### (6) Image networks: velocity throughput, float32 vs bf16, 1 thread\n")
    print("| network | batch | float32 (ms) | bf16 (ms) | bf16 speed-up |")
    print("|---|---:|---:|---:|---:|")
    nets = [("torchcfm U-Net (fixture)", os.path.join(FIXTURES, "tcfm_unet__dynamo__op21.onnx")),
            ("diffusers U-Net (fixture)", os.path.join(FIXTURES, "diffusers_unet__dynamo__op21.onnx")),
            ("DiT (fixture)", os.path.join(FIXTURES, "dit__dynamo__op21.onnx")),
            ("Fashion-MNIST U-Net (trained here)", FMNIST)]
    rng = np.random.default_rng(0)
    for name, path in nets:
        model = flowrt.load_model(path)
        for batch in (16, 64):
            x = rng.standard_normal((batch, model.dim)).astype(np.float32)
            t = rng.uniform(size=batch)
            times = {"float32": float("inf"), "bf16": float("inf")}
            for _ in range(REPS):
                for p in times:  # interleaved: both see the same load
                    model.precision = p
                    model.velocity(t, x)
                    t0 = time.perf_counter()
                    model.velocity(t, x)
                    times[p] = min(times[p], time.perf_counter() - t0)
            print(f"| {name} | {batch} | {times['float32'] * 1e3:.1f} | {times['bf16'] * 1e3:.1f} | "
                  f"{times['float32'] / times['bf16']:.2f}× |", flush=True)
        model.precision = "float32"
    print()


def accuracy_tables():
    flow = flowrt.Flow.load(FMNIST)
    n = TEST_IMAGES
    print(f"### (7) Fashion-MNIST U-Net: bf16 against float32 ({n} samples / test images, 2 threads)\n")
    print("Sampling from the same base points; endpoints in the model's [−1, 1] pixel scale.\n")
    print("| solver | mean \\|Δx\\| per pixel | 99th pct | max | NFE float32 / bf16 |")
    print("|---|---:|---:|---:|---:|")
    solvers = (("RK4, 20 steps", dict(method="rk4", steps=20, threads=2)),
               ("dopri5, 1e-5", dict(method="dopri5", rtol=1e-5, atol=1e-5, threads=2)))
    for name, solver in solvers:
        out = {}
        for p in ("float32", "bf16"):
            flow.precision = p
            out[p] = flow.sample(n, seed=3, return_stats=True, **solver)
        d = np.abs(out["bf16"][0] - out["float32"][0]).ravel()
        nfe = (out["float32"][1].evaluations_per_sample, out["bf16"][1].evaluations_per_sample)
        print(f"| {name} | {d.mean():.2e} | {np.quantile(d, 0.99):.2e} | {d.max():.2e} | "
              f"{nfe[0]:.0f} / {nfe[1]:.0f} |", flush=True)
    flow.precision = "float32"
    print()
    test = fimages.fashion_mnist("test")[:n]
    print(f"Test bits/dim of {n} test images (Hutchinson, 1 probe, the same probes in both precisions):\n")
    print("| solver | bits/dim float32 | bits/dim bf16 | difference of means | mean \\|Δ\\| per image | max \\|Δ\\| |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, solver in solvers:
        res = {}
        for p in ("float32", "bf16"):
            flow.likelihood_precision = p
            res[p] = fimages.bits_per_dim(flow, test, probes=1, seed=0, **solver)
        diff = res["bf16"][2] - res["float32"][2]
        print(f"| {name} | {res['float32'][0]:.4f} ± {res['float32'][1]:.4f} | {res['bf16'][0]:.4f} | "
              f"{res['bf16'][0] - res['float32'][0]:+.1e} | {np.abs(diff).mean():.1e} | {np.abs(diff).max():.1e} |",
              flush=True)
    flow.likelihood_precision = "float32"
    print()


if __name__ == "__main__":
    if not flowrt.bf16_available():
        print("bf16: not available on this CPU (AVX512_BF16); skipped\n")
        sys.exit(0)
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("all", "speed"):
        speed_table()
    if what in ("all", "accuracy"):
        accuracy_tables()
