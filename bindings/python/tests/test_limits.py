"""Issue 16 in Python: empty arrays in, empty arrays out; sizes printed
unsigned; the same samples with or without log-densities; progress during
log_prob."""
import numpy as np
import pytest

import flowrt
from flowrt import datasets, sde


@pytest.fixture(scope="module")
def flow():
    return flowrt.Flow.mlp(2, hidden=16, depth=2, seed=5)


def test_empty_batches(flow):
    empty = np.zeros((0, 2), np.float32)
    x = flow.sample(0)
    assert x.shape == (0, 2) and x.dtype == np.float32
    x, lp = flow.sample(0, return_log_prob=True)
    assert x.shape == (0, 2) and lp.shape == (0,) and lp.dtype == np.float64
    x, st = flow.sample(0, return_stats=True)
    assert st.samples == 0
    assert flow.transport(empty, 0.0, 1.0).shape == (0, 2)
    assert flow.encode(empty).shape == (0, 2)
    lp = flow.log_prob(empty)
    assert lp.shape == (0,) and lp.dtype == np.float64
    lp, se = flow.log_prob(empty, method="hutchinson", probes=2, return_std_error=True)
    assert lp.shape == (0,) and se.shape == (0,)
    assert flow.score(0.5, empty).shape == (0, 2)
    assert flow.sample_sde(0).shape == (0, 2)
    assert flow.velocity(0.5, empty).shape == (0, 2)
    assert flow.model.divergence(0.5, empty).shape == (0,)
    # A plain empty list is an empty batch too.
    assert flow.log_prob([]).shape == (0,)
    assert flow.encode(np.zeros((0, 2), np.float64)).dtype == np.float32
    assert datasets.sample("rings", 0).shape == (0, 2)
    assert datasets.log_prob("rings", empty).shape == (0,)
    d = sde.Density.diagonal_normal([0.0, 0.0], [1.0, 1.0])
    assert d.sample(0).shape == (0, 2)
    assert d.log_prob(empty).shape == (0,)


def test_negative_sizes_are_value_errors(flow):
    with pytest.raises(ValueError, match="n = -1"):
        flow.sample(-1)
    with pytest.raises(ValueError, match="n = -3"):
        flow.sample_sde(-3)
    with pytest.raises(ValueError, match="n = -2"):
        datasets.sample("rings", -2)


def test_sizes_print_unsigned():
    """The raw C call with n = SIZE_MAX: the message prints it unsigned."""
    import ctypes
    from flowrt import _capi
    f = flowrt.Flow.mlp(1, hidden=4, depth=1, seed=1)
    x = np.zeros(4, np.float32)
    status = _capi.flowrt_flow_sample(f._handle, ctypes.c_size_t(-1).value, 1, None,
                                      x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), None, None)
    assert status == 1
    message = _capi.flowrt_last_error_message().decode()
    assert "18446744073709551615" in message and "= -" not in message, message


def test_samples_do_not_depend_on_log_prob_request(flow):
    a = flow.sample(3000, seed=42)
    b, lp = flow.sample(3000, seed=42, return_log_prob=True)
    c, _ = flow.sample(3000, seed=42, return_log_prob=True, divergence="hutchinson", probes=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(flow.log_prob(b, rtol=1e-8, atol=1e-8), lp, atol=1e-3)


def test_log_prob_reports_progress_while_running(flow):
    x = flow.sample(500, seed=1)
    seen = []
    flow.log_prob(x, callback=lambda done, total, value: seen.append((done, total)) or None)
    assert len(seen) >= 2, seen
    assert seen[0][0] < 500 and seen[-1] == (500, 500)


def test_big_batch_is_streamed_and_exact(flow):
    """70 000 samples cross a 65 536-sample block: one call equals the two
    ranges the blocks cut, bit for bit."""
    whole = flow.sample(70000, seed=9, threads=2)
    head = flow.sample(65536, seed=9, threads=2)
    tail = flow.sample(70000 - 65536, seed=9, first_index=65536, threads=2)
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
