"""Property: for random models and preprocessing chains, onnxruntime on `to_onnx` equals sklearn."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from emit_support import ALLOWED_OPS, assert_close, run_onnx, sklearn_outputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC

import emit

TASKS = ["binary", "multiclass", "multilabel", "regression", "multioutput"]
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
STEPS = ["standard", "minmax", "maxabs", "pca", "pca-whiten"]
N_SAMPLES = 40


@dataclass(frozen=True)
class Case:
    task: str
    model: str  # "mlp" or "linear"
    hidden: tuple[int, ...]
    activation: str
    steps: tuple[tuple[str, int], ...]  # (kind, n_components for PCA)
    n_features: int
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n_features = draw(st.integers(2, 7))
    steps = []
    width = n_features
    for kind in draw(st.lists(st.sampled_from(STEPS), max_size=3)):
        components = draw(st.integers(1, width)) if kind.startswith("pca") else width
        steps.append((kind, components))
        width = components
    return Case(
        task=draw(st.sampled_from(TASKS)),
        model=draw(st.sampled_from(["mlp", "mlp", "linear"])),
        hidden=tuple(draw(st.lists(st.integers(1, 10), max_size=3))),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        steps=tuple(steps),
        n_features=n_features,
        seed=draw(st.integers(0, 2**16)),
    )


def _step(kind: str, components: int) -> Any:
    if kind == "standard":
        return StandardScaler()
    if kind == "minmax":
        return MinMaxScaler(feature_range=(-1, 1))
    if kind == "maxabs":
        return MaxAbsScaler()
    return PCA(n_components=components, whiten=kind == "pca-whiten")


def _final(case: Case) -> Any:
    classifier = case.task in ("binary", "multiclass", "multilabel")
    if case.model == "mlp":
        kind = MLPClassifier if classifier else MLPRegressor
        return kind(
            hidden_layer_sizes=case.hidden,
            activation=case.activation,
            max_iter=15,
            random_state=case.seed,
        )
    if case.task == "multilabel":  # no linear multilabel estimator: an MLP without hidden layer
        return MLPClassifier(hidden_layer_sizes=(), max_iter=15, random_state=case.seed)
    if not classifier:
        return Ridge(alpha=0.1)
    linear = [LogisticRegression(), LinearSVC(), SGDClassifier(random_state=0)]
    return linear[case.seed % len(linear)]


def _data(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training and test features (float32-exact, off-centre and unevenly scaled) and targets."""
    scales = rng.uniform(0.5, 3, case.n_features)
    offsets = rng.uniform(-2, 2, case.n_features)
    X = rng.normal(size=(2 * N_SAMPLES, case.n_features)) * scales + offsets
    X = X.astype(np.float32).astype(np.float64)
    signal = X @ rng.normal(size=(case.n_features, 3))
    if case.task == "binary":
        y = (signal[:, 0] > np.median(signal[:, 0])).astype(int)
    elif case.task == "multiclass":
        y = np.argmax(signal, axis=1)
    elif case.task == "multilabel":
        y = (signal > np.median(signal, axis=0)).astype(int)
    elif case.task == "regression":
        y = signal[:, 0] / np.std(signal[:, 0])
    else:
        y = signal / np.std(signal, axis=0)
    return X[:N_SAMPLES], X[N_SAMPLES:], y[:N_SAMPLES]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_onnxruntime_equals_estimator(case: Case) -> None:
    rng = np.random.default_rng(case.seed)
    X_train, X_test, y = _data(case, rng)
    estimator = make_pipeline(*(_step(*step) for step in case.steps), _final(case))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X_train, y)

    model = emit.to_onnx(estimator, batch_size=len(X_test))
    onnx.checker.check_model(model)
    assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
    got = run_onnx(model, X_test.astype(np.float32))
    assert_close(got, sklearn_outputs(estimator, X_test))
