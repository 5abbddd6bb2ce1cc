"""Converters from scikit-learn estimators to emit's `Network` form, one module per family.

Importing this package registers every converter.
"""

from emit.converters import columns, linear, mlp, pipeline, preprocessing, targets
from emit.converters.registry import (
    lower,
    lower_transform,
    register,
    register_board,
    register_transform,
    supported,
)

__all__ = [
    "columns",
    "linear",
    "lower",
    "lower_transform",
    "mlp",
    "pipeline",
    "preprocessing",
    "register",
    "register_board",
    "register_transform",
    "supported",
    "targets",
]
