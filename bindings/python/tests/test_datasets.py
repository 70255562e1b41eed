import numpy as np
import pytest

import flowrt
from flowrt import datasets


def test_checkerboard_samples_lie_on_squares_and_entropy_is_log32():
    x = datasets.sample("checkerboard", 5000, seed=3)
    assert x.shape == (5000, 2) and x.dtype == np.float32
    # Independent numpy check of the support: square (i, j) occupied iff i + j even.
    i = np.floor((x[:, 0] + 4) / 2).astype(int)
    j = np.floor((x[:, 1] + 4) / 2).astype(int)
    assert np.all((i + j) % 2 == 0) and np.all((0 <= i) & (i < 4) & (0 <= j) & (j < 4))
    np.testing.assert_allclose(datasets.log_prob("checkerboard", x), -np.log(32.0))
    assert datasets.entropy("checkerboard") == pytest.approx(np.log(32.0), abs=1e-12)


def test_8gaussians_density_against_numpy_mixture():
    x = datasets.sample("8gaussians", 2000, seed=1).astype(np.float64)
    angles = np.arange(8) * np.pi / 4
    mu = 2 * np.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], 1)
    s2 = 2 / 16  # sigma = sqrt(2)/4
    d2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
    ref = np.log(np.exp(-d2 / (2 * s2)).mean(1) / (2 * np.pi * s2))
    np.testing.assert_allclose(datasets.log_prob("8gaussians", x), ref, atol=1e-5)


def test_errors():
    with pytest.raises(flowrt.InvalidArgument, match="spirals"):
        datasets.sample("spirals", 3)
    with pytest.raises(flowrt.Unsupported):
        datasets.log_prob("moons", np.zeros((1, 2)))
    assert np.isnan(datasets.entropy("moons"))
