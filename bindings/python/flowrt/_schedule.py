"""Interpolant schedules: a built-in name ("trig", "linear") or a Python
callable t -> (alpha, beta, dalpha, dbeta) handed to the library as its C
schedule callback (FLOWRT_INTERPOLANT_CUSTOM)."""
from __future__ import annotations

from . import _capi
from ._errors import check


class Schedule:
    """A Python callable as a `flowrt_schedule_fn`.

    The object that passes `c_callback` to the library must keep this object
    alive as long as the C trainer or flow exists (the library keeps the
    function pointer). The library calls it from its worker threads, once per
    training sample per step, and from the calling thread for scores and SDE
    sampling; the GIL serialises the calls, so the callable needs no locking
    but must be a pure function of t. An exception (or a result that is not
    four numbers) becomes a non-zero return, which the library reports as a
    failed call; `check` then raises the library's error chained to it.
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"a schedule must be callable t -> (alpha, beta, dalpha, dbeta), got {fn!r}")
        self.fn = fn
        self.error: BaseException | None = None
        self.c_callback = _capi.schedule_fn(self._call)

    def _call(self, _user, t, coefficients):
        try:
            alpha, beta, dalpha, dbeta = self.fn(float(t))
            coefficients[0], coefficients[1] = float(alpha), float(beta)
            coefficients[2], coefficients[3] = float(dalpha), float(dbeta)
            return 0
        except BaseException as e:  # nothing may propagate into C; reported by check()
            if self.error is None:
                self.error = e
            return 1

    def check(self, status: int) -> None:
        """`check(status)`, with the first exception the callable raised since
        the last check as the cause (a KeyboardInterrupt is re-raised as is)."""
        error, self.error = self.error, None
        if status == 0:
            return
        if isinstance(error, KeyboardInterrupt):
            raise error
        try:
            check(status)
        except Exception as e:
            if error is not None:
                e.args = (f"{e.args[0] if e.args else ''} (the Python schedule raised "
                          f"{type(error).__name__}: {error})",)
                raise e from error
            raise


def resolve(interpolant):
    """(flowrt_interpolant code, name, Schedule or None) for a name, a
    callable, or an existing `Schedule` (shared, e.g. by a flow and its trainer)."""
    if isinstance(interpolant, Schedule):
        return _capi.INTERPOLANTS["custom"], "custom", interpolant
    if isinstance(interpolant, str):
        if interpolant == "custom":
            raise ValueError("interpolant 'custom' needs the schedule itself: pass a callable "
                             "t -> (alpha, beta, dalpha, dbeta) as interpolant")
        if interpolant not in _capi.INTERPOLANTS:
            raise ValueError(f"interpolant must be 'trig', 'linear' or a callable t -> (alpha, beta, dalpha, dbeta), "
                             f"got {interpolant!r}")
        return _capi.INTERPOLANTS[interpolant], interpolant, None
    if callable(interpolant):
        return _capi.INTERPOLANTS["custom"], "custom", Schedule(interpolant)
    raise ValueError(f"interpolant must be 'trig', 'linear' or a callable t -> (alpha, beta, dalpha, dbeta), "
                     f"got {interpolant!r}")


def apply(params, interpolant):
    """Sets params.interpolant (and schedule_fn) from `interpolant`; returns
    (name, Schedule or None): the caller keeps the Schedule alive."""
    code, name, schedule = resolve(interpolant)
    params.interpolant = code
    if schedule is not None:
        params.schedule_fn = schedule.c_callback
    return name, schedule


def checker(schedule):
    """The status check for calls that may run `schedule` (plain `check` without one)."""
    return schedule.check if schedule is not None else check
