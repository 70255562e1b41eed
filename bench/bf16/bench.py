"""bench/bf16: FlowRuntime's bf16 evaluation path (issue 17) against its
float32 path and torchdiffeq, speed and accuracy, in one run. Prints Markdown.

Speed (1 thread: FLOWRT_NUM_THREADS=1 and threads=1 in every call,
torch.set_num_threads(1)); each figure is the best of REPS rounds, the
systems interleaved within a round:
  (1) velocity throughput, float32 vs bf16, batch 256 / 1024 / 4096, for a
      4 × 512 SiLU MLP (random init) and the demo's checkerboard MLP
      (2 → 256 × 3 → 2, trained by `flowrt train`);
  (2) RK4, 100 steps, batch 10,000, transport t = 0 → 1 of the checkerboard
      flow: float32, bf16, torchdiffeq (same weights, its "rk4").
Accuracy (checkerboard flow, both threads):
  (3) per-sample endpoint deviation |x_bf16 − x_f32| of the same base points,
      RK4 (100 steps) and dopri5 (rtol = atol = 1e-5);
  (4) energy distance of 10k bf16 samples to the 10k float32 samples, next
      to that of two float32 sample sets with different seeds (the floor);
  (5) held-out NLL of 5,000 checkerboard points, float32 vs bf16
      likelihood precision, RK4 and dopri5, exact divergence.
"""
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "transport"))
import flowrt  # noqa: E402
from flowrt import _capi  # noqa: E402
from flowrt._flow import solver_params  # noqa: E402

REPS = int(os.environ.get("REPS", "3"))
CB = os.environ["CHECKERBOARD_ONNX"]
ONE = dict(threads=1)


def best(fn, reps=REPS):
    """(result, best seconds) of `reps` calls."""
    out, t = None, float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return out, t


def mlp_flops(dim, width, depth):
    return 2 * ((dim + 1) * width + (depth - 1) * width * width + width * dim)


def section_velocity():
    print("### (1) Velocity throughput, 1 thread\n")
    print("| network | batch | float32 (ms) | bf16 (ms) | float32 GFLOP/s | bf16 GFLOP/s | bf16 speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    nets = [("4×512 MLP", flowrt.Model.mlp(2, hidden=512, depth=4, seed=0), mlp_flops(2, 512, 4)),
            ("checkerboard 256×3", flowrt.load_model(CB), mlp_flops(2, 256, 3))]
    rng = np.random.default_rng(0)
    ratios = []
    for name, model, flops in nets:
        for batch in (256, 1024, 4096):
            X = rng.standard_normal((batch, 2)).astype(np.float32)
            t = rng.uniform(size=batch)
            calls = max(5, int(4e9 / (batch * flops)))
            times = {"float32": float("inf"), "bf16": float("inf")}
            for _ in range(REPS):
                for p in times:
                    model.precision = p
                    model.velocity(t, X)
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        model.velocity(t, X)
                    times[p] = min(times[p], (time.perf_counter() - t0) / calls)
            r = times["float32"] / times["bf16"]
            ratios.append(r)
            print(f"| {name} | {batch} | {times['float32'] * 1e3:.3f} | {times['bf16'] * 1e3:.3f} | "
                  f"{batch * flops / times['float32'] / 1e9:.0f} | {batch * flops / times['bf16'] / 1e9:.0f} | "
                  f"{r:.2f}× |", flush=True)
        model.precision = "float32"
    print()
    return ratios


def transport(flow, x0, precision, **solver):
    flow.precision = precision
    return flow.transport(x0, 0.0, 1.0, **solver)


def section_rk4():
    import torch
    import torchdiffeq
    from flowrt_mlp import torch_mlp_from_onnx
    torch.set_num_threads(1)
    print("### (2) RK4, 100 steps, batch 10,000, d = 2, checkerboard flow, 1 thread\n")
    flow = flowrt.Flow.load(CB)
    net = torch_mlp_from_onnx(CB)
    x0 = np.random.default_rng(1).standard_normal((10_000, 2)).astype(np.float32)
    xt, grid = torch.from_numpy(x0), torch.tensor([0.0, 1.0])
    rk4 = dict(method="rk4", steps=100, threads=1)
    times = {"float32": float("inf"), "bf16": float("inf"), "torchdiffeq": float("inf")}
    out = {}
    for _ in range(REPS):
        for p in ("float32", "bf16"):
            out[p], t = best(lambda: transport(flow, x0, p, **rk4), 1)
            times[p] = min(times[p], t)
        with torch.no_grad():
            tdq, t = best(lambda: torchdiffeq.odeint(lambda s, y: net(s, y), xt, grid, method="rk4",
                                                     options={"step_size": 0.01})[-1], 1)
        times["torchdiffeq"] = min(times["torchdiffeq"], t)
    flops = 400 * 10_000 * mlp_flops(2, 256, 3)
    print("| system | time (s) | GFLOP/s | bf16 speed-up over it |")
    print("|---|---:|---:|---:|")
    for k in ("bf16", "float32", "torchdiffeq"):
        print(f"| FlowRuntime {k} |" if k != "torchdiffeq" else "| torchdiffeq (torch eager) |",
              f"{times[k]:.3f} | {flops / times[k] / 1e9:.0f} | {times[k] / times['bf16']:.2f}× |")
    print(f"\n<!-- max |x_float32 - x_torchdiffeq| = {np.abs(out['float32'] - tdq.numpy()).max():.2e} "
          f"(torchdiffeq's rk4 is the 3/8 rule) -->\n", flush=True)
    flow.precision = "float32"
    return times


def energy_distance(a, b, chunk=1000):
    """2 E|A − B| − E|A − A'| − E|B − B'| (Euclidean), exact over all pairs."""
    def mean_dist(x, y):
        s = 0.0
        for i in range(0, len(x), chunk):
            d = x[i:i + chunk, None, :].astype(np.float64) - y[None, :, :]
            s += np.sqrt((d * d).sum(-1)).sum()
        return s / (len(x) * len(y))
    return 2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)


def section_accuracy():
    print("### (3)–(5) Accuracy, checkerboard flow (data in [−4, 4]²)\n")
    flow = flowrt.Flow.load(CB)
    n = 10_000
    x0 = np.random.default_rng(2).standard_normal((n, 2)).astype(np.float32)
    x0b = np.random.default_rng(3).standard_normal((n, 2)).astype(np.float32)
    print("| solver | mean ‖Δx‖ | median | 99th pct | max | energy distance bf16 vs float32 | "
          "float32 vs float32 (other seed) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, solver in (("RK4, 100 steps", dict(method="rk4", steps=100)),
                         ("dopri5, 1e-5", dict(method="dopri5", rtol=1e-5, atol=1e-5))):
        a = transport(flow, x0, "float32", **solver)
        b = transport(flow, x0, "bf16", **solver)
        c = transport(flow, x0b, "float32", **solver)
        dev = np.sqrt(((a.astype(np.float64) - b) ** 2).sum(1))
        print(f"| {name} | {dev.mean():.2e} | {np.median(dev):.2e} | {np.quantile(dev, 0.99):.2e} | "
              f"{dev.max():.2e} | {energy_distance(b, a):.2e} | {energy_distance(c, a):.2e} |", flush=True)
    flow.precision = "float32"
    print()
    held = flowrt.datasets.sample("checkerboard", 5000, seed=12345)
    entropy = flowrt.datasets.entropy("checkerboard")
    print(f"Held-out NLL, 5,000 checkerboard points (true entropy {entropy:.4f} nats), exact divergence:\n")
    print("| solver | NLL float32 | NLL bf16 | difference | mean \\|Δ log p\\| | max \\|Δ log p\\| |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, solver in (("RK4, 100 steps", dict(method="rk4", steps=100)),
                         ("dopri5, 1e-5", dict(method="dopri5", rtol=1e-5, atol=1e-5))):
        lps = {}
        for p in ("float32", "bf16"):
            flow.likelihood_precision = p
            params = solver_params(divergence="exact", **solver)
            lp = np.empty(len(held), np.float64)
            stats = _capi.flowrt_solver_stats()
            stats.struct_size = ctypes.sizeof(stats)
            status = _capi.flowrt_flow_log_prob(flow._handle, len(held), held.ctypes.data_as(_capi.c_float_p), 1.0,
                                                ctypes.byref(params), lp.ctypes.data_as(_capi.c_double_p), None,
                                                ctypes.byref(stats))
            assert status == 0, _capi.flowrt_last_error_message()
            assert stats.precision == (1 if p == "bf16" and flowrt.bf16_available() else 0)
            lps[p] = lp
        d = np.abs(lps["bf16"] - lps["float32"])
        nll32, nll16 = -lps["float32"].mean(), -lps["bf16"].mean()
        print(f"| {name} | {nll32:.5f} | {nll16:.5f} | {nll16 - nll32:+.1e} | {d.mean():.2e} | {d.max():.2e} |",
              flush=True)
    flow.likelihood_precision = "float32"
    print()


def main():
    if not flowrt.bf16_available():
        print("**This CPU has no AVX512_BF16: bf16 requests run float32; the figures below are not bf16's.**\n")
    section_velocity()
    section_rk4()
    section_accuracy()


if __name__ == "__main__":
    main()
