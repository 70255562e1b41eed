"""Runs the README's quick start exactly as written."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs(tmp_path):
    pytest = __import__("pytest")
    pytest.importorskip("matplotlib")
    text = README.read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.S).group(1)
    assert 8 <= len(block.strip().splitlines()) <= 12
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    nll, entropy = map(float, re.search(r"held-out NLL ([\d.]+) nats \(true entropy ([\d.]+)\)", out.stdout).groups())
    assert nll - entropy < 0.35, out.stdout
    assert (tmp_path / "flow.onnx").stat().st_size > 10_000 and (tmp_path / "samples.png").exists()
