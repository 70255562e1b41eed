"""Layer 3: base densities (diagonal normal, empirical samples, host callbacks)."""
from __future__ import annotations

import ctypes

import numpy as np

from . import _capi
from ._arrays import count, dptr, fptr, points
from ._errors import check
from ._model import _Handle


class Density(_Handle):
    """A density on R^dim usable as a flow's base: `Flow(model, base=density)`.

    Create with `Density.diagonal_normal(mean, std)`, `Density.empirical(X)`
    (samples only) or `Density.from_callbacks(dim, sample, log_prob)`.
    """
    _free = staticmethod(_capi.flowrt_density_free)

    @classmethod
    def diagonal_normal(cls, mean, std) -> "Density":
        mean = np.ascontiguousarray(mean, np.float64).reshape(-1)
        std = np.ascontiguousarray(std, np.float64).reshape(-1)
        h = ctypes.c_void_p()
        check(_capi.flowrt_density_create_diagonal_normal(mean.shape[0], dptr(mean), dptr(std), ctypes.byref(h)))
        return cls(h)

    @classmethod
    def empirical(cls, X) -> "Density":
        """Uniform resampling of the rows of X [n, dim] (no log-density)."""
        x = np.ascontiguousarray(X, np.float32)
        if x.ndim != 2:
            raise ValueError(f"X must be [n, dim], got {x.shape}")
        h = ctypes.c_void_p()
        check(_capi.flowrt_density_create_empirical(x.shape[0], x.shape[1], fptr(x), ctypes.byref(h)))
        return cls(h)

    @classmethod
    def from_callbacks(cls, dim: int, sample, log_prob=None) -> "Density":
        """A host density: `sample(seed, first_index, n) -> [n, dim]` (the C
        callback's order; row i must depend only on (seed, first_index + i)
        for reproducibility) and optional `log_prob(X) -> [n]` in nats. An
        exception in a callback makes the calling operation fail (NonFinite).
        The callbacks run on the library's threads, taking the GIL per call."""
        def c_sample(_user, seed, first, n, d, out):
            try:
                arr = np.asarray(sample(int(seed), int(first), int(n)), np.float32).reshape(int(n), int(d))
                ctypes.memmove(out, arr.ctypes.data, arr.nbytes)
                return 0
            except Exception:
                return 1

        def c_log_prob(_user, n, d, x, out):
            try:
                xs = np.ctypeslib.as_array(x, shape=(int(n), int(d))).copy()
                lp = np.asarray(log_prob(xs), np.float64).reshape(int(n))
                ctypes.memmove(out, lp.ctypes.data, lp.nbytes)
                return 0
            except Exception:
                return 1

        cs = _capi.density_sample_fn(c_sample)
        cl = _capi.density_log_prob_fn(c_log_prob) if log_prob is not None else ctypes.cast(None, _capi.density_log_prob_fn)
        h = ctypes.c_void_p()
        check(_capi.flowrt_density_create_callbacks(int(dim), cs, cl, None, ctypes.byref(h)))
        self = cls(h)
        self._callbacks = (cs, cl)  # the library keeps the pointers: keep them alive
        return self

    @property
    def dim(self) -> int:
        return int(_capi.flowrt_density_dim(self._handle))

    @property
    def has_log_prob(self) -> bool:
        return bool(_capi.flowrt_density_has_log_prob(self._handle))

    def sample(self, n: int, seed: int = 0, first_index: int = 0) -> np.ndarray:
        n = count(n)
        x = np.empty((n, self.dim), np.float32)
        check(_capi.flowrt_density_sample_range(self._handle, int(first_index), n, int(seed), fptr(x)))
        return x

    def log_prob(self, X) -> np.ndarray:
        x = points(X, self.dim)
        lp = np.empty(x.shape[0], np.float64)
        check(_capi.flowrt_density_log_prob(self._handle, x.shape[0], fptr(x), dptr(lp)))
        return lp
