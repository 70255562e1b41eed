"""Exported ONNX files pass onnx.checker (full check) and run in onnxruntime
with FlowRuntime's velocities; export(import(f)) of every fixture does too."""
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import flowrt


def fixtures() -> Path:
    """The reference exports (FLOWRT_FIXTURES, else ../shared/fixtures/onnx beside the repository)."""
    env = os.environ.get("FLOWRT_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "onnx"


def session(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run(sess, x, t, x_name="x", t_name="t"):
    t_input = next(i for i in sess.get_inputs() if i.name == t_name)
    t = np.asarray(t, np.float32).reshape(-1)
    if len(t_input.shape) == 2:
        t = t.reshape(-1, 1)
    return sess.run(None, {x_name: np.asarray(x, np.float32), t_name: t})[0]


NATIVE = [dict(activation=a) for a in ["silu", "tanh", "relu", "gelu", "softplus", "sigmoid", "elu", "selu", "leaky_relu"]] + [
    dict(time_encoding="sinusoidal", time_frequencies=4),
    dict(residual=True),
]


@pytest.mark.parametrize("config", NATIVE, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_native_export_passes_checker_and_matches_onnxruntime(config):
    m = flowrt.Model.mlp(dim=3, hidden=32, depth=2, seed=5, **config)
    data = m.to_onnx_bytes()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert len(proto.graph.initializer) > 0 and all(not i.external_data for i in proto.graph.initializer)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["flowrt.dimension"] == "3"
    assert props["flowrt.time_convention"] == "t in [0,1], 0 = base, 1 = data"
    assert all(k.startswith("flowrt.") for k in props)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    sess = session(data)
    rng = np.random.default_rng(3)
    for n in (1, 5, 64):  # dynamic batch
        x = rng.standard_normal((n, 3)).astype(np.float32)
        t = rng.uniform(size=n)
        np.testing.assert_allclose(run(sess, x, t), m.velocity(t, x), atol=1e-5, rtol=1e-5)


OWN_EXPORTS = Path(__file__).resolve().parents[3] / "Tests" / "ONNXData"


def fixture_files():
    return sorted(p.name for p in fixtures().glob("*.onnx"))


def test_fixture_folder_has_all_40_exports():
    assert len(fixture_files()) == 40, fixtures()


CASES = [(fixtures(), n) for n in fixture_files()] + [(OWN_EXPORTS, p.name) for p in sorted(OWN_EXPORTS.glob("*.onnx"))]


@pytest.mark.parametrize("folder,name", CASES, ids=[n for _, n in CASES])
def test_export_of_imported_fixture_runs_in_onnxruntime(folder, name, tmp_path):
    model = flowrt.Model.load(folder / name)
    ref = json.loads((folder / name.replace(".onnx", ".json")).read_text())
    inputs = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in ref["inputs"]}
    expected = np.asarray(ref["outputs"][0]["data"], np.float32).reshape(ref["outputs"][0]["shape"])
    if len(inputs) == 1:
        xt = next(iter(inputs.values()))
        x, t = xt[:, :-1], xt[:, -1]
    else:
        x, t = inputs["x"], np.broadcast_to(inputs["t"].reshape(-1), (inputs["x"].shape[0],))
    # Round trip through a file written by flowrt_model_save_onnx.
    path = tmp_path / "exported.onnx"
    model.save(path)
    data = path.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x_name, t_name = model.input_names
    got = run(session(data), x, t, x_name, t_name)
    np.testing.assert_allclose(got, expected, atol=ref.get("tolerance", 1e-5), rtol=0)
    np.testing.assert_allclose(model.velocity(t, x), expected, atol=ref.get("tolerance", 1e-5), rtol=0)


def test_metadata_and_names_round_trip():
    folder = fixtures()
    model = flowrt.Model.load(folder / "mlp_silu__legacy__op17.onnx")
    assert model.input_names == ("x", "t")
    assert model.output_name == "v"
    again = flowrt.Model.from_onnx_bytes(model.to_onnx_bytes())
    md = again.metadata
    assert md["flowrt.dimension"] == "2"
    assert md["flowrt.time_convention"].startswith("t in [0,1]")
