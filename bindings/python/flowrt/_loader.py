"""Layer 1: find and load libflowrt.so, check its major version.

Search order: the FLOWRT_LIBRARY environment variable (a path), the copy
installed inside this package, then a development build
(<repo>/.build/release/libflowrt.so when running from a source checkout).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

#: The major version of the C ABI this package speaks.
ABI_MAJOR = 0


def _candidates() -> list[Path]:
    env = os.environ.get("FLOWRT_LIBRARY")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    return [here / "libflowrt.so", here.parent.parent.parent / ".build" / "release" / "libflowrt.so"]


def load_library() -> ctypes.CDLL:
    """Loads the library (ctypes releases the GIL during every call)."""
    tried = []
    for path in _candidates():
        if path.exists():
            lib = ctypes.CDLL(str(path))
            lib.flowrt_version_number.restype = ctypes.c_uint32
            lib.flowrt_version_number.argtypes = []
            major = lib.flowrt_version_number() // 10000
            if major != ABI_MAJOR:
                raise ImportError(
                    f"{path} has C ABI major version {major}; this flowrt package needs {ABI_MAJOR}")
            return lib
        tried.append(str(path))
    raise ImportError("libflowrt.so not found (tried: " + ", ".join(tried)
                      + "); set FLOWRT_LIBRARY or reinstall the package")
