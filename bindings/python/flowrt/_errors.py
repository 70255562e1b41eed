"""Status codes as exceptions carrying the library's message."""
from __future__ import annotations


class FlowError(Exception):
    """Base class of every error flowrt raises; `.status` is the C status code."""
    status = -1


class InvalidArgument(FlowError, ValueError):
    status = 1


class ShapeMismatch(FlowError, ValueError):
    status = 2


class NonFinite(FlowError, ValueError):
    status = 3


class ONNXError(FlowError):
    """A malformed or corrupt model file (FLOWRT_INVALID_MODEL, status 4)."""
    status = 4


class Unsupported(FlowError):
    """Something valid this library does not do (FLOWRT_UNSUPPORTED, status 5):
    an ONNX op, attribute or dtype, a file version, or an operation the flow
    cannot perform (e.g. the score of a flow without a closed-form schedule).
    Not an ONNXError: most causes have nothing to do with model files."""
    status = 5


class IOError_(FlowError, OSError):
    status = 6


class Cancelled(FlowError):
    status = 7


class OutOfMemory(FlowError, MemoryError):
    status = 8


class SolverIncomplete(FlowError):
    """A solver stopped early for some samples (max steps, non-finite state)."""
    status = 9


class InternalError(FlowError):
    status = 10


class StepUnderflow(SolverIncomplete):
    """An adaptive solve stopped for some samples because the step size
    underflowed (FLOWRT_STEP_UNDERFLOW, status 11): the field is singular or
    blows up there, or rtol/atol are below float rounding; raising max_steps
    does not help. The message names the first sample, its time and step.
    A SolverIncomplete, so code catching that keeps working."""
    status = 11


_BY_STATUS = {c.status: c for c in (InvalidArgument, ShapeMismatch, NonFinite, ONNXError, Unsupported,
                                    IOError_, Cancelled, OutOfMemory, SolverIncomplete, InternalError, StepUnderflow)}


def check(status: int) -> None:
    """Raises the exception for a non-zero status with the thread's last message."""
    if status == 0:
        return
    from . import _capi
    message = _capi.flowrt_last_error_message().decode("utf-8", "replace")
    cls = _BY_STATUS.get(status, FlowError)
    err = cls(message or _capi.flowrt_status_string(status).decode())
    err.status = status
    raise err
