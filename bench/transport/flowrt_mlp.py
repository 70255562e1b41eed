"""The weights of FlowRuntime's native `VelocityMLP(seed:)` reproduced in
numpy, so PyTorch runs the very network FlowRuntime runs.

VelocityMLP draws layer l's weights then biases from RandomStream(seed,
purpose .initialization = 1, index l): Philox-4x32-10 blocks keyed by the
seed with counter (c, stream, index_lo, index_hi), words taken in order,
two words per uniform u = ((w0 >> 5) << 26 | (w1 >> 6) + 0.5) * 2^-53, and
each value (2u - 1) / sqrt(fan_in) rounded to float32 (PyTorch's default
Linear initialisation). `check` compares with the library's own velocity.
"""
import ctypes

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)


def philox_words(seed, stream, index, count):
    """The first `count` 32-bit words of RandomStream(seed, stream, index)."""
    blocks = (count + 3) // 4
    x0 = np.arange(blocks, dtype=np.uint64)
    x1 = np.full(blocks, stream, dtype=np.uint64)
    x2 = np.full(blocks, index & 0xFFFFFFFF, dtype=np.uint64)
    x3 = np.full(blocks, index >> 32, dtype=np.uint64)
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0 = M0 * x0
        p1 = M1 * x2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK
        x0, x1, x2, x3 = hi1 ^ x1 ^ np.uint64(k0), lo1, hi0 ^ x3 ^ np.uint64(k1), lo0
        k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
    return np.stack([x0, x1, x2, x3], axis=1).reshape(-1)[:count]


def mlp_layers(dim, width, depth, seed):
    """[(weight [out, in], bias [out])] of VelocityMLP(dim, [width]*depth, concat time)."""
    sizes = [dim + 1] + [width] * depth + [dim]
    layers = []
    for l in range(depth + 1):
        fan_in, out = sizes[l], sizes[l + 1]
        n = out * fan_in + out
        w = philox_words(seed, 1, l, 2 * n)
        u53 = ((w[0::2] >> np.uint64(5)) << np.uint64(26)) | (w[1::2] >> np.uint64(6))
        u = (u53.astype(np.float64) + 0.5) * 2.0 ** -53
        v = ((2 * u - 1) / np.sqrt(fan_in)).astype(np.float32)
        layers.append((v[:out * fan_in].reshape(out, fan_in), v[out * fan_in:]))
    return layers


def torch_mlp(dim, width, depth, seed):
    """A torch.nn.Module v(t, x) with VelocityMLP's weights (SiLU, [x, t] input)."""
    import torch

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList()
            for w, b in mlp_layers(dim, width, depth, seed):
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(w))
                    lin.bias.copy_(torch.from_numpy(b))
                self.layers.append(lin)

        def forward(self, t, x):
            t = t.reshape(-1, 1).expand(x.shape[0], 1) if t.dim() <= 1 else t
            h = torch.cat([x, t.to(x.dtype)], dim=1)
            for lin in self.layers[:-1]:
                h = torch.nn.functional.silu(lin(h))
            return self.layers[-1](h)

    return MLP()


def torch_mlp_from_onnx(path):
    """The same torch module with the weights of an MLP FlowRuntime exported
    to ONNX (Concat[x, t] -> Gemm(transB=1) -> SiLU ... -> Gemm)."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(path)
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    d = init[gemms[-1].input[1]].shape[0]
    net = torch_mlp(d, init[gemms[0].input[1]].shape[0], len(gemms) - 1, 0)
    with torch.no_grad():
        for lin, node in zip(net.layers, gemms):
            lin.weight.copy_(torch.from_numpy(np.array(init[node.input[1]])))
            lin.bias.copy_(torch.from_numpy(np.array(init[node.input[2]])))
    return net
