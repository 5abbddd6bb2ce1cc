"""The cffi declaration of the librknnrt ABI, parsed once from the packaged header."""

from __future__ import annotations

import re
from pathlib import Path

import cffi

_HEADER = "rknn_api.h"


def header_path() -> Path:
    """Where rknn_api.h is: rkrt/native_headers/, package data in a wheel, a link in the tree."""
    path = Path(__file__).resolve().parent / "native_headers" / _HEADER
    if not path.is_file():
        raise ImportError(
            f"rkrt cannot find its ABI declaration {path}: the installation is incomplete; "
            "reinstall it (pip install --force-reinstall with the wheel or the clone)"
        )
    return path


HEADER_TEXT = header_path().read_text()

ffi = cffi.FFI()
ffi.cdef(HEADER_TEXT)


def read_defines(text: str) -> dict[str, int]:
    """The integer ``#define NAME value`` lines (decimal or hex) of a header's text.

    cffi exposes #define constants only through a loaded library; rkrt needs them (error
    names, flags, limits) before and without one, so they are read from the text cffi parsed.
    """
    pattern = r"^#define\s+(\w+)\s+(-?(?:0x[0-9a-fA-F]+|\d+))\s*$"
    return {name: int(value, 0) for name, value in re.findall(pattern, text, re.MULTILINE)}


DEFINES = read_defines(HEADER_TEXT)


def enum(name: str) -> dict[str, int]:
    """The members of a declared C enum, e.g. enum("rknn_core_mask")."""
    return dict(ffi.typeof(name).relements)
