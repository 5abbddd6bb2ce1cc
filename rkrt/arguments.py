"""Argument types and checks shared by rkrt and emit; imports nothing heavy (no C header)."""

from __future__ import annotations

import operator
import os
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; TypeError for bools and non-integers, ValueError below 1."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {number}")
    return number
