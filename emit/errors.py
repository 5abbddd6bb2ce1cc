"""Exceptions raised by emit; every one derives from `EmitError`."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class EmitError(Exception):
    """Base class of every error emit raises on purpose; catch it to handle them all."""


class UnsupportedModelError(EmitError, TypeError):
    """The estimator (or one of its settings) has no NPU-friendly ONNX form.

    A `TypeError` because the object given is of a kind emit cannot convert; the
    message names what is unsupported and lists what is.
    """


class NotFittedError(EmitError, _SklearnNotFittedError):
    """The estimator has not been fitted; also catchable as scikit-learn's NotFittedError."""


class NonFiniteWeightsError(EmitError, ValueError):
    """A weight or bias is NaN or infinite (or overflows float32)."""


class Float16RangeError(EmitError, ValueError):
    """A weight, or an activation on the example data, is beyond float16 range (65504)."""


class Float16RangeWarning(UserWarning):
    """Like `Float16RangeError`, issued instead of raising when asked to only warn."""
