"""rkrt: a strict, fast cffi binding of Rockchip's librknnrt.

``import rkrt`` never loads the runtime library; opening a model does (see rkrt.library).
Nor does it parse the C header: every name below is imported on first use, so
``import rkrt.metadata`` (all that the host-side converter emit needs) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import external, lowlevel
    from .binding import IOBinding
    from .cores import CoreMask, detect_soc
    from .errors import (
        BusyError,
        ClosedError,
        DTypeError,
        Error,
        MissingSymbolError,
        RKNNError,
        RuntimeNotFoundError,
        ShapeError,
        UnsupportedRuntimeError,
    )
    from .library import RuntimeInfo, runtime_info
    from .matmul import MatMul, MatMulBinding, QuantParams
    from .pool import Pool
    from .session import Session
    from .tensor import TensorSpec

__version__ = "0.1.0"

# Public name -> the submodule defining it ("" for a submodule itself).
_LAZY = {
    "BusyError": "errors",
    "ClosedError": "errors",
    "CoreMask": "cores",
    "DTypeError": "errors",
    "Error": "errors",
    "IOBinding": "binding",
    "MatMul": "matmul",
    "MatMulBinding": "matmul",
    "MissingSymbolError": "errors",
    "Pool": "pool",
    "QuantParams": "matmul",
    "RKNNError": "errors",
    "RuntimeInfo": "library",
    "RuntimeNotFoundError": "errors",
    "Session": "session",
    "ShapeError": "errors",
    "TensorSpec": "tensor",
    "UnsupportedRuntimeError": "errors",
    "detect_soc": "cores",
    "external": "",
    "lowlevel": "",
    "runtime_info": "library",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rkrt' has no attribute {name!r}")
    value = importlib.import_module(f".{module or name}", __name__)
    if module:
        value = getattr(value, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BusyError",
    "ClosedError",
    "CoreMask",
    "DTypeError",
    "Error",
    "IOBinding",
    "MatMul",
    "MatMulBinding",
    "MissingSymbolError",
    "Pool",
    "QuantParams",
    "RKNNError",
    "RuntimeInfo",
    "RuntimeNotFoundError",
    "Session",
    "ShapeError",
    "TensorSpec",
    "UnsupportedRuntimeError",
    "detect_soc",
    "external",
    "lowlevel",
    "runtime_info",
]
