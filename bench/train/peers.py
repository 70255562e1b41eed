"""PyTorch eager side of bench/train: the same training as `flowrt train
--toy checkerboard` (2->256x3->2 SiLU MLP on concat[x, t], trig interpolant
loss G, Adam, warmup + cosine, gradient-norm clip 1, EMA 0.999), scoring the
EMA weights every --eval-every steps on the shared held-out file (heldout.py)
outside the timed region.

Prints `step S train_seconds T heldout G` per evaluation and at the end
steps/s over the steps after the first 50."""
import math
import time

import numpy as np
import torch
from torch import nn

from heldout import interpolate as heldout_rows, loss, parse_arguments


def checkerboard(n, gen):
    square = torch.randint(0, 8, (n,), generator=gen)
    i = square // 2
    j = 2 * (square % 2) + i % 2
    u = torch.rand(n, 2, generator=gen)
    return torch.stack([-4 + 2 * i + 2 * u[:, 0], -4 + 2 * j + 2 * u[:, 1]], dim=1)


def interpolate(t, x0, x1):
    a, b = torch.cos(math.pi / 2 * t), torch.sin(math.pi / 2 * t)
    ad, bd = -math.pi / 2 * b, math.pi / 2 * a
    return a * x0 + b * x1, ad * x0 + bd * x1


def main():
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    width = 256
    net = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                        nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2))
    # The weights scored: an EMA, or (--plain) the parameters themselves.
    ema = [q.detach() if args.plain else q.detach().clone() for q in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    def rate(s):  # matches LearningRateSchedule: warmup then cosine to 1% at `steps`
        if args.plain:
            return 1.0
        if s < args.warmup:
            return (s + 1) / args.warmup
        p_ = min(1.0, (s - args.warmup) / max(1, args.steps - args.warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p_))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)

    held_xt, held_t, held_u = heldout_rows(np.load(args.heldout))
    held_in = torch.from_numpy(np.concatenate([held_xt, held_t[:, None].astype(np.float32)], axis=1))

    def held_out():
        with torch.no_grad():
            saved = [q.detach().clone() for q in net.parameters()]
            for q, e in zip(net.parameters(), ema):
                q.copy_(e)
            v = net(held_in).numpy()
            for q, s_ in zip(net.parameters(), saved):
                q.copy_(s_)
        return loss(v, held_u)

    elapsed, timed, block_start = 0.0, 0.0, time.perf_counter()
    for s in range(args.steps):
        x1 = checkerboard(args.batch, gen)
        x0 = torch.randn(args.batch, 2, generator=gen)
        t = torch.rand(args.batch, 1, generator=gen)
        xt, u = interpolate(t, x0, x1)
        v = net(torch.cat([xt, t], dim=1))
        loss_ = ((v * v).sum(1) - 2 * (u * v).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss_.backward()
        if not args.plain:
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if not args.plain:
            sched.step()
            with torch.no_grad():
                d = min(0.999, (1 + s) / (10 + s))
                torch._foreach_lerp_(ema, [q.detach() for q in net.parameters()], 1 - d)
        if s + 1 == 50 or (s + 1) % args.eval_every == 0 or s == args.steps - 1:
            dt = time.perf_counter() - block_start
            elapsed += dt
            if s + 1 > 50:
                timed += dt
            if s + 1 != 50:
                print(f"step {s + 1} train_seconds {elapsed:.3f} heldout {held_out():.5f}", flush=True)
            block_start = time.perf_counter()
    print(f"steps/s {(args.steps - 50) / timed:.1f}")


if __name__ == "__main__":
    main()
