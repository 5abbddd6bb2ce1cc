"""rkrt's exceptions and the one gate that turns librknnrt return codes into them.

Importing this module does not parse the C header (rkrt.metadata, which emit imports on
the host, raises an rkrt.Error too): the RKNN_ERR_* names are read from it on first use.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _defines() -> dict[str, int]:
    from ._ffi import DEFINES

    return DEFINES


@functools.cache
def _error_names() -> dict[int, str]:
    return {value: name for name, value in _defines().items() if name.startswith("RKNN_ERR_")}


def __getattr__(name: str) -> Any:
    if name == "ERROR_NAMES":  # RKNN_ERR_* code -> name, from the header
        return _error_names()
    raise AttributeError(f"module 'rkrt.errors' has no attribute {name!r}")


_HINTS: dict[str, str] = {
    "RKNN_ERR_FAIL": "the runtime failed internally; run with RKNN_LOG_LEVEL=4 to see its log",
    "RKNN_ERR_TIMEOUT": "the NPU did not finish in time; check the NPU driver (dmesg)",
    "RKNN_ERR_DEVICE_UNAVAILABLE": "no usable NPU device; check the driver and /dev/dri access",
    "RKNN_ERR_MALLOC_FAIL": "the runtime ran out of memory",
    "RKNN_ERR_PARAM_INVALID": (
        "the runtime rejected a parameter (e.g. a core mask this SoC lacks, or a buffer size)"
    ),
    "RKNN_ERR_MODEL_INVALID": (
        "not a valid .rknn model for this runtime; rebuild it with a matching rknn-toolkit2"
    ),
    "RKNN_ERR_CTX_INVALID": "the context is invalid (destroyed or never initialised)",
    "RKNN_ERR_INPUT_INVALID": "an input was rejected by the runtime",
    "RKNN_ERR_OUTPUT_INVALID": "an output was rejected by the runtime",
    "RKNN_ERR_DEVICE_UNMATCH": "the model or runtime does not match this device's driver",
    "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL": (
        "a pre-compiled model this runtime cannot load; rebuild it without pre-compilation"
    ),
    "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION": (
        "the model's optimization level does not match this runtime; rebuild it"
    ),
    "RKNN_ERR_TARGET_PLATFORM_UNMATCH": (
        "the model was built for another SoC; rebuild it with target_platform set to this one"
    ),
}


class Error(Exception):
    """Base of every rkrt exception: ``except rkrt.Error`` catches them all.

    Each subclass also keeps its built-in base (RuntimeError, TypeError, ValueError,
    OSError), so code catching those goes on working.
    """


class RKNNError(Error, RuntimeError):
    """A librknnrt call returned a negative code.

    ``code`` is the number, ``symbol`` its RKNN_ERR_* name (``"unknown"`` for codes the header
    does not define), ``function`` the C function that returned it, ``hint`` what usually causes it
    (or what the caller knows better).
    """

    def __init__(self, code: int, function: str, hint: str = "") -> None:
        self.code = code
        self.function = function
        self.symbol = _error_names().get(code, "unknown")
        default = _HINTS.get(self.symbol, "an error code this rkrt does not know; see the log")
        self.hint = hint or default
        super().__init__(f"{function}() failed with {self.symbol} ({code}): {self.hint}")


class DTypeError(Error, TypeError):
    """An input array has a dtype the model's input cannot take."""


class ShapeError(Error, ValueError):
    """An input or output array has a shape the model does not accept."""


class RuntimeNotFoundError(Error, OSError):
    """No loadable librknnrt.so was found; the message lists every place tried."""


class MissingSymbolError(Error, RuntimeError):
    """The loaded librknnrt lacks a function (an older runtime); ``symbol`` names it."""

    def __init__(self, symbol: str, library: str) -> None:
        self.symbol = symbol
        self.library = library
        super().__init__(
            f"{library} has no function {symbol}(): this runtime is too old for the feature "
            f"that needs it; install a newer librknnrt.so (RKNN SDK >= 2.0) or point "
            f"RKRT_LIBRARY at one"
        )


class ClosedError(Error, ValueError):
    """A Session, IOBinding or Pool was used after close()."""


class BusyError(Error, RuntimeError):
    """``block=False`` and the bound on requests in flight (``max_pending``) is reached."""


class UnsupportedRuntimeError(Error, RuntimeError):
    """The loaded librknnrt (its release, or the platform) cannot do what was asked safely."""


def check(ret: int, function: str) -> int:
    """Return ``ret`` unchanged unless it is negative, which raises RKNNError."""
    if ret < 0:
        raise RKNNError(ret, function)
    return ret


def created(ptr: Any, function: str, code: str = "RKNN_ERR_PARAM_INVALID") -> Any:
    """``ptr`` as returned by a create call, or RKNNError(``code``) when it is NULL.

    The create functions return NULL without a code; the runtime's log says why, and
    ``code`` names the likeliest cause (an allocation: RKNN_ERR_MALLOC_FAIL).
    """
    if not ptr:  # a NULL cdata pointer is false
        raise RKNNError(_defines()[code], function)
    return ptr
