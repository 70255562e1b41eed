"""flowrt.Density, flowrt.sde and Flow.score/sample_sde: host densities, the score and the SDE sampler through the C ABI
(sections "densities" and "flows, score and SDE" of flowrt.h), against independent numpy
computations."""
import numpy as np
import pytest

import flowrt
import flowrt.sde as sde
from flowrt import _capi


@pytest.fixture(scope="module")
def flow():
    return flowrt.Flow.mlp(2, hidden=32, depth=2, seed=3)


def test_score_matches_trig_closed_form(flow):
    """Trig schedule, N(0, I) base: s = −x + (2/π) tan(πt/2) v, with v from
    the model's own velocity call."""
    x = np.random.default_rng(1).standard_normal((16, 2)).astype(np.float32)
    t = np.linspace(0.0, 0.95, 16)
    s = flow.score(t, x)
    v = flow.velocity(t, x).astype(np.float64)
    np.testing.assert_allclose(s, -x + (2 / np.pi) * np.tan(np.pi * t / 2)[:, None] * v, rtol=1e-4, atol=1e-5)


def test_score_refuses_singular_time(flow):
    with pytest.raises(flowrt.InvalidArgument, match="singular"):
        flow.score(1.0, np.zeros((1, 2), np.float32))


def test_sde_reproducible_across_splits_and_threads(flow):
    whole = flow.sample_sde(10, seed=5, steps=20, threads=1)
    assert np.isfinite(whole).all()
    a = flow.sample_sde(4, seed=5, steps=20, threads=2)
    b = flow.sample_sde(6, seed=5, steps=20, first_index=4, threads=2)
    # Across splits: equal to the network's GEMM rounding (the batch size
    # changes the blocking); across thread counts: bit-identical.
    np.testing.assert_allclose(np.vstack([a, b]), whole, atol=1e-4)
    np.testing.assert_array_equal(flow.sample_sde(10, seed=5, steps=20, threads=2), whole)
    assert not np.allclose(flow.sample_sde(10, seed=6, steps=20), whole)


def test_sde_zero_diffusion_is_the_ode(flow):
    """ε(t) ≡ 0 from a host callback equals epsilon = 0, and both equal a
    fixed-step Heun solve of the ODE from the same base points (float32
    rounding); ε0 = 1 moves the samples."""
    a = flow.sample_sde(8, seed=2, steps=20, diffusion=lambda t: 0.0)
    b = flow.sample_sde(8, seed=2, steps=20, epsilon=0.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, flow.sample(8, seed=2, method="heun", steps=20), atol=1e-4)
    assert np.abs(flow.sample_sde(8, seed=2, steps=20, epsilon=1.0) - a).max() > 1e-2
    with pytest.raises(flowrt.InvalidArgument):
        flow.sample_sde(2, steps=4, diffusion=lambda t: -1.0)
    with pytest.raises(flowrt.NonFinite):
        flow.sample_sde(2, steps=4, diffusion=lambda t: float("nan"))
    with pytest.raises(ValueError):
        flow.sample_sde(2, method="rk4")


MU = np.array([0.5, -1.0])
SD = np.array([1.5, 0.7])


def numpy_log_prob(x):
    z = (np.asarray(x, np.float64) - MU) / SD
    return -0.5 * (z ** 2).sum(1) - np.log(SD).sum() - np.log(2 * np.pi)


def host_rows(seed, first, n):
    return np.stack([MU + SD * np.random.default_rng([seed, first + i]).standard_normal(2) for i in range(n)])


def test_host_density(flow):
    d = sde.Density.from_callbacks(2, sample=host_rows, log_prob=numpy_log_prob)
    assert d.dim == 2 and d.has_log_prob
    x = d.sample(5, seed=9, first_index=3)
    np.testing.assert_array_equal(x, host_rows(9, 3, 5).astype(np.float32))
    np.testing.assert_allclose(d.log_prob(x), numpy_log_prob(x), rtol=1e-12)
    failing = sde.Density.from_callbacks(2, sample=lambda s, f, n: 1 / 0)
    assert not failing.has_log_prob
    with pytest.raises(flowrt.NonFinite):
        failing.sample(3)
    with pytest.raises(flowrt.Unsupported):
        failing.log_prob(x)


def test_flow_with_host_base(flow):
    """A flow over the host density: the sampled log-densities and the
    separate backward likelihood agree (both use the host's log-density at
    the base end), encoding returns the host's own base samples, and t = 0
    gives the host's log-density; the score refuses a non-Gaussian base."""
    d = sde.Density.from_callbacks(2, sample=host_rows, log_prob=numpy_log_prob)
    hosted = sde.flow_with_base(flow.model, d)
    x, lp = hosted.sample(32, seed=4, return_log_prob=True, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(hosted.encode(x, rtol=1e-7, atol=1e-7), host_rows(4, 0, 32), atol=1e-3)
    np.testing.assert_allclose(hosted.log_prob(x, rtol=1e-7, atol=1e-7), lp, atol=1e-4)
    np.testing.assert_allclose(hosted.log_prob(x, t=0.0), numpy_log_prob(x), rtol=1e-9)
    with pytest.raises(flowrt.Unsupported):
        hosted.score(0.5, x)


def test_diagonal_normal_and_empirical_bases(flow):
    d = sde.Density.diagonal_normal(MU, SD)
    x = np.random.default_rng(0).standard_normal((7, 2)).astype(np.float32)
    np.testing.assert_allclose(d.log_prob(x), numpy_log_prob(x), rtol=1e-12)
    # A flow over a diagonal normal has a score; at t = 0 (β = 0) it is the
    # base's own score −(x − μ)/σ².
    hosted = sde.flow_with_base(flow.model, d)
    np.testing.assert_allclose(hosted.score(0.0, x), -(x - MU) / SD ** 2, rtol=1e-5, atol=1e-6)
    # params->base is ignored (the density replaces it), even when invalid.
    import ctypes
    p = _capi.flowrt_flow_default_params()
    p.base = 99
    h = ctypes.c_void_p()
    assert _capi.flowrt_flow_create_with_base(flow.model._handle, ctypes.byref(p), d._handle, ctypes.byref(h)) == 0
    _capi.flowrt_flow_free(h)
    assert np.isfinite(hosted.sample_sde(16, seed=1, steps=10)).all()
    pts = np.random.default_rng(1).standard_normal((20, 2)).astype(np.float32)
    e = sde.Density.empirical(pts)
    assert not e.has_log_prob
    y = e.sample(50, seed=1)
    assert all(any(np.array_equal(r, q) for q in pts) for r in y)
    with pytest.raises(flowrt.Unsupported):
        sde.flow_with_base(flow.model, e)
    with pytest.raises(flowrt.InvalidArgument):
        sde.Density.diagonal_normal([0.0, 0.0], [1.0, -1.0])


def test_cli_score_and_sample_sde(tmp_path):
    """`flowrt score` equals Flow.score on the same ONNX flow, refuses t = 1,
    and `flowrt sample-sde` equals Flow.sample_sde."""
    import os
    import subprocess
    cli = os.environ.get("FLOWRT_CLI")
    if not cli:
        pytest.skip("FLOWRT_CLI is not set")
    f = flowrt.Flow.mlp(2, hidden=16, depth=2, seed=7)
    path = tmp_path / "flow.onnx"
    f.save(path)
    x = np.random.default_rng(2).standard_normal((6, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([cli, "score", str(path), "--data", str(tmp_path / "x.npy"), "--time", "0.3",
                    "--out", str(tmp_path / "s.npy")], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), f.score(0.3, x), rtol=1e-6, atol=1e-6)
    r = subprocess.run([cli, "score", str(path), "--data", str(tmp_path / "x.npy"), "--time", "1",
                        "--out", str(tmp_path / "s.npy")], capture_output=True, text=True)
    assert r.returncode != 0 and "singular" in r.stderr
    subprocess.run([cli, "sample-sde", str(path), "-n", "20", "--steps", "10", "--seed", "3", "--epsilon", "0.5",
                    "--out", str(tmp_path / "y.npy")], check=True, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), f.sample_sde(20, seed=3, steps=10, epsilon=0.5))


def energy_distance(x, y):
    """U-statistic energy distance (Székely & Rizzo)."""
    def mean_dist(a, b, skip):
        d = np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
        n = len(a)
        return (d.sum() - (np.trace(d) if skip else 0)) / (n * (n - 1) if skip else len(a) * len(b))
    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


@pytest.mark.parametrize("coupling", ["independent", "exact-ot"])
def test_data_to_data_through_c(coupling):
    """Two empirical sets (8 gaussians → two moons, 2000 rows each) trained
    through the C ABI; fresh samples of each set transported to the other
    side match fresh samples there: energy distance below 10% of the
    untransported distance (≈ 0.31) and below 0.03 (null spread ≈ 0.004)."""
    from flowrt import datasets
    a = datasets.sample("8gaussians", 2000, seed=1)
    b = datasets.sample("moons", 2000, seed=2)
    model = flowrt.Model.mlp(2, hidden=64, depth=2, seed=2)
    trainer = sde.trainer_from_densities(model, sde.Density.empirical(b), sde.Density.empirical(a), lr=3e-3,
                                         batch_size=256, ema=0.99, seed=3, coupling=coupling)
    trainer.fit(1500)
    flow = flowrt.Flow(trainer.model())
    fa, fb = datasets.sample("8gaussians", 600, seed=21), datasets.sample("moons", 600, seed=22)
    before = energy_distance(fa, fb)
    to_b = flow.transport(fa, 0.0, 1.0, rtol=1e-4, atol=1e-4)
    to_a = flow.encode(fb, rtol=1e-4, atol=1e-4)
    for moved, other in ((to_b, datasets.sample("moons", 600, seed=23)), (to_a, datasets.sample("8gaussians", 600, seed=24))):
        e = energy_distance(moved, other)
        assert e < 0.1 * before and e < 0.03, (coupling, e, before)
    with pytest.raises(ValueError):
        sde.trainer_from_densities(model, sde.Density.empirical(b), coupling="sinkhorn")
