"""bench/quality: every system on every dataset, same seeds and budgets, one
thread each, run one after another; then results.md and the plots.

  python run.py [--scale full|tiny] [--only DATASET,...] [--force]

Each run writes out/<scale>/<dataset>/<run>.json (+ log-densities and
samples); a run whose JSON exists is not repeated (use --force), so an
interrupted benchmark resumes where it stopped. The report is written from
whatever runs have finished.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
RUNNER = os.path.join(HERE, "runner", ".build", "release", "flowrt-quality")

# Budgets. Every continuous flow uses the same MLP (width x depth, SiLU) and
# the same dopri5 tolerance (rtol = atol = 1e-5) for likelihood and sampling.
# FlowRuntime and the PyTorch interpolant model take the same steps, batch
# and schedule; zuko's CNF trains for a wall-clock budget (its steps are
# ~100x dearer), zuko's NSF for a step count. Curves: the NLL of the first
# `curve_points` test points at these fractions of each run (untimed).
FULL = {
    "checkerboard": dict(steps=6000, batch=512, width=128, depth=3, lr=2e-3, nsf_steps=1000, cnf_budget=75,
                         cnf_batch=256, curve="0.05,0.1,0.25,0.5", seeds={"flowrt-trig": [0, 1, 2], "fm-trig": [0, 1, 2]}),
    "8gaussians": dict(steps=6000, batch=512, width=128, depth=3, lr=2e-3, nsf_steps=1000, cnf_budget=75,
                       cnf_batch=256, curve="0.05,0.1,0.25,0.5", seeds={"flowrt-trig": [0, 1, 2], "fm-trig": [0, 1, 2]}),
    "gmm16": dict(steps=6000, batch=512, width=128, depth=3, lr=2e-3, nsf_steps=1000, cnf_budget=75,
                  cnf_batch=256, curve="0.1,0.25,0.5", curve_points=500),
    "digits": dict(steps=4000, batch=256, width=256, depth=3, lr=1e-3, nsf_steps=400, cnf_budget=75,
                   cnf_batch=128, curve="0.125,0.25,0.5", curve_points=120),
    "breast-cancer": dict(steps=2500, batch=256, width=256, depth=3, lr=1e-3, nsf_steps=600, cnf_budget=40,
                          cnf_batch=128, curve="0.125,0.25,0.5", curve_points=113),
}
TINY = {name: dict(cfg, steps=200, nsf_steps=50, cnf_budget=8, curve="0.5", curve_points=200, seeds={})
        for name, cfg in FULL.items()}

# Run order: the core comparison on every dataset first, then the other
# systems, then the extra seeds, so a run cut short still has the core.
PHASES = [["flowrt-trig", "fm-trig", "cnf"], ["flowrt-linear", "nsf"]]

SYSTEMS = ["flowrt-trig", "flowrt-linear", "fm-trig", "cnf", "nsf"]
LABELS = {
    "flowrt-trig": "FlowRuntime, trig interpolant",
    "flowrt-linear": "FlowRuntime, linear interpolant",
    "fm-trig": "PyTorch, same net + loss (torchdiffeq)",
    "cnf": "zuko CNF, max. likelihood (FFJORD-style)",
    "nsf": "zuko NSF (discrete flow)",
}


def env():
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # As bench/forward: OpenBLAS picks its own kernels for this machine.
    e.pop("OPENBLAS_CORETYPE", None)
    e.pop("OPENBLAS_L2_SIZE", None)
    return e


def run_one(system, seed, data_dir, out_dir, cfg, force):
    name = f"{system}-s{seed}"
    out = os.path.join(out_dir, name + ".json")
    if os.path.exists(out) and not force:
        return
    common = ["--train", os.path.join(data_dir, "train.npy"), "--test", os.path.join(data_dir, "test.npy"),
              "--seed", str(seed), "--threads", "1", "--out", out + ".part",
              "--samples-out", os.path.join(out_dir, name + ".samples.npy"),
              "--logp-out", os.path.join(out_dir, name + ".logp.npy"),
              "--width", str(cfg["width"]), "--depth", str(cfg["depth"]),
              "--curve", cfg["curve"], "--curve-points", str(cfg.get("curve_points", 1000))]
    meta = json.load(open(os.path.join(data_dir, "meta.json")))
    # NSF inverts its autoregressive transforms one feature at a time: 10,000
    # samples in 64-d cost minutes, so above 2-D it draws 2,000 (scaled in the table).
    common += ["--samples", str(2000 if system == "nsf" and meta["dim"] > 2 else 10_000)]
    if system.startswith("flowrt"):
        cmd = [RUNNER, *common, "--schedule", system.split("-")[1], "--steps", str(cfg["steps"]),
               "--batch", str(cfg["batch"]), "--lr", str(cfg["lr"])]
        if "toy" in meta:
            cmd += ["--toy", meta["toy"], "--true-logp", os.path.join(data_dir, "test_true_logp.npy")]
    else:
        cmd = [PY, os.path.join(HERE, "torch_systems.py"), *common]
        if system == "fm-trig":
            cmd += ["--system", "fm", "--schedule", "trig", "--steps", str(cfg["steps"]),
                    "--batch", str(cfg["batch"]), "--lr", str(cfg["lr"])]
        elif system == "cnf":
            # Steps is only a cap: the wall-clock budget ends the run.
            cmd += ["--system", "cnf", "--steps", "100000", "--time-budget", str(cfg["cnf_budget"]),
                    "--batch", str(cfg["cnf_batch"]), "--lr", "1e-3", "--warmup", "20", "--block", "5"]
        else:
            cmd += ["--system", "nsf", "--steps", str(cfg["nsf_steps"]), "--batch", str(cfg["batch"]),
                    "--lr", "1e-3", "--warmup", "50"]
    print(f"== {os.path.basename(data_dir)} {name}", flush=True)
    start = time.time()
    r = subprocess.run(cmd, env=env(), cwd=HERE)
    if r.returncode != 0:
        print(f"!! {name} failed with status {r.returncode}", flush=True)
        return
    os.replace(out + ".part", out)
    print(f"   {time.time() - start:.0f} s wall", flush=True)


# ---------------------------------------------------------------- report

def load_runs(out_dir):
    runs = {}
    if not os.path.isdir(out_dir):
        return runs
    for f in sorted(os.listdir(out_dir)):
        if f.endswith(".json"):
            r = json.load(open(os.path.join(out_dir, f)))
            r["logp"] = np.load(os.path.join(out_dir, f[:-5] + ".logp.npy"))
            r["samples_path"] = os.path.join(out_dir, f[:-5] + ".samples.npy")
            runs.setdefault(r["system"], []).append(r)
    return runs


class Metric:
    """Converts a system's mean -log p of the modelled variable into the
    dataset's reported unit (nats, or bits/dim of the dequantised digits)."""

    def __init__(self, data_dir):
        self.meta = json.load(open(os.path.join(data_dir, "meta.json")))
        p = os.path.join(data_dir, "test_true_logp.npy")
        self.true_logp = np.load(p) if os.path.exists(p) else None
        p = os.path.join(data_dir, "test_logjac.npy")
        self.logjac = np.load(p) if os.path.exists(p) else None
        self.bpd = self.meta["unit"] == "bits/dim"
        self.two_d = self.meta["dim"] == 2

    def nll(self, mean_nll, points=None):
        if not self.bpd:
            return mean_nll
        jac = self.logjac[:points].mean() if points else self.logjac.mean()
        return (mean_nll - jac) / (self.meta["dim"] * math.log(2))

    def excess(self, logp):
        if self.true_logp is None:
            return None
        diff = self.true_logp - logp
        return diff.mean(), diff.std() / math.sqrt(len(diff))

    def within(self, a, best):
        """Target tolerance: 0.05 nats in 2-D, else 2% of |best|."""
        return a <= best + (0.05 if self.two_d else 0.02 * abs(best))

    def tolerance_text(self):
        return "0.05 nats" if self.two_d else "2%"


def fmt(x, nd=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{nd}f}"


def mean_sd(values):
    v = np.array(values, dtype=float)
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else None)


def time_to_reach(curve, target):
    for c in curve:
        if c["nll"] <= target:
            return c["train_seconds"]
    return None


def dataset_section(name, runs, metric):
    unit = metric.meta["unit"]
    n_test = metric.meta["test"]
    lines = [f"### {name} (d = {metric.meta['dim']}, {metric.meta['train']} train / {n_test} test points)", ""]
    extra = ""
    if metric.true_logp is not None:
        extra = f"; true entropy {metric.meta['entropy']:.4f} nats"
    lines.append(f"Held-out NLL in {unit}{extra}. Times are seconds on one thread; likelihood and sampling "
                 f"times are scaled to 10,000 points where the test set is smaller ({n_test} here).")
    lines.append("")
    head = ("| system | seeds | steps | train s | held-out NLL | excess over truth | "
            "likelihood s /10k (exact) | NFE | Hutchinson NLL | Hutchinson s /10k | sample s /10k | sample NFE |")
    lines += [head, "|" + "---|" * 12]
    rows = {}
    for system in SYSTEMS:
        rs = runs.get(system)
        if not rs:
            continue
        nll, nll_sd = mean_sd([metric.nll(r["exact"]["nll"]) for r in rs])
        r0 = next((r for r in rs if r["seed"] == 0), rs[0])
        ex = metric.excess(r0["logp"]) if r0["logp"].shape[0] == n_test else None
        scale = 10_000 / r0["exact"]["points"]
        hut = r0.get("hutchinson")
        row = dict(system=system, nll=nll, nll_sd=nll_sd, train=mean_sd([r["train_seconds"] for r in rs])[0],
                   steps=r0["steps"], lik=r0["exact"]["seconds"] * scale, nfe=r0["exact"]["nfe"],
                   hut_lik=hut["seconds"] * scale if hut else None, curve=r0["curve"], r0=r0)
        rows[system] = row
        nll_text = fmt(nll) + (f" ± {nll_sd:.3f}" if nll_sd is not None else "")
        ex_text = f"{ex[0]:.3f} ± {ex[1]:.3f}" if ex else "—"
        if ex and len(rs) > 1:
            exs = [metric.excess(r["logp"])[0] for r in rs]
            ex_text += f" (seeds: {', '.join(f'{e:.3f}' for e in exs)})"
        sample_scale = 10_000 / r0["sample"]["count"]
        is_ode = system != "nsf"
        lines.append(
            f"| {LABELS[system]} | {len(rs)} | {r0['steps']} | {fmt(row['train'], 1)} | {nll_text} | {ex_text} | "
            f"{fmt(row['lik'], 2)} | {fmt(row['nfe'], 1) if is_ode else '—'} | "
            f"{fmt(metric.nll(hut['nll'])) if hut else '—'} | {fmt(row['hut_lik'], 2) if hut else '—'} | "
            f"{fmt(r0['sample']['seconds'] * sample_scale, 2)} | {fmt(r0['sample']['nfe'], 1) if is_ode else '—'} |")
    lines.append("")
    return lines, rows


def targets(name, rows, metric):
    """The issue's three targets for this dataset, as a dict of text cells."""
    fr = rows.get("flowrt-trig")
    if not fr:
        return None
    continuous = [r for s, r in rows.items() if s != "nsf"]
    best = min(continuous, key=lambda r: r["nll"])
    fr_best = min((rows[s] for s in ("flowrt-trig", "flowrt-linear") if s in rows), key=lambda r: r["nll"])
    gap = fr_best["nll"] - best["nll"]
    rel = gap / abs(best["nll"]) if best["nll"] else float("nan")
    quality = (f"{'met' if metric.within(fr_best['nll'], best['nll']) else 'MISSED'}: "
               f"{fr_best['system']} {fmt(fr_best['nll'])} vs best {best['system']} {fmt(best['nll'])} "
               f"(+{fmt(gap)}, {100 * rel:+.1f}%; tolerance {metric.tolerance_text()})")
    # Training cost: CNF's time to reach FlowRuntime's final curve NLL (same
    # curve points), within the target tolerance.
    cnf = rows.get("cnf")
    cost = "—"
    if cnf:
        fr_curve_final = fr_best["curve"][-1]["nll"]
        tol_target = fr_curve_final + (0.05 if metric.two_d else 0.02 * abs(fr_curve_final))
        t_cnf = time_to_reach(cnf["curve"], tol_target)
        t_fr = fr_best["train"]
        if t_cnf is None:
            cost = (f"met (lower bound): the CNF did not reach {fmt(metric.nll(tol_target))} in its "
                    f"{fmt(cnf['train'], 0)} s budget (best {fmt(metric.nll(min(c['nll'] for c in cnf['curve'])))}); "
                    f"FlowRuntime {fmt(t_fr, 1)} s → ≥ {cnf['train'] / t_fr:.1f}×")
            # The converse: when did FlowRuntime pass the CNF's final NLL?
            cnf_final = cnf["curve"][-1]["nll"]
            t_fr_cnf = time_to_reach(fr_best["curve"], cnf_final)
            if t_fr_cnf:
                cost += (f"; FlowRuntime passed the CNF's final {fmt(metric.nll(cnf_final))} by {fmt(t_fr_cnf, 1)} s "
                         f"→ ≥ {cnf['train'] / t_fr_cnf:.0f}× less time for the CNF's quality")
        else:
            ratio = t_cnf / t_fr
            cost = f"{'met' if ratio >= 5 else 'MISSED'}: CNF {fmt(t_cnf, 1)} s vs FlowRuntime {fmt(t_fr, 1)} s → {ratio:.1f}×"
    pt = rows.get("fm-trig")
    speed = "—"
    if pt:
        ratio = pt["lik"] / fr["lik"]
        speed = (f"{'met' if ratio >= 2 else 'MISSED'}: exact {fmt(fr['lik'], 2)} s vs PyTorch {fmt(pt['lik'], 2)} s → "
                 f"{ratio:.2f}× (NFE {fmt(fr['nfe'], 1)} vs {fmt(pt['nfe'], 1)})")
        if fr["hut_lik"] and pt["hut_lik"]:
            speed += f"; Hutchinson {fmt(fr['hut_lik'], 2)} vs {fmt(pt['hut_lik'], 2)} s → {pt['hut_lik'] / fr['hut_lik']:.2f}×"
        cnf = rows.get("cnf")
        if cnf and cnf["lik"] < pt["lik"]:
            speed += f"; zuko's CNF (own net) {fmt(cnf['lik'], 2)} s → {cnf['lik'] / fr['lik']:.2f}×"
    return dict(quality=quality, cost=cost, speed=speed)


def plots(scale_dir, datasets, data_root):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib missing: no plots")
        return []
    made = []
    # 2-D samples.
    two_d = [d for d in datasets if d in ("checkerboard", "8gaussians")]
    if two_d:
        fig, axes = plt.subplots(len(two_d), len(SYSTEMS) + 1, figsize=(2 * (len(SYSTEMS) + 1), 2 * len(two_d)),
                                 squeeze=False)
        for i, d in enumerate(two_d):
            runs = load_runs(os.path.join(scale_dir, d))
            panels = [("data (test)", np.load(os.path.join(data_root, d, "test.npy")))]
            for s in SYSTEMS:
                rs = runs.get(s)
                panels.append((s, np.load(rs[0]["samples_path"]) if rs else None))
            for j, (title, x) in enumerate(panels):
                ax = axes[i][j]
                if x is not None:
                    ax.hist2d(x[:, 0], x[:, 1], bins=100, range=[[-4.5, 4.5], [-4.5, 4.5]], cmap="magma")
                ax.set_xticks([]); ax.set_yticks([])
                if i == 0:
                    ax.set_title(title, fontsize=8)
        fig.tight_layout()
        p = os.path.join(HERE, "samples_2d.png")
        fig.savefig(p, dpi=60); plt.close(fig); made.append(p)
    # Digits samples.
    if "digits" in datasets:
        sys.path.insert(0, HERE)
        from datasets import logit_to_digits
        runs = load_runs(os.path.join(scale_dir, "digits"))
        test = np.load(os.path.join(data_root, "digits", "test.npy"))
        panels = [("data", test)] + [(s, np.load(runs[s][0]["samples_path"])) for s in SYSTEMS if s in runs]
        fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.4), squeeze=False)
        for j, (title, y) in enumerate(panels):
            img = logit_to_digits(y[:64].astype(np.float64)).reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
            axes[0][j].imshow(img, cmap="gray_r", vmin=0, vmax=17)
            axes[0][j].set_title(title, fontsize=8); axes[0][j].axis("off")
        fig.tight_layout()
        p = os.path.join(HERE, "samples_digits.png")
        fig.savefig(p, dpi=50); plt.close(fig); made.append(p)
    # NLL against training time.
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 2.8), squeeze=False)
    for j, d in enumerate(datasets):
        metric = Metric(os.path.join(data_root, d))
        runs = load_runs(os.path.join(scale_dir, d))
        ax = axes[0][j]
        for s in SYSTEMS:
            if s not in runs:
                continue
            c = runs[s][0]["curve"]
            pts = c[0]["points"]
            ax.plot([x["train_seconds"] for x in c], [metric.nll(x["nll"], pts) for x in c], "o-", ms=3, label=s)
        truth = None
        if metric.true_logp is not None and runs:
            pts = next(iter(runs.values()))[0]["curve"][0]["points"]
            truth = -metric.true_logp[:pts].mean()
            ax.axhline(truth, color="k", ls=":", lw=1, label="truth")
        ax.set_xscale("log"); ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training CPU s (1 thread)", fontsize=8)
        ax.set_title(f"{d} ({metric.meta['unit']})", fontsize=9); ax.tick_params(labelsize=7)
        vals = [metric.nll(x["nll"], x["points"]) for s in runs for x in runs[s][0]["curve"]]
        finals = [metric.nll(runs[s][0]["curve"][-1]["nll"], runs[s][0]["curve"][-1]["points"]) for s in runs]
        if vals:
            lo, hi = min(vals + ([truth] if truth is not None else [])), max(finals)
            span = max(hi - lo, 0.1)
            ax.set_ylim(lo - 0.15 * span, hi + 0.6 * span)
        if j == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    p = os.path.join(HERE, "nll_vs_time.png")
    fig.savefig(p, dpi=70); plt.close(fig); made.append(p)
    return made


def load_ratio(scale_dir, datasets):
    cpu = wall = 0.0
    for d in datasets:
        for rs in load_runs(os.path.join(scale_dir, d)).values():
            for r in rs:
                for c, w in [(r["train_seconds"], r.get("train_wall_seconds")),
                             (r["exact"]["seconds"], r["exact"].get("wall_seconds"))]:
                    if w:
                        cpu, wall = cpu + c, wall + w
    return cpu / wall if wall else float("nan")


def long_cnf_section(scale_dir, data_root):
    """The CNF again with a longer budget (out/longcnf/<dataset>-cnf.json,
    made by the command in BENCHMARKS.md), to measure when it reaches
    FlowRuntime's quality instead of bounding it."""
    folder = os.path.join(HERE, "out", "longcnf")
    if not os.path.isdir(folder):
        return []
    lines = ["### The CNF with a longer budget", "",
             "Same CNF, data, batch and tolerance as above, trained for a longer CPU budget; NLL of the first "
             "1,000 test points (the curve points) along the way, against FlowRuntime's final NLL on the same points.", "",
             "| dataset | CNF steps | CNF CPU s | CNF curve (s: NLL) | FlowRuntime (best schedule) final | CNF time to within tolerance | ratio |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted(os.listdir(folder)):
        if not f.endswith("-cnf.json"):
            continue
        d = f[:-len("-cnf.json")]
        metric = Metric(os.path.join(data_root, d))
        r = json.load(open(os.path.join(folder, f)))
        runs = load_runs(os.path.join(scale_dir, d))
        frs = [runs[s][0] for s in ("flowrt-trig", "flowrt-linear") if s in runs]
        if not frs:
            continue
        fr = min(frs, key=lambda x: x["curve"][-1]["nll"])
        target = fr["curve"][-1]["nll"]
        tol = target + (0.05 if metric.two_d else 0.02 * abs(target))
        t = time_to_reach(r["curve"], tol)
        curve = ", ".join(f"{c['train_seconds']:.0f}: {metric.nll(c['nll']):.3f}" for c in r["curve"])
        ratio = f"{t / fr['train_seconds']:.1f}×" if t else f"≥ {r['train_seconds'] / fr['train_seconds']:.1f}×"
        lines.append(f"| {d} | {r['steps']} | {r['train_seconds']:.0f} | {curve} | {fr['system']} {metric.nll(target):.3f} "
                     f"in {fr['train_seconds']:.1f} s | {f'{t:.0f} s' if t else 'not reached'} (≤ {metric.nll(tol):.3f}) | {ratio} |")
    return lines + [""]


def report(scale, scale_dir, datasets, data_root, seconds):
    import platform
    import torch
    import zuko
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"## bench/quality results ({scale} budgets)", "",
             f"`make bench-quality`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}; "
             f"torch {torch.__version__}, zuko {zuko.__version__}, Python {platform.python_version()}. "
             f"Every run uses ONE thread (torch.set_num_threads(1), FlowRuntime threads = 1, "
             f"OPENBLAS/OMP/MKL_NUM_THREADS = 1), runs one after another; OPENBLAS_CORETYPE and "
             f"OPENBLAS_L2_SIZE are unset for the runs. Wall-clock of the whole benchmark: {seconds / 60:.1f} min. "
             f"**Seconds are CPU seconds of the run's process** (one thread, so equal to wall-clock on an idle "
             f"core; the machine was shared with other work, CPU/wall ratio over all timed sections "
             f"{load_ratio(scale_dir, datasets):.2f}); the JSON files keep the wall-clock too.",
             "",
             "Continuous flows share the network (MLP on [x, t] — zuko's CNF on [x, sin/cos(k·π·t)], "
             "k = 1..3 — SiLU, same widths) and the ODE tolerance (dopri5, rtol = atol = 1e-5). "
             "FlowRuntime integrates each point with its own step size; torchdiffeq and zuko share one "
             "step size per batch of 1,000 points (10,000 for sampling), so their NFE is per batch.", ""]
    summary = ["### Summary", "",
               "Held-out NLL (nats; digits in bits/dim) and training CPU seconds; truth = exact NLL of the test "
               "points where known. Likelihood = CPU s for 10,000 test points, exact divergence.", "",
               "| dataset | truth | FlowRuntime trig | FlowRuntime linear | PyTorch same net + loss | zuko CNF (max. lik.) "
               "| zuko NSF | likelihood FlowRuntime / PyTorch |",
               "|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        metric = Metric(os.path.join(data_root, d))
        runs = load_runs(os.path.join(scale_dir, d))
        cells = []
        for system in SYSTEMS:
            rs = runs.get(system)
            if not rs:
                cells.append("—")
                continue
            nll, sd = mean_sd([metric.nll(r["exact"]["nll"]) for r in rs])
            train = mean_sd([r["train_seconds"] for r in rs])[0]
            cells.append(f"{nll:.3f}{f' ± {sd:.3f}' if sd is not None else ''} ({train:.{1 if train < 10 else 0}f} s)")
        truth = f"{-metric.true_logp.mean():.3f}" if metric.true_logp is not None else "—"
        lik = "—"
        if "flowrt-trig" in runs and "fm-trig" in runs:
            a, b = runs["flowrt-trig"][0]["exact"], runs["fm-trig"][0]["exact"]
            lik = f"{a['seconds'] * 1e4 / a['points']:.2f} / {b['seconds'] * 1e4 / b['points']:.2f} s"
        summary.append(f"| {d} | {truth} | " + " | ".join(cells) + f" | {lik} |")
    lines += summary + [""]
    all_targets = []
    for d in datasets:
        metric = Metric(os.path.join(data_root, d))
        runs = load_runs(os.path.join(scale_dir, d))
        if not runs:
            lines += [f"### {d}", "", "not run (budget)", ""]
            continue
        sec, rows = dataset_section(d, runs, metric)
        lines += sec
        t = targets(d, rows, metric)
        if t:
            all_targets.append((d, t))
    if all_targets:
        lines += ["### Targets of issue 9", "",
                  "| dataset | NLL within tolerance of the best continuous flow | training wall-clock vs the max.-likelihood CNF (≥ 5×) | likelihood of the test points vs PyTorch, same net and tolerance (≥ 2×) |",
                  "|---|---|---|---|"]
        for d, t in all_targets:
            lines.append(f"| {d} | {t['quality']} | {t['cost']} | {t['speed']} |")
        lines.append("")
    lines += long_cnf_section(scale_dir, data_root)
    made = plots(scale_dir, datasets, data_root)
    for p in made:
        lines.append(f"![{os.path.basename(p)}]({os.path.basename(p)})")
    lines.append("")
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", choices=["full", "tiny"], default="full")
    p.add_argument("--only", default="")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--force", action="store_true")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args()
    budgets = FULL if a.scale == "full" else TINY
    datasets = [d for d in budgets if not a.only or d in a.only.split(",")]
    systems = a.systems.split(",")
    data_root = os.path.join(HERE, "data")
    sys.path.insert(0, HERE)
    import datasets as ds
    if not os.path.exists(os.path.join(data_root, "breast-cancer", "meta.json")):
        ds.make_all(data_root)
    scale_dir = os.path.join(HERE, "out", a.scale)
    start = time.time()
    if not a.report_only:
        plan = []
        for phase in PHASES:
            plan += [(d, s, 0) for d in datasets for s in phase if s in systems]
        plan += [(d, s, seed) for d in datasets for s in systems
                 for seed in budgets[d].get("seeds", {}).get(s, []) if seed != 0]
        for d, system, seed in plan:
            out_dir = os.path.join(scale_dir, d)
            os.makedirs(out_dir, exist_ok=True)
            run_one(system, seed, os.path.join(data_root, d), out_dir, budgets[d], a.force)
    duration_file = os.path.join(scale_dir, "duration.json")
    if not a.report_only:
        json.dump({"seconds": time.time() - start}, open(duration_file, "w"))
    seconds = json.load(open(duration_file))["seconds"] if os.path.exists(duration_file) else float("nan")
    report(a.scale, scale_dir, list(budgets), data_root, seconds)


if __name__ == "__main__":
    main()
