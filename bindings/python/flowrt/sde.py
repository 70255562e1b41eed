"""Score, SDE sampling and host densities (flowrt.h section "densities and
SDE").

    import flowrt, flowrt.sde
    flow = flowrt.Flow.mlp(2, seed=0)            # (train it first)
    s = flowrt.sde.score(flow, 0.5, X)            # ∇ log ρ_t(X), float32 [n, d]
    x = flowrt.sde.sample_sde(flow, 1000, seed=1, epsilon=1.0)
    base = flowrt.sde.Density.from_callbacks(2, sample=my_sampler, log_prob=my_log_prob)
    hosted = flowrt.sde.flow_with_base(flow.model, base)

The raw declarations below are 1:1 with the header (each with its C
prototype); the functions after them are the Pythonic layer.
"""
from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_double, c_float, c_int, c_int32, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np

from . import _capi
from ._arrays import dptr, fptr, points, times
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
# typedef double (*flowrt_diffusion_fn)(void *user_data, double t);
diffusion_fn = ctypes.CFUNCTYPE(c_double, c_void_p, c_double)

# typedef enum flowrt_sde_method
SDE_METHODS = {"heun": 0, "euler-maruyama": 1}


class flowrt_sde_params(Structure):
    """typedef struct flowrt_sde_params { ... } flowrt_sde_params;"""
    _fields_ = [("struct_size", c_uint32), ("method", c_int32), ("steps", c_uint32), ("epsilon", c_double),
                ("taper", c_double), ("diffusion", diffusion_fn), ("diffusion_user_data", c_void_p),
                ("threads", c_uint32)]


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
# flowrt_status flowrt_flow_score(const flowrt_flow *flow, size_t n, const double *t, const float *x, float *score_out);
flowrt_flow_score = _declare("flowrt_flow_score", c_int, c_void_p, c_size_t, _dp, _fp, _fp)
# flowrt_sde_params flowrt_sde_default_params(void);
flowrt_sde_default_params = _declare("flowrt_sde_default_params", flowrt_sde_params)
# flowrt_status flowrt_flow_sample_sde(const flowrt_flow *flow, const flowrt_sde_params *params, uint64_t seed,
#     uint64_t first_index, size_t n, float *x_out);
flowrt_flow_sample_sde = _declare("flowrt_flow_sample_sde", c_int, c_void_p, POINTER(flowrt_sde_params), c_uint64,
                                  c_uint64, c_size_t, _fp)

# flowrt_status flowrt_trainer_create_from_densities(const flowrt_model *init, const flowrt_density *target,
#     const flowrt_density *base, size_t heldout, const flowrt_trainer_params *params, flowrt_trainer **out);
flowrt_trainer_create_from_densities = _declare("flowrt_trainer_create_from_densities", c_int, c_void_p, c_void_p,
                                                c_void_p, c_size_t, POINTER(_capi.flowrt_trainer_params),
                                                POINTER(c_void_p))
# typedef enum flowrt_coupling
COUPLINGS = {"independent": 0, "exact-ot": 1}
# flowrt_status flowrt_trainer_set_coupling(flowrt_trainer *trainer, int32_t coupling);
flowrt_trainer_set_coupling = _declare("flowrt_trainer_set_coupling", c_int, c_void_p, c_int32)


def score(flow: Flow, t, X) -> np.ndarray:
    """The score ∇ log ρ_t(X) from the flow's velocity (float32 [n, dim]); t
    is a scalar or [n]. Raises InvalidArgument at singular times (t = 1) and
    Unsupported for a non-Gaussian base."""
    x = points(X, flow.dim)
    tt = times(t, x.shape[0])
    out = np.empty_like(x)
    check(flowrt_flow_score(flow._handle, x.shape[0], dptr(tt), fptr(x), fptr(out)))
    return out


def sample_sde(flow: Flow, n: int, seed: int = 0, epsilon: float = 1.0, steps: int = 200, method: str = "heun",
               taper: float = 0.1, diffusion=None, first_index: int = 0, threads: int = 0) -> np.ndarray:
    """n samples (float32 [n, dim]) by dX = [v + ε s] dt + √(2ε) dW, which has
    the flow's marginals. `diffusion`, if given, is a function t ↦ ε(t) ≥ 0
    (called on this thread); otherwise ε = epsilon. Sample i depends only on
    (seed, first_index + i)."""
    if method not in SDE_METHODS:
        raise ValueError(f"method must be one of {sorted(SDE_METHODS)}, got {method!r}")
    p = flowrt_sde_default_params()
    p.method, p.steps, p.epsilon, p.taper, p.threads = SDE_METHODS[method], int(steps), float(epsilon), float(taper), int(threads)
    keep = None
    if diffusion is not None:
        keep = diffusion_fn(lambda _, t: float(diffusion(t)))
        p.diffusion = keep
    x = np.empty((int(n), flow.dim), np.float32)
    check(flowrt_flow_sample_sde(flow._handle, ctypes.byref(p), int(seed), int(first_index), int(n), fptr(x)))
    del keep
    return x


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
