"""bench/images/scaling.py — 2-thread speed-up of the image networks with
1- and 2-thread calls interleaved in ONE process (1t, 2t, 1t, 2t, ...),
best of N each, so that a neighbour's burst hits both alike. bench/images'
run.sh measures each thread count in its own process, minutes apart; on a
shared machine its speed-up figures move by ±0.1 between runs.

FlowRuntime: `Flow.transport` with one RK4 step (four velocity evaluations
of the whole batch in the solver's chunks: a U-Net at batch 64 in 16
chunks of 4, without the narrower last chunks of a batched velocity call,
`Model.TaperedChunks`, since solver chunks never depend on the thread
count), `threads=` per call. onnxruntime:
two sessions on the same file, intra_op_num_threads 1 and 2 (for
comparison: the same machine's scaling of another engine).

    OPENBLAS_NUM_THREADS=1 python bench/images/scaling.py \
        [--models tcfm_unet,diffusers_unet,dit] [--batch 64] [--rounds 6]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MODELS, fixture, inputs  # noqa: E402


def best_of(calls, rounds, budget):
    """Best wall time of each call, the calls interleaved round by round."""
    best = {k: float("inf") for k in calls}
    for _ in range(rounds):
        for k, f in calls.items():
            end = time.perf_counter() + budget
            n = 0
            while n < 1 or time.perf_counter() < end:
                s = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - s)
                n += 1
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per call kind per round")
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args()
    import flowrt
    print(f"load {open('/proc/loadavg').read().split()[0]}, batch {args.batch}", flush=True)
    for case in args.models.split(","):
        flow = flowrt.Flow(flowrt.Model.load(fixture(case)))
        t, x = inputs(case, args.batch)
        xf = np.ascontiguousarray(x.reshape(args.batch, -1))
        calls = {f"fr{th}": (lambda th=th: flow.transport(xf, 0.0, 1.0, method="rk4", steps=1, threads=th))
                 for th in (1, 2)}
        one, two = calls["fr1"](), calls["fr2"]()
        assert np.array_equal(one, two), "thread counts gave different transports"
        if not args.no_ort:
            import onnxruntime as ort
            feeds = {"t": t.astype(np.float32), "x": x}
            for th in (1, 2):
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = th, 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                sess = ort.InferenceSession(str(fixture(case)), so, providers=["CPUExecutionProvider"])
                calls[f"ort{th}"] = (lambda sess=sess: sess.run(None, feeds))
        best = best_of(calls, args.rounds, args.budget)
        line = (f"{case:15s} FR transport (4 evaluations): 1t {best['fr1']*1e3:8.1f} ms, 2t {best['fr2']*1e3:8.1f} ms,"
                f" speed-up {best['fr1']/best['fr2']:4.2f}")
        if not args.no_ort:
            line += (f" | ORT velocity: 1t {best['ort1']*1e3:7.1f} ms, 2t {best['ort2']*1e3:7.1f} ms,"
                     f" speed-up {best['ort1']/best['ort2']:4.2f}")
        print(line, flush=True)
    print(f"load {open('/proc/loadavg').read().split()[0]}", flush=True)


if __name__ == "__main__":
    main()
