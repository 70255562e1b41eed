"""Malformed ONNX bytes through the C ABI: an error status with a message,
never a crash."""
import ctypes
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import flowrt
from flowrt import _capi

INVALID_ARGUMENT, SHAPE_MISMATCH, INVALID_MODEL, UNSUPPORTED, IO_ERROR = 1, 2, 4, 5, 6


def status_of(data: bytes, **opts):
    """Loads through the package (flowrt.Model.from_onnx_bytes); the error's status and message."""
    with pytest.raises(flowrt.FlowError) as e:
        flowrt.Model.from_onnx_bytes(data, **opts)
    assert str(e.value), "an error must carry a message"
    return SimpleNamespace(status=e.value.status, message=str(e.value))


def mlp(op="Relu", x_type=TensorProto.FLOAT, w_dims=(8, 3), w_data=None, extra_nodes=(), opset=17):
    w = helper.make_tensor("w", TensorProto.FLOAT, w_dims, w_data if w_data is not None else np.ones(int(np.prod(w_dims)), np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, (2, 8), np.ones(16, np.float32))
    nodes = [helper.make_node("Concat", ["x", "t"], ["xt"], axis=-1),
             helper.make_node("Gemm", ["xt", "w"], ["h"], transB=1),
             helper.make_node(op, ["h"], ["a"], name="act0"),
             helper.make_node("Gemm", ["a", "w2"], ["v"], transB=1), *extra_nodes]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", x_type, ["batch", 2]),
                           helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 2])], [w, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_valid_handmade_model_loads():
    m = flowrt.Model.from_onnx_bytes(mlp().SerializeToString())
    assert m.dim == 2
    v = m.velocity([0.5], np.array([[1.0, -1.0]], np.float32))
    h = np.maximum(np.ones((8, 3)) @ np.array([1.0, -1.0, 0.5]), 0)
    np.testing.assert_allclose(v[0], np.ones((2, 8)) @ h, rtol=1e-6)


def test_truncated_files():
    data = mlp().SerializeToString()
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 1):
        assert status_of(data[:cut]).status in (INVALID_MODEL, SHAPE_MISMATCH, UNSUPPORTED)


def test_random_bytes():
    rng = np.random.default_rng(0)
    for n in (1, 16, 1000, 100000):
        assert status_of(rng.integers(0, 256, n, dtype=np.uint8).tobytes()).status in (INVALID_MODEL, UNSUPPORTED, SHAPE_MISMATCH)


def test_wrong_input_dtype():
    e = status_of(mlp(x_type=TensorProto.INT64).SerializeToString())
    assert e.status == UNSUPPORTED and "INT64" in e.message


def test_inconsistent_shapes():
    e = status_of(mlp(w_dims=(8, 5)).SerializeToString())
    assert e.status == SHAPE_MISMATCH


def test_dimension_claiming_1e12_elements():
    m = mlp()
    m.graph.initializer[0].ClearField("dims")
    m.graph.initializer[0].dims.extend([1000000, 1000000])
    e = status_of(m.SerializeToString())
    assert e.status == INVALID_MODEL and "1000000" in e.message


def test_unsupported_op_names_op_node_and_opset():
    e = status_of(mlp(op="Softsign").SerializeToString())
    assert e.status == UNSUPPORTED
    assert "Softsign" in e.message and "act0" in e.message and "opset 17" in e.message


def _external(tmp_path, location, write=True):
    m = mlp()
    w = m.graph.initializer[0]
    raw = np.ones(24, np.float32).tobytes()
    if write:
        (tmp_path / "weights.bin").write_bytes(raw)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        w.external_data.add(key=k, value=v)
    path = tmp_path / "model.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def test_external_data_loads_relative_to_the_model(tmp_path):
    m = flowrt.Model.load(_external(tmp_path, "weights.bin"))
    assert m.dim == 2


def test_missing_external_data(tmp_path):
    with pytest.raises(flowrt.FlowError) as e:
        flowrt.Model.load(_external(tmp_path, "weights.bin", write=False))
    assert e.value.status == IO_ERROR and "weights.bin" in str(e.value)


def test_external_location_escaping_the_folder(tmp_path):
    for location in ("../weights.bin", "/etc/passwd", "a/../../weights.bin"):
        with pytest.raises(flowrt.FlowError) as e:
            flowrt.Model.load(_external(tmp_path, location))
        assert e.value.status == INVALID_MODEL and "folder" in str(e.value)


def test_null_arguments_are_reported():
    h = ctypes.c_void_p()
    assert _capi.flowrt_model_load_onnx(None, None, ctypes.byref(h)) == INVALID_ARGUMENT
    assert _capi.flowrt_model_load_onnx_buffer(None, 10, None, ctypes.byref(h)) == INVALID_ARGUMENT
    assert _capi.flowrt_model_load_onnx(b"/nonexistent/model.onnx", None, ctypes.byref(h)) == IO_ERROR
    assert not h.value


def _varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_deeply_nested_messages():
    t = b""
    for _ in range(3000):  # TypeProto.sequence_type -> Sequence.elem_type -> ...
        t = _field(4, _field(1, t))
    model = _varint(1 << 3) + b"\x08" + _field(7, _field(11, _field(1, b"x") + _field(2, t)))
    e = status_of(model)
    assert e.status == INVALID_MODEL and "nest" in e.message
