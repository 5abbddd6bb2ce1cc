"""The converters' common form: affine preprocessing, a stack of dense layers, output meaning.

Every supported estimator lowers to a `Network`: `Dense` layers computing
``activation(x @ weight + bias)``, which `emit.graph` writes as Gemm + activation
nodes. Preprocessing lowers to an `Affine` map that is folded into the first
layer, so it costs no extra op on the NPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from rkrt.metadata import OUTPUTS as OUTPUT_KINDS
from rkrt.metadata import TASKS

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "softmax")


def layer_name(index: int) -> str:
    """Name of the index-th dense layer, shared by ONNX node names and check messages."""
    return f"layer{index}"


@dataclass(frozen=True)
class Dense:
    """``activation(x @ weight + bias)`` with weight of shape (n_in, n_out), bias (n_out,)."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[1],):
            raise ValueError(
                f"a dense layer needs weight (n_in, n_out) and bias (n_out,); "
                f"got {self.weight.shape} and {self.bias.shape}"
            )

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])


@dataclass(frozen=True)
class Affine:
    """``x @ matrix + offset``; a 1-D matrix stands for a diagonal one (per-feature scale).

    Keeping per-feature scalings diagonal keeps composing and folding them cheap.
    """

    matrix: np.ndarray
    offset: np.ndarray

    @property
    def n_in(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.matrix.shape[0] if self.matrix.ndim == 1 else self.matrix.shape[1])

    @property
    def is_identity(self) -> bool:
        return self.matrix.ndim == 1 and bool(np.all(self.matrix == 1) and not self.offset.any())

    def then(self, after: Affine) -> Affine:
        """The map applying `self`, then `after`."""
        _check_chain(self.n_out, after.n_in)
        offset = _apply_linear(self.offset, after.matrix) + after.offset
        return Affine(_right_multiply(self.matrix, after.matrix), offset)

    def fold_into(self, dense: Dense) -> Dense:
        """The dense layer computing ``dense(self(x))`` in one step."""
        _check_chain(self.n_out, dense.n_in)
        weight = _right_multiply(self.matrix, dense.weight)
        bias = self.offset @ dense.weight + dense.bias
        return replace(dense, weight=weight, bias=bias)


@dataclass(frozen=True)
class OutputSpec:
    """What the graph's single output means (see `emit.describe`)."""

    task: str
    outputs: str
    classes: Optional[tuple[Any, ...]]
    n_outputs: int

    def __post_init__(self) -> None:
        if self.task not in TASKS or self.outputs not in OUTPUT_KINDS:
            raise ValueError(f"unknown task/outputs {self.task!r}/{self.outputs!r}")


@dataclass(frozen=True)
class Network:
    """Dense layers applied in order to a (batch, n_features_in) input, and their meaning."""

    layers: tuple[Dense, ...]
    spec: OutputSpec

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a network needs at least one dense layer")
        for before, after in zip(self.layers, self.layers[1:]):
            _check_chain(before.n_out, after.n_in)
        if self.layers[-1].n_out != self.spec.n_outputs:
            raise ValueError(
                f"the last layer has {self.layers[-1].n_out} outputs, "
                f"the output spec says {self.spec.n_outputs}"
            )

    @property
    def n_features_in(self) -> int:
        return self.layers[0].n_in

    def after(self, preprocessing: Affine) -> Network:
        """This network with `preprocessing` folded into its first layer."""
        if preprocessing.is_identity and preprocessing.n_in == self.n_features_in:
            # Folding an identity still multiplies the whole first weight matrix.
            return self
        first = preprocessing.fold_into(self.layers[0])
        return replace(self, layers=(first, *self.layers[1:]))

    def astype(self, dtype: Any) -> Network:
        """The same network with C-contiguous weights of `dtype` (no copy when already so).

        Values beyond the new type's range become inf quietly: `emit.checks.check_finite`
        reports them with the layer's name.
        """
        with np.errstate(over="ignore"):
            layers = tuple(
                replace(
                    layer,
                    weight=np.asarray(layer.weight, dtype=dtype, order="C"),
                    bias=np.asarray(layer.bias, dtype=dtype, order="C"),
                )
                for layer in self.layers
            )
        return replace(self, layers=layers)


def _right_multiply(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` where either side may be a 1-D stand-in for a diagonal matrix."""
    if left.ndim == 1 and right.ndim == 1:
        return left * right
    if left.ndim == 1:
        return left[:, None] * right
    if right.ndim == 1:
        return left * right[None, :]
    return left @ right


def _apply_linear(vector: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return vector * matrix if matrix.ndim == 1 else vector @ matrix


def _check_chain(n_out: int, n_in: int) -> None:
    if n_out != n_in:
        raise ValueError(f"cannot chain a map with {n_out} outputs into one with {n_in} inputs")
