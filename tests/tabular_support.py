"""Random tabular pipelines and the DataFrames they are fitted on, for property tests.

A case is a ColumnTransformer (numeric columns imputed and maybe scaled, a string column
maybe imputed then one-hot or ordinal encoded, an int and a bool column encoded, passed
through or dropped) before a linear model or a small MLP, fitted on a DataFrame (or an
object array) with NaN and None in it; the test rows hold categories never seen in fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
import sklearn
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    HuberRegressor,
    LogisticRegression,
    LogisticRegressionCV,
    PassiveAggressiveClassifier,
    PassiveAggressiveRegressor,
    Perceptron,
    QuantileRegressor,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    TheilSenRegressor,
    TweedieRegressor,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

# The installed scikit-learn as (major, minor). Some settings the tests use are newer than the
# oldest release emit supports: OneHotEncoder(handle_unknown="warn") came in 1.6,
# MLPRegressor(loss="poisson") in 1.7, MaxAbsScaler(clip=True) in 1.8.
SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
HANDLE_UNKNOWN = ["ignore", "infrequent_if_exist"] + (["warn"] if SKLEARN >= (1, 6) else [])

SEEN = ["red", "green", "blue", "teal", "plum"]
UNSEEN = ["mauve", "ochre"]
COLUMNS = ["x0", "x1", "c", "n", "b"]
N_TRAIN, N_TEST = 48, 24

CLASSIFIERS = {
    "logistic": lambda: LogisticRegression(max_iter=300),
    "ridge-classifier": lambda: RidgeClassifier(),
    "lda": lambda: LinearDiscriminantAnalysis(),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0),
}
REGRESSORS = {
    "ridge": lambda: Ridge(alpha=0.5),
    "huber": lambda: HuberRegressor(max_iter=200),
    "bayesian-ridge": lambda: BayesianRidge(),
    "mlp": lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=30, random_state=0),
}


@dataclass(frozen=True)
class Case:
    seed: int
    classify: bool
    final: int  # index into the sorted CLASSIFIERS or REGRESSORS
    num_strategy: str
    num_indicator: bool
    num_scaler: Optional[str]
    cat_imputer: Optional[str]
    cat_encoder: str  # "onehot" or "ordinal"
    handle_unknown: str
    drop: Optional[str]
    min_frequency: Optional[int]
    max_categories: Optional[int]
    int_column: str  # "onehot", "passthrough" or "drop"
    remainder: str
    by_name: bool
    as_array: bool
    missing_token: str  # how the string column spells missing: "none", "nan" or "both"
    string_dtype: bool  # pandas' str dtype instead of object


@st.composite
def cases(draw: st.DrawFn) -> Case:
    by_name = draw(st.booleans())
    return Case(
        seed=draw(st.integers(0, 2**16)),
        classify=draw(st.booleans()),
        final=draw(st.integers(0, 3)),
        num_strategy=draw(st.sampled_from(["mean", "median", "most_frequent", "constant"])),
        num_indicator=draw(st.booleans()),
        num_scaler=draw(st.sampled_from([None, "standard", "robust", "minmax"])),
        cat_imputer=draw(st.sampled_from([None, "most_frequent", "constant"])),
        cat_encoder=draw(st.sampled_from(["onehot", "onehot", "ordinal"])),
        handle_unknown=draw(st.sampled_from(HANDLE_UNKNOWN)),
        drop=draw(st.sampled_from([None, None, "first", "if_binary"])),
        min_frequency=draw(st.sampled_from([None, None, 4])),
        max_categories=draw(st.sampled_from([None, None, 3])),
        int_column=draw(st.sampled_from(["onehot", "passthrough", "drop"])),
        remainder=draw(st.sampled_from(["passthrough", "drop"])),
        by_name=by_name,
        as_array=not by_name and draw(st.booleans()),
        missing_token=draw(st.sampled_from(["none", "nan", "both"])),
        string_dtype=draw(st.booleans()),
    )


def frame(case: Case, n_rows: int, rng: np.random.Generator, *, unseen: bool) -> pd.DataFrame:
    """Rows of the five columns: floats with NaN, a string column with missing values (and,
    with `unseen`, categories fit never saw), small ints, bools."""
    x = rng.normal(size=(n_rows, 2)) * [1.0, 3.0] + [0.5, -1.0]
    x[rng.random((n_rows, 2)) < 0.15] = np.nan
    pool = SEEN + (UNSEEN if unseen else [])
    weights = np.linspace(2.0, 0.5, len(pool))
    strings: list[Any] = list(rng.choice(pool, n_rows, p=weights / weights.sum()))
    for i in np.flatnonzero(rng.random(n_rows) < 0.12):
        token = case.missing_token if case.missing_token != "both" else ("none", "nan")[i % 2]
        strings[i] = None if token == "none" else np.nan
    if case.string_dtype:
        c = pd.Series(strings, dtype="str")
    else:
        c = pd.Series(np.array(strings, dtype=object), dtype=object)
    return pd.DataFrame(
        {
            "x0": x[:, 0],
            "x1": x[:, 1],
            "c": c,
            "n": rng.integers(0, 4 + unseen, n_rows),
            "b": rng.random(n_rows) < 0.4,
        }
    )


def target(case: Case, X: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    effect = X["c"].map({c: i % 3 - 1.0 for i, c in enumerate(SEEN)}).fillna(0.3).to_numpy()
    signal = np.nan_to_num(X["x0"].to_numpy()) + effect + 0.2 * X["n"].to_numpy()
    signal = signal + 0.3 * rng.normal(size=len(X))
    if not case.classify:
        return signal
    return np.digitize(signal, np.quantile(signal, [0.33, 0.66]))  # three classes


def pipeline(case: Case) -> Any:
    def cols(*names: str) -> list[Any]:
        return list(names) if case.by_name else [COLUMNS.index(n) for n in names]

    # fill_value=0: in an object array the default constant would be the string 'missing_value'.
    numeric = [
        SimpleImputer(strategy=case.num_strategy, fill_value=0, add_indicator=case.num_indicator)
    ]
    scaler = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
    if case.num_scaler:
        numeric.append(scaler[case.num_scaler]())
    categorical: list[Any] = []
    if case.cat_imputer == "most_frequent":
        categorical.append(SimpleImputer(strategy="most_frequent"))
    elif case.cat_imputer == "constant":
        categorical.append(SimpleImputer(strategy="constant", fill_value="missing"))
    if case.cat_encoder == "onehot":
        categorical.append(
            OneHotEncoder(
                handle_unknown=case.handle_unknown,
                drop=case.drop,
                min_frequency=case.min_frequency,
                max_categories=case.max_categories,
            )
        )
    else:
        categorical.append(
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=-1,
                encoded_missing_value=-2,
                min_frequency=case.min_frequency,
                max_categories=case.max_categories,
            )
        )
    branches = [
        ("num", make_pipeline(*numeric), cols("x0", "x1")),
        ("cat", make_pipeline(*categorical), cols("c")),
    ]
    if case.int_column == "onehot":
        branches.append(("int", OneHotEncoder(handle_unknown="ignore"), cols("n", "b")))
    elif case.int_column == "drop":
        branches.append(("int", "drop", cols("n")))
    ct = ColumnTransformer(branches, remainder=case.remainder)
    family = CLASSIFIERS if case.classify else REGRESSORS
    final = family[sorted(family)[case.final]]()
    return make_pipeline(ct, final)


def fitted(case: Case) -> tuple[Any, Any, Any]:
    """(fitted pipeline, training X, test X) for `case`; X is a DataFrame, or an object
    array when the case says so."""
    rng = np.random.default_rng(case.seed)
    train = frame(case, N_TRAIN, rng, unseen=False)
    test = frame(case, N_TEST, rng, unseen=True)
    y = target(case, train, rng)
    if case.as_array:
        train, test = train.to_numpy(dtype=object), test.to_numpy(dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline(case).fit(train, y), train, test


def quietly(function: Any, *args: Any) -> Any:
    """scikit-learn's call without its warnings (unknown categories, feature names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


def frame_pipeline() -> tuple[Any, pd.DataFrame]:
    """A small named-column pipeline: imputed and scaled ages, one-hot cities, kids passed
    through."""
    X = pd.DataFrame(
        {
            "age": [22.0, np.nan, 35.0, 41.0, 29.0, 50.0],
            "city": np.array(["oslo", "rome", None, "oslo", "rome", "oslo"], dtype=object),
            "kids": [0, 1, 2, 0, 1, 3],
        }
    )
    ct = ColumnTransformer(
        [
            ("age", make_pipeline(SimpleImputer(), StandardScaler()), ["age"]),
            ("city", OneHotEncoder(), ["city"]),
        ],
        remainder="passthrough",
    )
    return make_pipeline(ct, Ridge()).fit(X, [1.0, 2.0, 3.0, 2.0, 1.0, 0.0]), X


# --- the rest of the linear family: name -> (make, n_classes or None for regression)
def regression(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, X @ [1.5, -2.0, 0.5, 0.0] + 0.1 * rng.normal(size=n)


def _labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.digitize(y, np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1]))


AFFINE = {
    "lda-binary": (LinearDiscriminantAnalysis, 2),
    "lda-multiclass": (LinearDiscriminantAnalysis, 3),
    "ridge-classifier": (RidgeClassifier, 2),
    "ridge-classifier-cv": (RidgeClassifierCV, 3),
    "logistic-cv": (lambda: LogisticRegressionCV(max_iter=300), 3),
    "perceptron": (Perceptron, 3),
    "passive-aggressive-classifier": (PassiveAggressiveClassifier, 2),
    "passive-aggressive-regressor": (PassiveAggressiveRegressor, None),
    "huber": (HuberRegressor, None),
    "bayesian-ridge": (BayesianRidge, None),
    "ard": (ARDRegression, None),
    "theil-sen": (lambda: TheilSenRegressor(random_state=0), None),
    "quantile": (lambda: QuantileRegressor(alpha=0.0), None),
    "tweedie-identity": (lambda: TweedieRegressor(power=0), None),
    "transformed-target-standard": (
        lambda: TransformedTargetRegressor(Ridge(), transformer=StandardScaler()), None),
    "transformed-target-robust": (
        lambda: TransformedTargetRegressor(Ridge(), transformer=RobustScaler()), None),
    "transformed-target-identity": (lambda: TransformedTargetRegressor(Ridge()), None),
}  # fmt: skip


def fit_affine(name: str) -> tuple[Any, np.ndarray]:
    make, n_classes = AFFINE[name]
    X, y = regression()
    target = y if n_classes is None else _labels(y, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit(X, target), X
