"""rkrt.sklearn on the test-double runtime: fitted scikit-learn models, converted by emit.

Each model is built from emit's own lowering of a real fitted estimator (the dense layers
its ONNX graph holds: softmax for multiclass, a [-z, z] head for binary, a sigmoid per label
for multilabel, identity for regression and decision values), then compared with
scikit-learn's own answers.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import sklearn
from fake_rknnrt import Dense, FakeModel
from sklearn.datasets import (
    load_iris,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.svm import LinearSVC

import rkrt.sklearn as rks
from emit.converters import lower
from rkrt.errors import ClosedError
from rkrt.metadata import MetadataError, ModelMetadata, sidecar_path, write_sidecar

_ACT = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
REPO = Path(__file__).resolve().parents[2]


# --- fitted estimators -------------------------------------------------------------
def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@functools.cache
def fitted(name: str):
    """(estimator, X) for a named case; fitted once per test session."""
    iris = load_iris()
    if name == "multiclass_str":  # iris, string labels
        X, y = iris.data, iris.target_names[iris.target]
        est = SkMLPClassifier(
            hidden_layer_sizes=(16,), activation="relu", max_iter=400, random_state=0
        )
    elif name == "multiclass_int":
        X, y = make_classification(300, 6, n_informative=4, n_classes=4, random_state=1)
        y = np.array([3, 7, 11, 42])[y]
        est = SkMLPClassifier(
            hidden_layer_sizes=(12, 8), activation="tanh", max_iter=300, random_state=0
        )
    elif name == "binary_bool":
        X, y = make_classification(200, 5, random_state=2)
        est = SkMLPClassifier(
            hidden_layer_sizes=(10,), activation="logistic", max_iter=300, random_state=0
        )
        y = y.astype(bool)
    elif name == "multilabel":
        X, y = make_multilabel_classification(200, 8, n_classes=3, random_state=3)
        est = SkMLPClassifier(
            hidden_layer_sizes=(16,), activation="identity", max_iter=300, random_state=0
        )
    elif name == "regressor":
        X, y = make_regression(200, 5, noise=0.1, random_state=4)
        est = SkMLPRegressor(
            hidden_layer_sizes=(16,), activation="relu", max_iter=500, random_state=0
        )
    elif name == "regressor_multi":
        X, y = make_regression(200, 5, n_targets=3, noise=0.1, random_state=5)
        est = SkMLPRegressor(
            hidden_layer_sizes=(16,), activation="tanh", max_iter=500, random_state=0
        )
    elif name == "svc_binary_float":
        X, y = make_classification(200, 4, random_state=6)
        y = np.array([-1.0, 3.0])[y]  # integral floats: scikit-learn takes them as labels
        est = LinearSVC(random_state=0)
    elif name == "svc_multiclass":
        X, y = iris.data, iris.target
        est = LinearSVC(random_state=0)
    elif name == "dataframe":
        X = pd.DataFrame(iris.data, columns=["sl", "sw", "pl", "pw"])
        y = iris.target
        est = SkMLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    else:
        raise KeyError(name)
    return _fit(est, X, y), X


def network(est) -> tuple[list[Dense], str, str, tuple | None]:
    """Dense layers, task, outputs and classes: emit's own lowering of `est`."""
    lowered = lower(est).astype(np.float32)
    layers = [Dense(layer.weight, layer.bias, layer.activation) for layer in lowered.layers]
    spec = lowered.spec
    return layers, spec.task, spec.outputs, spec.classes


def metadata_of(est, batch_sizes) -> ModelMetadata:
    _, task, outputs, classes = network(est)
    names = getattr(est, "feature_names_in_", None)
    return ModelMetadata(
        task=task, outputs=outputs, n_features_in=est.n_features_in_, classes=classes,
        feature_names_in=None if names is None else tuple(names), batch_sizes=batch_sizes,
        target_platform="rk3588", estimator=type(est).__name__,
        versions={"scikit-learn": sklearn.__version__},
    )  # fmt: skip


def convert(est, path: Path, *, dtype="float32", batch_sizes=(1, 8, 32), sidecar=True,
            custom_string="") -> Path:  # fmt: skip
    """Write the model (and, with `sidecar`, its sidecar) for `est` at `path`."""
    layers = network(est)[0]
    FakeModel(layers, dtype=dtype, batch_sizes=batch_sizes, custom_string=custom_string).save(path)
    if sidecar:
        write_sidecar(path, metadata_of(est, batch_sizes))
    return path


def as_array(X) -> np.ndarray:
    return np.asarray(X, dtype=np.float64)


# --- agreement with scikit-learn ----------------------------------------------------
@pytest.mark.parametrize(
    "name, label_type",
    [("multiclass_str", np.str_), ("multiclass_int", np.integer), ("binary_bool", np.bool_),
     ("svc_binary_float", np.floating), ("svc_multiclass", np.integer)],
)  # fmt: skip
def test_classifier_matches_scikit_learn(rt, tmp_path, name, label_type):
    est, X = fitted(name)
    with rks.load(convert(est, tmp_path / "m.rknn")) as clf:
        assert isinstance(clf, rks.MLPClassifier)
        pred = clf.predict(X)
        np.testing.assert_array_equal(pred, est.predict(X))
        assert np.issubdtype(pred.dtype, label_type)
        np.testing.assert_array_equal(clf.classes_, est.classes_)
        assert clf.n_features_in_ == est.n_features_in_
        if hasattr(est, "predict_proba"):
            assert not hasattr(clf, "decision_function")
            np.testing.assert_allclose(clf.predict_proba(X), est.predict_proba(X), atol=1e-5)
        else:
            assert not hasattr(clf, "predict_proba")
            np.testing.assert_allclose(
                clf.decision_function(X), est.decision_function(X), rtol=1e-5, atol=1e-5
            )


def test_multilabel_returns_indicator_array(rt, tmp_path):
    est, X = fitted("multilabel")
    with rks.load(convert(est, tmp_path / "m.rknn")) as clf:
        pred = clf.predict(X)
        expected = est.predict(X)
        assert pred.shape == expected.shape == (len(X), 3)
        assert pred.dtype.kind == "i" and set(np.unique(pred)) <= {0, 1}
        np.testing.assert_array_equal(pred, expected)
        np.testing.assert_allclose(clf.predict_proba(X), est.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("name", ["regressor", "regressor_multi"])
def test_regressor_matches_scikit_learn(rt, tmp_path, name):
    est, X = fitted(name)
    with rks.load(convert(est, tmp_path / "m.rknn")) as reg:
        assert isinstance(reg, rks.MLPRegressor)
        pred = reg.predict(X)
        expected = est.predict(X)
        assert pred.shape == expected.shape
        np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-3)


def test_float16_model_agrees_within_fp16_precision(rt, tmp_path):
    est, X = fitted("multiclass_str")
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn", dtype="float16")) as clf:
        agreement = np.mean(clf.predict(X) == est.predict(X))
        assert agreement >= 0.99
        assert np.abs(clf.predict_proba(X) - est.predict_proba(X)).max() <= 1e-2


# --- any number of rows ------------------------------------------------------------
def _row_at_a_time(fn, X: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(X[i : i + 1]) for i in range(len(X))])


@pytest.mark.parametrize("n_rows", [0, 1, 7, 8, 9, 31, 32, 33, 1000])
def test_any_number_of_rows_equals_row_at_a_time(rt, tmp_path, n_rows):
    est, _ = fitted("multiclass_int")
    X = np.random.default_rng(n_rows).normal(size=(n_rows, est.n_features_in_))
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn", dtype="float16")) as clf:
        proba = clf.predict_proba(X)
        assert proba.shape == (n_rows, 4) and proba.dtype == np.float32
        labels = clf.predict(X)
        assert labels.shape == (n_rows,) and labels.dtype == clf.classes_.dtype
        if n_rows:
            np.testing.assert_array_equal(proba, _row_at_a_time(clf.predict_proba, X))
            np.testing.assert_array_equal(labels, _row_at_a_time(clf.predict, X))
            np.testing.assert_array_equal(labels, clf.classes_[np.argmax(proba, axis=1)])


@pytest.mark.parametrize(
    "batch_sizes, n_rows, expected_runs",
    [((1, 8, 32), 1000, 32), ((1, 8, 32), 33, 2), ((1, 8, 32), 9, 1), ((8,), 13, 2),
     ((1,), 5, 5), ((8, 32), 0, 0)],
)  # fmt: skip
def test_chunking_over_compiled_sizes(rt, tmp_path, batch_sizes, n_rows, expected_runs):
    est, _ = fitted("regressor")
    X = np.random.default_rng(0).normal(size=(n_rows, 5))
    with rks.MLPRegressor(convert(est, tmp_path / "m.rknn", batch_sizes=batch_sizes)) as reg:
        assert reg.batch_sizes == tuple(sorted(batch_sizes, reverse=True))
        before = rt.calls("rknn_run")
        pred = reg.predict(X)
        assert rt.calls("rknn_run") - before == expected_runs
        assert pred.shape == (n_rows,)
        if n_rows:
            np.testing.assert_array_equal(pred, _row_at_a_time(reg.predict, X))
            np.testing.assert_allclose(pred, est.predict(X), rtol=1e-4, atol=1e-3)
    assert rt.counter("size_mismatch") == 0


def test_plan_batches():
    assert rks.plan_batches(0, (1, 8, 32)) == []
    assert rks.plan_batches(70, (1, 8, 32)) == [(0, 32), (32, 32), (64, 8)]
    assert rks.plan_batches(65, (32, 8, 1)) == [(0, 32), (32, 32), (64, 1)]
    assert rks.plan_batches(3, (8,)) == [(0, 8)]


def test_repeated_calls_identical_and_no_state_change(rt, tmp_path):
    est, X = fitted("multiclass_str")
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn", dtype="float16")) as clf:
        state = dict(vars(clf))
        first = clf.predict_proba(X)
        for other in (X[:3], X[:1], X[:0], X[:40]):  # interleave other shapes
            clf.predict(other)
        for _ in range(3):
            np.testing.assert_array_equal(clf.predict_proba(X), first)
            assert clf.predict(X).shape == (len(X),)
        assert vars(clf) == state


# --- inputs like scikit-learn --------------------------------------------------------
def test_lists_ints_float64_and_float16_accepted(rt, tmp_path):
    est, X = fitted("multiclass_str")
    X = as_array(X)
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn")) as clf:
        expected = clf.predict_proba(X.astype(np.float32))
        np.testing.assert_array_equal(clf.predict_proba(X.tolist()), expected)
        np.testing.assert_array_equal(clf.predict_proba(X), expected)
        X_int = np.rint(X).astype(np.int64)
        np.testing.assert_array_equal(
            clf.predict_proba(X_int), clf.predict_proba(X_int.astype(np.float32))
        )
        np.testing.assert_array_equal(clf.predict_proba(np.asfortranarray(X[::2])), expected[::2])


_BAD_INPUTS = [
    ("1-D", lambda X: X[0], ValueError, "Expected 2D array, got 1D array"),
    ("scalar", lambda X: X[0, 0], ValueError, "Expected 2D array, got scalar array"),
    ("3-D", lambda X: X[None], ValueError, "Found array with dim 3"),
    ("features", lambda X: X[:, :3], ValueError, "X has 3 features, but .* is expecting 4"),
    ("nan", lambda X: np.where(X[0, 0] == X, np.nan, X), ValueError, "contains NaN"),
    ("inf", lambda X: np.where(X[0, 0] == X, np.inf, X), ValueError, "infinity"),
    ("strings", lambda X: np.full(X.shape, "abc"), ValueError, "could not convert"),
    ("complex", lambda X: X + 1j, ValueError, "Complex data not supported"),
    ("sparse", lambda X: scipy.sparse.csr_matrix(X), TypeError, "sparse"),
]


@pytest.mark.parametrize("make, error, message", [b[1:] for b in _BAD_INPUTS],
                         ids=[b[0] for b in _BAD_INPUTS])  # fmt: skip
def test_bad_inputs_raise_like_scikit_learn(rt, tmp_path, make, error, message):
    est, X = fitted("multiclass_str")
    bad = make(as_array(X))
    if error is ValueError:  # scikit-learn raises the same kind for the same input
        with pytest.raises(ValueError):
            est.predict(bad)
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn")) as clf:
        before = rt.calls("rknn_run")
        for method in (clf.predict, clf.predict_proba):
            with pytest.raises(error, match=message):
                method(bad)
        assert rt.calls("rknn_run") == before


def test_value_too_large_for_float32_raises(rt, tmp_path):
    est, X = fitted("multiclass_str")
    bad = as_array(X).copy()
    bad[3, 1] = 1e39
    with (
        rks.MLPClassifier(convert(est, tmp_path / "m.rknn")) as clf,
        pytest.raises(ValueError, match="too large for dtype"),
    ):
        clf.predict(bad)


def test_dataframe_feature_names(rt, tmp_path):
    est, X = fitted("dataframe")
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn")) as clf:
        np.testing.assert_array_equal(clf.feature_names_in_, est.feature_names_in_)
        np.testing.assert_array_equal(clf.predict(X), est.predict(X))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            clf.predict(X)  # matching names: no warning
        other = X.rename(columns={"pw": "petal_width"})
        for model in (est, clf):
            with pytest.raises(ValueError, match="names unseen at fit time:\n- petal_width"):
                model.predict(other)
        with pytest.raises(ValueError, match="must be in the same order"):
            clf.predict(X[["sw", "sl", "pl", "pw"]])
        for model in (est, clf):
            with pytest.warns(UserWarning, match="X does not have valid feature names"):
                model.predict(X.to_numpy())


def test_dataframe_on_model_fitted_without_names_warns(rt, tmp_path):
    est, X = fitted("multiclass_str")
    df = pd.DataFrame(X, columns=list("abcd"))
    with rks.MLPClassifier(convert(est, tmp_path / "m.rknn")) as clf:
        with pytest.raises(AttributeError, match="without feature names"):
            clf.feature_names_in_  # noqa: B018
        assert not hasattr(est, "feature_names_in_")
        for model in (est, clf):
            with pytest.warns(UserWarning, match="X has feature names, but"):
                model.predict(df)
        with pytest.warns(UserWarning):
            np.testing.assert_array_equal(clf.predict(df), est.predict(X))


# --- where the metadata comes from ---------------------------------------------------
def test_custom_string_fallback_without_sidecar(rt, tmp_path):
    est, X = fitted("binary_bool")
    text = metadata_of(est, (1, 8, 32)).to_custom_string()
    path = convert(est, tmp_path / "m.rknn", sidecar=False, custom_string=text)
    assert not Path(sidecar_path(path)).exists()
    with rks.load(path) as clf:
        np.testing.assert_array_equal(clf.predict(X), est.predict(X))
        assert clf.metadata.estimator == "MLPClassifier"


def test_sidecar_wins_over_custom_string(rt, tmp_path):
    est, X = fitted("multiclass_int")
    path = convert(est, tmp_path / "m.rknn", custom_string="not json at all")
    with rks.load(path) as clf:
        np.testing.assert_array_equal(clf.predict(X), est.predict(X))


@pytest.mark.parametrize(
    "custom_string, message",
    [("", "no sidecar at .*m.rknn.json and the model's custom string is empty"),
     ("built by alice", "custom string of .*m.rknn: not valid JSON"),
     ('{"format": "rkrt-model", "schema_version": 7}', "schema_version is 7")],
)  # fmt: skip
def test_unusable_custom_string_without_sidecar(rt, tmp_path, custom_string, message):
    est, _ = fitted("multiclass_int")
    path = convert(est, tmp_path / "m.rknn", sidecar=False, custom_string=custom_string)
    with pytest.raises(MetadataError, match=message):
        rks.load(path)


def test_sha_mismatch_fails_before_opening(rt, tmp_path):
    est, _ = fitted("multiclass_int")
    path = convert(est, tmp_path / "m.rknn")
    other, _ = fitted("multiclass_str")
    FakeModel(network(other)[0], dtype="float32").save(path)  # re-export, old sidecar kept
    with pytest.raises(MetadataError, match="m.rknn.json: sidecar records sha256"):
        rks.load(path)
    assert rt.calls("rknn_init") == 0


@pytest.mark.parametrize(
    "edit, message",
    [(lambda d: d.update(schema_version=2), "schema_version is 2"),
     (lambda d: d.pop("classes"), "missing key.*classes"),
     (lambda d: d.update(n_features_in="6"), "n_features_in must be a positive int")],
)  # fmt: skip
def test_bad_sidecar_names_the_file(rt, tmp_path, edit, message):
    est, _ = fitted("multiclass_int")
    path = convert(est, tmp_path / "m.rknn")
    data = json.loads(Path(sidecar_path(path)).read_text())
    edit(data)
    Path(sidecar_path(path)).write_text(json.dumps(data))
    with pytest.raises(MetadataError, match=f"{tmp_path / 'm.rknn.json'}: .*{message}"):
        rks.MLPClassifier(path)


def test_metadata_of_another_model_is_refused(rt, tmp_path):
    est, _ = fitted("multiclass_int")  # 6 features, 4 classes
    path = convert(est, tmp_path / "m.rknn")
    other, _ = fitted("multiclass_str")  # 4 features, 3 classes
    Path(sidecar_path(path)).write_text(metadata_of(other, (1,)).to_json())  # no sha
    with pytest.raises(MetadataError, match="says 4 features but the model's input is"):
        rks.load(path)
    meta = ModelMetadata(task="classifier", outputs="probabilities", n_features_in=6,
                         classes=("a", "b", "c"))  # fmt: skip
    Path(sidecar_path(path)).write_text(meta.to_json())
    with pytest.raises(MetadataError, match="lists 3 classes but the model outputs 4"):
        rks.load(path)


def test_wrong_estimator_class_is_refused_and_closed(rt, tmp_path):
    est, _ = fitted("regressor")
    path = convert(est, tmp_path / "m.rknn")
    with pytest.raises(ValueError, match="is a regressor .*use rkrt.sklearn.MLPRegressor"):
        rks.MLPClassifier(path)
    clf_path = convert(fitted("multiclass_int")[0], tmp_path / "c.rknn")
    with pytest.raises(ValueError, match="is a classifier .*use rkrt.sklearn.MLPClassifier"):
        rks.MLPRegressor(clf_path)
    assert rt.live()["contexts"] == 0


def test_close_and_context_manager(rt, tmp_path):
    est, X = fitted("regressor")
    reg = rks.MLPRegressor(convert(est, tmp_path / "m.rknn"))
    assert rt.live()["contexts"] == 1
    reg.predict(X[:2])
    reg.close()
    reg.close()
    assert rt.live()["contexts"] == 0
    with pytest.raises(ClosedError):
        reg.predict(X[:2])
    with rks.MLPRegressor(tmp_path / "m.rknn") as reg2:
        assert rt.live()["contexts"] == 1
        assert repr(reg2) == f"MLPRegressor({str(tmp_path / 'm.rknn')!r})"
    assert rt.live()["contexts"] == 0


# --- scirknn users -------------------------------------------------------------------
def _scirknn_convert(est, path: Path, batch=1) -> Path:
    """A model and sidecar as scirknn writes them: one sigmoid column for binary models."""
    layers = [Dense(w, b, _ACT[est.activation]) for w, b in zip(est.coefs_, est.intercepts_)]
    out = {"identity": "identity", "softmax": "softmax", "logistic": "sigmoid"}
    layers[-1] = Dense(est.coefs_[-1], est.intercepts_[-1], out[est.out_activation_])
    FakeModel(layers, dtype="float16", batch_sizes=(batch,)).save(path)
    meta = {"input_shape": [batch, est.n_features_in_], "output_shape": [batch, est.n_outputs_]}
    if hasattr(est, "classes_"):
        meta.update(classes=est.classes_.tolist(), mode="classifier")
    else:
        meta.update(mode="regressor")
    Path(str(path) + ".json").write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("name", ["binary_bool", "multiclass_str", "regressor"])
def test_scirknn_sidecars_read(rt, tmp_path, name):
    est, X = fitted(name)
    path = _scirknn_convert(est, tmp_path / "m.rknn", batch=4)
    with rks.load(path) as model:
        pred = model.predict(X[:13])  # not a multiple of the compiled 4: scirknn asserted
        if name == "regressor":
            np.testing.assert_allclose(pred, est.predict(X[:13]), rtol=1e-2, atol=0.5)
        else:
            assert np.mean(pred == est.predict(X[:13])) >= 12 / 13
            proba = model.predict_proba(X[:13])
            assert proba.shape == (13, len(est.classes_))
            np.testing.assert_allclose(proba, est.predict_proba(X[:13]), atol=1e-2)


SCIRKNN_PROGRAM = """
import sys
import numpy as np
from rkrt import sklearn as scirknn   # was: import scirknn

model = scirknn.MLPClassifier(sys.argv[1])
x = np.load(sys.argv[2])
pred = model.predict(x)
print(" ".join(str(p) for p in pred))
"""


def test_scirknn_program_switches_with_one_import_and_no_sklearn(rt, tmp_path):
    est, X = fitted("multiclass_str")
    path = _scirknn_convert(est, tmp_path / "m.rknn")
    np.save(tmp_path / "x.npy", as_array(X)[:20])
    program = tmp_path / "infer.py"
    # The board has neither scikit-learn nor pandas: make importing them fail.
    program.write_text("import sys\nsys.modules['sklearn'] = None\nsys.modules['pandas'] = None\n"
                       + SCIRKNN_PROGRAM)  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(program), str(path), str(tmp_path / "x.npy")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert np.mean(np.array(printed) == est.predict(X[:20])) >= 0.95
