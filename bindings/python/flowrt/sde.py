"""Trainers from densities and mini-batch OT coupling (flowrt.h sections
"densities" and "training"). Host densities are `flowrt.Density`; the score and the
SDE sampler are `Flow.score` and `Flow.sample_sde`; a flow over any base is
`flowrt.Flow(model, base=density)`.

    import flowrt, flowrt.sde
    trainer = flowrt.sde.trainer_from_densities(model, flowrt.Density.empirical(B),
                                                flowrt.Density.empirical(A), coupling="exact-ot")
"""
from __future__ import annotations

import ctypes
from ctypes import c_void_p

from . import _capi
from ._capi import COUPLINGS
from ._density import Density
from ._errors import check
from ._flow import Flow
from ._model import Model, _Handle
from ._schedule import apply as apply_interpolant, checker
from ._trainer import Trainer


def flow_with_base(model: Model, base: Density, interpolant="trig") -> Flow:
    """The same as `flowrt.Flow(model, interpolant, base=base)`."""
    return Flow(model, interpolant=interpolant, base=base)


def trainer_from_densities(model: Model, target: Density, base: Density | None = None, heldout: int = 0,
                           interpolant="trig", coupling: str = "independent", lr: float | None = None,
                           batch_size: int | None = None, ema: float | None = None, seed: int | None = None,
                           threads: int | None = None) -> Trainer:
    """A `flowrt.Trainer` drawing x1 from `target` and x0 from `base`
    (default N(0, I)): with two `Density.empirical` sets, data-to-data
    transport. `coupling="exact-ot"` pairs x0 and x1 by mini-batch optimal
    transport. `interpolant` as in `flowrt.Trainer` (a name or a callable)."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {sorted(COUPLINGS)}, got {coupling!r}")
    p = _capi.flowrt_trainer_default_params()
    name, schedule = apply_interpolant(p, interpolant)
    for value, field in ((lr, "learning_rate"), (batch_size, "batch_size"), (ema, "ema_decay"), (seed, "seed"),
                         (threads, "threads")):
        if value is not None:
            setattr(p, field, value)
    p.coupling = COUPLINGS[coupling]
    h = c_void_p()
    checker(schedule)(_capi.flowrt_trainer_create_from_densities(model._handle, target._handle,
                                                                 base._handle if base else None, int(heldout),
                                                                 ctypes.byref(p), ctypes.byref(h)))
    trainer = Trainer.__new__(Trainer)
    _Handle.__init__(trainer, h)
    trainer.interpolant, trainer.dim = name, model.dim
    trainer._densities = (target, base)  # the C trainer uses their callbacks
    trainer._schedule, trainer._check = schedule, checker(schedule)  # and the schedule's
    return trainer
