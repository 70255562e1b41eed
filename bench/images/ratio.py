"""bench/images/ratio.py — a narrow side-by-side check: FlowRuntime and
onnxruntime (best of run / IOBinding) on one thread in ONE process, calls
interleaved (FR, ORT, FR, ORT, ...), best of N each, so machine load hits
both alike. Prints FR/ORT time ratios per (model, batch): of wall-clock
time and of the calling thread's CPU time (both systems run a one-thread
call on the calling thread), which on a loaded machine leaves out the time
the call spent preempted (a call longer than a scheduler time slice is
almost never timed whole otherwise).

    FLOWRT_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/images/ratio.py \
        [--models tcfm_unet,diffusers_unet,dit] [--batches 1,16] [--rounds 5]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MODELS, fixture, inputs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.25, help="seconds per system per round")
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args()
    threads = int(os.environ.get("FLOWRT_NUM_THREADS", "1"))
    import flowrt
    import onnxruntime as ort
    print(f"load {open('/proc/loadavg').read().split()[0]}, threads {threads}", flush=True)
    for case in args.models.split(","):
        model = flowrt.Model.load(fixture(case))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(str(fixture(case)), so, providers=["CPUExecutionProvider"])
        for b in [int(s) for s in args.batches.split(",")]:
            t, x = inputs(case, b)
            xf = np.ascontiguousarray(x.reshape(b, -1))
            tt = np.ascontiguousarray(t, np.float64)
            feeds = {"t": t.astype(np.float32), "x": x}
            binding = sess.io_binding()
            for name, value in feeds.items():
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
            binding.bind_ortvalue_output("v", ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), np.float32))
            v_fr = model.velocity(tt, xf).reshape(x.shape)
            v_ort = sess.run(None, feeds)[0]
            err = float(np.max(np.abs(v_fr - v_ort)) / max(1e-30, float(np.max(np.abs(v_ort)))))
            calls = {"fr": lambda: model.velocity(tt, xf), "ort": lambda: sess.run_with_iobinding(binding),
                     "ort_run": lambda: sess.run(None, feeds)}
            if args.no_ort:
                calls = {"fr": calls["fr"]}
            best = {k: float("inf") for k in calls}
            cpu = {k: float("inf") for k in calls}
            for _ in range(args.rounds):
                for k, f in calls.items():
                    end = time.perf_counter() + args.budget
                    n = 0
                    while n < 2 or time.perf_counter() < end:
                        s, c = time.perf_counter(), time.thread_time()
                        f()
                        cpu[k] = min(cpu[k], time.thread_time() - c)
                        best[k] = min(best[k], time.perf_counter() - s)
                        n += 1
            o = min(best.get("ort", 1e30), best.get("ort_run", 1e30))
            oc = min(cpu.get("ort", 1e30), cpu.get("ort_run", 1e30))
            print(f"{case:15s} b={b:3d}  wall: FR {best['fr']*1e3:8.3f} ORT {o*1e3:8.3f} ms FR/ORT {best['fr']/o:5.3f}"
                  f"   cpu: FR {cpu['fr']*1e3:8.3f} ORT {oc*1e3:8.3f} ms FR/ORT {cpu['fr']/oc:5.3f}"
                  f"  rel.err {err:.1e}", flush=True)
    print(f"load {open('/proc/loadavg').read().split()[0]}", flush=True)


if __name__ == "__main__":
    main()
