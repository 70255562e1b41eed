"""onnxruntime on the same ONNX file as bench_onnx.c, one thread, best of 5.
Usage: ort_peer.py file.onnx  → prints the FLOPs per sample on the first line
(`flops N`, from the file's Gemm/MatMul weights), then Markdown rows.

Each batch is timed through `run` and through `run_with_iobinding` (inputs
and output bound once as OrtValues, the lowest-overhead Python path) and the
faster is reported, so the peer's Python overhead is as small as Python
allows; the last row times an Identity model, the per-call floor of that path."""
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BATCHES = [1, 16, 256, 1024, 4096]


def flops_per_sample(path):
    m = onnx.load(path)
    shapes = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type in ("Gemm", "MatMul") and n.input[1] in shapes and len(shapes[n.input[1]]) == 2:
            a, b = shapes[n.input[1]]
            total += 2 * a * b
    return total


def main(path):
    flops = flops_per_sample(path)
    print(f"flops {flops}", flush=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    for b in BATCHES:
        feeds = {}
        for i in inputs:
            shape = [b if not isinstance(s, int) else s for s in i.shape]
            feeds[i.name] = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        binding = sess.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        out = sess.get_outputs()[0]
        out_shape = [b if not isinstance(s, int) else s for s in out.shape]
        binding.bind_ortvalue_output(out.name, ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32))
        calls = {"run": lambda: sess.run(None, feeds), "IOBinding": lambda: sess.run_with_iobinding(binding)}
        iters = 1 + int(4e8 / (flops * b + 2e5))
        best, how = float("inf"), None
        for name, call in calls.items():
            call()
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(iters):
                    call()
                dt = (time.perf_counter() - t0) / iters
                if dt < best:
                    best, how = dt, name
        print(f"| onnxruntime {ort.__version__} (Python, {how}) | {b} | {best * 1e6:.2f} | {flops * b / best / 1e9:.1f} |",
              flush=True)
    print(f"| onnxruntime {ort.__version__}: Identity model, IOBinding (per-call floor) | 16 | {identity_floor(so):.2f} | |")


def identity_floor(so):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(np.zeros((16, 2), np.float32)))
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_shape_and_type([16, 2], np.float32))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20000):
            sess.run_with_iobinding(binding)
        best = min(best, (time.perf_counter() - t0) / 20000)
    return best * 1e6


if __name__ == "__main__":
    main(sys.argv[1])
