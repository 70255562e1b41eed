"""FlowRuntime side of bench/train, through the Python binding (the C ABI):
the same model, loss, optimiser, schedule, clipping and EMA as peers.py.

Trains in blocks of --eval-every steps (one flowrt_trainer_fit call each);
after each block scores the EMA weights on the shared held-out file, outside
the timed region. Prints `step S train_seconds T heldout G` per block and
`steps/s R` over the steps after the first 50."""
import time

import numpy as np

import flowrt
from heldout import interpolate, loss, parse_arguments


def main():
    args = parse_arguments()
    xt, t, u = interpolate(np.load(args.heldout))
    # A fresh checkerboard sample per step on the PyTorch side; here one
    # sample of the same size drawn up front (not timed), each point seen once
    # in expectation.
    data = flowrt.datasets.sample("checkerboard", args.steps * args.batch, seed=1)
    model = flowrt.Model.mlp(2, hidden=256, depth=3, activation="silu", seed=0)
    if args.plain:
        recipe = dict(warmup=0, schedule="constant", clip=0.0, ema=0.0)
    else:
        recipe = dict(warmup=args.warmup, schedule="cosine", total_steps=args.steps, lr_min_factor=0.01,
                      clip=1.0, ema=0.999)
    trainer = flowrt.Trainer(model, data, lr=args.lr, batch_size=args.batch, heldout=0.0, seed=0,
                             threads=args.threads, **recipe)
    trained, elapsed, timed = 0, 0.0, 0.0
    while trained < args.steps:
        block = min(args.eval_every, args.steps - trained)
        if trained == 0:  # the first 50 steps warm up; steps/s counts the rest
            start = time.perf_counter(); trainer.fit(50); elapsed += time.perf_counter() - start
            block -= 50
            trained = 50
        start = time.perf_counter()
        trainer.fit(block)
        dt = time.perf_counter() - start
        elapsed += dt
        timed += dt
        trained += block
        with trainer.model() as m:
            g = loss(m.velocity(t, xt), u)
        print(f"step {trained} train_seconds {elapsed:.3f} heldout {g:.5f}", flush=True)
    print(f"steps/s {(args.steps - 50) / timed:.1f}")


if __name__ == "__main__":
    main()
