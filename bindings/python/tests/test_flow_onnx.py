"""Flows and models as ONNX files through the Python API, checked with
onnxruntime and against PyTorch's reference outputs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import flowrt

FIXTURES = Path(os.environ.get("FLOWRT_FIXTURES", Path(__file__).resolve().parents[4] / "shared/fixtures/onnx"))


def test_velocity_parity_with_onnxruntime_on_pytorch_exports():
    ort = pytest.importorskip("onnxruntime")
    for case in ("mlp_silu__dynamo__opdefault", "mlp_gelu__legacy__op17", "resmlp_ln__dynamo__op17",
                 "sinus_mlp__legacy__opdefault"):
        path = FIXTURES / f"{case}.onnx"
        ref = json.loads((FIXTURES / f"{case}.json").read_text())
        model = flowrt.load_model(path)
        feeds = {i["name"]: np.array(i["data"], np.float32).reshape(i["shape"]) for i in ref["inputs"]}
        x = feeds["x"]
        t = feeds["t"].reshape(-1)
        v = model.velocity(t, x)
        expected = np.array(ref["outputs"][0]["data"], np.float32).reshape(ref["outputs"][0]["shape"])
        np.testing.assert_allclose(v, expected, atol=1e-5)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(v, sess.run(None, feeds)[0], atol=1e-5)


def test_flow_save_load_round_trip(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    flow = flowrt.Flow.mlp(2, hidden=16, depth=2, interpolant="linear", seed=2)
    path = tmp_path / "flow.onnx"
    flow.save(path)
    back = flowrt.load(path)
    assert back.interpolant == "linear" and back.dim == 2
    meta = back.model.metadata
    assert meta["flowrt.interpolant"] == "linear" and meta["flowrt.base"] == "standard_normal"
    x = np.random.default_rng(0).standard_normal((9, 2)).astype(np.float32)
    t = np.linspace(0, 1, 9)
    np.testing.assert_array_equal(back.velocity(t, x), flow.velocity(t, x))
    np.testing.assert_array_equal(back.sample(16, seed=3), flow.sample(16, seed=3))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: x, names[1]: t.astype(np.float32).reshape(-1, 1)})[0]
    np.testing.assert_allclose(out, flow.velocity(t, x), atol=1e-6)
    assert flowrt.Model.from_onnx_bytes(back.model.to_onnx_bytes()).velocity(t, x).shape == (9, 2)


def test_failed_save_keeps_the_previous_file(tmp_path):
    """A save that fails midway (here: the file-size limit stops the write of
    the temporary file, which works even as root) reports an I/O error and
    leaves the previous file intact, with no temporary file behind."""
    import resource
    import signal
    flow = flowrt.Flow.mlp(2, hidden=64, depth=2)
    path = tmp_path / "flow.onnx"
    flow.save(path)
    before = path.read_bytes()
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(flowrt.IOError_):
            flowrt.Flow.mlp(2, hidden=64, depth=2, seed=9).save(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert len(before) > 4096
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.onnx"]


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(flowrt.ONNXError):
        flowrt.load(bad)
    with pytest.raises(flowrt.IOError_):
        flowrt.load(tmp_path / "missing.onnx")
