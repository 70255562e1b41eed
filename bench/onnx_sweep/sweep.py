"""bench/onnx_sweep — a robustness sweep of image velocity networks FlowRuntime's
tests do not contain: 80 variants (torchcfm and diffusers U-Net configurations, DiT,
U-ViT and ViT blocks, hand-written conv nets) built in PyTorch, exported with the
legacy exporter (opset 17) and the dynamo exporter (its default opset), loaded in
FlowRuntime and compared with onnxruntime on the same file at batch 2 (pass:
max |FR - ORT| / max |ORT| <= 1e-4). It finds import gaps before users do; it is
not part of `make test` (about 12 minutes on one thread).

    bash bench/onnx_sweep/run.sh [--only name1,name2] [--group diffusers|tcfm|tf|conv|iso] [--list] [--table]

run.sh builds libflowrt.so, uses Tests/ONNXData/images/.venv (torch CPU, onnx,
onnxruntime, onnxscript, torchcfm, diffusers: the fixture README's recipe) and
writes the ONNX files, their inputs and onnxruntime's outputs (.npz) and
results.json under .build/onnx-sweep (ONNX_SWEEP_OUT). FlowRuntime runs in a
subprocess per file, so a crash is recorded, not fatal. bench/onnx_sweep/results.md
is the table of the last recorded run.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("ONNX_SWEEP_OUT", HERE.parents[1] / ".build" / "onnx-sweep")) / "onnx"
RESULTS = OUT.parent / "results.json"
BATCH = 2
TOL = 1e-4


# ====================================================================== FR worker
def fr_worker(npz_path):
    """Loads the .onnx beside npz_path in FlowRuntime, evaluates, prints one JSON line."""
    import flowrt
    d = np.load(npz_path)
    onnx_path = str(npz_path)[:-4] + ".onnx"
    res = {}
    t0 = time.time()
    try:
        m = flowrt.load_model(onnx_path)
    except Exception as e:
        res["load_error"] = f"{type(e).__name__}: {e}"
        print("FRJSON " + json.dumps(res), flush=True)
        return
    res["load_s"] = round(time.time() - t0, 2)
    try:
        res["fr_shape"] = list(m.shape)
        res["context_dim"] = m.context_dim
        res["num_classes"] = m.num_classes
        x, t, ref = d["x"], d["t"], d["ref"]
        if "y" in d.files:
            v = m.velocity(t.astype(np.float64), x, context=d["y"].astype(np.float32))
        else:
            v = m.velocity(t.astype(np.float64), x)
        v = np.asarray(v).reshape(ref.shape)
        res["rel_err"] = float(np.max(np.abs(v - ref)) / max(np.max(np.abs(ref)), 1e-30))
        res["nan"] = bool(not np.all(np.isfinite(v)))
    except Exception as e:
        res["eval_error"] = f"{type(e).__name__}: {e}"
    print("FRJSON " + json.dumps(res), flush=True)


# ====================================================================== model zoo
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)


# torchcfm without its package __init__, and the wrapper torchcfm's training code
# calls: the fixture script's (one home for both).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Tests" / "ONNXData" / "images"))
from make_image_fixtures import TCFMVelocity, import_torchcfm_unet  # noqa: E402


def tcfm(dim=(1, 28, 28), num_channels=32, num_res_blocks=1, **kw):
    unet_mod = import_torchcfm_unet()
    net = unet_mod.UNetModelWrapper(dim=dim, num_channels=num_channels, num_res_blocks=num_res_blocks, **kw)
    return TCFMVelocity(net, kw.get("class_cond", False))


class DiffusersVelocity(nn.Module):
    def __init__(self, unet, cond):
        super().__init__()
        self.unet, self.cond = unet, cond

    def forward(self, t, x, y=None):
        if self.cond:
            return self.unet(x, t, class_labels=y).sample
        return self.unet(x, t).sample


def dunet(**kw):
    from diffusers import UNet2DModel
    base = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8)
    base.update(kw)
    return DiffusersVelocity(UNet2DModel(**base), kw.get("num_class_embeds") is not None)


# ---------------------------------------------------------------- transformers
def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TEmb(nn.Module):
    def __init__(self, hidden, freq=64, act=None):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), act or nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(sinusoidal(t, self.freq))


class Attn(nn.Module):
    def __init__(self, hidden, heads, manual=False, split="index"):
        super().__init__()
        self.heads, self.manual, self.split = heads, manual, split
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0) if self.split == "unbind" else (qkv[0], qkv[1], qkv[2])
        if self.manual:
            a = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
            a = a.softmax(dim=-1) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, n, c))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, gelu="none", split="index"):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attn(hidden, heads, split=split)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate=gelu), nn.Linear(4 * hidden, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(self.norm1(x) * (1 + sc1.unsqueeze(1)) + s1.unsqueeze(1))
        x = x + g2.unsqueeze(1) * self.mlp(self.norm2(x) * (1 + sc2.unsqueeze(1)) + s2.unsqueeze(1))
        return x


class LabelEmbedder(nn.Module):
    """DiT's: table has num_classes + 1 rows (CFG null class); dropout only in training."""

    def __init__(self, num_classes, hidden, dropout_prob=0.1):
        super().__init__()
        self.table = nn.Embedding(num_classes + 1, hidden)
        self.num_classes, self.dropout_prob = num_classes, dropout_prob

    def forward(self, labels):
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.table(labels)


class DiT(nn.Module):
    def __init__(self, image=28, channels=1, patch=2, hidden=64, depth=2, heads=4, num_classes=0, gelu="none",
                 split="index"):
        super().__init__()
        self.c, self.p, self.g = channels, patch, image // patch
        self.x_emb = nn.Conv2d(channels, hidden, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, self.g * self.g, hidden) * 0.02)  # learned
        self.t_emb = TEmb(hidden)
        self.y_emb = LabelEmbedder(num_classes, hidden) if num_classes else None
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, gelu, split) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.out = nn.Linear(hidden, patch * patch * channels)

    def forward(self, t, x, y=None):
        h = self.x_emb(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_emb(t)
        if self.y_emb is not None:
            c = c + self.y_emb(y)
        for b in self.blocks:
            h = b(h, c)
        sh, sc = self.ada(c).chunk(2, dim=1)
        h = self.out(self.norm(h) * (1 + sc.unsqueeze(1)) + sh.unsqueeze(1))
        n, g, p, ch = h.shape[0], self.g, self.p, self.c
        h = h.reshape(n, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(n, ch, g * p, g * p)


class UViTBlock(nn.Module):
    def __init__(self, hidden, heads, skip=False, split="index"):
        super().__init__()
        self.skip = nn.Linear(2 * hidden, hidden) if skip else None
        self.n1 = nn.LayerNorm(hidden)
        self.attn = Attn(hidden, heads, manual=True, split=split)
        self.n2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, x, skip=None):
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class UViT(nn.Module):
    """U-ViT (Bao et al.): time as a token, long skips (concat + Linear), conv after unpatchify."""

    def __init__(self, image=32, channels=3, patch=4, hidden=64, depth=5, heads=4, split="index"):
        super().__init__()
        self.c, self.p, self.g = channels, patch, image // patch
        self.patch_embed = nn.Conv2d(channels, hidden, patch, patch)
        self.time_embed = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, hidden))
        self.hidden = hidden
        self.pos = nn.Parameter(torch.randn(1, 1 + self.g * self.g, hidden) * 0.02)
        self.in_blocks = nn.ModuleList([UViTBlock(hidden, heads, split=split) for _ in range(depth // 2)])
        self.mid = UViTBlock(hidden, heads, split=split)
        self.out_blocks = nn.ModuleList([UViTBlock(hidden, heads, skip=True, split=split) for _ in range(depth // 2)])
        self.norm = nn.LayerNorm(hidden)
        self.decoder_pred = nn.Linear(hidden, patch * patch * channels)
        self.final = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, t, x):
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        tt = self.time_embed(sinusoidal(t, self.hidden)).unsqueeze(1)
        h = torch.cat([tt, h], dim=1) + self.pos
        skips = []
        for b in self.in_blocks:
            h = b(h)
            skips.append(h)
        h = self.mid(h)
        for b in self.out_blocks:
            h = b(h, skips.pop())
        h = self.decoder_pred(self.norm(h))[:, 1:, :]
        n, g, p, c = h.shape[0], self.g, self.p, self.c
        h = torch.einsum("nhwpqc->nchpwq", h.reshape(n, g, g, p, p, c)).reshape(n, c, g * p, g * p)
        return self.final(h)


class MHABlock(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mha = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    def forward(self, x):
        h = self.n1(x)
        x = x + self.mha(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class ViT(nn.Module):
    """Plain ViT velocity: patch embed + time added to tokens; blocks are MHA / TransformerEncoderLayer."""

    def __init__(self, kind, image=28, channels=1, patch=4, hidden=64, depth=2, heads=4, norm_first=True,
                 activation="gelu"):
        super().__init__()
        self.c, self.p, self.g = channels, patch, image // patch
        self.emb = nn.Conv2d(channels, hidden, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, self.g * self.g, hidden) * 0.02)
        self.t_emb = TEmb(hidden)
        if kind == "mha":
            self.blocks = nn.Sequential(*[MHABlock(hidden, heads) for _ in range(depth)])
        elif kind == "tel":
            self.blocks = nn.Sequential(*[nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0,
                                                                     activation=activation, batch_first=True,
                                                                     norm_first=norm_first) for _ in range(depth)])
        elif kind == "encoder":
            layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.1, activation=activation,
                                               batch_first=True, norm_first=norm_first)
            self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, patch * patch * channels)

    def forward(self, t, x):
        h = self.emb(x).flatten(2).transpose(1, 2) + self.pos + self.t_emb(t).unsqueeze(1)
        h = self.out(self.blocks(h))
        n, g, p, c = h.shape[0], self.g, self.p, self.c
        return h.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, g * p, g * p)


# ---------------------------------------------------------------- small conv nets
class TimeChannel(nn.Module):
    """The simplest conditioning: t broadcast as an extra input channel."""

    def forward(self, t, x):
        return torch.cat([x, t.view(-1, 1, 1, 1).expand(-1, 1, x.shape[2], x.shape[3])], dim=1)


class ConvNet(nn.Module):
    """Encoder/decoder with a configurable down/up path, norm and activation; t as an input
    channel plus FiLM from an MLP. Options select the op under test."""

    def __init__(self, ch=1, width=32, down="conv", up="nearest", norm="group", act="silu", pool_gate=False,
                 pad_mode="zeros", extra=None):
        super().__init__()
        self.tc = TimeChannel()
        acts = {"silu": nn.SiLU(), "leaky": nn.LeakyReLU(0.2), "relu": nn.ReLU(), "elu": nn.ELU(),
                "gelu": nn.GELU(), "softplus": nn.Softplus(), "hardswish": nn.Hardswish(), "prelu": nn.PReLU(width),
                "tanh": nn.Tanh(), "mish": nn.Mish(), "selu": nn.SELU(), "relu6": nn.ReLU6(),
                "hardsigmoid": nn.Hardsigmoid()}
        self.act = acts[act]

        def norm_layer(c):
            if norm == "group":
                return nn.GroupNorm(8, c)
            if norm == "batch":
                bn = nn.BatchNorm2d(c)
                with torch.no_grad():
                    bn.running_mean.normal_(0, 0.3)
                    bn.running_var.uniform_(0.5, 2.0)
                return bn
            if norm == "instance":
                return nn.InstanceNorm2d(c, affine=True)
            if norm == "instance_noaffine":
                return nn.InstanceNorm2d(c, affine=False)
            return nn.Identity()

        self.inp = nn.Conv2d(ch + 1, width, 3, padding=1, padding_mode=pad_mode)
        self.n1 = norm_layer(width)
        self.down_kind = down
        if down == "conv":
            self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
        elif down == "maxpool":
            self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(width, width, 3, padding=1))
        elif down == "avgpool":
            self.down = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(width, width, 3, padding=1))
        elif down == "unshuffle":
            self.down = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * width, width, 1))
        self.n2 = norm_layer(width)
        self.t_mlp = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, 2 * width))
        self.mid = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.dw = nn.Conv2d(width, width, 5, padding=2, groups=width)
        self.up_kind = up
        if up == "nearest":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1))
        elif up == "bilinear":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(width, width, 3, padding=1))
        elif up == "bilinear_ac":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                    nn.Conv2d(width, width, 3, padding=1))
        elif up == "convT4":
            self.up = nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)
        elif up == "convT2":
            self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        elif up == "convT3op":
            self.up = nn.ConvTranspose2d(width, width, 3, stride=2, padding=1, output_padding=1)
        elif up == "shuffle":
            self.up = nn.Sequential(nn.Conv2d(width, 4 * width, 1), nn.PixelShuffle(2))
        elif up == "interp_size":
            self.up = None
        self.pool_gate = pool_gate
        if pool_gate:
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width // 4, 1), nn.ReLU(),
                                    nn.Conv2d(width // 4, width, 1), nn.Sigmoid())
        self.outc = nn.Conv2d(2 * width, ch, 3, padding=1, padding_mode=pad_mode)
        self.extra = extra

    def forward(self, t, x):
        h0 = self.act(self.n1(self.inp(self.tc(t, x))))
        h = self.act(self.n2(self.down(h0)))
        scale, shift = self.t_mlp(t[:, None]).chunk(2, dim=1)
        h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = h + self.act(self.mid(h)) + self.dw(h)
        if self.pool_gate:
            h = h * self.se(h)
        if self.extra == "adaptive7":
            h = h + F.interpolate(F.adaptive_avg_pool2d(h, 7), size=h.shape[-2:], mode="nearest")
        if self.extra == "maxreduce":
            h = h - h.amax(dim=(2, 3), keepdim=True)
        if self.up is None:
            h = F.interpolate(h, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        else:
            h = self.up(h)
        return self.outc(torch.cat([h, h0], dim=1))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.pw2(self.act(self.pw1(self.norm(h)))) * self.gamma
        return x + h.permute(0, 3, 1, 2)


class ConvNeXtNet(nn.Module):
    def __init__(self, ch=3, width=32):
        super().__init__()
        self.inp = nn.Conv2d(ch, width, 3, padding=1)
        self.t = TEmb(width)
        self.b1, self.b2 = ConvNeXtBlock(width), ConvNeXtBlock(width)
        self.out = nn.Conv2d(width, ch, 3, padding=1)

    def forward(self, t, x):
        h = self.inp(x) + self.t(t)[:, :, None, None]
        return self.out(self.b2(self.b1(h)))


# ---------------------------------------------------------------- more common patterns
class LucidAttention(nn.Module):
    """lucidrains denoising-diffusion-pytorch style: qkv 1x1 conv, heads via reshape (no batch
    merge), einsum similarity; RMSNorm via F.normalize; GroupNorm(1, c) pre-norm."""

    def __init__(self, dim, heads=4, dim_head=16, linear=False):
        super().__init__()
        self.heads, self.dh, self.linear = heads, dim_head, linear
        self.scale = dim_head ** -0.5
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(heads * dim_head, dim, 1), nn.GroupNorm(1, dim)) if linear else \
            nn.Conv2d(heads * dim_head, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        x = F.normalize(x, dim=1) * self.g * (c ** 0.5)  # RMSNorm
        q, k, v = self.to_qkv(x).chunk(3, dim=1)
        q, k, v = (z.reshape(b, self.heads, self.dh, h * w) for z in (q, k, v))
        if self.linear:
            q = q.softmax(dim=-2) * self.scale
            k = k.softmax(dim=-1)
            ctx = torch.einsum("bhdn,bhen->bhde", k, v)
            out = torch.einsum("bhde,bhdn->bhen", ctx, q)
        else:
            sim = torch.einsum("bhdi,bhdj->bhij", q * self.scale, k)
            out = torch.einsum("bhij,bhdj->bhid", sim.softmax(dim=-1), v).transpose(2, 3)
        return self.to_out(out.reshape(b, self.heads * self.dh, h, w))


class WSConv2d(nn.Conv2d):
    """Weight-standardised conv (lucidrains' older Unet / BigGAN-style): weight computed at run time."""

    def forward(self, x):
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return F.conv2d(x, (w - mean) * (var + 1e-5).rsqrt(), self.bias, self.stride, self.padding)


class LucidUNet(nn.Module):
    def __init__(self, ch=1, dim=32, ws=False):
        super().__init__()
        Conv = WSConv2d if ws else nn.Conv2d
        self.t = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, 2 * dim))
        self.dim = dim
        self.inp = nn.Conv2d(ch, dim, 7, padding=3)
        self.b1 = Conv(dim, dim, 3, padding=1)
        self.n1 = nn.GroupNorm(8, dim)
        self.lin_attn = LucidAttention(dim, linear=True)
        self.down = nn.Conv2d(dim, dim, 4, 2, 1)
        self.attn = LucidAttention(dim)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim, dim, 3, padding=1))
        self.out = nn.Conv2d(2 * dim, ch, 1)

    def forward(self, t, x):
        h0 = self.inp(x)
        scale, shift = self.t(sinusoidal(t, self.dim)).chunk(2, dim=1)
        h = F.silu(self.n1(self.b1(h0)) * (scale[:, :, None, None] + 1) + shift[:, :, None, None])
        h = h + self.lin_attn(h)
        d = self.down(h)
        d = d + self.attn(d)
        return self.out(torch.cat([self.up(d), h0], dim=1))


class FlatNet(nn.Module):
    """Conv encoder -> Flatten -> Linear bottleneck (with t) -> Unflatten -> ConvTranspose decoder."""

    def __init__(self, ch=1, width=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(ch, width, 3, 2, 1), nn.SiLU(), nn.Conv2d(width, width, 3, 2, 1), nn.SiLU(),
                                 nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(width * 49 + 1, 128), nn.SiLU(), nn.Linear(128, width * 49),
                                nn.Unflatten(1, (width, 7, 7)))
        self.dec = nn.Sequential(nn.ConvTranspose2d(width, width, 4, 2, 1), nn.SiLU(),
                                 nn.ConvTranspose2d(width, ch, 4, 2, 1))
        self.glu = nn.Conv2d(ch + 1, 2 * ch, 3, padding=1)

    def forward(self, t, x):
        z = self.fc(torch.cat([self.enc(x), t[:, None]], dim=1))
        return self.dec(z) + F.glu(self.glu(torch.cat([x, t.view(-1, 1, 1, 1).expand(-1, 1, 28, 28)], 1)), dim=1)


class TB1(nn.Module):
    """Same as the base ConvNet but the exported t input is [B, 1]."""

    def __init__(self):
        super().__init__()
        self.net = ConvNet()

    def forward(self, t, x):
        return self.net(t[:, 0], x)


def weightnormed():
    net = ConvNet()
    from torch.nn.utils.parametrizations import weight_norm
    net.inp = weight_norm(net.inp)
    net.outc = weight_norm(net.outc)
    return net


# ---------------------------------------------------------------- registry
# name: (group, builder, x_shape, num_classes or 0)
D3 = (3, 32, 32)
M1 = (1, 28, 28)
V = {}


def reg(group, name, builder, shape, ncls=0):
    V[name] = (group, builder, shape, ncls)


reg("diffusers", "d_base", lambda: dunet(), D3)
reg("diffusers", "d_resnetsample", lambda: dunet(down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D"),
                                                  up_block_types=("AttnUpBlock2D", "ResnetUpsampleBlock2D")), D3)
reg("diffusers", "d_skip", lambda: dunet(down_block_types=("SkipDownBlock2D", "SkipDownBlock2D"),
                                         up_block_types=("SkipUpBlock2D", "SkipUpBlock2D")), D3)
reg("diffusers", "d_attnskip", lambda: dunet(down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
                                             up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D")), D3)
reg("diffusers", "d_scaleshift", lambda: dunet(resnet_time_scale_shift="scale_shift"), D3)
reg("diffusers", "d_fourier", lambda: dunet(time_embedding_type="fourier", flip_sin_to_cos=True), D3)
reg("diffusers", "d_noflip", lambda: dunet(flip_sin_to_cos=False, freq_shift=1), D3)
reg("diffusers", "d_mish", lambda: dunet(act_fn="mish"), D3)
reg("diffusers", "d_gelu", lambda: dunet(act_fn="gelu"), D3)
reg("diffusers", "d_groups32", lambda: dunet(norm_num_groups=32), D3)
reg("diffusers", "d_noattn", lambda: dunet(add_attention=False), D3)
reg("diffusers", "d_headdim16", lambda: dunet(attention_head_dim=16), D3)
reg("diffusers", "d_resnet_updown", lambda: dunet(downsample_type="resnet", upsample_type="resnet"), D3)
reg("diffusers", "d_resnet_updown2", lambda: dunet(down_block_types=("AttnDownBlock2D", "DownBlock2D"),
                                                   up_block_types=("UpBlock2D", "AttnUpBlock2D"),
                                                   downsample_type="resnet", upsample_type="resnet"), D3)
reg("diffusers", "d_class", lambda: dunet(num_class_embeds=10), D3, 10)
reg("diffusers", "d_center", lambda: dunet(center_input_sample=True), D3)
reg("diffusers", "d_lpb2", lambda: dunet(layers_per_block=2), D3)
reg("diffusers", "d_mnist3lvl", lambda: dunet(sample_size=28, in_channels=1, out_channels=1,
                                              block_out_channels=(32, 64, 64),
                                              down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                                              up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")), M1)

reg("tcfm", "t_nrb2", lambda: tcfm(num_res_blocks=2), M1)
reg("tcfm", "t_attn14_7", lambda: tcfm(attention_resolutions="14,7"), M1)
reg("tcfm", "t_heads4", lambda: tcfm(num_heads=4), M1)
reg("tcfm", "t_headch16", lambda: tcfm(num_head_channels=16), M1)
reg("tcfm", "t_neworder", lambda: tcfm(num_heads=4, use_new_attention_order=True), M1)
reg("tcfm", "t_scaleshift", lambda: tcfm(use_scale_shift_norm=True), M1)
reg("tcfm", "t_resupdown", lambda: tcfm(resblock_updown=True), M1)
reg("tcfm", "t_dropout", lambda: tcfm(dropout=0.1), M1)
reg("tcfm", "t_cond_combo", lambda: tcfm(class_cond=True, num_classes=10, use_scale_shift_norm=True,
                                         resblock_updown=True, num_head_channels=16), M1, 10)
reg("tcfm", "t_cifar", lambda: tcfm(dim=(3, 32, 32), channel_mult=(1, 2, 2, 2), attention_resolutions="16"), D3)

reg("tf", "dit_p2_erf", lambda: DiT(patch=2, heads=8, hidden=64), M1)
reg("tf", "dit_cls", lambda: DiT(patch=4, heads=2, hidden=64, num_classes=10), M1, 10)
reg("tf", "uvit", lambda: UViT(), D3)
reg("tf", "dit_p2_erf_unbind", lambda: DiT(patch=2, heads=8, hidden=64, split="unbind"), M1)
reg("tf", "dit_cls_unbind", lambda: DiT(patch=4, heads=2, hidden=64, num_classes=10, split="unbind"), M1, 10)
reg("tf", "uvit_unbind", lambda: UViT(split="unbind"), D3)
reg("tf", "vit_mha", lambda: ViT("mha"), M1)
reg("tf", "vit_tel_prenorm", lambda: ViT("tel", norm_first=True), M1)
reg("tf", "vit_tel_postnorm", lambda: ViT("tel", norm_first=False, activation="relu"), M1)
reg("tf", "vit_encoder", lambda: ViT("encoder", norm_first=True), M1)

reg("conv", "c_nearest_gn", lambda: ConvNet(), M1)
reg("conv", "c_bilinear", lambda: ConvNet(up="bilinear", act="gelu"), M1)
reg("conv", "c_bilinear_ac", lambda: ConvNet(up="bilinear_ac", act="elu"), M1)
reg("conv", "c_interp_size", lambda: ConvNet(up="interp_size", act="softplus"), M1)
reg("conv", "c_convT4_bn_leaky", lambda: ConvNet(up="convT4", norm="batch", act="leaky"), M1)
reg("conv", "c_convT2_inst", lambda: ConvNet(up="convT2", norm="instance", act="relu"), M1)
reg("conv", "c_convT3op_inst_noaff", lambda: ConvNet(up="convT3op", norm="instance_noaffine", act="hardswish"), M1)
reg("conv", "c_pixelshuffle", lambda: ConvNet(ch=3, down="unshuffle", up="shuffle", act="prelu"), D3)
reg("conv", "c_maxpool_se", lambda: ConvNet(down="maxpool", pool_gate=True, act="mish"), M1)
reg("conv", "c_avgpool_tanh", lambda: ConvNet(down="avgpool", act="tanh", norm="none"), M1)
reg("conv", "c_adaptive7_selu", lambda: ConvNet(act="selu", extra="adaptive7"), M1)
reg("conv", "c_reflect_relu6", lambda: ConvNet(pad_mode="reflect", act="relu6", extra="maxreduce"), M1)
reg("conv", "c_circular_hsig", lambda: ConvNet(ch=3, pad_mode="circular", act="hardsigmoid"), D3)
reg("conv", "c_convnext", lambda: ConvNeXtNet(), D3)
reg("conv", "c_lucid_unet", lambda: LucidUNet(), M1)
reg("conv", "c_lucid_wsconv", lambda: LucidUNet(ws=True), M1)
reg("conv", "c_weightnorm", weightnormed, M1)
reg("conv", "c_flatten_linear_glu", lambda: FlatNet(), M1)
reg("conv", "c_t_b1", lambda: TB1(), M1)
# one op changed at a time from c_nearest_gn (which passes)
for _n, _kw in {"convT3op": dict(up="convT3op"), "inst_noaff": dict(norm="instance_noaffine"),
                "reflect": dict(pad_mode="reflect"), "circular": dict(pad_mode="circular"),
                "shuffle": dict(up="shuffle"), "unshuffle": dict(down="unshuffle"), "maxpool": dict(down="maxpool"),
                "avgpool": dict(down="avgpool"), "se_gate": dict(pool_gate=True), "adaptive7": dict(extra="adaptive7"),
                "amax": dict(extra="maxreduce"), "selu": dict(act="selu"), "elu": dict(act="elu"),
                "softplus": dict(act="softplus"), "gelu_erf": dict(act="gelu"), "mish": dict(act="mish"),
                "prelu": dict(act="prelu"), "hardswish": dict(act="hardswish"), "relu6": dict(act="relu6"),
                "hardsigmoid": dict(act="hardsigmoid"), "tanh": dict(act="tanh"), "leaky": dict(act="leaky"),
                "batchnorm": dict(norm="batch")}.items():
    reg("iso", "i_" + _n, (lambda kw: lambda: ConvNet(**kw))(_kw), M1)


# ====================================================================== driver
def perturb(model):
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if bool(torch.all(p == 0)):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif bool(torch.all(p == 1)):
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)


def export(model, args, names, path, exporter):
    if exporter == "legacy":
        dyn = {n: {0: "batch"} for n in names + ["v"]}
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names,
                          output_names=["v"], dynamic_axes=dyn, do_constant_folding=True)
        return "dynamic"
    batch = torch.export.Dim("batch", min=1, max=4096)
    note = "dynamic"
    try:
        prog = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=["v"],
                                 dynamic_shapes=tuple({0: batch} for _ in args))
    except Exception as e:  # retry static so that FR still gets a file to try
        note = f"static (dynamic batch export failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:150]})"
        prog = torch.onnx.export(model, args, dynamo=True, input_names=names, output_names=["v"])
    prog.save(str(path), external_data=False)
    return note


def first_line(s, n=300):
    lines = [l for l in str(s).strip().splitlines() if l.strip()]
    return (lines[0] if lines else "")[:n]


def failed(rec, key, status, error, results):
    """Records and prints a file that stopped before FlowRuntime saw it."""
    rec["status"] = status
    rec["error"] = f"{type(error).__name__}: {first_line(error)}"
    results[key] = rec
    print(f"{key}: {status.replace('_', ' ')} {rec['error']}", flush=True)


def run_variant(name, results, exporters):
    import onnx
    import onnxruntime as ort
    group, builder, shape, ncls = V[name]
    torch.manual_seed(0)
    model = builder().eval()
    perturb(model)
    g = torch.Generator().manual_seed(1234)
    ins = {"t": torch.rand(BATCH, generator=g) * 0.98 + 0.01, "x": torch.randn(BATCH, *shape, generator=g)}
    if ncls:
        ins["y"] = torch.tensor([3, 7], dtype=torch.int64)
    if name == "c_t_b1":
        ins["t"] = ins["t"][:, None]
    with torch.no_grad():
        ref_torch = model(*ins.values()).numpy()
    n_params = sum(p.numel() for p in model.parameters())
    for exp in exporters:
        key = f"{name}__{exp}"
        rec = {"variant": name, "group": group, "exporter": exp, "params": n_params}
        path = OUT / f"{key}.onnx"
        t0 = time.time()
        try:  # no torch.no_grad() here: as users do (and nn.MultiheadAttention's fast path stays off)
            rec["export_note"] = export(model, tuple(ins.values()), list(ins), path, exp)
        except Exception as e:
            failed(rec, key, "EXPORT_FAIL", e, results)
            continue
        rec["export_s"] = round(time.time() - t0, 1)
        m = onnx.load(str(path))
        rec["opset"] = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
        rec["ops"] = sorted({n.op_type for n in m.graph.node})
        rec["n_functions"] = len(m.functions)
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            feeds = {i.name: ins[i.name].numpy() for i in sess.get_inputs()}
            ref = sess.run(None, feeds)[0]
            rec["ort_vs_torch"] = float(np.max(np.abs(ref - ref_torch)) / np.max(np.abs(ref_torch)))
        except Exception as e:
            failed(rec, key, "ORT_FAIL", e, results)
            continue
        npz = OUT / f"{key}.npz"
        arrays = {"x": ins["x"].numpy(), "t": ins["t"].numpy().reshape(-1), "ref": ref}
        if ncls:
            arrays["y"] = ins["y"].numpy()
        np.savez(npz, **arrays)
        env = dict(os.environ)
        try:
            p = subprocess.run([sys.executable, __file__, "--fr", str(npz)], capture_output=True, text=True,
                               timeout=300, env=env)
            line = next((l for l in p.stdout.splitlines() if l.startswith("FRJSON ")), None)
            if line is None:
                rec["status"] = "FR_CRASH"
                rec["error"] = f"rc={p.returncode} {first_line(p.stderr[-2000:])}"
            else:
                fr = json.loads(line[7:])
                rec.update(fr)
                if "load_error" in fr:
                    rec["status"], rec["error"] = "LOAD_FAIL", fr["load_error"]
                elif "eval_error" in fr:
                    rec["status"], rec["error"] = "EVAL_FAIL", fr["eval_error"]
                elif fr["nan"] or not fr["rel_err"] <= TOL:
                    rec["status"] = "ACCURACY_FAIL"
                else:
                    rec["status"] = "OK"
        except subprocess.TimeoutExpired:
            rec["status"], rec["error"] = "FR_TIMEOUT", "FR subprocess > 300 s"
        results[key] = rec
        print(f"{key}: {rec['status']} rel={rec.get('rel_err')} {rec.get('error', '')[:300]} "
              f"(export {rec['export_s']} s, {rec.get('export_note')}, ort_vs_torch {rec['ort_vs_torch']:.2e})",
              flush=True)


def table(results):
    rows = {}
    for k, r in results.items():
        rows.setdefault(r["variant"], {})[r["exporter"]] = r

    def cell(r):
        if r is None:
            return "-"
        if r["status"] == "OK":
            return f"OK ({r['rel_err']:.1e})"
        if r["status"] == "ACCURACY_FAIL":
            return f"FAIL acc ({r['rel_err']:.1e})"
        return f"FAIL {r['status']}: {r.get('error', '')[:120]}"

    order = list(V)
    out = ["| variant | legacy op17 | dynamo default |", "|---|---|---|"]
    for v in sorted(rows, key=lambda v: order.index(v) if v in order else 999):
        out.append(f"| {v} | {cell(rows[v].get('legacy'))} | {cell(rows[v].get('dynamo'))} |")
    ok = [r for r in results.values() if r["status"] == "OK"]
    worst = max((r["rel_err"] for r in ok), default=0.0)
    out.append("")
    out.append(f"{len(ok)} of {len(results)} files OK (largest relative error {worst:.1e}).")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fr")
    ap.add_argument("--only", default="")
    ap.add_argument("--group", default="")
    ap.add_argument("--exporters", default="legacy,dynamo")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.fr:
        return fr_worker(a.fr)
    if a.list:
        print("\n".join(f"{g:10s} {n}" for n, (g, *_) in V.items()))
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if a.table:
        print(table(results))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    names = [n for n in a.only.split(",") if n] or [n for n, v in V.items() if not a.group or v[0] == a.group]
    for n in names:
        try:
            run_variant(n, results, a.exporters.split(","))
        except Exception as e:
            print(f"{n}: BUILD FAIL {type(e).__name__}: {first_line(e)}", flush=True)
            traceback.print_exc(limit=4)
            results[f"{n}__build"] = {"variant": n, "exporter": "legacy", "status": "BUILD_FAIL",
                                      "error": f"{type(e).__name__}: {first_line(e)}"}
        cur = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        cur.update({k: v for k, v in results.items()})
        RESULTS.write_text(json.dumps(cur, indent=1))
        results = cur
    print()
    print(table(results))


if __name__ == "__main__":
    main()
