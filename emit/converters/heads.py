"""Output layers shared by the classifier converters."""

from __future__ import annotations

from typing import Any

import numpy as np

from emit.network import Dense, OutputSpec


def mirrored_binary(weight: np.ndarray, bias: np.ndarray, activation: str) -> Dense:
    """One score column z widened to the two columns [-z, z].

    With a sigmoid they are [1 - p, p] (sigmoid(-z) = 1 - sigmoid(z)), the two class
    probabilities; without one, argmax picks classes_[1] exactly when z > 0, which
    is scikit-learn's rule for binary decision functions. One Gemm, no extra op.
    """
    if weight.shape[1] != 1:
        raise ValueError(f"a binary head has one score column, got {weight.shape[1]}")
    return Dense(
        np.concatenate([-weight, weight], axis=1), np.concatenate([-bias, bias]), activation
    )


def classes_of(estimator: Any) -> tuple[Any, ...]:
    """`classes_` as plain Python values (numpy scalars converted), in the model's order."""
    return tuple(np.asarray(estimator.classes_).tolist())


def classifier_spec(estimator: Any, outputs: str) -> OutputSpec:
    classes = classes_of(estimator)
    return OutputSpec(task="classifier", outputs=outputs, classes=classes, n_outputs=len(classes))
