"""Layer 3: the Model class (a velocity network v(t, x))."""
from __future__ import annotations

import ctypes

import numpy as np

from . import _capi
from ._arrays import dptr, fptr, points, times
from ._errors import check


class _Handle:
    """Owns a C handle: close(), context manager, finalizer."""
    _free = None

    def __init__(self, handle: ctypes.c_void_p):
        self._h = handle

    @property
    def _handle(self):
        if not self._h:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._h

    def close(self) -> None:
        """Releases the C object; further use raises ValueError. Idempotent."""
        if getattr(self, "_h", None):
            type(self)._free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Model(_Handle):
    """A velocity network v̂(t, x). Immutable and thread-safe.

    Create with `Model.mlp(...)` or `flowrt.load_model(path)`.
    """
    _free = staticmethod(_capi.flowrt_model_free)

    @classmethod
    def mlp(cls, dim: int, hidden: int = 256, depth: int = 3, activation: str = "silu",
            time_encoding: str = "concat", time_frequencies: int = 16, residual: bool = False,
            seed: int = 0) -> "Model":
        """A native MLP v(t, x) initialised from `seed` (PyTorch's default init)."""
        p = _capi.flowrt_mlp_default_params()
        p.dim, p.width, p.depth = dim, hidden, depth
        if activation not in _capi.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_capi.ACTIVATIONS)}, got {activation!r}")
        if time_encoding not in _capi.TIME_ENCODINGS:
            raise ValueError(f"time_encoding must be one of {sorted(_capi.TIME_ENCODINGS)}")
        p.activation = _capi.ACTIVATIONS[activation]
        p.time_encoding = _capi.TIME_ENCODINGS[time_encoding]
        p.time_frequencies = time_frequencies
        p.residual = int(bool(residual))
        p.seed = seed
        h = ctypes.c_void_p()
        check(_capi.flowrt_model_create_mlp(ctypes.byref(p), ctypes.byref(h)))
        return cls(h)

    @property
    def dim(self) -> int:
        """The state dimension d."""
        return int(_capi.flowrt_model_dim(self._handle))

    @property
    def parameter_count(self) -> int:
        return int(_capi.flowrt_model_parameter_count(self._handle))

    def velocity(self, t, X) -> np.ndarray:
        """v(t, X) for X [n, dim] (t scalar or [n]); returns float32 [n, dim]."""
        x = points(X, self.dim)
        tt = times(t, x.shape[0])
        v = np.empty_like(x)
        check(_capi.flowrt_model_velocity(self._handle, x.shape[0], dptr(tt), fptr(x), fptr(v)))
        return v

    def divergence(self, t, X) -> np.ndarray:
        """Exact ∇·v(t, X) per row (float64 [n]), one batched tangent pass."""
        x = points(X, self.dim)
        tt = times(t, x.shape[0])
        div = np.empty(x.shape[0], np.float64)
        check(_capi.flowrt_model_divergence(self._handle, x.shape[0], dptr(tt), fptr(x), None, dptr(div)))
        return div
