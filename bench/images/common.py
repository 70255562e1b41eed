"""bench/images: shared pieces — the fixtures, the FLOP counter, the timer.

FLOPs per sample are counted from the ONNX file itself: 2 × multiply-adds of
every Conv, Gemm, MatMul and two-operand Einsum node (torchcfm's attention is
spelled as Einsum `bct,bcs->bts` / `bts,bcs->bct`), with the shapes those nodes
see at batch 1. The shapes come from one onnxruntime run of the file (graph
optimisations off) with every counted node's inputs and outputs added as graph
outputs, so Reshape/Shape arithmetic needs no symbolic inference. Bias
additions, norms, activations, softmax and element-wise ops are not counted.
"""
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = ROOT / "Tests" / "ONNXData" / "images"
EXPORT = "dynamo__opdefault"  # torch's default exporter, ai.onnx opset 20
MODELS = {  # case: x shape without the batch axis
    "tcfm_unet": (1, 28, 28),
    "diffusers_unet": (3, 32, 32),
    "dit": (1, 28, 28),
}
BATCHES = (1, 16, 64)
COUNTED = ("Conv", "Gemm", "MatMul", "Einsum")


def fixture(case):
    return FIXTURE_DIR / f"{case}__{EXPORT}.onnx"


def inputs(case, batch, seed=0):
    rng = np.random.default_rng(seed + batch)
    x = rng.standard_normal((batch, *MODELS[case])).astype(np.float32)
    t = rng.uniform(size=batch)
    return t, x


def _node_flops(n, shape):
    if n.op_type == "Conv":
        w, y = shape(n.input[1]), shape(n.output[0])
        # per output element: (C_in / group) × kernel multiply-adds; w is [C_out, C_in/group, k...]
        assert y[1] == w[0], (n.name, w, y)
        return 2 * int(np.prod(y)) * int(np.prod(w[1:]))
    if n.op_type == "Gemm":
        a = shape(n.input[0])
        y = shape(n.output[0])
        trans_a = next((a_.i for a_ in n.attribute if a_.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return 2 * int(np.prod(y)) * k
    if n.op_type == "MatMul":
        a, y = shape(n.input[0]), shape(n.output[0])
        return 2 * int(np.prod(y)) * a[-1]
    if n.op_type == "Einsum" and len(n.input) == 2:
        eq = next(a.s.decode() for a in n.attribute if a.name == "equation")
        lhs = eq.split("->")[0].split(",")
        sizes = {}
        for term, name in zip(lhs, n.input):
            for letter, size in zip(term.strip(), shape(name)):
                sizes[letter] = size
        return 2 * int(np.prod(list(sizes.values())))
    return 0


def flops_per_sample(path):
    """{op_type: FLOPs at batch 1} for the counted op types, plus 'total'."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: tuple(i.dims) for i in m.graph.initializer}
    consts = {}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t).shape
    nodes = [n for n in m.graph.node if n.op_type in COUNTED]
    wanted = []
    known = set(init) | set(consts) | {o.name for o in m.graph.output}
    for n in nodes:
        for name in list(n.input) + list(n.output):
            if name and name not in known and name not in wanted:
                wanted.append(name)
    m.graph.output.extend([onnx.ValueInfoProto(name=name) for name in wanted])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    case = Path(path).name.split("__")[0]
    t, x = inputs(case, 1)
    feeds = {"t": t.astype(np.float32), "x": x}
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, feeds)))
    shapes = {k: v.shape for k, v in values.items()}
    shapes.update(init)
    shapes.update(consts)
    out = {op: 0 for op in COUNTED}
    for n in nodes:
        out[n.op_type] += _node_flops(n, lambda name: tuple(shapes[name]))
    out["total"] = sum(out[op] for op in COUNTED)
    return out


def best_time(call, budget=1.0, min_reps=3, max_reps=200, warmup=1):
    """Minimum wall time and minimum process CPU time of single calls: `warmup`
    calls, then at least `min_reps` timed calls and more until `budget` seconds
    have been spent (or `max_reps`). On a shared machine the CPU time of a
    1-thread call is what the call cost when it was descheduled part of the time
    (it still pays for caches the other jobs evict)."""
    for _ in range(warmup):
        call()
    best, best_cpu, spent, reps = float("inf"), float("inf"), 0.0, 0
    while reps < min_reps or (spent < budget and reps < max_reps):
        c0, t0 = time.process_time(), time.perf_counter()
        call()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best, best_cpu, spent, reps = min(best, dt), min(best_cpu, dc), spent + dt, reps + 1
    return best, best_cpu, reps
