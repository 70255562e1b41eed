"""bench/images worker: times one system at one thread count on the three
unconditional image fixtures (dynamo__opdefault exports) at batch 1, 16, 64
and prints one JSON line per (model, batch).

    bench_images.py flowrt|onnxruntime|torch THREADS [--budget SECONDS]

One process per (system, threads), so no idle thread pool of another system
spins beside the one being timed, and FlowRuntime's thread count, which
libflowrt reads once per process from FLOWRT_NUM_THREADS (the Python
binding's Model.velocity has no threads argument), is the one asked for.

Each process first checks its output at batch 3 against the PyTorch
reference stored in the fixture's .json (max |diff| is reported), so every
system is shown to run the same network.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BATCHES, MODELS, best_time, fixture, inputs  # noqa: E402


def reference(case):
    ref = json.loads(fixture(case).with_suffix(".json").read_text())
    c = next(c for c in ref["cases"] if c["batch"] == 3)
    ins = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in c["inputs"]}
    out = np.asarray(c["outputs"][0]["data"], np.float32).reshape(c["outputs"][0]["shape"])
    return ins["t"].astype(np.float64), ins["x"], out


class FlowRT:
    def __init__(self, threads):
        import flowrt
        assert os.environ.get("FLOWRT_NUM_THREADS") == str(threads), "run.sh sets FLOWRT_NUM_THREADS"
        self.flowrt = flowrt
        self.version = f"FlowRuntime {flowrt.__version__}"
        self.how = "Python binding, Model.velocity"

    def prepare(self, case):
        self.model = self.flowrt.Model.load(fixture(case))

    def call(self, t, x):
        xf = np.ascontiguousarray(x.reshape(x.shape[0], -1))
        tt = np.ascontiguousarray(t, np.float64)
        return lambda: self.model.velocity(tt, xf)

    def output(self, t, x):
        return self.call(t, x)().reshape(x.shape)


class ORT:
    def __init__(self, threads):
        import onnxruntime as ort
        self.ort = ort
        self.threads = threads
        self.version = f"onnxruntime {ort.__version__}"

    def prepare(self, case):
        ort = self.ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(str(fixture(case)), so, providers=["CPUExecutionProvider"])

    def calls(self, t, x):
        ort, sess = self.ort, self.sess
        feeds = {"t": t.astype(np.float32), "x": x}
        binding = sess.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        binding.bind_ortvalue_output("v", ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), np.float32))
        return {"run": lambda: sess.run(None, feeds), "IOBinding": lambda: sess.run_with_iobinding(binding)}

    def output(self, t, x):
        return self.sess.run(None, {"t": t.astype(np.float32), "x": x})[0]


class Torch:
    def __init__(self, threads):
        import importlib.util

        import torch
        spec = importlib.util.spec_from_file_location("make_image_fixtures", fixture("dit").parent / "make_image_fixtures.py")
        self.fixtures = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.fixtures)  # sets torch to 1 thread on import
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        assert torch.get_num_threads() == threads
        self.torch = torch
        self.version = f"PyTorch {torch.__version__}"
        self.how = "eager, inference_mode"

    def prepare(self, case):
        # The fixture script's own recipe: seed, build, eval, perturb the 0/1 parameters.
        f = self.fixtures
        self.torch.manual_seed(f.WEIGHT_SEED)
        self.model = f.CASES[case][1]().eval()
        f.perturb_trivial_parameters(self.model)

    def call(self, t, x):
        tt, xx, model, torch = self.torch.from_numpy(t.astype(np.float32)), self.torch.from_numpy(x), self.model, self.torch

        def run():
            with torch.inference_mode():
                return model(tt, xx)
        return run

    def output(self, t, x):
        return self.call(t, x)().numpy()


SYSTEMS = {"flowrt": FlowRT, "onnxruntime": ORT, "torch": Torch}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=SYSTEMS)
    ap.add_argument("threads", type=int)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per measurement (min 3 calls)")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    load = float(open("/proc/loadavg").read().split()[0])
    sysobj = SYSTEMS[args.system](args.threads)
    for case in args.models.split(","):
        sysobj.prepare(case)
        t3, x3, ref = reference(case)
        err = float(np.max(np.abs(sysobj.output(t3, x3) - ref)))
        scale = float(np.max(np.abs(ref)))
        for b in BATCHES:
            t, x = inputs(case, b)
            if args.system == "onnxruntime":
                best, cpu, how, reps = float("inf"), float("inf"), None, 0
                for name, call in sysobj.calls(t, x).items():
                    dt, dc, n = best_time(call, budget=args.budget / 2)
                    reps, cpu = reps + n, min(cpu, dc)
                    if dt < best:
                        best, how = dt, name
                how = f"Python, best of run/IOBinding: {how}"
            else:
                best, cpu, reps = best_time(sysobj.call(t, x), budget=args.budget)
                how = sysobj.how
            print(json.dumps({"system": args.system, "version": sysobj.version, "how": how, "threads": args.threads,
                              "model": case, "batch": b, "seconds": best, "cpu_seconds": cpu, "reps": reps,
                              "max_abs_err_vs_torch_ref": err, "max_abs_ref": scale,
                              "load1_at_start": load, "time": time.strftime("%H:%M:%S", time.gmtime())}), flush=True)


if __name__ == "__main__":
    main()
