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

from importlib import metadata as importlib_metadata
from typing import Any, Optional

import numpy as np
import onnx

from emit._version import __version__
from emit.checks import check_finite
from emit.converters import lower
from emit.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, build_model
from emit.network import Network
from rkrt.metadata import ModelMetadata, positive_int


def to_onnx(estimator: Any, *, batch_size: int = 1, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
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
    return network_to_onnx(
        lower(estimator), batch_size=batch_size, opset=opset, name=type(estimator).__name__
    )


def network_to_onnx(network: Network, *, batch_size: int, opset: int, name: str) -> onnx.ModelProto:
    """`to_onnx` of an already lowered estimator (arguments already checked)."""
    network = network.astype(np.float32)
    check_finite(network)
    return build_model(network, batch_size=batch_size, opset=opset, name=name)


def describe(estimator: Any) -> dict[str, Any]:
    """What `to_onnx(estimator)`'s output means (see the module docstring).

    Returns ``{"task": "classifier" | "multilabel" | "regressor",
    "outputs": "probabilities" | "decision" | "values", "classes": list or None,
    "n_outputs": int, "n_features_in": int}``; ``classes`` holds plain Python
    values in output-column order (label indices for multilabel models).
    """
    return describe_network(lower(estimator))


def describe_network(network: Network) -> dict[str, Any]:
    """`describe` of an already lowered estimator."""
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
    return reference_values(estimator, lower(estimator).spec.outputs, X)


def reference_values(estimator: Any, outputs: str, X: Any) -> np.ndarray:
    """`reference_outputs` when the output kind (``network.spec.outputs``) is known."""
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


def model_metadata(estimator: Any, network: Network, **build: Any) -> ModelMetadata:
    """The ModelMetadata of `estimator` (lowered to `network`): the one place emit makes one.

    `build` adds what the build decided (batch_sizes, quantization, target_platform) and
    ``versions`` of further tools, after scikit-learn's and emit's.
    """
    spec = network.spec
    versions = {
        "scikit-learn": importlib_metadata.version("scikit-learn"),
        "emit": __version__,
        **build.pop("versions", {}),
    }
    return ModelMetadata(
        task=spec.task,
        outputs=spec.outputs,
        n_features_in=network.n_features_in,
        classes=spec.classes,
        feature_names_in=_feature_names(estimator),
        estimator=_estimator_name(estimator),
        versions=versions,
        **build,
    )


def _feature_names(estimator: Any) -> Optional[tuple[str, ...]]:
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else tuple(str(n) for n in names)


def _estimator_name(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return type(estimator).__name__
    return f"{type(estimator).__name__}({', '.join(type(s).__name__ for _, s in steps)})"
