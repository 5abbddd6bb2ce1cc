"""X checked as scikit-learn checks it: feature names, sparsity, dimensions."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np


def check_feature_names(X: Any, fitted: Optional[tuple[str, ...]], name: str) -> None:
    """Warn when only one of X and the fit had names; raise when the names differ."""
    given = feature_names(X)
    if given is None and fitted is None:
        return
    if given is None:
        warnings.warn(
            f"X does not have valid feature names, but {name} was fitted with feature names",
            UserWarning,
            stacklevel=5,
        )
        return
    if fitted is None:
        warnings.warn(
            f"X has feature names, but {name} was fitted without feature names",
            UserWarning,
            stacklevel=5,
        )
        return
    if tuple(given) == fitted:
        return
    message = "The feature names should match those that were passed during fit.\n"
    unseen = [n for n in given if n not in fitted]
    missing = [n for n in fitted if n not in given]
    if unseen:
        message += "Feature names unseen at fit time:\n" + "".join(f"- {n}\n" for n in unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + "".join(
            f"- {n}\n" for n in missing
        )
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def feature_names(X: Any) -> Optional[list[str]]:
    """String column names of a DataFrame-like X (as scikit-learn), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    string_names = [isinstance(n, str) for n in names]
    if names and all(string_names):
        return names
    if any(string_names):
        kinds = sorted({type(n).__name__ for n in names})
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {kinds} as feature name / column name types. Convert them "
            "all to strings, e.g. X.columns = X.columns.astype(str)."
        )
    return None


def refuse_sparse(X: Any, name: str) -> None:
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(f"{name} does not take sparse input; convert it with X.toarray()")


def require_2d(array: np.ndarray, name: str) -> None:
    """Raise as scikit-learn does for complex and not two-dimensional input."""
    if array.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if array.ndim != 2:
        if array.ndim > 2:
            raise ValueError(f"Found array with dim {array.ndim}. {name} expected <= 2.")
        kind = "scalar" if array.ndim == 0 else "1D"
        raise ValueError(
            f"Expected 2D array, got {kind} array instead:\narray={array}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
