"""Recompute the ABI oracles (layout.json, matmul_layout.json) from Rockchip's own headers.

The oracles are what the C compiler says of the official headers, never what rkrt declares:
this script reads the struct, enum, #define and prototype names from the headers' text,
writes a C program that prints sizeof/_Alignof/offsetof and every constant's value, compiles
it with the system C compiler (LP64: x86_64 and aarch64 give the same layout) and runs it.

    python tests/abi/regenerate.py INCLUDE_DIR [--sdk 2.3.2] [--check]

INCLUDE_DIR holds the official ``rknn_api.h`` and ``rknn_matmul_api.h``: in the public
repository airockchip/rknn-toolkit2, folder rknpu2/runtime/Linux/librknn_api/include at the
tag of the SDK release (v2.3.2 for the committed files). ``--check`` compares instead of
writing and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADER_FOLDER = "rknpu2/runtime/Linux/librknn_api/include in airockchip/rknn-toolkit2"
SOURCES = {
    "layout.json": (
        "rknn_api.h of the RKNN SDK {sdk} ({folder}), compiled with gcc on an LP64 target "
        "(x86_64; aarch64 gives the same layout). rknn_context is uint64_t on aarch64/x86_64 "
        "and uint32_t on 32-bit ARM."
    ),
    "matmul_layout.json": (
        "rknn_matmul_api.h of the RKNN SDK {sdk} (same folder as rknn_api.h), compiled with gcc "
        "on LP64; rknn_matmul_ctx is rknn_context (uint64_t on aarch64)."
    ),
}


def _code(text: str) -> str:
    """The header without comments, with whitespace folded inside each line."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def _fold(text: str) -> str:
    return " ".join(text.split())


def parse(text: str) -> dict[str, Any]:
    """Names in declaration order: structs with their field declarations, enums with their
    members, integer #defines and function prototypes."""
    code = _code(text)
    structs = {
        name: [_fold(d) for d in body.split(";") if d.strip()]
        for body, name in re.findall(r"typedef struct\s*\w*\s*\{(.*?)\}\s*(\w+)\s*;", code, re.S)
    }
    enums = {
        name: [m.split("=")[0].strip() for m in body.split(",") if m.strip()]
        for body, name in re.findall(r"typedef enum\s*\w*\s*\{(.*?)\}\s*(\w+)\s*;", code, re.S)
    }
    defines = re.findall(r"^#define (RKNN_\w+) \S+$", code, re.M)
    functions = [
        _fold(f)
        for f in re.findall(
            r"^((?:int|rknn_tensor_mem\s*\*)\s*rknn_\w+\s*\([^;{]*\))\s*;", code, re.M
        )
    ]
    return {"structs": structs, "enums": enums, "defines": defines, "functions": functions}


def _field_name(decl: str) -> str:
    return re.search(r"(\w+)\s*(\[[^\]]*\])*$", decl).group(1)


def _program(header: str, names: dict[str, Any], with_context: bool) -> str:
    """A C program printing one number per line, in the order measure() reads them."""
    # rknn_api.h first: the official matmul header includes it itself (behind a guard), a
    # cffi-layered declaration such as rkrt's does not.
    headers = ("<stdint.h>", "<stdio.h>", "<stddef.h>", '"rknn_api.h"', f'"{header}"')
    out = ["".join(f"#include {h}\n" for h in dict.fromkeys(headers)) + "int main(void) {"]
    if with_context:
        out.append('printf("%zu\\n", sizeof(rknn_context));')
    for struct, decls in names["structs"].items():
        out.append(f'printf("%zu %zu\\n", sizeof({struct}), _Alignof({struct}));')
        for decl in decls:
            field = _field_name(decl)
            out.append(
                f'printf("%zu %zu\\n", offsetof({struct}, {field}), '
                f"sizeof((({struct}*)0)->{field}));"
            )
    for members in names["enums"].values():
        out.extend(f'printf("%lld\\n", (long long){m});' for m in members)
    out.extend(f'printf("%lld\\n", (long long){d});' for d in names["defines"])
    out.append("return 0; }")
    return "\n".join(out)


def measure(include: Path, header: str, with_context: bool) -> dict[str, Any]:
    """Compile and run the program for one header; the oracle as a dict."""
    names = parse((include / header).read_text())
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("regenerate.py needs a C compiler (cc or gcc) on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "layout.c", Path(tmp) / "layout"
        src.write_text(_program(header, names, with_context))
        subprocess.run([cc, "-std=c11", f"-I{include}", str(src), "-o", str(exe)], check=True)
        values = iter(
            subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split()
        )
    numbers = (int(v) for v in values)
    result: dict[str, Any] = {}
    if with_context:
        result["sizeof_rknn_context"] = next(numbers)
    result["structs"] = {}
    for struct, decls in names["structs"].items():
        size, align = next(numbers), next(numbers)
        fields = {}
        for decl in decls:
            offset, field_size = next(numbers), next(numbers)
            fields[_field_name(decl)] = {"offset": offset, "size": field_size, "decl": decl}
        result["structs"][struct] = {"size": size, "align": align, "fields": fields}
    result["enums"] = {e: {m: next(numbers) for m in ms} for e, ms in names["enums"].items()}
    if names["defines"]:
        result["defines"] = {d: next(numbers) for d in names["defines"]}
    result["functions"] = names["functions"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("include", type=Path, help="folder with the official rknn_api.h")
    parser.add_argument("--sdk", default="2.3.2", help="the SDK release the headers are from")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    differ = False
    for name, header in (
        ("layout.json", "rknn_api.h"),
        ("matmul_layout.json", "rknn_matmul_api.h"),
    ):
        oracle = {"source": SOURCES[name].format(sdk=args.sdk, folder=HEADER_FOLDER)}
        oracle.update(measure(args.include, header, with_context=name == "layout.json"))
        text = json.dumps(oracle, indent=1) + "\n"
        target = HERE / name
        if args.check:
            same = target.is_file() and json.loads(target.read_text()) == oracle
            print(f"{name}: {'identical' if same else 'DIFFERS'}")
            differ |= not same
        else:
            target.write_text(text)
            print(f"wrote {target}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
