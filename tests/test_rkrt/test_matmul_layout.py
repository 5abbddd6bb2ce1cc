"""rkrt's matmul ABI declaration against the official header's layout (matmul_layout.json)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from abi_oracle import check_struct, load_layout, official_functions, pointer_type

from rkrt._matmul_ffi import HEADER_TEXT, enum, ffi

REPO = Path(__file__).resolve().parents[2]
LAYOUT = load_layout("matmul_layout.json")
STRUCTS = LAYOUT["structs"]


def test_matmul_context_is_an_rknn_context() -> None:
    assert ffi.typeof("rknn_matmul_ctx") is ffi.typeof("rknn_context")
    assert ffi.sizeof("rknn_matmul_ctx") == 8


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_size_alignment_and_fields(name: str) -> None:
    check_struct(ffi, name, STRUCTS[name])


@pytest.mark.parametrize("name", sorted(LAYOUT["enums"]))
def test_enum_values_and_size(name: str) -> None:
    assert enum(name) == LAYOUT["enums"][name]
    assert ffi.sizeof(name) == 4  # enums travel as int


def test_the_ten_functions_have_the_official_signatures() -> None:
    found = re.findall(r"^(int\s+(rknn_\w+)\s*\([^;]*\))\s*;", HEADER_TEXT, re.M)
    declared = {name: proto for proto, name in found}
    official = official_functions(LAYOUT)
    assert len(official) == 10
    assert sorted(declared) == sorted(official)
    for name, proto in official.items():
        assert ffi.typeof(pointer_type(declared[name])) is ffi.typeof(pointer_type(proto)), name


def test_header_is_c_compilable_after_stdint_and_rknn_api(tmp_path: Path) -> None:
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler: the test-double runtime needs one too (install gcc)")
    src = tmp_path / "probe.c"
    checks = " + ".join(f"sizeof({s})" for s in sorted(STRUCTS))
    total = sum(STRUCTS[s]["size"] for s in STRUCTS)
    src.write_text(
        '#include <stdint.h>\n#include "rknn_api.h"\n#include "rknn_matmul_api.h"\n'
        f'_Static_assert({checks} == {total}, "layout");\nint main(void) {{ return 0; }}\n'
    )
    result = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", f"-I{REPO / 'native_headers'}", "-c", str(src),
         "-o", str(tmp_path / "probe.o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
