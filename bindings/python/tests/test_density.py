"""flowrt.Density: diagonal normal against numpy, host callbacks as a flow's
base (sampling, likelihood and errors), empirical resampling."""
import numpy as np
import pytest

import flowrt


def test_diagonal_normal_matches_numpy():
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    d = flowrt.Density.diagonal_normal(mean, std)
    x = np.random.default_rng(0).standard_normal((50, 3))
    ref = (-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(1)
    np.testing.assert_allclose(d.log_prob(x), ref, atol=1e-5)
    s = d.sample(20000, seed=1)
    np.testing.assert_allclose(s.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(s.std(0), std, rtol=0.03)


def test_host_callback_base_equals_builtin_normal():
    """A host density that is N(0, I) gives the same likelihood as the
    built-in base through the same flow (the base enters log ρ1 additively)."""
    def sample(seed, first, n):
        return np.random.default_rng([seed, first]).standard_normal((n, 2))

    def log_prob(x):
        return -0.5 * (x.astype(np.float64) ** 2).sum(1) - np.log(2 * np.pi)

    host = flowrt.Density.from_callbacks(2, sample, log_prob)
    assert host.has_log_prob and host.dim == 2
    model = flowrt.Model.mlp(2, hidden=16, depth=2, seed=3)
    a, b = flowrt.Flow(model, base=host), flowrt.Flow(model)
    x = np.random.default_rng(1).standard_normal((10, 2))
    np.testing.assert_allclose(a.log_prob(x), b.log_prob(x), atol=1e-6)
    assert a.sample(5, seed=2).shape == (5, 2)
    with pytest.raises(NotImplementedError):
        a.fit(x)


def test_failing_callback_is_an_error_not_nan():
    def bad_log_prob(x):
        raise RuntimeError("host failure")

    host = flowrt.Density.from_callbacks(2, lambda s, f, n: np.zeros((n, 2)), bad_log_prob)
    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=8, depth=1), base=host)
    with pytest.raises(flowrt.NonFinite):
        flow.log_prob(np.zeros((3, 2)))


def test_empirical_resamples_rows():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    e = flowrt.Density.empirical(X)
    s = e.sample(100, seed=4)
    assert not e.has_log_prob
    assert {tuple(r) for r in s} <= {tuple(r) for r in X}
