"""Public front of the converter: `to_onnx`, and what its output means (`describe`).

Output semantics (one float32 output "output" of shape (batch_size, n_outputs)):

- ``task="classifier", outputs="probabilities"``: one column per class in
  ``classes`` order; label = ``classes[argmax]``. Binary models (MLPClassifier,
  LogisticRegression, SGDClassifier(loss="log_loss")) emit both columns
  ``[1 - p, p]`` as ``predict_proba`` does; multiclass ones a softmax.
- ``task="classifier", outputs="decision"``: decision_function values (LinearSVC,
  SGDClassifier with other losses, multiclass log-loss SGDClassifier); label =
  ``classes[argmax]``. Binary models emit ``[-d, d]``, so argmax picks
  ``classes[1]`` exactly when d > 0, scikit-learn's rule.
- ``task="multilabel", outputs="probabilities"``: one independent probability
  per label (MLPClassifier on an indicator matrix); indicator = p > 0.5.
- ``task="regressor", outputs="values"``: ``predict`` as (batch, n_outputs),
  single-output models included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from emit.checks import check_finite
from emit.converters import lower
from emit.graph import MAX_OPSET, MIN_OPSET, build_model
from rkrt.metadata import positive_int


def to_onnx(estimator: Any, *, batch_size: int = 1, opset: int = 13) -> onnx.ModelProto:
    """Convert a fitted scikit-learn estimator into an ONNX model of NPU-friendly ops.

    The model takes a float32 "input" of static shape (batch_size, n_features_in_)
    and returns one float32 "output" whose meaning `describe` gives. Pipeline
    preprocessing is folded into the first layer's weights. The same estimator and
    arguments give the same bytes. opset must be within 9..19 (what rknn-toolkit2
    converts without warnings).

    Raises `UnsupportedModelError` for estimators (or settings) without such a
    graph, `NotFittedError` for unfitted ones and `NonFiniteWeightsError` when a
    weight is NaN or infinite in float32.
    """
    batch_size = positive_int("batch_size", batch_size)
    opset = positive_int("opset", opset)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset={opset} is not supported: rknn-toolkit2 converts opsets "
            f"{MIN_OPSET}..{MAX_OPSET}; pass one of those (13 is the default)"
        )
    network = lower(estimator).astype(np.float32)
    check_finite(network)
    return build_model(network, batch_size=batch_size, opset=opset, name=type(estimator).__name__)


def describe(estimator: Any) -> dict[str, Any]:
    """What `to_onnx(estimator)`'s output means (see the module docstring).

    Returns ``{"task": "classifier" | "multilabel" | "regressor",
    "outputs": "probabilities" | "decision" | "values", "classes": list or None,
    "n_outputs": int, "n_features_in": int}``; ``classes`` holds plain Python
    values in output-column order (label indices for multilabel models).
    """
    network = lower(estimator)
    spec = network.spec
    return {
        "task": spec.task,
        "outputs": spec.outputs,
        "classes": None if spec.classes is None else list(spec.classes),
        "n_outputs": spec.n_outputs,
        "n_features_in": network.n_features_in,
    }


def reference_outputs(estimator: Any, X: Any) -> np.ndarray:
    """What `to_onnx(estimator)` should output on X, computed by scikit-learn itself.

    A float64 (n_samples, n_outputs) array from ``predict_proba``,
    ``decision_function`` (binary: ``[-d, d]``) or ``predict``, as `describe`
    says; compare the ONNX or NPU output with it to verify a conversion.
    """
    outputs = describe(estimator)["outputs"]
    if outputs == "probabilities":
        values = estimator.predict_proba(X)
    elif outputs == "decision":
        values = estimator.decision_function(X)
        if np.ndim(values) == 1:
            values = np.stack([-values, values], axis=1)
    else:
        values = estimator.predict(X)
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)

