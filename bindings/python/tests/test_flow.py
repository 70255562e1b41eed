"""flowrt.Flow: every API path, against independent computations."""
import numpy as np
import pytest

import flowrt


@pytest.fixture(scope="module")
def flow():
    return flowrt.Flow.mlp(2, hidden=32, depth=2, seed=3)


def test_sample_log_prob_matches_separate_likelihood(flow):
    x, lp = flow.sample(64, seed=7, return_log_prob=True, rtol=1e-7, atol=1e-7)
    assert x.dtype == np.float32 and x.shape == (64, 2) and lp.dtype == np.float64
    # Two different integrations (forward from the base, backward from x) agree.
    np.testing.assert_allclose(flow.log_prob(x, rtol=1e-7, atol=1e-7), lp, atol=1e-4)
    # Samples are reproducible by seed, and do not depend on whether
    # log-densities are requested (the step control sees x only).
    np.testing.assert_array_equal(flow.sample(64, seed=7, rtol=1e-7, atol=1e-7), x)
    x2, lp2 = flow.sample(64, seed=7, return_log_prob=True, rtol=1e-7, atol=1e-7)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(lp2, lp)


def test_change_of_variables_against_numpy_rk4(flow):
    """log ρ1(x) = log N(z) − ∫ div, with z and ∫ div from a plain numpy RK4
    over the model's velocity and exact divergence (independent integrator)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2)).astype(np.float32)
    steps = 200
    h = -1.0 / steps
    y, acc, t = x.astype(np.float64), np.zeros(8), 1.0

    def f(t, y):
        return flow.velocity(t, y).astype(np.float64), flow.model.divergence(t, y)

    for _ in range(steps):
        k1, d1 = f(t, y)
        k2, d2 = f(t + h / 2, y + h / 2 * k1)
        k3, d3 = f(t + h / 2, y + h / 2 * k2)
        k4, d4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        acc = acc + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
        t += h
    # acc = ∫_1^0 div dt = −∫_0^1 div dt; log ρ1(x) = log ρ0(z) − ∫_0^1 div = log ρ0(z) + acc
    expected = -0.5 * (y ** 2).sum(1) - np.log(2 * np.pi) + acc
    np.testing.assert_allclose(flow.log_prob(x, rtol=1e-8, atol=1e-8), expected, atol=2e-4)


def test_log_prob_takes_the_solver_method_like_every_call(flow):
    """`method` names the ODE solver (as in sample/transport); the
    divergence has its own keyword, and the old `method="exact"` spelling
    still selects the divergence."""
    x = np.random.default_rng(2).standard_normal((16, 2)).astype(np.float32)
    tight = flow.log_prob(x, rtol=1e-8, atol=1e-8)
    lp, st = flow.log_prob(x, method="rk4", steps=50, divergence="exact", return_stats=True)
    assert st.evaluations_per_sample == 4 * 50  # RK4 ran, not dopri5
    np.testing.assert_allclose(lp, tight, atol=2e-4)
    np.testing.assert_array_equal(flow.log_prob(x, method="exact", rtol=1e-8, atol=1e-8), tight)
    with pytest.raises(ValueError, match="disagree"):
        flow.log_prob(x, method="exact", divergence="hutchinson")
    with pytest.raises(ValueError):
        flow.log_prob(x, method="rk5")


def test_hutchinson_is_unbiased_within_standard_errors(flow):
    x = np.random.default_rng(1).standard_normal((40, 2))
    exact = flow.log_prob(x)
    est, se = flow.log_prob(x, method="hutchinson", probes=16, return_std_error=True, probe_seed=5)
    z = (est - exact) / np.maximum(se, 1e-12)
    assert np.all(se > 0)
    assert abs(z.mean()) * np.sqrt(len(z)) < 3.5, z  # the mean standardised error is ~N(0, 1/n)


def test_transport_encode_round_trip_and_stats(flow):
    x = np.random.default_rng(2).standard_normal((32, 2))
    z, st = flow.encode(x, return_stats=True, rtol=1e-7, atol=1e-7)
    assert isinstance(st, flowrt.SolverStats) and st.samples == 32 and st.evaluations >= 32 * 6
    np.testing.assert_allclose(flow.transport(z, 0.0, 1.0, rtol=1e-7, atol=1e-7), x, atol=1e-4)
    fixed = flow.transport(x, 1.0, 0.5, method="rk4", steps=50)
    np.testing.assert_allclose(fixed, flow.transport(x, 1.0, 0.5, rtol=1e-8, atol=1e-8), atol=1e-4)


def test_cancellation_and_keyboard_interrupt(flow):
    calls = []
    with pytest.raises(flowrt.Cancelled):
        flow.sample(20000, callback=lambda done, total, value: calls.append(done) or True)
    assert calls

    def interrupt(done, total, value):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        flow.sample(20000, callback=interrupt)


def test_bad_arguments(flow):
    with pytest.raises(flowrt.ShapeMismatch):
        flow.log_prob(np.zeros((3, 4)))
    with pytest.raises(flowrt.NonFinite):
        flow.log_prob(np.array([[np.inf, 0.0]]))
    with pytest.raises(flowrt.InvalidArgument, match="t"):
        flow.log_prob(np.zeros((1, 2)), t=1.5)
    with pytest.raises(ValueError):
        flow.sample(3, method="rk45")
    with pytest.raises(ValueError):
        flowrt.Flow.mlp(2, interpolant="cubic")
