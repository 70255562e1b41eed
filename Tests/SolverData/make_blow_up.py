"""A velocity that blows up in finite time, for the step-underflow tests
(issue 16): v(t, x) = x² + 1 + 0 · t, 1-D, inputs x [batch, 1] and
t [batch, 1]. Its ODE solution x(t) = tan(t + atan x0) reaches infinity at
t* = π/2 − atan x0, inside [0, 1] for x0 > tan(π/2 − 1) ≈ 0.642. Toward t*
the steps an adaptive solver can take shrink like t* − t, so they underflow
(below 1e-14) while x is about 1e13 to 1e14, far from float overflow; a
sample with x0 ≤ 0.642 reaches t = 1. The times of x0 = 1: t* = π/4.

    .venv/bin/python Tests/SolverData/make_blow_up.py Tests/SolverData
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(out_dir: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 1])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 1])
    constants = [numpy_helper.from_array(np.array([[1.0]], np.float32), "one"),
                 numpy_helper.from_array(np.array([[0.0]], np.float32), "zero")]
    nodes = [helper.make_node("Mul", ["x", "x"], ["square"]),
             helper.make_node("Mul", ["t", "zero"], ["still"]),
             helper.make_node("Add", ["square", "one"], ["rate"]),
             helper.make_node("Add", ["rate", "still"], ["v"])]
    graph = helper.make_graph(nodes, "tangent_blow_up", [x, t], [v], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_dir / "blow_up.onnx"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
