"""A fitted scikit-learn MLP's weights as an .npz for rkrt's no-conversion path.

``export_weights(estimator, "model.npz")`` writes plain arrays and JSON text, never a
pickle: ``coef_0..``/``intercept_0..`` (float32, layer order), ``activation`` and
``out_activation`` (scikit-learn's names), ``metadata`` (the same JSON as an .rknn sidecar:
task, outputs, classes, feature names) and ``format``. On the board,
``rkrt.sklearn.from_weights("model.npz")`` runs it with the matmuls on the NPU.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from emit.converters import lower
from emit.errors import NonFiniteWeightsError, NotFittedError, UnsupportedModelError
from emit.export import model_metadata
from rkrt.metadata import WEIGHTS_FORMAT, PathLike


def export_weights(estimator: Any, path: PathLike) -> str:
    """Write a fitted MLPClassifier / MLPRegressor's weights to ``path`` (an .npz); returns it."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise UnsupportedModelError(
            f"export_weights takes a fitted sklearn MLPClassifier or MLPRegressor, not "
            f"{type(estimator).__name__}; for other estimators use emit.convert (a .rknn model)"
        )
    if not hasattr(estimator, "coefs_"):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet: call fit(X, y) before "
            "export_weights"
        )
    meta = model_metadata(estimator, lower(estimator))
    arrays: dict[str, np.ndarray] = {
        "format": np.array(WEIGHTS_FORMAT),
        "metadata": np.array(meta.to_json()),
        "activation": np.array(estimator.activation),
        "out_activation": np.array(estimator.out_activation_),
    }
    for i, (w, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        with np.errstate(over="ignore"):
            w32, b32 = np.asarray(w, np.float32), np.asarray(b, np.float32)
        if not (np.isfinite(w32).all() and np.isfinite(b32).all()):
            raise NonFiniteWeightsError(
                f"layer {i} has NaN or infinite weights (or beyond float32 range); refit the model"
            )
        arrays[f"coef_{i}"], arrays[f"intercept_{i}"] = w32, b32
    # A file object, so numpy does not append ".npz" to a path that lacks it.
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return os.fspath(path)
