"""Tiny ctypes helper for the ONNX tests: the ONNX section of flowrt.h.

Loads libflowrt.so through the binding's loader (FLOWRT_LIBRARY) and
declares the ONNX functions with their C prototypes; the Pythonic API comes
with the full binding.
"""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, Structure, c_char_p, c_double, c_float, c_int, c_size_t, c_uint32, c_void_p
from pathlib import Path

import numpy as np

from flowrt._loader import load_library

lib = load_library()


def _declare(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


class flowrt_onnx_options(Structure):
    """typedef struct flowrt_onnx_options { uint32_t struct_size; const char *x_name, *t_name, *directory; }"""
    _fields_ = [("struct_size", c_uint32), ("x_name", c_char_p), ("t_name", c_char_p), ("directory", c_char_p)]


# flowrt_onnx_options flowrt_onnx_default_options(void);
default_options = _declare("flowrt_onnx_default_options", flowrt_onnx_options)
# flowrt_status flowrt_model_load_onnx(const char *path, const flowrt_onnx_options *options, flowrt_model **out);
load_onnx = _declare("flowrt_model_load_onnx", c_int, c_char_p, POINTER(flowrt_onnx_options), POINTER(c_void_p))
# flowrt_status flowrt_model_load_onnx_buffer(const void *data, size_t size, const flowrt_onnx_options *options, flowrt_model **out);
load_onnx_buffer = _declare("flowrt_model_load_onnx_buffer", c_int, c_void_p, c_size_t, POINTER(flowrt_onnx_options),
                            POINTER(c_void_p))
# flowrt_status flowrt_model_save_onnx(const flowrt_model *model, const char *path);
save_onnx = _declare("flowrt_model_save_onnx", c_int, c_void_p, c_char_p)
# flowrt_status flowrt_model_export_onnx_buffer(const flowrt_model *model, void **bytes, size_t *size);
export_onnx_buffer = _declare("flowrt_model_export_onnx_buffer", c_int, c_void_p, POINTER(c_void_p), POINTER(c_size_t))
# flowrt_status flowrt_model_input_name(const flowrt_model *model, size_t index, char **name);
input_name = _declare("flowrt_model_input_name", c_int, c_void_p, c_size_t, POINTER(c_void_p))
# flowrt_status flowrt_model_output_name(const flowrt_model *model, char **name);
output_name = _declare("flowrt_model_output_name", c_int, c_void_p, POINTER(c_void_p))
# size_t flowrt_model_metadata_count(const flowrt_model *model);
metadata_count = _declare("flowrt_model_metadata_count", c_size_t, c_void_p)
# flowrt_status flowrt_model_metadata_key(const flowrt_model *model, size_t index, char **key);
metadata_key = _declare("flowrt_model_metadata_key", c_int, c_void_p, c_size_t, POINTER(c_void_p))
# flowrt_status flowrt_model_metadata(const flowrt_model *model, const char *key, char **value);
metadata_value = _declare("flowrt_model_metadata", c_int, c_void_p, c_char_p, POINTER(c_void_p))
# void flowrt_buffer_free(void *buffer);
buffer_free = _declare("flowrt_buffer_free", None, c_void_p)
# const char *flowrt_last_error_message(void);
last_error = _declare("flowrt_last_error_message", c_char_p)
# void flowrt_model_free(flowrt_model *model);
model_free = _declare("flowrt_model_free", None, c_void_p)
# size_t flowrt_model_dim(const flowrt_model *model);
model_dim = _declare("flowrt_model_dim", c_size_t, c_void_p)
# flowrt_status flowrt_model_velocity(const flowrt_model *model, size_t n, const double *t, const float *x, float *v);
model_velocity = _declare("flowrt_model_velocity", c_int, c_void_p, c_size_t, POINTER(c_double), POINTER(c_float),
                          POINTER(c_float))


class FlowrtError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"status {status}: {message}")
        self.status = status
        self.message = message


def check(status: int) -> None:
    if status != 0:
        raise FlowrtError(status, last_error().decode())


def fixtures() -> Path:
    env = os.environ.get("FLOWRT_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "onnx"


def options(x_name=None, t_name=None, directory=None) -> flowrt_onnx_options:
    o = default_options()
    o.x_name = x_name.encode() if x_name else None
    o.t_name = t_name.encode() if t_name else None
    o.directory = str(directory).encode() if directory else None
    return o


def _take_string(p: c_void_p) -> str:
    s = ctypes.string_at(p.value).decode()
    buffer_free(p)
    return s


def export_bytes(handle) -> bytes:
    """flowrt_model_export_onnx_buffer of any model handle (also flowrt.Model._handle)."""
    p, n = c_void_p(), c_size_t()
    check(export_onnx_buffer(handle, ctypes.byref(p), ctypes.byref(n)))
    data = ctypes.string_at(p.value, n.value)
    buffer_free(p)
    return data


class Model:
    """Owns a flowrt_model handle."""

    def __init__(self, handle: c_void_p):
        self.handle = handle

    @classmethod
    def load(cls, path, opts: flowrt_onnx_options | None = None) -> "Model":
        h = c_void_p()
        check(load_onnx(str(path).encode(), ctypes.byref(opts) if opts else None, ctypes.byref(h)))
        return cls(h)

    @classmethod
    def load_bytes(cls, data: bytes, opts: flowrt_onnx_options | None = None) -> "Model":
        h = c_void_p()
        buf = ctypes.create_string_buffer(data, len(data))
        check(load_onnx_buffer(buf, len(data), ctypes.byref(opts) if opts else None, ctypes.byref(h)))
        return cls(h)

    def __del__(self):
        if getattr(self, "handle", None):
            model_free(self.handle)
            self.handle = None

    @property
    def dim(self) -> int:
        return model_dim(self.handle)

    def export(self) -> bytes:
        return export_bytes(self.handle)

    def save(self, path) -> None:
        check(save_onnx(self.handle, str(path).encode()))

    def input_names(self) -> tuple[str, str]:
        out = []
        for i in (0, 1):
            p = c_void_p()
            check(input_name(self.handle, i, ctypes.byref(p)))
            out.append(_take_string(p))
        return out[0], out[1]

    def output_name(self) -> str:
        p = c_void_p()
        check(output_name(self.handle, ctypes.byref(p)))
        return _take_string(p)

    def metadata(self) -> dict[str, str]:
        out = {}
        for i in range(metadata_count(self.handle)):
            k = c_void_p()
            check(metadata_key(self.handle, i, ctypes.byref(k)))
            key = _take_string(k)
            v = c_void_p()
            check(metadata_value(self.handle, key.encode(), ctypes.byref(v)))
            out[key] = _take_string(v)
        return out

    def velocity(self, t, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        t = np.ascontiguousarray(np.broadcast_to(np.asarray(t, dtype=np.float64).reshape(-1), (x.shape[0],)))
        v = np.empty_like(x)
        check(model_velocity(self.handle, x.shape[0], t.ctypes.data_as(POINTER(c_double)),
                             x.ctypes.data_as(POINTER(c_float)), v.ctypes.data_as(POINTER(c_float))))
        return v
