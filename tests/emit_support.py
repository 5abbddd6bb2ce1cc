"""Shared helpers of the emit graph tests: the op whitelist, onnxruntime, and the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import emit

ALLOWED_OPS = {"Gemm", "MatMul", "Add", "Relu", "Sigmoid", "Tanh", "Softmax"}


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to 1e-5, relative to the output's scale: float32 keeps ~7 significant digits."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


def run_onnx(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def sklearn_outputs(estimator: Any, X: np.ndarray) -> np.ndarray:
    """What the graph must output, from scikit-learn's own methods (written here, not taken
    from emit, so that it checks emit.reference_outputs too)."""
    outputs = emit.describe(estimator)["outputs"]
    if outputs == "probabilities":
        return estimator.predict_proba(X)
    if outputs == "decision":
        expected = estimator.decision_function(X)
        return np.stack([-expected, expected], axis=1) if expected.ndim == 1 else expected
    return estimator.predict(X).reshape(len(X), -1)
