"""Image velocity networks (torchcfm U-Net, diffusers UNet2DModel, DiT) imported
from Tests/ONNXData/images through the Python binding:

- flowrt.Model.load + Model.velocity on the fixture's own inputs (every entry of
  its .json `cases`, batch 1 and 3) match PyTorch's output stored there, within
  1e-4 × max|output|;
- Model.save re-exports a file that passes onnx.checker (full check), and
  onnxruntime (CPU) runs that file to FlowRuntime's own output on the same
  inputs, within the same tolerance (two tests, so each failure shows alone).

The three tiny and nine full unconditional fixtures (three exporters each of
tcfm_unet, diffusers_unet and dit) here; the class-conditional torchcfm U-Nets
(label y) at the end of the file. Set FLOWRT_IMAGE_TESTS=tiny to run the tiny
ones only.
"""
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import flowrt

IMAGES = Path(__file__).resolve().parents[3] / "Tests" / "ONNXData" / "images"
TOLERANCE = 1e-4  # relative to max |output|, as the fixtures' .json says


def unconditional_fixtures():
    names = sorted(p.name for p in IMAGES.glob("*.onnx") if "_cond" not in p.name)
    tiny = [n for n in names if "_tiny__" in n]
    full = [n for n in names if "_tiny__" not in n]
    return tiny + ([] if os.environ.get("FLOWRT_IMAGE_TESTS") == "tiny" else full)


FIXTURES = unconditional_fixtures()


def test_fixture_set_is_complete():
    assert len([n for n in FIXTURES if "_tiny__" in n]) == 13, IMAGES  # incl. the interpolating and pooling conv nets, the indexing DiT, two multi-head U-Nets (2 exports each)
    if os.environ.get("FLOWRT_IMAGE_TESTS") != "tiny":
        full = [n for n in FIXTURES if "_tiny__" not in n]
        assert len(full) == 11, full  # incl. the two opset-23 (Attention op) exports


@lru_cache(maxsize=None)
def reference(name):
    """[(batch, t [n], x [n, C, H, W], v [n, C, H, W])] from the fixture's .json cases."""
    ref = json.loads((IMAGES / name).with_suffix(".json").read_text())
    assert ref["tolerance"] == TOLERANCE
    out = []
    for case in ref["cases"]:
        ins = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in case["inputs"]}
        assert set(ins) == {"t", "x"}, f"{name}: not an unconditional fixture"
        v = case["outputs"][0]
        out.append((case["batch"], ins["t"], ins["x"], np.asarray(v["data"], np.float32).reshape(v["shape"])))
    assert 3 in [c[0] for c in out]
    return out


@lru_cache(maxsize=None)
def model(name):
    return flowrt.Model.load(IMAGES / name)


def flowrt_velocity(m, t, x):
    n = x.shape[0]
    return m.velocity(t.astype(np.float64), x.reshape(n, -1)).reshape(x.shape)


def assert_close(got, expected, what):
    scale = float(np.max(np.abs(expected)))
    err = float(np.max(np.abs(got - expected)))
    assert err <= TOLERANCE * scale, f"{what}: max |diff| {err:.3g} > {TOLERANCE} × max|v| = {TOLERANCE * scale:.3g}"


@pytest.mark.parametrize("name", FIXTURES)
def test_velocity_matches_pytorch(name):
    m = model(name)
    cases = reference(name)
    assert m.dim == int(np.prod(cases[0][2].shape[1:]))
    for batch, t, x, v in cases:
        assert_close(flowrt_velocity(m, t, x), v, f"{name} at batch {batch}")


def ort_feeds(sess, input_names, t, x):
    """The re-export's inputs by the names the model reports, shaped as the file declares
    them (x flat [n, d] or as the image; t [n], [n, 1] or a scalar)."""
    x_name, t_name = input_names
    declared = {i.name: i.shape for i in sess.get_inputs()}
    assert set(declared) == {x_name, t_name}, (declared, input_names)
    n = x.shape[0]
    xs = x.reshape(n, -1) if len(declared[x_name]) == 2 else x
    tr = len(declared[t_name])
    ts = t.reshape(n, 1) if tr == 2 else t.reshape(n) if tr == 1 else np.float32(t.reshape(-1)[0])
    return {x_name: np.ascontiguousarray(xs, np.float32), t_name: np.asarray(ts, np.float32)}


@lru_cache(maxsize=None)
def reexport(name, folder):
    """Model.save of the imported fixture, written once per fixture."""
    path = Path(folder) / ("re_" + name)
    model(name).save(path)
    return path


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("image_reexports"))


@pytest.mark.parametrize("name", FIXTURES)
def test_reexport_passes_onnx_checker(name, export_dir):
    onnx.checker.check_model(onnx.load(str(reexport(name, export_dir))), full_check=True)


@pytest.mark.parametrize("name", FIXTURES)
def test_reexport_runs_in_onnxruntime(name, export_dir):
    m = model(name)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(reexport(name, export_dir)), opts, providers=["CPUExecutionProvider"])
    names = m.input_names
    for batch, t, x, v in reference(name):
        ours = flowrt_velocity(m, t, x)
        theirs = sess.run(None, ort_feeds(sess, names, t, x))[0]
        assert theirs.size == ours.size, (theirs.shape, ours.shape)
        assert_close(theirs.reshape(ours.shape), ours, f"onnxruntime on the re-export of {name}, batch {batch}")


# -- class-conditional U-Nets (a label y per sample) -------------------------

def conditional_fixtures():
    names = sorted(p.name for p in IMAGES.glob("*_cond*.onnx"))
    return [n for n in names if "_tiny__" in n or os.environ.get("FLOWRT_IMAGE_TESTS") != "tiny"]


@pytest.mark.parametrize("name", conditional_fixtures())
def test_conditional_unet_matches_pytorch_and_reexports(name, tmp_path):
    model = flowrt.Model.load(IMAGES / name)
    assert model.context_dim == 1 and model.num_classes == 10
    ref = json.loads((IMAGES / name).with_suffix(".json").read_text())
    for case in ref["cases"]:
        ins = {i["name"]: np.asarray(i["data"]).reshape(i["shape"]) for i in case["inputs"]}
        want = np.asarray(case["outputs"][0]["data"], np.float32).reshape(case["outputs"][0]["shape"])
        got = model.velocity(ins["t"], ins["x"], context=ins["y"])
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max(), name
    # Labels select different velocities; a label outside 0..9 is refused.
    x, t = ins["x"].astype(np.float32), ins["t"]
    a = model.velocity(t, x, context=np.zeros(len(t)))
    b = model.velocity(t, x, context=np.full(len(t), 7))
    assert np.abs(a - b).max() > 1e-3
    with pytest.raises(flowrt.FlowError, match="label 10"):
        model.velocity(t, x, context=np.full(len(t), 10))
    with pytest.raises(ValueError, match="conditional"):
        model.velocity(t, x)
    # The re-export (labels as a float input y) runs in onnxruntime.
    path = tmp_path / "cond.onnx"
    model.save(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    meta = flowrt.Model.load(path).metadata
    assert meta["flowrt.context_dim"] == "1" and meta["flowrt.num_classes"] == "10"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x, "t": t.astype(np.float32), "y": ins["y"].astype(np.float32)}
    out = sess.run(None, feeds)[0]
    assert np.abs(out - got).max() <= TOLERANCE * np.abs(got).max()


# -- flowrt inspect -----------------------------------------------------------

CLI = os.environ.get("FLOWRT_CLI")


@pytest.mark.skipif(not CLI, reason="FLOWRT_CLI is not set")
def test_inspect_describes_an_image_network(tmp_path):
    import subprocess
    name = "tcfm_unet_cond_tiny__legacy__op17.onnx"
    out = subprocess.run([CLI, "inspect", str(IMAGES / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    model = flowrt.Model.load(IMAGES / name)
    assert "input:     x FLOAT [batch, 1, 8, 8]" in text and "input:     y INT64 [batch]" in text
    assert "supported: every op" in text and "import:    ok" in text
    assert f"parameters: {model.parameter_count}" in text
    assert "sample:    [1, 8, 8] (d = 64), context 1 (10 classes)" in text
    assert "Conv " in text and "FLOPs/sample: " in text
    # 8 channels: below Winograd's 16, every convolution is direct.
    assert "convolutions: 0 by Winograd F(2x2, 3x3), " in text

    # An unsupported op is named with its node and opset, and the exit code says so.
    m = onnx.load(str(IMAGES / name))
    for node in m.graph.node:
        if node.op_type == "Softmax":
            node.op_type = "GridSample"
            break
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    out = subprocess.run([CLI, "inspect", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "supported: NO" in out.stdout and "GridSample (node" in out.stdout and "opset 17" in out.stdout
    assert "import:    failed" in out.stdout


def test_image_flow_bits_per_dim_and_image_arrays():
    """A flow over an image network takes [n, C, H, W] arrays; its bits/dim
    by Hutchinson (16 probes) agrees with the exact trace within 4 standard
    errors, and log_prob's default ('auto') is exact at d = 64."""
    flow = flowrt.Flow(flowrt.Model.load(IMAGES / "tcfm_unet_tiny__legacy__op17.onnx"))
    imgs = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8)).astype(np.uint8)
    exact, exact_se, per_image = flow.bits_per_dim(imgs, probes=None)
    hutch, hutch_se, per_hutch = flow.bits_per_dim(imgs, probes=16)
    assert np.isfinite(exact) and np.isfinite(hutch)
    assert abs(hutch - exact) <= 4 * max(hutch_se, 1e-3) + 1e-2
    x = np.random.default_rng(1).normal(size=(2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(flow.log_prob(x), flow.log_prob(x.reshape(2, -1), method="exact"))


def _attention_model(attrs, mask=None, opset=23):
    """v = reshape(Attention(Q=K=V=reshape(x, [B, 3, 4])), [B, 12]) + t: the 3-D
    form with 2 heads of size 2, an optional additive mask [3, 3]."""
    from onnx import TensorProto, helper, numpy_helper
    inits = [numpy_helper.from_array(np.array([0, 3, 4], np.int64), "tok_shape"),
             numpy_helper.from_array(np.array([0, 12], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    att_inputs = ["tok", "tok", "tok"]
    if mask is not None:
        inits.append(numpy_helper.from_array(mask.astype(np.float32), "mask"))
        att_inputs.append("mask")
    nodes = [helper.make_node("Reshape", ["x", "tok_shape"], ["tok"]),
             helper.make_node("Attention", att_inputs, ["att"], q_num_heads=2, kv_num_heads=2, **attrs),
             helper.make_node("Reshape", ["att", "flat_shape"], ["flat"]),
             helper.make_node("Unsqueeze", ["t", "axis1"], ["t1"]),
             helper.make_node("Add", ["flat", "t1"], ["v"])]
    g = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["B"]),
                                               helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 12])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["B", 12])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _attention_reference(x, t, scale, mask):
    q = x.reshape(-1, 3, 2, 2).transpose(0, 2, 1, 3).astype(np.float64)  # [B, heads, tokens, 2]
    s = scale * q @ q.transpose(0, 1, 3, 2) + (0 if mask is None else mask)
    p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    y = (p @ q).transpose(0, 2, 1, 3).reshape(-1, 12)
    return y + t[:, None]


@pytest.mark.parametrize("scale,mask", [(None, None), (0.7, np.array([[0, -1e9, 0.5], [0.2, 0, -3], [0, 0, 0]]))])
def test_opset23_attention_3d_heads_scale_and_mask_match_numpy(scale, mask):
    attrs = {} if scale is None else {"scale": scale}
    m = flowrt.Model.from_onnx_bytes(_attention_model(attrs, mask))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    t = rng.random(5)
    want = _attention_reference(x, t, 1 / np.sqrt(2) if scale is None else scale, mask)
    np.testing.assert_allclose(m.velocity(t, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs,what", [({"is_causal": 1}, "is_causal"), ({"softcap": 5.0}, "softcap")])
def test_opset23_attention_unsupported_forms_are_named(attrs, what):
    with pytest.raises(flowrt.Unsupported, match=what):
        flowrt.Model.from_onnx_bytes(_attention_model(attrs))
