"""The Python binding's model layer against numpy references."""
import threading
import time

import numpy as np
import pytest

import flowrt


def test_version():
    assert flowrt.__version__.count(".") == 2


def test_velocity_dtypes_orders_and_batch_consistency():
    m = flowrt.Model.mlp(dim=3, hidden=32, depth=2, seed=4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3))
    t = rng.uniform(size=7)
    v = m.velocity(t, x)
    assert v.dtype == np.float32 and v.shape == (7, 3)
    np.testing.assert_array_equal(v, m.velocity(t, np.asfortranarray(x)))
    np.testing.assert_array_equal(v, m.velocity(t, x.astype(np.float32).tolist()))
    for i in range(7):
        np.testing.assert_allclose(m.velocity(t[i], x[i]), v[i:i + 1], atol=1e-6)


def test_divergence_matches_numpy_finite_differences():
    m = flowrt.Model.mlp(dim=4, hidden=32, depth=2, activation="tanh", seed=1)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    t = np.linspace(0.1, 0.9, 5)
    div = m.divergence(t, x)
    h = 1e-3
    fd = np.zeros(5)
    for j in range(4):
        e = np.zeros((1, 4), np.float32)
        e[0, j] = h
        fd += (m.velocity(t, x + e)[:, j].astype(np.float64) - m.velocity(t, x - e)[:, j]) / (2 * h)
    np.testing.assert_allclose(div, fd, rtol=2e-3, atol=2e-3)


def test_errors_carry_messages():
    m = flowrt.Model.mlp(dim=2, hidden=8, depth=1)
    with pytest.raises(flowrt.ShapeMismatch, match=r"\[n, 2\]"):
        m.velocity(0.5, np.zeros((3, 5)))
    with pytest.raises(flowrt.NonFinite, match=r"x\[1\]"):
        m.velocity(0.5, np.array([[0.0, np.nan]]))
    with pytest.raises(flowrt.ShapeMismatch):
        m.velocity([0.1, 0.2], np.zeros((3, 2)))
    with pytest.raises(ValueError):
        flowrt.Model.mlp(dim=2, activation="swish")
    with pytest.raises(flowrt.InvalidArgument, match="dim"):
        flowrt.Model.mlp(dim=0)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        m.velocity(0.5, np.zeros((1, 2)))
    m.close()  # idempotent


def test_context_manager():
    with flowrt.Model.mlp(dim=2, hidden=8, depth=1) as m:
        assert m.dim == 2 and m.parameter_count == 3 * 8 + 8 + 8 * 2 + 2
    with pytest.raises(ValueError):
        m.dim


def test_gil_is_released():
    """While one thread is inside a long library call, another thread keeps
    running Python code. If the call held the GIL, the second thread would
    stall for the whole call; we require its longest stall to be under half
    the call's duration. Independent of how many cores are free."""
    m = flowrt.Model.mlp(dim=2, seed=0)
    x = np.random.default_rng(2).standard_normal((200_000, 2)).astype(np.float32)
    stamps, running = [], threading.Event()

    def ticker():
        running.wait()
        while running.is_set():
            stamps.append(time.perf_counter())

    th = threading.Thread(target=ticker)
    th.start()
    running.set()
    time.sleep(0.01)
    t0 = time.perf_counter()
    m.velocity(0.5, x)
    t1 = time.perf_counter()
    running.clear()
    th.join()
    inside = [s for s in stamps if t0 <= s <= t1]
    edges = [t0] + inside + [t1]
    longest_stall = max(b - a for a, b in zip(edges, edges[1:]))
    assert t1 - t0 > 0.02, "the call was too short to tell"
    assert longest_stall < 0.5 * (t1 - t0), (longest_stall, t1 - t0)
