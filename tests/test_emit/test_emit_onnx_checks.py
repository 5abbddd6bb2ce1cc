"""Numerical checks before a build: non-finite weights and float16 range."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import emit

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


@pytest.fixture(scope="module")
def mlp(data: tuple[np.ndarray, np.ndarray]) -> MLPClassifier:
    return MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=30, random_state=0).fit(*data)


def _with_weight(mlp: MLPClassifier, layer: int, value: float) -> MLPClassifier:
    broken = copy.deepcopy(mlp)
    broken.coefs_[layer][1, 2 % broken.coefs_[layer].shape[1]] = value
    return broken


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])
def test_non_finite_weights_raise_naming_the_layer(mlp: MLPClassifier, value: float) -> None:
    broken = _with_weight(mlp, 1, value)  # 1e39 overflows float32: inf once converted
    with pytest.raises(emit.NonFiniteWeightsError, match=r"layer1\.weight has 1 NaN or infinite"):
        emit.to_onnx(broken)
    with pytest.raises(emit.NonFiniteWeightsError, match=r"layer1\.weight"):
        emit.check_numerics(broken, float16=False)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_non_finite_bias_and_preprocessing_are_caught(data: tuple[np.ndarray, np.ndarray]) -> None:
    ridge = Ridge().fit(data[0], data[0][:, 0])
    ridge.intercept_ = np.nan
    with pytest.raises(emit.NonFiniteWeightsError, match=r"layer0\.bias"):
        emit.to_onnx(ridge)
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(data[0], data[0][:, 0])
    pipeline[0].scale_[0] = 0.0  # 1/0 folded into the first layer
    with pytest.raises(emit.NonFiniteWeightsError, match=r"layer0\.weight"):
        emit.to_onnx(pipeline)


def test_finite_model_in_range_passes_silently(mlp: MLPClassifier, data: tuple) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emit.check_numerics(mlp, data[0])


def test_weight_beyond_float16_range_raises_or_warns(mlp: MLPClassifier) -> None:
    big = _with_weight(mlp, 2, 7e4)
    with pytest.raises(emit.Float16RangeError, match=r"layer2\.weight reaches 7e\+04"):
        emit.check_numerics(big)
    with pytest.warns(emit.Float16RangeWarning, match=r"layer2\.weight"):
        emit.check_numerics(big, on_overflow="warn")
    emit.check_numerics(big, float16=False)  # fine in float32 (an int8 build decides itself)
    emit.to_onnx(big)  # the ONNX graph is float32: no float16 concern there
    just_below = _with_weight(mlp, 2, 65504.0)
    emit.check_numerics(just_below)


def test_activation_beyond_float16_range_names_the_layer(data: tuple) -> None:
    X, y = data
    mlp = MLPClassifier(hidden_layer_sizes=(3,), max_iter=30, random_state=0).fit(X, y)
    mlp.coefs_[0][:] = 300.0
    mlp.coefs_[1][:] = 1e-3  # the next layer brings values back into range
    examples = (X * 100).astype(np.float32)
    hidden = examples @ mlp.coefs_[0] + mlp.intercepts_[0]
    assert np.abs(hidden).max() > 65504  # the scenario really overflows in layer0 ...
    assert np.abs(np.maximum(hidden, 0) @ mlp.coefs_[1]).max() < 65504  # ... and only there
    with pytest.raises(emit.Float16RangeError, match=r"layer0\.gemm output reaches") as caught:
        emit.check_numerics(mlp, examples)
    assert "layer1" not in str(caught.value)
    emit.check_numerics(mlp)  # the weights alone are in range
    emit.check_numerics(mlp, X / 1000)


def test_input_beyond_float16_range_is_reported(data: tuple) -> None:
    X, _ = data
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(X * 1e5, X[:, 0])
    with pytest.raises(emit.Float16RangeError, match="the input reaches"):
        emit.check_numerics(pipeline, X * 1e5)


def test_check_arguments_are_validated(mlp: MLPClassifier, data: tuple) -> None:
    with pytest.raises(ValueError, match="on_overflow must be one of"):
        emit.check_numerics(mlp, on_overflow="ignore")
    with pytest.raises(ValueError, match=r"example_input must have shape \(n_samples, 4\)"):
        emit.check_numerics(mlp, data[0][:, :3])
