"""The cffi declaration of the matmul ABI (rknn_matmul_api.h), layered on the core one.

A second FFI includes the core FFI, so its functions take and return the very same cdata
types (``rknn_tensor_mem*`` from ``rknn_create_mem`` goes straight to
``rknn_matmul_set_io_mem``), and opens the library the core already found.
"""

from __future__ import annotations

import threading
from typing import Any

import cffi

from ._ffi import ffi as core_ffi
from ._ffi import header_path, read_defines
from .errors import MissingSymbolError
from .library import Runtime

HEADER_TEXT = header_path().with_name("rknn_matmul_api.h").read_text()

ffi = cffi.FFI()
ffi.include(core_ffi)
ffi.cdef(HEADER_TEXT)

DEFINES = read_defines(HEADER_TEXT)


def enum(name: str) -> dict[str, int]:
    """The members of a declared matmul enum, e.g. enum("rknn_matmul_type")."""
    return dict(ffi.typeof(name).relements)


class MatmulRuntime:
    """The matmul functions of one opened librknnrt (``core`` is its rkrt.library.Runtime)."""

    def __init__(self, core: Runtime) -> None:
        self.core = core
        self.lib = ffi.dlopen(core.path)

    def symbol(self, name: str) -> Any:
        """The C function ``name``, or MissingSymbolError when this runtime lacks it."""
        try:
            return getattr(self.lib, name)
        except AttributeError:
            raise MissingSymbolError(name, self.core.path) from None


_cache: dict[str, MatmulRuntime] = {}
_lock = threading.Lock()


def matmul_runtime(core: Runtime) -> MatmulRuntime:
    """The matmul view of ``core``; dlopen of a path already open shares its instance."""
    with _lock:
        mm = _cache.get(core.path)
        if mm is None:
            mm = _cache[core.path] = MatmulRuntime(core)
        return mm
