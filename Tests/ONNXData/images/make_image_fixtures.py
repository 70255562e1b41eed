"""Image-sized velocity networks v(t, x) exported to ONNX, with PyTorch reference
outputs, for FlowRuntime's ONNX import tests.

    Tests/ONNXData/images/.venv/bin/python Tests/ONNXData/images/make_image_fixtures.py
    (options: --out DIR, --only case1,case2 to redo some cases and merge into the
    existing export_results.json / manifest.json)

Families: torchcfm's UNetModelWrapper (MNIST setting, unconditional and
class-conditional), diffusers' UNet2DModel (small), and a small DiT written here;
each also as a "tiny" variant for fast tests; and a tiny conv net that upsamples by
linear interpolation (Resize mode "linear") in PyTorch's several forms, and one with
pooling, PixelShuffle and the clamped activations. See README.md beside this file.
"""
import argparse
import importlib.util
import json
import math
import sys
import time
import traceback
import types
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
INPUT_SEED = 1234
WEIGHT_SEED = 0
PERTURB_SEED = 4321
REF_BATCH = 3
TOLERANCE = 1e-4


# ---------------------------------------------------------------- torchcfm

def import_torchcfm_unet():
    """torchcfm's package __init__ imports its optimal-transport code (POT, scipy...).
    Register an empty 'torchcfm' package pointing at the installed folder so that only
    torchcfm/models (plain torch) is executed."""
    if "torchcfm" not in sys.modules:
        spec = importlib.util.find_spec("torchcfm")
        pkg = types.ModuleType("torchcfm")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchcfm"] = pkg
    import torchcfm.models.unet.unet as unet_mod
    return unet_mod


class TCFMVelocity(nn.Module):
    """Calls the torchcfm U-Net the way torchcfm's training code does: model(t, x[, y])."""

    def __init__(self, net, cond):
        super().__init__()
        self.net = net
        self.cond = cond

    def forward(self, t, x, y=None):
        if self.cond:
            return self.net(t, x, y=y)
        return self.net(t, x)


def build_tcfm(cond, tiny, heads=1, new_order=False):
    unet_mod = import_torchcfm_unet()
    if tiny:
        # torchcfm's normalization() is GroupNorm32(32, channels), which needs >= 32
        # channels; the tiny variant uses 4 groups so that 8 channels are possible.
        from torchcfm.models.unet.nn import GroupNorm32
        original = unet_mod.normalization
        unet_mod.normalization = lambda ch: GroupNorm32(4, ch)
        try:
            net = unet_mod.UNetModelWrapper(dim=(1, 8, 8), num_channels=8, num_res_blocks=1,
                                            channel_mult=(1, 1), attention_resolutions="4",
                                            class_cond=cond, num_classes=10, num_heads=heads,
                                            use_new_attention_order=new_order)
        finally:
            unet_mod.normalization = original
    else:
        # torchcfm's MNIST examples: UNetModelWrapper(dim=(1, 28, 28), num_channels=32,
        # num_res_blocks=1[, class_cond=True, num_classes=10]); defaults otherwise:
        # attention_resolutions="16" (-> attention at ds = 28 // 16 = 1, i.e. at 28x28,
        # plus the middle block), channel_mult (1, 2, 2) for 28 px, num_heads=1.
        net = unet_mod.UNetModelWrapper(dim=(1, 28, 28), num_channels=32, num_res_blocks=1,
                                        attention_resolutions="16", class_cond=cond, num_classes=10)
    return TCFMVelocity(net, cond)


# ---------------------------------------------------------------- diffusers

class DiffusersVelocity(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, t, x):
        return self.unet(x, t).sample


def build_diffusers(tiny):
    from diffusers import UNet2DModel
    if tiny:
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                           layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                           attention_head_dim=4)
    else:
        unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                           layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    return DiffusersVelocity(unet)


# ---------------------------------------------------------------- DiT

def sincos_2d(embed_dim, grid):
    """Fixed 2D sine-cosine position embedding as in DiT / MAE: [grid*grid, embed_dim]."""
    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="xy")
    emb = np.concatenate([one_d(embed_dim // 2, gw), one_d(embed_dim // 2, gh)], axis=1)
    return torch.from_numpy(emb).float()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq_dim):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb)


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio=4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_ratio * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * hidden, hidden))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def attention(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, n, c))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attention(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """DiT-style velocity net; adaLN-zero layout but with PyTorch's default (non-zero)
    initialisation of the modulation and final layers."""

    def __init__(self, image=28, channels=1, patch=4, hidden=64, depth=2, heads=4, freq_dim=64):
        super().__init__()
        self.channels, self.patch, self.grid = channels, patch, image // patch
        self.x_embedder = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        self.t_embedder = TimestepEmbedder(hidden, freq_dim)
        self.register_buffer("pos_embed", sincos_2d(hidden, self.grid).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, patch, channels)

    def unpatchify(self, x):
        c, p, h = self.channels, self.patch, self.grid
        x = x.reshape(x.shape[0], h, h, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, h * p)

    def forward(self, t, x):
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder(t)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c))


class DiTBlockIndexed(DiTBlock):
    """The attention of DiT's original code and older timm: q, k, v = qkv[0], qkv[1],
    qkv[2] after the permute (Gather on an axis before the moved batch axis) rather
    than unbind (Split)."""

    def attention(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, n, c))


def build_dit_indexed():
    net = DiT(image=8, channels=1, patch=2, hidden=16, depth=1, heads=2, freq_dim=16)
    net.blocks = nn.ModuleList([DiTBlockIndexed(16, 2)])
    return net


def build_dit(tiny):
    if tiny:
        return DiT(image=8, channels=1, patch=2, hidden=16, depth=1, heads=2, freq_dim=16)
    return DiT(image=28, channels=1, patch=4, hidden=64, depth=2, heads=4, freq_dim=64)


class InterpolatingConvNet(nn.Module):
    """A small hand-written conv velocity net of the kind users train on images: time
    as a per-channel bias, a strided conv down, and back up by linear interpolation in
    each form PyTorch exports differently: nn.Upsample(bilinear, align_corners=False),
    F.interpolate(align_corners=True), a resize to odd sizes (down, then up), and a
    1-D linear resize along the width through a [B, C·H, W] view."""

    def __init__(self, ch=8):
        super().__init__()
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.time = nn.Linear(1, ch)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.out = nn.Conv2d(4 * ch, 1, 3, padding=1)

    def forward(self, t, x):
        h = F.silu(self.inp(x) + self.time(t[:, None])[:, :, None, None])
        d = F.silu(self.down(h))
        b, c, hh, ww = h.shape
        a = self.up(d)
        ac = F.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=True)
        odd = F.interpolate(F.interpolate(d, size=(3, 5), mode="bilinear"), size=(hh, ww), mode="bilinear")
        w1 = F.interpolate(h.reshape(b, c * hh, ww), scale_factor=0.5, mode="linear")
        w1 = F.interpolate(w1, size=ww, mode="linear", align_corners=True).reshape(b, c, hh, ww)
        return self.out(torch.cat([a, ac, odd, w1], dim=1))


class PoolingConvNet(nn.Module):
    """A small conv net with the ops hand-written image nets add to the U-Nets': average,
    max and global pooling (a squeeze-excitation gate), PixelShuffle (DepthToSpace), PReLU,
    ReLU6 (Clip), Hardswish, Hardsigmoid, Mish and F.normalize (ReduceL2)."""

    def __init__(self, ch=8):
        super().__init__()
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.time = nn.Linear(1, ch)
        self.prelu = nn.PReLU(ch)
        self.down = nn.Conv2d(ch, ch, 3, padding=1)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, ch, 1), nn.Hardsigmoid())
        self.up = nn.Conv2d(ch, 4 * ch, 3, padding=1)
        self.out = nn.Conv2d(3 * ch, 1, 3, padding=1)

    def forward(self, t, x):
        h = self.prelu(self.inp(x) + self.time(t[:, None])[:, :, None, None])
        pooled = F.avg_pool2d(h, 2) + F.max_pool2d(h, 3, stride=2, padding=1)
        d = F.hardswish(self.down(pooled)) * self.se(h)
        u = F.pixel_shuffle(self.up(F.mish(d)), 2)
        return self.out(torch.cat([u, F.normalize(h, dim=1), F.relu6(3 * h)], dim=1))


# ---------------------------------------------------------------- cases

FULL_EXPORTS = [("legacy", 17), ("dynamo", None), ("dynamo", 21)]
TINY_EXPORTS = [("legacy", 17)]
# Networks calling scaled_dot_product_attention: at opset 23 the dynamo
# exporter emits the ONNX Attention op for it.
SDPA_EXPORTS = FULL_EXPORTS + [("dynamo", 23)]

CASES = {
    # name: (family, builder, x shape without batch, has class label y, exports)
    "tcfm_unet_tiny": ("tcfm_unet", lambda: build_tcfm(False, True), (1, 8, 8), False, TINY_EXPORTS),
    "tcfm_unet_cond_tiny": ("tcfm_unet", lambda: build_tcfm(True, True), (1, 8, 8), True, TINY_EXPORTS),
    "diffusers_unet_tiny": ("diffusers_unet", lambda: build_diffusers(True), (3, 8, 8), False, TINY_EXPORTS),
    "dit_tiny": ("dit", lambda: build_dit(True), (1, 8, 8), False, TINY_EXPORTS),
    # Multi-head attention folds the heads into the batch axis ([B, 3HC, L] ->
    # [B*H, 3C, L]): legacy order (reshape, then split) and the new order (split, then view).
    "tcfm_unet_heads_tiny": ("tcfm_unet", lambda: build_tcfm(False, True, heads=2), (1, 8, 8), False,
                             TINY_EXPORTS + [("dynamo", None)]),
    "tcfm_unet_heads_neworder_tiny": ("tcfm_unet", lambda: build_tcfm(False, True, heads=2, new_order=True), (1, 8, 8),
                                      False, TINY_EXPORTS + [("dynamo", None)]),
    "dit_indexed_tiny": ("dit", build_dit_indexed, (1, 8, 8), False, TINY_EXPORTS + [("dynamo", None)]),
    "pool_convnet_tiny": ("pool_convnet", lambda: PoolingConvNet(), (1, 8, 8), False, TINY_EXPORTS + [("dynamo", None)]),
    "interp_convnet_tiny": ("interp_convnet", lambda: InterpolatingConvNet(), (1, 8, 8), False,
                            TINY_EXPORTS + [("dynamo", None)]),
    "dit": ("dit", lambda: build_dit(False), (1, 28, 28), False, SDPA_EXPORTS),
    "tcfm_unet": ("tcfm_unet", lambda: build_tcfm(False, False), (1, 28, 28), False, FULL_EXPORTS),
    "tcfm_unet_cond": ("tcfm_unet", lambda: build_tcfm(True, False), (1, 28, 28), True, FULL_EXPORTS),
    "diffusers_unet": ("diffusers_unet", lambda: build_diffusers(False), (3, 32, 32), False, SDPA_EXPORTS),
}


def perturb_trivial_parameters(model):
    """torchcfm zero-initialises the last conv of every ResBlock, attention's proj_out
    and the output conv; norm layers start at weight 1 / bias 0. Parameters that are
    identically 0 get randn * 0.02 and ones get 1 + randn * 0.1, so that no part of the
    graph can be skipped or mis-imported without changing the output."""
    g = torch.Generator().manual_seed(PERTURB_SEED)
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if bool(torch.all(p == 0)):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                changed.append(name + "=0")
            elif bool(torch.all(p == 1)):
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
                changed.append(name + "=1")
    return changed


def make_inputs(x_shape, has_y):
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(REF_BATCH, *x_shape, generator=g)
    t = torch.rand(REF_BATCH, generator=g)
    ins = {"t": t, "x": x}
    if has_y:
        ins["y"] = torch.randint(0, 10, (REF_BATCH,), generator=g, dtype=torch.int64)
    return ins


def f32_list(a):
    # 9 significant digits round-trip float32 exactly
    return [float(f"{v:.9g}") for v in a.reshape(-1).tolist()]


def tensor_json(name, a, dynamic=None):
    a = a.detach().cpu()
    d = {"name": name, "shape": list(a.shape), "dtype": str(a.dtype).replace("torch.", "")}
    if dynamic is not None:
        d["batch_dynamic"] = dynamic
    d["data"] = a.reshape(-1).tolist() if a.dtype == torch.int64 else f32_list(a.numpy())
    return d


# ---------------------------------------------------------------- export

def compact_names(m):
    """Tiny fixtures only: rename nodes to <op>_<i> and intermediate values to v<i> (the
    exporter's scope-path names are most of a small file). Graph inputs, outputs and
    initializers keep their names; the computation is unchanged."""
    keep = {v.name for v in m.graph.input} | {v.name for v in m.graph.output} | {i.name for i in m.graph.initializer}
    rename = {}
    for i, node in enumerate(m.graph.node):
        node.name = f"{node.op_type}_{i}"
        for j, o in enumerate(node.output):
            if o and o not in keep:
                rename[o] = f"v{len(rename)}"
                node.output[j] = rename[o]
    for node in m.graph.node:
        for j, x in enumerate(node.input):
            if x in rename:
                node.input[j] = rename[x]
    for v in m.graph.value_info:
        if v.name in rename:
            v.name = rename[v.name]


def export_one(model, args, names, path, exporter, opset, compact=False):
    dyn_axes = {n: {0: "batch"} for n in names + ["v"]}
    if exporter == "legacy":
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=["v"], dynamic_axes=dyn_axes, do_constant_folding=True)
    else:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dyn_shapes = tuple({0: batch} for _ in args)
        kw = {} if opset is None else {"opset_version": opset}
        prog = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=["v"],
                                 dynamic_shapes=dyn_shapes, **kw)
        prog.save(str(path), external_data=False)
    # strip node-level metadata (exporter stack traces / namespaces); weights stay inline
    import onnx
    m = onnx.load(str(path))
    for node in m.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for fn in m.functions:
        for node in fn.node:
            del node.metadata_props[:]
            node.doc_string = ""
    if compact:
        assert not any(a.type == onnx.AttributeProto.GRAPH for n in m.graph.node for a in n.attribute)
        compact_names(m)
    onnx.save(m, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()


def constant_values(model):
    """name -> numpy array for initializers and Constant nodes' outputs."""
    from onnx import numpy_helper
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_ints", "value_floats"):
                    consts[n.output[0]] = np.array(list(a.ints or a.floats))
                elif a.name in ("value_int", "value_float"):
                    consts[n.output[0]] = np.array(a.i if a.name == "value_int" else a.f)
    return consts


NOTE_OPS = {"Conv", "ConvTranspose", "Einsum", "Attention", "GroupNormalization", "InstanceNormalization",
            "LayerNormalization", "Resize", "Upsample", "Pad", "Slice", "Split", "Gather", "Softmax",
            "Gelu", "ReduceMean", "MatMul", "Gemm", "Transpose", "Concat", "Expand", "Unsqueeze",
            "Squeeze", "Reshape", "Cast", "Range", "Trilu", "Where", "Tile", "ConstantOfShape",
            "CumSum", "Erf", "Pow", "Sqrt", "Flatten", "Shape", "AveragePool", "MaxPool", "Mod", "Div"}


def describe_model(path):
    import onnx
    from onnx import helper
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    consts = constant_values(m)

    def vi(v):
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims,
                "dtype": helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}

    hist = Counter()
    notes = {}

    def walk(nodes, where):
        for n in nodes:
            key = f"{n.domain or 'ai.onnx'}.{n.op_type}"
            hist[key] += 1
            if n.op_type in NOTE_OPS or n.domain not in ("", "ai.onnx"):
                attrs = {}
                for a in n.attribute:
                    v = helper.get_attribute_value(a)
                    if isinstance(v, bytes):
                        v = v.decode()
                    if isinstance(v, onnx.TensorProto):
                        v = f"tensor{list(v.dims)}"
                    if isinstance(v, list):
                        v = [x.decode() if isinstance(x, bytes) else x for x in v]
                    attrs[a.name] = v
                const_in = []
                for i in n.input:
                    if i in consts:
                        c = consts[i]
                        const_in.append(c.tolist() if c.size <= 8 and c.dtype != np.float32 or c.size <= 4
                                        else f"{c.dtype.name}{list(c.shape)}")
                    else:
                        const_in.append(None if i else "")
                sig = json.dumps({"attrs": attrs, "const_inputs": const_in}, sort_keys=True, default=str)
                notes.setdefault(key, Counter())[sig] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g.node, where + "/" + n.op_type)

    walk(m.graph.node, "graph")
    for fn in m.functions:
        walk(fn.node, "function:" + fn.name)
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    return {
        "ir_version": m.ir_version,
        "opset_import": opsets,
        "producer": f"{m.producer_name} {m.producer_version}",
        "inputs": [vi(v) for v in m.graph.input],
        "outputs": [vi(v) for v in m.graph.output],
        "n_initializers": len(m.graph.initializer),
        "n_functions": len(m.functions),
        "n_nodes": sum(hist.values()),
        "op_histogram": dict(sorted(hist.items())),
        "op_forms": {k: [dict(json.loads(s), count=c) for s, c in sorted(v.items())] for k, v in sorted(notes.items())},
        "size_bytes": path.stat().st_size,
    }


def run_ort(path, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feeds.items()})[0]


# ---------------------------------------------------------------- main

def run_case(name, out, results, manifest):
    family, builder, x_shape, has_y, exports = CASES[name]
    torch.manual_seed(WEIGHT_SEED)
    model = builder().eval()
    changed = perturb_trivial_parameters(model)
    n_params = sum(p.numel() for p in model.parameters())
    ins3 = make_inputs(x_shape, has_y)
    names = list(ins3)
    batches = {}
    with torch.no_grad():
        for b in (1, REF_BATCH):
            ins = {k: v[:b].clone() for k, v in ins3.items()}
            batches[b] = (ins, model(*ins.values()))
    print(f"== {name}: {n_params} parameters, perturbed {len(changed)} tensors, "
          f"|v| max {batches[REF_BATCH][1].abs().max().item():.4g}", flush=True)
    for exporter, opset in exports:
        tag = f"op{opset}" if opset else "opdefault"
        fname = f"{name}__{exporter}__{tag}.onnx"
        path = out / fname
        rec = {"file": fname, "case": name, "family": family, "exporter": exporter, "opset_requested": opset,
               "n_parameters": n_params, "perturbed_parameters": changed}
        t0 = time.time()
        try:
            export_one(model, tuple(batches[REF_BATCH][0].values()), names, path, exporter, opset,
                       compact=name.endswith("_tiny"))
        except Exception as e:  # record and go on
            rec.update(ok=False, error_type=type(e).__name__,
                       error=(str(e).strip().splitlines() or [""])[0][:500],
                       export_seconds=round(time.time() - t0, 1))
            print(f"   {fname}: EXPORT FAILED {type(e).__name__}: {rec['error']}", flush=True)
            traceback.print_exc(limit=3, file=sys.stdout)
            for p in (path, path.with_name(fname + ".data"), path.with_suffix(".json")):
                if p.exists():
                    p.unlink()
            results[fname] = rec
            manifest.pop(fname, None)
            continue
        rec["export_seconds"] = round(time.time() - t0, 1)
        desc = describe_model(path)
        manifest[fname] = desc
        rec["opset"] = desc["opset_import"].get("ai.onnx")
        rec["size_bytes"] = desc["size_bytes"]
        rec["ok"] = True
        cases = []
        for b, (ins, ref) in batches.items():
            key = f"batch{b}"
            try:
                got = run_ort(path, ins)
                rec[f"ort_max_abs_diff_{key}"] = float(np.max(np.abs(got - ref.numpy())))
            except Exception as e:
                rec[f"ort_error_{key}"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:500]}"
            cases.append({"batch": b, "inputs": [tensor_json(k, v, True) for k, v in ins.items()],
                          "outputs": [tensor_json("v", ref)]})
        rec["ref_max_abs_output"] = float(batches[REF_BATCH][1].abs().max())
        ref_doc = {"file": fname, "case": name, "family": family, "exporter": exporter,
                   "opset_requested": opset, "opset": rec["opset"], "torch_version": torch.__version__,
                   "inputs": cases[-1]["inputs"], "outputs": cases[-1]["outputs"],
                   "cases": cases, "tolerance": TOLERANCE}
        path.with_suffix(".json").write_text(json.dumps(ref_doc, indent=1))
        diffs = {k: v for k, v in rec.items() if k.startswith("ort_")}
        print(f"   {fname}: {desc['size_bytes'] / 1e6:.2f} MB, opset {rec['opset']}, "
              f"{desc['n_nodes']} nodes, {rec['export_seconds']} s, {diffs}", flush=True)
        results[fname] = rec


FORM_OPS = ["Conv", "Einsum", "GroupNormalization", "InstanceNormalization", "LayerNormalization", "Resize",
            "Pad", "Slice", "Split", "Squeeze", "Unsqueeze", "Transpose", "Gather", "Softmax", "Gelu", "Gemm",
            "Expand", "ConstantOfShape", "Cast", "Concat", "Attention"]
SHAPE_OPS = {"GroupNormalization", "InstanceNormalization", "LayerNormalization", "Gather"}


def family_of(fname):
    return CASES[fname.split("__")[0]][0]


def short(fname):
    return fname[:-len(".onnx")]


def ops_summary(manifest):
    """Markdown: which ops every family uses (count per file) and the distinct forms
    (attributes, constant inputs) of the ops a runtime has to get right."""
    out = []
    families = list(dict.fromkeys(family_of(f) for f in manifest))
    all_ops = sorted({op for d in manifest.values() for op in d["op_histogram"]})
    out.append("### Op types across all files (number of files using each, per family)\n")
    out.append("| op | " + " | ".join(families) + " |")
    out.append("|---|" + "---:|" * len(families))
    for op in all_ops:
        cells = []
        for fam in families:
            files = [f for f in manifest if family_of(f) == fam]
            n = sum(op in manifest[f]["op_histogram"] for f in files)
            cells.append(f"{n}/{len(files)}" if n else "")
        out.append(f"| {op} | " + " | ".join(cells) + " |")
    for fam in families:
        files = [f for f in manifest if family_of(f) == fam]
        out.append(f"\n### {fam}: node counts per file\n")
        out.append("| op | " + " | ".join(short(f) for f in files) + " |")
        out.append("|---|" + "---:|" * len(files))
        ops = sorted({op for f in files for op in manifest[f]["op_histogram"]})
        for op in ops:
            out.append(f"| {op} | " + " | ".join(str(manifest[f]["op_histogram"].get(op, "")) for f in files) + " |")
        out.append(f"\n{fam}: forms of note (attributes; constant inputs, shown as values when small):\n")
        for op in FORM_OPS:
            forms = {}
            for f in files:
                for fm in manifest[f]["op_forms"].get("ai.onnx." + op, []):
                    attrs = fm["attrs"]
                    if op == "Conv":
                        key = ", ".join(f"{k}={attrs.get(k)}" for k in ("kernel_shape", "strides", "pads", "group", "dilations"))
                    else:
                        consts = fm["const_inputs"]
                        if op not in SHAPE_OPS:
                            consts = [c if not isinstance(c, str) or not c.startswith("float32[") else "W" for c in consts]
                        key = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()) if v is not None)
                        if any(c not in (None, "W") for c in consts):
                            key += f"; const inputs {consts}"
                    forms.setdefault(key, set()).add(f.split("__", 1)[1][:-5])
            for key, where in sorted(forms.items()):
                out.append(f"- {op}: {key} ({', '.join(sorted(where))})")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", default="", help="comma-separated case names; results merge into existing JSONs")
    a = ap.parse_args()
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    only = [c for c in a.only.split(",") if c]
    for c in only:
        if c not in CASES:
            sys.exit(f"unknown case {c}; known: {', '.join(CASES)}")
    res_path, man_path = out / "export_results.json", out / "manifest.json"
    results = json.loads(res_path.read_text())["files"] if only and res_path.exists() else {}
    manifest = json.loads(man_path.read_text())["files"] if only and man_path.exists() else {}
    import onnx
    import onnxruntime
    import onnxscript
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "onnxscript": onnxscript.__version__, "python": sys.version.split()[0]}
    for pkg in ("torchcfm", "diffusers"):
        try:
            from importlib.metadata import version
            versions[pkg] = version(pkg)
        except Exception:
            pass
    for name in (only or list(CASES)):
        run_case(name, out, results, manifest)
        # write after every case so partial runs leave usable files
        order = {n: i for i, n in enumerate(CASES)}
        sort = lambda d: dict(sorted(d.items(), key=lambda kv: (order[kv[0].split("__")[0]], kv[0])))
        res_path.write_text(json.dumps({"versions": versions, "input_seed": INPUT_SEED, "weight_seed": WEIGHT_SEED,
                                        "files": sort(results)}, indent=1))
        man_path.write_text(json.dumps({"versions": versions, "files": sort(manifest)}, indent=1))
    summary = ops_summary(manifest)
    (out / "ops_summary.md").write_text(summary)
    print()
    print(summary)
    failed = [f"{k}: {v['error_type']}: {v['error']}" for k, v in results.items() if not v.get("ok")]
    print("\nexport failures:" if failed else "\nno export failures", *failed, sep="\n  ")
    total = sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".onnx", ".json"))
    print(f"total fixture size {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
