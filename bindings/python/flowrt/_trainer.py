"""Layer 3: Trainer (the quadratic interpolant loss, no ODE in training)."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from . import _capi
from ._arrays import points
from ._errors import ShapeMismatch, check
from ._model import Model, _Handle
from ._progress import Progress
from ._schedule import apply as apply_interpolant, checker


@dataclass
class Losses:
    """Latest losses: G of the last minibatch and of the held-out set, and
    the regression form E|v − ∂tI|² = G + E|∂tI|² of each (NaN when not
    available)."""
    train: float
    heldout: float
    train_regression: float
    heldout_regression: float
    steps: int


class Trainer(_Handle):
    """Trains a copy of `model` on `X` [n, dim]. Results depend only on the
    data, the model and the settings (seed included), never on `threads`.

    `interpolant` is "trig", "linear", or a Python callable
    t -> (alpha, beta, dalpha, dbeta) (α, β and their time derivatives) with
    alpha(0) = beta(1) = 1, alpha(1) = beta(0) = 0, checked at creation. It
    must be a pure function of t; it is called once per training sample per
    step, from the worker threads, which the GIL serialises: about 0.5 µs per
    call on one thread, and contention makes several threads slower than one
    (measured: a 3×256 MLP, batch 1024, 7.8 ms/step on 1 thread, 12 ms on 2,
    against 7.5 and 3.9 ms with "linear"), so prefer threads=1 with a Python
    schedule. If it raises, the call fails with a FlowError whose __cause__
    is the exception, and that step is not applied.

    Settings (C defaults when omitted): interpolant, coupling ("independent"
    | "exact-ot": mini-batch optimal transport pairs x0 with x1), lr,
    batch_size, optimizer ("adam" | "adamw"), weight_decay, warmup,
    schedule ("constant" | "cosine" | "step"), total_steps (cosine horizon),
    lr_min_factor, step_every, step_factor, clip, ema, heldout (fraction),
    seed, threads, time_beta=(a, b).

    Path-length optimisation: `interpolant="fourier"` learns the schedule
    α = 1 − t + Σ a_k sin(kπt), β = t + Σ b_k sin(kπt) (k = 1..`terms`,
    starting linear) by ascent on min_v G alternating with the network's
    descent, which shortens the path toward W2² (DESIGN.md §1). Settings:
    terms (default 4), path_lr (0.001), path_warmup (300 network-only
    updates), path_inner (8 network updates per schedule update), path_batch
    (schedule samples; default batch_size), path_bound (2). A step is then
    one network update during the warmup and path_inner updates plus one
    schedule update after it; `fourier_coefficients`, `kinetic_energy` and
    `flow()` give the result, and the saved flow keeps its coefficients.
    Checkpoints and couplings are not available for it.

    A conditional model (context_dim > 0) trains on pairs (X[i], context[i]):
    `context` [n, m] floats, or [n] class labels; `label_dropout` p replaces
    a label by the null class (the last) with probability p (seeded), so
    that sampling can use guidance. Checkpoints hold no contexts: resume with
    the same X and context.

    X may be 8-bit images (a uint8 array [n, ...] of n images in the
    model's shape): each training sample then gets fresh uniform
    dequantization noise, y = (pixel + u)/128 − 1, drawn in the library
    from (seed, sample index), and the last ⌊n·heldout⌋ images are held
    out. For a conditional model the images are dequantized once, with
    NumPy (`flowrt.images.dequantize`, seeded by `seed`), and train as
    float pairs.
    """
    _free = staticmethod(_capi.flowrt_trainer_free)

    def __init__(self, model: Model, X, interpolant="trig", lr: float | None = None,
                 batch_size: int | None = None, optimizer: str | None = None, weight_decay: float | None = None,
                 warmup: int | None = None, schedule: str | None = None, total_steps: int | None = None,
                 lr_min_factor: float | None = None, step_every: int | None = None,
                 step_factor: float | None = None, clip: float | None = None, ema: float | None = None,
                 heldout: float | None = None, seed: int | None = None, threads: int | None = None,
                 time_beta: tuple[float, float] | None = None, context=None, label_dropout: float | None = None,
                 terms: int | None = None, path_lr: float | None = None, path_warmup: int | None = None,
                 path_inner: int | None = None, path_batch: int | None = None, path_bound: float | None = None,
                 coupling: str | None = None):
        m = model.context_dim
        pixels = None
        if isinstance(X, np.ndarray) and X.dtype == np.uint8:
            # 8-bit images: fresh dequantization noise per training sample in
            # the library (unconditional), or dequantized once here (pairs).
            if X.ndim == 0 or X.size != X.shape[0] * model.dim:
                raise ShapeMismatch(f"images must hold {model.dim} values each (the model's shape "
                                    f"{list(model.shape)}), got shape {list(X.shape)}")
            if m == 0:
                pixels = np.ascontiguousarray(X.reshape(X.shape[0], model.dim))
            else:
                from .images import dequantize
                X = dequantize(X.reshape((X.shape[0], 1, -1)), seed=seed or 0)
        x = pixels if pixels is not None else points(X, model.dim)
        c = None
        if m > 0:
            if context is None:
                raise ValueError(f"this model is conditional ({m} context value{'s' if m > 1 else ''} per sample): "
                                 f"pass context=[n, {m}]" + (" class labels" if model.num_classes else ""))
            c = np.asarray(context, dtype=np.float32)
            if c.size != x.shape[0] * m or not (c.ndim == 2 and c.shape[1] == m or c.ndim == 1 and m == 1):
                raise ShapeMismatch(f"context must have shape [{x.shape[0]}, {m}], got {list(c.shape)}")
            c = np.ascontiguousarray(c.reshape(x.shape[0], m))
        elif context is not None:
            raise ValueError("this model is unconditional: context must be None")
        p = _capi.flowrt_trainer_default_params()
        path = _path_params(interpolant, terms, path_lr, path_warmup, path_inner, path_batch, path_bound)
        if path is not None:
            if m > 0:
                raise ValueError("path-length optimisation (interpolant='fourier') takes an unconditional model")
            name, interpolant_fn = "fourier", None
            if pixels is not None:  # the path-length trainer takes floats: dequantize once here
                from .images import dequantize
                x, pixels = dequantize(pixels.reshape((pixels.shape[0], 1, -1)), seed=seed or 0), None
        else:
            name, interpolant_fn = apply_interpolant(p, interpolant)  # `schedule` is the learning-rate schedule
        if optimizer is not None:
            if optimizer not in _capi.OPTIMIZERS:
                raise ValueError(f"optimizer must be one of {sorted(_capi.OPTIMIZERS)}")
            p.optimizer = _capi.OPTIMIZERS[optimizer]
        if schedule is not None:
            if schedule not in _capi.LR_SCHEDULES:
                raise ValueError(f"schedule must be one of {sorted(_capi.LR_SCHEDULES)}")
            p.lr_schedule = _capi.LR_SCHEDULES[schedule]
        for value, field in ((lr, "learning_rate"), (batch_size, "batch_size"), (weight_decay, "weight_decay"),
                             (warmup, "warmup_steps"), (total_steps, "total_steps"),
                             (lr_min_factor, "lr_min_factor"), (step_every, "step_every"),
                             (step_factor, "step_factor"), (clip, "grad_clip"), (ema, "ema_decay"),
                             (heldout, "heldout_fraction"), (seed, "seed"), (threads, "threads")):
            if value is not None:
                setattr(p, field, value)
        if time_beta is not None:
            p.time_beta_a, p.time_beta_b = time_beta
        if label_dropout is not None:
            p.label_dropout = float(label_dropout)
        if coupling is not None:
            if coupling not in _capi.COUPLINGS:
                raise ValueError(f"coupling must be one of {sorted(_capi.COUPLINGS)}, got {coupling!r}")
            p.coupling = _capi.COUPLINGS[coupling]
        h = ctypes.c_void_p()
        self._check = checker(interpolant_fn)
        if path is not None:
            check(_capi.flowrt_trainer_create_path_length(model._handle, x.ctypes.data_as(_capi.c_float_p), x.shape[0],
                                                          x.shape[1], ctypes.byref(p), ctypes.byref(path),
                                                          ctypes.byref(h)))
        elif c is not None or (label_dropout or 0) > 0:
            self._check(_capi.flowrt_trainer_create_conditional(
                model._handle, x.ctypes.data_as(_capi.c_float_p),
                c.ctypes.data_as(_capi.c_float_p) if c is not None else None,
                x.shape[0], x.shape[1], m, ctypes.byref(p), ctypes.byref(h)))
        elif pixels is not None:
            self._check(_capi.flowrt_trainer_create_images(model._handle, pixels.ctypes.data_as(ctypes.c_void_p),
                                                           pixels.shape[0], pixels.shape[1], ctypes.byref(p),
                                                           ctypes.byref(h)))
        else:
            self._check(_capi.flowrt_trainer_create(model._handle, x.ctypes.data_as(_capi.c_float_p), x.shape[0],
                                                    x.shape[1], ctypes.byref(p), ctypes.byref(h)))
        super().__init__(h)
        self.interpolant = name
        self._schedule = interpolant_fn  # the C trainer calls it: alive as long as self
        self.dim = model.dim
        self.context_dim = m

    def step(self) -> float:
        """One optimisation step; returns the minibatch's G before the update."""
        loss = ctypes.c_double()
        self._check(_capi.flowrt_trainer_step(self._handle, ctypes.byref(loss)))
        return loss.value

    def fit(self, steps: int, progress=False, callback=None) -> Losses:
        """Runs `steps` steps. `progress=True` shows a bar (tqdm if installed);
        `callback(step, steps, loss)` may return True to stop; Ctrl-C stops
        training after the current step (completed steps are kept) and
        re-raises KeyboardInterrupt."""
        prog = Progress(show=bool(progress), callback=callback, desc="fit", unit="steps")
        try:
            status = _capi.flowrt_trainer_fit(self._handle, int(steps), prog.c_callback, None)
        finally:
            prog.close()
        prog.raise_if_interrupted()
        if status != _capi.CANCELLED or callback is None:
            self._check(status)
        return self.losses

    @property
    def losses(self) -> Losses:
        v = [ctypes.c_double() for _ in range(4)]
        check(_capi.flowrt_trainer_loss(self._handle, *[ctypes.byref(x) for x in v]))
        return Losses(*[x.value for x in v], steps=int(_capi.flowrt_trainer_step_count(self._handle)))

    def model(self) -> Model:
        """A snapshot of the current (EMA) weights, independent of further training."""
        h = ctypes.c_void_p()
        check(_capi.flowrt_trainer_model(self._handle, ctypes.byref(h)))
        return Model(h)

    def flow(self):
        """The flow trained so far: `model()` with the trainer's interpolant
        (for interpolant='fourier' its current learned schedule), ready to
        sample, evaluate or `save` (the file keeps the coefficients)."""
        from ._flow import Flow
        h = ctypes.c_void_p()
        check(_capi.flowrt_trainer_flow(self._handle, ctypes.byref(h)))
        flow = Flow._from_handle(h)
        flow._schedule = self._schedule  # a Python schedule the C flow calls
        if self._schedule is not None:
            flow.interpolant = "custom"
        return flow

    @property
    def fourier_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b): the current Fourier coefficients of a path-length trainer
        (interpolant='fourier'), float64 [terms] each."""
        return _coefficients(_capi.flowrt_trainer_path_state, self._handle, None)

    @property
    def kinetic_energy(self) -> float:
        """The path-length trainer's last estimate of ∫ E|v̂(t, x_t)|² dt on
        its schedule batch (NaN during the warmup): the path length it shortens."""
        energy = ctypes.c_double()
        _coefficients(_capi.flowrt_trainer_path_state, self._handle, ctypes.byref(energy))
        return energy.value

    def save_checkpoint(self, path) -> None:
        check(_capi.flowrt_trainer_save_checkpoint(self._handle, str(path).encode()))

    def load_checkpoint(self, path) -> None:
        check(_capi.flowrt_trainer_load_checkpoint(self._handle, str(path).encode()))


def _path_params(interpolant, terms, lr, warmup, inner, batch, bound):
    """A flowrt_path_params for interpolant='fourier' (None otherwise; path
    settings without it are an error)."""
    given = {k: v for k, v in dict(terms=terms, path_lr=lr, path_warmup=warmup, path_inner=inner,
                                   path_batch=batch, path_bound=bound).items() if v is not None}
    if not (isinstance(interpolant, str) and interpolant == "fourier"):
        if given:
            raise ValueError(f"{', '.join(sorted(given))} apply to path-length optimisation: pass interpolant='fourier'")
        return None
    q = _capi.flowrt_path_default_params()
    for value, field in ((terms, "terms"), (lr, "learning_rate"), (warmup, "warmup_steps"),
                         (inner, "network_steps"), (batch, "batch_size"), (bound, "coefficient_bound")):
        if value is not None:
            setattr(q, field, value)
    return q


def _coefficients(fn, handle, energy):
    """(a, b) from flowrt_trainer_path_state / flowrt_flow_fourier_coefficients
    (`energy`: the trainer call's kinetic-energy pointer, or None for a flow)."""
    k = ctypes.c_size_t()
    extra = (energy,) if fn is _capi.flowrt_trainer_path_state else ()
    status = fn(handle, None, None, 0, ctypes.byref(k), *extra)
    if k.value == 0:
        check(status)
        return np.zeros(0), np.zeros(0)
    a, b = np.zeros(k.value), np.zeros(k.value)
    check(fn(handle, a.ctypes.data_as(_capi.c_double_p), b.ctypes.data_as(_capi.c_double_p), k.value,
             ctypes.byref(k), *extra))
    return a, b
