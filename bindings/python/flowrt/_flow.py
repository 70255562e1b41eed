"""Layer 3: Flow = model + interpolant + base density."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from . import _capi
from ._arrays import count, dptr, fptr, points, times
from ._errors import ShapeMismatch, check
from ._model import Model, _Handle, _PRECISION_NAMES, _PrecisionSettings
from ._progress import Progress
from ._schedule import apply as apply_interpolant, checker


@dataclass
class SolverStats:
    """Per-call statistics (returned when `return_stats=True`)."""
    samples: int
    steps: int
    rejections: int
    evaluations: int
    max_steps_samples: int
    non_finite_samples: int
    max_steps_per_sample: int
    step_underflow_samples: int = 0
    #: The precision the network evaluations ran in ("float32" or "bf16").
    precision: str = "float32"

    @property
    def evaluations_per_sample(self) -> float:
        return self.evaluations / max(1, self.samples)




def solver_params(method="dopri5", rtol=None, atol=None, steps=None, max_steps=None, divergence=None,
                  probes=None, probe_kind=None, probe_seed=None, threads=None, progress=None, max_step=None):
    """A flowrt_solver_params from keyword arguments; None keeps the C default
    (dopri5, rtol = atol = 1e-5, adaptive, max_steps 10000, divergence 'auto':
    exact for dim ≤ 256, Hutchinson above)."""
    p = _capi.flowrt_solver_default_params()
    if method not in _capi.SOLVER_METHODS:
        raise ValueError(f"method must be one of {sorted(_capi.SOLVER_METHODS)}, got {method!r}")
    p.method = _capi.SOLVER_METHODS[method]
    if method != "dopri5" and not steps:
        steps = 100
    for name, field in (("rtol", "rtol"), ("atol", "atol"), ("steps", "fixed_steps"), ("max_steps", "max_steps"),
                        ("probes", "probes"), ("probe_seed", "seed"), ("threads", "threads"),
                        ("max_step", "max_step")):
        value = locals()[name]
        if value is not None:
            setattr(p, field, value)
    if divergence is not None:
        if divergence not in _capi.DIVERGENCES:
            raise ValueError(f"divergence must be 'exact', 'hutchinson' or 'auto', got {divergence!r}")
        p.divergence = _capi.DIVERGENCES[divergence]
    if probe_kind is not None:
        if probe_kind not in _capi.PROBE_KINDS:
            raise ValueError(f"probe_kind must be 'rademacher' or 'gaussian', got {probe_kind!r}")
        p.probe_kind = _capi.PROBE_KINDS[probe_kind]
    if progress is not None:
        p.progress = progress.c_callback
    return p


def _stats():
    s = _capi.flowrt_solver_stats()
    s.struct_size = ctypes.sizeof(s)
    return s


def _stats_value(s) -> SolverStats:
    return SolverStats(s.samples, s.steps, s.rejections, s.evaluations, s.max_steps_samples,
                       s.non_finite_samples, s.max_steps_per_sample, s.step_underflow_samples,
                       _PRECISION_NAMES.get(s.precision, "float32"))


class Flow(_PrecisionSettings, _Handle):
    """A continuous normalizing flow from a stochastic interpolant.

    Thread-safe: calls from several Python threads run concurrently (the GIL is
    released inside the library). Solver keyword arguments of every method:
    method ("dopri5" adaptive, or fixed-step "euler", "heun", "midpoint",
    "rk4" with `steps`), rtol, atol, max_steps, threads, progress (True shows
    a bar), callback(done, total, value) -> stop?, return_stats.

    Conditional flows (a model with a context input, e.g.
    `Flow.mlp(dim, context_dim=m)`): every method takes `context=`, one row
    per point ([n, m] floats, or [n] class labels), held fixed along each
    point's trajectory; `sample` also takes one context for all n samples
    and, for label models trained with `label_dropout`, a `guidance` weight.
    Simulation-based inference: θ as X and the observation as the context.

    Precision: `precision="bf16"` (constructor, `load`, or the property)
    evaluates the velocity of sample/transport/encode/sample_sde with
    bfloat16 products and float32 accumulation; log-densities stay float32
    unless `likelihood_precision="bf16"`. `return_stats` reports the
    precision that ran.
    """
    _free = staticmethod(_capi.flowrt_flow_free)
    _set_precision = staticmethod(_capi.flowrt_flow_set_precision)
    _get_precision = staticmethod(_capi.flowrt_flow_get_precision)

    def _set_precisions(self, precision, likelihood_precision) -> None:
        if precision is not None:
            self.precision = precision
        if likelihood_precision is not None:
            self.likelihood_precision = likelihood_precision

    def __init__(self, model: Model, interpolant="trig", base="normal", precision=None, likelihood_precision=None):
        """`interpolant`: "trig", "linear", or a callable
        t -> (alpha, beta, dalpha, dbeta) with alpha(0) = beta(1) = 1 and
        alpha(1) = beta(0) = 0 (checked here; see `flowrt.Trainer`).
        `base`: "normal" (standard normal) or a `flowrt.Density`.
        `precision`, `likelihood_precision`: "float32" or "bf16" (None keeps
        the model's setting; the flow shares the model's settings)."""
        from ._density import Density
        if not isinstance(base, Density) and base not in _capi.BASES:
            raise ValueError(f"base must be 'normal' or a flowrt.Density, got {base!r}")
        p = _capi.flowrt_flow_default_params()
        name, schedule = apply_interpolant(p, interpolant)
        h = ctypes.c_void_p()
        if isinstance(base, Density):
            status = _capi.flowrt_flow_create_with_base(model._handle, ctypes.byref(p), base._handle, ctypes.byref(h))
        else:
            p.base = _capi.BASES[base]
            status = _capi.flowrt_flow_create(model._handle, ctypes.byref(p), ctypes.byref(h))
        checker(schedule)(status)
        super().__init__(h)
        self.model = model
        self.interpolant = name
        self._schedule = schedule  # the C flow calls it: alive as long as self
        self.base = base
        self._set_precisions(precision, likelihood_precision)

    @classmethod
    def _from_handle(cls, h) -> "Flow":
        self = cls.__new__(cls)
        _Handle.__init__(self, h)
        m = ctypes.c_void_p()
        check(_capi.flowrt_flow_model(h, ctypes.byref(m)))
        self.model = Model(m)
        meta = self.model.metadata
        self.interpolant = meta.get("flowrt.interpolant", "trig")
        self._schedule = None
        self.base = "normal"
        return self

    @classmethod
    def load(cls, path, x_name: str | None = None, t_name: str | None = None, interpolant=None, precision=None,
             likelihood_precision=None) -> "Flow":
        """Loads a flow saved by `save` (or any velocity network exported to
        ONNX, with the trig interpolant and a standard normal base).

        A file saved from a flow with a Python schedule records only
        "custom": it loads without the schedule (sampling, transport,
        encoding and log_prob work; score and sample_sde raise Unsupported)
        unless `interpolant` gives it again (a callable, or a name that
        overrides the file's). `precision`, `likelihood_precision`: as in `Flow()`."""
        from ._model import onnx_options
        o = onnx_options(x_name, t_name)
        h = ctypes.c_void_p()
        check(_capi.flowrt_flow_load_onnx(str(path).encode(), ctypes.byref(o), ctypes.byref(h)))
        flow = cls._from_handle(h)
        if interpolant is not None:
            with flow:
                flow = cls(flow.model, interpolant=interpolant)
        flow._set_precisions(precision, likelihood_precision)
        return flow

    @property
    def fourier_coefficients(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(a, b) of a Fourier interpolant (a flow from a path-length
        `Trainer.flow()`, or loaded from its file), float64 [terms] each;
        None for other interpolants."""
        from ._trainer import _coefficients
        a, b = _coefficients(_capi.flowrt_flow_fourier_coefficients, self._handle, None)
        return (a, b) if self.interpolant == "fourier" else None

    def save(self, path) -> None:
        """Saves the flow as one self-contained ONNX file that onnxruntime runs
        and `flowrt.load` reads back (interpolant and base in its metadata)."""
        check(_capi.flowrt_flow_save_onnx(self._handle, str(path).encode()))

    @classmethod
    def mlp(cls, dim: int, hidden: int = 256, depth: int = 3, activation: str = "silu",
            interpolant="trig", base: str = "normal", seed: int = 0, context_dim: int = 0,
            num_classes: int = 0, label_embedding: int = 16, precision=None, likelihood_precision=None,
            **mlp_options) -> "Flow":
        """A flow with a fresh MLP velocity (see `Model.mlp`); `interpolant`
        as in `Flow()`. `context_dim` m > 0 makes it conditional: v(t, x, c)
        with c [m] concatenated after x and the time features;
        `num_classes` K > 0 makes it label-conditional (a label 0..K-1 per
        point, embedded in `label_embedding` features; for guidance, train
        with `label_dropout` and keep label K-1 for the null class)."""
        if context_dim and num_classes:
            raise ValueError("give context_dim (float contexts) or num_classes (labels), not both")
        if context_dim or num_classes:
            model = _conditional_mlp(dim, hidden, depth, activation, seed, int(context_dim), int(num_classes),
                                     int(label_embedding), **mlp_options)
        else:
            model = Model.mlp(dim, hidden=hidden, depth=depth, activation=activation, seed=seed, **mlp_options)
        return cls(model, interpolant=interpolant, base=base, precision=precision,
                   likelihood_precision=likelihood_precision)

    @property
    def dim(self) -> int:
        return int(_capi.flowrt_flow_dim(self._handle))

    @property
    def context_dim(self) -> int:
        """Context values per point (0: unconditional; 1: a class label)."""
        return int(_capi.flowrt_flow_context_dim(self._handle))

    @property
    def num_classes(self) -> int:
        """Classes of a label-conditional flow (0 otherwise); the last is the
        null label of guidance when trained with `label_dropout`."""
        return int(_capi.flowrt_flow_num_classes(self._handle))

    def _context(self, context, n: int, allow_one: bool = False):
        """(float32 [rows, m] array or None, rows): rows = n, or 1 for one
        context shared by all n samples (`allow_one`)."""
        m = self.context_dim
        if m == 0:
            if context is not None:
                raise ValueError("this flow is unconditional: context must be None")
            return None, 0
        if context is None:
            raise ValueError(f"this flow is conditional ({m} context value{'s' if m > 1 else ''} per point): "
                             f"pass context=[n, {m}]" + (" class labels" if self.num_classes else "")
                             + (" or one context for all samples" if allow_one else ""))
        c = np.asarray(context, dtype=np.float32)
        if allow_one and c.size == m and n != 1:
            rows = 1
        elif c.size == n * m and (c.ndim == 2 and c.shape == (n, m) or c.ndim == 1 and (m == 1 or n == 1)):
            rows = n
        else:
            raise ShapeMismatch(f"context must have shape [{n}, {m}]" + (f" or [{m}]" if allow_one else "")
                                + f", got {list(c.shape)}")
        return np.ascontiguousarray(c.reshape(rows, m)), rows
    def fit(self, X, steps: int = 5000, batch_size: int = 1024, lr: float = 2e-3, progress=False, callback=None,
            warmup: int | None = None, schedule: str = "cosine", ema: float = 0.999, clip: float = 1.0,
            heldout: float = 0.1, seed: int = 0, threads: int = 0, context=None, **trainer_options):
        """Trains the flow's velocity on samples X [n, dim] with the quadratic
        interpolant loss (no ODE solve), starting from the current weights,
        then swaps in the EMA weights. Returns the final `Losses`.
        X may be uint8 images [n, ...] in the model's shape: fresh
        dequantization noise per training sample (see `flowrt.Trainer`).
        A conditional flow trains on pairs: `context` [n, m] (row i with
        X[i]; [n] labels), optionally with `label_dropout` for guidance.
        See `flowrt.Trainer` for every option; defaults: Adam, lr 2e-3 with
        cosine decay over `steps` after a warmup of min(200, steps/10)."""
        from ._trainer import Trainer
        if not isinstance(self.base, str):
            raise NotImplementedError("fit trains from the standard normal base; this flow has a custom base "
                                      "(train with the Swift Trainer's base option, or fit a normal-base flow)")
        if warmup is None:
            warmup = min(200, max(0, int(steps) // 10))
        if self.interpolant == "fourier":
            raise ValueError("this flow's interpolant is a learned Fourier schedule: fine-tuning with it fixed is not "
                             "available; continue with flowrt.Trainer(model, X, interpolant='fourier')")
        if self.interpolant == "custom" and self._schedule is None:
            raise ValueError("this flow was loaded from a file that records a custom schedule, which a file cannot "
                             "hold: load it with flowrt.load(path, interpolant=<the schedule callable>) to train it")
        with Trainer(self.model, X, interpolant=self._schedule or self.interpolant, lr=lr, batch_size=batch_size, warmup=warmup,
                     schedule=schedule, total_steps=max(1, int(steps)), ema=ema, clip=clip, heldout=heldout,
                     seed=seed, threads=threads, context=context, **trainer_options) as trainer:
            try:
                losses = trainer.fit(steps, progress=progress, callback=callback)
            finally:
                self._replace_model(trainer.model())
        return losses

    def _replace_model(self, model: Model) -> None:
        p = _capi.flowrt_flow_default_params()
        apply_interpolant(p, self._schedule or self.interpolant)
        h = ctypes.c_void_p()
        checker(self._schedule)(_capi.flowrt_flow_create(model._handle, ctypes.byref(p), ctypes.byref(h)))
        precisions = self.precision, self.likelihood_precision
        self.close()
        self._h = h
        self.model = model
        self._set_precisions(*precisions)

    def velocity(self, t, X) -> np.ndarray:
        """The velocity v̂(t, X), float32 [n, dim]."""
        return self.model.velocity(t, X)

    def _run(self, fn, desc, progress, callback, return_stats, solver, divergence=None):
        # Always installed (a cheap call per solver step): it is how Ctrl-C
        # reaches a running call.
        prog = Progress(show=bool(progress), callback=callback, desc=desc, unit="samples")
        params = solver_params(divergence=divergence, progress=prog, **solver)
        stats = _stats()
        try:
            status = fn(ctypes.byref(params), ctypes.byref(stats))
        finally:
            if prog:
                prog.close()
        if prog:
            prog.raise_if_interrupted()
        check(status)
        return _stats_value(stats) if return_stats else None

    def sample(self, n: int, seed: int = 0, return_log_prob: bool = False, progress=False, callback=None,
               return_stats=False, first_index: int = 0, context=None, guidance: float = 0.0, **solver):
        """n samples of the model density (float32 [n, dim]); with
        `return_log_prob`, also log ρ1 of each (float64 [n]) from the same pass.
        Sample i depends only on (seed, first_index + i), so ranges of one
        stream can be drawn separately (e.g. by Dask workers).

        Conditional flows: `context` is one context per sample ([n, m], or
        [n] labels) or one for all ([m]): samples of p(x | c) and
        log p(x | c). `guidance` w ≠ 0 (label models) samples
        (1 + w) v(c) − w v(∅), ∅ = the last class; not with log-densities."""
        n = count(n)
        x = np.empty((n, self.dim), np.float32)
        lp = np.empty(n, np.float64) if return_log_prob else None
        divergence = solver.pop("divergence", None)
        if context is None and not guidance and self.context_dim == 0:
            fn = lambda p, s: _capi.flowrt_flow_sample_range(self._handle, int(first_index), n, seed, p, fptr(x),
                                                             dptr(lp) if lp is not None else None, s)
        else:
            c, rows = self._context(context, n, allow_one=True)
            fn = lambda p, s: _capi.flowrt_flow_sample_conditional(
                self._handle, int(first_index), n, seed, fptr(c) if c is not None else None, rows, float(guidance),
                p, fptr(x), dptr(lp) if lp is not None else None, s)
        st = self._run(fn, "sample", progress, callback, return_stats, solver, divergence)
        out = (x, lp) if return_log_prob else x
        return (*out, st) if return_stats and return_log_prob else ((out, st) if return_stats else out)

    def score(self, t, X) -> np.ndarray:
        """The score ∇ log ρ_t(X) (float32 [n, dim]) from the velocity, for the
        Gaussian base: s = (β'x − βv)/(α(α'β − αβ')). Refused (InvalidArgument)
        at singular times such as t = 1, where α = 0."""
        x = points(X, self.dim)
        tt = times(t, x.shape[0])
        s = np.empty_like(x)
        checker(self._schedule)(_capi.flowrt_flow_score(self._handle, x.shape[0], dptr(tt), fptr(x), fptr(s)))
        return s

    def sample_sde(self, n: int, seed: int = 0, epsilon: float = 1.0, steps: int = 200, method: str = "heun",
                   taper: float | None = None, diffusion=None, first_index: int = 0, threads: int = 0,
                   progress=False, callback=None, return_stats=False):
        """n samples from the SDE dX = [v + ε(t) s] dt + √(2ε(t)) dW, which has
        the flow's marginals for any ε ≥ 0. `diffusion(t) -> ε` overrides the
        constant `epsilon`; ε is tapered to 0 as α → 0 (`taper`), and the last
        step is an ODE step. Brownian increments of sample i depend only on
        (seed, first_index + i). `progress`, `callback` and `return_stats`
        as for `sample` (the same progress reports and SolverStats)."""
        if method not in _capi.SDE_METHODS:
            raise ValueError(f"method must be one of {sorted(_capi.SDE_METHODS)}")
        p = _capi.flowrt_sde_default_params()
        p.method, p.steps, p.epsilon, p.threads = _capi.SDE_METHODS[method], int(steps), float(epsilon), int(threads)
        if taper is not None:
            p.taper = float(taper)
        keep = None
        if diffusion is not None:
            keep = _capi.diffusion_fn(lambda _user, t: float(diffusion(t)))
            p.diffusion = keep
        n = count(n)
        x = np.empty((n, self.dim), np.float32)
        prog = Progress(show=bool(progress), callback=callback, desc="sample_sde", unit="samples")
        p.progress = prog.c_callback
        stats = _stats()
        try:
            status = _capi.flowrt_flow_sample_sde_range(self._handle, int(first_index), n, int(seed), ctypes.byref(p),
                                                        fptr(x), ctypes.byref(stats))
        finally:
            if prog:
                prog.close()
        if prog:
            prog.raise_if_interrupted()
        checker(self._schedule)(status)
        del keep
        return (x, _stats_value(stats)) if return_stats else x

    def transport(self, X, t_from: float, t_to: float, progress=False, callback=None, return_stats=False,
                  context=None, **solver):
        """Points X [n, dim] moved along the flow from `t_from` to `t_to`
        (with `context` [n, m] for a conditional flow)."""
        x = points(X, self.dim)
        y = np.empty_like(x)
        if context is None and self.context_dim == 0:
            fn = lambda p, s: _capi.flowrt_flow_transport(self._handle, x.shape[0], fptr(x), float(t_from),
                                                          float(t_to), p, fptr(y), s)
        else:
            c, _ = self._context(context, x.shape[0])
            fn = lambda p, s: _capi.flowrt_flow_transport_conditional(
                self._handle, x.shape[0], fptr(x), fptr(c) if c is not None else None, float(t_from), float(t_to),
                p, fptr(y), s)
        st = self._run(fn, "transport", progress, callback, return_stats, solver)
        return (y, st) if return_stats else y

    def encode(self, X, progress=False, callback=None, return_stats=False, context=None, **solver):
        """Data points mapped to the base (the transport from t = 1 to 0);
        `context` [n, m] for a conditional flow (the code of x given c)."""
        x = points(X, self.dim)
        z = np.empty_like(x)
        if context is None and self.context_dim == 0:
            fn = lambda p, s: _capi.flowrt_flow_encode(self._handle, x.shape[0], fptr(x), p, fptr(z), s)
        else:
            c, _ = self._context(context, x.shape[0])
            fn = lambda p, s: _capi.flowrt_flow_encode_conditional(
                self._handle, x.shape[0], fptr(x), fptr(c) if c is not None else None, p, fptr(z), s)
        st = self._run(fn, "encode", progress, callback, return_stats, solver)
        return (z, st) if return_stats else z

    def log_prob(self, X, t: float = 1.0, method: str | None = None, probes: int = 1, return_std_error=False,
                 progress=False, callback=None, return_stats=False, context=None, divergence=None, **solver):
        """log ρ_t(X) per row in nats (float64 [n]), with the exact divergence
        (`divergence="exact"`; the default "auto" takes it for dim ≤ 256) or
        Hutchinson's estimator (`divergence="hutchinson"`, and "auto" above
        256; `probes` per sample; `return_std_error` gives each estimate's
        standard error). `method` names the ODE solver as in every other
        call ("dopri5", the default, or "rk4" etc. with `steps`); for compatibility it
        also still takes the divergence ("exact", "hutchinson", "auto": the
        two sets of names do not overlap). A conditional flow needs
        `context` [n, m]: log ρ_t(x_i | c_i) (SBI: log p(θ | x_obs))."""
        if method in _capi.DIVERGENCES:
            if divergence is not None and divergence != method:
                raise ValueError(f"divergence {divergence!r} and method {method!r} (a divergence too) disagree")
            divergence = method
        elif method is not None:
            solver["method"] = method
        divergence = "auto" if divergence is None else divergence
        x = points(np.asarray(X).reshape(len(X), -1) if np.ndim(X) > 2 else X, self.dim)
        lp = np.empty(x.shape[0], np.float64)
        se = np.empty(x.shape[0], np.float64) if return_std_error else None
        solver.setdefault("probes", probes)
        if context is None and self.context_dim == 0:
            fn = lambda p, s: _capi.flowrt_flow_log_prob(self._handle, x.shape[0], fptr(x), float(t), p,
                                                         dptr(lp), dptr(se) if se is not None else None, s)
        else:
            c, _ = self._context(context, x.shape[0])
            fn = lambda p, s: _capi.flowrt_flow_log_prob_conditional(
                self._handle, x.shape[0], fptr(x), fptr(c) if c is not None else None, float(t), p,
                dptr(lp), dptr(se) if se is not None else None, s)
        st = self._run(fn, "log_prob", progress, callback, return_stats, solver, divergence=divergence)
        out = (lp, se) if return_std_error else lp
        if return_stats:
            return (*out, st) if return_std_error else (out, st)
        return out


    def bits_per_dim(self, images, probes: int | None = 1, seed: int = 0, **solver):
        """Bits per dimension of 8-bit `images` ([n, H, W] or [n, C, H, W]
        uint8): (mean, standard error, per-image values); see
        `flowrt.images.bits_per_dim`."""
        from .images import bits_per_dim
        return bits_per_dim(self, images, probes=probes, seed=seed, **solver)


def _conditional_mlp(dim: int, hidden: int, depth: int, activation: str, seed: int, context_dim: int,
                     num_classes: int = 0, label_embedding: int = 16,
                     time_encoding: str = "concat", time_frequencies: int = 16, residual: bool = False) -> Model:
    """`Model.mlp` with a context of `context_dim` floats
    (flowrt_model_create_mlp_conditional) or a class label
    (flowrt_model_create_mlp_labels)."""
    p = _capi.flowrt_mlp_default_params()
    p.dim, p.width, p.depth = dim, hidden, depth
    if activation not in _capi.ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_capi.ACTIVATIONS)}, got {activation!r}")
    if time_encoding not in _capi.TIME_ENCODINGS:
        raise ValueError(f"time_encoding must be one of {sorted(_capi.TIME_ENCODINGS)}")
    if context_dim < 0:
        raise ValueError(f"context_dim must be >= 0, got {context_dim}")
    p.activation = _capi.ACTIVATIONS[activation]
    p.time_encoding = _capi.TIME_ENCODINGS[time_encoding]
    p.time_frequencies = time_frequencies
    p.residual = int(bool(residual))
    p.seed = seed
    h = ctypes.c_void_p()
    if num_classes:
        if num_classes < 0 or label_embedding < 1:
            raise ValueError(f"num_classes and label_embedding must be > 0, got {num_classes}, {label_embedding}")
        check(_capi.flowrt_model_create_mlp_labels(ctypes.byref(p), num_classes, label_embedding, ctypes.byref(h)))
    else:
        check(_capi.flowrt_model_create_mlp_conditional(ctypes.byref(p), context_dim, ctypes.byref(h)))
    return Model(h)
