"""Finding and opening librknnrt.so (once per path); what that runtime is and can do.

Which release a librknnrt is shows first in the functions it exports (read at load), then in
its own words (``RKNN_QUERY_SDK_VERSION``, asked on the first context a Session opens). The
functions that tell the releases apart, from Rockchip's headers and shipped libraries (see
README "Runtime versions"): ``rknn_mem_sync`` from 1.6.0, ``rknn_B_normal_layout_to_native_layout``
from 2.0.0 (7 arguments in 2.0.0b0, 5 from 2.1.0), ``rknn_matmul_create_dynamic_shape`` from
2.1.0 (2.0.0b0 named it ``rknn_matmul_create_dyn_shape``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Optional

from ._ffi import HEADER_TEXT, enum, ffi, header_path
from .arguments import PathLike
from .errors import MissingSymbolError, RuntimeNotFoundError, UnsupportedRuntimeError, check

ENV_VAR = "RKRT_LIBRARY"
LIBRARY_NAME = "librknnrt.so"
SYSTEM_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/aarch64-linux-gnu")

# Present in every librknnrt that rkrt supports; checked when the library is opened so a
# wrong file fails at once rather than on the first run().
REQUIRED = (
    "rknn_init", "rknn_destroy", "rknn_query", "rknn_inputs_set", "rknn_run",
    "rknn_outputs_get", "rknn_outputs_release",
)  # fmt: skip


# Every function of both headers: which of them a runtime exports is part of what it is.
FUNCTIONS = tuple(sorted(set(re.findall(
    r"^(?:int|rknn_tensor_mem\s*\*)\s*(rknn_\w+)\s*\(",
    HEADER_TEXT + header_path().with_name("rknn_matmul_api.h").read_text(), re.MULTILINE,
))))  # fmt: skip
#: The first release whose matmul ABI (rknn_matmul_info, the B converter) is rkrt's.
MATMUL_MINIMUM = "2.1.0"
#: The first release with rknn_mem_sync.
MEM_SYNC_MINIMUM = "1.6.0"


def release_from_symbols(symbols: frozenset[str]) -> str:
    """The release family a runtime's exported functions point to (before any context)."""
    if "rknn_mem_sync" not in symbols:
        return "1.5.x or older"
    if "rknn_B_normal_layout_to_native_layout" not in symbols:
        return "1.6.x"
    if "rknn_matmul_create_dynamic_shape" not in symbols:
        return "2.0.x"
    return "2.1.0 or newer"


def parse_version(text: str) -> Optional[tuple[int, int, int]]:
    """(major, minor, patch) from an api_version such as "1.5.2 (c6b7b351a@2023-08-23...)"."""
    match = re.match(r"\s*(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


@dataclass(frozen=True)
class RuntimeInfo:
    """What rkrt knows of one librknnrt.

    ``api_version`` and ``driver_version`` are the runtime's own words (None until a Session
    opened a model on it); ``version`` the parsed (major, minor, patch) of ``api_version``;
    ``release`` the family its exported functions point to; ``functions`` the rknn_* functions
    of rkrt's headers it exports.
    """

    path: str
    api_version: Optional[str]
    driver_version: Optional[str]
    version: Optional[tuple[int, int, int]]
    release: str
    functions: frozenset[str]


class Runtime:
    """One opened librknnrt: ``lib`` for required functions, ``symbol()`` for optional ones."""

    def __init__(self, lib: Any, path: str) -> None:
        self.lib = lib
        self.path = path
        # dlsym through ctypes sees the matmul functions too, which this ffi does not declare.
        exported = ctypes.CDLL(path)
        self.functions = frozenset(name for name in FUNCTIONS if hasattr(exported, name))
        self.release = release_from_symbols(self.functions)
        self.api_version: Optional[str] = None
        self.driver_version: Optional[str] = None

    def has(self, name: str) -> bool:
        """Whether this runtime exports the function ``name``."""
        return name in self.functions

    def learn_version(self, handle: int) -> None:
        """Ask the runtime its version on a live model context (RKNNError if refused).

        Asked at every open, not once: one query costs microseconds, and a Session's calls
        then never depend on what other Sessions did before.
        """
        v = ffi.new("rknn_sdk_version*")
        cmd = enum("rknn_query_cmd")["RKNN_QUERY_SDK_VERSION"]
        check(self.lib.rknn_query(handle, cmd, v, ffi.sizeof(v[0])), "rknn_query")
        self.driver_version = ffi.string(v.drv_version).decode("utf-8", "replace")
        self.api_version = ffi.string(v.api_version).decode("utf-8", "replace")

    def described(self) -> str:
        """The runtime's version for messages: its own words if known, else the family."""
        known = f"{self.api_version} " if self.api_version else ""
        return f"librknnrt {known}({self.release} by its functions) at {self.path}"

    def require(self, minimum: str, marker: str, feature: str) -> None:
        """UnsupportedRuntimeError for ``feature`` unless the function ``marker`` (first
        exported by release ``minimum``) is present."""
        if not self.has(marker):
            raise UnsupportedRuntimeError(
                f"{feature} needs librknnrt {minimum} or newer; this is {self.described()}, "
                f"which lacks {marker}(). Install a librknnrt.so of RKNN SDK >= {minimum} "
                "(e.g. from airockchip/rknn-toolkit2, rknpu2/runtime) or point RKRT_LIBRARY at one"
            )

    def info(self) -> RuntimeInfo:
        """A snapshot of what rkrt knows of this runtime."""
        api = self.api_version
        return RuntimeInfo(self.path, api, self.driver_version,
                           parse_version(api) if api else None, self.release,
                           self.functions)  # fmt: skip

    def symbol(self, name: str) -> Any:
        """The C function ``name``, or MissingSymbolError when this runtime lacks it."""
        try:
            return getattr(self.lib, name)
        except AttributeError:
            raise MissingSymbolError(name, self.path) from None

    def __repr__(self) -> str:
        return f"<rkrt.Runtime {self.path}>"


_cache: dict[str, Runtime] = {}
_cache_lock = threading.Lock()


def _open(path: str) -> Runtime:
    with _cache_lock:
        runtime = _cache.get(path)
        if runtime is None:
            lib = ffi.dlopen(path)
            missing = [name for name in REQUIRED if not hasattr(lib, name)]
            if missing:
                raise OSError(f"not a librknnrt: lacks {', '.join(missing)}")
            runtime = _cache[path] = Runtime(lib, path)
        return runtime


def _candidates(library: PathLike | None) -> tuple[list[tuple[str, str]], bool]:
    """(place, how it was chosen) pairs in search order, and whether the choice was explicit."""
    if library is not None:
        return [(os.fspath(library), "library= argument")], True
    env = os.environ.get(ENV_VAR)
    if env:
        return [(env, f"${ENV_VAR}")], True
    places = [(LIBRARY_NAME, "dynamic linker search (LD_LIBRARY_PATH, ld.so.cache)")]
    found = ctypes.util.find_library("rknnrt")
    if found and found != LIBRARY_NAME:
        places.append((found, "ctypes.util.find_library"))
    places += [(os.path.join(d, LIBRARY_NAME), "system directory") for d in SYSTEM_DIRS]
    return places, False


def check_word_size(pointer_bytes: int) -> None:
    """Refuse a 32-bit process: rkrt's declarations are those of 64-bit librknnrt.

    Rockchip's header makes ``rknn_context`` uint32_t under ``__arm__`` and every pointer in
    the structs shrinks: the armhf runtime is a different ABI, which nothing here can test.
    """
    if pointer_bytes != 8:
        raise UnsupportedRuntimeError(
            f"rkrt supports 64-bit (aarch64) librknnrt only; this Python is {pointer_bytes * 8}-"
            "bit, where the runtime's ABI differs (rknn_context is uint32_t on 32-bit ARM). "
            "Use a 64-bit OS image and Python on the board"
        )


def load(library: PathLike | None = None) -> Runtime:
    """Open librknnrt: ``library`` if given, else $RKRT_LIBRARY, else the system places."""
    check_word_size(ffi.sizeof("void*"))
    places, explicit = _candidates(library)
    tried = []
    for place, how in places:
        if place in _cache:
            return _cache[place]
        try:
            return _open(place)
        except OSError as exc:
            tried.append(f"  {place} ({how}): {exc}")
    advice = (
        "check that path"
        if explicit
        else f"install librknnrt.so into one of those places, or set {ENV_VAR}=/path/to/"
        f"librknnrt.so, or pass library=... to rkrt.Session"
    )
    raise RuntimeNotFoundError("cannot load librknnrt; tried:\n" + "\n".join(tried) + f"\n{advice}")


def runtime_info(library: PathLike | None = None) -> RuntimeInfo:
    """What rkrt knows of the librknnrt it loads (``library``, else $RKRT_LIBRARY, else the
    system places): its exported functions, and its version once a Session opened a model."""
    return load(library).info()
