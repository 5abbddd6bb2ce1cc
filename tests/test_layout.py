"""rkrt's cffi declaration of the ABI against the layout of the official header (layout.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rkrt._ffi import DEFINES, HEADER_TEXT, enum, ffi

REPO = Path(__file__).resolve().parents[1]
LAYOUT_PATH = REPO.parent / "shared" / "rknn-abi" / "layout.json"

if not LAYOUT_PATH.is_file():  # pragma: no cover - a broken checkout, not a skip
    raise pytest.UsageError(
        f"{LAYOUT_PATH} is missing: the layout oracle must sit in shared/ beside the clone"
    )
LAYOUT = json.loads(LAYOUT_PATH.read_text())
STRUCTS = LAYOUT["structs"]


def _declared_structs() -> list[str]:
    typedefs, _, _ = ffi.list_types()
    return [t for t in typedefs if ffi.typeof(t).kind == "struct"]


def test_context_handle_size() -> None:
    assert ffi.sizeof("rknn_context") == LAYOUT["sizeof_rknn_context"]


def test_every_official_struct_is_declared_and_no_other() -> None:
    assert sorted(_declared_structs()) == sorted(STRUCTS)


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_size_alignment_and_fields(name: str) -> None:
    want = STRUCTS[name]
    assert ffi.sizeof(name) == want["size"], name
    assert ffi.alignof(name) == want["align"], name
    declared = dict(ffi.typeof(name).fields)
    assert sorted(declared) == sorted(want["fields"]), f"{name}: field names differ"
    for field, info in want["fields"].items():
        assert ffi.offsetof(name, field) == info["offset"], f"{name}.{field} offset"
        assert ffi.sizeof(declared[field].type) == info["size"], f"{name}.{field} size"


@pytest.mark.parametrize("name", sorted(LAYOUT["enums"]))
def test_enum_values(name: str) -> None:
    assert enum(name) == LAYOUT["enums"][name]


def test_every_define_matches() -> None:
    assert LAYOUT["defines"] == DEFINES


def _as_pointer_type(prototype: str) -> str:
    """'int f(args)' -> 'int(*)(args)', the form ffi.typeof() can compare."""
    match = re.fullmatch(r"\s*(.+?[\s*])(\w+)\s*\((.*)\)\s*;?\s*", prototype, re.DOTALL)
    assert match, prototype
    ret, _, args = match.groups()
    return f"{ret.strip()}(*)({args})"


def _declared_functions() -> dict[str, str]:
    found = re.findall(r"^([A-Za-z_][\w\s*]*?\b(rknn_\w+)\s*\([^;]*\))\s*;", HEADER_TEXT, re.M)
    return {name: proto for proto, name in found}


def test_every_function_is_declared_with_the_official_signature() -> None:
    declared = _declared_functions()
    official = {re.search(r"(rknn_\w+)\s*\(", f).group(1): f for f in LAYOUT["functions"]}
    assert len(official) == 23
    assert sorted(declared) == sorted(official)
    for name, proto in official.items():
        assert ffi.typeof(_as_pointer_type(declared[name])) is ffi.typeof(
            _as_pointer_type(proto)
        ), name


def test_enum_parameter_sizes_match_int() -> None:
    # Enums travel as int in the C ABI; cffi must agree or every enum argument is mis-passed.
    for name in LAYOUT["enums"]:
        assert ffi.sizeof(name) == 4, name
