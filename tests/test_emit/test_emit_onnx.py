"""emit.to_onnx: onnxruntime on the emitted graph computes what scikit-learn computes."""

from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np
import onnx
import pytest
from emit_support import ALLOWED_OPS, assert_close, run_onnx, sklearn_outputs
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import LinearSVC, LinearSVR
from tabular_support import SKLEARN

import emit

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
N_SAMPLES = 80


def _data(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32-exact features (so sklearn and onnxruntime see the same numbers) and targets."""
    if kind in ("binary", "multiclass"):
        X, y = make_classification(
            n_samples=N_SAMPLES,
            n_features=6,
            n_informative=4,
            n_classes=2 if kind == "binary" else 4,
            random_state=seed,
        )
    elif kind == "multilabel":
        X, y = make_multilabel_classification(
            n_samples=N_SAMPLES, n_features=6, n_classes=3, random_state=seed
        )
    else:
        X, y = make_regression(
            n_samples=N_SAMPLES,
            n_features=6,
            n_targets=1 if kind == "regression" else 3,
            noise=0.1,
            random_state=seed,
        )
        y = y / np.std(y)
    return X.astype(np.float32).astype(np.float64), y


def _fit(estimator: Any, kind: str) -> Any:
    X, y = _data(kind)
    return estimator.fit(X, y)


def _assert_matches_sklearn(estimator: Any, kind: str) -> np.ndarray:
    """Convert, run on onnxruntime, compare with scikit-learn's own methods; return outputs."""
    X, _ = _data(kind, seed=1)  # unseen data
    X32 = X.astype(np.float32)
    model = emit.to_onnx(estimator, batch_size=len(X32))
    onnx.checker.check_model(model, full_check=True)
    assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
    got = run_onnx(model, X32)
    info = emit.describe(estimator)
    assert got.shape == (len(X), info["n_outputs"])
    assert_close(got, sklearn_outputs(estimator, X))
    assert_close(got, emit.reference_outputs(estimator, X))
    _assert_labels_match(estimator, info, got, X)
    return got


def _assert_labels_match(estimator: Any, info: dict, got: np.ndarray, X: np.ndarray) -> None:
    """The documented label rules applied to the graph's output give predict's labels."""
    if info["task"] == "regressor":
        return
    predicted = estimator.predict(X)
    if info["task"] == "multilabel":
        decided = np.abs(got - 0.5) > 1e-4  # float32 may flip a coin-toss label
        np.testing.assert_array_equal((got > 0.5)[decided], predicted.astype(bool)[decided])
        return
    top2 = np.sort(got, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 1e-4
    labels = np.asarray(info["classes"], dtype=object)[got.argmax(axis=1)]
    np.testing.assert_array_equal(labels[decided], predicted.astype(object)[decided])
    assert decided.mean() > 0.9


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_mlp_classifier_matches_predict_proba(activation: str, kind: str) -> None:
    mlp = _fit(
        MLPClassifier(
            hidden_layer_sizes=(7, 5), activation=activation, max_iter=60, random_state=0
        ),
        kind,
    )
    got = _assert_matches_sklearn(mlp, kind)
    if kind == "binary":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    if kind == "multilabel":
        assert emit.describe(mlp)["task"] == "multilabel"
        assert got.shape[1] == 3


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", ["regression", "multioutput"])
def test_mlp_regressor_matches_predict(activation: str, kind: str) -> None:
    mlp = _fit(
        MLPRegressor(hidden_layer_sizes=(6,), activation=activation, max_iter=60, random_state=0),
        kind,
    )
    _assert_matches_sklearn(mlp, kind)


def test_mlp_with_no_hidden_layer_and_deep_stack() -> None:
    for hidden in [(), (4, 4, 4, 4)]:
        _assert_matches_sklearn(
            _fit(
                MLPClassifier(hidden_layer_sizes=hidden, max_iter=40, random_state=0), "multiclass"
            ),
            "multiclass",
        )


LINEAR_CASES: list[tuple[Callable[[], Any], str, str]] = [
    (lambda: LogisticRegression(), "binary", "probabilities"),
    (lambda: LogisticRegression(), "multiclass", "probabilities"),
    (lambda: LogisticRegression(fit_intercept=False), "binary", "probabilities"),
    (lambda: LinearRegression(), "regression", "values"),
    (lambda: LinearRegression(), "multioutput", "values"),
    (lambda: Ridge(alpha=0.5), "regression", "values"),
    (lambda: Ridge(alpha=0.5), "multioutput", "values"),
    (lambda: Lasso(alpha=0.01), "regression", "values"),
    (lambda: Lasso(alpha=0.01, fit_intercept=False), "multioutput", "values"),
    (lambda: ElasticNet(alpha=0.01), "regression", "values"),
    (lambda: SGDRegressor(random_state=0), "regression", "values"),
    (lambda: LinearSVR(random_state=0), "regression", "values"),
    (lambda: SGDClassifier(random_state=0), "binary", "decision"),
    (lambda: SGDClassifier(random_state=0), "multiclass", "decision"),
    (lambda: SGDClassifier(loss="log_loss", random_state=0), "binary", "probabilities"),
    (lambda: SGDClassifier(loss="log_loss", random_state=0), "multiclass", "decision"),
    (lambda: SGDClassifier(loss="modified_huber", random_state=0), "binary", "decision"),
    (lambda: LinearSVC(random_state=0), "binary", "decision"),
    (lambda: LinearSVC(random_state=0), "multiclass", "decision"),
]


@pytest.mark.parametrize(
    ("make", "kind", "outputs"),
    LINEAR_CASES,
    ids=[
        f"{make().__class__.__name__}-{kind}-{i}" for i, (make, kind, _) in enumerate(LINEAR_CASES)
    ],
)
def test_linear_models_match_sklearn(make: Callable[[], Any], kind: str, outputs: str) -> None:
    model = _fit(make(), kind)
    assert emit.describe(model)["outputs"] == outputs
    got = _assert_matches_sklearn(model, kind)
    if kind == "binary":
        # One score widened to two mirrored columns (probabilities [1-p, p] or [-d, d]).
        mirror = 1 - got[:, 1] if outputs == "probabilities" else -got[:, 1]
        np.testing.assert_allclose(got[:, 0], mirror, atol=1e-6)


def test_sparsified_linear_model_converts() -> None:
    model = _fit(LogisticRegression(), "multiclass").sparsify()
    _assert_matches_sklearn(model, "multiclass")


PREPROCESSING: dict[str, Callable[[], list[Any]]] = {
    "standard": lambda: [StandardScaler()],
    "standard-no-mean": lambda: [StandardScaler(with_mean=False)],
    "standard-nothing": lambda: [StandardScaler(with_mean=False, with_std=False)],
    "minmax": lambda: [MinMaxScaler(feature_range=(-1, 2))],
    "maxabs": lambda: [MaxAbsScaler()],
    "robust": lambda: [RobustScaler(quantile_range=(10, 90))],
    "robust-no-centering": lambda: [RobustScaler(with_centering=False, unit_variance=True)],
    "pca": lambda: [PCA(n_components=4)],
    "pca-whiten": lambda: [PCA(n_components=4, whiten=True)],
    "pca-whiten-full": lambda: [PCA(whiten=True)],
    "standard-pca-whiten": lambda: [StandardScaler(), PCA(n_components=5, whiten=True)],
    "chain": lambda: [MinMaxScaler(), StandardScaler(), PCA(3), MaxAbsScaler(), PCA(whiten=True)],
}


@pytest.mark.parametrize("steps", sorted(PREPROCESSING))
@pytest.mark.parametrize("kind", ["multiclass", "multioutput"])
def test_pipeline_preprocessing_is_folded_into_the_first_layer(steps: str, kind: str) -> None:
    final = (
        MLPClassifier(hidden_layer_sizes=(5,), activation="tanh", max_iter=60, random_state=0)
        if kind == "multiclass"
        else MLPRegressor(hidden_layer_sizes=(5,), max_iter=60, random_state=0)
    )
    pipeline = _fit(make_pipeline(*PREPROCESSING[steps](), final), kind)
    _assert_matches_sklearn(pipeline, kind)
    model = emit.to_onnx(pipeline)
    bare = emit.to_onnx(pipeline[-1])
    # Folding adds no node: the same op sequence as the final estimator alone.
    assert [n.op_type for n in model.graph.node] == [n.op_type for n in bare.graph.node]


def test_pipeline_of_linear_model_nested_and_passthrough() -> None:
    inner = Pipeline([("scale", StandardScaler()), ("skip", "passthrough")])
    pipeline = _fit(
        Pipeline([("prep", inner), ("pca", PCA(whiten=True)), ("svc", LinearSVC(random_state=0))]),
        "binary",
    )
    _assert_matches_sklearn(pipeline, "binary")


def test_pipeline_without_preprocessing_reuses_the_weights_unchanged() -> None:
    mlp = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0), "multiclass")
    alone = emit.to_onnx(mlp)
    piped = emit.to_onnx(Pipeline([("mlp", mlp)]))
    assert list(piped.graph.initializer) == list(alone.graph.initializer)


def test_same_estimator_gives_the_same_bytes() -> None:
    pipeline = _fit(
        make_pipeline(
            StandardScaler(),
            PCA(4, whiten=True),
            MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0),
        ),
        "binary",
    )
    first = emit.to_onnx(pipeline, batch_size=4).SerializeToString()
    assert emit.to_onnx(pipeline, batch_size=4).SerializeToString() == first
    copy = pickle.loads(pickle.dumps(pipeline))
    assert emit.to_onnx(copy, batch_size=4).SerializeToString() == first
    refit = clone(pipeline).fit(*_data("binary"))
    assert emit.to_onnx(refit, batch_size=4).SerializeToString() == first


def test_graph_layout_and_weights_are_initializers() -> None:
    mlp = _fit(MLPClassifier(hidden_layer_sizes=(7, 5), max_iter=30, random_state=0), "multiclass")
    model = emit.to_onnx(mlp, batch_size=3)
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["output"]
    dims = [
        [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.input, *graph.output)
    ]
    assert dims == [[3, 6], [3, 4]]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not [n for n in graph.node if n.op_type == "Constant"]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    np.testing.assert_array_equal(weights["layer1.weight"], mlp.coefs_[1].astype(np.float32))
    assert all(t.data_type == onnx.TensorProto.FLOAT and t.raw_data for t in graph.initializer)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_batch_size_is_static(batch_size: int) -> None:
    mlp = _fit(MLPRegressor(hidden_layer_sizes=(4,), max_iter=30, random_state=0), "multioutput")
    model = emit.to_onnx(mlp, batch_size=batch_size)
    X = _data("multioutput", seed=2)[0][:batch_size].astype(np.float32)
    assert_close(run_onnx(model, X), mlp.predict(X))
    wrong = np.zeros((batch_size + 1, 6), np.float32)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(model, wrong)


@pytest.mark.parametrize("opset", range(9, 20))
def test_every_supported_opset_checks_and_runs(opset: int) -> None:
    mlp = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0), "multiclass")
    model = emit.to_onnx(mlp, batch_size=N_SAMPLES, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import] == [opset]
    assert model.ir_version <= onnx.IR_VERSION
    X = _data("multiclass")[0].astype(np.float32)
    assert_close(run_onnx(model, X), mlp.predict_proba(X))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"opset": 8}, ValueError, "opset=8.*9..19"),
        ({"opset": 20}, ValueError, "opset=20.*9..19"),
        ({"opset": 13.0}, TypeError, "opset must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"batch_size": True}, TypeError, "batch_size must be an int"),
        ({"batch_size": "8"}, TypeError, "batch_size must be an int"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, error: type, match: str) -> None:
    model = _fit(Ridge(), "regression")
    with pytest.raises(error, match=match):
        emit.to_onnx(model, **kwargs)


def test_numpy_integer_arguments_are_accepted() -> None:
    model = emit.to_onnx(_fit(Ridge(), "regression"), batch_size=np.int64(2), opset=np.int32(11))
    assert model.opset_import[0].version == 11


@pytest.mark.parametrize(
    "estimator",
    [MLPClassifier(), LogisticRegression(), make_pipeline(StandardScaler(), MLPRegressor())],
    ids=["mlp", "logistic", "pipeline"],
)
def test_unfitted_estimators_raise_not_fitted(estimator: Any) -> None:
    with pytest.raises(emit.NotFittedError, match="not fitted.*fit"):
        emit.to_onnx(estimator)
    with pytest.raises(SklearnNotFittedError):
        emit.describe(estimator)


class _MyMLP(MLPClassifier):
    pass


def _fit_poisson_mlp() -> MLPRegressor:
    X, y = _data("regression")
    return MLPRegressor(loss="poisson", max_iter=5).fit(X, np.abs(y))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: _fit(RandomForestClassifier(n_estimators=2), "binary"),
            "cannot convert RandomForestClassifier.*MLPClassifier.*StandardScaler",
        ),
        (lambda: _fit(_MyMLP(max_iter=5), "binary"), "cannot convert _MyMLP"),
        (lambda: "not a model", "cannot convert str"),
        (lambda: _fit(StandardScaler(), "binary"), "StandardScaler is a preprocessing step"),
        (
            lambda: _fit(make_pipeline(PolynomialFeatures(), Ridge()), "regression"),
            "PolynomialFeatures.*supported preprocessing steps: MaxAbsScaler",
        ),
        (
            lambda: _fit(make_pipeline(StandardScaler(), PCA(2)), "regression"),
            "PCA is a preprocessing step",
        ),
        (
            lambda: _fit(make_pipeline(MinMaxScaler(clip=True), Ridge()), "regression"),
            r"MinMaxScaler\(clip=True\)",
        ),
        pytest.param(
            lambda: _fit(make_pipeline(MaxAbsScaler(clip=True), Ridge()), "regression"),
            r"MaxAbsScaler\(clip=True\)",
            marks=pytest.mark.skipif(SKLEARN < (1, 8), reason="MaxAbsScaler(clip) is 1.8+"),
        ),
        pytest.param(
            lambda: _fit_poisson_mlp(),
            "poisson.*'exp'",
            marks=pytest.mark.skipif(SKLEARN < (1, 7), reason="MLPRegressor(loss) is 1.7+"),
        ),
    ],
    ids=[
        "forest",
        "subclass",
        "str",
        "bare-scaler",
        "polynomial",
        "no-estimator",
        "minmax-clip",
        "maxabs-clip",
        "poisson",
    ],
)
def test_unsupported_models_raise_naming_what_is_supported(
    make: Callable[[], Any], match: str
) -> None:
    with pytest.raises(emit.UnsupportedModelError, match=match) as caught:
        emit.to_onnx(make())
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, emit.EmitError)


def test_describe_reports_classes_as_plain_python_values() -> None:
    X, y = _data("multiclass")
    names = np.array(["cat", "dog", "emu", "gnu"])[y]
    info = emit.describe(LogisticRegression().fit(X, names))
    assert info == {
        "task": "classifier",
        "outputs": "probabilities",
        "classes": ["cat", "dog", "emu", "gnu"],
        "n_outputs": 4,
        "n_features_in": 6,
    }
    assert all(type(c) is str for c in info["classes"])
    flags = emit.describe(LinearSVC().fit(X[:, :3], y > 1))
    assert flags["classes"] == [False, True] and type(flags["classes"][0]) is bool
    assert flags["n_outputs"] == 2 and flags["n_features_in"] == 3
    regressor = emit.describe(_fit(Ridge(), "multioutput"))
    assert regressor == {
        "task": "regressor",
        "outputs": "values",
        "classes": None,
        "n_outputs": 3,
        "n_features_in": 6,
    }


def test_registering_a_converter_adds_an_estimator() -> None:
    from emit.network import Dense, Network, OutputSpec

    class Doubler(BaseEstimator):
        def fit(self, X: np.ndarray) -> Doubler:
            self.n_features_in_ = X.shape[1]
            return self

    @emit.register(Doubler)
    def convert_doubler(model: Doubler) -> Network:
        spec = OutputSpec(task="regressor", outputs="values", classes=None, n_outputs=2)
        n = model.n_features_in_
        return Network(layers=(Dense(2 * np.eye(n), np.zeros(n), "identity"),), spec=spec)

    assert "Doubler" in emit.supported()["estimators"]
    with pytest.raises(emit.NotFittedError):
        emit.to_onnx(Doubler())
    model = emit.to_onnx(Doubler().fit(np.zeros((1, 2))))
    np.testing.assert_array_equal(run_onnx(model, np.array([[1.5, -2]], np.float32)), [[3, -4]])
    with pytest.raises(ValueError, match="already registered"):
        emit.register(Doubler)(convert_doubler)


def test_supported_lists_every_family() -> None:
    listed = emit.supported()
    assert {
        "MLPClassifier",
        "MLPRegressor",
        "LogisticRegression",
        "LinearSVC",
        "LinearSVR",
        "SGDClassifier",
        "SGDRegressor",
        "LinearRegression",
        "Ridge",
        "Lasso",
        "ElasticNet",
        "Pipeline",
    } <= set(listed["estimators"])
    assert listed["preprocessing"] == [
        "MaxAbsScaler",
        "MinMaxScaler",
        "PCA",
        "RobustScaler",
        "StandardScaler",
    ]
    assert listed["board"] == [
        "ColumnTransformer",
        "OneHotEncoder",
        "OrdinalEncoder",
        "SimpleImputer",
    ]
