"""Conditional flows from Python (issue 15): context= on sample, log_prob,
transport, encode, fit and Trainer; Flow.mlp(..., context_dim=m); the
Gaussian-linear simulation-based-inference example end to end against the
closed-form posterior (mean, covariance, log p(θ | x_obs))."""
import pathlib
import sys

import numpy as np
import pytest

import flowrt

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import sbi_gaussian_linear as sbi  # noqa: E402


def test_sbi_gaussian_linear_posterior_matches_closed_form():
    # θ ~ N(0, 0.1 I₂), x | θ ~ N(θ, 0.1 I₂) ⇒ θ | x ~ N(x/2, 0.05 I₂).
    r = sbi.run(dim=2, simulations=20_000, steps=4000, observations=5, posterior_samples=4000,
                hidden=128, depth=3, batch_size=512, lr=2e-3, verbose=False)
    print(r)
    assert r["max_mean_error_in_sd"] < 0.2, r        # 4000 samples: sampling error ≈ 0.016 sd
    assert r["max_cov_error_relative"] < 0.2, r      # measured ≈ 0.09
    assert r["max_mean_abs_log_prob_error"] < 0.15, r  # measured ≈ 0.05 nats


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(1)
    theta, x = sbi.simulate(4000, 2, rng)
    flow = flowrt.Flow.mlp(2, hidden=32, depth=2, context_dim=2, seed=2)
    flow.fit(theta, context=x, steps=200, batch_size=256, seed=3)
    return flow


def test_context_dims():
    f = flowrt.Flow.mlp(3, hidden=16, depth=1, context_dim=4)
    assert (f.dim, f.context_dim, f.num_classes, f.model.context_dim) == (3, 4, 0, 4)
    assert flowrt.Flow.mlp(3, hidden=16, depth=1).context_dim == 0


def test_one_context_for_all_equals_repeated_contexts(trained):
    c = np.array([0.2, -0.1], np.float32)
    a = trained.sample(50, seed=4, context=c)
    b = trained.sample(50, seed=4, context=np.repeat(c[None], 50, axis=0))
    assert np.array_equal(a, b)


def test_each_point_independent_of_its_batch(trained):
    rng = np.random.default_rng(5)
    c = rng.normal(0, 0.4, (20, 2)).astype(np.float32)
    x, lp = trained.sample(20, seed=6, context=c, return_log_prob=True)
    for i in (0, 7, 19):
        xi, lpi = trained.sample(1, seed=6, first_index=i, context=c[i:i + 1], return_log_prob=True)
        assert np.array_equal(xi[0], x[i]) and lpi[0] == lp[i]


def test_log_prob_encode_transport_consistent(trained):
    rng = np.random.default_rng(7)
    c = rng.normal(0, 0.4, (30, 2)).astype(np.float32)
    x, lp = trained.sample(30, seed=8, context=c, return_log_prob=True)
    lq = trained.log_prob(x, context=c)
    assert np.abs(lq - lp).max() < 2e-3
    z = trained.encode(x, context=c)
    back = trained.transport(z, 0.0, 1.0, context=c)
    assert np.abs(back - x).max() < 1e-3
    # Hutchinson agrees with the exact trace on average.
    lh = trained.log_prob(x, context=c, method="hutchinson", probes=8)
    assert abs(float(np.mean(lh - lq))) < 0.1


def test_misuse_is_a_clear_error(trained):
    with pytest.raises(ValueError, match=r"pass context=\[n, 2\]"):
        trained.sample(3)
    with pytest.raises(ValueError, match="conditional"):
        trained.log_prob(np.zeros((3, 2)))
    with pytest.raises(flowrt.ShapeMismatch):
        trained.log_prob(np.zeros((3, 2)), context=np.zeros((2, 2)))
    with pytest.raises(flowrt.NonFinite):
        trained.log_prob(np.zeros((2, 2)), context=np.array([[0, np.nan], [0, 0]]))
    with pytest.raises(flowrt.Unsupported, match="label"):
        trained.sample(3, context=np.zeros(2), guidance=1.0)
    plain = flowrt.Flow.mlp(2, hidden=8, depth=1)
    with pytest.raises(ValueError, match="unconditional"):
        plain.sample(3, context=np.zeros((3, 2)))
    with pytest.raises(flowrt.InvalidArgument, match="label"):
        flowrt.Trainer(plain.model, np.zeros((10, 2)), label_dropout=0.1)
    with pytest.raises(ValueError, match="conditional"):
        flowrt.Trainer(trained.model, np.zeros((10, 2)))


def test_training_is_deterministic_across_threads():
    rng = np.random.default_rng(9)
    theta, x = sbi.simulate(2000, 2, rng)
    model = flowrt.Flow.mlp(2, hidden=32, depth=2, context_dim=2, seed=1).model
    out = []
    for threads in (1, 2):
        with flowrt.Trainer(model, theta, context=x, batch_size=512, seed=3, threads=threads) as t:
            t.fit(5)
            out.append(t.model().velocity(np.full(4, 0.5), theta[:4], context=x[:4]))
    assert np.array_equal(out[0], out[1])


def test_label_mlp_with_dropout_and_guidance():
    # Class 0 → N(−2, 0.5²), class 1 → N(2, 0.5²); class 2 is the null label
    # that label dropout teaches (the mixture of both).
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 8000)
    X = (np.where(y == 0, -2.0, 2.0) + 0.5 * rng.normal(size=8000)).astype(np.float32)[:, None]
    flow = flowrt.Flow.mlp(1, hidden=64, depth=2, num_classes=3, seed=1)
    assert (flow.context_dim, flow.num_classes) == (1, 3)
    flow.fit(X, context=y.astype(np.float32), steps=1500, batch_size=512, seed=2, label_dropout=0.2)
    for label, mean in ((0, -2.0), (1, 2.0)):
        s = flow.sample(4000, seed=label, context=[label])
        assert abs(float(s.mean()) - mean) < 0.15 and abs(float(s.std()) - 0.5) < 0.1, (label, s.mean(), s.std())
        lp = flow.log_prob(np.array([[mean]]), context=[label])
        assert abs(lp[0] - (-0.5 * np.log(2 * np.pi * 0.25))) < 0.2, lp
    null = flow.sample(4000, seed=3, context=[2])
    assert abs(float(np.abs(null).mean()) - 2.0) < 0.25 and abs(float(null.mean())) < 0.3
    guided = flow.sample(4000, seed=1, context=[1], guidance=2.0)
    assert guided.mean() > 1.8 and (guided < 0).mean() < 0.01
    with pytest.raises(flowrt.InvalidArgument, match="guidance"):
        flow.sample(10, seed=1, context=[1], guidance=2.0, return_log_prob=True)


def test_saved_conditional_flow_is_complete(tmp_path):
    # The ONNX file holds the context input and flowrt.context_dim /
    # flowrt.num_classes: a reloaded flow samples identically.
    c = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    f = flowrt.Flow.mlp(2, hidden=16, depth=2, context_dim=3, seed=1)
    f.save(tmp_path / "f.onnx")
    g = flowrt.load(tmp_path / "f.onnx")
    assert g.context_dim == 3
    assert np.array_equal(f.sample(5, seed=1, context=c), g.sample(5, seed=1, context=c))
    h = flowrt.Flow.mlp(1, hidden=16, depth=2, num_classes=3, seed=1)
    h.save(tmp_path / "h.onnx")
    k = flowrt.load(tmp_path / "h.onnx")
    assert (k.context_dim, k.num_classes) == (1, 3)
    labels = [0, 1, 2, 1, 0]
    assert np.array_equal(h.sample(5, seed=1, context=labels), k.sample(5, seed=1, context=labels))


def test_cli_conditional_commands(tmp_path):
    # flowrt conditional sample / logprob / encode with --context files
    # agree with the Python calls on the same saved flow.
    import os
    import subprocess
    cli = os.environ.get("FLOWRT_CLI")
    if not cli:
        pytest.skip("FLOWRT_CLI is not set")
    f = flowrt.Flow.mlp(2, hidden=16, depth=2, context_dim=2, seed=3)
    f.save(tmp_path / "f.onnx")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 2)).astype(np.float32)
    C = rng.normal(size=(6, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "c.npy", C)
    np.savetxt(tmp_path / "one.csv", C[:1], delimiter=",")

    def run(*args):
        out = subprocess.run([cli, "conditional", *args, "--quiet"], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr

    run("sample", "f.onnx", "--context", "c.npy", "--out", "s.npy", "--seed", "2")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), f.sample(6, seed=2, context=C), atol=1e-6)
    run("sample", "f.onnx", "--context", "one.csv", "-n", "5", "--out", "s1.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s1.npy"), f.sample(5, seed=0, context=C[0]), atol=1e-6)
    run("logprob", "f.onnx", "--data", "x.npy", "--context", "c.npy", "--out", "lp.npy")
    np.testing.assert_allclose(np.load(tmp_path / "lp.npy"), f.log_prob(X, context=C), atol=1e-6)
    run("encode", "f.onnx", "--data", "x.npy", "--context", "c.npy", "--out", "z.npy")
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), f.encode(X, context=C), atol=1e-6)


def test_class_conditional_unet_fixture_runs_as_a_flow():
    # The torchcfm class-conditional U-Net (ONNX, labels [B]) is a flow with
    # a label per sample: sampling with log-densities (Hutchinson), encoding
    # and transport invert each other, and the label changes the sample.
    path = pathlib.Path(__file__).resolve().parents[3] / "Tests/ONNXData/images/tcfm_unet_cond_tiny__legacy__op17.onnx"
    if not path.exists():
        pytest.skip("fixture not present")
    f = flowrt.load(path)
    assert (f.dim, f.context_dim, f.num_classes) == (64, 1, 10)
    labels = [1, 4, 9]
    solver = dict(method="rk4", steps=4)
    x, lp = f.sample(3, seed=1, context=labels, return_log_prob=True, divergence="hutchinson", probes=2, **solver)
    assert np.isfinite(lp).all()
    z = f.encode(x, context=labels, **solver)
    assert np.abs(f.transport(z, 0.0, 1.0, context=labels, **solver) - x).max() < 1e-4
    other = f.sample(3, seed=1, context=[0, 0, 0], **solver)
    assert np.abs(other - x).max() > 1e-3
    guided = f.sample(3, seed=1, context=labels, guidance=1.0, **solver)
    assert np.isfinite(guided).all() and np.abs(guided - x).max() > 1e-4


def _cli(tmp_path, *args):
    import os
    import subprocess
    cli = os.environ.get("FLOWRT_CLI")
    if not cli:
        pytest.skip("FLOWRT_CLI is not set")
    return subprocess.run([cli, *args], cwd=tmp_path, capture_output=True, text=True)


def test_cli_train_with_context_learns_the_conditional_mean(tmp_path):
    # flowrt train --data X --context C: pairs x_i = (c_i, -c_i) + 0.1 ε; the
    # saved model is conditional (context_dim 1) and its samples given c sit
    # at (c, -c) with spread 0.1 (CSV contexts with a header, too).
    rng = np.random.default_rng(5)
    c = rng.uniform(-2, 2, size=(6000, 1)).astype(np.float32)
    x = (np.hstack([c, -c]) + 0.1 * rng.normal(size=(6000, 2))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "c.csv", c, delimiter=",", header="c", comments="")
    out = _cli(tmp_path, "train", "--data", "x.npy", "--context", "c.csv", "--context-header", "--steps", "1500",
               "--width", "64", "--depth", "2", "--batch", "512", "--seed", "1", "--out", "m.onnx")
    assert out.returncode == 0, out.stderr
    f = flowrt.load(tmp_path / "m.onnx")
    assert (f.dim, f.context_dim, f.num_classes) == (2, 1, 0)
    for value in (-1.5, 0.0, 1.0):
        s = f.sample(2000, seed=2, context=[value])
        np.testing.assert_allclose(s.mean(axis=0), [value, -value], atol=0.04)  # measured error ≤ 0.008
        assert 0.08 < s.std(axis=0).min() and s.std(axis=0).max() < 0.15, s.std(axis=0)  # measured 0.12–0.13


def test_cli_train_with_class_labels(tmp_path):
    # --num-classes K: labels [n] select class means; with --label-dropout
    # the last class is the null label, and guidance sampling runs.
    rng = np.random.default_rng(6)
    means = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    labels = rng.integers(0, 2, size=5000)          # classes 0, 1; class 2 is the null label
    x = (means[labels] + 0.2 * rng.normal(size=(5000, 2))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels.astype(np.float32))
    out = _cli(tmp_path, "train", "--data", "x.npy", "--context", "y.npy", "--num-classes", "3", "--label-dropout",
               "0.2", "--steps", "1200", "--width", "64", "--depth", "2", "--batch", "512", "--out", "m.onnx")
    assert out.returncode == 0, out.stderr
    f = flowrt.load(tmp_path / "m.onnx")
    assert (f.context_dim, f.num_classes) == (1, 3)
    for k in (0, 1):
        s = f.sample(1000, seed=3, context=[k] * 1000)
        np.testing.assert_allclose(s.mean(axis=0), means[k], atol=0.06)  # measured error ≤ 0.013
        assert 0.15 < s.std(axis=0).min() and s.std(axis=0).max() < 0.26, s.std(axis=0)  # measured 0.20–0.22
    assert np.isfinite(f.sample(10, seed=3, context=[1] * 10, guidance=1.0)).all()


def test_cli_train_context_errors(tmp_path):
    # Mismatched rows, labels out of range, options without --context, and
    # --context with --toy are refused with messages that say what to do.
    np.save(tmp_path / "x.npy", np.zeros((10, 2), np.float32))
    np.save(tmp_path / "c.npy", np.zeros((9, 3), np.float32))
    np.save(tmp_path / "y.npy", np.full(10, 4, np.float32))
    cases = [
        (("--data", "x.npy", "--context", "c.npy"), "--context has 9 rows but --data 10"),
        (("--data", "x.npy", "--context", "y.npy", "--num-classes", "3"), "not a class in 0..<3"),
        (("--data", "x.npy", "--num-classes", "3"), "need --context"),
        (("--data", "x.npy", "--context", "y.npy", "--label-dropout", "0.1"), "needs class labels (--num-classes)"),
        (("--toy", "moons", "--context", "c.npy"), "a --toy dataset has none"),
        (("--images", "digits", "--num-classes", "10"), "need --context"),
    ]
    for args, message in cases:
        out = _cli(tmp_path, "train", *args, "--steps", "1")
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr)


CONDITIONAL_FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "Tests" / "ONNXData" / "conditional"


@pytest.mark.parametrize("name", ["cmlp__legacy__op17.onnx", "cmlp__dynamo__opdefault.onnx"])
def test_pytorch_exported_conditional_mlp_matches_pytorch(name):
    # A conditional MLP (inputs t [B], x [B, 3], context [B, 4], in that
    # order; sinusoidal time features, a context encoder) exported by
    # torch's legacy and dynamo exporters: FlowRuntime's velocity matches
    # PyTorch's within 1e-4 × max|v| at batch 1, 5 and 7, each row with its
    # own context (measured ≤ 5e-7); a row evaluated alone gives the same velocity as in its
    # batch, and another context gives another velocity.
    import json
    ref = json.loads((CONDITIONAL_FIXTURES / name).with_suffix(".json").read_text())
    model = flowrt.Model.load(CONDITIONAL_FIXTURES / name)
    assert (model.dim, model.context_dim, model.num_classes) == (3, 4, 0)
    for case in ref["cases"]:
        ins = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"]) for i in case["inputs"]}
        want = np.asarray(case["outputs"][0]["data"], np.float32).reshape(case["outputs"][0]["shape"])
        got = model.velocity(ins["t"], ins["x"], context=ins["context"])
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= ref["tolerance"] * np.abs(want).max(), (name, case["batch"])
    t, x, c = ins["t"], ins["x"], ins["context"]
    assert len(np.unique(c, axis=0)) == len(c)  # contexts vary per row
    for i in range(len(t)):
        np.testing.assert_allclose(model.velocity(t[i:i + 1], x[i:i + 1], context=c[i:i + 1])[0], got[i],
                                   rtol=0, atol=1e-6 * np.abs(got).max())
    assert np.abs(model.velocity(t, x, context=c[::-1].copy()) - got).max() > 1e-2 * np.abs(got).max()
    # As a flow: one context per sample.
    f = flowrt.Flow(model)
    assert f.context_dim == 4 and np.isfinite(f.sample(len(c), seed=1, context=c)).all()
