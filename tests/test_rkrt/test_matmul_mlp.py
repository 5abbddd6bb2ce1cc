"""MLPs from their weights alone (emit.export_weights -> rkrt.weights_mlp) vs scikit-learn."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from emit.weights import export_weights
from rkrt.weights_mlp import WeightsMLPClassifier, WeightsMLPRegressor, from_weights

# float16 weights and activations move probabilities by well under 1e-2 on these models.
PROBA_ATOL = 1e-2


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _agreeing_labels(proba: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> None:
    """Labels must match wherever scikit-learn's top two classes differ by more than fp16 noise."""
    top = np.sort(proba, axis=1)
    clear = (top[:, -1] - top[:, -2]) > 2 * PROBA_ATOL
    assert clear.mean() > 0.9  # the comparison covers most rows
    np.testing.assert_array_equal(ours[clear], theirs[clear])


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_multiclass_classifier_matches_sklearn(rt, tmp_path: Path, activation: str) -> None:
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    model = MLPClassifier(
        hidden_layer_sizes=(30, 20), activation=activation, max_iter=300, random_state=0
    )
    clf = _fit(model, X, names[y])
    path = export_weights(clf, tmp_path / "iris.npz")
    with from_weights(path, batch_sizes=(1, 16)) as npu:
        assert isinstance(npu, WeightsMLPClassifier)
        assert repr(npu) == f"WeightsMLPClassifier.from_weights({path!r})"
        assert npu.batch_sizes == (16, 1)
        np.testing.assert_array_equal(npu.classes_, clf.classes_)
        proba = npu.predict_proba(X)
        ref = clf.predict_proba(X)
        np.testing.assert_allclose(proba, ref, atol=PROBA_ATOL)
        _agreeing_labels(ref, npu.predict(X), clf.predict(X))
        # Rows are independent of the chunking: one row at a time gives the same numbers.
        np.testing.assert_allclose(npu.predict_proba(X[:5]), proba[:5], rtol=0, atol=0)


def test_binary_and_wide_inputs(rt, tmp_path: Path) -> None:
    X, y = make_classification(300, n_features=70, n_informative=20, random_state=1)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(50,), max_iter=200, random_state=1), X, y == 1)
    with from_weights(export_weights(clf, tmp_path / "bin.npz")) as npu:
        proba = npu.predict_proba(X)
        assert proba.shape == (300, 2)
        np.testing.assert_allclose(proba, clf.predict_proba(X), atol=PROBA_ATOL)
        _agreeing_labels(clf.predict_proba(X), npu.predict(X), clf.predict(X))
        assert npu.predict(X).dtype == clf.predict(X).dtype


def test_multilabel(rt, tmp_path: Path) -> None:
    X, Y = make_multilabel_classification(200, n_features=12, n_classes=4, random_state=2)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(40,), max_iter=300, random_state=2), X, Y)
    with from_weights(export_weights(clf, tmp_path / "ml.npz")) as npu:
        proba = npu.predict_proba(X)
        ref = clf.predict_proba(X)
        np.testing.assert_allclose(proba, ref, atol=PROBA_ATOL)
        clear = np.abs(ref - 0.5) > 2 * PROBA_ATOL
        np.testing.assert_array_equal(npu.predict(X)[clear], clf.predict(X)[clear])


def test_regressor(rt, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 8))
    y = X @ rng.normal(size=(8, 2)) + 0.1 * rng.normal(size=(150, 2))
    reg = _fit(MLPRegressor(hidden_layer_sizes=(32, 16), max_iter=500, random_state=3), X, y)
    with from_weights(export_weights(reg, tmp_path / "reg.npz")) as npu:
        assert isinstance(npu, WeightsMLPRegressor)
        pred = npu.predict(X)
        ref = reg.predict(X)
        assert pred.shape == ref.shape
        scale = np.abs(ref).max()
        np.testing.assert_allclose(pred, ref, atol=5e-3 * scale)


def test_input_validation_is_the_compiled_paths(rt, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0), X, y)
    with from_weights(export_weights(clf, tmp_path / "v.npz")) as npu:
        with pytest.raises(ValueError, match="X has 3 features, but WeightsMLPClassifier is "
                                             "expecting 4 features"):  # fmt: skip
            npu.predict(X[:, :3])
        with pytest.raises(ValueError, match="NaN"):
            npu.predict(np.full((2, 4), np.nan))
        assert npu.predict(X.astype(np.int64)).shape == (150,)
        assert npu.predict(X[:0]).shape == (0,)


def test_export_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from emit.errors import NotFittedError, UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="MLPClassifier or MLPRegressor"):
        export_weights(LogisticRegression(), tmp_path / "x.npz")
    with pytest.raises(NotFittedError):
        export_weights(MLPClassifier(), tmp_path / "x.npz")


def test_weights_file_holds_no_pickle_and_is_checked(rt, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0), X, y)
    path = export_weights(clf, tmp_path / "w.npz")
    with np.load(path, allow_pickle=False) as z:  # would raise on an object array
        assert {"coef_0", "coef_1", "intercept_0", "intercept_1", "metadata"} <= set(z.files)
        arrays = dict(z)
    arrays["coef_1"] = arrays["coef_1"][:5]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="layer 1 has coef"):
        from_weights(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not an rkrt weights file"):
        from_weights(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="from_weights"):
        WeightsMLPRegressor(path)


def test_rkrt_sklearn_from_weights_is_the_same_estimator(rt, tmp_path: Path) -> None:
    from rkrt import sklearn as board

    X, y = load_iris(return_X_y=True)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=4), X, y)
    path = export_weights(clf, tmp_path / "iris.npz")
    with board.from_weights(path, batch_sizes=(1, 8)) as a, from_weights(path) as b:
        assert isinstance(a, WeightsMLPClassifier)
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
