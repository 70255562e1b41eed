"""flowrt.Model.unet: the native U-Net image velocity through the C ABI is
the Swift VelocityUNet builder's network (reference velocities recorded from
it, also checked by Tests/FlowRuntimeTests/UNetReferenceTests.swift and
bindings/c/tests/test_images.c), deterministic per seed, and its ONNX export
runs in onnxruntime with the same output."""
import ctypes

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import flowrt
from flowrt import _capi as capi

SMALL = dict(channels=1, height=8, width=8, model_channels=8, channel_mult=(1, 2), attention=(4,), heads=2,
             groups=4, seed=7)

# Recorded from VelocityUNet (Swift) with SMALL and reference_input().
REF_PARAMETERS = 44969
REF_SUM = -23.628059870
REF_ABS_SUM = 48.409095897
REF_V = [-0.0625377595, 0.3249340951, 0.0183506627, -0.1670029312]  # v[0, 0], v[0, 63], v[1, 0], v[1, 63]


def reference_input():
    x = np.sin(0.37 * np.arange(2 * 64)).astype(np.float32).reshape(2, 64)
    return np.array([0.25, 0.75]), x


def test_params_struct_matches_the_library():
    p = capi.flowrt_unet_default_params()
    assert p.struct_size == ctypes.sizeof(capi.flowrt_unet_params)
    assert (p.channels, p.height, p.width, p.model_channels) == (1, 28, 28, 32)
    assert list(p.channel_mult)[:p.channel_mult_count] == [1, 2, 2]
    assert list(p.attention)[:p.attention_count] == [14]
    assert (p.res_blocks, p.heads, p.groups, p.num_classes, p.seed) == (1, 1, 32, 0, 0)


def test_default_unet_is_fashion_mnist_sized():
    m = flowrt.Model.unet()
    assert m.shape == (1, 28, 28) and m.dim == 784 and m.context_dim == 0


def test_unet_equals_the_swift_builder():
    m = flowrt.Model.unet(**SMALL)
    assert m.parameter_count == REF_PARAMETERS
    t, x = reference_input()
    v = m.velocity(t, x)
    assert abs(float(v.astype(np.float64).sum()) - REF_SUM) < 1e-4 * (1 + abs(REF_SUM))
    assert abs(float(np.abs(v.astype(np.float64)).sum()) - REF_ABS_SUM) < 1e-4 * REF_ABS_SUM
    np.testing.assert_allclose([v[0, 0], v[0, 63], v[1, 0], v[1, 63]], REF_V, atol=1e-5)
    # Images in [n, C, H, W] give the same velocities in that layout.
    v4 = m.velocity(t, x.reshape(2, 1, 8, 8))
    assert v4.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(v4.reshape(2, 64), v)


def test_seed_determines_the_weights():
    t, x = reference_input()
    a = flowrt.Model.unet(**SMALL).velocity(t, x)
    b = flowrt.Model.unet(**SMALL).velocity(t, x)
    c = flowrt.Model.unet(**{**SMALL, "seed": 8}).velocity(t, x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_export_runs_in_onnxruntime_with_the_same_output():
    m = flowrt.Model.unet(**SMALL)
    data = m.to_onnx_bytes()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 3):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        t = rng.uniform(size=n)
        t_in = next(i for i in sess.get_inputs() if i.name == "t")
        tt = t.astype(np.float32).reshape(-1, 1) if len(t_in.shape) == 2 else t.astype(np.float32)
        x_in = next(i for i in sess.get_inputs() if i.name == "x")
        assert len(x_in.shape) == 4 and list(x_in.shape[1:]) == [1, 8, 8]  # images export as [batch, C, H, W]
        got = sess.run(None, {"x": x.reshape(n, 1, 8, 8), "t": tt})[0]
        np.testing.assert_allclose(got.reshape(n, 64), m.velocity(t, x), atol=2e-5, rtol=1e-4)
    # And FlowRuntime reads its own export back.
    again = flowrt.Model.from_onnx_bytes(data)
    assert again.shape == (1, 8, 8)
    np.testing.assert_allclose(again.velocity(t, x), m.velocity(t, x), atol=1e-5)


def test_label_conditional_unet():
    m = flowrt.Model.unet(**{**SMALL, "num_classes": 3})
    assert m.context_dim == 1 and m.num_classes == 3
    t, x = reference_input()
    v0 = m.velocity(t, x, context=np.array([0, 0]))
    v2 = m.velocity(t, x, context=np.array([2, 2]))
    assert np.abs(v0 - v2).max() > 1e-4


@pytest.mark.parametrize("bad", [dict(channel_mult=()), dict(channel_mult=(1, 1, 1, 1, 1)),
                                 dict(attention=(4, 4, 4, 4, 4)), dict(model_channels=7), dict(attention=(5,)),
                                 dict(height=9), dict(heads=3)])
def test_bad_configurations_raise(bad):
    with pytest.raises((ValueError, flowrt.FlowError)):
        flowrt.Model.unet(**{**SMALL, **bad})
