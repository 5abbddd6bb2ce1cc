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


def _sources() -> list[Path]:
    return sorted(HERE.glob("*.c")) + sorted(HERE.glob("*.h")) + sorted(HEADERS.glob("*.h"))


def _digest(cc: str, cflags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (cc, *BASE_FLAGS, *cflags):
        h.update(part.encode() + b"\0")
    for path in _sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def build_library(
    cc: str = "gcc", cflags: Sequence[str] = (), cache_dir: Path | None = None
) -> Path:
    """Return the path of librknnrt.so built from tests/fake_rknnrt/*.c, compiling if needed.

    `cc` may be a cross compiler (e.g. "aarch64-linux-gnu-gcc"); `cflags` are appended
    (e.g. ("-fsanitize=address",) or ("-Werror",)). Builds are cached under
    `cache_dir` (default <repo>/.cache/fake_rknnrt) by a hash of compiler, flags and
    sources, and published by an atomic rename, so parallel test processes never see
    a half-written library.
    """
    root = Path(cache_dir) if cache_dir is not None else REPO / ".cache" / "fake_rknnrt"
    target = root / _digest(cc, cflags) / "librknnrt.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".librknnrt-", suffix=".so", dir=target.parent)
    os.close(fd)
    c_files = [str(p) for p in sorted(HERE.glob("*.c"))]
    cmd = [cc, *BASE_FLAGS, *cflags, f"-I{HEADERS}", f"-I{HERE}", *c_files, "-lm", "-o", tmp]
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
