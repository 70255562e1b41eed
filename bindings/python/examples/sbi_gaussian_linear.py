"""Simulation-based inference with a conditional flow: the Gaussian-linear task.

θ ~ N(0, 0.1 I) in `dim` dimensions and x | θ ~ N(θ, 0.1 I) (sbi's
benchmark), so the posterior is Gaussian in closed form:
θ | x ~ N(x / 2, 0.05 I). A conditional flow p(θ | x) (θ as the flow's
points, the observation x as its context) is trained on simulated pairs
with the interpolant loss, then, for a few observations, its posterior
samples are compared with the exact mean and covariance and its
log p(θ | x_obs) with the exact log-density.

    PYTHONPATH=bindings/python FLOWRT_LIBRARY=.build/release/libflowrt.so \\
        python bindings/python/examples/sbi_gaussian_linear.py --dim 10
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import flowrt

PRIOR_VAR = 0.1
NOISE_VAR = 0.1


def simulate(n: int, dim: int, rng: np.random.Generator):
    """n pairs (θ, x) from the prior and the simulator."""
    theta = rng.normal(0.0, np.sqrt(PRIOR_VAR), size=(n, dim)).astype(np.float32)
    x = (theta + rng.normal(0.0, np.sqrt(NOISE_VAR), size=(n, dim))).astype(np.float32)
    return theta, x


def exact_posterior(x_obs: np.ndarray):
    """Mean [dim] and variance (isotropic) of θ | x_obs."""
    var = 1.0 / (1.0 / PRIOR_VAR + 1.0 / NOISE_VAR)
    return var / NOISE_VAR * x_obs.astype(np.float64), var


def exact_log_prob(theta: np.ndarray, x_obs: np.ndarray) -> np.ndarray:
    mean, var = exact_posterior(x_obs)
    e = theta.astype(np.float64) - mean
    return -0.5 * (e * e).sum(axis=1) / var - 0.5 * theta.shape[1] * np.log(2 * np.pi * var)


def run(dim: int = 10, simulations: int = 100_000, steps: int = 5000, observations: int = 10,
        posterior_samples: int = 10_000, hidden: int = 128, depth: int = 3, batch_size: int = 1024,
        lr: float = 2e-3, seed: int = 0, verbose: bool = True) -> dict:
    """Trains on `simulations` pairs and evaluates `observations` posteriors.
    Returns the worst errors over the observations."""
    rng = np.random.default_rng(seed)
    theta, x = simulate(simulations, dim, rng)
    flow = flowrt.Flow.mlp(dim, hidden=hidden, depth=depth, context_dim=dim, seed=seed)
    start = time.perf_counter()
    losses = flow.fit(theta, context=x, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    train_time = time.perf_counter() - start
    _, x_obs = simulate(observations, dim, rng)
    mean_err, cov_err, lp_err, sample_time = 0.0, 0.0, 0.0, 0.0
    for k in range(observations):
        start = time.perf_counter()
        post = flow.sample(posterior_samples, seed=k, context=x_obs[k])
        sample_time += time.perf_counter() - start
        mean, var = exact_posterior(x_obs[k])
        # Errors in units of the posterior standard deviation / variance.
        mean_err = max(mean_err, float(np.abs(post.mean(axis=0) - mean).max() / np.sqrt(var)))
        cov = np.cov(post.astype(np.float64), rowvar=False).reshape(dim, dim)
        cov_err = max(cov_err, float(np.abs(cov - var * np.eye(dim)).max() / var))
        probe = post[:200]
        lp = flow.log_prob(probe, context=np.repeat(x_obs[k][None, :], len(probe), axis=0))
        lp_err = max(lp_err, float(np.abs(lp - exact_log_prob(probe, x_obs[k])).mean()))
    result = dict(dim=dim, simulations=simulations, steps=steps, heldout_loss=losses.heldout,
                  train_seconds=train_time, sample_seconds_per_observation=sample_time / observations,
                  max_mean_error_in_sd=mean_err, max_cov_error_relative=cov_err,
                  max_mean_abs_log_prob_error=lp_err)
    if verbose:
        for key, value in result.items():
            print(f"{key:>32}: {value:.4g}" if isinstance(value, float) else f"{key:>32}: {value}")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--simulations", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--observations", type=int, default=10)
    ap.add_argument("--posterior-samples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    run(a.dim, a.simulations, a.steps, a.observations, a.posterior_samples, seed=a.seed)


if __name__ == "__main__":
    main()
