"""Bundles libflowrt.so into the package at build time.

The library comes from $FLOWRT_LIBRARY if set, else from the repository's
release build (<repo>/.build/release/libflowrt.so), which is built with
`swift build -c release` when missing. The wheel is platform-specific.
"""
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def find_library() -> Path:
    env = os.environ.get("FLOWRT_LIBRARY")
    if env:
        return Path(env)
    lib = REPO / ".build" / "release" / "libflowrt.so"
    if not lib.exists():
        if not (REPO / "Package.swift").exists():
            raise RuntimeError("libflowrt.so not found: set FLOWRT_LIBRARY or build from a FlowRuntime checkout")
        subprocess.check_call(["swift", "build", "-c", "release", "--product", "flowrt"], cwd=REPO)
    return lib


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "flowrt" / "libflowrt.so"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find_library(), dest)
        os.chmod(dest, 0o755)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
