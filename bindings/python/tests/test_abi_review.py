"""The Python side of the issue 16 item 4 review (docs/abi-review.md): the
SDE sampler reports progress and statistics like the ODE calls, sampling
functions take first_index, the coupling is a Trainer setting, and the
limits are the header's."""
import numpy as np
import pytest

import flowrt


def test_sample_sde_progress_and_stats():
    flow = flowrt.Flow.mlp(dim=2, hidden=16, depth=2, seed=1)
    reports = []
    x, stats = flow.sample_sde(30, seed=4, steps=40, first_index=7, return_stats=True,
                               callback=lambda done, total, value: reports.append((done, total, value)) and False)
    np.testing.assert_array_equal(x, flow.sample_sde(30, seed=4, steps=40, first_index=7))
    assert stats.samples == 30 and stats.steps == 30 * 40 and stats.evaluations == 30 * (39 * 2 + 2)
    assert stats.non_finite_samples == 0 and stats.max_steps_per_sample == 40
    assert len(reports) >= 5 and reports[-1] == (30, 30, 1.0)
    assert [r[2] for r in reports] == sorted(r[2] for r in reports)
    with pytest.raises(flowrt.Cancelled):
        flow.sample_sde(30, seed=4, steps=40, callback=lambda done, total, value: True)


def test_sampling_ranges_in_one_order():
    full = flowrt.datasets.sample("moons", 20, seed=3)
    np.testing.assert_array_equal(flowrt.datasets.sample("moons", 8, seed=3, first_index=12), full[12:])
    d = flowrt.Density.diagonal_normal([0.0, 1.0], [1.0, 0.5])
    np.testing.assert_array_equal(d.sample(6, seed=2, first_index=4), d.sample(10, seed=2)[4:])


def test_coupling_is_a_trainer_setting():
    X = flowrt.datasets.sample("8gaussians", 512, seed=0)
    model = flowrt.Model.mlp(dim=2, hidden=16, depth=2, seed=2)
    weights = {}
    for coupling in ("independent", "exact-ot"):
        with flowrt.Trainer(model, X, coupling=coupling, batch_size=128, seed=1, threads=1) as t:
            t.fit(3)
            weights[coupling] = t.model().velocity(0.5, X[:16])
    assert not np.array_equal(weights["independent"], weights["exact-ot"])
    with pytest.raises(ValueError, match="coupling"):
        flowrt.Trainer(model, X, coupling="sinkhorn")
    with pytest.raises(flowrt.InvalidArgument, match="coupling"):
        flowrt.Trainer(model, X, interpolant="fourier", coupling="exact-ot")


def test_thread_limit_is_the_headers():
    flow = flowrt.Flow.mlp(dim=2, hidden=8, depth=1)
    flow.sample(3, threads=4096)
    with pytest.raises(flowrt.InvalidArgument, match="4096"):
        flow.sample(3, threads=4097)


def test_cli_reports_non_finite_inputs(tmp_path):
    import os
    import subprocess
    cli = os.environ.get("FLOWRT_CLI")
    if not cli:
        pytest.skip("FLOWRT_CLI not set")
    (tmp_path / "x.csv").write_text("0.5,0.1\nnan,0.2\n")
    np.save(tmp_path / "x.npy", np.array([[0.5, 0.1], [np.inf, 0.2]], np.float32))
    for command in (["logprob", "mlp:dim=2", "--data", str(tmp_path / "x.csv")],
                    ["encode", "mlp:dim=2", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy")]):
        r = subprocess.run([cli, *command], capture_output=True, text=True)
        assert r.returncode != 0 and "row 1, column 0" in r.stderr and "not a finite" in r.stderr, r.stderr
    # Through the C call: the element named (the Swift core's own check,
    # Transport.checkPoints, is tested in SolverTests).
    flow = flowrt.Flow.mlp(dim=2, hidden=8, depth=1)
    with pytest.raises(flowrt.NonFinite, match=r"x\[2\] is nan"):
        flow.log_prob(np.array([[0.5, 0.1], [np.nan, 0.2]], np.float32))
