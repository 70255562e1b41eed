"""onnxruntime on the same ONNX file as bench_onnx.c, one thread, best of 5.
Usage: ort_peer.py file.onnx  → prints the FLOPs per sample on the first line
(`flops N`, from the file's Gemm/MatMul weights), then Markdown rows."""
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

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
        sess.run(None, feeds)
        iters = 1 + int(4e8 / (flops * b + 2e5))
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(iters):
                sess.run(None, feeds)
            best = min(best, (time.perf_counter() - t0) / iters)
        print(f"| onnxruntime {ort.__version__} (Python) | {b} | {best * 1e6:.2f} | {flops * b / best / 1e9:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
