"""rkrt.sklearn on the test double runs the board-side preparation as scikit-learn does.

Random tabular pipelines (tests/tabular_support.py) and every new affine estimator are
lowered by emit, written as fake float16 models with the sidecar emit would write, loaded
with rkrt.sklearn.load and compared with scikit-learn on the raw rows (DataFrames with NaN,
None and unseen categories): within float16 precision, labels equal.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fake_rknnrt import Dense, FakeModel
from hypothesis import HealthCheck, given, settings
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tabular_support import AFFINE, Case, cases, fit_affine, fitted, frame_pipeline, quietly

import rkrt.sklearn as rks
from emit.converters import lower
from emit.export import model_metadata
from rkrt.metadata import MetadataError, ModelMetadata, write_sidecar

BATCH_SIZES = (1, 8)
FP16 = {"probabilities": 1e-2, "decision": 2e-2, "values": 2e-2}  # relative to the scale


def write_model(estimator: Any, path: Path, *, sidecar: bool = True) -> Path:
    """The float16 fake model of `estimator` and the sidecar emit.convert would write."""
    network = lower(estimator)
    layers = [Dense(la.weight, la.bias, la.activation) for la in network.layers]
    metadata = model_metadata(estimator, network, batch_sizes=BATCH_SIZES)
    custom = "" if sidecar else metadata.to_custom_string()
    FakeModel(layers, dtype="float16", batch_sizes=BATCH_SIZES, custom_string=custom).save(path)
    if sidecar:
        write_sidecar(path, metadata)
    return path


def assert_like_scikit_learn(npu: Any, estimator: Any, X: Any) -> None:
    outputs = npu.metadata.outputs
    # Both warn alike about unknown categories (handle_unknown="warn"), quietened alike.
    if outputs == "probabilities":
        got, expected = quietly(npu.predict_proba, X), quietly(estimator.predict_proba, X)
    elif outputs == "decision":
        got, expected = quietly(npu.decision_function, X), quietly(estimator.decision_function, X)
    else:
        got, expected = quietly(npu.predict, X), quietly(estimator.predict, X)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=FP16[outputs] * scale)
    if outputs != "values":
        labels = quietly(estimator.predict, X)
        # float16 may flip a row whose top two scores are within its precision, never others.
        margin = np.sort(expected.reshape(len(X), -1), axis=1)
        close = margin.shape[1] > 1 and (margin[:, -1] - margin[:, -2]) < 2 * FP16[outputs] * scale
        agree = quietly(npu.predict, X) == labels
        assert np.all(agree | close)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prepared")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_prepared_pipeline_matches_scikit_learn(rt, models: Path, case: Case) -> None:
    estimator, _, X_test = fitted(case)
    path = write_model(estimator, models / f"case{case.seed}.rknn")
    with rks.load(path) as npu:
        assert npu.n_features_in_ == estimator.n_features_in_
        assert_like_scikit_learn(npu, estimator, X_test)
        # Any number of rows: one at a time equals all at once.
        one = np.concatenate([quietly(npu.predict, X_test[i : i + 1]) for i in range(3)])
        np.testing.assert_array_equal(one, quietly(npu.predict, X_test[:3]))


@pytest.mark.parametrize("name", sorted(AFFINE))
def test_affine_estimator_on_the_test_double(rt, tmp_path: Path, name: str) -> None:
    estimator, X = fit_affine(name)
    with rks.load(write_model(estimator, tmp_path / "m.rknn")) as npu:
        assert_like_scikit_learn(npu, estimator, X)


def test_dataframe_by_name_and_errors_as_scikit_learn(rt, tmp_path: Path) -> None:
    estimator, X = frame_pipeline()
    with rks.load(write_model(estimator, tmp_path / "m.rknn")) as npu:
        assert list(npu.feature_names_in_) == ["age", "city", "kids"]
        assert npu.n_features_in_ == 3
        shuffled = X[["kids", "city", "age"]].assign(extra="x")
        np.testing.assert_allclose(npu.predict(shuffled), estimator.predict(shuffled), atol=2e-2)
        before = rt.calls("rknn_run")
        with pytest.raises(ValueError, match="columns are missing"):
            npu.predict(X.drop(columns="age"))
        with pytest.raises(ValueError, match=r"Found unknown categories \['paris'\]"):
            npu.predict(X.assign(city="paris"))
        assert rt.calls("rknn_run") == before  # refused before the NPU


def test_nan_left_after_preparation_raises(rt, tmp_path: Path) -> None:
    estimator, X = frame_pipeline()  # "kids" passes through without an imputer
    with (
        rks.load(write_model(estimator, tmp_path / "m.rknn")) as npu,
        pytest.raises(ValueError, match="Input X contains NaN"),
    ):
        npu.predict(X.assign(kids=[0.0, np.nan, 1, 2, 3, 4]))


def test_preparation_in_the_custom_string_when_it_fits(rt, tmp_path: Path) -> None:
    estimator, X = frame_pipeline()
    path = write_model(estimator, tmp_path / "m.rknn", sidecar=False)
    with rks.load(path) as npu:
        np.testing.assert_allclose(npu.predict(X), estimator.predict(X), atol=2e-2)
        assert list(npu.feature_names_in_) == list(estimator.feature_names_in_)


def test_preparation_too_long_for_the_custom_string_asks_for_the_sidecar(
    rt, tmp_path: Path
) -> None:
    X = pd.DataFrame({"word": [f"category-{i:03d}" for i in range(120)]})
    estimator = make_pipeline(OneHotEncoder(), Ridge()).fit(X, np.arange(120.0))
    metadata = model_metadata(estimator, lower(estimator), batch_sizes=BATCH_SIZES)
    assert '"preparation":"sidecar"' in metadata.to_custom_string()
    path = write_model(estimator, tmp_path / "m.rknn", sidecar=False)
    with pytest.raises(MetadataError, match="put its sidecar"):
        rks.load(path)
    write_sidecar(path, metadata)
    with rks.load(path) as npu:
        np.testing.assert_allclose(npu.predict(X), estimator.predict(X), atol=2e-2 * 120)


def test_sidecar_without_preparation_reads_as_before() -> None:
    X = np.random.default_rng(0).normal(size=(10, 3))
    estimator = Ridge().fit(X, X[:, 0])
    text = model_metadata(estimator, lower(estimator)).to_json()
    assert "preparation" not in text
    assert ModelMetadata.from_json(text).preparation is None


def test_names_dropped_from_the_custom_string_come_from_the_preparation() -> None:
    estimator, _ = frame_pipeline()
    metadata = model_metadata(estimator, lower(estimator))
    bare = dataclasses.replace(metadata, feature_names_in=None)
    assert bare.feature_names_in == ("age", "city", "kids")
