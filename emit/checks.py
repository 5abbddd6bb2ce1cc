"""Numerical checks run before the toolkit sees a model.

The NPU computes in float16 for fp16 builds and turns anything beyond 65504 into
inf/NaN without a word, so emit looks for such values itself and names the layer.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from emit.converters import lower
from emit.errors import Float16RangeError, Float16RangeWarning, NonFiniteWeightsError
from emit.network import Network, layer_name

FLOAT16_MAX = float(np.finfo(np.float16).max)
ON_OVERFLOW = ("raise", "warn")


def check_numerics(
    estimator: Any,
    example_input: Optional[Any] = None,
    *,
    float16: bool = True,
    on_overflow: str = "raise",
) -> None:
    """Check `estimator`'s weights (and activations on `example_input`) before a build.

    Non-finite weights (NaN, inf, or beyond float32) always raise
    `NonFiniteWeightsError`. With ``float16=True`` (an fp16 build), weights, the
    input, or any layer's pre-activation output on `example_input` beyond float16
    range raise `Float16RangeError`, or warn `Float16RangeWarning` with
    ``on_overflow="warn"``. Messages name the layers as the ONNX graph does
    ("layer0.weight", "layer1.gemm output", ...).
    """
    if on_overflow not in ON_OVERFLOW:
        raise ValueError(f"on_overflow must be one of {ON_OVERFLOW}, got {on_overflow!r}")
    check_network(lower(estimator), example_input, float16=float16, on_overflow=on_overflow)


def check_network(
    network: Network, example_input: Optional[Any], *, float16: bool, on_overflow: str = "raise"
) -> None:
    """`check_numerics` of an already lowered estimator."""
    network = network.astype(np.float32)
    check_finite(network)
    if not float16:
        return
    problems = float16_overflows(network, example_input)
    if not problems:
        return
    message = (
        f"values beyond float16 range (|x| > {FLOAT16_MAX:g}) in an fp16 build, where they "
        f"become inf/NaN on the NPU: {'; '.join(problems)}. Scale the inputs (e.g. a "
        "StandardScaler step), regularise the model, or quantize to int8."
    )
    if on_overflow == "raise":
        raise Float16RangeError(message)
    warnings.warn(message, Float16RangeWarning, stacklevel=3)


def check_finite(network: Network) -> None:
    """Raise `NonFiniteWeightsError` naming the first layer holding NaN or inf."""
    for index, layer in enumerate(network.layers):
        for part, values in (("weight", layer.weight), ("bias", layer.bias)):
            finite = np.isfinite(values)
            if not finite.all():
                raise NonFiniteWeightsError(
                    f"{layer_name(index)}.{part} has {values.size - np.count_nonzero(finite)} "
                    f"NaN or infinite value(s) (in {values.dtype}): the model diverged or "
                    "was fitted on non-finite data; refit it before converting"
                )


def float16_overflows(network: Network, example_input: Optional[Any] = None) -> list[str]:
    """Descriptions of every weight, and activation on `example_input`, beyond float16 range."""
    problems = []
    for index, layer in enumerate(network.layers):
        for part, values in (("weight", layer.weight), ("bias", layer.bias)):
            peak = _peak(values)
            if peak > FLOAT16_MAX:
                problems.append(f"{layer_name(index)}.{part} reaches {peak:.4g}")
    if example_input is None:
        return problems
    activation = _as_input(example_input, network.n_features_in)
    peak = _peak(activation)
    if peak > FLOAT16_MAX:
        problems.append(f"the input reaches {peak:.4g}")
    for index, layer in enumerate(network.layers):
        linear = activation @ layer.weight + layer.bias
        # Relu, Sigmoid, Tanh and Softmax never exceed their input's magnitude (or 1),
        # so each Gemm output bounds its layer.
        peak = _peak(linear)
        if peak > FLOAT16_MAX:
            problems.append(f"{layer_name(index)}.gemm output reaches {peak:.4g} on the examples")
        activation = _activate(linear, layer.activation)
    return problems


def _activate(values: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(values, 0)
    if activation == "sigmoid":
        return 0.5 * (1 + np.tanh(0.5 * values))  # overflow-free logistic
    if activation == "tanh":
        return np.tanh(values)
    if activation == "softmax":
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return values


def _as_input(example_input: Any, n_features: int) -> np.ndarray:
    values = np.asarray(example_input, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != n_features:
        raise ValueError(
            f"example_input must have shape (n_samples, {n_features}), got {values.shape}"
        )
    return values


def _peak(values: np.ndarray) -> float:
    # NaN compares false against the limit; report it as infinite instead of missing it.
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    return np.inf if np.isnan(peak) else peak
