"""bench/scaling: 1- and 2-thread throughput of every FlowRuntime workload
next to PyTorch's (and, for velocity evaluation, onnxruntime's) on the same
networks, and the 2-thread scaling of each (issue 17, "Both cores").

    bench.py                  the whole sweep (run.sh calls this); prints JSON
                              lines to stdout and writes nothing itself
    bench.py worker KIND ...  one measurement process (internal)

Networks (FlowRuntime's native VelocityMLP, SiLU, time concatenated; PyTorch
gets the identical weights from bench/transport/flowrt_mlp.py and the run
checks that the velocities agree; onnxruntime runs FlowRuntime's own ONNX
export of the same model):
  mlp2   d = 2,  2 -> 256x3 -> 2  (the checkerboard network)
  wide   d = 2,  2 -> 1024x3 -> 2
  d64    d = 64, 64 -> 256x3 -> 64
Workloads (FlowRuntime through the Python binding, threads per call except
velocity evaluation, whose thread count is FLOWRT_NUM_THREADS per process):
  forward   velocity v(t, x) of one batch
  rk4       transport t = 0 -> 1, RK4 with a fixed step count
            (PyTorch: torchdiffeq.odeint rk4 with the same step)
  dopri5    transport t = 0 -> 1, dopri5 rtol = atol = 1e-5 (per-sample
            steps; torchdiffeq: one step size for the batch)
  exact     log rho_1(x) by dopri5 1e-5 with the exact divergence
            (PyTorch: torchdiffeq on (x, delta) with the trace from d
            autograd row gradients per evaluation)
  hutch     the same with one Rademacher Hutchinson probe per sample
            (PyTorch: one vector-Jacobian product per evaluation)
  sde       SDE sampling, stochastic Heun, epsilon = 1 tapered, N steps
            (PyTorch: the same Heun loop and score formula, trig schedule)
  image nets (bench/images' classes): velocity of the three image fixtures
  img-sample, img-hutch  the torchcfm U-Net fixture (untrained weights) as a
            flow: sampling (transport 0 -> 1) and a Hutchinson log-density,
            dopri5 at IMAGE_FLOW_TOL (PyTorch: torchdiffeq on the same module)
  training (bench/train's scripts): steps/s, batch 1024, MLP 2->256x3->2

Throughput: samples (or steps) per second of the best of REPS calls; the 1-
and 2-thread calls are interleaved in one process where the system allows it
(FlowRuntime solvers, PyTorch), and in alternating processes otherwise
(FlowRuntime velocity evaluation, onnxruntime sessions, image networks).
FlowRuntime's 1- and 2-thread results are compared bit for bit.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "transport"))


def env_int(name, default):
    return int(os.environ.get(name, default))


# Sizes (environment overrides).
REPS = env_int("REPS", 3)                    # FlowRuntime timings per (workload, threads)
TORCH_REPS = env_int("TORCH_REPS", 2)        # PyTorch timings per (workload, threads)
ROUNDS = env_int("ROUNDS", 2)                # alternating process rounds (forward, images)
N_FORWARD = env_int("N_FORWARD", 32768)      # velocity batch (mlp2, d64); wide: / 4
N_ODE = env_int("N_ODE", 10000)              # transport / log-density / SDE batch (mlp2, d64)
N_WIDE = env_int("N_WIDE", 1024)             # the same for the wide network (64 chunks of 16)
N_EXACT64 = env_int("N_EXACT64", 256)        # exact divergence at d = 64 (d + 1 passes per evaluation)
RK4_STEPS = env_int("RK4_STEPS", 10)
SDE_STEPS = env_int("SDE_STEPS", 20)
IMAGE_BATCH = env_int("IMAGE_BATCH", 16)
IMAGE_BUDGET = float(os.environ.get("IMAGE_BUDGET", "0.5"))
IMAGE_FLOW_BATCH = env_int("IMAGE_FLOW_BATCH", 8)   # U-Net flow sampling / log-density batch
IMAGE_FLOW_TOL = float(os.environ.get("IMAGE_FLOW_TOL", "1e-3"))
TRAIN_STEPS = env_int("TRAIN_STEPS", 300)
TOL = 1e-5

NETS = {"mlp2": (2, 256), "wide": (2, 1024), "d64": (64, 256)}
# (net, workload, batch); `forward` rows are measured by the forward workers.
SOLVER_ROWS = [
    ("mlp2", "rk4", N_ODE), ("mlp2", "dopri5", N_ODE), ("mlp2", "exact", N_ODE), ("mlp2", "hutch", N_ODE),
    ("mlp2", "sde", N_ODE),
    ("wide", "rk4", N_WIDE), ("wide", "dopri5", N_WIDE), ("wide", "hutch", N_WIDE),
    ("d64", "rk4", N_ODE), ("d64", "dopri5", N_ODE), ("d64", "exact", N_EXACT64), ("d64", "hutch", N_ODE),
    ("d64", "sde", N_ODE),
]
FORWARD_ROWS = [("mlp2", N_FORWARD), ("wide", N_FORWARD // 4), ("d64", N_FORWARD)]
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))  # e.g. SKIP=images,training


def emit(**row):
    row["load1"] = float(open("/proc/loadavg").read().split()[0])
    print(json.dumps(row), flush=True)


def points(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --- FlowRuntime ----------------------------------------------------------------

def fr_flow(net):
    import flowrt
    d, h = NETS[net]
    return flowrt.Flow.mlp(d, hidden=h, depth=3, seed=1)


def fr_call(flow, workload, x, threads):
    n = x.shape[0]
    if workload == "rk4":
        return flow.transport(x, 0.0, 1.0, method="rk4", steps=RK4_STEPS, threads=threads)
    if workload == "dopri5":
        return flow.transport(x, 0.0, 1.0, method="dopri5", rtol=TOL, atol=TOL, threads=threads)
    if workload == "exact":
        return flow.log_prob(x, method="exact", rtol=TOL, atol=TOL, threads=threads)
    if workload == "hutch":
        return flow.log_prob(x, method="hutchinson", probes=1, rtol=TOL, atol=TOL, threads=threads)
    if workload == "sde":
        return flow.sample_sde(n, seed=1, steps=SDE_STEPS, method="heun", threads=threads)
    raise ValueError(workload)


def worker_fr_solvers():
    """Every solver row, 1 and 2 threads interleaved in this process."""
    for net, workload, n in SOLVER_ROWS:
        flow = fr_flow(net)
        x = points(n, NETS[net][0])
        out = {th: fr_call(flow, workload, x, th) for th in (1, 2)}  # warm-up, and the bitwise check
        same = bool(np.array_equal(out[1], out[2]))
        best = {1: float("inf"), 2: float("inf")}
        for _ in range(REPS):
            for th in (1, 2):
                dt, _ = timed(lambda: fr_call(flow, workload, x, th))
                best[th] = min(best[th], dt)
        for th in (1, 2):
            emit(system="FlowRuntime", net=net, workload=workload, batch=n, threads=th, seconds=best[th],
                 bitwise_equal_1t_2t=same)


def worker_forward(system, threads):
    """Velocity of FORWARD_ROWS at one thread count (one process per system
    and thread count: FlowRuntime reads FLOWRT_NUM_THREADS once)."""
    import tempfile
    rng = np.random.default_rng(1)
    for net, n in FORWARD_ROWS:
        d, h = NETS[net]
        x, t = points(n, d), rng.uniform(size=n)
        if system == "FlowRuntime":
            assert os.environ.get("FLOWRT_NUM_THREADS") == str(threads)
            model = fr_flow(net).model
            call = lambda: model.velocity(t, x)
        elif system == "onnxruntime":
            import onnxruntime as ort
            path = os.path.join(tempfile.mkdtemp(), f"{net}.onnx")
            fr_flow(net).model.save(path)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            feeds = {"x": x, "t": t.astype(np.float32).reshape(-1, 1)}
            call = lambda: sess.run(None, feeds)
        else:
            import torch
            from flowrt_mlp import torch_mlp
            torch.set_num_threads(threads)
            net_t = torch_mlp(d, h, 3, 1).eval()
            tt, xx = torch.from_numpy(t.astype(np.float32)), torch.from_numpy(x)

            def call():
                with torch.inference_mode():
                    return net_t(tt, xx)
        call()
        best = min(timed(call)[0] for _ in range(max(REPS, 3)))
        emit(system=system, net=net, workload="forward", batch=n, threads=threads, seconds=best)


# --- PyTorch --------------------------------------------------------------------

def torch_workload(net_t, workload, x, d, shape=None):
    """`net_t(t [n], x)` on x [n, d], or on x reshaped to [n, *shape] (image nets)."""
    import torch
    import torchdiffeq

    xx = torch.from_numpy(x)
    ts = torch.tensor([0.0, 1.0])
    tol = IMAGE_FLOW_TOL if shape else TOL
    workload = workload.removeprefix("img-").replace("sample", "dopri5")

    def field(t, y):
        tt = t.reshape(1).expand(y.shape[0])
        return net_t(tt, y) if shape is None else net_t(tt, y.reshape(-1, *shape)).reshape(y.shape[0], -1)

    if workload in ("rk4", "dopri5"):
        opts = dict(method="rk4", options=dict(step_size=1.0 / RK4_STEPS)) if workload == "rk4" else \
            dict(method="dopri5", rtol=tol, atol=tol)
        with torch.no_grad():
            return torchdiffeq.odeint(field, xx, ts, **opts)[-1]
    if workload in ("exact", "hutch"):
        eps = torch.from_numpy(np.where(np.random.default_rng(2).random(x.shape) < 0.5, -1.0, 1.0).astype(np.float32))

        def augmented(t, state):
            y = state[:, :d]
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                v = field(t, y)
                if workload == "exact":
                    div = sum(torch.autograd.grad(v[:, i].sum(), y, retain_graph=i < d - 1)[0][:, i] for i in range(d))
                else:
                    div = (torch.autograd.grad((v * eps).sum(), y)[0] * eps).sum(1)
            return torch.cat([v.detach(), div.detach().reshape(-1, 1)], dim=1)
        state = torch.cat([xx, torch.zeros(x.shape[0], 1)], dim=1)
        end = torchdiffeq.odeint(augmented, state, torch.tensor([1.0, 0.0]), method="dopri5", rtol=tol, atol=tol)[-1]
        z, delta = end[:, :d], end[:, d]
        return -0.5 * (z ** 2).sum(1) - 0.5 * d * np.log(2 * np.pi) + delta
    if workload == "sde":
        return torch_sde(net_t, x.shape[0], d)
    raise ValueError(workload)


def torch_sde(net_t, n, d, epsilon=1.0, taper=0.1):
    """FlowRuntime's SDE recipe (SDESampler): trig schedule, N(0, I) base,
    b = v + eps tau s with s = (beta v - beta' x) / (h alpha) (h = pi/2),
    tau = min(1, h alpha / taper), stochastic Heun with g = sqrt(eps_k +
    eps_{k+1}), the last step a Heun step of the ODE."""
    import torch
    hp = np.pi / 2
    steps = SDE_STEPS
    h = 1.0 / steps
    grid = [k * h if k < steps else 1.0 for k in range(steps + 1)]
    eps = [epsilon * min(1.0, hp * np.cos(hp * t) / taper) for t in grid]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)

    def drift(k, y, score):
        t = grid[k]
        v = net_t(torch.full((n,), t), y)
        if not score or eps[k] <= 0:
            return v
        a, b, bd = np.cos(hp * t), np.sin(hp * t), hp * np.cos(hp * t)
        return v + eps[k] * (b * v - bd * y) / (hp * a)
    with torch.no_grad():
        for k in range(steps):
            last = k == steps - 1
            g = 0.0 if last else float(np.sqrt(eps[k] + eps[k + 1]))
            noise = g * np.sqrt(h) * torch.randn(n, d, generator=gen) if g > 0 else 0.0
            b1 = drift(k, x, not last)
            pred = x + h * b1 + noise
            b2 = drift(k + 1, pred, not last)
            x = x + 0.5 * h * (b1 + b2) + noise
    return x


def worker_torch_solvers():
    import torch
    from flowrt_mlp import torch_mlp
    torch.set_num_interop_threads(1)
    for net, workload, n in SOLVER_ROWS:
        d, h = NETS[net]
        net_t = torch_mlp(d, h, 3, 1).eval()
        for p in net_t.parameters():
            p.requires_grad_(False)
        x = points(n, d)
        best = {1: float("inf"), 2: float("inf")}
        for rep in range(max(TORCH_REPS, 1)):
            for th in (1, 2):
                torch.set_num_threads(th)
                dt, _ = timed(lambda: torch_workload(net_t, workload, x, d))
                best[th] = min(best[th], dt)
        for th in (1, 2):
            emit(system="PyTorch", net=net, workload=workload, batch=n, threads=th, seconds=best[th])


def check_weights():
    """FlowRuntime's velocity and the PyTorch module agree on each network."""
    import torch
    import flowrt  # noqa: F401
    from flowrt_mlp import torch_mlp
    for net, (d, h) in NETS.items():
        x, t = points(64, d, 3), np.linspace(0, 1, 64)
        v = fr_flow(net).model.velocity(t, x)
        with torch.no_grad():
            ref = torch_mlp(d, h, 3, 1)(torch.from_numpy(t).float(), torch.from_numpy(x)).numpy()
        err = float(np.abs(v - ref).max())
        assert err < 1e-4 * max(1.0, float(np.abs(ref).max())), f"{net}: weights differ by {err}"
        emit(system="check", net=net, max_abs_velocity_difference=err)


# --- image networks (bench/images) and training (bench/train) -------------------------

def worker_images(system, threads):
    sys.path.insert(0, os.path.join(ROOT, "bench", "images"))
    from bench_images import SYSTEMS
    from common import MODELS, best_time, inputs
    name = {"FlowRuntime": "flowrt", "onnxruntime": "onnxruntime", "PyTorch": "torch"}[system]
    try:
        s = SYSTEMS[name](threads)
    except ImportError as e:  # PyTorch's image networks need torchcfm / diffusers
        emit(system=system, workload="image", threads=threads, skipped=str(e))
        return
    for case in MODELS:
        s.prepare(case)
        t, x = inputs(case, IMAGE_BATCH)
        call = s.calls(t, x)["IOBinding"] if name == "onnxruntime" else s.call(t, x)
        best, _, _ = best_time(call, budget=IMAGE_BUDGET)
        emit(system=system, net=case, workload="image", batch=IMAGE_BATCH, threads=threads, seconds=best)


def worker_image_flows(system):
    """The U-Net fixture as a flow: sampling and Hutchinson log-densities,
    1 and 2 threads interleaved in this process."""
    sys.path.insert(0, os.path.join(ROOT, "bench", "images"))
    from common import MODELS, fixture
    case, n = "tcfm_unet", IMAGE_FLOW_BATCH
    shape = MODELS[case]
    d = int(np.prod(shape))
    x = points(n, d)
    if system == "FlowRuntime":
        import flowrt
        flow = flowrt.Flow(flowrt.Model.load(fixture(case)))
        calls = {
            "img-sample": lambda th: flow.transport(x, 0.0, 1.0, method="dopri5", rtol=IMAGE_FLOW_TOL,
                                                    atol=IMAGE_FLOW_TOL, threads=th),
            "img-hutch": lambda th: flow.log_prob(x, method="hutchinson", probes=1, rtol=IMAGE_FLOW_TOL,
                                                  atol=IMAGE_FLOW_TOL, threads=th),
        }
        set_threads = lambda th: None
    else:
        from bench_images import Torch
        try:
            s = Torch(1)
        except ImportError as e:
            emit(system=system, workload="img-sample", skipped=str(e))
            return
        import torch
        s.prepare(case)
        for p in s.model.parameters():
            p.requires_grad_(False)
        calls = {w: (lambda th, w=w: torch_workload(s.model, w, x, d, shape)) for w in ("img-sample", "img-hutch")}
        set_threads = torch.set_num_threads
    for workload, call in calls.items():
        out, best = {}, {1: float("inf"), 2: float("inf")}
        for rep in range(REPS if system == "FlowRuntime" else TORCH_REPS):
            for th in (1, 2):
                set_threads(th)
                dt, out[th] = timed(lambda: call(th))
                best[th] = min(best[th], dt)
        extra = {"bitwise_equal_1t_2t": bool(np.array_equal(out[1], out[2]))} if system == "FlowRuntime" else {}
        for th in (1, 2):
            emit(system=system, net=case, workload=workload, batch=n, threads=th, seconds=best[th], **extra)


def run_training(tmp):
    """bench/train's two sides at 1 and 2 threads, TRAIN_STEPS steps each."""
    import re
    py = sys.executable
    train = os.path.join(ROOT, "bench", "train")
    heldout = os.path.join(tmp, "heldout.npy")
    subprocess.run([py, os.path.join(train, "heldout.py"), heldout, "4096"], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "bindings", "python"), train]))
    for th in (1, 2):
        for system, script in (("FlowRuntime", "flowrt_side.py"), ("PyTorch", "peers.py")):
            e = dict(env, OMP_NUM_THREADS=str(th))
            args = [py, os.path.join(train, script), "--steps", str(TRAIN_STEPS), "--threads", str(th),
                    "--heldout", heldout, "--eval-every", str(TRAIN_STEPS)]
            out = subprocess.run(args, check=True, capture_output=True, text=True, env=e).stdout
            rate = float(re.search(r"steps/s ([\d.]+)", out)[1])
            emit(system=system, net="mlp2", workload="train", batch=1024, threads=th, seconds=1.0 / rate,
                 steps_per_second=rate)


# --- the report -----------------------------------------------------------------

LABELS = {
    "forward": "velocity v(t, x)", "rk4": f"RK4 transport, {RK4_STEPS} steps", "dopri5": "dopri5 transport, 1e-5",
    "exact": "log-density, exact divergence, dopri5 1e-5", "hutch": "log-density, Hutchinson 1 probe, dopri5 1e-5",
    "sde": f"SDE sampling, Heun {SDE_STEPS} steps", "image": "image-network velocity", "train": "training step",
    "img-sample": f"image flow sampling, dopri5 {IMAGE_FLOW_TOL:g}",
    "img-hutch": f"image flow log-density, Hutchinson 1 probe, dopri5 {IMAGE_FLOW_TOL:g}",
}
NET_LABELS = {"mlp2": "MLP 2→256×3→2", "wide": "MLP 2→1024×3→2", "d64": "MLP 64→256×3→64"}


def report(path, header):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    best, order, notes = {}, [], {}
    for r in rows:
        if "seconds" not in r:
            continue
        key = (r["net"], r["workload"], r["batch"])
        if key not in order:
            order.append(key)
        k = (key, r["system"], r["threads"])
        best[k] = min(best.get(k, float("inf")), r["seconds"])
        if "bitwise_equal_1t_2t" in r:
            notes[key] = r["bitwise_equal_1t_2t"]
    skipped = sorted({f"{r['system']} {r['workload']}: {r['skipped']}" for r in rows if "skipped" in r})
    checks = [r for r in rows if r.get("system") == "check"]
    unit = lambda key: "steps/s" if key[1] == "train" else "samples/s"

    def rate(key, system, th):
        s = best.get((key, system, th))
        return None if s is None else (1.0 / s if key[1] == "train" else key[2] / s)

    def scaling(key, system):
        a, b = rate(key, system, 1), rate(key, system, 2)
        return f"{b / a:.2f}×" if a and b else "—"

    def fmt(x):
        return "—" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.3g}")
    print(header)
    print("| workload | network | batch | FR 1t | FR 2t | FR scaling | PyTorch scaling | ORT scaling | FR 1t = 2t bitwise |")
    print("|---|---|---:|---:|---:|---:|---:|---:|:---:|")
    for key in order:
        net, workload, batch = key
        bit = {True: "yes", False: "**no**"}.get(notes.get(key), "")
        print(f"| {LABELS[workload]} ({unit(key)}) | {NET_LABELS.get(net, net)} | {batch:,} | {fmt(rate(key, 'FlowRuntime', 1))} | "
              f"{fmt(rate(key, 'FlowRuntime', 2))} | **{scaling(key, 'FlowRuntime')}** | {scaling(key, 'PyTorch')} | "
              f"{scaling(key, 'onnxruntime')} | {bit} |")
    print("\nThroughput of the peers (same unit as the row):\n")
    print("| workload | network | PyTorch 1t | PyTorch 2t | ORT 1t | ORT 2t | FR 2t / PyTorch 2t |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in order:
        net, workload, _ = key
        fr2, pt2 = rate(key, "FlowRuntime", 2), rate(key, "PyTorch", 2)
        ratio = f"{fr2 / pt2:.1f}×" if fr2 and pt2 else "—"
        print(f"| {LABELS[workload]} | {NET_LABELS.get(net, net)} | {fmt(rate(key, 'PyTorch', 1))} | {fmt(rate(key, 'PyTorch', 2))} | "
              f"{fmt(rate(key, 'onnxruntime', 1))} | {fmt(rate(key, 'onnxruntime', 2))} | {ratio} |")
    loads = [r["load1"] for r in rows if "load1" in r]
    print(f"\n1-minute load average seen by the workers: {min(loads):.2f} to {max(loads):.2f}.")
    for c in checks:
        print(f"Weights check {c['net']}: max |v_FlowRuntime − v_PyTorch| = {c['max_abs_velocity_difference']:.2e}.")
    for s in skipped:
        print(f"Skipped: {s}.")


# --- the sweep ------------------------------------------------------------------

def worker(argv):
    kind = argv[0]
    if kind == "fr-solvers":
        worker_fr_solvers()
    elif kind == "torch-solvers":
        worker_torch_solvers()
    elif kind == "check":
        check_weights()
    elif kind == "forward":
        worker_forward(argv[1], int(argv[2]))
    elif kind == "images":
        worker_images(argv[1], int(argv[2]))
    elif kind == "image-flows":
        worker_image_flows(argv[1])
    else:
        raise SystemExit(f"unknown worker {kind}")


def spawn(*args, threads=None):
    env = dict(os.environ)
    if threads is not None:
        env.update(FLOWRT_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    sys.stdout.flush()
    subprocess.run([sys.executable, os.path.abspath(__file__), "worker", *map(str, args)], check=True, env=env)


def main():
    import tempfile
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        return report(sys.argv[2], sys.argv[3])
    spawn("check")
    for _ in range(ROUNDS):
        for system in ("FlowRuntime", "onnxruntime", "PyTorch"):
            for th in (1, 2):
                spawn("forward", system, th, threads=th)
    if "solvers" not in SKIP:
        spawn("fr-solvers")
    if "torch" not in SKIP:
        spawn("torch-solvers")
    if "images" not in SKIP:
        for _ in range(ROUNDS):
            for system in ("FlowRuntime", "onnxruntime", "PyTorch"):
                for th in (1, 2):
                    spawn("images", system, th, threads=th)
    if "image-flows" not in SKIP:
        for system in ("FlowRuntime", "PyTorch"):
            spawn("image-flows", system)
    if "training" not in SKIP:
        with tempfile.TemporaryDirectory() as tmp:
            run_training(tmp)


if __name__ == "__main__":
    main()
