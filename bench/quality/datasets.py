"""The five datasets of bench/quality, made locally (no downloads).

Each dataset is a folder with train.npy and test.npy (float32, [n, d]) in the
space the flows model, and meta.json. Where the true density is known,
test_true_logp.npy holds log p(x) of every test point, so a model's excess
NLL over the truth, mean(log p - log q) = KL(p || q) estimated on the test
points, has a small standard error.

- checkerboard, 8gaussians: the same distributions as FlowRuntime's
  `--toy` sets (Sources/FlowRuntime/Densities/ToyDatasets.swift), drawn with
  numpy; the FlowRuntime runner checks these closed-form log-densities against
  the library's own on the test points.
- gmm16: 8 components in 16-d with random weights, means and covariances.
- digits: scikit-learn's bundled 8x8 digits (values 0..16), uniformly
  dequantised, scaled to [0, 1), then y = logit(lam + (1 - 2 lam) x) with
  lam = 0.05 as image flows do. bits/dim are reported for the dequantised
  z = v + u in [0, 17)^64, so the log-Jacobian of z -> y is added back.
- breast-cancer: scikit-learn's bundled 569 x 30 set, standardised with the
  training split's mean and standard deviation.
"""
import json
import math
import os

import numpy as np

LAMBDA = 0.05
DIGIT_LEVELS = 17.0


def checkerboard(n, rng):
    square = rng.integers(0, 8, n)
    i = square // 2
    j = 2 * (square % 2) + (i % 2)
    x = -4 + 2 * i + 2 * rng.random(n)
    y = -4 + 2 * j + 2 * rng.random(n)
    return np.stack([x, y], 1)


def checkerboard_logp(x):
    inside = np.all((x >= -4) & (x < 4), axis=1)
    i = np.floor((x[:, 0] + 4) / 2).astype(int)
    j = np.floor((x[:, 1] + 4) / 2).astype(int)
    on = inside & ((i + j) % 2 == 0)
    return np.where(on, -math.log(32.0), -np.inf)


EIGHT_SIGMA = math.sqrt(2) / 4
EIGHT_CENTERS = np.array([[2 * math.sqrt(2) * math.cos(k * math.pi / 4),
                           2 * math.sqrt(2) * math.sin(k * math.pi / 4)] for k in range(8)])


def eight_gaussians(n, rng):
    c = EIGHT_CENTERS[rng.integers(0, 8, n)]
    return c + EIGHT_SIGMA * rng.standard_normal((n, 2))


def eight_gaussians_logp(x):
    d2 = ((x[:, None, :] - EIGHT_CENTERS[None]) ** 2).sum(-1)
    e = -0.5 * d2 / EIGHT_SIGMA ** 2
    m = e.max(1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(e - m).sum(1))) - math.log(8 * 2 * math.pi * EIGHT_SIGMA ** 2)


def eight_gaussians_entropy():
    """-integral p log p by the midpoint rule (spacing sigma/8, box padded by 9 sigma)."""
    h, pad = EIGHT_SIGMA / 8, 9 * EIGHT_SIGMA
    lo, hi = EIGHT_CENTERS.min(0) - pad, EIGHT_CENTERS.max(0) + pad
    xs = np.arange(lo[0] + h / 2, hi[0], h)
    ys = np.arange(lo[1] + h / 2, hi[1], h)
    g = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    lp = eight_gaussians_logp(g)
    return float(-(np.exp(lp) * lp).sum() * h * h)


class GaussianMixture:
    """8 components in 16-d: weights ~ Dirichlet(2), means ~ N(0, 4 I),
    covariances Q diag(s) Q^T with Q a random rotation and s log-uniform in
    [0.05, 1] (condition numbers up to 20)."""

    def __init__(self, seed=1234, k=8, d=16):
        rng = np.random.default_rng(seed)
        self.d = d
        self.weights = rng.dirichlet(2 * np.ones(k))
        self.means = 2 * rng.standard_normal((k, d))
        covs = []
        for _ in range(k):
            q, _ = np.linalg.qr(rng.standard_normal((d, d)))
            s = np.exp(rng.uniform(math.log(0.05), 0, d))
            covs.append((q * s) @ q.T)
        self.covs = np.array(covs)
        self.chols = np.linalg.cholesky(self.covs)

    def sample(self, n, rng):
        comp = rng.choice(len(self.weights), n, p=self.weights)
        z = rng.standard_normal((n, self.d))
        return self.means[comp] + np.einsum("nij,nj->ni", self.chols[comp], z)

    def logp(self, x):
        out = []
        for w, mu, L in zip(self.weights, self.means, self.chols):
            r = np.linalg.solve(L, (x - mu).T).T
            logdet = 2 * np.log(np.diag(L)).sum()
            out.append(math.log(w) - 0.5 * (r ** 2).sum(1) - 0.5 * logdet - 0.5 * self.d * math.log(2 * math.pi))
        out = np.stack(out, 1)
        m = out.max(1, keepdims=True)
        return m[:, 0] + np.log(np.exp(out - m).sum(1))


def digits_to_logit(v, rng):
    """Dequantise 0..16 values, scale to [0, 1), logit. Returns y and
    log|dy/dz| summed over the 64 pixels (z = v + u)."""
    z = v + rng.random(v.shape)
    s = LAMBDA + (1 - 2 * LAMBDA) * z / DIGIT_LEVELS
    y = np.log(s) - np.log1p(-s)
    logjac = (math.log((1 - 2 * LAMBDA) / DIGIT_LEVELS) - np.log(s) - np.log1p(-s)).sum(1)
    return y, logjac


def logit_to_digits(y):
    s = 1 / (1 + np.exp(-y))
    return np.clip((s - LAMBDA) / (1 - 2 * LAMBDA) * DIGIT_LEVELS, 0, DIGIT_LEVELS)


def _save(folder, train, test, meta, true_logp=None):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "train.npy"), train.astype(np.float32))
    np.save(os.path.join(folder, "test.npy"), test.astype(np.float32))
    if true_logp is not None:
        np.save(os.path.join(folder, "test_true_logp.npy"), true_logp.astype(np.float64))
    meta.update(dim=int(train.shape[1]), train=int(train.shape[0]), test=int(test.shape[0]))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def make_all(root, n_train_toy=50_000, n_test_toy=10_000, seed=0):
    """Writes every dataset under root (idempotent: same seed, same files)."""
    rng = np.random.default_rng(seed)
    # The test points are stored as float32; the true log-density is taken
    # of the stored float32 values so both sides see the same points.
    for name, sampler, logp, entropy in [
        ("checkerboard", checkerboard, checkerboard_logp, math.log(32.0)),
        ("8gaussians", eight_gaussians, eight_gaussians_logp, eight_gaussians_entropy()),
    ]:
        train = sampler(n_train_toy, rng).astype(np.float32)
        test = sampler(n_test_toy, rng).astype(np.float32)
        _save(os.path.join(root, name), train, test,
              {"name": name, "entropy": entropy, "unit": "nats", "toy": name,
               "note": "FlowRuntime toy distribution, numpy sampler"},
              logp(test.astype(np.float64)))

    gmm = GaussianMixture()
    train = gmm.sample(n_train_toy, rng).astype(np.float32)
    test = gmm.sample(n_test_toy, rng).astype(np.float32)
    big = gmm.sample(200_000, rng)
    _save(os.path.join(root, "gmm16"), train, test,
          {"name": "gmm16", "entropy": float(-gmm.logp(big).mean()), "unit": "nats",
           "note": "entropy by 200k-sample Monte Carlo; excess uses exact log p per test point"},
          gmm.logp(test.astype(np.float64)))

    from sklearn.datasets import load_digits, load_breast_cancer
    v = load_digits().data.astype(np.float64)
    perm = rng.permutation(len(v))
    n_test = len(v) // 5
    y, logjac = digits_to_logit(v[perm], rng)
    os.makedirs(os.path.join(root, "digits"), exist_ok=True)
    np.save(os.path.join(root, "digits", "test_logjac.npy"), logjac[:n_test])
    _save(os.path.join(root, "digits"), y[n_test:], y[:n_test],
          {"name": "digits", "unit": "bits/dim", "lambda": LAMBDA, "levels": DIGIT_LEVELS,
           "note": "dequantised + logit; bpd of z in [0,17)^64 (uniform = log2 17 = 4.09)"})

    x = load_breast_cancer().data.astype(np.float64)
    perm = rng.permutation(len(x))
    n_test = len(x) // 5
    test, train = x[perm[:n_test]], x[perm[n_test:]]
    mu, sd = train.mean(0), train.std(0)
    _save(os.path.join(root, "breast-cancer"), (train - mu) / sd, (test - mu) / sd,
          {"name": "breast-cancer", "unit": "nats",
           "note": "standardised with the training split's mean and std"})


if __name__ == "__main__":
    import sys
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    make_all(root)
    for name in sorted(os.listdir(root)):
        with open(os.path.join(root, name, "meta.json")) as f:
            print(name, json.load(f))
