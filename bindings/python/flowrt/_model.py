"""Layer 3: the Model class (a velocity network v(t, x))."""
from __future__ import annotations

import ctypes

import numpy as np

from . import _capi
from ._arrays import dptr, fptr, points, times
from ._errors import check


class _Handle:
    """Owns a C handle: close(), context manager, finalizer."""
    _free = None

    def __init__(self, handle: ctypes.c_void_p):
        self._h = handle

    @property
    def _handle(self):
        if not self._h:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._h

    def close(self) -> None:
        """Releases the C object; further use raises ValueError. Idempotent."""
        if getattr(self, "_h", None):
            type(self)._free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _take_string(fn, *args) -> str:
    """Calls a `char **` getter and frees the library's copy."""
    p = ctypes.c_void_p()
    check(fn(*args, ctypes.byref(p)))
    try:
        return ctypes.string_at(p.value).decode("utf-8")
    finally:
        _capi.flowrt_buffer_free(p)


def onnx_options(x_name=None, t_name=None, directory=None, context_name=None):
    o = _capi.flowrt_onnx_default_options()
    o.x_name = x_name.encode() if x_name else None
    o.t_name = t_name.encode() if t_name else None
    o.directory = str(directory).encode() if directory else None
    o.context_name = context_name.encode() if context_name else None
    return o



_PRECISION_NAMES = {v: k for k, v in _capi.PRECISIONS.items()}


def _precision_code(precision) -> int:
    """The flowrt_precision of "float32" or "bf16" (ValueError otherwise)."""
    if precision not in _capi.PRECISIONS:
        raise ValueError(f"precision must be 'float32' or 'bf16', got {precision!r}")
    return _capi.PRECISIONS[precision]


class _PrecisionSettings:
    """precision / likelihood_precision / effective_precision over a
    set/get pair of C functions (the model's or the flow's)."""
    _set_precision = None
    _get_precision = None

    def _get(self, use: str, effective: bool) -> str:
        requested, ran = ctypes.c_int(), ctypes.c_int()
        check(type(self)._get_precision(self._handle, _capi.PRECISION_USES[use], ctypes.byref(requested),
                                        ctypes.byref(ran)))
        return _PRECISION_NAMES[(ran if effective else requested).value]

    @property
    def precision(self) -> str:
        """"float32" (default) or "bf16": the precision requested for velocity
        evaluation (sampling, transport, encode, SDE, velocity). "bf16"
        multiplies wide Linear layers in bfloat16 with float32 accumulation
        (about 2x faster in wide layers; endpoints move by ~1e-3, see
        bench/bf16/results.md); on CPUs without AVX512_BF16 it runs float32
        (see `effective_precision`). Do not change it while other threads
        run calls on this object."""
        return self._get("velocity", False)

    @precision.setter
    def precision(self, value) -> None:
        check(type(self)._set_precision(self._handle, _capi.PRECISION_USES["velocity"], _precision_code(value)))

    @property
    def likelihood_precision(self) -> str:
        """The precision requested for log-densities (log_prob, sample with
        return_log_prob, divergence): "float32" unless set to "bf16" here
        (log-densities then move by about 1e-3 nats per point; see
        bench/bf16/results.md)."""
        return self._get("likelihood", False)

    @likelihood_precision.setter
    def likelihood_precision(self, value) -> None:
        check(type(self)._set_precision(self._handle, _capi.PRECISION_USES["likelihood"], _precision_code(value)))

    def effective_precision(self, likelihood: bool = False) -> str:
        """The precision calls actually run in: "bf16" only when requested,
        the CPU has AVX512_BF16 and a layer is wide enough (≥ 32 inputs and outputs)."""
        return self._get("likelihood" if likelihood else "velocity", True)


def bf16_available() -> bool:
    """Whether this CPU runs precision="bf16" (AVX512_BF16)."""
    return bool(_capi.flowrt_bf16_available())


class Model(_PrecisionSettings, _Handle):
    """A velocity network v̂(t, x). Immutable and thread-safe.

    Create with `Model.mlp(...)` or `flowrt.load_model(path)`. The one
    mutable setting is `precision` ("float32" or "bf16"), shared with the
    flows built on the model.
    """
    _free = staticmethod(_capi.flowrt_model_free)
    _set_precision = staticmethod(_capi.flowrt_model_set_precision)
    _get_precision = staticmethod(_capi.flowrt_model_get_precision)

    @classmethod
    def mlp(cls, dim: int, hidden: int = 256, depth: int = 3, activation: str = "silu",
            time_encoding: str = "concat", time_frequencies: int = 16, residual: bool = False,
            seed: int = 0) -> "Model":
        """A native MLP v(t, x) initialised from `seed` (PyTorch's default init)."""
        p = _capi.flowrt_mlp_default_params()
        p.dim, p.width, p.depth = dim, hidden, depth
        if activation not in _capi.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_capi.ACTIVATIONS)}, got {activation!r}")
        if time_encoding not in _capi.TIME_ENCODINGS:
            raise ValueError(f"time_encoding must be one of {sorted(_capi.TIME_ENCODINGS)}")
        p.activation = _capi.ACTIVATIONS[activation]
        p.time_encoding = _capi.TIME_ENCODINGS[time_encoding]
        p.time_frequencies = time_frequencies
        p.residual = int(bool(residual))
        p.seed = seed
        h = ctypes.c_void_p()
        check(_capi.flowrt_model_create_mlp(ctypes.byref(p), ctypes.byref(h)))
        return cls(h)

    @property
    def dim(self) -> int:
        """The state dimension d."""
        return int(_capi.flowrt_model_dim(self._handle))

    @property
    def parameter_count(self) -> int:
        return int(_capi.flowrt_model_parameter_count(self._handle))

    @property
    def shape(self) -> tuple[int, ...]:
        """The sample shape: (dim,) for vectors, (C, H, W) for an image network."""
        rank = ctypes.c_size_t()
        _capi.flowrt_model_shape(self._handle, None, 0, ctypes.byref(rank))
        dims = (ctypes.c_size_t * max(rank.value, 1))()
        check(_capi.flowrt_model_shape(self._handle, dims, rank.value, ctypes.byref(rank)))
        return tuple(int(dims[i]) for i in range(rank.value))

    @property
    def context_dim(self) -> int:
        """Context values per sample (0: unconditional; 1: a class label)."""
        return int(_capi.flowrt_model_context_dim(self._handle))

    @property
    def num_classes(self) -> int:
        """Classes of a label-conditional network (0 otherwise)."""
        return int(_capi.flowrt_model_num_classes(self._handle))

    def _flat(self, X):
        """X as [n, dim] float32, and the shape to give results: X may be
        [n, dim] or [n, *self.shape] (images), returned in the same layout."""
        a = np.asarray(X)
        shape = self.shape
        if len(shape) > 1 and a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
            return points(a.reshape(a.shape[0], -1), self.dim), a.shape
        x = points(a, self.dim)
        return x, x.shape

    def velocity(self, t, X, context=None) -> np.ndarray:
        """v(t, X[, c]) for X [n, dim] or [n, *shape] (t scalar or [n]);
        returns float32 in X's layout. `context`: [n, context_dim] floats, or
        [n] integer labels for a label-conditional network (required then)."""
        x, out_shape = self._flat(X)
        tt = times(t, x.shape[0])
        v = np.empty_like(x)
        m = self.context_dim
        if m == 0:
            if context is not None:
                raise ValueError("this model is unconditional: context must be None")
            check(_capi.flowrt_model_velocity(self._handle, x.shape[0], dptr(tt), fptr(x), fptr(v)))
        else:
            if context is None:
                raise ValueError(f"this model is conditional: pass context=[n, {m}]" + (" labels" if self.num_classes else ""))
            c = np.ascontiguousarray(np.asarray(context, dtype=np.float32).reshape(x.shape[0], m))
            check(_capi.flowrt_model_velocity_conditional(self._handle, x.shape[0], dptr(tt), fptr(x), fptr(c), fptr(v)))
        return v.reshape(out_shape)

    def divergence(self, t, X) -> np.ndarray:
        """Exact ∇·v(t, X) per row (float64 [n]), one batched tangent pass."""
        x = points(X, self.dim)
        tt = times(t, x.shape[0])
        div = np.empty(x.shape[0], np.float64)
        check(_capi.flowrt_model_divergence(self._handle, x.shape[0], dptr(tt), fptr(x), None, dptr(div)))
        return div

    @classmethod
    def load(cls, path, x_name: str | None = None, t_name: str | None = None,
             context_name: str | None = None) -> "Model":
        """Loads a velocity network from an ONNX file (e.g. PyTorch's export).
        Inputs are matched by role (x of any rank, t as [B,1], [B] or a scalar,
        a third input as the context; or one [x, t] input) unless named."""
        o = onnx_options(x_name, t_name, context_name=context_name)
        h = ctypes.c_void_p()
        check(_capi.flowrt_model_load_onnx(str(path).encode(), ctypes.byref(o), ctypes.byref(h)))
        return cls(h)

    @classmethod
    def from_onnx_bytes(cls, data: bytes, x_name=None, t_name=None, directory=None) -> "Model":
        """Loads a model from ONNX bytes (external data resolved against `directory`)."""
        o = onnx_options(x_name, t_name, directory)
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        h = ctypes.c_void_p()
        check(_capi.flowrt_model_load_onnx_buffer(buf, len(data), ctypes.byref(o), ctypes.byref(h)))
        return cls(h)

    def save(self, path) -> None:
        """Writes a self-contained ONNX file (atomically: temporary file, then rename)."""
        check(_capi.flowrt_model_save_onnx(self._handle, str(path).encode()))

    def to_onnx_bytes(self) -> bytes:
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(_capi.flowrt_model_export_onnx_buffer(self._handle, ctypes.byref(p), ctypes.byref(n)))
        try:
            return ctypes.string_at(p.value, n.value)
        finally:
            _capi.flowrt_buffer_free(p)

    @property
    def input_names(self) -> tuple[str, str]:
        return tuple(_take_string(_capi.flowrt_model_input_name, self._handle, i) for i in (0, 1))

    @property
    def output_name(self) -> str:
        return _take_string(_capi.flowrt_model_output_name, self._handle)

    @property
    def metadata(self) -> dict[str, str]:
        """The model's metadata (ONNX metadata_props), e.g. flowrt.interpolant."""
        out = {}
        for i in range(_capi.flowrt_model_metadata_count(self._handle)):
            key = _take_string(_capi.flowrt_model_metadata_key, self._handle, i)
            out[key] = _take_string(_capi.flowrt_model_metadata, self._handle, key.encode())
        return out


def _unet(cls, channels: int = 1, height: int = 28, width: int = 28, model_channels: int = 32,
          channel_mult=(1, 2, 2), res_blocks: int = 1, attention=(14,), heads: int = 1, groups: int = 32,
          num_classes: int = 0, seed: int = 0) -> "Model":
    """A native U-Net image velocity v(t, x[, y]) initialised from `seed`
    (PyTorch's default init): guided-diffusion's layout as torchcfm uses it,
    the same network and weights as the C `flowrt_model_create_unet` and the
    Swift `VelocityUNet`. `channel_mult` gives 1 to 4 levels; `attention` the
    feature-map heights (up to 4) with self-attention; `num_classes` > 0 makes
    a label-conditional model. `velocity` takes X as [n, C·H·W] or
    [n, C, H, W]; `shape` is (C, H, W)."""
    mult, attn = tuple(int(m) for m in channel_mult), tuple(int(a) for a in attention)
    if not 1 <= len(mult) <= 4:
        raise ValueError(f"channel_mult must hold 1 to 4 values, got {channel_mult!r}")
    if len(attn) > 4:
        raise ValueError(f"attention must hold at most 4 resolutions, got {attention!r}")
    p = _capi.flowrt_unet_default_params()
    p.channels, p.height, p.width, p.model_channels = channels, height, width, model_channels
    p.channel_mult_count = len(mult)
    for i in range(4):
        p.channel_mult[i] = mult[i] if i < len(mult) else 0
        p.attention[i] = attn[i] if i < len(attn) else 0
    p.attention_count = len(attn)
    p.res_blocks, p.heads, p.groups, p.num_classes, p.seed = res_blocks, heads, groups, num_classes, seed
    h = ctypes.c_void_p()
    check(_capi.flowrt_model_create_unet(ctypes.byref(p), ctypes.byref(h)))
    return cls(h)


Model.unet = classmethod(_unet)
