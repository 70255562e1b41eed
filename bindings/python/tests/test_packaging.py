"""`pip install ./bindings/python` gives a package that imports with no
environment variables (the library is bundled inside it)."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not os.environ.get("FLOWRT_LIBRARY"), reason="needs a built library")
def test_pip_install_bundles_the_library(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRT_") and k != "PYTHONPATH"}
    env["FLOWRT_LIBRARY"] = os.environ["FLOWRT_LIBRARY"]  # used at build time only
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT / "bindings" / "python")],
                   check=True, env=env, cwd=tmp_path)
    env.pop("FLOWRT_LIBRARY")
    out = subprocess.run(
        [str(py), "-c", "import flowrt, numpy as np; import os; "
         "print(os.path.basename(flowrt._loader._candidates()[0]), flowrt.Model.mlp(2).velocity(0.5, np.zeros((1, 2))).shape)"],
        check=True, env=env, cwd=tmp_path, capture_output=True, text=True).stdout
    assert out.split() == ["libflowrt.so", "(1,", "2)"]
