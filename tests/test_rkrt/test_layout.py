"""rkrt's cffi declaration of the ABI against the layout of the official header (layout.json)."""

from __future__ import annotations

import re

import pytest
from abi_oracle import check_struct, load_layout, official_functions, pointer_type

from rkrt._ffi import DEFINES, HEADER_TEXT, enum, ffi

LAYOUT = load_layout("layout.json")
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
    check_struct(ffi, name, STRUCTS[name])


@pytest.mark.parametrize("name", sorted(LAYOUT["enums"]))
def test_enum_values(name: str) -> None:
    assert enum(name) == LAYOUT["enums"][name]


def test_every_define_matches() -> None:
    assert LAYOUT["defines"] == DEFINES


def _declared_functions() -> dict[str, str]:
    found = re.findall(r"^([A-Za-z_][\w\s*]*?\b(rknn_\w+)\s*\([^;]*\))\s*;", HEADER_TEXT, re.M)
    return {name: proto for proto, name in found}


def test_every_function_is_declared_with_the_official_signature() -> None:
    declared = _declared_functions()
    official = official_functions(LAYOUT)
    assert len(official) == 23
    assert sorted(declared) == sorted(official)
    for name, proto in official.items():
        assert ffi.typeof(pointer_type(declared[name])) is ffi.typeof(pointer_type(proto)), name


def test_enum_parameter_sizes_match_int() -> None:
    # Enums travel as int in the C ABI; cffi must agree or every enum argument is mis-passed.
    for name in LAYOUT["enums"]:
        assert ffi.sizeof(name) == 4, name
