"""emit: scikit-learn estimators to ONNX graphs of NPU-friendly ops, and to .rknn models.

scikit-learn -> ONNX: `to_onnx`, `to_preparation` (the board-side part), `describe`,
`reference_outputs`, `check_numerics` and the converter registry. ONNX -> .rknn with
rknn-toolkit2: `convert` and its `ConversionReport`, `Tolerance`, the placement report and
the errors (`python -m emit` is the CLI).
"""

from emit._version import __version__
from emit.checks import check_numerics
from emit.convert import ConversionReport, PlacementWarning, convert
from emit.converters import register, register_transform, supported
from emit.errors import (
    EmitError,
    Float16RangeError,
    Float16RangeWarning,
    NonFiniteWeightsError,
    NotFittedError,
    UnsupportedModelError,
)
from emit.export import describe, reference_outputs, to_onnx, to_preparation
from emit.placement import Layer, Placement
from emit.toolkit import ToolkitError, supported_platforms
from emit.verify import Accuracy, Tolerance, VerificationError, VerificationWarning
from emit.weights import export_weights

__all__ = [
    "Accuracy",
    "ConversionReport",
    "EmitError",
    "Float16RangeError",
    "Float16RangeWarning",
    "Layer",
    "NonFiniteWeightsError",
    "NotFittedError",
    "Placement",
    "PlacementWarning",
    "Tolerance",
    "ToolkitError",
    "UnsupportedModelError",
    "VerificationError",
    "VerificationWarning",
    "__version__",
    "check_numerics",
    "convert",
    "describe",
    "export_weights",
    "reference_outputs",
    "register",
    "register_transform",
    "supported",
    "supported_platforms",
    "to_onnx",
    "to_preparation",
]
