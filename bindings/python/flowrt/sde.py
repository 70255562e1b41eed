"""Host densities, flows over any base, trainers from densities and
mini-batch OT coupling (flowrt.h section "densities and SDE"; the score and
the SDE sampler are `Flow.score` and `Flow.sample_sde`).

    import flowrt, flowrt.sde
    base = flowrt.sde.Density.from_callbacks(2, sample=my_sampler, log_prob=my_log_prob)
    hosted = flowrt.sde.flow_with_base(model, base)
    trainer = flowrt.sde.trainer_from_densities(model, flowrt.sde.Density.empirical(B),
                                                flowrt.sde.Density.empirical(A), coupling="exact-ot")

The raw declarations below are 1:1 with the header (each with its C
prototype); the functions after them are the Pythonic layer.
"""
from __future__ import annotations

import ctypes
from ctypes import POINTER, c_double, c_float, c_int, c_int32, c_size_t, c_uint64, c_void_p

import numpy as np

from . import _capi
from ._arrays import dptr, fptr, points
from ._errors import check
from ._flow import Flow
from ._model import Model, _Handle
from ._trainer import Trainer

_lib = _capi.lib
_fp = POINTER(c_float)
_dp = POINTER(c_double)

# typedef int (*flowrt_density_sample_fn)(void *user_data, uint64_t seed, uint64_t first_index,
#                                         size_t n, size_t dim, float *out);
density_sample_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_size_t, c_size_t, _fp)
# typedef int (*flowrt_density_log_prob_fn)(void *user_data, size_t n, size_t dim, const float *x, double *out);
density_log_prob_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_size_t, c_size_t, _fp, _dp)


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


# flowrt_status flowrt_density_create_callbacks(size_t dim, flowrt_density_sample_fn sample,
#     flowrt_density_log_prob_fn log_prob, void *user_data, flowrt_density **out);
flowrt_density_create_callbacks = _declare("flowrt_density_create_callbacks", c_int, c_size_t, density_sample_fn,
                                           density_log_prob_fn, c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_density_create_diagonal_normal(size_t dim, const double *mean, const double *std, flowrt_density **out);
flowrt_density_create_diagonal_normal = _declare("flowrt_density_create_diagonal_normal", c_int, c_size_t, _dp, _dp,
                                                 POINTER(c_void_p))
# flowrt_status flowrt_density_create_empirical(size_t n, size_t dim, const float *x, flowrt_density **out);
flowrt_density_create_empirical = _declare("flowrt_density_create_empirical", c_int, c_size_t, c_size_t, _fp,
                                           POINTER(c_void_p))
# void flowrt_density_free(flowrt_density *density);
flowrt_density_free = _declare("flowrt_density_free", None, c_void_p)
# size_t flowrt_density_dim(const flowrt_density *density);
flowrt_density_dim = _declare("flowrt_density_dim", c_size_t, c_void_p)
# int flowrt_density_has_log_prob(const flowrt_density *density);
flowrt_density_has_log_prob = _declare("flowrt_density_has_log_prob", c_int, c_void_p)
# flowrt_status flowrt_density_sample(const flowrt_density *density, uint64_t seed, uint64_t first_index, size_t n, float *out);
flowrt_density_sample = _declare("flowrt_density_sample", c_int, c_void_p, c_uint64, c_uint64, c_size_t, _fp)
# flowrt_status flowrt_density_log_prob(const flowrt_density *density, size_t n, const float *x, double *out);
flowrt_density_log_prob = _declare("flowrt_density_log_prob", c_int, c_void_p, c_size_t, _fp, _dp)
# flowrt_status flowrt_flow_create_with_base(const flowrt_model *model, const flowrt_flow_params *params,
#     const flowrt_density *base, flowrt_flow **out);
flowrt_flow_create_with_base = _declare("flowrt_flow_create_with_base", c_int, c_void_p,
                                        POINTER(_capi.flowrt_flow_params), c_void_p, POINTER(c_void_p))
# flowrt_status flowrt_trainer_create_from_densities(const flowrt_model *init, const flowrt_density *target,
#     const flowrt_density *base, size_t heldout, const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create_from_densities = _declare("flowrt_trainer_create_from_densities", c_int, c_void_p, c_void_p,
                                                c_void_p, c_size_t, POINTER(_capi.flowrt_trainer_params),
                                                POINTER(c_void_p))
# typedef enum flowrt_coupling
COUPLINGS = {"independent": 0, "exact-ot": 1}
# flowrt_status flowrt_trainer_set_coupling(flowrt_trainer *trainer, int32_t coupling);
flowrt_trainer_set_coupling = _declare("flowrt_trainer_set_coupling", c_int, c_void_p, c_int32)


class Density(_Handle):
    """A density for flows' bases: host callbacks, a diagonal normal, or an
    empirical sample set (sample-only)."""
    _free = staticmethod(flowrt_density_free)

    def __init__(self, handle, keep=None):
        super().__init__(handle)
        self._keep = keep  # the ctypes callbacks must outlive the C object

    @classmethod
    def from_callbacks(cls, dim: int, sample, log_prob=None) -> "Density":
        """sample(seed, first_index, n) -> array [n, dim] (row i a function of
        (seed, first_index + i) only); log_prob(X [n, dim]) -> [n] nats.
        Exceptions in a callback become NaN and a NonFinite error."""
        def c_sample(_, seed, first, n, d, out):
            try:
                np.ctypeslib.as_array(out, shape=(n, d))[:] = np.asarray(sample(seed, first, n), np.float32).reshape(n, d)
                return 0
            except Exception:
                return 1

        def c_log_prob(_, n, d, x, out):
            try:
                np.ctypeslib.as_array(out, shape=(n,))[:] = np.asarray(log_prob(np.ctypeslib.as_array(x, shape=(n, d)).copy()),
                                                                       np.float64).reshape(n)
                return 0
            except Exception:
                return 1

        keep = (density_sample_fn(c_sample), density_log_prob_fn(c_log_prob) if log_prob is not None else None)
        h = c_void_p()
        check(flowrt_density_create_callbacks(int(dim), keep[0], keep[1] or density_log_prob_fn(), None, ctypes.byref(h)))
        return cls(h, keep)

    @classmethod
    def diagonal_normal(cls, mean, std) -> "Density":
        m = np.ascontiguousarray(mean, np.float64)
        s = np.ascontiguousarray(std, np.float64)
        if m.shape != s.shape or m.ndim != 1:
            raise ValueError("mean and std must be 1-D of the same length")
        h = c_void_p()
        check(flowrt_density_create_diagonal_normal(m.shape[0], dptr(m), dptr(s), ctypes.byref(h)))
        return cls(h)

    @classmethod
    def empirical(cls, X) -> "Density":
        x = np.ascontiguousarray(X, np.float32)
        if x.ndim != 2:
            raise ValueError("X must be [n, dim]")
        h = c_void_p()
        check(flowrt_density_create_empirical(x.shape[0], x.shape[1], fptr(x), ctypes.byref(h)))
        return cls(h)

    @property
    def dim(self) -> int:
        return int(flowrt_density_dim(self._handle))

    @property
    def has_log_prob(self) -> bool:
        return bool(flowrt_density_has_log_prob(self._handle))

    def sample(self, n: int, seed: int = 0, first_index: int = 0) -> np.ndarray:
        x = np.empty((int(n), self.dim), np.float32)
        check(flowrt_density_sample(self._handle, int(seed), int(first_index), int(n), fptr(x)))
        return x

    def log_prob(self, X) -> np.ndarray:
        x = points(X, self.dim)
        out = np.empty(x.shape[0], np.float64)
        check(flowrt_density_log_prob(self._handle, x.shape[0], fptr(x), dptr(out)))
        return out


def flow_with_base(model: Model, base: Density, interpolant: str = "trig") -> Flow:
    """A Flow over `model` whose base ρ0 is `base` (which must have a
    log-density). Sampling, transport, encoding and log-densities use it;
    the score and the SDE need a diagonal normal base. (Such flows cannot
    yet be saved as ONNX.)"""
    p = _capi.flowrt_flow_default_params()
    p.interpolant = _capi.INTERPOLANTS[interpolant]
    h = c_void_p()
    check(flowrt_flow_create_with_base(model._handle, ctypes.byref(p), base._handle, ctypes.byref(h)))
    flow = Flow.__new__(Flow)
    _Handle.__init__(flow, h)
    flow.model, flow.interpolant, flow.base = model, interpolant, "custom"
    flow._density = base  # keeps the host callbacks alive as long as the flow
    return flow


def trainer_from_densities(model: Model, target: Density, base: Density | None = None, heldout: int = 0,
                           interpolant: str = "trig", coupling: str = "independent", lr: float | None = None,
                           batch_size: int | None = None, ema: float | None = None, seed: int | None = None,
                           threads: int | None = None) -> Trainer:
    """A `flowrt.Trainer` drawing x1 from `target` and x0 from `base`
    (default N(0, I)): with two `Density.empirical` sets, data-to-data
    transport. `coupling="exact-ot"` pairs x0 and x1 by mini-batch optimal
    transport."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {sorted(COUPLINGS)}, got {coupling!r}")
    p = _capi.flowrt_trainer_default_params()
    p.interpolant = _capi.INTERPOLANTS[interpolant]
    for value, field in ((lr, "learning_rate"), (batch_size, "batch_size"), (ema, "ema_decay"), (seed, "seed"),
                         (threads, "threads")):
        if value is not None:
            setattr(p, field, value)
    h = c_void_p()
    check(flowrt_trainer_create_from_densities(model._handle, target._handle, base._handle if base else None,
                                               int(heldout), ctypes.byref(p), ctypes.byref(h)))
    trainer = Trainer.__new__(Trainer)
    _Handle.__init__(trainer, h)
    trainer.interpolant, trainer.dim = interpolant, model.dim
    trainer._densities = (target, base)  # the C trainer uses their callbacks
    check(flowrt_trainer_set_coupling(h, COUPLINGS[coupling]))
    return trainer
