"""bench/images sampling and likelihood: one trained network (the PyTorch
run of train_bench.py: torchcfm's MNIST U-Net, its EMA weights as
DIR/torch.pt and their ONNX export DIR/torch.onnx) integrated by FlowRuntime
(the ONNX file, imported) and by flow_matching's ODESolver (torchdiffeq
underneath) on the same PyTorch module, from the same N(0, I) draws.

    sample_bench.py DIR SYSTEM THREADS [--batch 64]
      sampling 64 images from t = 0 to 1: dopri5 (rtol = atol = 1e-5) and
      fixed 20-step midpoint; images/s and velocity evaluations (NFE) per
      image; then log-densities of 64 test images (Hutchinson, one Gaussian
      probe, dopri5 rtol = atol = 1e-5, from t = 1 back to 0).
    One JSON line per measurement. FlowRuntime's dopri5 controls the step
    per sample (its NFE is the mean over images); torchdiffeq's controls one
    step for the whole batch (every image takes the batch's NFE).
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "ONNXData" / "images"))
SHAPE = (1, 28, 28)
D = 28 * 28


def draws(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *SHAPE)).astype(np.float32)


def test_images(batch):
    from flowrt import images
    x = images.fashion_mnist("test")[:batch]
    return images.dequantize(x, 0).reshape(batch, *SHAPE)


def emit(**kw):
    kw["load"] = os.getloadavg()[0]
    print(json.dumps(kw), flush=True)


def run_flowrt(args):
    import flowrt
    flow = flowrt.Flow(flowrt.Model.load(Path(args.dir) / "torch.onnx"))
    x0 = draws(args.batch).reshape(args.batch, D)
    ver = f"FlowRuntime {flowrt.__version__}"
    flow.velocity(np.full(args.batch, 0.5), x0)  # warm-up (workspaces, thread pool)
    for name, opts in (("dopri5", dict(method="dopri5", rtol=1e-5, atol=1e-5)),
                       ("midpoint-20", dict(method="midpoint", steps=20))):
        start = time.perf_counter()
        _, stats = flow.transport(x0, 0.0, 1.0, return_stats=True, threads=args.threads, **opts)
        wall = time.perf_counter() - start
        emit(kind="sample", system="flowrt", version=ver, solver=name, threads=args.threads, images=args.batch,
             seconds=wall, images_per_s=args.batch / wall, nfe_per_image=stats_nfe(stats, args.batch))
    y = test_images(args.batch).reshape(args.batch, D)
    start = time.perf_counter()
    lp, stats = flow.log_prob(y, method="hutchinson", probes=1, rtol=1e-5, atol=1e-5, threads=args.threads,
                              return_stats=True)
    wall = time.perf_counter() - start
    emit(kind="loglik", system="flowrt", version=ver, threads=args.threads, images=args.batch, seconds=wall,
         images_per_s=args.batch / wall, nfe_per_image=stats_nfe(stats, args.batch),
         bpd=float(np.mean(-lp / (D * math.log(2)) + 7)))


def stats_nfe(stats, batch):
    return stats.evaluations_per_sample


def run_torch(args):
    import torch
    from flow_matching.solver import ODESolver
    from make_image_fixtures import build_tcfm
    torch.set_num_threads(args.threads)
    net = build_tcfm(cond=False, tiny=False)
    net.load_state_dict(torch.load(Path(args.dir) / "torch.pt"))
    net.eval()
    calls = {"n": 0}

    def velocity(x, t, **_):
        calls["n"] += 1
        return net(t.expand(x.shape[0]) if t.dim() == 0 else t, x)

    solver = ODESolver(velocity_model=velocity)
    x0 = torch.from_numpy(draws(args.batch))
    ver = f"flow_matching ODESolver (torchdiffeq), PyTorch {torch.__version__}"
    with torch.no_grad():
        net(torch.full((args.batch,), 0.5), x0)  # warm-up (allocator, thread pool)
    for name, opts in (("dopri5", dict(method="dopri5", step_size=None, rtol=1e-5, atol=1e-5)),
                       ("midpoint-20", dict(method="midpoint", step_size=1 / 20))):
        calls["n"] = 0
        start = time.perf_counter()
        with torch.no_grad():
            solver.sample(x_init=x0, time_grid=torch.tensor([0.0, 1.0]), **opts)
        wall = time.perf_counter() - start
        emit(kind="sample", system="torch", version=ver, solver=name, threads=args.threads, images=args.batch,
             seconds=wall, images_per_s=args.batch / wall, nfe_per_image=calls["n"])
    y = torch.from_numpy(test_images(args.batch))

    def log_p0(z):
        return -0.5 * (z ** 2).flatten(1).sum(1) - 0.5 * D * math.log(2 * math.pi)

    calls["n"] = 0
    torch.manual_seed(0)
    start = time.perf_counter()
    _, logp = solver.compute_likelihood(x_1=y, log_p0=log_p0, step_size=None, method="dopri5", rtol=1e-5, atol=1e-5,
                                        exact_divergence=False)
    wall = time.perf_counter() - start
    emit(kind="loglik", system="torch", version=ver, threads=args.threads, images=args.batch, seconds=wall,
         images_per_s=args.batch / wall, nfe_per_image=calls["n"],
         bpd=float(np.mean(-logp.detach().numpy() / (D * math.log(2)) + 7)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir"); ap.add_argument("system", choices=["flowrt", "torch"]); ap.add_argument("threads", type=int)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    (run_flowrt if args.system == "flowrt" else run_torch)(args)


if __name__ == "__main__":
    main()
