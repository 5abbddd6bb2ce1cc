"""A DataFrame pipeline through rknn-toolkit2: preparation on the 'board', the rest on the NPU.

scikit-learn's wine data with a derived string column (missing entries) and missing numbers,
a ColumnTransformer before an MLP; converted in fp16 and int8 and verified end to end on the
simulator (DataFrame rows in, scikit-learn's predict_proba as the reference).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import emit
from rkrt.metadata import Standardize, read_sidecar

pytestmark = pytest.mark.toolkit


@pytest.fixture(scope="module")
def wine() -> tuple[object, pd.DataFrame, pd.DataFrame]:
    data = load_wine(as_frame=True)
    X = data.data.copy()
    rng = np.random.default_rng(0)
    X["alcohol band"] = pd.cut(X.pop("alcohol"), 4, labels=["low", "mid", "high", "top"])
    X["alcohol band"] = X["alcohol band"].astype(object).where(rng.random(len(X)) > 0.1, None)
    for column in ["magnesium", "hue"]:
        X.loc[rng.random(len(X)) < 0.1, column] = np.nan
    numbers = [c for c in X.columns if c != "alcohol band"]
    columns = ColumnTransformer(
        [("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
         ("band", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore")), ["alcohol band"])]
    )  # fmt: skip
    model = make_pipeline(columns, MLPClassifier((16,), max_iter=1000, random_state=0))
    train, test = X.iloc[::2], X.iloc[1::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train, data.target.iloc[::2])
    return model, train, test


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_dataframe_pipeline_verified_end_to_end(tmp_path, wine, quantize) -> None:
    model, train, test = wine
    # int8 on 89 rows: one row near a class boundary moves its probability by ~0.3 while
    # its label holds, so labels are the int8 criterion here.
    tolerance = emit.Tolerance(max_error=0.5) if quantize else emit.Tolerance()
    report = emit.convert(
        model, tmp_path / "wine.rknn", "rk3588", quantize=quantize,
        dataset=train if quantize else None, batch_sizes=(1, 8), example_input=test,
        verify=tolerance,
    )  # fmt: skip
    accuracy = report.accuracy
    assert accuracy.n_samples == len(test) and accuracy.sample == "example_input"
    assert accuracy.label_agreement >= (0.95 if quantize else 0.99)
    assert accuracy.max_error <= (0.5 if quantize else 1e-2)
    assert report.placement.all_compute_on_npu
    sidecar = read_sidecar(report.path)
    preparation = sidecar.preparation
    assert preparation.feature_names_in == tuple(train.columns)
    # int8 standardizes the prepared input on the board, fp16 keeps it as prepared.
    assert isinstance(preparation.steps[-1], Standardize) == (quantize == "int8")
    # 12 numbers, 5 band columns: SimpleImputer fills NaN only, so None is a category.
    assert sidecar.n_features_in == preparation.n_features_out == 12 + 5
