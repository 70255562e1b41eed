"""flowrt.dask on a LocalCluster of 2 worker processes equals the
single-process calls. Every row is computed from the same inputs and random
streams; the only difference is float32 GEMM rounding, which depends on
which rows share a matrix product (blocks of 250 here vs. one call of 1000),
so the comparison allows 1e-5 (observed: < 1e-6)."""
import numpy as np
import pytest

import flowrt
import flowrt.dask

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")


def test_log_prob_and_sample_on_a_local_cluster(tmp_path):
    flow = flowrt.Flow.mlp(2, hidden=32, depth=2, seed=4)
    path = tmp_path / "flow.onnx"
    flow.save(path)
    X = np.random.default_rng(0).standard_normal((1000, 2)).astype(np.float32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        lp = flowrt.dask.log_prob(path, da.from_array(X, chunks=(250, 2))).compute()
        s = flowrt.dask.sample(path, 900, chunks=200, seed=5).compute()
    np.testing.assert_allclose(lp, flow.log_prob(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, flow.sample(900, seed=5), rtol=1e-5, atol=1e-5)
    # Different seeds really give different samples (the test can fail).
    assert np.abs(s - flow.sample(900, seed=6)).max() > 0.1


def test_conditional_log_prob_and_sample_on_a_local_cluster(tmp_path):
    # Contexts are chunked with the points (or one context for all samples).
    flow = flowrt.Flow.mlp(2, hidden=32, depth=2, context_dim=3, seed=4)
    path = tmp_path / "flow.onnx"
    flow.save(path)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 2)).astype(np.float32)
    C = rng.standard_normal((1000, 3)).astype(np.float32)
    one = np.array([0.5, -1.0, 0.2], np.float32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        lp = flowrt.dask.log_prob(path, da.from_array(X, chunks=(250, 2)), context=C).compute()
        s = flowrt.dask.sample(path, 1000, chunks=300, seed=5, context=da.from_array(C, chunks=(500, 3))).compute()
        s1 = flowrt.dask.sample(path, 900, chunks=200, seed=5, context=one).compute()
    np.testing.assert_allclose(lp, flow.log_prob(X, context=C), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, flow.sample(1000, seed=5, context=C), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s1, flow.sample(900, seed=5, context=one), rtol=1e-5, atol=1e-5)


def test_class_labels_chunked_unlike_the_points(tmp_path):
    # Labels [n] as a dask array whose chunks differ from the points' (and
    # uneven): each block of X gets the labels of its own rows. A shifted
    # label would change the block's values (the check below can fail).
    flow = flowrt.Flow.mlp(2, hidden=32, depth=2, num_classes=5, seed=7)
    path = tmp_path / "labels.onnx"
    flow.save(path)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((700, 2)).astype(np.float32)
    y = rng.integers(0, 5, size=700).astype(np.float32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        lp = flowrt.dask.log_prob(path, da.from_array(X, chunks=(230, 2)),
                                  context=da.from_array(y, chunks=(100,))).compute()
        s = flowrt.dask.sample(path, 700, chunks=(333, 367), seed=2, context=da.from_array(y, chunks=(250,))).compute()
    np.testing.assert_allclose(lp, flow.log_prob(X, context=y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s, flow.sample(700, seed=2, context=y), rtol=1e-5, atol=1e-5)
    assert np.abs(lp - flow.log_prob(X, context=np.roll(y, 1))).max() > 1e-3
