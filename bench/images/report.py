"""bench/images: turns the workers' JSON lines into Markdown tables.

    report.py flops.json run1.jsonl [run2.jsonl ...]   → Markdown on stdout

Per run: ms per call and GFLOP/s for each system, the time ratios
FlowRuntime / onnxruntime and FlowRuntime / PyTorch (< 1: FlowRuntime is
faster), and each system's 2-thread speed-up (time at 1 thread / time at 2).
"""
import json
import sys

SYSTEMS = ("flowrt", "onnxruntime", "torch")
LABEL = {"flowrt": "FlowRuntime", "onnxruntime": "onnxruntime", "torch": "PyTorch"}


def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    return {(r["system"], r["model"], r["batch"], r["threads"]): r for r in rows}


def fmt_ms(s):
    return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.0f}"


def best_of(runs):
    """Per (system, model, batch, threads): the run with the smallest time."""
    best = {}
    for rows in runs:
        for k, r in rows.items():
            if k not in best or r["seconds"] < best[k]["seconds"]:
                best[k] = r
    return best


def loads(rows):
    seen = {}
    for (s, _, _, th), r in rows.items():
        seen.setdefault((s, th), r.get("load1_at_start"))
    return ", ".join(f"{LABEL[s]} {th}T {v}" for (s, th), v in sorted(seen.items(), key=lambda kv: (kv[0][1], SYSTEMS.index(kv[0][0]))))


def table(rows, flops, run_name):
    models = list(dict.fromkeys(k[1] for k in rows))
    batches = sorted({k[2] for k in rows})
    threads = sorted({k[3] for k in rows})
    out = [f"#### {run_name}", "",
           "| model | threads | batch | FlowRuntime ms | onnxruntime ms | PyTorch ms | FlowRuntime GFLOP/s "
           "| onnxruntime GFLOP/s | PyTorch GFLOP/s | FR / ORT | FR / PyTorch |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        for th in threads:
            for b in batches:
                r = {s: rows.get((s, m, b, th)) for s in SYSTEMS}
                ms = [fmt_ms(r[s]["seconds"]) if r[s] else "—" for s in SYSTEMS]
                gf = [f"{flops[m]['total'] * b / r[s]['seconds'] / 1e9:.1f}" if r[s] else "—" for s in SYSTEMS]
                fr = r["flowrt"]["seconds"] if r["flowrt"] else None
                ratio = [f"{fr / r[s]['seconds']:.2f}" if fr and r[s] else "—" for s in ("onnxruntime", "torch")]
                out.append(f"| {m} | {th} | {b} | " + " | ".join(ms + gf + ratio) + " |")
    out += ["", f"2-thread speed-up (time at 1 thread / time at 2 threads), {run_name.lower()}:", "",
            "| model | batch | FlowRuntime | onnxruntime | PyTorch |", "|---|---:|---:|---:|---:|"]
    for m in models:
        for b in batches:
            cells = []
            for s in SYSTEMS:
                r1, r2 = rows.get((s, m, b, 1)), rows.get((s, m, b, 2))
                cells.append(f"{r1['seconds'] / r2['seconds']:.2f}" if r1 and r2 else "—")
            out.append(f"| {m} | {b} | " + " | ".join(cells) + " |")
    return out


def cpu_table(rows, flops, title):
    """1 thread only: minimum process CPU time per call (robust to being descheduled)."""
    out = [f"#### {title}", "",
           "| model | batch | FlowRuntime CPU ms | onnxruntime CPU ms | PyTorch CPU ms | FlowRuntime GFLOP/s (CPU) "
           "| FR / ORT (CPU) | FR / PyTorch (CPU) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    models = list(dict.fromkeys(k[1] for k in rows))
    for m in models:
        for b in sorted({k[2] for k in rows}):
            r = {s: rows.get((s, m, b, 1)) for s in SYSTEMS}
            if not all(r.values()) or any("cpu_seconds" not in v for v in r.values()):
                continue
            c = {s: r[s]["cpu_seconds"] for s in SYSTEMS}
            out.append(f"| {m} | {b} | " + " | ".join(fmt_ms(c[s]) for s in SYSTEMS)
                       + f" | {flops[m]['total'] * b / c['flowrt'] / 1e9:.1f} | {c['flowrt'] / c['onnxruntime']:.2f}"
                       f" | {c['flowrt'] / c['torch']:.2f} |")
    return out


def best_cpu_of(runs):
    best = {}
    for rows in runs:
        for k, r in rows.items():
            if "cpu_seconds" in r and (k not in best or r["cpu_seconds"] < best[k]["cpu_seconds"]):
                best[k] = r
    return best


def main(flops_path, *runs):
    flops = json.load(open(flops_path))
    loaded = [load(p) for p in runs]
    lines = []
    if len(loaded) > 1:
        lines += table(best_of(loaded), flops, f"Best of the {len(loaded)} runs (per cell, the faster run)") + [""]
    lines += cpu_table(best_cpu_of(loaded), flops, f"1 thread, process CPU time per call (minimum over calls and runs)") + [
        "", "(CPU time leaves out the time a call spent descheduled by other jobs, so on this shared machine these "
        "1-thread ratios are the steadier comparison; at 1 thread each system computes on the calling thread only.)", ""]
    for i, rows in enumerate(loaded, 1):
        lines += table(rows, flops, f"Run {i}") + ["", f"1-minute load average when each process started, run {i}: {loads(rows)}.", ""]
    # how each system was called, and the correctness check done in each worker
    first = load(runs[0])
    lines += ["How each system was called, and each worker's max |output − PyTorch reference| at batch 3 "
              "(fixture .json, tolerance 1e-4 × max|v|):", ""]
    seen = set()
    for (s, m, b, th), r in sorted(first.items()):
        key = (s, m)
        if key in seen:
            continue
        seen.add(key)
        hows = sorted({x["how"] for (s2, m2, _, _), x in first.items() if (s2, m2) == key})
        lines.append(f"- {r['version']}, {m}: max |diff| {r['max_abs_err_vs_torch_ref']:.2e} "
                     f"(max |v| {r['max_abs_ref']:.3g}); {'; '.join(hows)}")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
