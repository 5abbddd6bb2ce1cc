"""Test-double librknnrt: a C runtime of the rknn ABI computing a tiny dense-model format.

build_library() compiles it, FakeModel writes models for it, FakeRuntime reads its counters.
"""

from __future__ import annotations

from .build import build_library
from .control import COUNTERS, FakeRuntime
from .model import ACTIVATIONS, MAGIC, Dense, FakeModel, ImageLayout

__all__ = [
    "ACTIVATIONS",
    "COUNTERS",
    "MAGIC",
    "Dense",
    "FakeModel",
    "FakeRuntime",
    "ImageLayout",
    "build_library",
]
