"""The PyTorch systems of bench/quality, one run per process.

  fm   the same network (MLP on [x, t], SiLU) and the same interpolant loss as
       FlowRuntime, trained the same way (Adam, warmup + cosine, clip 1, EMA),
       likelihood and sampling with torchdiffeq's dopri5 at the same tolerance.
  cnf  zuko's CNF (FFJORD-style): maximum likelihood through the ODE with
       zuko's adaptive-checkpoint adjoint; Hutchinson trace while training
       (exact in 2-D), exact trace for the reported likelihood.
  nsf  zuko's neural spline flow: a discrete flow, exact likelihood, as a
       reference point.

Writes the same JSON fields as the FlowRuntime runner (runner/), plus the
per-point log-densities and 10,000 samples as .npy.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn


def mlp(d_in, d_out, width, depth):
    layers, w = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(w, width), nn.SiLU()]
        w = width
    layers.append(nn.Linear(w, d_out))
    return nn.Sequential(*layers)


class Velocity(nn.Module):
    """v(t, x) = MLP([x, t]): the FlowRuntime VelocityMLP layout."""

    def __init__(self, d, width, depth):
        super().__init__()
        self.net = mlp(d + 1, d, width, depth)
        self.calls = 0

    def forward(self, t, x):
        self.calls += 1
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0], 1)
        return self.net(torch.cat([x, t], 1))


def schedule(name, t):
    """(alpha, beta, alpha', beta') of the interpolant x_t = alpha x0 + beta x1."""
    if name == "trig":
        h = math.pi / 2
        return torch.cos(h * t), torch.sin(h * t), -h * torch.sin(h * t), h * torch.cos(h * t)
    return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)


def lr_at(s, lr, warmup, total, minimum=0.01):
    """FlowRuntime's LearningRateSchedule: linear warmup, then cosine to lr * minimum."""
    if s < warmup:
        return lr * (s + 1) / warmup
    p = min(1.0, (s - warmup) / max(1, total - warmup))
    return lr * (minimum + (1 - minimum) * 0.5 * (1 + math.cos(math.pi * p)))


def standard_normal_logp(z):
    return -0.5 * (z ** 2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


# ---------------------------------------------------------------- fm

def fm_log_prob(model, x, rtol, atol, exact, batch=1000, seed=0):
    """log rho_1(x) by integrating (x, l) backward from t = 1 to 0 with
    torchdiffeq, dl/dt = div v (exact: batched vector-Jacobian products with
    the d basis vectors; otherwise one Rademacher probe per point)."""
    from torchdiffeq import odeint
    out, calls = [], 0
    g = torch.Generator().manual_seed(seed)
    for xb in torch.split(x, batch):
        d = xb.shape[1]
        eye = torch.eye(d).unsqueeze(1).expand(d, xb.shape[0], d)
        eps = (torch.randint(0, 2, xb.shape, generator=g) * 2 - 1).float()

        def f(t, state):
            y, _ = state
            with torch.enable_grad():
                y = y.detach().requires_grad_()
                v = model(t, y)
                if exact:
                    jac = torch.autograd.grad(v, y, eye, is_grads_batched=True)[0]  # [d, n, d]
                    div = torch.einsum("ini->n", jac)
                else:
                    div = (torch.autograd.grad(v, y, eps)[0] * eps).sum(1)
            return v.detach(), div.detach()

        model.calls = 0
        with torch.no_grad():
            zs, ls = odeint(f, (xb, torch.zeros(xb.shape[0])), torch.tensor([1.0, 0.0]),
                            method="dopri5", rtol=rtol, atol=atol)
        calls += model.calls
        out.append(standard_normal_logp(zs[-1]) + ls[-1])
    return torch.cat(out), calls / len(out)


def fm_sample(model, n, d, rtol, atol, seed):
    from torchdiffeq import odeint
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    model.calls = 0
    with torch.no_grad():
        xs = odeint(model, z, torch.tensor([0.0, 1.0]), method="dopri5", rtol=rtol, atol=atol)
    return xs[-1], model.calls


def run_fm(a, train, test):
    d = train.shape[1]
    torch.manual_seed(a.seed)
    model = Velocity(d, a.width, a.depth)
    ema = Velocity(d, a.width, a.depth)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(a.seed)
    train_t = torch.from_numpy(train)

    def evaluate(points):
        lp, nfe = fm_log_prob(ema, points, a.rtol, a.atol, exact=True)
        return -lp.mean().item(), nfe

    def train_steps(s0, s1):
        for s in range(s0, s1):
            for group in opt.param_groups:
                group["lr"] = lr_at(s, a.lr, a.warmup, a.steps)
            x1 = train_t[torch.randint(0, len(train_t), (a.batch,), generator=g)]
            x0 = torch.randn(a.batch, d, generator=g)
            t = torch.rand(a.batch, 1, generator=g)
            al, be, dal, dbe = schedule(a.schedule, t)
            xt, target = al * x0 + be * x1, dal * x0 + dbe * x1
            loss = ((model.net(torch.cat([xt, t], 1)) - target) ** 2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            decay = min(a.ema, (1 + s) / (10 + s))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.mul_(decay).add_(p, alpha=1 - decay)
        return loss.item()

    return segmented_training(a, train_steps, evaluate, test, ema, fm_log_prob, fm_sample, model_name="fm-" + a.schedule)


# ---------------------------------------------------------------- zuko

def run_zuko(a, train, test):
    import zuko
    d = train.shape[1]
    torch.manual_seed(a.seed)
    if a.system == "cnf":
        flow = zuko.flows.CNF(d, hidden_features=[a.width] * a.depth, activation=nn.SiLU,
                              atol=a.atol, rtol=a.rtol, exact=(d <= 2))
        ode = flow.transform.ode
    else:
        flow = zuko.flows.NSF(d, transforms=a.transforms, hidden_features=[a.width] * 2)
        ode = None
    calls = [0]
    if ode is not None:
        ode.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    a.parameters = sum(p.numel() for p in flow.parameters())
    opt = torch.optim.Adam(flow.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed)
    train_t = torch.from_numpy(train)

    def log_prob(points, batch=1000):
        flow.eval()
        if ode is not None:
            flow.transform.exact = True
        out, n_calls = [], 0
        with torch.no_grad():
            for xb in torch.split(points, batch):
                calls[0] = 0
                out.append(flow().log_prob(xb))
                n_calls += calls[0]
        flow.train()
        if ode is not None:
            flow.transform.exact = d <= 2
        return torch.cat(out), n_calls / max(1, len(out))

    def evaluate(points):
        lp, nfe = log_prob(points)
        return -lp.mean().item(), nfe

    def train_steps(s0, s1):
        for s in range(s0, s1):
            for group in opt.param_groups:
                group["lr"] = lr_at(s, a.lr, a.warmup, a.steps)
            x = train_t[torch.randint(0, len(train_t), (a.batch,), generator=g)]
            loss = -flow().log_prob(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 1.0)
            opt.step()
        return loss.item()

    def lp_fn(_, points, rtol, atol, exact, **kw):
        return log_prob(points)

    def sample_fn(_, n, d, rtol, atol, seed):
        torch.manual_seed(seed)
        calls[0] = 0
        flow.eval()
        with torch.no_grad():
            x = flow().sample((n,))
        return x, calls[0]

    return segmented_training(a, train_steps, evaluate, test, None, lp_fn, sample_fn, model_name=a.system,
                              hutchinson=False)


# ---------------------------------------------------------------- shared

def segmented_training(a, train_steps, evaluate, test, model, lp_fn, sample_fn, model_name, hutchinson=True):
    """Trains to a.steps (or until a.time_budget seconds of training), with
    the NLL of the first a.curve_points test points measured (untimed) at
    the fractions a.curve of the run; then the final measurements."""
    test_t = torch.from_numpy(test)
    curve_x = test_t[: a.curve_points]
    fractions = sorted(float(f) for f in a.curve.split(",") if f) + [1.0]
    # Seconds are CPU seconds of this process (time.process_time: the
    # machine is shared; equal to wall-clock on an idle core); the wall-clock
    # is recorded beside them. The CNF's budget is in CPU seconds too.
    train_seconds, train_wall, step, last_loss, curve = 0.0, 0.0, 0, float("nan"), []
    budget = a.time_budget if a.time_budget > 0 else float("inf")
    for f in fractions:
        target = int(round(a.steps * f))
        start, wall = time.process_time(), time.perf_counter()
        # Steps in small blocks so a time budget can stop the run.
        while step < target and train_seconds + (time.process_time() - start) < budget * f:
            nxt = min(target, step + a.block)
            last_loss = train_steps(step, nxt)
            step = nxt
        train_seconds += time.process_time() - start
        train_wall += time.perf_counter() - wall
        nll, _ = evaluate(curve_x)
        curve.append({"step": step, "train_seconds": train_seconds, "nll": nll, "points": len(curve_x)})
        print(f"{model_name} step {step}: {train_seconds:.1f} s, curve NLL {nll:.4f}", flush=True)

    def timed(exact):
        start, wall = time.process_time(), time.perf_counter()
        lp, nfe = lp_fn(model, test_t, a.rtol, a.atol, exact=exact)
        sec, wall = time.process_time() - start, time.perf_counter() - wall
        lp = lp.double().numpy()
        return lp, {"nll": float(-lp.mean()), "seconds": sec, "wall_seconds": wall, "nfe": nfe, "points": len(lp),
                    "incomplete": int((~np.isfinite(lp)).sum())}

    lp, exact = timed(True)
    result = {"system": model_name, "dimension": test.shape[1], "seed": a.seed, "threads": torch.get_num_threads(),
              "train_points": a.train_points, "steps": step, "train_seconds": train_seconds,
              "train_wall_seconds": train_wall, "final_loss": last_loss,
              "exact": exact, "curve": curve}
    if hutchinson:
        result["hutchinson"] = timed(False)[1]
    start, wall = time.process_time(), time.perf_counter()
    x, nfe = sample_fn(model, a.samples, test.shape[1], a.rtol, a.atol, a.seed + 1000)
    result["sample"] = {"seconds": time.process_time() - start, "wall_seconds": time.perf_counter() - wall,
                        "nfe": nfe, "count": a.samples}
    params = model.parameters() if model is not None else []
    result["parameters"] = sum(p.numel() for p in params) or a.parameters
    np.save(a.logp_out, lp) if a.logp_out else None
    np.save(a.samples_out, x.numpy().astype(np.float32)) if a.samples_out else None
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--system", choices=["fm", "cnf", "nsf"], required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--schedule", default="trig")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--transforms", type=int, default=3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--time-budget", type=float, default=0)
    p.add_argument("--block", type=int, default=25)
    p.add_argument("--curve", default="")
    p.add_argument("--curve-points", type=int, default=1000)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--samples-out")
    p.add_argument("--logp-out")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = np.load(a.train).astype(np.float32)
    test = np.load(a.test).astype(np.float32)
    a.train_points = len(train)
    a.parameters = 0
    if a.system == "fm":
        run_fm(a, train, test)
    else:
        run_zuko(a, train, test)


if __name__ == "__main__":
    main()
