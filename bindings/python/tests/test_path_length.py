"""Path-length optimisation from Python (issue 16 item 5): a Trainer with
interpolant='fourier' learns its schedule; the flow it trained saves its
coefficients in the ONNX metadata and loads back as the same flow."""
import numpy as np
import pytest

import flowrt

MU, SIGMA = 2.0, 0.7


def path_energy(a, b, points=4000):
    """∫ E|v|² dt of the exact velocity between N(0, 1) and N(MU, SIGMA²) for
    α = 1 − t + Σ a_k sin(kπt), β = t + Σ b_k sin(kπt): the marginal is
    N(βμ, s²), s² = α² + β²σ², so E|v|² = (β'μ)² + s'² (midpoint rule, numpy)."""
    t = (np.arange(points) + 0.5) / points
    k = np.arange(1, len(a) + 1)[:, None] * np.pi
    alpha = 1 - t + (np.asarray(a)[:, None] * np.sin(k * t)).sum(0)
    beta = t + (np.asarray(b)[:, None] * np.sin(k * t)).sum(0)
    dalpha = -1 + (np.asarray(a)[:, None] * k * np.cos(k * t)).sum(0)
    dbeta = 1 + (np.asarray(b)[:, None] * k * np.cos(k * t)).sum(0)
    s = np.sqrt(alpha ** 2 + beta ** 2 * SIGMA ** 2)
    ds = (alpha * dalpha + beta * dbeta * SIGMA ** 2) / s
    return float(np.mean((dbeta * MU) ** 2 + ds ** 2))


def trig_energy(points=4000):
    t = (np.arange(points) + 0.5) / points
    alpha, beta = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
    dalpha, dbeta = -np.pi / 2 * beta, np.pi / 2 * alpha
    s = np.sqrt(alpha ** 2 + beta ** 2 * SIGMA ** 2)
    ds = (alpha * dalpha + beta * dbeta * SIGMA ** 2) / s
    return float(np.mean((dbeta * MU) ** 2 + ds ** 2))


@pytest.fixture(scope="module")
def trained():
    X = np.random.default_rng(0).normal(MU, SIGMA, size=(4000, 1)).astype(np.float32)
    model = flowrt.Model.mlp(dim=1, hidden=32, depth=2, seed=3)
    trainer = flowrt.Trainer(model, X, interpolant="fourier", terms=2, path_lr=0.003, path_warmup=100,
                             path_inner=4, path_batch=2048, lr=5e-3, batch_size=256, ema=0, seed=3, threads=2)
    assert np.isnan(trainer.kinetic_energy)
    a, b = trainer.fourier_coefficients
    assert a.tolist() == [0, 0] and b.tolist() == [0, 0]
    trainer.fit(300)
    yield trainer
    trainer.close()


def test_the_learned_path_is_shorter_than_linear_and_trig(trained):
    a, b = trained.fourier_coefficients
    learned = path_energy(a, b)
    assert np.any(a != 0) or np.any(b != 0)
    assert learned < path_energy([], []) and learned < trig_energy()
    assert trained.kinetic_energy == pytest.approx(learned, rel=0.25)
    assert trained.losses.steps == 100 + 4 * 200


def test_the_saved_flow_loads_back_with_its_coefficients(trained, tmp_path):
    flow = trained.flow()
    a, b = trained.fourier_coefficients
    assert flow.interpolant == "fourier"
    fa, fb = flow.fourier_coefficients
    assert fa.tolist() == a.tolist() and fb.tolist() == b.tolist()
    flow.save(tmp_path / "fourier.onnx")
    loaded = flowrt.load(tmp_path / "fourier.onnx")
    assert loaded.interpolant == "fourier"
    la, lb = loaded.fourier_coefficients
    assert la.tolist() == a.tolist() and lb.tolist() == b.tolist()  # bit for bit
    X = np.linspace(-1, 3, 50, dtype=np.float32)[:, None]
    np.testing.assert_allclose(loaded.log_prob(X), flow.log_prob(X), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(loaded.sample(40, seed=5), flow.sample(40, seed=5))
    np.testing.assert_array_equal(loaded.score(0.3, X), flow.score(0.3, X))
    # Other interpolants have no coefficients.
    assert flowrt.Flow.mlp(dim=1, hidden=8).fourier_coefficients is None


def test_malformed_coefficients_are_a_named_error(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    trained.flow().save(tmp_path / "good.onnx")
    for key, value, words in (("flowrt.fourier.alpha", "0.1,abc", "not a number"),
                              ("flowrt.fourier.beta", "0.1,inf", "finite"),
                              ("flowrt.fourier.beta", "0.1", "as many")):
        proto = onnx.load(str(tmp_path / "good.onnx"))
        for entry in proto.metadata_props:
            if entry.key == key:
                entry.value = value
        onnx.save(proto, str(tmp_path / "bad.onnx"))
        with pytest.raises(flowrt.ONNXError, match=key) as info:
            flowrt.load(tmp_path / "bad.onnx")
        assert words in str(info.value)
    proto = onnx.load(str(tmp_path / "good.onnx"))
    kept = [e for e in proto.metadata_props if e.key != "flowrt.fourier.beta"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "missing.onnx"))
    with pytest.raises(flowrt.ONNXError, match="flowrt.fourier.beta is missing"):
        flowrt.load(tmp_path / "missing.onnx")


def test_path_settings_and_refusals(trained, tmp_path):
    X = np.zeros((10, 1), np.float32)
    model = flowrt.Model.mlp(dim=1, hidden=8)
    with pytest.raises(ValueError, match="interpolant='fourier'"):
        flowrt.Trainer(model, X, terms=3)
    with pytest.raises(flowrt.InvalidArgument, match="terms"):
        flowrt.Trainer(model, X, interpolant="fourier", terms=0)
    with pytest.raises(flowrt.NonFinite):
        flowrt.Trainer(model, X, interpolant="fourier", path_lr=float("nan"))
    with pytest.raises(flowrt.Unsupported, match="checkpoint"):
        trained.save_checkpoint(tmp_path / "x.ckpt")
    with flowrt.Trainer(model, X, interpolant="linear") as plain:
        with pytest.raises(flowrt.InvalidArgument, match="not a path-length trainer"):
            plain.fourier_coefficients
        assert plain.flow().interpolant == "linear"
