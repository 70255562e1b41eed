"""A conditional MLP velocity v(t, x, context) exported from PyTorch, with
PyTorch's outputs, for FlowRuntime's conditional ONNX import tests (issue 15).

    bench/.venv/bin/python Tests/ONNXData/conditional/make_conditional_fixtures.py

(bench/.venv plus onnxscript for the dynamo exporter; README.md beside this
file.) Writes, for each exporter, cmlp__<exporter>__<opset>.onnx and .json:
the legacy TorchScript exporter at opset 17 and the dynamo exporter at its
default opset. Inputs named t [batch], x [batch, 3], context [batch, 4], in
that order (not FlowRuntime's x, t), with a dynamic batch. Every .json case
(batch 1, 5, 7) has a different context per row.

The network: sinusoidal time features [sin(2π f t), cos(2π f t)], f = 1, 2, 4;
a context encoder Linear(4, 16) + SiLU; then [x, time features, encoded
context] → 64 → 64 → 3 with SiLU. Weights: torch.manual_seed(0), PyTorch's
default initialisation; then every bias gets randn · 0.1 (generator seed
4321), so that a runtime ignoring a bias cannot match.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

D, M, WIDTH = 3, 4, 64
FREQUENCIES = (1.0, 2.0, 4.0)
TOLERANCE = 1e-4  # relative to max |output|
EXPORTS = [("legacy", 17), ("dynamo", None)]
BATCHES = (1, 5, 7)


class ConditionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("freq", 2 * math.pi * torch.tensor(FREQUENCIES))
        self.context_encoder = nn.Sequential(nn.Linear(M, 16), nn.SiLU())
        self.net = nn.Sequential(nn.Linear(D + 2 * len(FREQUENCIES) + 16, WIDTH), nn.SiLU(),
                                 nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, D))

    def forward(self, t, x, context):
        angles = t[:, None] * self.freq[None, :]
        h = torch.cat([x, torch.sin(angles), torch.cos(angles), self.context_encoder(context)], dim=1)
        return self.net(h)


def build() -> ConditionalMLP:
    torch.manual_seed(0)
    model = ConditionalMLP().eval()
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def inputs(batch: int, g: torch.Generator):
    return (torch.rand(batch, generator=g), torch.randn(batch, D, generator=g),
            torch.randn(batch, M, generator=g) * 2.0)


def tensor_json(name, a):
    return {"name": name, "shape": list(a.shape), "dtype": "float32",
            "data": [float(f"{v:.9g}") for v in a.reshape(-1).tolist()]}


def export(model, args, path: Path, exporter: str, opset):
    names = ["t", "x", "context"]
    if exporter == "legacy":
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=["v"], dynamic_axes={n: {0: "batch"} for n in names + ["v"]})
    else:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=["v"],
                                    dynamic_shapes=tuple({0: batch} for _ in args))
        program.save(str(path), external_data=False)
    import onnx
    m = onnx.load(str(path))
    for node in m.graph.node:  # exporter stack traces would make the file differ per checkout path
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(m, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()
    return {o.domain or "ai.onnx": o.version for o in m.opset_import}.get("ai.onnx")


def main(out: Path):
    model = build()
    g = torch.Generator().manual_seed(1234)
    cases = []
    for b in BATCHES:
        t, x, c = inputs(b, g)
        with torch.no_grad():
            v = model(t, x, c)
        cases.append({"batch": b, "inputs": [tensor_json("t", t), tensor_json("x", x), tensor_json("context", c)],
                      "outputs": [tensor_json("v", v)]})
    for exporter, opset in EXPORTS:
        name = f"cmlp__{exporter}__{'op%d' % opset if opset else 'opdefault'}"
        got = export(model, inputs(5, torch.Generator().manual_seed(99)), out / f"{name}.onnx", exporter, opset)
        ref = {"file": f"{name}.onnx", "exporter": exporter, "opset_requested": opset, "opset": got,
               "torch_version": torch.__version__, "dimension": D, "context_dim": M,
               "cases": cases, "tolerance": TOLERANCE}
        (out / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(f"{name}: opset {got}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
