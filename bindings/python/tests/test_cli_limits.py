"""Issue 16 for the CLI: streamed output equal to a one-block run, empty
batches, outputs checked before work, negative counts, CSV headers, .npy
dtypes, model paths in load errors. Needs FLOWRT_CLI."""
import os
import subprocess
import time

import numpy as np
import pytest

import flowrt

CLI = os.environ.get("FLOWRT_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="FLOWRT_CLI is not set")
MODEL = "mlp:dim=2,width=16,depth=2,seed=4"


def run(*args, ok=True):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode != 0, r.stdout
    return r


def test_sample_streams_blocks_equal_to_one_run(tmp_path):
    """140 000 samples are written in three blocks of at most 65 536
    (header first); the file equals one C call per block range, and the
    samples with --log-prob equal those without."""
    n = 140000
    run("sample", MODEL, "-n", n, "--seed", 5, "--threads", 2, "--quiet", "--out", tmp_path / "a.npy")
    run("sample", MODEL, "-n", n, "--seed", 5, "--threads", 2, "--quiet", "--out", tmp_path / "b.npy",
        "--log-prob", tmp_path / "lp.npy")
    a, b, lp = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), np.load(tmp_path / "lp.npy")
    assert a.shape == (n, 2) and a.dtype == np.float32 and lp.shape == (n,) and lp.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    # The same model through the Python binding, range by range (the ranges
    # the CLI's blocks cover): bit-identical.
    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=2, seed=4))
    parts = [flow.sample(min(65536, n - s), seed=5, first_index=s, threads=2) for s in range(0, n, 65536)]
    np.testing.assert_array_equal(a, np.concatenate(parts))


def test_sample_csv_stream_and_empty(tmp_path):
    run("sample", MODEL, "-n", 5, "--quiet", "--out", tmp_path / "x.csv", "--log-prob", tmp_path / "lp.csv")
    x = np.loadtxt(tmp_path / "x.csv", delimiter=",")
    assert x.shape == (5, 2)
    assert open(tmp_path / "lp.csv").readline().strip() == "log_prob"
    run("sample", MODEL, "-n", 0, "--quiet", "--out", tmp_path / "e.npy", "--log-prob", tmp_path / "elp.npy")
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (0, 2) and e.dtype == np.float32
    assert np.load(tmp_path / "elp.npy").shape == (0,)


def test_logprob_reads_npy_by_blocks(tmp_path):
    """A 70 000-row .npy (two blocks) gives the binding's log-densities."""
    x = np.random.default_rng(3).standard_normal((70000, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("logprob", MODEL, "--data", tmp_path / "x.npy", "--out", tmp_path / "lp.npy", "--threads", 2, "--quiet")
    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=2, seed=4))
    np.testing.assert_array_equal(np.load(tmp_path / "lp.npy"), flow.log_prob(x, threads=2))
    # Fortran order and float64 read whole, same numbers.
    np.save(tmp_path / "f.npy", np.asfortranarray(x[:100].astype(np.float64)))
    run("logprob", MODEL, "--data", tmp_path / "f.npy", "--out", tmp_path / "lpf.npy", "--quiet")
    np.testing.assert_array_equal(np.load(tmp_path / "lpf.npy"), flow.log_prob(x[:100]))


def test_outputs_checked_before_work(tmp_path):
    """A bad output path fails at once, before a long training run or sampling."""
    start = time.time()
    r = run("train", "--toy", "rings", "--steps", 100000, "--out", tmp_path / "missing" / "m.onnx", ok=False)
    assert "does not exist" in r.stderr and str(tmp_path / "missing") in r.stderr
    r = run("train", "--toy", "rings", "--steps", 100000, "--out", tmp_path / "m.txt", ok=False)
    assert ".onnx" in r.stderr
    assert time.time() - start < 20
    for cmd in (["sample", MODEL, "-n", 10], ["logprob", MODEL, "--data", tmp_path / "x.npy"],
                ["encode", MODEL, "--data", tmp_path / "x.npy"]):
        np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
        r = run(*cmd, "--out", tmp_path / "nope" / "y.npy", ok=False)
        assert "does not exist" in r.stderr, (cmd, r.stderr)
        r = run(*cmd, "--out", tmp_path, ok=False)  # a folder
        assert "must end in" in r.stderr or "is a folder" in r.stderr, r.stderr
    r = run("demo", "--out-dir", "/proc/flowrt-demo", "--steps", 100000, ok=False)
    assert time.time() - start < 60


@pytest.mark.parametrize("args,option", [
    (["sample", MODEL, "-n", "-5", "--out", "x.npy"], "-n"),
    (["sample", MODEL, "-n", "3", "--steps", "-1", "--method", "rk4", "--out", "x.npy"], "--steps"),
    (["sample", MODEL, "-n", "3", "--max-steps", "-2", "--out", "x.npy"], "--max-steps"),
    (["sample", MODEL, "-n", "3", "--threads", "-1", "--out", "x.npy"], "--threads"),
    (["sample", MODEL, "-n", "3", "--seed", "-1", "--out", "x.npy"], "--seed"),
    (["sample-sde", MODEL, "-n", "-2", "--out", "x.npy"], "-n"),
    (["train", "--toy", "rings", "--batch", "-8"], "--batch"),
    (["train", "--toy", "rings", "--width", "0"], "--width"),
    (["demo", "--steps", "-1"], "--steps"),
])
def test_negative_counts_name_option_and_rule(tmp_path, args, option):
    r = subprocess.run([CLI, *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "Missing value" not in r.stderr, r.stderr
    assert f"'{option} " in r.stderr and ("≥" in r.stderr or "0..." in r.stderr), r.stderr


def test_csv_headers(tmp_path):
    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=2, seed=4))
    rows = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    expected = flow.log_prob(rows)
    (tmp_path / "named.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "mixed.csv").write_text("a,1\n1,2\n3,4\n")
    (tmp_path / "plain.csv").write_text("5,6\n1,2\n3,4\n")
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    out = run("logprob", MODEL, "--data", tmp_path / "named.csv", "--quiet").stdout.split()
    np.testing.assert_allclose(np.array(out, float), expected, rtol=1e-12)
    r = run("logprob", MODEL, "--data", tmp_path / "mixed.csv", "--quiet", ok=False)
    assert "line 1, column 1" in r.stderr and "'a'" in r.stderr, r.stderr
    out = run("logprob", MODEL, "--data", tmp_path / "mixed.csv", "--header", "--quiet").stdout.split()
    np.testing.assert_allclose(np.array(out, float), expected, rtol=1e-12)
    # A numeric first row is data unless --header says otherwise.
    assert len(run("logprob", MODEL, "--data", tmp_path / "plain.csv", "--quiet").stdout.split()) == 3
    assert len(run("logprob", MODEL, "--data", tmp_path / "plain.csv", "--header", "--quiet").stdout.split()) == 2
    r = run("logprob", MODEL, "--data", tmp_path / "bad.csv", "--quiet", ok=False)
    assert "line 2, column 2" in r.stderr and "bad.csv" in r.stderr, r.stderr
    r = run("train", "--data", tmp_path / "mixed.csv", "--steps", 1, ok=False)
    assert "line 1, column 1" in r.stderr, r.stderr


def test_npy_dtypes(tmp_path):
    np.save(tmp_path / "i.npy", np.zeros((4, 2), np.int32))
    np.save(tmp_path / "h.npy", np.zeros((4, 2), np.float16))
    np.save(tmp_path / "d.npy", np.zeros((4, 2), np.float64))
    for name, dtype in (("i.npy", "int32"), ("h.npy", "float16")):
        for cmd in (["logprob", MODEL], ["encode", MODEL, "--out", tmp_path / "z.npy"], ["train", "--steps", 1]):
            r = run(*cmd, "--data", tmp_path / name, ok=False)
            assert dtype in r.stderr and name in r.stderr, (cmd, r.stderr)
    assert len(run("logprob", MODEL, "--data", tmp_path / "d.npy", "--quiet").stdout.split()) == 4


def test_model_path_in_load_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    for cmd in (["sample", bad, "-n", 2, "--out", tmp_path / "x.npy"], ["logprob", bad, "--data", tmp_path / "x.npy"]):
        np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
        r = run(*cmd, ok=False)
        assert str(bad) in r.stderr, r.stderr
    (tmp_path / "ck").write_bytes(b"junk")
    r = run("train", "--toy", "rings", "--steps", 1, "--resume", tmp_path / "ck", ok=False)
    assert str(tmp_path / "ck") in r.stderr, r.stderr


def test_huge_sample_runs_in_bounded_memory(tmp_path):
    """`sample -n 100000000` under a 1.5 GB address-space limit: unblocked,
    its points alone (0.8 GB) and solver states (1.6 GB) would not fit and
    the process would abort at once; streamed, it keeps running and its
    output grows. Stopped after a few seconds (the full run takes long)."""
    import resource
    import signal

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    p = subprocess.Popen([CLI, "sample", "mlp:dim=2,width=8,depth=1", "-n", "100000000", "--threads", "2",
                          "--quiet", "--out", str(tmp_path / "big.npy")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit)
    try:
        deadline = time.time() + 60
        written = 0
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.5)
            partial = [f for f in os.listdir(tmp_path) if f.startswith("big.npy.tmp.")]
            written = os.path.getsize(tmp_path / partial[0]) if partial else 0
            if written > 8 * 65536 * 3:  # header and at least three blocks
                break
        assert p.poll() is None, p.stderr.read().decode()
        assert written > 8 * 65536 * 3
        with open(tmp_path / partial[0], "rb") as f:
            head = f.read(128)
        assert head.startswith(b"\x93NUMPY") and b"(100000000, 2)" in head
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()


def test_encode_streams_blocks(tmp_path):
    x = np.random.default_rng(4).standard_normal((70000, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("encode", MODEL, "--data", tmp_path / "x.npy", "--out", tmp_path / "z.npy", "--threads", 2, "--quiet")
    flow = flowrt.Flow(flowrt.Model.mlp(2, hidden=16, depth=2, seed=4))
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), flow.encode(x, threads=2))
