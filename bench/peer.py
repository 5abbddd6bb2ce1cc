"""The peer runtime the streaming benchmark compares with, installed for the benchmark only.

`ztu_somemodelruntime_ez_rknn_async` 0.11.0 (PyPI, AGPL-3.0, x86_64 and aarch64 wheels): a
pybind11 C++ runtime for RKNN with an onnxruntime-style API. It is never a dependency of rkrt:
pip installs it into .cache/ez_rknn_async/ (git-ignored) with --target, and only the
benchmark puts that directory on sys.path. It loads librknnrt.so by name, or the file named
by $ZTU_RKNPU2_RUNTIME_LIBRARY (set here to the test double), and accepts only model files
that begin with "RKNN" (FakeModel.save(..., rknn_prefix=True)).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "ztu-somemodelruntime-ez-rknn-async"
VERSION = "0.11.0"
MODULE = "ztu_somemodelruntime_ez_rknn_async"
TARGET = Path(__file__).resolve().parent.parent / ".cache" / "ez_rknn_async"


STAMP = TARGET / f"{MODULE}-{VERSION}.dist-info"


def install() -> None:
    """Install the peer into .cache, once (`make test` does, so its smoke test runs in CI)."""
    if not STAMP.is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "-q",
             "--no-deps", "--upgrade", "--target", str(TARGET), f"{PACKAGE}=={VERSION}"],
            check=True,
        )  # fmt: skip


def ensure_peer(library: str) -> ModuleType:
    """Install the peer into .cache (once), point it at ``library`` and import it."""
    install()
    os.environ["ZTU_RKNPU2_RUNTIME_LIBRARY"] = library
    if str(TARGET) not in sys.path:
        sys.path.insert(0, str(TARGET))
    module = importlib.import_module(MODULE)
    if module.__version__ != VERSION:
        raise SystemExit(f"{TARGET} holds {MODULE} {module.__version__}, expected {VERSION}")
    return module


if __name__ == "__main__":
    install()
