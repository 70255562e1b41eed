"""precision="bf16" (issue 17): bf16 against float32, reporting, errors, threads.

Tolerances: bf16 rounds each wide layer's inputs and weights to 8
significant bits; through a 4 × 256 SiLU MLP velocities move by well under
3e-2 of max |v| and RK4 endpoints by under 1e-2 of max |x| (measured a few
1e-3), while a wrong layout is off by O(1). Tests that need the hardware
skip without AVX512_BF16; the fallback is tested everywhere.
"""
import ctypes
import os
import subprocess

import numpy as np
import pytest

import flowrt
from flowrt import _capi

needs_bf16 = pytest.mark.skipif(not flowrt.bf16_available(), reason="no AVX512_BF16 on this CPU")
RK4 = dict(method="rk4", steps=10)


def make_flow(**kw):
    return flowrt.Flow.mlp(2, hidden=256, depth=4, seed=5, **kw)


def test_default_is_float32_and_reported():
    flow = make_flow()
    assert flow.precision == "float32" and flow.likelihood_precision == "float32"
    assert flow.model.precision == "float32"
    _, st = flow.sample(100, seed=1, return_stats=True, **RK4)
    assert st.precision == "float32"


@needs_bf16
def test_bf16_samples_close_to_float32_and_report_bf16():
    flow = make_flow()
    x32 = flow.sample(1000, seed=2, **RK4)
    flow.precision = "bf16"
    assert flow.effective_precision() == "bf16" and flow.model.precision == "bf16"
    x16, st = flow.sample(1000, seed=2, return_stats=True, **RK4)
    assert st.precision == "bf16"
    dev = np.abs(x16 - x32).max() / np.abs(x32).max()
    assert 0 < dev < 1e-2, dev
    # Back to float32: bit for bit the float32 samples.
    flow.precision = "float32"
    np.testing.assert_array_equal(flow.sample(1000, seed=2, **RK4), x32)


@needs_bf16
def test_bf16_velocity_transport_and_encode():
    model = flowrt.Model.mlp(2, hidden=512, depth=4, seed=1)
    X = np.random.default_rng(0).standard_normal((500, 2)).astype(np.float32)
    v32 = model.velocity(0.3, X)
    model.precision = "bf16"
    v16 = model.velocity(0.3, X)
    assert 0 < np.abs(v16 - v32).max() / np.abs(v32).max() < 3e-2
    flow = flowrt.Flow(model)  # shares the model's setting
    assert flow.precision == "bf16"
    z, st = flow.encode(X, return_stats=True, **RK4)
    assert st.precision == "bf16"
    y, st = flow.transport(X, 0.0, 0.5, return_stats=True, **RK4)
    assert st.precision == "bf16"


@needs_bf16
def test_likelihood_stays_float32_unless_asked():
    flow = make_flow()
    X = np.random.default_rng(1).standard_normal((200, 2)).astype(np.float32)
    lp32 = flow.log_prob(X)
    flow.precision = "bf16"
    lp, st = flow.log_prob(X, return_stats=True)
    np.testing.assert_array_equal(lp, lp32)
    assert st.precision == "float32"
    _, _, st = flow.sample(50, seed=3, return_log_prob=True, return_stats=True, **RK4)
    assert st.precision == "float32"
    flow.likelihood_precision = "bf16"
    lp16, st = flow.log_prob(X, return_stats=True)
    assert st.precision == "bf16"
    assert 0 < np.abs(lp16 - lp32).max() < 0.1


@needs_bf16
def test_bf16_results_do_not_depend_on_threads():
    flow = make_flow(precision="bf16")
    a = flow.sample(3000, seed=4, threads=1, **RK4)
    b = flow.sample(3000, seed=4, threads=2, **RK4)
    np.testing.assert_array_equal(a, b)


def test_invalid_precision_is_rejected():
    flow = make_flow()
    with pytest.raises(ValueError, match="float32' or 'bf16"):
        flow.precision = "fp16"
    with pytest.raises(ValueError):
        flowrt.Flow(flow.model, precision="half")
    # The C layer names the bad value and leaves the setting unchanged.
    assert _capi.flowrt_model_set_precision(flow.model._handle, 0, 7) == _capi.INVALID_ARGUMENT
    assert b"precision = 7 is not a flowrt_precision" in _capi.flowrt_last_error_message()
    assert _capi.flowrt_flow_set_precision(flow._handle, 5, 1) == _capi.INVALID_ARGUMENT
    assert b"use = 5" in _capi.flowrt_last_error_message()
    assert _capi.flowrt_model_set_precision(None, 0, 1) == _capi.INVALID_ARGUMENT
    assert flow.precision == "float32"


def test_old_stats_struct_size_still_accepted():
    """A caller compiled before the precision field passes the old size."""
    flow = make_flow()
    s = _capi.flowrt_solver_stats()
    s.struct_size = _capi.flowrt_solver_stats.precision.offset
    s.precision = -5
    p = flowrt._flow.solver_params(**RK4)
    x = np.empty((10, 2), np.float32)
    assert _capi.flowrt_flow_sample(flow._handle, 10, 0, ctypes.byref(p), x.ctypes.data_as(_capi.c_float_p),
                                    None, ctypes.byref(s)) == 0
    assert s.samples == 10 and s.precision == -5  # not written past the caller's size


def test_precision_survives_save_and_load_keyword(tmp_path):
    flow = make_flow()
    path = tmp_path / "f.onnx"
    flow.save(path)
    loaded = flowrt.Flow.load(path, precision="bf16")
    assert loaded.precision == "bf16"
    assert loaded.effective_precision() == ("bf16" if flowrt.bf16_available() else "float32")


def test_cli_precision_and_info(tmp_path):
    cli = os.environ.get("FLOWRT_CLI")
    if not cli:
        pytest.skip("FLOWRT_CLI not set")
    info = subprocess.run([cli, "info"], capture_output=True, text=True, check=True).stdout
    assert "bf16:" in info and ("available (AVX512_BF16)" in info) == flowrt.bf16_available()
    out32, out16 = tmp_path / "a.npy", tmp_path / "b.npy"
    base = [cli, "sample", "mlp:dim=2,width=256,depth=4,seed=5", "-n", "500", "--method", "rk4", "--steps", "10"]
    subprocess.run(base + ["--out", str(out32)], capture_output=True, check=True)
    r = subprocess.run(base + ["--out", str(out16), "--precision", "bf16"], capture_output=True, text=True, check=True)
    expected = "bf16" if flowrt.bf16_available() else "float32"
    assert r.stderr.strip().endswith(expected)
    a, b = np.load(out32), np.load(out16)
    assert np.abs(a - b).max() < 1e-2 * np.abs(a).max()
    bad = subprocess.run(base + ["--out", str(out16), "--precision", "fp16"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--precision must be float32 or bf16" in bad.stderr
