"""flowrt — normalizing flows from stochastic interpolants (InterFlow), in a
small C runtime: train, sample, score and exchange flows as ONNX, no PyTorch
needed.

    import flowrt
    model = flowrt.Model.mlp(dim=2, hidden=256, seed=0)
    v = model.velocity(0.5, X)
"""
from __future__ import annotations

from . import _capi
from ._errors import (Cancelled, FlowError, InternalError, InvalidArgument, IOError_, NonFinite, ONNXError,
                      OutOfMemory, ShapeMismatch, SolverIncomplete, Unsupported)
from ._flow import Flow, SolverStats
from ._model import Model

__version__ = _capi.flowrt_version_string().decode()

__all__ = ["Model", "Flow", "SolverStats", "FlowError", "InvalidArgument", "ShapeMismatch", "NonFinite", "ONNXError", "Unsupported",
           "IOError_", "Cancelled", "OutOfMemory", "SolverIncomplete", "InternalError", "__version__"]
