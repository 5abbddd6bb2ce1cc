"""Compile the test-double librknnrt.so with a C compiler, cached by source hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HEADERS = REPO / "native_headers"
BASE_FLAGS = (
    "-std=c11",
    "-O2",
    "-shared",
    "-fPIC",
    "-pthread",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
)

# The runtime releases the double can emulate: the rknn_* functions each one lacks, from the
# dynamic symbol tables of Rockchip's librknnrt.so 1.5.2 (rockchip-linux/rknpu2 v1.5.2) and
# 1.6.0 (airockchip/rknn-toolkit2 v1.6.0, rknpu2/runtime/Linux/librknn_api/armhf), and for
# 2.0.0b0 from its headers (tag v2.0.0-beta0: rknn_matmul_create_dyn_shape, renamed
# rknn_matmul_create_dynamic_shape in 2.1.0; its rknn_B_normal_layout_to_native_layout takes
# 7 arguments, so the double's 5-argument one stands in only to count calls that must never
# happen). None: the newest release (2.3 and later), every function.
_MATMUL_2X = (
    "rknn_B_normal_layout_to_native_layout",
    "rknn_matmul_set_dynamic_shape",
    "rknn_matmul_set_quant_params",
    "rknn_matmul_get_quant_params",
)
MISSING: dict[str, tuple[str, ...]] = {
    "1.5.2": (
        "rknn_mem_sync",
        "rknn_create_mem2",
        "rknn_create_mem_from_mb_blk",
        "rknn_matmul_create_dynamic_shape",
        *_MATMUL_2X,
    ),
    "1.6.0": (
        "rknn_create_mem2",
        "rknn_create_mem_from_mb_blk",
        "rknn_matmul_create_dynamic_shape",
        *_MATMUL_2X,
    ),
    "2.0.0b0": ("rknn_matmul_create_dynamic_shape",),
}
DEFAULT_VERSION = "2.5.0"


def _sources() -> list[Path]:
    # build.py itself: its MISSING table decides what a version build exports.
    return [
        *sorted(HERE.glob("*.c")),
        *sorted(HERE.glob("*.h")),
        *sorted(HEADERS.glob("*.h")),
        HERE / "build.py",
    ]


def _digest(cc: str, cflags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (cc, *BASE_FLAGS, *cflags):
        h.update(part.encode() + b"\0")
    for path in _sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def build_library(
    cc: str = "gcc",
    cflags: Sequence[str] = (),
    cache_dir: Path | None = None,
    version: str | None = None,
) -> Path:
    """Return the path of librknnrt.so built from tests/fake_rknnrt/*.c, compiling if needed.

    `cc` may be a cross compiler (e.g. "aarch64-linux-gnu-gcc"); `cflags` are appended
    (e.g. ("-fsanitize=address",) or ("-Werror",)). Builds are cached under
    `cache_dir` (default <repo>/.cache/fake_rknnrt) by a hash of compiler, flags and
    sources, and published by an atomic rename, so parallel test processes never see
    a half-written library. `version` (a key of MISSING) builds the double as that runtime
    release: it reports it through RKNN_QUERY_SDK_VERSION and exports only its functions.
    """
    if version is not None and version not in MISSING:
        raise ValueError(f"unknown runtime version {version!r}; known: {sorted(MISSING)}")
    if version is not None:
        cflags = (*cflags, f'-DFAKE_SDK_VERSION="{version}"')
        if "rknn_mem_sync" in MISSING[version]:
            cflags = (*cflags, "-DFAKE_WITHOUT_MEM_SYNC")
    root = Path(cache_dir) if cache_dir is not None else REPO / ".cache" / "fake_rknnrt"
    target = root / _digest(cc, cflags) / "librknnrt.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".librknnrt-", suffix=".so", dir=target.parent)
    os.close(fd)
    c_files = [str(p) for p in sorted(HERE.glob("*.c"))]
    cmd = [cc, *BASE_FLAGS, *cflags, f"-I{HEADERS}", f"-I{HERE}", *c_files, "-lm", "-o", tmp]
    if version is not None:
        # A linker version script makes the functions that release lacked local: dlsym and
        # cffi see them as absent, as on a board with that runtime.
        script = target.parent / "missing.map"
        script.write_text("{ local: " + "; ".join(MISSING[version]) + "; };\n")
        cmd.insert(-2, f"-Wl,--version-script={script}")
    try:
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"C compiler {cc!r} not found: install it or pass cc= to build_library()"
            ) from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"building the test-double librknnrt.so failed (exit {result.returncode}):\n"
                f"{' '.join(cmd)}\n{result.stderr}\n"
                f"Install a C11 compiler ({cc!r} was used) or pass cc= to build_library()."
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
