"""Python callables as interpolant schedules (FLOWRT_INTERPOLANT_CUSTOM):
the same numbers as the built-in schedules, exceptions as FlowError, and
saved flows that record "custom"."""
import gc

import numpy as np
import pytest

import flowrt


def linear(t):
    return 1 - t, t, -1.0, 1.0


def trig(t):
    h = np.pi / 2
    if t == 1:
        return 0.0, 1.0, -h, 0.0
    return np.cos(h * t), np.sin(h * t), -h * np.sin(h * t), h * np.cos(h * t)


def _velocities(model):
    x = np.random.default_rng(0).standard_normal((16, 2))
    return model.velocity(np.linspace(0, 1, 16), x)


X = flowrt.datasets.sample("8gaussians", 2000, seed=3)
KW = dict(batch_size=128, lr=2e-3, seed=4, threads=2, ema=0.9)


def test_python_linear_schedule_trains_like_linear():
    """(1 − t, t, −1, 1) in Python are the same doubles as the built-in
    linear schedule: the same losses and weights, bit for bit."""
    out = []
    for interpolant in ("linear", linear):
        with flowrt.Trainer(flowrt.Model.mlp(2, hidden=32, depth=2, seed=1), X, interpolant=interpolant, **KW) as tr:
            losses = [tr.step() for _ in range(5)]
            tr.fit(10)
            out.append((losses, tr.losses, _velocities(tr.model())))
            assert tr.interpolant == ("custom" if callable(interpolant) else "linear")
    assert out[0][0] == out[1][0]
    assert out[0][1] == out[1][1]
    np.testing.assert_array_equal(out[0][2], out[1][2])


def test_flow_with_a_python_schedule_fits_scores_and_saves(tmp_path):
    flow = flowrt.Flow.mlp(2, hidden=32, depth=2, interpolant=trig, seed=2)
    ref = flowrt.Flow.mlp(2, hidden=32, depth=2, interpolant="trig", seed=2)
    assert flow.interpolant == "custom"
    flow.fit(X, steps=20, batch_size=128, seed=1, threads=2)
    ref.fit(X, steps=20, batch_size=128, seed=1, threads=2)
    gc.collect()  # the flow still holds its schedule
    # numpy's sin/cos may differ from libm's in the last bit: the float
    # coefficients and hence the weights agree to float rounding.
    np.testing.assert_allclose(flow.velocity(0.5, X[:32]), ref.velocity(0.5, X[:32]), rtol=1e-5, atol=1e-6)
    t = np.linspace(0.05, 0.9, 32)
    np.testing.assert_allclose(flow.score(t, X[:32]), ref.score(t, X[:32]), rtol=1e-4, atol=1e-5)
    assert np.isfinite(flow.sample_sde(16, seed=1, steps=20)).all()

    path = tmp_path / "custom.onnx"
    flow.save(path)
    back = flowrt.load(path)
    assert back.interpolant == "custom" and back.model.metadata["flowrt.interpolant"] == "custom"
    np.testing.assert_allclose(back.sample(8, seed=5), flow.sample(8, seed=5), atol=1e-4)
    with pytest.raises(flowrt.Unsupported, match="FLOWRT_INTERPOLANT_CUSTOM"):
        back.score(t, X[:32])
    with pytest.raises(ValueError, match="interpolant="):
        back.fit(X, steps=1)
    rebuilt = flowrt.load(path, interpolant=trig)
    np.testing.assert_allclose(rebuilt.score(t, X[:32]), flow.score(t, X[:32]), atol=1e-4)


class Boom(RuntimeError):
    pass


def test_a_raising_schedule_is_a_flow_error_not_a_crash():
    state = {"fail": False}

    def flaky(t):
        if state["fail"]:
            raise Boom("no coefficients today")
        return linear(t)

    with flowrt.Trainer(flowrt.Model.mlp(2, hidden=16, depth=1, seed=0), X, interpolant=flaky, **KW) as tr:
        tr.step()
        before = _velocities(tr.model())
        state["fail"] = True
        with pytest.raises(flowrt.NonFinite, match="Boom: no coefficients today") as e:
            tr.step()
        assert isinstance(e.value.__cause__, Boom) and "schedule 'custom'" in str(e.value)
        with pytest.raises(flowrt.FlowError):
            tr.fit(3)
        assert tr.losses.steps == 1
        np.testing.assert_array_equal(_velocities(tr.model()), before)  # the failed steps changed nothing
        state["fail"] = False
        tr.fit(2)
        assert tr.losses.steps == 3

    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=1), interpolant=flaky)
    state["fail"] = True
    with pytest.raises(flowrt.NonFinite):
        flow.score([0.5], X[:1])
    with pytest.raises(flowrt.NonFinite):
        flow.sample_sde(4, steps=10)
    flow.sample(4)  # sampling needs no schedule
    # Raising, or not returning four numbers, at creation: rejected there.
    with pytest.raises(flowrt.FlowError) as e:
        flowrt.Trainer(flowrt.Model.mlp(2, hidden=16, depth=1), X, interpolant=flaky)
    assert isinstance(e.value.__cause__, Boom)
    with pytest.raises(flowrt.FlowError):
        flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=1), interpolant=lambda t: (1 - t, t))


def test_bad_schedules_are_rejected_at_creation():
    model = flowrt.Model.mlp(2, hidden=16, depth=1)
    with pytest.raises(flowrt.InvalidArgument, match=r"β\(1\)=0.5"):
        flowrt.Flow(model, interpolant=lambda t: (1 - t, 0.5 * t, -1.0, 0.5))
    with pytest.raises(ValueError, match="callable"):
        flowrt.Flow(model, interpolant="custom")
    with pytest.raises(ValueError):
        flowrt.Trainer(model, X, interpolant="cosine")
    with pytest.raises(ValueError):
        flowrt.Trainer(model, X, interpolant=3)
