"""Progress callbacks: a tqdm bar (when tqdm is installed) or plain lines, a
user callback, and Ctrl-C turned into a cancellation of the running call."""
from __future__ import annotations

import sys
import time

from . import _capi


class Progress:
    """Builds the C progress callback for one call.

    `show`: True for a bar/lines, False for nothing. `callback(done, total,
    value)` may return True to stop. A KeyboardInterrupt raised while the
    callback runs (Python delivers Ctrl-C there, on the calling thread)
    cancels the call; `raise_if_interrupted()` re-raises it afterwards.
    """

    def __init__(self, show: bool = False, callback=None, desc: str = "", unit: str = "it"):
        self.show, self.callback, self.desc, self.unit = show, callback, desc, unit
        self.interrupted = False
        self.bar = None
        self._last_line = 0.0
        self.c_callback = _capi.progress_fn(self._call)

    def _call(self, _user, done, total, value):
        try:
            if self.show:
                self._display(done, total, value)
            if self.callback is not None and self.callback(int(done), int(total), float(value)):
                return 1
            return 0
        except KeyboardInterrupt:
            self.interrupted = True
            return 1
        except BaseException as e:  # a failing user callback stops the call, reported afterwards
            self.error = e
            return 1

    def _display(self, done, total, value):
        if self.bar is None:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=int(total), desc=self.desc, unit=self.unit)
            except ImportError:
                self.bar = False
        if self.bar:
            self.bar.n = int(done)
            if value:
                self.bar.set_postfix(value=f"{value:.4g}", refresh=False)
            self.bar.refresh()
        elif time.monotonic() - self._last_line > 1.0 or done == total:
            self._last_line = time.monotonic()
            print(f"{self.desc} {done}/{total}" + (f" value={value:.4g}" if value else ""), file=sys.stderr, flush=True)

    def close(self):
        if self.bar:
            self.bar.close()

    def raise_if_interrupted(self):
        self.close()
        if self.interrupted:
            raise KeyboardInterrupt
        if getattr(self, "error", None) is not None:
            raise self.error
