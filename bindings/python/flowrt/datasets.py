"""Built-in 2-D datasets with closed-form densities (the library's own, so
samples and densities match the CLI and C exactly).

Names: "checkerboard", "8gaussians", "rings" (density and true entropy
known), "moons" (samples only).
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import _capi
from ._arrays import count, dptr, fptr, points
from ._errors import check

NAMES = ("checkerboard", "8gaussians", "rings", "moons")


def info(name: str) -> tuple[int, float]:
    """(dimension, true entropy in nats; NaN when unknown)."""
    dim, h = ctypes.c_size_t(), ctypes.c_double()
    check(_capi.flowrt_dataset_info(name.encode(), ctypes.byref(dim), ctypes.byref(h)))
    return dim.value, h.value


def entropy(name: str) -> float:
    """True differential entropy H = −E[log ρ] in nats (NaN when unknown)."""
    return info(name)[1]


def sample(name: str, n: int, seed: int = 0, first_index: int = 0) -> np.ndarray:
    """n samples, float32 [n, 2]; sample i depends only on (seed,
    first_index + i), so ranges of one stream can be drawn separately."""
    dim = info(name)[0]
    n = count(n)
    x = np.empty((n, dim), np.float32)
    check(_capi.flowrt_dataset_sample_range(name.encode(), int(first_index), n, int(seed), fptr(x)))
    return x


def log_prob(name: str, X) -> np.ndarray:
    """Exact log-density in nats (−inf off the support), float64 [n]."""
    x = points(X, info(name)[0])
    lp = np.empty(x.shape[0], np.float64)
    check(_capi.flowrt_dataset_log_prob(name.encode(), x.shape[0], fptr(x), dptr(lp)))
    return lp
