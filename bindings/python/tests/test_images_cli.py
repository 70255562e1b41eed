"""The image path of the CLI (issue 14): `flowrt train --images FILE` trains
a U-Net and writes a sample grid, `flowrt sample --grid` writes ROWS×COLUMNS
samples as a PNG of the right size, `flowrt logprob --bpd` reports bits/dim
with a standard error that agrees between exact and Hutchinson divergences.
Needs FLOWRT_CLI."""
import os
import re
import struct
import subprocess

import numpy as np
import pytest

CLI = os.environ.get("FLOWRT_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="FLOWRT_CLI is not set")


def run(*args, ok=True):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert (r.returncode == 0) == ok, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r.stdout + r.stderr


def png_size(path):
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # width, height


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    images = (rng.random((300, 8, 8)) * 60).astype(np.uint8)
    images[:, 2:6, 2:6] = 200 + (rng.random((300, 4, 4)) * 50).astype(np.uint8)  # a bright square
    np.save(d / "squares.npy", images)
    out = run("train", "--images", d / "squares.npy", "--steps", 30, "--batch", 8, "--model-channels", 8,
              "--channel-mult", "1,2", "--attention", "4", "--groups", 4, "--validation", 40, "--grid-every", 10,
              "--threads", 1, "--out", d / "sq.onnx")
    return d, out


def test_train_images_reports_progress_and_writes_grid(trained):
    d, out = trained
    assert "260 images 1×8×8, 40 held out" in out, out
    assert re.search(r"step\s+30/30\s+loss -?[\d.]+\s+held-out -?[\d.]+\s+[\d.]+ images/s", out), out
    assert out.count("grid: ") >= 3, out  # steps 10, 20 and the final one
    assert (d / "sq.onnx").stat().st_size > 10_000
    assert png_size(d / "sq-grid.png") == (8 * 10 + 2, 8 * 10 + 2)


def test_sample_grid_png(trained):
    d, _ = trained
    run("sample", d / "sq.onnx", "--grid", "3x5", "--out", d / "g.png", "--method", "midpoint", "--steps", 8)
    assert png_size(d / "g.png") == (5 * 10 + 2, 3 * 10 + 2)
    assert "must end in .png" in run("sample", d / "sq.onnx", "--grid", "3x5", "--out", d / "g.npy", ok=False)
    assert "ROWSxCOLUMNS" in run("sample", d / "sq.onnx", "--grid", "3by5", "--out", d / "g.png", ok=False)


def test_logprob_bits_per_dim(trained):
    d, _ = trained
    pat = r"bits/dim (-?[\d.]+) ± ([\d.]+) \(standard error over (\d+) images"
    exact = run("logprob", d / "sq.onnx", "--bpd", "--images", d / "squares.npy", "--limit", 40, "--probes", 0, "--quiet")
    m, se, n = re.search(pat, exact).groups()
    m, se = float(m), float(se)
    assert int(n) == 40 and 0 < se < 1 and 0 < m < 12, exact
    hutch = run("logprob", d / "sq.onnx", "--bpd", "--images", d / "squares.npy", "--limit", 40, "--probes", 4, "--quiet")
    mh, seh, _ = re.search(pat, hutch).groups()
    # Same images and noise: Hutchinson is unbiased for the exact value.
    assert abs(float(mh) - m) < 4 * float(seh) + 1e-3, (exact, hutch)
    assert "--bpd" in run("logprob", d / "sq.onnx", "--images", d / "squares.npy", ok=False)
