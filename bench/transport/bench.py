"""bench/transport: FlowRuntime's flows (C ABI through ctypes) against
torchdiffeq and flow_matching on the same weights, one thread each.

The network is FlowRuntime's native VelocityMLP (d+1 -> 256x3 -> d, SiLU,
seed 1); PyTorch gets identical weights from flowrt_mlp.py (checked: the
velocities agree to float32 rounding before anything is timed).

Workloads (issue 4):
  (a) RK4, 100 steps, d = 2, batch 10,000 and 16: transport t = 0 -> 1.
  (b) log-likelihood at t = 1, dopri5 rtol = atol = 1e-5, d = 2, 8, 32,
      batch 2,000 and 16: exact divergence and Hutchinson (1 Rademacher probe)
      against flow_matching's ODESolver.compute_likelihood.
  (c) per-sample step control: dopri5 1e-5 encoding of a batch mixing 1,800
      points ~ N(0, I) with 200 points at radius ~ 12, network evaluations per
      sample against torchdiffeq's one shared step size.
Each timing is the best of `REPS` runs, FlowRuntime and the peer interleaved.
Prints Markdown.
"""
import ctypes
import os
import sys
import time

import numpy as np
import torch
import torchdiffeq
import flow_matching
from flow_matching.solver import ODESolver

sys.path.insert(0, os.path.dirname(__file__))
from flowrt_mlp import torch_mlp, torch_mlp_from_onnx  # noqa: E402

torch.set_num_threads(1)
WIDTH, DEPTH, SEED = 256, 3, 1
REPS = int(os.environ.get("REPS", "3"))
QUICK = os.environ.get("QUICK") == "1"


def flops_per_eval(d):
    return 2 * ((d + 1) * WIDTH + WIDTH * WIDTH * (DEPTH - 1) + WIDTH * d)


# --- FlowRuntime through the C ABI -------------------------------------------

class MLPParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("dim", ctypes.c_uint32), ("depth", ctypes.c_uint32),
                ("width", ctypes.c_uint32), ("activation", ctypes.c_int32), ("time_encoding", ctypes.c_int32),
                ("time_frequencies", ctypes.c_uint32), ("residual", ctypes.c_int32), ("seed", ctypes.c_uint64)]


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_double)


class SolverParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("method", ctypes.c_int32), ("rtol", ctypes.c_double),
                ("atol", ctypes.c_double), ("fixed_steps", ctypes.c_uint32), ("max_steps", ctypes.c_uint32),
                ("divergence", ctypes.c_int32), ("probes", ctypes.c_uint32), ("probe_kind", ctypes.c_int32),
                ("seed", ctypes.c_uint64), ("threads", ctypes.c_uint32), ("progress", PROGRESS),
                ("progress_user_data", ctypes.c_void_p), ("max_step", ctypes.c_double)]


class SolverStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32)] + [(n, ctypes.c_uint64) for n in (
        "samples", "steps", "rejections", "evaluations", "max_steps_samples", "non_finite_samples",
        "max_steps_per_sample")]


lib = ctypes.CDLL(os.environ.get("FLOWRT_LIBRARY", ".build/release/libflowrt.so"))
lib.flowrt_mlp_default_params.restype = MLPParams
lib.flowrt_solver_default_params.restype = SolverParams
lib.flowrt_last_error_message.restype = ctypes.c_char_p
F32P, F64P = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double)


def check(status):
    if status != 0:
        raise RuntimeError(f"flowrt status {status}: {lib.flowrt_last_error_message().decode()}")


class FlowRT:
    def __init__(self, d, onnx_path=None):
        self.model, self.flow = ctypes.c_void_p(), ctypes.c_void_p()
        if onnx_path:
            check(lib.flowrt_model_load_onnx(onnx_path.encode(), None, ctypes.byref(self.model)))
        else:
            p = lib.flowrt_mlp_default_params()
            p.dim, p.width, p.depth, p.seed = d, WIDTH, DEPTH, SEED
            check(lib.flowrt_model_create_mlp(ctypes.byref(p), ctypes.byref(self.model)))
        check(lib.flowrt_flow_create(self.model, None, ctypes.byref(self.flow)))
        self.d = d

    def sample(self, n, seed, params):
        out, st = np.empty((n, self.d), np.float32), SolverStats(struct_size=ctypes.sizeof(SolverStats))
        check(lib.flowrt_flow_sample(self.flow, ctypes.c_size_t(n), ctypes.c_uint64(seed), ctypes.byref(params),
                                     out.ctypes.data_as(F32P), None, ctypes.byref(st)))
        return out

    def velocity(self, t, x):
        v = np.empty_like(x)
        check(lib.flowrt_model_velocity(self.model, ctypes.c_size_t(len(x)), t.ctypes.data_as(F64P),
                                        x.ctypes.data_as(F32P), v.ctypes.data_as(F32P)))
        return v

    @staticmethod
    def params(method=0, fixed_steps=0, tol=1e-5, hutchinson=False, max_step=0.0):
        p = lib.flowrt_solver_default_params()
        p.method, p.fixed_steps, p.rtol, p.atol, p.threads = method, fixed_steps, tol, tol, 1
        p.max_step = max_step
        if hutchinson:
            p.divergence, p.probes = 1, 1
        return p

    def transport(self, x, t0, t1, params):
        out, st = np.empty_like(x), SolverStats(struct_size=ctypes.sizeof(SolverStats))
        check(lib.flowrt_flow_transport(self.flow, ctypes.c_size_t(len(x)), x.ctypes.data_as(F32P),
                                        ctypes.c_double(t0), ctypes.c_double(t1), ctypes.byref(params),
                                        out.ctypes.data_as(F32P), ctypes.byref(st)))
        return out, st

    def log_prob(self, x, params):
        lp, st = np.empty(len(x)), SolverStats(struct_size=ctypes.sizeof(SolverStats))
        check(lib.flowrt_flow_log_prob(self.flow, ctypes.c_size_t(len(x)), x.ctypes.data_as(F32P),
                                       ctypes.c_double(1.0), ctypes.byref(params), lp.ctypes.data_as(F64P),
                                       None, ctypes.byref(st)))
        return lp, st


# --- helpers -------------------------------------------------------------------

class Counted(torch.nn.Module):
    """Counts network calls (each covers the whole batch)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, t, x):
        self.calls += 1
        return self.net(t, x)


def best(fn, reps=REPS):
    out, dt = None, float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        dt = min(dt, time.perf_counter() - t0)
    return out, dt


def points(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def std_normal_logp(x):
    return -0.5 * (x ** 2).sum(dim=1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


# --- workloads -----------------------------------------------------------------

def verify_weights():
    for d in (2, 8, 32):
        fr, net = FlowRT(d), torch_mlp(d, WIDTH, DEPTH, SEED)
        x, t = points(64, d, 0), np.linspace(0, 1, 64)
        with torch.no_grad():
            ref = net(torch.from_numpy(t).float().reshape(-1, 1), torch.from_numpy(x)).numpy()
        err = np.abs(fr.velocity(t, x) - ref).max()
        assert err < 1e-4 * max(1, np.abs(ref).max()), f"weights differ (d = {d}): {err}"
    print("Weights: FlowRuntime's VelocityMLP(seed 1) and the PyTorch module agree "
          "(max |Δv| < 1e-4 on 64 points, d = 2, 8, 32).\n")


def sgemm_rate(size=1024, reps=3):
    """Single-thread sgemm GFLOP/s of the system OpenBLAS FlowRuntime links
    (its corename printed), measured now, under the same machine load."""
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_set_num_threads(1)
    blas.openblas_get_corename.restype = ctypes.c_char_p
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    c = np.empty_like(a)
    p = a.ctypes.data_as(F32P)

    def run():
        blas.cblas_sgemm(101, 111, 111, size, size, size, ctypes.c_float(1), p, size, p, size,
                         ctypes.c_float(0), c.ctypes.data_as(F32P), size)
    _, dt = best(run, reps)
    return 2 * size ** 3 / dt / 1e9, blas.openblas_get_corename().decode()


def workload_a():
    print("### (a) RK4, 100 steps, d = 2, transport t = 0 → 1, 1 thread\n")
    rate, core = sgemm_rate()
    print(f"sgemm 1024³ (OpenBLAS {core}, 1 thread), measured in this run: {rate:.1f} GFLOP/s\n")
    print("| batch | system | time (s) | GFLOP/s | FlowRuntime speed-up |")
    print("|---:|---|---:|---:|---:|")
    fr, net = FlowRT(2), torch_mlp(2, WIDTH, DEPTH, SEED)
    solver = ODESolver(velocity_model=lambda x, t: net(t, x))
    grid = torch.tensor([0.0, 1.0])
    for n in ((2000, 16) if QUICK else (10_000, 16)):
        x = points(n, 2, 1)
        xt = torch.from_numpy(x)
        reps = REPS if n > 100 else 40  # short runs: more tries to find a quiet moment
        flop = 400 * n * flops_per_eval(2)
        (ours, _), t_ours = best(lambda: fr.transport(x, 0, 1, FlowRT.params(method=4, fixed_steps=100)), reps)
        with torch.no_grad():
            tdq, t_tdq = best(lambda: torchdiffeq.odeint(lambda t, y: net(t, y), xt, grid, method="rk4",
                                                         options={"step_size": 0.01})[-1], reps)
            fm, t_fm = best(lambda: solver.sample(xt, step_size=0.01, method="rk4", time_grid=grid), reps)
        # torchdiffeq's "rk4" is the 3/8 rule: both order 4, results agree to O(h^4).
        diff = np.abs(tdq.numpy() - ours).max()
        print(f"| {n} | FlowRuntime | {t_ours:.3f} | {flop / t_ours / 1e9:.1f} ({flop / t_ours / 1e9 / rate:.0%} of sgemm) | |")
        print(f"| {n} | torchdiffeq | {t_tdq:.3f} | {flop / t_tdq / 1e9:.1f} | {t_tdq / t_ours:.1f}× |")
        print(f"| {n} | flow_matching | {t_fm:.3f} | {flop / t_fm / 1e9:.1f} | {t_fm / t_ours:.1f}× |")
        print(f"<!-- batch {n}: max |x_FlowRuntime - x_torchdiffeq| = {diff:.2e} -->", flush=True)
    print()


def workload_b():
    print("### (b) log ρ1 by dopri5, rtol = atol = 1e-5, 1 thread\n")
    print("| d | batch | divergence | FlowRuntime (s) | NFE/sample | flow_matching (s) | NFE | speed-up | max abs Δ log p |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for d in (2, 8, 32):
        fr, net = FlowRT(d), torch_mlp(d, WIDTH, DEPTH, SEED)
        counted = Counted(net)
        solver = ODESolver(velocity_model=lambda x, t: counted(t, x))
        for n in ((500, 16) if QUICK else (2000, 16)):
            x = points(n, d, 2)
            xt = torch.from_numpy(x)
            reps = REPS if n > 100 else 60
            for hutch in (False, True):
                (lp, st), t_ours = best(lambda: fr.log_prob(x, FlowRT.params(hutchinson=hutch)), reps)
                counted.calls = 0

                def peer():
                    counted.calls = 0
                    return solver.compute_likelihood(xt, std_normal_logp, step_size=None, method="dopri5",
                                                     atol=1e-5, rtol=1e-5, exact_divergence=not hutch)[1]
                ref, t_fm = best(peer, reps)
                diff = np.abs(ref.detach().numpy() - lp).max() if not hutch else float("nan")
                print(f"| {d} | {n} | {'Hutchinson, 1 probe' if hutch else 'exact'} | {t_ours:.3f} | "
                      f"{st.evaluations / n:.1f} | {t_fm:.3f} | {counted.calls} | {t_fm / t_ours:.1f}× | "
                      f"{'—' if hutch else f'{diff:.1e}'} |", flush=True)
    print()


def workload_c():
    model = os.environ.get("CHECKERBOARD_ONNX")
    print("### (c) per-sample step control vs one shared step: encoding t = 1 → 0, dopri5 rtol = atol = 1e-5, d = 2\n")
    if model:
        fr, net = FlowRT(2, model), torch_mlp_from_onnx(model)
        what = f"a checkerboard flow trained by `flowrt train --toy checkerboard` ({os.path.basename(model)}, 2→256×3→2 SiLU)"
        easy = fr.sample(1800, 5, FlowRT.params())          # on the data: samples of the flow
    else:
        fr, net = FlowRT(2), torch_mlp(2, WIDTH, DEPTH, SEED)
        what = "the untrained VelocityMLP(seed 1) (set CHECKERBOARD_ONNX for a trained flow)"
        easy = points(1800, 2, 3)
    angle = np.random.default_rng(4).uniform(0, 2 * np.pi, 200)
    hard = 7 * np.stack([np.cos(angle), np.sin(angle)], 1)  # far outside the data
    x = np.concatenate([easy, hard]).astype(np.float32)
    with torch.no_grad():
        ref_v = net(torch.full((64, 1), 0.5), torch.from_numpy(x[:64])).numpy()
    assert np.abs(fr.velocity(np.full(64, 0.5), x[:64]) - ref_v).max() < 1e-3, "weights differ"
    counted = Counted(net)

    def peer(points):
        counted.calls = 0
        with torch.no_grad():
            return torchdiffeq.odeint(counted, torch.from_numpy(points), torch.tensor([1.0, 0.0]), method="dopri5",
                                      rtol=1e-5, atol=1e-5)[-1]
    (z, st), t_ours = best(lambda: fr.transport(x, 1, 0, FlowRT.params()))
    ref, t_tdq = best(lambda: peer(x))
    shared = counted.calls
    peer(x[:1800]); shared_easy = counted.calls
    peer(x[1800:]); shared_hard = counted.calls
    st_easy = fr.transport(x[:1800], 1, 0, FlowRT.params())[1]
    st_hard = fr.transport(x[1800:], 1, 0, FlowRT.params())[1]
    capped = FlowRT.params(max_step=0.25)
    (zc, stc), t_capped = best(lambda: fr.transport(x, 1, 0, capped))
    stc_easy = fr.transport(x[:1800], 1, 0, capped)[1]
    stc_hard = fr.transport(x[1800:], 1, 0, capped)[1]
    print(f"Network: {what}. Batch: 1,800 points on the data plus 200 at radius 7.\n")
    print("| system | NFE per sample, mixed batch | easy points alone | far points alone | wall-clock, mixed (s) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| FlowRuntime (per-sample steps) | {st.evaluations / len(x):.1f} | {st_easy.evaluations / 1800:.1f} | "
          f"{st_hard.evaluations / 200:.1f} | {t_ours:.3f} |")
    print(f"| FlowRuntime, max_step = 0.25 | {stc.evaluations / len(x):.1f} | {stc_easy.evaluations / 1800:.1f} | "
          f"{stc_hard.evaluations / 200:.1f} | {t_capped:.3f} |")
    print(f"| torchdiffeq (one step size per batch) | {shared} | {shared_easy} | {shared_hard} | {t_tdq:.3f} |")
    # Accuracy per sample against a tight reference (FlowRuntime dopri5 at 1e-10).
    exact = fr.transport(x, 1, 0, FlowRT.params(tol=1e-10))[0]
    err_ours = np.abs(z - exact).max(axis=1)
    err_tdq = np.abs(ref.numpy() - exact).max(axis=1)
    err_capped = np.abs(zc - exact).max(axis=1)
    print(f"\nRatio on the mixed batch: torchdiffeq evaluates the network {shared / (st.evaluations / len(x)):.2f}× as "
          f"often per sample and takes {t_tdq / t_ours:.1f}× the time. Most steps any sample took: "
          f"{st.max_steps_per_sample}.\n")
    print("Per-sample error against a dopri5 solution at rtol = atol = 1e-10 (max over coordinates):\n")
    print("| system | median | 99th percentile | worst sample |")
    print("|---|---:|---:|---:|")
    for name, e in (("FlowRuntime", err_ours), ("FlowRuntime, max_step = 0.25", err_capped), ("torchdiffeq", err_tdq)):
        print(f"| {name} | {np.median(e):.1e} | {np.percentile(e, 99):.1e} | {e.max():.1e} |")
    print(flush=True)


if __name__ == "__main__":
    print(f"Versions: torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
          f"flow_matching {flow_matching.__version__}, numpy {np.__version__}.\n")
    verify_weights()
    which = sys.argv[1:] or ["a", "b", "c"]
    for w in which:
        {"a": workload_a, "b": workload_b, "c": workload_c}[w]()
