"""What both sides of bench/train share: their command line, and the
held-out set they score against, which running this file writes:
float32 [m, 5] rows (t, x0[2], x1[2]) with x0 ~ N(0, I), x1 from the
checkerboard, t ~ U[0, 1], from numpy's seeded generator (neither side's RNG).
Each side computes G = mean(|v|^2 - 2 u.v) at x_t = a x0 + b x1 with
u = a' x0 + b' x1 for the trig interpolant, in float64 from float32 velocities."""
import argparse
import sys

import numpy as np


def checkerboard(n, rng):
    square = rng.integers(0, 8, n)
    i = square // 2
    j = 2 * (square % 2) + i % 2
    u = rng.random((n, 2))
    return np.stack([-4 + 2 * i + 2 * u[:, 0], -4 + 2 * j + 2 * u[:, 1]], axis=1)


def interpolate(rows):
    """(x_t float32 [m, 2], t float64 [m], u float64 [m, 2]) for the trig interpolant."""
    t = rows[:, 0].astype(np.float64)
    x0, x1 = rows[:, 1:3].astype(np.float64), rows[:, 3:5].astype(np.float64)
    a, b = np.cos(np.pi / 2 * t)[:, None], np.sin(np.pi / 2 * t)[:, None]
    xt = a * x0 + b * x1
    u = -np.pi / 2 * b * x0 + np.pi / 2 * a * x1
    return xt.astype(np.float32), t, u


def parse_arguments():
    """The command line both sides of bench/train take (one recipe, one set of defaults)."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--heldout", required=True)
    p.add_argument("--plain", action="store_true", help="Adam at a constant rate only: no warmup, decay, clip or EMA")
    return p.parse_args()


def loss(v, u):
    v = v.astype(np.float64)
    return float(np.mean((v * v).sum(1) - 2 * (u * v).sum(1)))


if __name__ == "__main__":
    path, m = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(20261129)
    rows = np.concatenate([rng.random((m, 1)), rng.standard_normal((m, 2)), checkerboard(m, rng)], axis=1)
    np.save(path, rows.astype(np.float32))
