"""rkrt: a strict, fast cffi binding of Rockchip's librknnrt.

``import rkrt`` never loads the runtime library; opening a model does (see rkrt.library).
"""

from typing import TYPE_CHECKING, Any

from . import external, lowlevel
from .binding import IOBinding
from .cores import CoreMask, detect_soc
from .errors import (
    ClosedError,
    DTypeError,
    MissingSymbolError,
    RKNNError,
    RuntimeNotFoundError,
    ShapeError,
    UnsupportedRuntimeError,
)
from .library import RuntimeInfo, runtime_info
from .pool import Pool
from .session import Session
from .tensor import TensorSpec

if TYPE_CHECKING:
    from .matmul import MatMul, MatMulBinding, QuantParams

__version__ = "0.1.0"

_LAZY = {"MatMul", "MatMulBinding", "QuantParams"}


def __getattr__(name: str) -> Any:
    # The matmul API has a header of its own to parse (~10 ms): only users of it pay.
    if name in _LAZY:
        from . import matmul

        return getattr(matmul, name)
    raise AttributeError(f"module 'rkrt' has no attribute {name!r}")

__all__ = [
    "ClosedError",
    "CoreMask",
    "DTypeError",
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
