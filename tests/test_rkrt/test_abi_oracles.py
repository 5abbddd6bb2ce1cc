"""The ABI oracles' own generator (tests/abi/regenerate.py), run on rkrt's declarations.

The layout tests compare cffi's view of native_headers/ with the oracles; this compares the C
compiler's view of the same headers, through the script that produced the oracles from
Rockchip's headers, so the script stays runnable and a declaration that only cffi accepts
(or lays out differently from gcc) is caught.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from abi_oracle import ABI_DIR, load_layout

from rkrt._ffi import header_path

sys.path.insert(0, str(ABI_DIR))
import regenerate  # noqa: E402


def _layout(oracle: dict) -> dict:
    return {
        name: (s["size"], s["align"], {f: (i["offset"], i["size"]) for f, i in s["fields"].items()})
        for name, s in oracle["structs"].items()
    }


@pytest.mark.parametrize(
    ("header", "oracle"),
    [("rknn_api.h", "layout.json"), ("rknn_matmul_api.h", "matmul_layout.json")],
)
def test_gcc_lays_out_rkrts_declarations_as_the_official_headers(header: str, oracle: str) -> None:
    want = load_layout(oracle)
    got = regenerate.measure(
        Path(header_path()).parent, header, with_context=oracle == "layout.json"
    )
    assert _layout(got) == _layout(want)
    assert got["enums"] == want["enums"]
    # rkrt may add constants of its own (RKNN_MATMUL_MAX_K); every official one must agree.
    official = want.get("defines", {})
    assert {k: v for k, v in got.get("defines", {}).items() if k in official} == official
    assert got.get("sizeof_rknn_context") == want.get("sizeof_rknn_context")


def test_parse_reads_names_in_declaration_order() -> None:
    text = """
    /* a comment with typedef struct { int no; } not_this; */
    #define RKNN_A 0x10
    typedef struct _s
    {
        uint32_t dims[4][2];   // trailing comment
        void *   ptr;
    } s_t;
    typedef enum { RKNN_X = 1, RKNN_Y } e_t;
    int rknn_f(s_t* s,
               int n);
    """
    names = regenerate.parse(text)
    assert names["structs"] == {"s_t": ["uint32_t dims[4][2]", "void * ptr"]}
    assert names["enums"] == {"e_t": ["RKNN_X", "RKNN_Y"]}
    assert names["defines"] == ["RKNN_A"]
    assert names["functions"] == ["int rknn_f(s_t* s, int n)"]
    assert [regenerate._field_name(d) for d in names["structs"]["s_t"]] == ["dims", "ptr"]
