"""Training through Python: determinism, resume, cancellation, and that a
flow actually learns a density with a known answer."""
import numpy as np
import pytest

import flowrt


def _velocities(model):
    x = np.random.default_rng(0).standard_normal((16, 2))
    return model.velocity(np.linspace(0, 1, 16), x)


def test_same_seed_same_weights_for_any_thread_count():
    X = flowrt.datasets.sample("checkerboard", 4000, seed=1)
    out = []
    for threads in (1, 2):
        with flowrt.Trainer(flowrt.Model.mlp(2, hidden=32, depth=2, seed=0), X, batch_size=256, lr=1e-3,
                            seed=5, threads=threads) as tr:
            tr.fit(40)
            out.append(_velocities(tr.model()))
    np.testing.assert_array_equal(out[0], out[1])


def test_checkpoint_resume_is_exact(tmp_path):
    X = flowrt.datasets.sample("8gaussians", 3000, seed=2)
    kw = dict(batch_size=128, lr=1e-3, seed=3, schedule="cosine", total_steps=60, warmup=10)
    init = flowrt.Model.mlp(2, hidden=32, depth=2, seed=1)
    with flowrt.Trainer(init, X, **kw) as straight:
        straight.fit(60)
        ref = _velocities(straight.model())
    with flowrt.Trainer(init, X, **kw) as first:
        first.fit(25)
        first.save_checkpoint(tmp_path / "t.ckpt")
    with flowrt.Trainer(init, X, **kw) as resumed:
        resumed.load_checkpoint(tmp_path / "t.ckpt")
        assert resumed.losses.steps == 25
        resumed.fit(35)
        np.testing.assert_array_equal(_velocities(resumed.model()), ref)


def test_cancel_keeps_completed_steps_and_ctrl_c_raises():
    X = flowrt.datasets.sample("rings", 2000, seed=4)
    with flowrt.Trainer(flowrt.Model.mlp(2, hidden=16, depth=1), X, batch_size=64) as tr:
        tr.fit(1000, callback=lambda step, total, loss: step >= 7)
        assert tr.losses.steps == 7

        def interrupt(step, total, loss):
            if step == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            tr.fit(1000, callback=interrupt)
        assert tr.losses.steps == 10


def test_learns_a_gaussian_target():
    """N(0, I) → N(μ, σ² I): after training, samples have the target's mean
    and standard deviation, and the likelihood of held-out data is close to
    the Gaussian's exact value (entropy of N(μ, σ²I) in 2-D)."""
    mu, sigma = np.array([1.5, -0.5]), 0.5
    X = mu + sigma * np.random.default_rng(0).standard_normal((8000, 2))
    flow = flowrt.Flow.mlp(2, hidden=64, depth=2, seed=2)
    losses = flow.fit(X, steps=600, batch_size=256, lr=3e-3, seed=1)
    assert np.isfinite(losses.heldout)
    s = flow.sample(4000, seed=8)
    np.testing.assert_allclose(s.mean(0), mu, atol=0.06)
    np.testing.assert_allclose(s.std(0), sigma, atol=0.06)
    test = mu + sigma * np.random.default_rng(1).standard_normal((1000, 2))
    nll = -flow.log_prob(test).mean()
    exact = np.log(2 * np.pi * np.e * sigma ** 2)  # entropy of N(μ, σ² I₂)
    assert abs(nll - exact) < 0.1, (nll, exact)


def test_errors():
    with pytest.raises(flowrt.ShapeMismatch):
        flowrt.Trainer(flowrt.Model.mlp(2, hidden=8, depth=1), np.zeros((10, 3)))
    with pytest.raises(flowrt.NonFinite):
        flowrt.Trainer(flowrt.Model.mlp(2, hidden=8, depth=1), np.full((10, 2), np.nan))
    with pytest.raises(ValueError):
        flowrt.Trainer(flowrt.Model.mlp(2, hidden=8, depth=1), np.zeros((10, 2)), optimizer="sgd")
