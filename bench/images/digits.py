"""scikit-learn's 8×8 digits as an image flow: FlowRuntime's native U-Net
next to the MLP flow of bench/quality, on the same data.

The data are bench/quality's (datasets.make_all, seed 0): the same
permutation, the same 359 test / 1438 training points and the same uniform
dequantization z = v + u ∈ [0, 17)^64 of the values v ∈ {0..16}; the MLP
there models logit-transformed z, the U-Net here models y = z/8.5 − 1 ∈
[−1, 1)^64 (the image convention). Both report bits/dim of z:
bpd = −log2 p_z(z)/64 = −log2 p_y(y)/64 + log2 8.5, with the exact
divergence (d = 64), dopri5 rtol = atol = 1e-5.

    digits.py [--steps 3000] [--threads 2]
prints one JSON line (training seconds, test bits/dim ± standard error).
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "quality"))


def quality_digits():
    """bench/quality's digits (train, test) as z ∈ [0, 17)^64."""
    from datasets import LAMBDA, DIGIT_LEVELS, make_all
    with tempfile.TemporaryDirectory() as root:
        make_all(root)
        train, test = (np.load(os.path.join(root, "digits", f"{s}.npy")).astype(np.float64) for s in ("train", "test"))
    def z(y):  # inverse of datasets.digits_to_logit's y = logit(λ + (1 − 2λ) z/17)
        s = 1 / (1 + np.exp(-y))
        return (s - LAMBDA) / (1 - 2 * LAMBDA) * DIGIT_LEVELS
    return z(train), z(test)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import flowrt
    ztrain, ztest = quality_digits()
    scale = 8.5
    ytrain = (ztrain / scale - 1).astype(np.float32)
    ytest = (ztest / scale - 1).astype(np.float32)
    model = flowrt.Model.unet(channels=1, height=8, width=8, model_channels=32, channel_mult=(1, 2), attention=(4,),
                              heads=1, groups=8, seed=0)
    flow = flowrt.Flow(model)
    start = time.perf_counter(); cpu = time.process_time()
    losses = flow.fit(ytrain, steps=args.steps, batch_size=64, lr=1e-3, warmup=100, ema=0.999, heldout=0.1, seed=0,
                      threads=args.threads)
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    lp = flow.log_prob(ytest, method="exact", rtol=1e-5, atol=1e-5, threads=args.threads)
    bpd = -lp / (64 * math.log(2)) + math.log2(scale)
    print(json.dumps(dict(kind="digits", version=f"FlowRuntime {flowrt.__version__}", parameters=model.parameter_count,
                          steps=args.steps, threads=args.threads, train_seconds=train_s, train_cpu_seconds=train_cpu,
                          heldout_regression=losses.heldout_regression, test_points=len(ytest),
                          bpd=float(bpd.mean()), se=float(bpd.std(ddof=1) / math.sqrt(len(bpd))),
                          likelihood_seconds=time.perf_counter() - start, load=os.getloadavg()[0])), flush=True)


if __name__ == "__main__":
    main()
