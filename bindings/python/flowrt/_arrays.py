"""numpy conversions: accept any array-like, convert once, check shapes."""
from __future__ import annotations

import ctypes

import numpy as np

from ._errors import ShapeMismatch


def points(x, dim: int, name: str = "X") -> np.ndarray:
    """A C-contiguous float32 [n, dim] array (a 1-d input of length dim is one point)."""
    a = np.asarray(x)
    if a.ndim == 1 and a.shape[0] == dim:
        a = a[None, :]
    elif a.ndim == 1 and a.shape[0] == 0:
        a = a.reshape(0, dim)  # [] is an empty batch
    if a.ndim != 2 or a.shape[1] != dim:
        raise ShapeMismatch(f"{name} must have shape [n, {dim}], got {list(a.shape)}")
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def times(t, n: int, name: str = "t") -> np.ndarray:
    """A C-contiguous float64 [n] array; a scalar is broadcast."""
    a = np.asarray(t, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
    if a.shape != (n,):
        raise ShapeMismatch(f"{name} must be a scalar or have shape [{n}], got {list(np.shape(t))}")
    return np.ascontiguousarray(a)


def count(n, name: str = "n") -> int:
    """A batch size as an int ≥ 0 (0 is an empty batch); ValueError otherwise.
    (A negative Python int would wrap to a huge size_t in ctypes.)"""
    n = int(n)
    if n < 0:
        raise ValueError(f"{name} = {n} must be >= 0")
    return n


def fptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def dptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
