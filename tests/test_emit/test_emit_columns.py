"""Board-side preparation + NPU graph on onnxruntime equals scikit-learn on the raw rows.

Random ColumnTransformer/imputer/encoder configurations over DataFrames with NaN, None,
unseen categories and mixed dtypes (tests/tabular_support.py), the new affine estimators,
and the steps emit still refuses.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Callable

import numpy as np
import onnx
import pandas as pd
import pytest
from emit_support import ALLOWED_OPS, assert_close, run_onnx, sklearn_outputs
from hypothesis import HealthCheck, given, settings
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    GammaRegressor,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from tabular_support import (
    AFFINE,
    SKLEARN,
    Case,
    cases,
    fit_affine,
    fitted,
    frame_pipeline,
    quietly,
    regression,
)

import emit
from rkrt.metadata import Preparation


def _graph_on_prepared(estimator: Any, X: Any) -> np.ndarray:
    preparation = emit.to_preparation(estimator)
    model = emit.to_onnx(estimator, batch_size=len(X))
    onnx.checker.check_model(model)
    assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
    prepared = preparation.transform(X)
    assert prepared.dtype == np.float32 and prepared.flags.c_contiguous
    return run_onnx(model, prepared)


# --- random pipelines ----------------------------------------------------------------
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(case=cases())
def test_preparation_and_graph_equal_scikit_learn(case: Case) -> None:
    estimator, _, X_test = fitted(case)
    expected = quietly(sklearn_outputs, estimator, X_test)
    assert_close(quietly(_graph_on_prepared, estimator, X_test), expected)
    # The JSON description prepares the same rows as the object it was written from.
    preparation = emit.to_preparation(estimator)
    again = Preparation.from_dict(json.loads(json.dumps(preparation.to_dict())))
    assert again == preparation
    np.testing.assert_array_equal(
        quietly(again.transform, X_test), quietly(preparation.transform, X_test)
    )


# --- scikit-learn's input semantics --------------------------------------------------------
def test_dataframe_columns_are_taken_by_name_extra_ones_ignored() -> None:
    estimator, X = frame_pipeline()
    preparation = emit.to_preparation(estimator)
    shuffled = X[["kids", "city", "age"]].assign(unused=1)
    np.testing.assert_array_equal(preparation.transform(shuffled), preparation.transform(X))
    assert_close(_graph_on_prepared(estimator, shuffled), estimator.predict(shuffled)[:, None])


def test_missing_column_raises_as_scikit_learn() -> None:
    estimator, X = frame_pipeline()
    preparation = emit.to_preparation(estimator)
    with pytest.raises(ValueError, match="columns are missing") as ours:
        preparation.transform(X.drop(columns="city"))
    with pytest.raises(ValueError, match="columns are missing") as theirs:
        estimator.predict(X.drop(columns="city"))
    assert str(ours.value) == str(theirs.value)


def test_unknown_category_raises_when_the_encoder_does() -> None:
    estimator, X = frame_pipeline()
    unseen = X.assign(city=["paris"] + list(X["city"][1:]))
    with pytest.raises(ValueError, match=r"Found unknown categories \['paris'\] in column 0"):
        estimator.predict(unseen)
    with pytest.raises(ValueError, match=r"Found unknown categories \['paris'\] in column 0"):
        emit.to_preparation(estimator).transform(unseen)


@pytest.mark.skipif(SKLEARN < (1, 6), reason="handle_unknown='warn' is scikit-learn 1.6+")
def test_handle_unknown_warn_warns_as_scikit_learn() -> None:
    X = pd.DataFrame({"k": ["u", "u", "u", "v", "w", "w", "w"]})
    encoder = OneHotEncoder(handle_unknown="warn", min_frequency=2)
    estimator = make_pipeline(encoder, Ridge()).fit(X, np.arange(7.0))
    unseen = pd.DataFrame({"k": ["z", "u"]})
    message = r"Found unknown categories in columns \[0\] during transform"
    with pytest.warns(UserWarning, match=message):
        expected = estimator.predict(unseen)
    with pytest.warns(UserWarning, match=message):
        got = _graph_on_prepared(estimator, unseen)
    assert_close(got, expected[:, None])


def test_array_input_selects_by_position_and_warns_about_names() -> None:
    estimator, X = frame_pipeline()
    preparation = emit.to_preparation(estimator)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = preparation.transform(X.to_numpy(dtype=object))
    np.testing.assert_array_equal(from_array, preparation.transform(X))
    with (
        pytest.warns(UserWarning, match="does not have valid feature names"),
        pytest.raises(ValueError, match="X has 2 features, but Pipeline is expecting 3"),
    ):
        preparation.transform(X.to_numpy(dtype=object)[:, :2])


def test_first_step_imputer_checks_names_exactly() -> None:
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [0.5, 1.5, np.nan, 2.0]})
    estimator = make_pipeline(SimpleImputer(add_indicator=True), Ridge()).fit(X, [1, 2, 3, 4])
    preparation = emit.to_preparation(estimator)
    assert_close(_graph_on_prepared(estimator, X), estimator.predict(X)[:, None])
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        preparation.transform(X[["b", "a"]])


def test_check_numerics_prepares_the_example_rows() -> None:
    estimator, X = frame_pipeline()
    emit.check_numerics(estimator, X)  # a DataFrame with strings and NaN: prepared first
    with pytest.raises(emit.Float16RangeError, match="the input reaches 1e\\+06"):
        emit.check_numerics(estimator, X.assign(kids=1e6))


def test_pipeline_without_board_steps_has_no_preparation() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    assert emit.to_preparation(make_pipeline(StandardScaler(), Ridge()).fit(X, X[:, 0])) is None


def test_transformer_weights_and_nested_pipelines_are_folded() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30) * 4,
                      "k": rng.choice(["u", "v", "w"], 30)})  # fmt: skip
    ct = ColumnTransformer(
        [("scaled", make_pipeline(StandardScaler(), MinMaxScaler()), ["a", "b"]),
         ("k", make_pipeline(OrdinalEncoder(), RobustScaler()), ["k"])],
        transformer_weights={"scaled": 2.5, "k": 0.5},
    )  # fmt: skip
    estimator = make_pipeline(ct, StandardScaler(), LogisticRegression()).fit(X, X["a"] > 0)
    assert_close(_graph_on_prepared(estimator, X), estimator.predict_proba(X))


# --- the rest of the linear family ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(AFFINE))
def test_affine_estimator_equals_scikit_learn(name: str) -> None:
    estimator, X = fit_affine(name)
    model = emit.to_onnx(estimator, batch_size=len(X))
    assert {node.op_type for node in model.graph.node} <= ALLOWED_OPS
    assert_close(run_onnx(model, X.astype(np.float32)), sklearn_outputs(estimator, X))


def test_multilabel_ridge_classifier_thresholds_decisions_at_zero() -> None:
    X, y = regression()
    Y = np.stack([y > 0, y > 1, X[:, 2] > 0], axis=1).astype(int)
    estimator = RidgeClassifier().fit(X, Y)
    assert emit.describe(estimator)["task"] == "multilabel"
    got = run_onnx(emit.to_onnx(estimator, batch_size=len(X)), X.astype(np.float32))
    assert_close(got, estimator.decision_function(X))
    np.testing.assert_array_equal((got > 0).astype(int), estimator.predict(X))


# --- what emit refuses ------------------------------------------------------------------
def _positive() -> tuple[np.ndarray, np.ndarray]:
    X, y = regression()
    return X, np.exp(0.3 * y)


def _ct_with(step: Any) -> Any:
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "k": ["u", "v", "u", "v"]})
    ct = ColumnTransformer([("a", step, ["a"]), ("k", OneHotEncoder(), ["k"])])
    return make_pipeline(ct, Ridge()).fit(X, [1.0, 2.0, 3.0, 4.0])


REFUSED: dict[str, tuple[Callable[[], Any], str]] = {
    "function-transformer-branch": (
        lambda: _ct_with(FunctionTransformer(np.log1p)),
        "FunctionTransformer.*supported preprocessing steps: .*RobustScaler.*ColumnTransformer",
    ),
    "polynomial-branch": (
        lambda: _ct_with(PolynomialFeatures()),
        "PolynomialFeatures.*supported preprocessing steps",
    ),
    "tree-after-columns": (
        lambda: make_pipeline(
            ColumnTransformer([("k", OneHotEncoder(), [0])]), RandomForestClassifier(2)
        ).fit(np.array([["u"], ["v"], ["u"]], dtype=object), [0, 1, 0]),
        "cannot convert RandomForestClassifier.*LogisticRegression.*after.*OneHotEncoder",
    ),
    "encoder-after-scaler": (
        lambda: make_pipeline(StandardScaler(), SimpleImputer(), Ridge()).fit(*regression()),
        "SimpleImputer comes after the affine step StandardScaler",
    ),
    "imputer-missing-values": (
        lambda: make_pipeline(SimpleImputer(missing_values=-1.0), Ridge()).fit(*regression()),
        r"SimpleImputer\(missing_values=-1.0\)",
    ),
    "poisson-log-link": (
        lambda: PoissonRegressor().fit(*_positive()),
        "PoissonRegressor.*LogLink.*Exp on the CPU",
    ),
    "gamma-log-link": (lambda: GammaRegressor().fit(*_positive()), "GammaRegressor.*LogLink"),
    "transformed-target-func": (
        lambda: TransformedTargetRegressor(Ridge(), func=np.log, inverse_func=np.exp).fit(
            *_positive()
        ),
        r"func=\.\.\., inverse_func=\.\.\.\) is not affine",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_steps_raise_naming_them(name: str) -> None:
    make, match = REFUSED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = make()
    with pytest.raises(emit.UnsupportedModelError, match=match):
        emit.to_onnx(estimator)
