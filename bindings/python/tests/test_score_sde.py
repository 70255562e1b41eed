"""Score and SDE sampling through Python."""
import numpy as np
import pytest

import flowrt


@pytest.fixture(scope="module")
def trained():
    X = flowrt.datasets.sample("8gaussians", 10000, seed=0)
    flow = flowrt.Flow.mlp(2, hidden=64, depth=2, seed=1)
    flow.fit(X, steps=400, batch_size=512, lr=3e-3)
    return flow


def test_score_matches_the_trig_formula(trained):
    """Trig schedule: s = −x + (2/π) tan(πt/2) v (DESIGN.md §1), computed in numpy."""
    x = np.random.default_rng(0).standard_normal((20, 2)).astype(np.float32)
    for t in (0.2, 0.5, 0.8):
        v = trained.velocity(t, x).astype(np.float64)
        expected = -x + (2 / np.pi) * np.tan(np.pi * t / 2) * v
        np.testing.assert_allclose(trained.score(t, x), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(flowrt.InvalidArgument):
        trained.score(1.0, x)


def test_sde_api_and_small_noise_limit(trained):
    """The SDE has the flow's marginals only for the exact velocity (the Swift
    suite checks that against the analytic mixture velocity); for a trained
    network the score amplifies velocity errors near t = 1. What holds for any
    network: as ε → 0 the SDE's samples approach the ODE's, pathwise."""
    ode = trained.sample(2000, seed=3, method="heun", steps=200)
    small = trained.sample_sde(2000, seed=3, epsilon=1e-4, steps=200)
    # Same base points (seed 3), tiny noise: paths nearly coincide.
    assert np.median(np.linalg.norm(small - ode, axis=1)) < 0.05
    big = trained.sample_sde(2000, seed=3, epsilon=1.0, steps=200)
    assert np.median(np.linalg.norm(big - ode, axis=1)) > 0.1  # the noise is real
    a = trained.sample_sde(100, seed=9, diffusion=lambda t: 0.3)
    b = trained.sample_sde(100, seed=9, epsilon=0.3)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(trained.sample_sde(10, seed=9, first_index=90, epsilon=0.3), b[90:], atol=1e-5)
    with pytest.raises(ValueError):
        trained.sample_sde(10, method="milstein")
