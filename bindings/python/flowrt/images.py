"""Image helpers for flows over 8-bit images (issue 14; DESIGN.md §5).

    from flowrt import images
    x = images.fashion_mnist("train")            # uint8 [60000, 28, 28] (Debian's dataset-fashion-mnist)
    flow = flowrt.Flow(flowrt.Model.unet())
    flow.fit(images.dequantize(x[:59000]), steps=2000, batch_size=32)
    mean, se, _ = images.bits_per_dim(flow, images.fashion_mnist("test")[:200])

`dequantize` draws its uniform noise with NumPy (seeded), so its values differ
from the Swift/CLI dequantization (`RandomStream`), with the same
distribution; bits/dim agree within their standard errors.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _as_images(images) -> np.ndarray:
    a = np.asarray(images)
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"images must be uint8 (or integers in 0..255), got {a.dtype}")
        a = a.astype(np.uint8)
    if a.ndim not in (3, 4):
        raise ValueError(f"images must be [n, H, W] or [n, C, H, W], got shape {a.shape}")
    return a


def dequantize(images, seed: int = 0) -> np.ndarray:
    """y = (k + u)/128 − 1 with u ~ U[0, 1) per pixel: float32 [n, C·H·W] in
    [−1, 1), the flow's layout (DESIGN.md §5)."""
    a = _as_images(images)
    u = np.random.default_rng(seed).random(a.shape)
    y = ((a.astype(np.float64) + u) / 128 - 1).astype(np.float32)
    np.minimum(y, np.nextafter(np.float32(1), np.float32(0)), out=y)
    return y.reshape(a.shape[0], -1)


def bits_per_dim(flow, images, probes: int | None = 1, seed: int = 0, **solver):
    """Bits per dimension of 8-bit `images` under `flow`: dequantized with
    `seed`, bpd_i = −ln p(y_i)/(d ln 2) + 7. `probes` Hutchinson probes per
    image (None: the exact divergence, d forward passes per step). Returns
    (mean, standard error over images, per-image bpd)."""
    y = dequantize(images, seed)
    d = y.shape[1]
    if d != flow.dim:
        raise ValueError(f"images have {d} values each but the flow's dimension is {flow.dim}")
    if probes is None:
        lp = flow.log_prob(y, divergence="exact", **solver)
    else:
        solver.setdefault("probe_seed", seed)
        lp = flow.log_prob(y, divergence="hutchinson", probes=int(probes), **solver)
    bpd = -lp / (d * np.log(2)) + 7
    se = bpd.std(ddof=1) / np.sqrt(len(bpd)) if len(bpd) > 1 else float("nan")
    return float(bpd.mean()), float(se), bpd


def read_idx(path) -> np.ndarray:
    """An IDX file of unsigned bytes (plain or .gz), as uint8 with its shape."""
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] or data[1] or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    shape = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


def fashion_mnist(split: str = "train", labels: bool = False) -> np.ndarray:
    """Fashion-MNIST from Debian's dataset-fashion-mnist (`make deps`
    installs it; FLOWRT_FASHION_MNIST_DIR overrides the folder): images
    uint8 [n, 28, 28] or labels [n] of the official train/test split."""
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    folder = os.environ.get("FLOWRT_FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    name = f"{'train' if split == 'train' else 't10k'}-{'labels-idx1' if labels else 'images-idx3'}-ubyte"
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return read_idx(path)
    raise FileNotFoundError(f"{folder}/{name}[.gz]: install Debian's dataset-fashion-mnist (make deps)")
