"""Expert access to the raw librknnrt binding rkrt itself uses. Nothing here validates.

``ffi`` is rkrt's cffi declaration of the whole ABI (``native_headers/rknn_api.h``),
``load()`` returns the same cffi library object a Session calls (one per path, shared),
``check()`` is rkrt's error gate and ``DEFINES``/``enum()`` give the header's constants.
A wrong pointer, size or handle passed through these crashes the process or corrupts memory
just as it would from C: use them for what Session does not cover, and hand contexts back
to rkrt with :meth:`rkrt.Session.adopt`::

    from rkrt import lowlevel
    lib, ffi = lowlevel.load(), lowlevel.ffi
    ctx = ffi.new("rknn_context*")
    model = ffi.from_buffer(model_bytes)
    lowlevel.check(lib.rknn_init(ctx, model, len(model), 0, ffi.NULL), "rknn_init")
    session = rkrt.Session.adopt(ctx[0], owned=True)   # rkrt destroys it at close()
"""

from __future__ import annotations

from typing import Any, Optional

from ._ffi import DEFINES, enum, ffi
from .arguments import PathLike
from .errors import check
from .library import load as _load_runtime

__all__ = ["DEFINES", "check", "enum", "ffi", "load"]


def load(library: Optional[PathLike] = None) -> Any:
    """The cffi library object of librknnrt: ``library``, else $RKRT_LIBRARY, else the
    system places (as Session). Optional symbols an older runtime lacks raise
    AttributeError when read."""
    return _load_runtime(library).lib
