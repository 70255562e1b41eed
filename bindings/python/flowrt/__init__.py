"""flowrt — normalizing flows from stochastic interpolants (InterFlow), in a
small C runtime: train, sample, score and exchange flows as ONNX, no PyTorch
needed.

    import flowrt
    model = flowrt.Model.mlp(dim=2, hidden=256, seed=0)
    v = model.velocity(0.5, X)
"""
from __future__ import annotations

from . import _capi, datasets
from ._errors import (Cancelled, FlowError, InternalError, InvalidArgument, IOError_, NonFinite, ONNXError,
                      OutOfMemory, ShapeMismatch, SolverIncomplete, StepUnderflow, Unsupported)
from ._density import Density
from ._flow import Flow, SolverStats
from ._model import Model, bf16_available
from ._trainer import Losses, Trainer

__version__ = _capi.flowrt_version_string().decode()


def load(path, x_name=None, t_name=None, interpolant=None) -> Flow:
    """Loads a flow from an ONNX file (see `Flow.load`; `interpolant` gives a
    file that records a "custom" schedule its schedule callable back)."""
    return Flow.load(path, x_name=x_name, t_name=t_name, interpolant=interpolant)


def load_model(path, x_name=None, t_name=None) -> Model:
    """Loads a velocity network from an ONNX file (see `Model.load`)."""
    return Model.load(path, x_name=x_name, t_name=t_name)

# flowrt.dask is imported on demand (it needs dask).
__all__ = ["load", "load_model", "bf16_available", "datasets", "Model", "Flow", "Density", "Trainer", "Losses", "SolverStats", "FlowError", "InvalidArgument", "ShapeMismatch", "NonFinite", "ONNXError", "Unsupported",
           "IOError_", "Cancelled", "OutOfMemory", "SolverIncomplete", "StepUnderflow", "InternalError", "__version__"]
