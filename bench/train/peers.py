"""PyTorch eager side of bench/train: the same training as `flowrt train
--toy checkerboard` (2->256x3->2 SiLU MLP on concat[x, t], trig interpolant
loss G, Adam, warmup + cosine, gradient-norm clip 1, EMA 0.999, held-out G
of the EMA weights on 32768 fixed draws every 250 steps).

Prints one line per evaluation: step, elapsed seconds, held-out G, and at the
end steps/s over the timed steps (after 50 warm-up steps)."""
import argparse
import math
import time

import torch
from torch import nn


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
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--heldout", type=int, default=32768)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    width = 256
    net = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                        nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2))
    ema = [q.detach().clone() for q in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    def rate(s):  # matches LearningRateSchedule: warmup then cosine to 1% at `steps`
        if s < args.warmup:
            return (s + 1) / args.warmup
        p_ = min(1.0, (s - args.warmup) / max(1, args.steps - args.warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p_))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)

    m = args.heldout
    held_t = torch.rand(m, 1, generator=gen)
    held_x, held_u = interpolate(held_t, torch.randn(m, 2, generator=gen), checkerboard(m, gen))

    def held_out():
        with torch.no_grad():
            saved = [q.detach().clone() for q in net.parameters()]
            for q, e in zip(net.parameters(), ema):
                q.copy_(e)
            v = net(torch.cat([held_x, held_t], dim=1))
            g = ((v * v).sum(1) - 2 * (held_u * v).sum(1)).mean().item()
            for q, s_ in zip(net.parameters(), saved):
                q.copy_(s_)
        return g

    start = time.perf_counter()
    timed_start = None
    for s in range(args.steps):
        if s == 50:
            timed_start = time.perf_counter()
        x1 = checkerboard(args.batch, gen)
        x0 = torch.randn(args.batch, 2, generator=gen)
        t = torch.rand(args.batch, 1, generator=gen)
        xt, u = interpolate(t, x0, x1)
        v = net(torch.cat([xt, t], dim=1))
        loss = ((v * v).sum(1) - 2 * (u * v).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(0.999, (1 + s) / (10 + s))
            torch._foreach_lerp_(ema, [q.detach() for q in net.parameters()], 1 - d)
        if (s + 1) % args.eval_every == 0 or s == args.steps - 1:
            print(f"step {s + 1} elapsed {time.perf_counter() - start:.3f} heldout {held_out():.5f}", flush=True)
    timed = time.perf_counter() - timed_start
    print(f"steps/s {(args.steps - 50) / timed:.1f}")


if __name__ == "__main__":
    main()
