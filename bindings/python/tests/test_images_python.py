"""flowrt.images: dequantization, bits per dimension through a flow over a
U-Net (exact and Hutchinson agree), Fashion-MNIST from Debian's package."""
import os

import numpy as np
import pytest

import flowrt
from flowrt import images


def test_dequantize_is_seeded_and_inside_the_cells():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    y = images.dequantize(x, seed=1)
    assert y.shape == (2, 12) and y.dtype == np.float32
    k = x.reshape(2, 12).astype(np.float64)
    assert np.all(y >= k / 128 - 1) and np.all(y < (k + 1) / 128 - 1)
    np.testing.assert_array_equal(y, images.dequantize(x, seed=1))
    assert not np.array_equal(y, images.dequantize(x, seed=2))
    assert images.dequantize(np.full((1, 2, 2), 255, np.uint8)).max() < 1
    with pytest.raises(ValueError):
        images.dequantize(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        images.dequantize(np.full((1, 2, 2), 300))


def test_bits_per_dim_exact_and_hutchinson_agree():
    flow = flowrt.Flow(flowrt.Model.unet(height=8, width=8, model_channels=8, channel_mult=(1, 2), attention=(4,),
                                         groups=4, seed=3))
    rng = np.random.default_rng(0)
    x = (rng.random((12, 8, 8)) * 255).astype(np.uint8)
    mean, se, per = images.bits_per_dim(flow, x, probes=None, rtol=1e-4, atol=1e-4)
    assert per.shape == (12,) and np.isfinite(per).all() and se > 0
    # By hand: −ln p /(d ln 2) + 7 from the flow's log-density of the same dequantized points.
    lp = flow.log_prob(images.dequantize(x, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(per, -lp / (64 * np.log(2)) + 7, rtol=1e-9)
    mh, seh, _ = images.bits_per_dim(flow, x, probes=8, rtol=1e-4, atol=1e-4)
    assert abs(mh - mean) < 4 * seh + 1e-3
    with pytest.raises(ValueError):
        images.bits_per_dim(flow, np.zeros((2, 4, 4), np.uint8))


@pytest.mark.skipif(not os.path.exists(images.FASHION_MNIST_DIR), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian():
    x = images.fashion_mnist("test")
    y = images.fashion_mnist("test", labels=True)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert list(y[:5]) == [9, 2, 1, 1, 6] and np.bincount(y).tolist() == [1000] * 10


def _checker_images(n, seed=0):
    rng = np.random.default_rng(seed)
    r, c = np.indices((8, 8))
    phase = np.arange(n)[:, None, None]
    on = ((r // 2 + c // 2 + phase) % 2) == 0
    return np.where(on, 200, 30).astype(np.uint8) + rng.integers(0, 8, (n, 8, 8), dtype=np.uint8)


def test_fit_on_uint8_images_draws_fresh_noise_in_the_library():
    x = _checker_images(48)

    def trained(data, threads, steps=60):
        flow = flowrt.Flow(flowrt.Model.unet(height=8, width=8, model_channels=8, channel_mult=(1, 2),
                                             attention=(4,), groups=4, seed=3))
        losses = flow.fit(data, steps=steps, batch_size=8, lr=2e-3, warmup=5, ema=0.9, heldout=0.25, seed=3,
                          threads=threads)
        return losses, flow.velocity(np.array([0.3, 0.8]), images.dequantize(x[:2], 9))

    first, _ = trained(x, 1, steps=1)
    losses, v1 = trained(x, 1)
    assert losses.heldout_regression < 0.8 * first.heldout_regression, (first, losses)
    _, v2 = trained(x, 2)
    np.testing.assert_array_equal(v1, v2)  # independent of the thread count
    # A fixed dequantized copy is a different (single-noise) data set: different weights.
    _, v_fixed = trained(images.dequantize(x, 3), 1)
    assert np.abs(v_fixed - v1).max() > 1e-4
    with pytest.raises(flowrt.ShapeMismatch):
        flowrt.Flow(flowrt.Model.unet(height=8, width=8, model_channels=8, channel_mult=(1, 2), attention=(4,),
                                      groups=4, seed=3)).fit(np.zeros((4, 7, 7), np.uint8), steps=1)
