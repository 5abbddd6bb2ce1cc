"""Finding and opening librknnrt.so (once per path), with optional symbols resolved lazily."""

from __future__ import annotations

import ctypes.util
import os
import threading
from typing import Any

from ._ffi import ffi
from .arguments import PathLike
from .errors import MissingSymbolError, RuntimeNotFoundError

ENV_VAR = "RKRT_LIBRARY"
LIBRARY_NAME = "librknnrt.so"
SYSTEM_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/aarch64-linux-gnu")

# Present in every librknnrt that rkrt supports; checked when the library is opened so a
# wrong file fails at once rather than on the first run().
REQUIRED = (
    "rknn_init", "rknn_destroy", "rknn_query", "rknn_inputs_set", "rknn_run",
    "rknn_outputs_get", "rknn_outputs_release",
)  # fmt: skip


class Runtime:
    """One opened librknnrt: ``lib`` for required functions, ``symbol()`` for optional ones."""

    def __init__(self, lib: Any, path: str) -> None:
        self.lib = lib
        self.path = path

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


def load(library: PathLike | None = None) -> Runtime:
    """Open librknnrt: ``library`` if given, else $RKRT_LIBRARY, else the system places."""
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
