"""The official layout facts (tests/abi/*.json, see its README), and checks of a cffi FFI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ABI_DIR = Path(__file__).resolve().parent / "abi"


def load_layout(name: str) -> dict[str, Any]:
    """One layout file; a missing one is a broken checkout, never a reason to skip."""
    path = ABI_DIR / name
    if not path.is_file():  # pragma: no cover
        raise pytest.UsageError(
            f"{path} is missing: the layout oracles are files of the project (tests/abi/)"
        )
    return json.loads(path.read_text())


def check_struct(ffi: Any, name: str, want: dict[str, Any]) -> None:
    """Size, alignment, field names, offsets and sizes of one struct as the oracle has them."""
    assert ffi.sizeof(name) == want["size"], name
    assert ffi.alignof(name) == want["align"], name
    declared = dict(ffi.typeof(name).fields)
    assert sorted(declared) == sorted(want["fields"]), f"{name}: field names differ"
    for field, info in want["fields"].items():
        assert ffi.offsetof(name, field) == info["offset"], f"{name}.{field} offset"
        assert ffi.sizeof(declared[field].type) == info["size"], f"{name}.{field} size"


def pointer_type(prototype: str) -> str:
    """'int f(args)' -> 'int(*)(args)', the form ffi.typeof() can compare."""
    match = re.fullmatch(r"\s*(.+?[\s*])(\w+)\s*\((.*)\)\s*;?\s*", prototype, re.DOTALL)
    assert match, prototype
    ret, _, args = match.groups()
    return f"{ret.strip()}(*)({args})"


def official_functions(layout: dict[str, Any]) -> dict[str, str]:
    """The oracle's prototypes by function name."""
    return {re.search(r"(rknn_\w+)\s*\(", f).group(1): f for f in layout["functions"]}
