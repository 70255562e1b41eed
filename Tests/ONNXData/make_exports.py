"""Small PyTorch exports beyond the shared fixtures (other widths, activations,
t shapes, opsets) with their reference outputs, for the ONNX import tests.

    bench/.venv/bin/python Tests/ONNXData/make_exports.py Tests/ONNXData

Legacy exporter (dynamo=False; the dynamo exporter needs onnxscript). Each
<name>.onnx gets <name>.json in the fixtures' format: inputs (name, shape,
flat data), PyTorch's output at batch 5, tolerance.
"""
import json
import sys
from pathlib import Path

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, d, width, act, t_shape, layer_norm=False, bias=True):
        super().__init__()
        self.t_shape = t_shape
        layers = [nn.Linear(d + 1, width, bias=bias), act]
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers += [nn.Linear(width, width, bias=bias), act, nn.Linear(width, d)]
        self.net = nn.Sequential(*layers)

    def forward(self, x, t):
        if self.t_shape == "scalar":
            t = t.reshape(1, 1).expand(x.shape[0], 1)
        elif self.t_shape == "1d":
            t = t.unsqueeze(-1)
        h = torch.cat([x, t], dim=-1)
        return self.net(h)


CASES = {
    "w64_elu_t1d_op17": dict(d=3, width=64, act=nn.ELU(alpha=0.7), t_shape="1d", opset=17),
    "w48_leakyrelu_tscalar_op13": dict(d=4, width=48, act=nn.LeakyReLU(0.2), t_shape="scalar", opset=13),
    "w32_selu_op11": dict(d=2, width=32, act=nn.SELU(), t_shape="col", opset=11),
    "w32_gelu_tanh_op17": dict(d=2, width=32, act=nn.GELU(approximate="tanh"), t_shape="col", opset=17),
    "w32_gelu_tanh_op20": dict(d=2, width=32, act=nn.GELU(approximate="tanh"), t_shape="col", opset=20),
    "w32_softplus_beta2_op17": dict(d=2, width=32, act=nn.Softplus(beta=2.0, threshold=10.0), t_shape="col", opset=17),
    "w40_layernorm_op13": dict(d=5, width=40, act=nn.SiLU(), t_shape="col", opset=13, layer_norm=True),
    "w24_nobias_tanh_op17": dict(d=2, width=24, act=nn.Tanh(), t_shape="col", opset=17, bias=False),
}


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    for name, c in CASES.items():
        torch.manual_seed(0)
        net = Net(c["d"], c["width"], c["act"], c["t_shape"], c.get("layer_norm", False), c.get("bias", True)).eval()
        gen = torch.Generator().manual_seed(1234)
        b = 5
        x = torch.randn(b, c["d"], generator=gen)
        t = {"scalar": torch.rand((), generator=gen), "1d": torch.rand(b, generator=gen),
             "col": torch.rand(b, 1, generator=gen)}[c["t_shape"]]
        with torch.no_grad():
            v = net(x, t)
        dynamic = {"x": {0: "batch"}, "v": {0: "batch"}}
        if c["t_shape"] != "scalar":
            dynamic["t"] = {0: "batch"}
        torch.onnx.export(net, (x, t), str(out / f"{name}.onnx"), input_names=["x", "t"], output_names=["v"],
                          dynamic_axes=dynamic, opset_version=c["opset"], dynamo=False)
        ref = {"file": f"{name}.onnx", "torch_version": torch.__version__, "opset_requested": c["opset"],
               "inputs": [{"name": "x", "shape": list(x.shape), "dtype": "float32", "data": x.flatten().tolist()},
                          {"name": "t", "shape": list(t.shape), "dtype": "float32", "data": t.flatten().tolist()}],
               "outputs": [{"name": "v", "shape": list(v.shape), "dtype": "float32", "data": v.flatten().tolist()}],
               "tolerance": 1e-5}
        (out / f"{name}.json").write_text(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
