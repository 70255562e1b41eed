"""One system, one task, one simulation budget: train a posterior estimator
on simulated pairs, then draw posterior samples for each observation.

    bench_conditional.py SYSTEM TASK SIMULATIONS THREADS --out DIR [--observations K]

SYSTEM: flowrt (a conditional MLP flow through the Python binding),
fmpe (sbi's FMPE, its defaults), npe_nsf (sbi's NPE with zuko's neural
spline flow, sbi's defaults otherwise). Prints one JSON line (training
seconds, sampling seconds per observation, settings) and writes the
samples to DIR/<system>_<task>_<sims>.npz for score.py. Training and
sampling times are wall-clock, measured in this process around the calls
that do the work (the simulations themselves are not timed).

Posterior samples outside the prior's support (two moons: the box
[-1, 1]²) are rejected and redrawn for every system: sbi's posteriors do
it themselves, FlowRuntime's loop below does it and is timed with it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tasks import observations, simulate  # noqa: E402

POSTERIOR_SAMPLES = 10_000

# FlowRuntime's settings per task and budget (see results.md): hidden width,
# depth, residual blocks, optimisation steps, batch size, learning rate, and
# the sampler (dopri5 with rtol = atol = tol).
FLOWRT_SETTINGS = {
    ("gaussian_linear", 10_000): dict(hidden=128, depth=3, steps=3000, batch_size=512, lr=2e-3, tol=1e-4),
    ("gaussian_linear", 100_000): dict(hidden=128, depth=3, steps=6000, batch_size=1024, lr=2e-3, tol=1e-4),
    # Two moons' thin crescents need residual blocks: the plain 3×128 MLP of the first run reached
    # C2ST 0.79 (10k) and 0.77 (100k); see results.md.
    ("two_moons", 10_000): dict(hidden=64, depth=4, residual=True, steps=4000, batch_size=256, lr=2e-3, tol=1e-4),
    ("two_moons", 100_000): dict(hidden=64, depth=4, residual=True, steps=8000, batch_size=512, lr=2e-3, tol=1e-4),
}


def in_support(task: str, theta: np.ndarray) -> np.ndarray:
    if task == "two_moons":
        return np.all(np.abs(theta) <= 1.0, axis=1)
    return np.ones(len(theta), bool)


def run_flowrt(task, theta, x, x_obs, threads, seed, steps=None):
    import flowrt
    s = dict(FLOWRT_SETTINGS[(task, len(theta))])
    if steps is not None:
        s["steps"] = steps
    flow = flowrt.Flow.mlp(theta.shape[1], hidden=s["hidden"], depth=s["depth"], context_dim=x.shape[1], seed=seed,
                           residual=s.get("residual", False))
    start = time.perf_counter()
    losses = flow.fit(theta, context=x, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"], seed=seed,
                      threads=threads)
    train = time.perf_counter() - start
    samples, times, evals = [], [], []
    for k, xo in enumerate(x_obs):
        start = time.perf_counter()
        kept, have, draw, first = [], 0, POSTERIOR_SAMPLES, 0
        while have < POSTERIOR_SAMPLES:
            post, st = flow.sample(draw, seed=k, first_index=first, context=xo, rtol=s["tol"], atol=s["tol"],
                                   threads=threads, return_stats=True)
            evals.append(st.evaluations_per_sample)
            first += draw
            post = post[in_support(task, post)]
            kept.append(post)
            have += len(post)
            draw = max(1000, 2 * (POSTERIOR_SAMPLES - have))
        times.append(time.perf_counter() - start)
        samples.append(np.concatenate(kept)[:POSTERIOR_SAMPLES])
    info = dict(settings=s, heldout_loss=losses.heldout, evaluations_per_sample=float(np.mean(evals)),
                flowrt=flowrt.__version__)
    return train, times, samples, info


def run_sbi(system, task, theta, x, x_obs, threads, seed, max_epochs=None):
    import torch
    import sbi
    from sbi.inference import FMPE, NPE
    from sbi.utils import BoxUniform
    torch.manual_seed(seed)
    d = theta.shape[1]
    if task == "two_moons":
        prior = BoxUniform(-torch.ones(d), torch.ones(d))
    else:
        prior = torch.distributions.MultivariateNormal(torch.zeros(d), 0.1 * torch.eye(d))
    if system == "fmpe":
        inference = FMPE(prior, show_progress_bars=False)
    else:
        inference = NPE(prior, density_estimator="zuko_nsf", show_progress_bars=False)
    th, xx = torch.from_numpy(theta), torch.from_numpy(x)
    start = time.perf_counter()
    train_options = {} if max_epochs is None else dict(max_num_epochs=max_epochs)
    estimator = inference.append_simulations(th, xx).train(**train_options)
    train = time.perf_counter() - start
    posterior = inference.build_posterior(estimator)
    samples, times = [], []
    for xo in x_obs:
        start = time.perf_counter()
        with torch.no_grad():
            post = posterior.sample((POSTERIOR_SAMPLES,), x=torch.from_numpy(xo)[None, :], show_progress_bars=False)
        times.append(time.perf_counter() - start)
        samples.append(post.numpy().astype(np.float32))
    info = dict(epochs=inference.epoch if hasattr(inference, "epoch") else None, max_epochs=max_epochs,
                best_validation_loss=float(inference._summary["best_validation_loss"][-1])
                if inference._summary.get("best_validation_loss") else None,
                sbi=sbi.__version__, torch=torch.__version__)
    return train, times, samples, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["flowrt", "fmpe", "npe_nsf"])
    ap.add_argument("task", choices=["gaussian_linear", "two_moons"])
    ap.add_argument("simulations", type=int)
    ap.add_argument("threads", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--observations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load-before", default=None, help="the 1-minute load average as the run started (recorded)")
    ap.add_argument("--git", default=None, help="the commit measured (recorded)")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="sbi only: cap on training epochs (default: sbi's, i.e. until the validation loss stalls)")
    ap.add_argument("--steps", type=int, default=None,
                    help="FlowRuntime only: optimisation steps instead of FLOWRT_SETTINGS' (an equal-quality probe: "
                         "how few steps reach a peer's C2ST); the result files get the suffix _steps<N>")
    a = ap.parse_args()
    if a.system != "flowrt":
        import torch
        torch.set_num_threads(a.threads)
        torch.set_num_interop_threads(1)
    started = time.time()
    theta, x = simulate(a.task, a.simulations, seed=a.seed)
    x_obs = observations(a.task, a.observations)
    os.makedirs(a.out, exist_ok=True)
    os.chdir(a.out)  # sbi writes its training logs under the working directory
    if a.system == "flowrt":
        train, times, samples, info = run_flowrt(a.task, theta, x, x_obs, a.threads, a.seed, a.steps)
    else:
        train, times, samples, info = run_sbi(a.system, a.task, theta, x, x_obs, a.threads, a.seed, a.max_epochs)
    name = f"{a.system}_{a.task}_{a.simulations}" + (f"_steps{a.steps}" if a.steps else "")
    np.savez(f"{name}.npz", samples=np.stack(samples), x_obs=x_obs)
    print(json.dumps(dict(system=a.system, task=a.task, simulations=a.simulations, threads=a.threads,
                          measured_at=time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)), load_before=a.load_before,
                          git=a.git,
                          train_seconds=train, sample_seconds=times, samples_file=os.path.abspath(f"{name}.npz"),
                          **info)), flush=True)


if __name__ == "__main__":
    main()
