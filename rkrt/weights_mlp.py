"""scikit-learn MLPs from their weights alone: matmuls on the NPU, the rest in numpy.

>>> from rkrt.weights_mlp import from_weights
>>> with from_weights("model.npz") as clf:   # written by emit.export_weights, no .rknn needed
...     labels = clf.predict(X)

Each layer is one :class:`rkrt.MatMul` (float16 A and B, float32 accumulation, as the NPU
computes a float16 .rknn model); bias and activation run in numpy on float32.
``predict``/``predict_proba`` and input validation are those of :mod:`rkrt.sklearn` (same
labels, same dtype handling, same errors), so the two paths differ by one line.
The .npz is read with ``allow_pickle=False``: it holds only arrays and JSON text.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .arguments import PathLike
from .cores import CoreMask, MaskLike
from .matmul import MatMul
from .metadata import WEIGHTS_FORMAT as FORMAT
from .metadata import ModelMetadata
from .sklearn import MLPClassifier, MLPRegressor, _validate, plan_batches

DEFAULT_BATCH_SIZES = (1, 32)


def _logistic(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflow gives exactly the limit 0
        return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "logistic": _logistic,
    "softmax": _softmax,
    "exp": np.exp,  # MLPRegressor(loss="poisson")
}


class WeightsFile:
    """The contents of a weights .npz, checked: layers chain and match the metadata."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        with np.load(self.path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise ValueError(
                    f"{self.path} is not an rkrt weights file (format {FORMAT!r}); write one "
                    "with emit.export_weights(estimator, path)"
                )
            self.metadata = ModelMetadata.from_json(str(z["metadata"]), source=self.path)
            self.activation, self.out_activation = str(z["activation"]), str(z["out_activation"])
            n_layers = sum(1 for name in z.files if name.startswith("coef_"))
            self.coefs = [np.asarray(z[f"coef_{i}"], np.float32) for i in range(n_layers)]
            self.intercepts = [np.asarray(z[f"intercept_{i}"], np.float32) for i in range(n_layers)]
        self._check()

    def _check(self) -> None:
        for name in (self.activation, self.out_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"{self.path}: unknown activation {name!r}; known: "
                                 f"{', '.join(ACTIVATIONS)}")  # fmt: skip
        width = self.metadata.n_features_in
        if not self.coefs:
            raise ValueError(f"{self.path} holds no layers (coef_0 missing)")
        for i, (w, b) in enumerate(zip(self.coefs, self.intercepts)):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(
                    f"{self.path}: layer {i} has coef {w.shape} and intercept {b.shape}; "
                    f"expected ({width}, n) and (n,): the file is damaged"
                )
            width = w.shape[1]
        self.n_outputs = width


class _FromWeights:
    """What differs from the .rknn path: opening from weights and the forward pass."""

    _TASKS: tuple[str, ...] = ()

    def __init__(
        self,
        path: PathLike,
        *,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
        core_mask: MaskLike = CoreMask.AUTO,
        library: Optional[PathLike] = None,
    ) -> None:
        self._layers: list[MatMul] = []
        weights = path if isinstance(path, WeightsFile) else WeightsFile(path)
        meta = weights.metadata
        if meta.task not in self._TASKS:
            raise ValueError(
                f"{weights.path} holds a {meta.task} ({meta.estimator}), not something "
                f"{type(self).__name__} can run; open it with from_weights(), which picks the "
                "right class"
            )
        self._path = weights.path
        self._metadata = meta
        self._batch_sizes = tuple(sorted({int(b) for b in batch_sizes}, reverse=True))
        self._hidden = ACTIVATIONS[weights.activation]
        self._output = ACTIVATIONS[weights.out_activation]
        self._width = weights.n_outputs
        self._intercepts = weights.intercepts
        try:
            for w in weights.coefs:
                mm = MatMul(self._batch_sizes, w.shape[0], w.shape[1], dtype="float16",
                            core_mask=core_mask, library=library)  # fmt: skip
                self._layers.append(mm)
                mm.set_b(w)
        except BaseException:
            self.close()
            raise

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The row counts each NPU call takes, largest first."""
        return self._batch_sizes

    def close(self) -> None:
        """Release every layer's NPU context; idempotent."""
        for mm in self._layers:
            mm.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_weights({self._path!r})"

    def _forward(self, X: Any) -> np.ndarray:
        x = _validate(X, self._metadata, type(self).__name__)
        out = np.empty((x.shape[0], self._width), np.float32)
        last = len(self._layers) - 1
        for start, size in plan_batches(x.shape[0], self._batch_sizes):
            rows = min(size, x.shape[0] - start)
            h = x[start : start + rows]
            if rows != size:
                h = np.concatenate([h, np.zeros((size - rows, h.shape[1]), np.float32)])
            for i, (mm, b) in enumerate(zip(self._layers, self._intercepts)):
                z = mm.run(h)
                z += b
                h = (self._output if i == last else self._hidden)(z)
            out[start : start + rows] = h[:rows]
        return out


class WeightsMLPClassifier(_FromWeights, MLPClassifier):
    """An MLPClassifier run from its weights file; the API of rkrt.sklearn.MLPClassifier."""

    _TASKS = MLPClassifier._TASKS


class WeightsMLPRegressor(_FromWeights, MLPRegressor):
    """An MLPRegressor run from its weights file; the API of rkrt.sklearn.MLPRegressor."""

    _TASKS = MLPRegressor._TASKS


def from_weights(
    path: PathLike,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    core_mask: MaskLike = CoreMask.AUTO,
    library: Optional[PathLike] = None,
) -> Union[WeightsMLPClassifier, WeightsMLPRegressor]:
    """Open a weights .npz (emit.export_weights) as the matching estimator.

    ``batch_sizes``: the row counts of the NPU calls (any number of rows is run in chunks
    of these, the last one zero-padded); one MatMul context per layer serves them all.
    """
    weights = WeightsFile(path)
    cls = WeightsMLPRegressor if weights.metadata.task == "regressor" else WeightsMLPClassifier
    return cls(weights, batch_sizes=batch_sizes, core_mask=core_mask, library=library)
