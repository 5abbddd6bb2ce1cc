"""rkrt: a strict, fast cffi binding of Rockchip's librknnrt.

``import rkrt`` never loads the runtime library; opening a model does (see rkrt.library).
"""

from .binding import IOBinding
from .cores import CoreMask, detect_soc
from .errors import (
    ClosedError,
    DTypeError,
    MissingSymbolError,
    RKNNError,
    RuntimeNotFoundError,
    ShapeError,
)
from .pool import Pool
from .session import Session
from .tensor import TensorSpec

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "CoreMask",
    "DTypeError",
    "IOBinding",
    "MissingSymbolError",
    "Pool",
    "RKNNError",
    "RuntimeNotFoundError",
    "Session",
    "ShapeError",
    "TensorSpec",
    "detect_soc",
]
